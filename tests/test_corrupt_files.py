"""Damaged files the project wrote (a flipped block in an index, truncated JSON, a bad .npy header or safetensors)
are one clear error naming the file, never a traceback and never silently changed scores."""

from __future__ import annotations

import numpy as np
import pytest
from test_trainer import config, dpr_json  # noqa: F401  (dpr_json is a fixture)

from dpr_rag.data.passages import save_jsonl
from dpr_rag.errors import DprRagError
from dpr_rag.retrieval.encoder import DualEncoder
from dpr_rag.retrieval.faiss_index import DenseIndex
from dpr_rag.retrieval.searcher import Searcher
from dpr_rag.retrieval.shards import encode_shard, merge_shards
from dpr_rag.training.trainer import train


def flip_middle(path, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + n] = bytes(b ^ 0xFF for b in data[mid : mid + n])
    path.write_bytes(bytes(data))


@pytest.fixture
def saved_index(tmp_path):
    index = DenseIndex(16, "flat")
    index.add(np.random.default_rng(0).standard_normal((200, 16)).astype(np.float32))
    index.save(tmp_path / "dense")
    return tmp_path / "dense"


def test_flipped_bytes_in_an_index_are_detected(saved_index):
    DenseIndex.load(saved_index)  # intact: loads
    flip_middle(saved_index / "index.faiss")
    with pytest.raises(DprRagError, match="index.faiss: checksum mismatch"):
        DenseIndex.load(saved_index)


@pytest.mark.parametrize("content", ['{"format_version": 1, "kind"', "", '{"format_version": 1}', "[1, 2]"])
def test_a_damaged_index_json_is_one_error(saved_index, content):
    (saved_index / "index.json").write_text(content)
    with pytest.raises(DprRagError, match="index.json"):
        DenseIndex.load(saved_index)


def test_a_damaged_manifest_is_one_error(tmp_path, toy_passages):
    from dpr_rag import index as index_cli

    corpus = tmp_path / "c.jsonl"
    save_jsonl(toy_passages, corpus)
    index_cli.main(["--corpus", str(corpus), "--bm25-only", "--out", str(tmp_path / "idx")])
    (tmp_path / "idx" / "manifest.json").write_text('{"model": nul')
    with pytest.raises(DprRagError, match="manifest.json: damaged"):
        Searcher.open(index=tmp_path / "idx")


def test_a_damaged_trainer_state_is_one_error_on_resume(tmp_path, dpr_json, tiny_model_dir):  # noqa: F811
    train(config(tmp_path / "run", dpr_json, tiny_model_dir, epochs=1, save_every=1))
    (tmp_path / "run" / "last" / "trainer_state.json").write_text('{"step": 1, "best')
    with pytest.raises(DprRagError, match="trainer_state.json: damaged"):
        train(config(tmp_path / "run", dpr_json, tiny_model_dir, epochs=1, save_every=1, resume=True))


def test_a_damaged_npy_header_and_safetensors_are_one_error(tmp_path, tiny_model_dir, toy_passages):
    encoder = DualEncoder.from_pretrained(str(tiny_model_dir))
    npy = encode_shard(encoder, toy_passages, tmp_path / "emb", 0, 1, show_progress=False)
    data = bytearray(npy.read_bytes())
    data[10:40] = b"x" * 30  # inside the header dict
    npy.write_bytes(bytes(data))
    with pytest.raises(DprRagError, match=r"\.npy"):
        merge_shards(tmp_path / "emb", toy_passages)
    encoder.save_pretrained(tmp_path / "enc")
    weights = next((tmp_path / "enc").rglob("model.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(DprRagError, match="safetensors|cannot load"):
        DualEncoder.from_pretrained(str(tmp_path / "enc"))


def test_resuming_without_the_runs_dev_set_is_refused(tmp_path, dpr_json, tiny_model_dir):  # noqa: F811
    from dpr_rag.errors import ConfigError

    train(config(tmp_path / "run", dpr_json, tiny_model_dir, epochs=1, save_every=1))
    assert (tmp_path / "run" / "data" / "dev.json").is_file()
    (tmp_path / "run" / "data" / "dev.json").unlink()
    with pytest.raises(ConfigError, match="dev.json is missing"):
        train(config(tmp_path / "run", dpr_json, tiny_model_dir, epochs=1, save_every=1, resume=True))
