"""SQuAD v1.1 exact match and token F1 of predicted answers against lists of gold answers, in percent.

A local `evaluate` module (the hub's "squad" metric cannot be fetched offline, and it expects SQuAD's nested
reference format); load it by path:

    metric = evaluate.load("eval/metrics/squad_em_f1", keep_in_memory=True)
    metric.compute(predictions=["the Eiffel Tower"], references=[["Eiffel Tower", "tour Eiffel"]])

Scoring is `dpr_rag.matching.exact_match` and `dpr_rag.matching.token_f1`: both sides normalised the SQuAD way
(lower-case, punctuation removed, the articles a/an/the removed, whitespace collapsed), each prediction scored
against its best-matching answer, then averaged over questions.
"""

from __future__ import annotations

import datasets
import evaluate

from dpr_rag.matching import exact_match, token_f1

_CITATION = """@inproceedings{rajpurkar-etal-2016-squad,
  title = {{SQ}u{AD}: 100,000+ Questions for Machine Comprehension of Text},
  author = {Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy},
  booktitle = {EMNLP},
  year = {2016}
}"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of predicted answer strings, one per question.
    references: list of lists of gold answer strings (the best-matching one counts).
Returns:
    exact_match: mean exact match, percent in [0, 100].
    f1: mean token F1, percent in [0, 100].
    exact_match_per_question, f1_per_question: the per-question scores, each in [0, 1].
Examples:
    >>> metric = evaluate.load("eval/metrics/squad_em_f1")
    >>> metric.compute(predictions=["The Louvre!"], references=[["louvre", "Musée du Louvre"]])["exact_match"]
    100.0
"""


@evaluate.utils.file_utils.add_start_docstrings(__doc__, _KWARGS_DESCRIPTION)
class SquadEmF1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references):
        em = [exact_match(p, list(r)) for p, r in zip(predictions, references, strict=True)]
        f1 = [token_f1(p, list(r)) for p, r in zip(predictions, references, strict=True)]
        n = len(em)
        return {
            "exact_match": 100.0 * sum(em) / n if n else 0.0,
            "f1": 100.0 * sum(f1) / n if n else 0.0,
            "exact_match_per_question": em,
            "f1_per_question": f1,
        }
