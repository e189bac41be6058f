"""Relevance-judged retrieval data in BEIR's layout (Thakur et al. 2021), so users can bring the datasets they have:

    DIR/corpus.jsonl        {"_id", "title", "text"} a line (`passages.load_jsonl` reads it)
    DIR/queries.jsonl       {"_id", "text"} a line
    DIR/qrels/<split>.tsv   query-id<TAB>corpus-id<TAB>score, with a header row

TREC qrels (`qid 0 docid relevance`, whitespace-separated, no header) are read too. Errors name the file and line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataFormatError
from ..retrieval.base import MAX_QUERY_CHARS
from .readers import iter_jsonl, read_lines

Qrels = dict[str, dict[str, int]]  # query id -> {passage id: relevance grade}


@dataclass(frozen=True)
class Query:
    id: str
    text: str


@dataclass(frozen=True)
class BeirFolder:
    corpus: Path
    queries: Path
    qrels: Path


def beir_folder(folder: str | os.PathLike, split: str = "test") -> BeirFolder:
    """The three files of a BEIR dataset folder (each must exist)."""
    root = Path(folder)
    found = BeirFolder(root / "corpus.jsonl", root / "queries.jsonl", root / "qrels" / f"{split}.tsv")
    for path in (found.corpus, found.queries, found.qrels):
        if not path.is_file():
            raise DataFormatError(f"{root}: not a BEIR folder ({path.relative_to(root)} missing)")
    return found


def load_queries(path: str | os.PathLike) -> list[Query]:
    """BEIR queries: `{"_id": ..., "text": ...}` a line (NQ-open's `{"id", "question"}` is accepted too)."""
    path = Path(path)
    queries, seen = [], set()
    for lineno, obj in iter_jsonl(path):
        qid, text = obj.get("_id", obj.get("id")), obj.get("text", obj.get("question"))
        if not isinstance(qid, (str, int)) or isinstance(qid, bool) or not str(qid).strip():
            raise DataFormatError(f"{path}:{lineno}: field '_id' must be a non-empty string or integer")
        if not isinstance(text, str) or not text.strip():
            raise DataFormatError(f"{path}:{lineno}: field 'text' must be a non-empty string")
        if len(text) > MAX_QUERY_CHARS:
            raise DataFormatError(f"{path}:{lineno}: query longer than {MAX_QUERY_CHARS} characters")
        if str(qid).strip() in seen:
            raise DataFormatError(f"{path}:{lineno}: query id {qid!r} appears twice")
        seen.add(str(qid).strip())
        queries.append(Query(str(qid).strip(), text.strip()))
    if not queries:
        raise DataFormatError(f"{path}: no queries found")
    return queries


def load_qrels(path: str | os.PathLike) -> Qrels:
    """BEIR qrels TSV (a header row, then query-id, corpus-id, score) or TREC qrels (qid, iteration, docid, rel)."""
    path = Path(path)
    qrels: Qrels = {}
    for lineno, line in enumerate(read_lines(path), start=1):
        fields = line.split("\t") if "\t" in line else line.split()
        fields = [f.strip() for f in fields]
        if not any(fields):
            continue
        if lineno == 1 and fields[-1].lower() in ("score", "relevance", "rel"):
            continue  # BEIR's header
        if len(fields) == 4:
            fields = [fields[0], fields[2], fields[3]]  # TREC: qid iteration docid rel
        if len(fields) != 3 or not fields[0] or not fields[1]:
            raise DataFormatError(f"{path}:{lineno}: expected query-id, corpus-id and score, got {line.strip()[:80]!r}")
        try:
            grade = int(fields[2])
        except ValueError:
            raise DataFormatError(f"{path}:{lineno}: the score must be an integer, got {fields[2][:20]!r}") from None
        qrels.setdefault(fields[0], {})[fields[1]] = grade
    if not qrels:
        raise DataFormatError(f"{path}: no relevance judgments found")
    return qrels
