"""DPR's training loss (Karpukhin et al. 2020, eq. 2): negative log-likelihood of the positive passage.

For a batch of B questions q_i and the N passages p_j of the batch (every question's positive and hard
negatives, so N = B without hard negatives, N = 2B with one each), with sim(q, p) = q·p / τ:

    L = -1/B Σ_i log( exp(sim(q_i, p_{pos(i)})) / Σ_j exp(sim(q_i, p_j)) )

Every other question's passages are "in-batch negatives" for free. One correction: a passage that appears
twice in a batch (two questions sharing a positive, or a question's positive being another's hard
negative) must not count as a negative of a question whose positive it is; those entries are masked out.
τ = 1 is DPR's choice; a lower temperature sharpens the softmax (useful with L2-normalised embeddings,
whose cosines lie in [-1, 1]).

Use it to train a dual encoder with in-batch negatives (+ BM25 hard negatives); q and p may be gathered
from several processes first, so the negatives span the whole distributed batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class DprNllOutput:
    loss: torch.Tensor
    correct: int  # questions whose positive scored highest (in-batch accuracy numerator)
    scores: torch.Tensor  # (B, N), masked entries -inf


def duplicate_positive_mask(positive_idx: torch.Tensor, passage_keys: list[str]) -> torch.Tensor:
    """(B, N) boolean: True where passage j is a copy of question i's positive but not the positive itself."""
    key_ids = {k: n for n, k in enumerate(dict.fromkeys(passage_keys))}
    keys = torch.tensor([key_ids[k] for k in passage_keys], device=positive_idx.device)
    same = keys.unsqueeze(0) == keys[positive_idx].unsqueeze(1)
    same[torch.arange(len(positive_idx), device=positive_idx.device), positive_idx] = False
    return same


def dpr_nll_loss(
    q: torch.Tensor,
    p: torch.Tensor,
    positive_idx: torch.Tensor,
    duplicate_mask: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> DprNllOutput:
    """q: (B, d) question vectors; p: (N, d) passage vectors; positive_idx: (B,) index into p of each positive."""
    scores = (q @ p.T).float() / temperature
    if duplicate_mask is not None:
        scores = scores.masked_fill(duplicate_mask, float("-inf"))
    loss = F.cross_entropy(scores, positive_idx)  # = mean of -log softmax at the positive
    correct = int((scores.argmax(dim=1) == positive_idx).sum())
    return DprNllOutput(loss, correct, scores)
