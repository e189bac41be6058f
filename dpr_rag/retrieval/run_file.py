"""Retrieval results saved to a file and served back: the passages a retriever found, without the retriever.

A run file holds, one JSON line per question, the ranked passage ids and scores a retriever returned:

    {"question": "who wrote hamlet", "retriever": "dense", "temperature": 0.05, "hits": [["12", 0.71], ["873", 0.64]]}

As with FiD's retrieved-passage files and pyserini's runs, you retrieve once and then train or evaluate readers on
fixed passages: on a machine without the index or the encoder (a rented GPU), or to compare readers on identical
inputs. `RunFileRetriever` serves a run file over its corpus through the `Retriever` interface, so RAG answering and
reader training take it like any retriever. A question the file lacks, or a k deeper than it recorded, is an error
naming it, never a silent empty result. `temperature` keeps the source retriever's τ for p(z|x) (`score_scale.py`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from ..data.passages import Passage
from ..errors import ConfigError, DataFormatError
from ..storage import atomic_file
from .base import Retriever, SearchHit, check_queries


def write_run_file(
    retriever: Retriever,
    questions: Sequence[str],
    k: int,
    path: str | os.PathLike,
    temperature: float,
    batch_size: int = 64,
    show_progress: bool = True,
) -> None:
    """Search every (distinct) question's top `k` with `retriever` and write them to `path` atomically."""
    distinct = list(dict.fromkeys(questions))
    check_queries(distinct, k)
    with atomic_file(path) as f, tqdm(total=len(distinct), desc="retrieving", unit="question", disable=not show_progress) as bar:
        for start in range(0, len(distinct), batch_size):
            batch = distinct[start : start + batch_size]
            for question, hits in zip(batch, retriever.search(batch, k), strict=True):
                row = {
                    "question": question,
                    "retriever": retriever.name,
                    "temperature": temperature,
                    "hits": [[h.passage.id, round(float(h.score), 6)] for h in hits],
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            bar.update(len(batch))


class RunFileRetriever:
    """The hits recorded in run files, served over `passages` (the corpus the run was made on)."""

    def __init__(self, runs: dict[str, list[tuple[str, float]]], passages: list[Passage], name: str, temperature: float):
        self.runs, self.passages, self.name, self.temperature = runs, passages, name, temperature
        self._by_id = {p.id: p for p in passages}
        for question, hits in runs.items():
            missing = next((pid for pid, _ in hits if pid not in self._by_id), None)
            if missing is not None:
                raise DataFormatError(f"the run of {question!r} names passage {missing!r}, which is not in the corpus")

    @classmethod
    def from_files(cls, paths: Sequence[str | os.PathLike], passages: list[Passage]) -> RunFileRetriever:
        runs: dict[str, list[tuple[str, float]]] = {}
        names: set[str] = set()
        temperatures: set[float] = set()
        for path in paths:
            for n, row in enumerate(_read_rows(Path(path)), 1):
                where = f"{path}, line {n}"
                question, hits = row.get("question"), row.get("hits")
                if not isinstance(question, str) or not isinstance(hits, list):
                    raise DataFormatError(f"{where}: needs a 'question' string and a 'hits' list")
                if not all(isinstance(h, list) and len(h) == 2 and isinstance(h[1], (int, float)) for h in hits):
                    raise DataFormatError(f"{where}: each hit must be [passage id, score]")
                runs[question] = [(str(pid), float(score)) for pid, score in hits]
                names.add(str(row.get("retriever", "run")))
                temperatures.add(float(row.get("temperature", 1.0)))
        if not runs:
            raise DataFormatError(f"no runs in {', '.join(map(str, paths))}")
        if len(temperatures) > 1:
            raise DataFormatError(f"the run files mix retrievers with different temperatures {sorted(temperatures)}")
        return cls(runs, passages, "+".join(sorted(names)), temperatures.pop())

    def search(self, queries: list[str], k: int = 10) -> list[list[SearchHit]]:
        queries = check_queries(queries, k)
        results = []
        for q in queries:
            hits = self.runs.get(q)
            if hits is None:
                raise ConfigError(f"the run files hold no retrieval for the question {q!r}")
            if len(hits) < k:
                raise ConfigError(f"the run files hold {len(hits)} passages for {q!r}; k={k} asks for more")
            results.append([SearchHit(self._by_id[pid], score, rank) for rank, (pid, score) in enumerate(hits[:k], 1)])
        return results


def _read_rows(path: Path) -> list[dict]:
    rows = []
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DataFormatError(f"{path}, line {n}: not JSON ({e.msg})") from None
                    if not isinstance(row, dict):
                        raise DataFormatError(f"{path}, line {n}: a run is a JSON object")
                    rows.append(row)
    except OSError as e:
        raise DataFormatError(f"cannot read the run file {path}: {e.strerror}") from None
    return rows
