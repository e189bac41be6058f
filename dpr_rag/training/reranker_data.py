"""Reranker training data by distant supervision over the first stage's own top candidates.

A reranker only ever reorders what the first stage returns, so its examples come from there: per question the
retriever's top `candidates` are split into positives (the passage text contains an answer, DPR's `has_answer`) and
hard negatives (neither text nor title contains one; a title-only match is likely a false negative and is skipped).
Questions with no positive, or no negative, teach nothing about order and are dropped and counted.

The examples are `QAExample`s with `positive_ctxs` and `hard_negative_ctxs` in first-stage rank order, saved in DPR's
JSON with each passage's first-stage rank as its "score" (negated, so that higher is better), which the dev metric
uses to compare the reranked order with the first stage's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from ..config_checks import check_int
from ..data.qa import QAExample
from ..matching import answer_matcher
from ..retrieval.base import Retriever


@dataclass
class RerankerDataStats:
    n_questions: int = 0
    n_kept: int = 0
    n_no_positive: int = 0  # dropped: no candidate's text contains an answer
    n_no_negative: int = 0  # dropped: every candidate contains one
    n_positives: int = 0
    ranks: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)  # (question, passage id) -> rank

    def summary(self) -> str:
        pct = 100.0 * self.n_kept / self.n_questions if self.n_questions else 0.0
        return (
            f"{self.n_questions} questions: kept {self.n_kept} ({pct:.1f}%) with {self.n_positives} answer-bearing "
            f"candidates; dropped {self.n_no_positive} with none and {self.n_no_negative} with no negative"
        )


def reranker_examples(
    qa: Sequence[QAExample],
    retriever: Retriever,
    candidates: int = 50,
    match: str = "string",
    batch_size: int = 64,
    show_progress: bool = True,
) -> tuple[list[QAExample], RerankerDataStats]:
    """Positives and hard negatives among `retriever`'s top `candidates` for each question (module docstring)."""
    check_int("candidates", candidates, 2)
    check_int("batch_size", batch_size, 1)
    stats = RerankerDataStats(n_questions=len(qa))
    kept: list[QAExample] = []
    with tqdm(total=len(qa), desc="distant supervision over the candidates", unit="question", disable=not show_progress) as bar:
        for start in range(0, len(qa), batch_size):
            batch = list(qa[start : start + batch_size])
            for ex, hits in zip(batch, retriever.search([e.question for e in batch], candidates), strict=True):
                contains = answer_matcher(ex.answers, match)
                positives = [h for h in hits if contains(h.passage.text)]
                negatives = [h for h in hits if not contains(h.passage.text) and not contains(h.passage.title)]
                if not positives or not negatives:
                    stats.n_no_positive += not positives
                    stats.n_no_negative += bool(positives)
                    continue
                for h in (*positives, *negatives):
                    stats.ranks[(ex.question, h.passage.id)] = h.rank
                stats.n_positives += len(positives)
                kept.append(
                    QAExample(
                        ex.question,
                        list(ex.answers),
                        id=ex.id,
                        gold_titles=list(ex.gold_titles),
                        positive_ctxs=[h.passage for h in positives],
                        hard_negative_ctxs=[h.passage for h in negatives],
                    )
                )
            bar.update(len(batch))
    stats.n_kept = len(kept)
    return kept, stats
