"""Closed-book fallback: keep a RAG answer only where the retrieved passages support it.

A reader trained on answer-bearing passages learns to copy a span from them; where retrieval missed (on NQ over the
default corpus, the top 5 hold an answer for about one question in eight) that habit makes it copy a wrong span, and
the generator's own memory, which a closed-book prompt uses, is the better guess. The rule needs no threshold:

    answer(x) = y_RAG         if y_RAG occurs in one of the retrieved passages z_1..z_k (title or text)
                y_closed-book otherwise

"Occurs" is DPR's token match (`matching.answer_matcher`, the rule that decides which passages count as answer
bearing), so an answer grounded by that rule is one a retrieval metric would credit to the passages. Use it with a
reader that extracts (the shipped one); a reader that paraphrases falls back more often than it should.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..matching import answer_matcher

if TYPE_CHECKING:
    from .answers import RagAnswer


def is_grounded(answer: RagAnswer) -> bool:
    """Whether `answer.answer` occurs, by DPR's token match, in the title or text of one of its passages."""
    if not answer.answer.strip():
        return False
    matches = answer_matcher([answer.answer])
    return any(matches(f"{p.passage.title}\n{p.passage.text}") for p in answer.passages)


def with_fallback(rag: Sequence[RagAnswer], closed_book: Sequence[RagAnswer]) -> list[RagAnswer]:
    """Each RAG answer, or where its passages do not support it the closed-book answer to the same question (with the
    RAG answer's passages kept for provenance and `fallback=True`)."""
    if len(rag) != len(closed_book):
        raise ConfigError(f"{len(rag)} RAG answers but {len(closed_book)} closed-book answers")
    out = []
    for a, c in zip(rag, closed_book, strict=True):
        if a.question != c.question:
            raise ConfigError(f"the closed-book answers are to other questions ({a.question!r} vs {c.question!r})")
        out.append(a if is_grounded(a) else replace(a, answer=c.answer, logprob=c.logprob, fallback=True))
    return out
