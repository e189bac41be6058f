"""RAG's two marginalisations over retrieved passages (Lewis et al., NeurIPS 2020, §2.1), in log space.

Inputs for B questions, K retrieved passages z and T target tokens:
    doc_logp[b, k]      = log p(z_k | x_b)                 (log-softmax of the retriever's scores)
    tok_logp[b, k, t]   = log p(y_t | x_b, z_k, y_<t)       (teacher-forced generator log-probabilities)
    mask[b, t]          = 1 for real target tokens, 0 for padding

RAG-Sequence: the same passage produces the whole answer,
    p(y | x) = Σ_z p(z | x) Π_t p(y_t | x, z, y_<t)
    log p    = logsumexp_k( doc_logp[k] + Σ_t tok_logp[k, t] )
RAG-Token: each token may come from a different passage,
    p(y | x) = Π_t Σ_z p(z | x) p(y_t | x, z, y_<t)
    log p    = Σ_t logsumexp_k( doc_logp[k] + tok_logp[k, t] )
With K = 1 the two coincide. Training minimises the negative log marginal likelihood (the `*_loss`
functions, averaged over questions); gradients reach both the generator and, through doc_logp, the
query encoder.

The passage posterior p(z | x, y) ∝ p(z | x) Π_t p(y_t | x, z, y_<t) says which passage an answer leaned on.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


def _masked(tok_logp: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = mask.to(tok_logp.dtype)
    if m.dim() == 2:
        m = m.unsqueeze(1)  # same target for every passage
    return torch.where(m > 0, tok_logp, torch.zeros_like(tok_logp)), m


def rag_sequence_logprob(doc_logp: torch.Tensor, tok_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log p(y | x) under RAG-Sequence, shape (B,)."""
    tok_logp, _ = _masked(tok_logp, mask)
    return torch.logsumexp(doc_logp + tok_logp.sum(-1), dim=1)


def rag_token_logprob(doc_logp: torch.Tensor, tok_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log p(y | x) under RAG-Token, shape (B,)."""
    tok_logp, m = _masked(tok_logp, mask)
    per_token = torch.logsumexp(doc_logp.unsqueeze(-1) + tok_logp, dim=1)  # (B, T): log Σ_z p(z|x) p(y_t|...)
    return (per_token * m[:, 0]).sum(-1)


def rag_sequence_loss(doc_logp: torch.Tensor, tok_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return -rag_sequence_logprob(doc_logp, tok_logp, mask).mean()


def rag_token_loss(doc_logp: torch.Tensor, tok_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return -rag_token_logprob(doc_logp, tok_logp, mask).mean()


def passage_posterior(doc_logp: torch.Tensor, tok_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """p(z | x, y), shape (B, K): how much each passage explains the answer."""
    tok_logp, _ = _masked(tok_logp, mask)
    return torch.softmax(doc_logp + tok_logp.sum(-1), dim=1)


class MixturePerQuestion(LogitsProcessor):
    """RAG-Token decoding inside `model.generate`: replace each passage row's next-token scores by the question's
    mixture log Σ_z p(z|x) p(y_t|x,z,y_<t) over its K passages (rows laid out question by question, then beam)."""

    def __init__(self, doc_logp: torch.Tensor, num_beams: int):
        self.doc_logp, self.num_beams = doc_logp, num_beams  # (B, K)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        B, K = self.doc_logp.shape
        logp = torch.log_softmax(scores.float(), dim=-1).view(B, K, self.num_beams, -1)
        mixed = torch.logsumexp(logp + self.doc_logp.to(logp.device)[:, :, None, None], dim=1, keepdim=True)
        return mixed.expand(-1, K, -1, -1).reshape(scores.shape)
