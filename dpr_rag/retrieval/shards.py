"""Sharded encoding: N processes (machines or GPUs) each encode a slice of the corpus; one merge builds the index.

Shard I of N encodes the contiguous passages [I·n/N, (I+1)·n/N) with the passage tower and writes

    <shards>/shard-IIIII-of-NNNNN.npy    float16 embeddings, written batch by batch through a memory map
    <shards>/shard-IIIII-of-NNNNN.json   what they are: corpus and passage-encoder fingerprints, range, dim

The .json is written last, so a shard counts as done only when it is complete; re-running a finished shard
is a no-op, and a killed one starts over without touching the others. `merge_shards` checks that all N
shards exist and agree (same corpus, same encoder, ranges that tile the corpus), then streams the
memory-mapped embeddings into one FAISS index, so merging 21M vectors never holds them twice in memory.
float16 halves the disk and network cost of moving embeddings; it changes inner products by ~1e-3 relative.
"""

from __future__ import annotations

import json
import os
import tokenize
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data.passages import Passage, corpus_fingerprint
from ..errors import ConfigError, DataFormatError
from ..storage import atomic_file, check_writable, read_json
from .encoder import DualEncoder, resolve_precision
from .faiss_index import IVF_KINDS, DenseIndex, default_nlist

CHUNK = 8192  # passages encoded (and length-sorted) together before their rows are written


def shard_range(n: int, shard: int, num_shards: int) -> tuple[int, int]:
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ConfigError(f"--shard must be in 0..{num_shards - 1} (--num-shards {num_shards}), got {shard}")
    return shard * n // num_shards, (shard + 1) * n // num_shards


def shard_name(shard: int, num_shards: int) -> str:
    return f"shard-{shard:05d}-of-{num_shards:05d}"


def encode_shard(
    encoder: DualEncoder,
    passages: list[Passage],
    shards_dir: str | os.PathLike,
    shard: int,
    num_shards: int,
    batch_size: int = 64,
    precision: str = "auto",
    show_progress: bool = True,
) -> Path:
    """Encode this shard's slice of `passages` into `shards_dir`; returns the .npy path (skips a finished shard)."""
    start, stop = shard_range(len(passages), shard, num_shards)
    folder = Path(shards_dir)
    check_writable(folder)
    meta = {
        "shard": shard,
        "num_shards": num_shards,
        "start": start,
        "stop": stop,
        "dim": encoder.dim,
        "dtype": "float16",
        "corpus_fingerprint": corpus_fingerprint(passages),
        "passage_encoder_fingerprint": encoder.passage_fingerprint(),
        "precision": resolve_precision(precision),
    }
    npy, info = folder / f"{shard_name(shard, num_shards)}.npy", folder / f"{shard_name(shard, num_shards)}.json"
    if info.exists() and npy.exists() and read_json(info) == meta:
        return npy
    tmp = folder / f".{npy.name}.tmp-{os.getpid()}"
    try:
        rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(stop - start, encoder.dim))
        bar = tqdm(
            total=stop - start, desc=f"encoding {shard_name(shard, num_shards)}", unit="passage", disable=not show_progress
        )
        for a in range(start, stop, CHUNK):
            b = min(a + CHUNK, stop)
            rows[a - start : b - start] = encoder.encode_passages(
                passages[a:b], batch_size=batch_size, show_progress=False, precision=precision
            )
            bar.update(b - a)
        bar.close()
        rows.flush()
        del rows
        os.replace(tmp, npy)
    finally:
        tmp.unlink(missing_ok=True)
    with atomic_file(info) as f:
        json.dump(meta, f, indent=2)
    return npy


def read_shards(shards_dir: str | os.PathLike, passages: list[Passage]) -> tuple[list[np.ndarray], dict]:
    """Memory-map every shard of `shards_dir` after checking they cover `passages` exactly once."""
    folder = Path(shards_dir)
    infos = sorted(folder.glob("shard-*-of-*.json"))
    if not infos:
        raise DataFormatError(
            f"{folder}: no shard-*-of-*.json files; encode them with python -m dpr_rag.index --shard I --num-shards N"
        )
    metas = []
    for path in infos:
        metas.append(read_json(path))
    num_shards = metas[0]["num_shards"]
    done = {m["shard"] for m in metas if m["num_shards"] == num_shards}
    if len({m["num_shards"] for m in metas}) > 1:
        raise DataFormatError(f"{folder}: shards from runs with different --num-shards; keep one set")
    missing = [i for i in range(num_shards) if i not in done]
    if missing:
        raise DataFormatError(f"{folder}: {len(missing)} of {num_shards} shards missing or unfinished: {missing[:10]}")
    fp = corpus_fingerprint(passages)
    for key in ("passage_encoder_fingerprint", "dim", "precision"):
        if len({m[key] for m in metas}) > 1:
            raise DataFormatError(f"{folder}: shards disagree on {key}; re-encode them with the same model and settings")
    arrays = []
    for m in sorted(metas, key=lambda m: m["shard"]):
        name = shard_name(m["shard"], num_shards)
        if m["corpus_fingerprint"] != fp or (m["start"], m["stop"]) != shard_range(len(passages), m["shard"], num_shards):
            raise DataFormatError(f"{folder / name}.json: encoded from another corpus than the one given")
        try:  # allow_pickle=False: an object array (pickled Python objects) is refused, never loaded
            rows = np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, SyntaxError, EOFError, tokenize.TokenError) as e:  # a damaged header: numpy parses it
            raise DataFormatError(f"{folder / name}.npy: not a float16 embedding array ({str(e).splitlines()[0][:120]})") from e
        if rows.shape != (m["stop"] - m["start"], m["dim"]) or rows.dtype != np.float16:
            raise DataFormatError(f"{folder / name}.npy: shape {rows.shape} {rows.dtype} does not match its .json")
        arrays.append(rows)
    return arrays, metas[0]


def merge_shards(
    shards_dir: str | os.PathLike,
    passages: list[Passage],
    kind: str = "flat",
    chunk: int = 65536,
    show_progress: bool = True,
    **index_params,
) -> tuple[DenseIndex, str]:
    """One FAISS index over all shards, in corpus order; also returns the passage-encoder fingerprint they share."""
    arrays, meta = read_shards(shards_dir, passages)
    index = DenseIndex(meta["dim"], kind, **index_params)
    if kind in IVF_KINDS:  # train the quantisers on a sample spread over every shard
        rng = np.random.default_rng(0)
        want = 40 * (index_params.get("nlist") or default_nlist(len(passages)))
        sample = np.concatenate(
            [a[np.sort(rng.choice(len(a), size=min(len(a), want // len(arrays) + 1), replace=False))] for a in arrays if len(a)]
        )
        index.train(sample.astype(np.float32), n_total=len(passages))
    bar = tqdm(total=len(passages), desc="merging shards", unit="vector", disable=not show_progress)
    for rows in arrays:
        for a in range(0, len(rows), chunk):
            index.add(np.asarray(rows[a : a + chunk], dtype=np.float32))
            bar.update(min(chunk, len(rows) - a))
    bar.close()
    return index, meta["passage_encoder_fingerprint"]
