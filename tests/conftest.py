"""Shared fixtures: tiny models built from a config (random weights, no download) and small corpora."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from dpr_rag.encoder import default_encoder_path
from dpr_rag.passages import Passage


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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 2-layer, 32-d BERT with random weights and the MiniLM (BERT uncased) tokenizer, saved as a HF folder."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
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
