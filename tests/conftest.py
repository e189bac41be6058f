"""Shared fixtures: tiny models built from a config (random weights, no download) and small corpora."""

from __future__ import annotations

import json

import pytest
import torch
from eval_helpers import write_qa
from rag_helpers import SECRET_Q, SHARP, TEXTS, WORDS, build_bart, build_gpt2, secret
from transformers import AutoTokenizer, BertConfig, BertModel

from dpr_rag.data.passages import Passage, save_jsonl
from dpr_rag.rag.generator import Generator
from dpr_rag.rag.prompting import prompt
from dpr_rag.retrieval.encoder import default_encoder_path


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests that use the real default models/corpus")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own index cache, so tests never see each other's (or the user's) indexes."""
    monkeypatch.setenv("DPR_RAG_CACHE", str(tmp_path / "cache"))
    # Encoders run in torch unless a test asks for ONNX Runtime (tests/test_onnx_backend.py): exporting every tiny
    # model of every test to ONNX would only slow the suite down.
    monkeypatch.setenv("DPR_RAG_ENCODER_BACKEND", "torch")
    # precision "auto" means bf16 on CPUs with AMX/AVX512-BF16 and fp32 elsewhere: fix it to fp32 (subprocesses too) so
    # that the suite checks the same numbers on every machine; tests of the bf16 path ask for precision="bf16".
    monkeypatch.setenv("DPR_RAG_AUTO_PRECISION", "fp32")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 2-layer, 32-d BERT with random weights and the MiniLM (BERT uncased) tokenizer, saved as a HF folder."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(default_encoder_path()).save_pretrained(folder)
    return folder


@pytest.fixture
def toy_passages() -> list[Passage]:
    facts = [
        ("Mona Lisa", "The Mona Lisa is a portrait painting by the Italian artist Leonardo da Vinci."),
        ("Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower in Paris, France, completed in 1889."),
        ("Python (programming language)", "Python is a programming language created by Guido van Rossum and released in 1991."),
        ("Mount Everest", "Mount Everest is Earth's highest mountain above sea level, in the Himalayas."),
        ("Amazon River", "The Amazon River in South America is the largest river by discharge volume of water."),
        ("Great Wall of China", "The Great Wall of China is a series of fortifications built across northern China."),
        ("Marie Curie", "Marie Curie was a physicist and chemist who conducted pioneering research on radioactivity."),
        ("Jupiter", "Jupiter is the fifth planet from the Sun and the largest in the Solar System."),
    ]
    return [Passage(str(i), t, x) for i, (t, x) in enumerate(facts)]


@pytest.fixture
def toy_corpus(tmp_path, toy_passages):
    """`toy_passages` as a JSONL corpus file."""
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in toy_passages))
    return path


# ---- the RAG tests' tiny generators (tests/rag_helpers.py builds them) -----------------------------------------
@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run many small ops: on a busy 2-core machine one thread is far faster than two (RAG modules use it)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return build_gpt2(tmp_path_factory.mktemp("rag-gpt2"), TEXTS, init_range=SHARP)


@pytest.fixture(scope="module")
def bart_dir(tmp_path_factory):
    return build_bart(tmp_path_factory.mktemp("rag-bart"), TEXTS, init_range=SHARP)


@pytest.fixture(scope="module")
def copier_dir(tmp_path_factory):
    """A tiny GPT-2 trained (about a second) to answer SECRET_Q with the word its passage states."""
    folder = build_gpt2(tmp_path_factory.mktemp("rag-copier"), TEXTS, seed=1)
    gen = Generator.from_pretrained(folder)
    inputs = [prompt(SECRET_Q, secret(w)) for w in WORDS]
    optimizer = torch.optim.Adam(gen.model.parameters(), lr=3e-3)
    gen.model.train()
    for _ in range(800):
        logp, _ = gen.target_logprobs(inputs, WORDS)
        loss = -logp.sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.02:
            break
    assert loss.item() < 0.05, "the copying generator did not learn"
    gen.model.eval()
    gen.save_pretrained(folder)
    return folder


# ---- the evaluation tests' corpus and questions (tests/eval_helpers.py) -------------------------------------------
@pytest.fixture
def corpus_file(tmp_path, toy_passages):
    """`toy_passages` as a JSONL corpus file (the evaluation tests' corpus)."""
    path = tmp_path / "toy.jsonl"
    save_jsonl(toy_passages, path)
    return path


@pytest.fixture
def qa_file(tmp_path):
    """eval_helpers.QA as an NQ-open JSONL file."""
    return write_qa(tmp_path, "jsonl")
