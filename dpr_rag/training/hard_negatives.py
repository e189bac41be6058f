"""Hard negatives mined by a dense encoder, with false-negative control (ANCE / RocketQA / NV-Retriever).

BM25 negatives share words with the question; the passages a dense encoder confuses with the positive are the ones its
training most needs to see (Xiong et al. 2021). They are also where unlabelled positives hide: a top-ranked passage
that answers the question but lacks the exact answer string would be taught as wrong (RocketQA found ~70% of DPR's
top-ranked "negatives" were false). Per question, over the encoder's top `top_k`:

- the positive itself, and any passage whose text or title contains an answer, are skipped (DPR's rule);
- with `margin` m > 0, a candidate is skipped when sim(q, z) > sim(q, z+) - m (sentence-transformers'
  `mine_hard_negatives(absolute_margin=m)`): a passage the encoder scores about as high as the positive is more
  likely an unlabelled positive than a negative;
- the first `n` left, in rank order, are the hard negatives.

`sources="dense"` replaces an example's hard negatives with these; `"both"` interleaves them with its BM25 ones
(dense first), so any `--hard-negatives N` draws from each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from tqdm.auto import tqdm

from ..config_checks import check_choice, check_float, check_int
from ..data.passages import Passage
from ..data.qa import QAExample
from ..matching import answer_matcher
from ..retrieval.dense import DenseRetriever

NEGATIVE_SOURCES = ("bm25", "dense", "both")


@dataclass
class MiningStats:
    n_examples: int = 0
    n_answer_bearing: int = 0  # candidates skipped: they contain an answer (or are the positive)
    n_within_margin: int = 0  # candidates skipped: scored within `margin` of the positive
    n_short: int = 0  # examples left with fewer than n dense negatives

    def summary(self) -> str:
        return (
            f"dense negatives for {self.n_examples} questions: skipped {self.n_answer_bearing} answer-bearing and "
            f"{self.n_within_margin} within the margin of the positive; {self.n_short} got fewer than asked"
        )


def _interleave(a: Sequence[Passage], b: Sequence[Passage]) -> list[Passage]:
    out: list[Passage] = []
    seen: set[str] = set()
    for i in range(max(len(a), len(b))):
        for p in (a[i : i + 1], b[i : i + 1]):
            if p and (p[0].id or p[0].text) not in seen:
                seen.add(p[0].id or p[0].text)
                out.append(p[0])
    return out


def mine_dense_negatives(
    examples: Sequence[QAExample],
    retriever: DenseRetriever,
    n: int = 10,
    margin: float = 0.0,
    top_k: int = 50,
    sources: str = "dense",
    batch_size: int = 256,
    show_progress: bool = True,
) -> tuple[list[QAExample], MiningStats]:
    """Examples with dense-mined hard negatives (see the module docstring); the input examples are not modified."""
    check_int("n", n, 1)
    check_float("margin", margin, ge=0)
    check_int("top_k", top_k, 1)
    check_choice("sources", sources, NEGATIVE_SOURCES[1:])  # "bm25" needs no mining
    stats = MiningStats(n_examples=len(examples))
    out: list[QAExample] = []
    with tqdm(total=len(examples), desc="mining dense negatives", unit="question", disable=not show_progress) as bar:
        for start in range(0, len(examples), batch_size):
            batch = list(examples[start : start + batch_size])
            q = retriever.encode([ex.question for ex in batch])
            pos = retriever.encoder.encode_passages([ex.positive_ctxs[0] for ex in batch], show_progress=False)
            pos_scores = np.einsum("ij,ij->i", q, pos)
            scores, ids = retriever.index.search(q, top_k)
            for ex, row_s, row_i, ps in zip(batch, scores, ids, pos_scores, strict=True):
                contains = answer_matcher(ex.answers)
                positive_ids = {p.id for p in ex.positive_ctxs}
                mined: list[Passage] = []
                for s, i in zip(row_s, row_i, strict=True):
                    if i < 0 or len(mined) == n:
                        break
                    p = retriever.passages[i]
                    if p.id in positive_ids or contains(p.text) or contains(p.title):
                        stats.n_answer_bearing += 1
                    elif margin and s > ps - margin:
                        stats.n_within_margin += 1
                    else:
                        mined.append(p)
                stats.n_short += len(mined) < n
                negatives = mined if sources == "dense" else _interleave(mined, ex.hard_negative_ctxs)
                out.append(replace(ex, hard_negative_ctxs=negatives))
            bar.update(len(batch))
    return out, stats
