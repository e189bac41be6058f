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
