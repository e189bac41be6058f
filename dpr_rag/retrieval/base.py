"""The one interface every retriever shares: `search(queries, k)` -> ranked hits with scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..data.passages import Passage
from ..errors import ConfigError

MAX_K = 1000
MAX_QUERY_CHARS = 2000  # a question longer than this is not a question (and would only burn CPU)


@dataclass(frozen=True)
class SearchHit:
    passage: Passage
    score: float
    rank: int  # 1-based


@runtime_checkable
class Retriever(Protocol):
    name: str
    passages: list[Passage]

    def search(self, queries: list[str], k: int = 10) -> list[list[SearchHit]]:
        """For each query, the top-k passages by decreasing score."""
        ...


def check_text_is_unicode(text: str, what: str) -> None:
    """A lone surrogate ("\\ud800", possible in a Python str or a JSON string, never in UTF-8) is not text: the
    tokenizers and every UTF-8 writer fail on it, so refuse it up front."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ConfigError(f"{what} holds a lone surrogate ({e.object[e.start : e.end]!a}), not valid text") from None


def check_queries(queries: list[str] | str, k: int) -> list[str]:
    """Validate a search call: a non-empty list of non-blank queries and 1 <= k <= MAX_K."""
    if isinstance(queries, str):
        raise ConfigError("search() takes a list of queries, not a single string")
    queries = list(queries)
    if not queries:
        raise ConfigError("no queries given")
    for i, q in enumerate(queries):
        if not isinstance(q, str) or not q.strip():
            raise ConfigError(f"query {i + 1} is empty")
        if len(q) > MAX_QUERY_CHARS:
            raise ConfigError(f"query {i + 1} is {len(q):,} characters long; the limit is {MAX_QUERY_CHARS:,}")
        check_text_is_unicode(q, f"query {i + 1}")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise ConfigError(f"k must be an integer between 1 and {MAX_K}, got {k!r}")
    return queries
