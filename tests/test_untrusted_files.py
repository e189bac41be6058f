"""Files from elsewhere (indexes, checkpoints, shards) can be wrong or hostile: they are refused with a clear
error and never unpickled. A tampered file here carries a pickle whose loading would create a marker file."""

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from test_trainer import config, dpr_json  # noqa: F401  (dpr_json is a fixture)

from dpr_rag.errors import DataFormatError
from dpr_rag.retrieval.bm25 import BM25Retriever
from dpr_rag.retrieval.encoder import DualEncoder
from dpr_rag.retrieval.shards import encode_shard, merge_shards
from dpr_rag.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this runs `open(marker, "w")`: proof that a file was unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def hostile_npy(path: Path, marker: Path) -> None:
    np.save(path, np.array([Payload(marker)], dtype=object), allow_pickle=True)


def test_bm25_index_with_a_pickled_array_is_refused(tmp_path, toy_passages):
    BM25Retriever(toy_passages).save(tmp_path / "bm25")
    hostile_npy(tmp_path / "bm25" / "data.csc.index.npy", tmp_path / "pwned")
    with pytest.raises(DataFormatError, match="unreadable bm25s index"):
        BM25Retriever.load(tmp_path / "bm25")
    assert not (tmp_path / "pwned").exists()


def test_shard_with_a_pickled_array_is_refused(tmp_path, tiny_model_dir, toy_passages):
    encoder = DualEncoder.from_pretrained(str(tiny_model_dir))
    npy = encode_shard(encoder, toy_passages, tmp_path / "emb", 0, 1, show_progress=False)
    hostile_npy(npy, tmp_path / "pwned")
    with pytest.raises(DataFormatError, match="not a float16 embedding array"):
        merge_shards(tmp_path / "emb", toy_passages)
    assert not (tmp_path / "pwned").exists()


def test_checkpoint_with_a_pickled_object_is_refused_on_resume(tmp_path, dpr_json, tiny_model_dir):  # noqa: F811
    train(config(tmp_path / "run", dpr_json, tiny_model_dir, epochs=1, save_every=1))
    with open(tmp_path / "run" / "last" / "optimizer.pt", "wb") as f:
        pickle.dump({"state": Payload(tmp_path / "pwned")}, f)
    with pytest.raises(DataFormatError, match="optimizer.pt: not a loadable checkpoint file"):
        train(config(tmp_path / "run", dpr_json, tiny_model_dir, epochs=1, save_every=1, resume=True))
    assert not (tmp_path / "pwned").exists()
    torch.save({"state": Payload(tmp_path / "pwned")}, tmp_path / "run" / "last" / "optimizer.pt")  # torch's zip format
    with pytest.raises(DataFormatError, match="not a loadable checkpoint file"):
        train(config(tmp_path / "run", dpr_json, tiny_model_dir, epochs=1, save_every=1, resume=True))
    assert not (tmp_path / "pwned").exists()


def test_index_folder_with_a_mismatched_manifest_is_refused(tmp_path, toy_passages):
    BM25Retriever(toy_passages).save(tmp_path / "bm25")
    meta = json.loads((tmp_path / "bm25" / "bm25.json").read_text())
    (tmp_path / "bm25" / "bm25.json").write_text(json.dumps({**meta, "n_passages": 999}))
    with pytest.raises(DataFormatError, match="bm25.json says 999 passages"):
        BM25Retriever.load(tmp_path / "bm25")


# Code that could execute data: none of it may appear in the project's own sources.
FORBIDDEN = [
    (r"\bpickle\.loads?\(|\bimport pickle\b|cPickle|\bdill\b|joblib\.load", "unpickling"),
    (r"allow_pickle\s*=\s*True", "allow_pickle=True"),
    (r"torch\.load\((?![^)]*weights_only\s*=\s*True)", "torch.load without weights_only=True"),
    (r"(?<![.\w])(eval|exec)\(", "eval/exec"),
    (r"trust_remote_code\s*=\s*True", "trust_remote_code=True"),
]


def test_no_source_file_can_execute_data():
    sources = [ROOT / "app.py", *(ROOT / "dpr_rag").rglob("*.py"), *(ROOT / "eval").rglob("*.py"), *(ROOT / "bench").glob("*.py")]
    assert len(sources) > 30
    offences = [
        f"{p.relative_to(ROOT)}:{n}: {what}: {line.strip()}"
        for p in sources
        for n, line in enumerate(p.read_text().splitlines(), start=1)
        for pattern, what in FORBIDDEN
        if re.search(pattern, line) and not line.lstrip().startswith("#")
    ]
    assert offences == []
    assert os.path.basename(__file__) not in {p.name for p in sources}  # this file (which must pickle) is not scanned
