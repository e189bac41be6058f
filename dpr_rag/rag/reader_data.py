"""Reader training data by distant supervision: which retrieved passages teach the generator an answer.

No QA set here comes with gold passages, so, as DPR did for its retriever, a passage counts as evidence when it
contains an answer string. Per question, the retriever's top `k` are searched (the same retriever and k the reader
reads at answer time, so training matches use); every hit whose text contains an answer is kept, up to
`max_per_question` of them, each paired with the answer string it contains. Questions with no such passage are
dropped and counted. The result is a list of `QAExample`s with `answers=[the answer found, then the others]` and
`positive_ctxs` = the answer-bearing passages in rank order:

- `mode="passage"` trains -log p(answer | question, z) on each answer-bearing z alone (the distant-supervision
  reader: cheap, one passage per row);
- `mode="standard" | "token" | "sequence"` trains on the whole top k of the same questions.

With `unanswered=r`, up to r dropped questions per kept one stay in too, with no `positive_ctxs`: the reader then also
sees top-k passages that lack the answer and is taught the gold answer anyway, so it keeps answering from what it
knows rather than learning to always copy a span (passage mode cannot use them: it needs an answer-bearing passage).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm

from ..config_checks import check_float, check_int
from ..data.qa import QAExample
from ..matching import answer_matcher
from ..retrieval.base import Retriever


@dataclass
class ReaderDataStats:
    n_questions: int = 0
    n_kept: int = 0  # questions with at least one answer-bearing passage in the top k
    n_dropped: int = 0  # questions without
    n_passages: int = 0  # (question, answer-bearing passage) pairs kept
    n_unanswered: int = 0  # questions without, kept anyway (`unanswered`)

    def summary(self) -> str:
        pct = 100.0 * self.n_kept / self.n_questions if self.n_questions else 0.0
        extra = f", {self.n_unanswered} of which kept without one" if self.n_unanswered else ""
        return (
            f"{self.n_questions} questions: kept {self.n_kept} ({pct:.1f}%) with {self.n_passages} answer-bearing "
            f"passages in the top k; dropped {self.n_dropped} with none{extra}"
        )


def _first_answer_in(answers: Sequence[str], text: str) -> str | None:
    return next((a for a in answers if answer_matcher([a])(text)), None)


def reader_examples(
    qa: Sequence[QAExample],
    retriever: Retriever,
    k: int = 5,
    max_per_question: int = 3,
    batch_size: int = 64,
    show_progress: bool = True,
    unanswered: float = 0.0,
) -> tuple[list[QAExample], ReaderDataStats]:
    """Questions of `qa` whose top-`k` passages contain an answer, with those passages, then up to `unanswered` ×
    as many of the others, without passages (see the module docstring)."""
    check_int("k", k, 1)
    check_int("max_per_question", max_per_question, 1)
    check_int("batch_size", batch_size, 1)
    check_float("unanswered", unanswered, ge=0)
    stats = ReaderDataStats(n_questions=len(qa))
    kept: list[QAExample] = []
    dropped: list[QAExample] = []
    with tqdm(total=len(qa), desc="reader distant supervision", unit="question", disable=not show_progress) as bar:
        for start in range(0, len(qa), batch_size):
            batch = list(qa[start : start + batch_size])
            for ex, hits in zip(batch, retriever.search([e.question for e in batch], k), strict=True):
                contains = answer_matcher(ex.answers)
                bearing = [h.passage for h in hits if contains(h.passage.text)][:max_per_question]
                if not bearing:
                    stats.n_dropped += 1
                    dropped.append(ex)
                    continue
                found = _first_answer_in(ex.answers, bearing[0].text) or ex.answers[0]
                answers = [found, *(a for a in ex.answers if a != found)]
                kept.append(QAExample(ex.question, answers, id=ex.id, gold_titles=list(ex.gold_titles), positive_ctxs=bearing))
                stats.n_passages += len(bearing)
            bar.update(len(batch))
    # Spread over the dropped questions (not the first ones: a QA file is often grouped by source or topic).
    n_extra = min(len(dropped), int(unanswered * len(kept)))
    extra = [dropped[i * len(dropped) // n_extra] for i in range(n_extra)]
    stats.n_kept, stats.n_unanswered = len(kept), len(extra)
    kept += [QAExample(e.question, list(e.answers), id=e.id, gold_titles=list(e.gold_titles)) for e in extra]
    return kept, stats


def passage_rows(examples: Sequence[QAExample]) -> list[tuple[QAExample, int]]:
    """(example, passage number) for every answer-bearing passage: the rows of `mode="passage"` training. The target
    of a row is the first answer its passage contains (the example's first answer if none does)."""
    return [(ex, i) for ex in examples for i in range(len(ex.positive_ctxs))]


def passage_target(ex: QAExample, i: int) -> str:
    return _first_answer_in(ex.answers, ex.positive_ctxs[i].text) or ex.answers[0]
