"""DPR's reader loss (Karpukhin et al., 2020, §6.1; facebookresearch/DPR `dpr/models/reader.py`, `compute_loss`).

Per question, M passages are read: the positive first (it contains an answer), then M − 1 negatives. With the
selection logits r (M,) and the positive's start and end logits a, b (L,), masked to its passage tokens,

    L_select = −log softmax(r)_0                                            pick the answer-bearing passage
    L_span   = −log Σ_{(s, e) ∈ S} softmax(a)_s · softmax(b)_e              marginal likelihood of every occurrence

where S holds the token spans of all answer occurrences in the positive (distant supervision cannot tell which one
is right, so each counts: DPR's `_calc_mml`). The loss is L_select + L_span, averaged over the questions. Use it to
train `dpr_rag.extractive.ExtractiveReader`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ReaderLoss:
    loss: torch.Tensor  # mean over questions of selection + span
    selection: float  # the selection part (mean), for the log
    span: float  # the span part (mean)
    selected: int  # questions whose positive got the highest selection score


def reader_loss(
    selection: torch.Tensor, start: torch.Tensor, end: torch.Tensor, allowed: torch.Tensor, spans: list[list[tuple[int, int]]]
) -> ReaderLoss:
    """`selection` (B, M) with the positive at 0; `start`, `end` (B, L) and `allowed` (B, L, bool) of each positive;
    `spans[b]`: its answer spans as inclusive (start token, end token), at least one per question."""
    if any(not s for s in spans):
        raise ValueError("every question needs at least one answer span in its positive passage")
    neg = torch.finfo(start.dtype).min
    log_start = torch.log_softmax(start.masked_fill(~allowed, neg), dim=-1)
    log_end = torch.log_softmax(end.masked_fill(~allowed, neg), dim=-1)
    span_losses = []
    for b, occurrences in enumerate(spans):
        s = torch.tensor([o[0] for o in occurrences])
        e = torch.tensor([o[1] for o in occurrences])
        span_losses.append(-torch.logsumexp(log_start[b, s] + log_end[b, e], dim=0))
    span_loss = torch.stack(span_losses)
    select_loss = -torch.log_softmax(selection, dim=-1)[:, 0]
    selected = int((selection.argmax(dim=-1) == 0).sum())
    loss = (select_loss + span_loss).mean()
    return ReaderLoss(loss, float(select_loss.mean().detach()), float(span_loss.mean().detach()), selected)
