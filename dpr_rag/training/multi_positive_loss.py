"""Full-corpus, multi-positive NLL for a question tower trained against a frozen passage index.

With the passage vectors fixed, a question can be scored against the whole corpus C at every step (10k passages
here: one (B, d) x (d, |C|) matmul), so no negative needs sampling, and every passage the data marks as answer-bearing
counts as correct. For question q with positive set P(q) ⊆ C and s(q, p) = q·p / τ:

    L(q) = -log Σ_{p ∈ P(q)} exp(s(q, p)) + log Σ_{p ∈ C} exp(s(q, p))

i.e. -log of the probability mass the softmax over the corpus puts on answer-bearing passages (the retrieval
analogue of the marginal likelihood RAG and ORQA train on). With one positive it is DPR's NLL with every other corpus
passage as a negative. Use it when the passage side stays frozen (query-side fine-tuning, as DensePhrases does for
its phrase index): the corpus need not be re-encoded, and a passage that holds the answer is never pushed away
as a "negative".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def positive_mask(positives: Sequence[Sequence[int]], n_passages: int, device: torch.device | None = None) -> torch.Tensor:
    """(B, n_passages) boolean: True at each question's positive passages (indices into the corpus)."""
    mask = torch.zeros(len(positives), n_passages, dtype=torch.bool, device=device)
    for i, ids in enumerate(positives):
        if not ids:
            raise ValueError(f"question {i} of the batch has no positive passage")
        mask[i, list(ids)] = True
    return mask


def multi_positive_nll(q: torch.Tensor, corpus: torch.Tensor, mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over the batch of L(q) above. q: (B, d) question vectors; corpus: (N, d) frozen passage vectors;
    mask: (B, N) positives."""
    scores = (q @ corpus.T).float() / temperature
    everything = torch.logsumexp(scores, dim=1)
    answer_bearing = torch.logsumexp(scores.masked_fill(~mask, float("-inf")), dim=1)
    return (everything - answer_bearing).mean()
