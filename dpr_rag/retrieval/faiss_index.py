"""A FAISS inner-product index over passage embeddings.

- "flat": exact `IndexFlatIP` (DPR's default; 4·d bytes a vector, exhaustive search);
- "fp16": exhaustive search over vectors stored as float16 (`IndexScalarQuantizer` QT_fp16; 2·d bytes a vector,
  scores within ~1e-3 of flat: half the memory for the same ranking);
- "hnsw": `IndexHNSWFlat` graph (fast approximate search, ~4·d + 8·M bytes a vector, no training);
- "ivfpq": `IndexIVFPQ` (inverted lists + product quantisation, ~d/4 + 16 bytes a vector: the choice when a flat
  index no longer fits in memory; needs training on a sample, done on the first `add`);
- "ivfpq-exact": the same IVF-PQ codes in memory (~d/4 + 8 bytes a vector) find `candidates` per query, which are
  then scored exactly against the float16 vectors kept on disk (`vectors.npy`, memory-mapped): the exact top-k of
  those candidates, at IVF-PQ's memory. Recall is bounded by whether the true top-k are among the candidates.

Saved with FAISS's own binary format (`faiss.write_index`, never pickle) next to `index.json`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..config_checks import check_int
from ..errors import ConfigError, DataFormatError
from ..storage import atomic_dir, read_json
from .disk_vectors import DiskVectors

KINDS = ("flat", "fp16", "hnsw", "ivfpq", "ivfpq-exact")
IVF_KINDS = ("ivfpq", "ivfpq-exact")
BUILD_PARAMS = ("hnsw_m", "nlist", "pq_m")  # change what is stored: part of an index's cache key
SEARCH_PARAMS = ("ef_search", "nprobe", "candidates")  # change only how it is searched: settable on a built index


def params_key(params: dict) -> str:
    """The build parameters that differ from the defaults, as a cache-key suffix ("" for the defaults)."""
    return "".join(f"-{k}{params[k]}" for k in BUILD_PARAMS if params.get(k) is not None)


FORMAT_VERSION = 1
MAX_DIM = 65_536
MAX_HNSW_M = 256  # FAISS's graph degree; memory grows with it (8·M bytes a vector)
MAX_NLIST = 1 << 20
MAX_EF_SEARCH = 65_536  # candidates kept per query: beyond this the search allocates without bound
MAX_CANDIDATES = 65_536
TRAIN_POINTS_PER_LIST = 64  # IVF training sample per inverted list (FAISS advises 30 to 256)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_nlist(n: int) -> int:
    """Rule of thumb from the FAISS wiki: ~4·sqrt(n) inverted lists, and at least 39 training points per list."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


class DenseIndex:
    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        *,
        hnsw_m: int = 32,
        ef_search: int = 128,
        nlist: int | None = None,
        pq_m: int | None = None,
        nprobe: int = 16,
        candidates: int = 256,
    ):
        if kind not in KINDS:
            raise ConfigError(f"unknown index type {kind!r}; choose one of {', '.join(KINDS)}")
        # FAISS crashes (segfault, abort) or exhausts memory on out-of-range values: check them first.
        check_int("dim", dim, 1, MAX_DIM)
        check_int("hnsw_m", hnsw_m, 2, MAX_HNSW_M)
        check_int("nlist", nlist, 1, MAX_NLIST, optional=True)
        check_int("ef_search", ef_search, 1, MAX_EF_SEARCH)
        check_int("nprobe", nprobe, 1, MAX_NLIST)
        check_int("pq_m", pq_m, 1, dim, optional=True)
        check_int("candidates", candidates, 1, MAX_CANDIDATES)
        if pq_m is not None and dim % pq_m:
            raise ConfigError(f"pq_m must divide the dimension {dim}, got {pq_m}")
        self.dim, self.kind = dim, kind
        self.origin = "encoded"  # how its vectors were obtained, for reports: set by whoever fills it
        self.params: dict[str, Any] = {"hnsw_m": hnsw_m, "ef_search": ef_search, "nlist": nlist, "pq_m": pq_m, "nprobe": nprobe}
        self.params["candidates"] = candidates
        self.vectors = DiskVectors(dim) if kind == "ivfpq-exact" else None
        # Any: FAISS's classes differ by kind (.hnsw exists only on HNSW indexes); None until IVF-PQ is trained.
        self.index: Any = None
        if kind == "flat":
            self.index = faiss.IndexFlatIP(dim)
        elif kind == "fp16":
            self.index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        elif kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = 80
            self.index.hnsw.efSearch = ef_search
        # ivfpq is created on the first add, when the number of vectors fixes nlist.

    def tune(self, ef_search: int | None = None, nprobe: int | None = None, candidates: int | None = None) -> None:
        """Set search-time parameters: HNSW's efSearch, IVF-PQ's nprobe and the exact rescoring's candidates per
        query (more = higher recall, slower)."""
        check_int("ef_search", ef_search, 1, MAX_EF_SEARCH, optional=True)
        check_int("nprobe", nprobe, 1, MAX_NLIST, optional=True)
        check_int("candidates", candidates, 1, MAX_CANDIDATES, optional=True)
        if candidates is not None:
            self.params["candidates"] = candidates
        if ef_search is not None:
            self.params["ef_search"] = ef_search
            if self.kind == "hnsw":
                self.index.hnsw.efSearch = ef_search
        if nprobe is not None:
            self.params["nprobe"] = nprobe
            if self.kind in IVF_KINDS and self.index is not None:
                faiss.extract_index_ivf(self.index).nprobe = min(nprobe, self.params["nlist"])

    def __len__(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def train(self, sample: np.ndarray, n_total: int | None = None) -> None:
        """Train an IVF-PQ index on `sample` for a corpus of `n_total` vectors (then `add` in chunks)."""
        if self.kind in IVF_KINDS and self.index is None:
            self._make_ivfpq(np.ascontiguousarray(sample, dtype=np.float32), n_total)

    def _make_ivfpq(self, sample: np.ndarray, n_total: int | None = None) -> None:
        n = n_total or len(sample)
        nlist = self.params["nlist"] or default_nlist(n)
        # d/4 one-byte codes (96 B for 384-d): recall@20 0.82 on MiniLM vectors of the default corpus, where d/8
        # gives 0.65 and d/2 0.91 (BENCHMARKS.md); pass pq_m to trade memory for recall.
        pq_m = self.params["pq_m"] or next(m for m in (self.dim // 4, self.dim // 2, self.dim) if m and self.dim % m == 0)
        if self.dim % pq_m:
            raise ConfigError(f"pq_m={pq_m} must divide the embedding size {self.dim}")
        if len(sample) < max(nlist * 39, 256):
            raise ConfigError(
                f"an IVF-PQ index needs at least {max(nlist * 39, 256)} vectors to train on, got {len(sample)}; "
                "use 'flat' or 'hnsw' for small corpora"
            )
        if len(sample) > TRAIN_POINTS_PER_LIST * nlist:  # k-means cost grows with the sample: 1M points took 15 min here
            rows = np.random.default_rng(0).choice(len(sample), TRAIN_POINTS_PER_LIST * nlist, replace=False)
            sample = sample[np.sort(rows)]
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFPQ(quantizer, self.dim, nlist, pq_m, 8, faiss.METRIC_INNER_PRODUCT)
        index.train(sample)
        index.nprobe = min(self.params["nprobe"], nlist)
        if self.kind == "ivfpq":
            index.make_direct_map()  # lets hybrid search reconstruct a vector by id (ivfpq-exact reads it from disk)
        self.params.update(nlist=nlist, pq_m=pq_m)
        self.index = index

    def add(self, vectors: np.ndarray) -> None:
        """Append vectors; their ids continue from len(self)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ConfigError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        if self.index is None:
            self._make_ivfpq(vectors)
        self.index.add(vectors)
        if self.vectors is not None:
            self.vectors.append(vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; ids are positions in insertion order, -1 where fewer exist."""
        if len(self) == 0:
            raise ConfigError("the index is empty")
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.vectors is None:
            return self.index.search(queries, min(k, len(self)))
        return self._search_exact(queries, min(k, len(self)))

    def _search_exact(self, queries: np.ndarray, k: int, chunk: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """IVF-PQ's top `candidates` per query, rescored exactly from the float16 vectors: `chunk` queries at a time
        (one sorted gather of their candidates' rows, one batched product)."""
        assert self.vectors is not None
        _, candidates = self.index.search(queries, min(max(k, self.params["candidates"]), len(self)))
        scores, ids = np.empty((len(queries), k), dtype=np.float32), np.empty((len(queries), k), dtype=np.int64)
        for a in range(0, len(queries), chunk):
            cand = candidates[a : a + chunk]
            rows = self.vectors.rows(np.where(cand >= 0, cand, 0).ravel()).reshape(*cand.shape, self.dim)
            exact = np.einsum("qcd,qd->qc", rows, queries[a : a + chunk])
            exact[cand < 0] = -np.inf  # fewer candidates than asked (small lists): never ranked
            top = np.argsort(-exact, axis=1, kind="stable")[:, :k]
            scores[a : a + chunk] = np.take_along_axis(exact, top, axis=1)
            ids[a : a + chunk] = np.where(np.isfinite(scores[a : a + chunk]), np.take_along_axis(cand, top, axis=1), -1)
        return scores, ids

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors for these ids (exact for flat/hnsw, rounded for fp16 and ivfpq-exact, decoded
        approximations for ivfpq)."""
        if self.vectors is not None:
            return self.vectors.rows(ids)
        return self.index.reconstruct_batch(np.asarray(ids, dtype=np.int64))

    def subset(self, keep: np.ndarray, chunk: int = 65_536) -> DenseIndex:
        """A new index of the same kind holding only the vectors `keep`, renumbered 0..len(keep)-1 in that order. An
        IVF index keeps its trained quantisers and the kept vectors' codes as they are (nothing is re-encoded)."""
        keep = np.asarray(keep, dtype=np.int64)
        out = DenseIndex(self.dim, self.kind, **{k: v for k, v in self.params.items() if v is not None})
        if self.kind in IVF_KINDS:
            out.index = self._ivf_subset(keep)
            if self.vectors is not None and out.vectors is not None:
                for a in range(0, len(keep), chunk):
                    out.vectors.append(self.vectors.rows(keep[a : a + chunk]))
            return out
        for a in range(0, len(keep), chunk):
            out.add(self.reconstruct(keep[a : a + chunk]))
        return out

    def _ivf_subset(self, keep: np.ndarray) -> Any:
        index = faiss.clone_index(self.index)
        ivf: Any = faiss.extract_index_ivf(index)
        ivf.set_direct_map_type(0)  # DirectMap.NoMap: remove_ids refuses an array direct map
        new_id = np.full(len(self), -1, dtype=np.int64)
        new_id[keep] = np.arange(len(keep))
        index.remove_ids(faiss.IDSelectorBatch(np.flatnonzero(new_id < 0).astype(np.int64)))
        lists = ivf.invlists
        for list_no in range(ivf.nlist):  # renumber the ids kept in each inverted list to their new positions
            size = lists.list_size(list_no)
            if size:
                ids = new_id[faiss.rev_swig_ptr(lists.get_ids(list_no), size)]  # held here: swig_ptr does not own it
                codes = faiss.rev_swig_ptr(lists.get_codes(list_no), size * lists.code_size).copy()
                lists.update_entries(list_no, 0, size, faiss.swig_ptr(ids), faiss.swig_ptr(codes))
        if self.kind == "ivfpq":
            ivf.make_direct_map()
        return index

    def save(self, path: str | os.PathLike) -> None:
        with atomic_dir(path) as tmp:
            faiss.write_index(self.index, str(tmp / "index.faiss"))
            if self.vectors is not None:
                self.vectors.save(tmp / "vectors.npy")
            meta = {
                "format_version": FORMAT_VERSION,
                "kind": self.kind,
                "dim": self.dim,
                "ntotal": len(self),
                "params": self.params,
                "sha256": file_sha256(tmp / "index.faiss"),  # verified on load: damage is an error, not new scores
            }
            (tmp / "index.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike) -> DenseIndex:
        path = Path(path)
        for name in ("index.json", "index.faiss"):
            if not (path / name).exists():
                raise DataFormatError(f"{path}: not a dense index folder ({name} missing)")
        meta = read_json(path / "index.json")
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            raise DataFormatError(f"{path}/index.json: not an index description of format_version {FORMAT_VERSION}")
        if not (isinstance(meta.get("params"), dict) and meta.get("kind") in KINDS and isinstance(meta.get("dim"), int)):
            raise DataFormatError(f"{path}/index.json: damaged (kind, dim or params missing or wrong)")
        if "sha256" in meta and file_sha256(path / "index.faiss") != meta["sha256"]:
            raise DataFormatError(
                f"{path}/index.faiss: checksum mismatch: the file was changed or damaged since it was written; rebuild the index"
            )
        self = cls.__new__(cls)
        self.dim, self.kind, self.params = meta["dim"], meta["kind"], meta["params"]
        self.origin = f"loaded from {path}"
        self.index = None
        try:
            self.index = faiss.read_index(str(path / "index.faiss"))
        except RuntimeError as e:
            raise DataFormatError(f"{path}/index.faiss: not a readable FAISS index ({str(e).splitlines()[0]})") from e
        if self.index.ntotal != meta["ntotal"] or self.index.d != self.dim:
            raise DataFormatError(f"{path}: index.faiss does not match index.json (size or dimension)")
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = self.params["ef_search"]
        elif self.kind in IVF_KINDS:
            faiss.extract_index_ivf(self.index).nprobe = self.params["nprobe"]
        self.params.setdefault("candidates", 256)  # index.json written before the parameter existed
        self.vectors = DiskVectors.load(path / "vectors.npy", self.dim, len(self)) if self.kind == "ivfpq-exact" else None
        return self
