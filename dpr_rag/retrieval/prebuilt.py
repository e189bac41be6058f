"""Passage embeddings shipped with the package, so that the default corpus's dense index is ready without encoding.

`dpr_rag/data/default_embeddings/embeddings.safetensors` holds the embedded default corpus (10,365 passages of
Wikipedia summaries) encoded by the default encoder (all-MiniLM-L6-v2, fp32, `bench/ship_default_embeddings.py`)
and stored as float16: 8 MB instead of ~12 minutes of encoding on two cores. float16 changes inner products by
~1e-3 relative (the same rounding as the shards of `python -m dpr_rag.index --shards`). The file's metadata names the corpus and
passage-encoder fingerprints it was made from; `shipped_embeddings` returns the vectors only when both match what
is being indexed, so a changed corpus, encoder or encoder setting is encoded afresh, never served stale vectors.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from ..errors import DataFormatError
from ..storage import atomic_file

SHIPPED_EMBEDDINGS = Path(__file__).resolve().parents[1] / "data" / "default_embeddings" / "embeddings.safetensors"
TENSOR = "passage_embeddings"


def shipped_embeddings(corpus_fingerprint: str, encoder_fingerprint: str, path: Path | None = None) -> np.ndarray | None:
    """The shipped float32 embeddings of this corpus under this passage encoder, or None if none were shipped for it."""
    path = SHIPPED_EMBEDDINGS if path is None else path
    if not path.is_file():
        return None
    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
            if (meta.get("corpus_fingerprint"), meta.get("passage_encoder_fingerprint")) != (
                corpus_fingerprint,
                encoder_fingerprint,
            ):
                return None
            vectors = f.get_tensor(TENSOR)
    except (SafetensorError, OSError) as e:
        raise DataFormatError(f"{path}: not a readable safetensors file of passage embeddings ({e})") from e
    if vectors.ndim != 2 or len(vectors) != int(meta.get("n_passages", -1)):
        raise DataFormatError(f"{path}: {TENSOR} has shape {vectors.shape}, not the {meta.get('n_passages')} passages it names")
    return vectors.astype(np.float32)


def save_embeddings(
    vectors: np.ndarray, corpus_fingerprint: str, encoder_fingerprint: str, path: str | os.PathLike, source: str
) -> None:
    """Write `vectors` as float16 safetensors with the fingerprints that `shipped_embeddings` checks (atomically)."""
    meta = {
        "corpus_fingerprint": corpus_fingerprint,
        "passage_encoder_fingerprint": encoder_fingerprint,
        "n_passages": str(len(vectors)),
        "source": source,
    }
    data = save({TENSOR: np.ascontiguousarray(vectors, dtype=np.float16)}, metadata=meta)
    with atomic_file(path, "wb") as f:
        f.write(data)
