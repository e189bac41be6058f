"""Changing an index folder without rebuilding it: add passages (only they are encoded) or delete passages by id.

Both write a new version of the whole folder beside the old one and swap it in with one rename
(`storage.atomic_dir`), so a killed or failed change leaves the previous index serving and a reader never sees a
half-changed one; the manifest's corpus fingerprint and passage count describe the corpus really indexed.
- add: the new passages are encoded with the folder's own encoder (checked against the manifest's passage-encoder
  fingerprint) and appended to the dense index (IVF kinds keep their trained quantiser); BM25 is rebuilt over all
  passages, since bm25s cannot add documents (BENCHMARKS.md gives its time at 1M passages).
- delete: the passages leave passages.jsonl, BM25 is rebuilt, and the dense index keeps the other vectors in corpus
  order (`DenseIndex.subset`: the same kind and trained quantiser, no encoding), so positions stay aligned.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.passages import Passage, corpus_fingerprint
from ..errors import ConfigError
from ..storage import read_json
from .bm25 import BM25Retriever
from .faiss_index import DenseIndex
from .searcher import MANIFEST, Searcher, dense_cache_folder, save_index_folder


@dataclass
class IndexChange:
    added: int = 0
    deleted: int = 0
    n_passages: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per stage: encode, bm25, dense, write


def _bm25_like(old: BM25Retriever, passages: list[Passage]) -> BM25Retriever:
    return BM25Retriever(passages, k1=old.k1, b=old.b, engine=old.engine)


def add_passages(folder: str | os.PathLike, new: list[Passage], report: Callable[[str], None] = lambda line: None) -> IndexChange:
    """Append `new` to the index folder: encodes only them; every retriever finds them afterwards."""
    searcher = Searcher.open(index=folder, show_progress=False)
    known = {p.id for p in searcher.passages}
    clash = [p.id for p in new if p.id in known]
    seen: set[str] = set()
    repeated = [p.id for p in new if p.id in seen or seen.add(p.id)]  # type: ignore[func-returns-value]
    if clash or repeated:
        raise ConfigError(f"passage ids already in {folder} or repeated: {', '.join((clash + repeated)[:10])}")
    if not new:
        raise ConfigError("no passages to add")
    change, t0 = IndexChange(added=len(new)), time.perf_counter()
    dense = searcher.dense().index if (Path(folder) / "dense").exists() else None
    if dense is not None:
        dense.add(searcher.encoder.encode_passages(new, show_progress=True))
        change.seconds["encode"] = time.perf_counter() - t0
        report(f"encoded and added {len(new):,} passages: {change.seconds['encode']:.1f} s")
    return _write(folder, searcher, searcher.passages + new, dense, change, report)


def delete_passages(folder: str | os.PathLike, ids: list[str], report: Callable[[str], None] = lambda line: None) -> IndexChange:
    """Remove the passages with these ids: no retriever returns them afterwards; nothing is encoded."""
    searcher = Searcher.open(index=folder, show_progress=False)
    position = {p.id: i for i, p in enumerate(searcher.passages)}
    unknown = [i for i in ids if i not in position]
    if unknown:
        raise ConfigError(f"no passage with id {', '.join(unknown[:10])} in {folder}")
    gone = {position[i] for i in ids}
    keep = np.array([i for i in range(len(searcher.passages)) if i not in gone], dtype=np.int64)
    if not len(keep):
        raise ConfigError("deleting every passage would leave an empty index; build a new one instead")
    change, t0 = IndexChange(deleted=len(gone)), time.perf_counter()
    dense = None
    if (Path(folder) / "dense").exists():
        dense = DenseIndex.load(Path(folder) / "dense").subset(keep)
        change.seconds["dense"] = time.perf_counter() - t0
        report(f"dense index without {len(gone):,} passages: {change.seconds['dense']:.1f} s")
    return _write(folder, searcher, [searcher.passages[i] for i in keep], dense, change, report)


def _write(folder, searcher: Searcher, passages: list[Passage], dense, change: IndexChange, report) -> IndexChange:
    t0 = time.perf_counter()
    bm25 = _bm25_like(searcher.bm25(), passages)
    change.seconds["bm25"] = time.perf_counter() - t0
    report(f"BM25 rebuilt over {len(passages):,} passages: {change.seconds['bm25']:.1f} s")
    manifest = read_json(Path(folder) / MANIFEST)
    t0 = time.perf_counter()
    save_index_folder(folder, passages, bm25, dense, manifest.get("model"), manifest.get("passage_encoder_fingerprint"))
    change.seconds["write"] = time.perf_counter() - t0
    change.n_passages = len(passages)
    report(f"saved {folder}: {len(passages):,} passages ({change.seconds['write']:.1f} s)")
    return change


def cache_changed_corpus(old: Searcher, passages: list[Passage], added: list[Passage] | None = None, keep=None) -> None:
    """Put the dense index of a changed corpus into the cache, made from `old`'s (a copy plus the vectors of
    `added`, which are the only passages encoded; or the vectors at positions `keep`), so that a `Searcher` over
    `passages` loads it instead of encoding the corpus. `old` keeps serving unchanged meanwhile."""
    index = old.dense().index
    changed = index.subset(np.arange(len(index)) if keep is None else np.asarray(keep, dtype=np.int64))
    if added:
        changed.add(old.encoder.encode_passages(added, show_progress=False, precision=old.precision))
    if len(changed) != len(passages):
        raise ConfigError(f"the changed index holds {len(changed):,} vectors for {len(passages):,} passages")
    folder = dense_cache_folder(
        corpus_fingerprint(passages), old.encoder.passage_fingerprint(), old.index_kind, old.precision, old.index_params
    )
    changed.save(folder)
