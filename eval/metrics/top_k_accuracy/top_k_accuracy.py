"""Top-k retrieval accuracy (DPR): the percentage of questions with an answer-bearing passage among the first k.

A local `evaluate` module (the hub's metrics cannot be fetched offline); load it by path:

    metric = evaluate.load("eval/metrics/top_k_accuracy", keep_in_memory=True)
    metric.compute(predictions=[[text1, text2, ...], ...], references=[["answer", ...], ...], k=[1, 5], match="string")

Each prediction is one question's retrieved passage texts in rank order; each reference is that question's
answer strings. A passage "has the answer" by `dpr_rag.matching.has_answer` (DPR's rule: token match in
"string" mode, regular expressions in "regex" mode), and a question counts at every k from its first such
passage on (`dpr_rag.matching.first_hit_rank`). The match is on the text given: DPR matches passage text,
not its title.
"""

from __future__ import annotations

import datasets
import evaluate

from dpr_rag.errors import ConfigError
from dpr_rag.matching import MATCH_MODES, first_hit_rank

_CITATION = """@inproceedings{karpukhin-etal-2020-dense,
  title = {Dense Passage Retrieval for Open-Domain Question Answering},
  author = {Karpukhin, Vladimir and O{\\u{g}}uz, Barlas and Min, Sewon and Lewis, Patrick and Wu, Ledell
            and Edunov, Sergey and Chen, Danqi and Yih, Wen-tau},
  booktitle = {EMNLP},
  year = {2020}
}"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of lists of passage texts, each in rank order (best first).
    references: list of lists of answer strings (any one counts).
    k: the cut-offs, an int or a list of ints >= 1 (default [1, 5, 20, 100]).
    match: "string" (DPR's token match) or "regex" (CuratedTREC patterns).
    progress: optional callable(done, total), called as questions are matched (for a progress bar).
Returns:
    accuracy: {k: percent of questions whose first answer-bearing passage has rank <= k}, in [0, 100].
    first_hit_rank: per question, the 1-based rank of its first answer-bearing passage, or None.
    hit: {k: per question, 1 if it counts at k else 0} (for paired comparisons and subsets).
Examples:
    >>> metric = evaluate.load("eval/metrics/top_k_accuracy")
    >>> metric.compute(predictions=[["Paris is in France", "x"], ["y", "z"]], references=[["France"], ["Rome"]], k=[1, 2])
    {'accuracy': {1: 50.0, 2: 50.0}, 'first_hit_rank': [1, None], 'hit': {1: [1, 0], 2: [1, 0]}}
"""


def check_ks(k) -> list[int]:
    ks = [k] if isinstance(k, int) else list(k)
    if not ks or any(not isinstance(x, int) or isinstance(x, bool) or x < 1 for x in ks):
        raise ConfigError(f"k must be a positive integer or a list of them, got {k!r}")
    return sorted(set(ks))


@evaluate.utils.file_utils.add_start_docstrings(__doc__, _KWARGS_DESCRIPTION)
class TopKAccuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references, k=(1, 5, 20, 100), match: str = "string", progress=None):
        ks = check_ks(k)
        if match not in MATCH_MODES:
            raise ConfigError(f"unknown answer match mode {match!r}; allowed: {', '.join(MATCH_MODES)}")
        ranks, n = [], len(predictions)
        for i, (texts, answers) in enumerate(zip(predictions, references, strict=True), start=1):
            ranks.append(first_hit_rank(list(answers), list(texts), match))
            if progress is not None and (i % 64 == 0 or i == n):
                progress(i, n)
        hit = {c: [int(r is not None and r <= c) for r in ranks] for c in ks}
        accuracy = {c: (100.0 * sum(h) / n if n else 0.0) for c, h in hit.items()}
        return {"accuracy": accuracy, "first_hit_rank": ranks, "hit": hit}
