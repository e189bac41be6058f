import json
import os
import subprocess
import sys
import threading

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, BertConfig, BertModel

from dpr_rag.data.passages import save_jsonl
from dpr_rag.data.qa import load_dpr_json, load_qa
from dpr_rag.errors import ConfigError, DataFormatError
from dpr_rag.retrieval.encoder import DualEncoder, default_encoder_path
from dpr_rag.training.trainer import TrainConfig, train

FACTS = [
    ("Mona Lisa", "painted by Leonardo da Vinci", "who painted the mona lisa", "Leonardo da Vinci"),
    ("Eiffel Tower", "completed in 1889 in Paris", "when was the eiffel tower completed", "1889"),
    ("Python", "created by Guido van Rossum", "who created python", "Guido van Rossum"),
    ("Everest", "8,849 metres high in the Himalayas", "how high is mount everest", "8,849 metres"),
    ("Amazon", "flows through Brazil and Peru", "which countries does the amazon flow through", "Brazil"),
    ("Jupiter", "the largest planet with 95 moons", "how many moons does jupiter have", "95"),
    ("Curie", "won Nobel prizes in physics and chemistry", "what did marie curie win", "Nobel prizes"),
    ("Great Wall", "built over many centuries by Chinese dynasties", "who built the great wall", "Chinese dynasties"),
    ("Nile", "flows north into the Mediterranean Sea", "where does the nile flow into", "Mediterranean Sea"),
    ("Shakespeare", "wrote Hamlet and Macbeth", "who wrote hamlet", "Shakespeare"),
]


@pytest.fixture
def dpr_json(tmp_path):
    """DPR retriever JSON with a positive and two hard negatives per question."""
    data = []
    for i, (title, text, q, a) in enumerate(FACTS):
        others = [FACTS[(i + j) % len(FACTS)] for j in (1, 2)]
        data.append(
            {
                "question": q,
                "answers": [a],
                "positive_ctxs": [{"title": title, "text": f"{title} was {text}.", "passage_id": f"p{i}"}],
                "negative_ctxs": [],
                "hard_negative_ctxs": [
                    {"title": t, "text": f"{t} is {x}.", "passage_id": f"h{i}-{j}"} for j, (t, x, _, _) in enumerate(others)
                ],
            }
        )
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="session")
def no_dropout_model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-bert-nodrop")
    torch.manual_seed(1)
    BertModel(
        BertConfig(
            vocab_size=30522,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
    ).save_pretrained(folder)
    AutoTokenizer.from_pretrained(default_encoder_path()).save_pretrained(folder)
    return folder


def config(out, qa, model, **kw):
    base = dict(
        out=str(out),
        qa=str(qa),
        model=str(model),
        epochs=2,
        batch_size=4,
        hard_negatives=1,
        lr=1e-3,
        dev_fraction=0.2,
        eval_k=2,
        show_progress=False,
    )
    return TrainConfig(**{**base, **kw})


def test_training_lowers_the_loss_and_writes_loadable_checkpoints(tmp_path, dpr_json, tiny_model_dir):
    cfg = config(tmp_path / "out", dpr_json, tiny_model_dir, epochs=30, lr=3e-3)
    result = train(cfg)
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert len(losses) == result.steps == 30 * (8 // 4)  # 8 training questions after the 20% dev split
    assert sum(losses[-8:]) / 8 < 0.8 * sum(losses[:8]) / 8
    log = [json.loads(line) for line in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    assert {"loss", "in_batch_accuracy", "lr", "step"} <= log[1].keys() and log[0]["step"] == 0
    best = DualEncoder.from_pretrained(tmp_path / "out")  # the output folder loads its best checkpoint
    assert not best.settings.shared
    assert len(load_dpr_json(tmp_path / "out" / "data" / "train.json")) == 8
    assert (tmp_path / "out" / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_reproduces_the_next_steps(tmp_path, dpr_json, tiny_model_dir):
    full = train(config(tmp_path / "a", dpr_json, tiny_model_dir, save_every=1))
    stop = threading.Event()
    partial = train(
        config(tmp_path / "b", dpr_json, tiny_model_dir, save_every=1),
        callback=lambda r: stop.set() if r.get("step") == 2 else None,
        cancel=stop,
    )
    assert partial.cancelled and partial.steps == 2
    resumed = train(config(tmp_path / "b", dpr_json, tiny_model_dir, save_every=1, resume=True))

    def losses(res):
        return {r["step"]: r["loss"] for r in res.history if "loss" in r}

    assert set(losses(resumed)) == {3, 4}
    for s in (3, 4):  # dropout is on: equal losses need the data order and RNG state restored exactly
        assert losses(resumed)[s] == pytest.approx(losses(full)[s], rel=1e-5)
    a = load_file(tmp_path / "a" / "last" / "model" / "query_encoder" / "model.safetensors")
    b = load_file(tmp_path / "b" / "last" / "model" / "query_encoder" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4)


def test_bad_settings(tmp_path, dpr_json, tiny_model_dir):
    with pytest.raises(ConfigError, match="batch size 64 is larger than the 8 training examples"):
        train(config(tmp_path / "x", dpr_json, tiny_model_dir, batch_size=64))
    with pytest.raises(ConfigError, match="cannot resume"):
        train(config(tmp_path / "never", dpr_json, tiny_model_dir, resume=True))
    train(config(tmp_path / "y", dpr_json, tiny_model_dir, epochs=1))
    with pytest.raises(ConfigError, match="was trained from"):
        train(config(tmp_path / "y", dpr_json, default_encoder_path(), resume=True))
    with pytest.raises(ConfigError, match="^warmup_ratio must be a finite number in \\[0, 1\\), got 1.5$"):
        config(tmp_path / "z", dpr_json, tiny_model_dir, warmup_ratio=1.5)  # refused by the config, before any work
    assert not (tmp_path / "z").exists()


def test_given_examples_are_trained_on_instead_of_reading_the_qa_file(tmp_path, dpr_json, tiny_model_dir):
    """The app parses an upload once to check it and hands the examples over: the file is not read again (here it is
    gone, and the examples differ from what it held), yet it stays the recorded source of the run."""
    examples = load_qa(dpr_json)
    for ex in examples:
        ex.question = "given: " + ex.question
    dpr_json.unlink()
    cfg = config(tmp_path / "out", dpr_json, tiny_model_dir, epochs=1)
    result = train(cfg, examples=examples)
    assert result.steps == 2  # 8 training questions after the 20% dev split, 4 a batch
    saved = load_dpr_json(tmp_path / "out" / "data" / "train.json") + load_dpr_json(tmp_path / "out" / "data" / "dev.json")
    assert sorted(e.question for e in saved) == sorted(e.question for e in examples)
    state = json.loads((tmp_path / "out" / "last" / "trainer_state.json").read_text())
    assert state["config"]["qa"] == str(dpr_json)
    with pytest.raises(DataFormatError):  # without the examples the (deleted) file is what is read
        train(config(tmp_path / "other", dpr_json, tiny_model_dir, epochs=1))


def test_distant_supervision_from_qa_pairs_and_a_corpus(tmp_path, tiny_model_dir, toy_passages):
    corpus = tmp_path / "corpus.jsonl"
    save_jsonl(toy_passages, corpus)
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        "\n".join(
            json.dumps(x)
            for x in [
                {"question": "who painted the mona lisa portrait", "answer": ["Leonardo da Vinci"]},
                {"question": "when was the eiffel tower in paris completed", "answer": ["1889"]},
                {"question": "who created the python programming language", "answer": ["Guido van Rossum"]},
                {"question": "what is the highest mountain", "answer": ["Everest"]},
                {"question": "who invented the telephone", "answer": ["Alexander Graham Bell"]},  # nowhere: dropped
            ]
        )
    )
    result = train(
        TrainConfig(
            out=str(tmp_path / "o"),
            qa=str(qa),
            corpus=str(corpus),
            model=str(tiny_model_dir),
            batch_size=2,
            dev_fraction=0.0,
            show_progress=False,
        )
    )
    train_set = load_dpr_json(tmp_path / "o" / "data" / "train.json")
    assert len(train_set) == 4 and result.steps == 2
    mona = next(e for e in train_set if "mona" in e.question)
    assert mona.positive_ctxs[0].title == "Mona Lisa"
    assert all("Leonardo" not in p.text for p in mona.hard_negative_ctxs)


def test_two_process_gloo_run_equals_one_process(tmp_path, dpr_json, no_dropout_model_dir):
    """torchrun with 2 CPU processes (gloo): each holds half the batch, passages are gathered across ranks,
    so the weights after training equal a single process holding the whole batch."""
    args = [
        "--recipe",
        "dpr",
        "--qa",
        str(dpr_json),
        "--model",
        str(no_dropout_model_dir),
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--hard-negatives",
        "1",
        "--lr",
        "1e-3",
        "--dev-fraction",
        "0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29517",
            "-m",
            "dpr_rag.train",
            "--out",
            str(tmp_path / "two"),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, "-m", "dpr_rag.train", "--out", str(tmp_path / "one"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    logs = [
        [json.loads(line) for line in (tmp_path / run / "train_log.jsonl").read_text().splitlines()] for run in ("one", "two")
    ]
    steps = [[(r["loss"], r["grad_norm"], r["in_batch_accuracy"]) for r in log if "loss" in r] for log in logs]
    assert len(steps[0]) == 4
    for a, b in zip(*steps, strict=True):  # same global-batch loss at every step: same updates in between
        assert a == pytest.approx(b, rel=1e-4, abs=2e-4)  # grad_norm is logged to 4 decimals
    start = load_file(no_dropout_model_dir / "model.safetensors")
    # The last LayerNorm bias of the passage tower adds the same vector to every passage, which shifts all of a
    # question's scores equally: its gradient is zero up to rounding, which Adam normalises into noise-driven steps.
    invariant = {"passage_encoder": "encoder.layer.1.output.LayerNorm.bias"}
    for tower in ("query_encoder", "passage_encoder"):
        w1 = load_file(tmp_path / "one" / "last" / "model" / tower / "model.safetensors")
        w2 = load_file(tmp_path / "two" / "last" / "model" / tower / "model.safetensors")
        moved = max(float((w1[n] - start[n]).abs().max()) for n in w1 if n in start)
        assert moved > 1e-4  # training changed the weights, so the comparison below means something
        for name in w1:
            if name != invariant.get(tower):
                torch.testing.assert_close(w2[name], w1[name], atol=1e-5, rtol=1e-4, msg=name)
