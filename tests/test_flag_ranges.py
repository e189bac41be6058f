"""Numeric settings that used to crash FAISS (segfault, abort), exhaust memory, give a traceback or silently fall back
to a default are refused with one clear error, where they are defined."""

from __future__ import annotations

import numpy as np
import pytest

from dpr_rag import search as search_cli
from dpr_rag.data.passages import save_jsonl
from dpr_rag.errors import ConfigError
from dpr_rag.retrieval.faiss_index import DenseIndex


@pytest.mark.parametrize(
    "kind, params, field",
    [
        ("hnsw", {"hnsw_m": 1}, "hnsw_m"),  # segfaulted
        ("hnsw", {"hnsw_m": 0}, "hnsw_m"),  # aborted in FAISS
        ("hnsw", {"hnsw_m": -5}, "hnsw_m"),  # grew memory until killed
        ("hnsw", {"ef_search": 1_000_000_000}, "ef_search"),  # MemoryError
        ("ivfpq", {"nlist": -3}, "nlist"),
        ("ivfpq", {"nlist": 0}, "nlist"),  # silently became the default
        ("ivfpq", {"pq_m": -4}, "pq_m"),
        ("ivfpq", {"pq_m": 0}, "pq_m"),
        ("ivfpq", {"pq_m": 5}, "pq_m"),  # does not divide 8
        ("ivfpq", {"nprobe": 0}, "nprobe"),
    ],
)
def test_index_parameters_out_of_range_are_refused(kind, params, field):
    with pytest.raises(ConfigError, match=field):
        DenseIndex(8, kind, **params)


def test_search_time_parameters_are_checked_on_a_built_index():
    index = DenseIndex(8, "hnsw")
    index.add(np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32))
    with pytest.raises(ConfigError, match="ef_search"):
        index.tune(ef_search=1_000_000_000)
    index.tune(ef_search=64)


@pytest.mark.parametrize("weight", ["nan", "inf", "-1"])
def test_hybrid_weight_must_be_a_finite_non_negative_number(tmp_path, toy_passages, tiny_model_dir, weight):
    corpus = tmp_path / "c.jsonl"
    save_jsonl(toy_passages, corpus)
    argv = ["mona lisa", "--corpus", str(corpus), "--model", str(tiny_model_dir), "--retriever", "hybrid", "--weight", weight]
    with pytest.raises(ConfigError, match="weight"):
        search_cli.main(argv)


def test_the_expected_answer_box_is_bounded():
    from dpr_rag.app.render import MAX_EXPECTED_CHARS, parse_answers

    assert parse_answers(" Leonardo | da Vinci |") == ["Leonardo", "da Vinci"]
    with pytest.raises(ConfigError, match="characters long"):
        parse_answers("x" * (MAX_EXPECTED_CHARS + 1))
    with pytest.raises(ConfigError, match="expected answers"):
        parse_answers("|".join("a" * 3 for _ in range(21)))


def test_an_uploaded_huge_passage_is_split_into_dpr_blocks(tmp_path):
    import json

    from dpr_rag.app.uploads import load_uploaded_corpus

    stored = tmp_path / "up" / "c.jsonl"
    stored.parent.mkdir()
    huge = " ".join(f"w{i}" for i in range(250_000))  # ~1.7 MB on one line
    rows = [{"id": "a", "title": "A", "text": "short passage"}, {"id": "b", "title": "B", "text": huge}]
    stored.write_text("".join(json.dumps(r) + "\n" for r in rows))
    passages = load_uploaded_corpus(stored, "c.jsonl")
    assert passages[0].id == "a" and len(passages) == 1 + 2500
    assert passages[1].id == "b-1" and passages[1].title == "B" and max(len(p.text.split()) for p in passages) == 100
    assert " ".join(p.text for p in passages[1:]) == huge  # nothing lost


@pytest.mark.parametrize(
    "argv, field",
    [
        (["--batch-size", "0"], "batch_size"),
        (["--index-type", "hnsw", "--hnsw-m", "1"], "hnsw_m"),
        (["--index-type", "ivfpq", "--nlist", "0"], "nlist"),
        (["--index-type", "ivfpq", "--pq-m", "-4"], "pq_m"),
    ],
)
def test_index_cli_flags_give_one_error_line(tmp_path, toy_passages, tiny_model_dir, argv, field):
    import subprocess
    import sys

    corpus = tmp_path / "c.jsonl"
    save_jsonl(toy_passages, corpus)
    cmd = [sys.executable, "-m", "dpr_rag.index", "--corpus", str(corpus), "--model", str(tiny_model_dir), "--no-cache", *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {field} must be")
