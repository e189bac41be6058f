"""Listwise loss of a cross-encoder reranker: localized contrastive estimation (Gao, Dai & Callan 2021).

Each question comes with a group of n passages taken from the first stage's own top candidates: one answer-bearing
positive p⁺ and n − 1 hard negatives that the first stage ranked high but that hold no answer. With s(q, p) the
reranker's logit, the loss is the cross-entropy of the positive under a softmax over its group:

    L = −log  exp s(q, p⁺) / Σ_{p ∈ group} exp s(q, p)

Use it rather than a pointwise binary cross-entropy when the reranker will reorder one retriever's top list: the
negatives are exactly the confusions it has to undo, and only the order within a group is learned (a shift of all
logits changes nothing). The softmax over the group is also what makes exp(s) usable as RAG's p(z | x) with τ = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GroupLoss:
    loss: torch.Tensor
    correct: int  # groups whose positive scores above every negative (a tie is not a win)


def group_softmax_loss(logits: torch.Tensor, group_size: int) -> GroupLoss:
    """`logits`: (questions × group_size,) with each group's positive first. Mean loss over the groups."""
    if logits.dim() != 1 or group_size < 2 or logits.numel() % group_size:
        raise ValueError(f"expected a flat tensor of groups of {group_size} (≥ 2), got shape {tuple(logits.shape)}")
    grouped = logits.view(-1, group_size)
    target = torch.zeros(grouped.size(0), dtype=torch.long, device=logits.device)
    loss = torch.nn.functional.cross_entropy(grouped, target)
    return GroupLoss(loss, int((grouped[:, 0] > grouped[:, 1:].max(dim=1).values).sum()))
