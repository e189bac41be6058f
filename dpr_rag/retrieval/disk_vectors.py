"""Float16 vectors kept on disk and read by id: the exact half of the "ivfpq-exact" index.

While an index is built the vectors accumulate in memory (float16, in chunks); `save` writes them as one `.npy`
(streamed chunk by chunk) and `load` memory-maps it read-only, so a search process holds only the rows it reads:
its resident memory grows with the compressed index, not with d·2 bytes a vector. Rows are gathered in id order (a
sorted gather reads the file forwards) and returned as float32.
"""

from __future__ import annotations

import tokenize
from pathlib import Path

import numpy as np

from ..errors import DataFormatError


class DiskVectors:
    def __init__(self, dim: int):
        self.dim = dim
        self._chunks: list[np.ndarray] = []
        self._mapped: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._mapped) if self._mapped is not None else sum(len(c) for c in self._chunks)

    def append(self, vectors: np.ndarray) -> None:
        if self._mapped is not None:  # adding to a loaded index: keep the mapped rows, append in memory
            self._chunks, self._mapped = [np.asarray(self._mapped)], None
        self._chunks.append(np.asarray(vectors, dtype=np.float16))

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """float32 rows for `ids` (any order, repeats allowed)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self._mapped is None:
            self._chunks = [np.concatenate(self._chunks)] if len(self._chunks) > 1 else self._chunks
            source = self._chunks[0] if self._chunks else np.zeros((0, self.dim), np.float16)
        else:
            source = self._mapped
        order = np.argsort(ids, kind="stable")
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        out[order] = source[ids[order]]
        return out

    def save(self, path: Path) -> None:
        rows = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(len(self), self.dim))
        start = 0
        for chunk in [self._mapped] if self._mapped is not None else self._chunks:
            rows[start : start + len(chunk)] = chunk
            start += len(chunk)
        rows.flush()
        del rows

    @classmethod
    def load(cls, path: Path, dim: int, n: int) -> DiskVectors:
        try:  # allow_pickle=False: an object array (pickled Python objects) is refused, never loaded
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, SyntaxError, EOFError, tokenize.TokenError) as e:
            raise DataFormatError(f"{path}: not a float16 vector file ({str(e).splitlines()[0][:120]})") from e
        if mapped.shape != (n, dim) or mapped.dtype != np.float16:
            raise DataFormatError(f"{path}: shape {mapped.shape} {mapped.dtype}, expected ({n}, {dim}) float16")
        self = cls(dim)
        self._mapped = mapped
        return self
