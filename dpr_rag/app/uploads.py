"""Uploaded files: checked (type, size), copied into the app's data folder under a safe name, and parsed with
the library's loaders, whose `file:line: what is wrong` messages are shown with the user's file name.

Nothing a user sends decides where a file goes: the stored name is a random folder plus the upload's base
name reduced to [A-Za-z0-9._-], and the final path is checked to lie inside the uploads folder.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

from ..data.passages import Passage, check_unique_ids, load_corpus, split_document
from ..data.qa import QAExample, load_qa
from ..errors import DataFormatError

CORPUS_TYPES = (".tsv", ".jsonl")
QA_TYPES = (".jsonl", ".json", ".csv", ".tsv")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str, fallback: str = "upload") -> str:
    """A file or folder name with no path parts, no leading dots, only [A-Za-z0-9._-], at most 80 characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    clean = _UNSAFE.sub("_", base).lstrip(".").strip("_")
    if len(clean) > 80:  # cut the stem, not the extension: the file type is read from it
        suffix = Path(clean).suffix[:16]
        clean = clean[: 80 - len(suffix)].rstrip("_.") + suffix
    return clean or fallback


def inside(path: Path, folder: Path) -> bool:
    """Whether `path` (resolved, symlinks followed) lies inside `folder`."""
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.1f} KB"


def store_upload(
    src: str | os.PathLike | None, uploads_dir: Path, allowed: tuple[str, ...], max_bytes: int, what: str = "file"
) -> tuple[Path, str]:
    """Check an uploaded file and copy it into `uploads_dir/<random>/<safe name>`; returns (stored path, shown name)."""
    if src is None or str(src).strip() == "":
        raise DataFormatError(f"no {what} uploaded: choose a file first")
    src = Path(src)
    shown = safe_name(src.name)
    suffix = src.suffix.lower()
    if suffix not in allowed:
        raise DataFormatError(f"{shown}: unsupported {what} type {suffix or '(none)'!r}; upload {' or '.join(allowed)}")
    if src.is_symlink() or not src.is_file():
        raise DataFormatError(f"{shown}: not a regular file")
    size = src.stat().st_size
    if size > max_bytes:
        raise DataFormatError(f"{shown} is {_size(size)}; the upload limit is {_size(max_bytes)}")
    if size == 0:
        raise DataFormatError(f"{shown}: file is empty")
    dest = uploads_dir / uuid.uuid4().hex / shown
    if not inside(dest, uploads_dir):  # cannot happen with a safe name; checked anyway
        raise DataFormatError(f"{shown}: refused (the path leaves the upload folder)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest, follow_symlinks=False)
    return dest, shown


def _load_upload(load, stored: Path, shown: str, limit: int | None, what: str) -> list:
    """Parse a stored upload with the library's loader; a bad file (or too many records) is deleted and reported
    under the name the user knows instead of the stored path."""
    try:
        records = load(stored)
        if limit is not None and len(records) > limit:
            raise DataFormatError(f"{shown} has {len(records):,} {what}; this app accepts at most {limit:,}")
        return records
    except DataFormatError as e:
        shutil.rmtree(stored.parent, ignore_errors=True)
        raise DataFormatError(str(e).replace(str(stored), shown)) from e


MAX_UPLOAD_PASSAGE_WORDS = 1000  # longer passages are split into DPR's ~100-word blocks


def split_long_passages(passages: list[Passage], max_words: int = MAX_UPLOAD_PASSAGE_WORDS) -> list[Passage]:
    """Passages of more than `max_words` words become ~100-word blocks (`split_document`), ids `<id>-<n>`: one huge
    line would otherwise be scored by BM25 and returned whole to every user on every search."""
    out: list[Passage] = []
    for p in passages:
        if len(p.text.split()) <= max_words:
            out.append(p)
            continue
        out += [Passage(f"{p.id}-{i}", title, text) for i, (title, text) in enumerate(split_document(p.title, p.text), start=1)]
    return out


def _load_split_corpus(path: Path) -> list[Passage]:
    passages = split_long_passages(load_corpus(path))
    check_unique_ids(passages, str(path))  # a block's id "<id>-<n>" may clash with a passage's own
    return passages


def load_uploaded_corpus(stored: Path, shown: str, max_passages: int | None = None) -> list[Passage]:
    return _load_upload(_load_split_corpus, stored, shown, max_passages, "passages")


def load_uploaded_qa(stored: Path, shown: str, max_questions: int | None = None) -> list[QAExample]:
    return _load_upload(load_qa, stored, shown, max_questions, "questions")
