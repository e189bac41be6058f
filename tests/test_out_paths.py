"""No command overwrites what it did not write: an --out that is a user's file, or a folder of something else, is
refused before any work, and stays byte for byte as it was."""

from __future__ import annotations

import pytest

from dpr_rag import index as index_cli
from dpr_rag.data.passages import save_jsonl
from dpr_rag.errors import ConfigError
from dpr_rag.storage import check_output_folder


@pytest.fixture
def corpus(tmp_path, toy_passages):
    path = tmp_path / "c.jsonl"
    save_jsonl(toy_passages, path)
    return path


def test_index_refuses_a_users_file_and_folder_and_leaves_them_intact(tmp_path, corpus):
    users_file = tmp_path / "v.tsv"
    users_file.write_text("my data\n")
    with pytest.raises(ConfigError, match="is a file"):
        index_cli.main(["--corpus", str(corpus), "--bm25-only", "--out", str(users_file)])
    assert users_file.read_text() == "my data\n" and sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "v.tsv"]
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ConfigError, match="not an index folder"):
        index_cli.main(["--corpus", str(corpus), "--bm25-only", "--out", str(folder)])
    assert [p.name for p in folder.iterdir()] == ["a.jpg"]


def test_index_replaces_its_own_folder(tmp_path, corpus):
    out = tmp_path / "idx"
    for _ in range(2):  # the second run replaces the first run's folder
        assert index_cli.main(["--corpus", str(corpus), "--bm25-only", "--out", str(out)]) == 0
    assert (out / "manifest.json").is_file()


def test_trainers_refuse_a_foreign_out(tmp_path):
    from dpr_rag.training.reranker_trainer import RerankerTrainConfig, train_reranker
    from dpr_rag.training.trainer import TrainConfig, train

    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a training run's folder"):
        train(TrainConfig(out=str(foreign), show_progress=False))
    with pytest.raises(ConfigError, match="not a reranker run's folder"):
        train_reranker(RerankerTrainConfig(out=str(foreign), show_progress=False))
    assert (foreign / "todo.txt").read_text() == "keep me" and len(list(foreign.iterdir())) == 1


def test_check_output_folder_accepts_new_empty_and_own_folders(tmp_path):
    assert check_output_folder(tmp_path / "new", ("m",), "x") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "empty", ("m",), "x")
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "m").write_text("")
    check_output_folder(tmp_path / "own", ("m",), "x")


def test_an_index_folder_finds_its_model_from_any_folder(tmp_path, corpus, tiny_model_dir, monkeypatch, toy_passages):
    import shutil

    from dpr_rag.retrieval.searcher import Searcher

    shutil.copytree(tiny_model_dir, tmp_path / "enc")
    monkeypatch.chdir(tmp_path)
    assert index_cli.main(["--corpus", str(corpus), "--model", "enc", "--out", "idx"]) == 0  # a relative --model
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    hits = Searcher.open(index=tmp_path / "idx", show_progress=False).search(["mona lisa"], 2, "dense")[0]
    assert len(hits) == 2


def test_a_resumed_training_logs_each_step_once(tmp_path, tiny_model_dir):
    import json
    import threading

    from test_trainer import FACTS, config

    from dpr_rag.training.trainer import train

    data = [
        {"question": q, "answers": [a], "positive_ctxs": [{"title": t, "text": f"{t} was {x}.", "passage_id": f"p{i}"}]}
        for i, (t, x, q, a) in enumerate(FACTS)
    ]
    qa = tmp_path / "train.json"
    qa.write_text(json.dumps(data))
    stop = threading.Event()
    # checkpoints every 2 steps; stopped after step 3, so the log is one step past the checkpoint it resumes from
    train(
        config(tmp_path / "run", qa, tiny_model_dir, save_every=2),
        callback=lambda r: stop.set() if r.get("step") == 3 else None,
        cancel=stop,
    )
    train(config(tmp_path / "run", qa, tiny_model_dir, save_every=2, resume=True))
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    trained = [
        s
        for s, line in zip(steps, (tmp_path / "run" / "train_log.jsonl").read_text().splitlines(), strict=True)
        if "loss" in line
    ]
    assert trained == sorted(set(trained)) and trained[-1] == 4
