"""Model selection during training: top-k retrieval accuracy of the dev questions over a candidate pool.

Re-encoding the whole corpus after every epoch costs minutes on a CPU, so the pool is the union of the dev
questions' positives and BM25 hard negatives (the passages that are hardest to tell apart); accuracy is
the share of questions with a passage containing an answer (`has_answer`) among the top k. It ranks
checkpoints; report final figures with `python -m eval.run`, over the full corpus.
"""

from __future__ import annotations

import numpy as np

from ..data.passages import Passage
from ..data.qa import QAExample
from ..matching import first_hit_rank
from ..retrieval.encoder import DualEncoder
from ..retrieval.faiss_index import DenseIndex


def dev_pool(dev: list[QAExample]) -> list[Passage]:
    pool: dict[object, Passage] = {}
    for ex in dev:
        for p in [*ex.positive_ctxs, *ex.hard_negative_ctxs]:
            pool.setdefault(p.id or (p.title, p.text), p)
    return list(pool.values())


def dev_accuracy(encoder: DualEncoder, dev: list[QAExample], k: int = 20) -> float:
    """Percent of dev questions with an answer-bearing passage in the top-k of the pool."""
    encoder.eval()
    pool = dev_pool(dev)
    index = DenseIndex(encoder.dim)
    index.add(encoder.encode_passages(pool, show_progress=False))
    _, ids = index.search(encoder.encode_queries([ex.question for ex in dev]), k)
    hits = [
        first_hit_rank(ex.answers, [pool[i].text for i in row if i >= 0]) is not None for ex, row in zip(dev, ids, strict=True)
    ]
    return round(100.0 * float(np.mean(hits)), 2)
