"""What a RAG pipeline answers with, and the checks of what it is asked: the modes, the answer and its provenance."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.passages import Passage
from ..errors import ConfigError
from ..retrieval.base import MAX_QUERY_CHARS, check_text_is_unicode

MODES = ("sequence", "token", "standard", "closed-book", "extractive")
GENERATIVE_MODES = MODES[:4]  # the modes the generator answers in (extractive: `dpr_rag.extractive`)


@dataclass
class Provenance:
    passage: Passage
    retrieval_score: float
    prior: float  # p(z | x)
    posterior: float  # p(z | x, y)


@dataclass
class AnswerSpan:
    """Where an extractive answer stands: passage `passage` (its index in `RagAnswer.passages`), characters
    [start, end) of its `field` ("title" or "text")."""

    passage: int
    field: str
    start: int
    end: int


@dataclass
class RagAnswer:
    question: str
    answer: str
    mode: str
    logprob: float  # log p(answer | question) under the mode's marginal
    passages: list[Provenance] = field(default_factory=list)
    fallback: bool = False  # the passages did not support the RAG answer: this is the closed-book one (`fallback.py`)
    span: AnswerSpan | None = None  # extractive answers: the span of a passage that is the answer


def check_questions(questions: list[str]) -> None:
    if isinstance(questions, str):
        raise ConfigError("pass a list of questions, not a single string")
    if not questions:
        raise ConfigError("no questions given")
    for i, q in enumerate(questions):
        if not isinstance(q, str) or not q.strip():
            raise ConfigError("empty question" if len(questions) == 1 else f"question {i + 1} is empty")
        if len(q) > MAX_QUERY_CHARS:
            raise ConfigError(f"question {i + 1} is {len(q):,} characters long; the limit is {MAX_QUERY_CHARS:,}")
        check_text_is_unicode(q, "the question" if len(questions) == 1 else f"question {i + 1}")


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
