"""The one reader of line-based and whole-file text every loader uses: UTF-8 decoded line by line, so that a bad
byte, a bad JSON line or a malformed TSV row is reported as `FILE:LINE: what is wrong`."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from ..errors import DataFormatError


def check_file(path: Path) -> None:
    if not path.exists():
        raise DataFormatError(f"{path}: file not found")
    if path.is_dir():
        raise DataFormatError(f"{path}: is a folder, expected a file")
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path}: file is empty")


def read_lines(path: Path) -> Iterator[str]:
    """The file's lines as text, decoded one line at a time so a bad byte is reported with its line number."""
    check_file(path)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                yield raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataFormatError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start})") from e


def read_text(path: Path) -> str:
    """The whole file as text; a bad byte is reported with its line number."""
    check_file(path)
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
        obj = parse_json(line, f"{path}:{lineno}")
        if not isinstance(obj, dict):
            raise DataFormatError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def parse_json(text: str, where: str):
    """json.loads, with every way it can fail as one DataFormatError naming `where`: bad syntax, nesting too deep, an
    integer of more digits than Python converts, and lone surrogates ("\\ud800": not text, and unwritable as UTF-8)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from e
    except RecursionError as e:
        raise DataFormatError(f"{where}: JSON nested too deeply") from e
    except ValueError as e:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        raise DataFormatError(f"{where}: invalid JSON ({str(e).splitlines()[0][:120]})") from e
    if "\\u" in text:
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as e:
            raise DataFormatError(
                f"{where}: a string holds a lone surrogate ({e.object[e.start : e.end]!a}), not valid text"
            ) from e
    return obj


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
