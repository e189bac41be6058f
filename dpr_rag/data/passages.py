"""Passages and corpora: the retrieval unit of DPR and loaders for its file formats.

A corpus is a list of `Passage(id, title, text)`. DPR retrieves ~100-word blocks of Wikipedia articles, each
keeping its article title, and so does this project: `split_document` cuts long documents the same way.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import DataFormatError
from ..storage import atomic_file
from .readers import iter_jsonl, iter_tsv

WORDS_PER_PASSAGE = 100


@dataclass(frozen=True)
class Passage:
    id: str
    title: str
    text: str

    def to_dict(self) -> dict:
        return asdict(self)


def split_document(title: str, text: str, words_per_passage: int = WORDS_PER_PASSAGE) -> list[tuple[str, str]]:
    """Cut a document into (title, text) blocks of about `words_per_passage` words.

    DPR uses disjoint 100-word blocks. Cutting at exactly 100 leaves tiny tails ("...1886."), so the words
    are spread evenly over round(n / words_per_passage) blocks instead: a 130-word summary stays one
    passage, a 160-word one becomes two of 80.
    """
    words = text.split()
    if not words:
        return []
    n_blocks = max(1, round(len(words) / words_per_passage))
    size = math.ceil(len(words) / n_blocks)
    return [(title, " ".join(words[i : i + size])) for i in range(0, len(words), size)]


def check_unique_ids(passages: list[Passage], source: str) -> None:
    seen: dict[str, int] = {}
    for i, p in enumerate(passages):
        if p.id in seen:
            raise DataFormatError(
                f"{source}: duplicate passage id {p.id!r} (entries {seen[p.id] + 1} and {i + 1}); ids must be unique"
            )
        seen[p.id] = i


def load_tsv(path: str | os.PathLike) -> list[Passage]:
    """DPR's passage TSV: a header row, then `id<TAB>text<TAB>title` (psgs_w100.tsv)."""
    path = Path(path)
    passages: list[Passage] = []
    for lineno, row in iter_tsv(path):
        if not passages and lineno == 1:
            if [h.strip().lower() for h in row[:3]] != ["id", "text", "title"]:
                raise DataFormatError(f"{path}:1: expected the header 'id<TAB>text<TAB>title', got {row[:3]!r}")
            continue
        if len(row) != 3:
            raise DataFormatError(f"{path}:{lineno}: expected 3 tab-separated fields (id, text, title), got {len(row)}")
        pid, text, title = (c.strip() for c in row)
        if not pid:
            raise DataFormatError(f"{path}:{lineno}: empty id")
        if not text:
            raise DataFormatError(f"{path}:{lineno}: empty text for passage {pid!r}")
        passages.append(Passage(pid, title, text))
    return _finish(passages, path)


def load_jsonl(path: str | os.PathLike) -> list[Passage]:
    """One JSON object a line: `{"id": ..., "title": ..., "text": ...}` (title may be empty or absent); BEIR's
    `corpus.jsonl` (`"_id"` instead of `"id"`) reads the same."""
    path = Path(path)
    passages = []
    for lineno, obj in iter_jsonl(path):
        id_field = "_id" if "_id" in obj and "id" not in obj else "id"
        for field in (id_field, "text"):
            if field not in obj:
                raise DataFormatError(f"{path}:{lineno}: missing field {field!r}")
        pid, text, title = obj[id_field], obj["text"], obj.get("title") or ""
        if not isinstance(pid, (str, int)) or isinstance(pid, bool) or not str(pid).strip():
            raise DataFormatError(f"{path}:{lineno}: field 'id' must be a non-empty string or integer")
        if not isinstance(text, str) or not text.strip():
            raise DataFormatError(f"{path}:{lineno}: field 'text' must be a non-empty string")
        if not isinstance(title, str):
            raise DataFormatError(f"{path}:{lineno}: field 'title' must be a string")
        passages.append(Passage(str(pid).strip(), title.strip(), text.strip()))
    return _finish(passages, path)


def _finish(passages: list[Passage], path: Path) -> list[Passage]:
    if not passages:
        raise DataFormatError(f"{path}: no passages found")
    check_unique_ids(passages, str(path))
    return passages


def load_corpus(path: str | os.PathLike | None = None) -> list[Passage]:
    """Load a corpus by file extension (.tsv or .jsonl/.json lines); None gives the embedded default."""
    if path is None:
        from .defaults import default_corpus  # defaults builds on this module

        return default_corpus()
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".tab"):
        return load_tsv(path)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return load_jsonl(path)
    raise DataFormatError(f"{path}: unknown corpus format {suffix!r}; use .tsv (DPR) or .jsonl")


def save_jsonl(passages: Iterable[Passage], path: str | os.PathLike) -> None:
    with atomic_file(path) as f:
        for p in passages:
            f.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")


def corpus_fingerprint(passages: list[Passage]) -> str:
    """A short hash of ids, titles and texts: equal corpora share cached indexes, changed ones do not."""
    h = hashlib.sha256()
    for p in passages:
        h.update(p.id.encode())
        h.update(b"\x00")
        h.update(p.title.encode())
        h.update(b"\x00")
        h.update(p.text.encode())
        h.update(b"\x01")
    return h.hexdigest()[:16]
