import math

import pytest
import torch

from dpr_rag.training.dpr_loss import dpr_nll_loss, duplicate_positive_mask


def test_nll_matches_hand_computation():
    # Two questions, one hard negative each: passages [pos0, hn0, pos1, hn1], scores (2, 4).
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    out = dpr_nll_loss(q, p, torch.tensor([0, 2]))
    # q0 scores: [2, 1, 0, 1] -> -log(e^2 / (e^2 + e + 1 + e)); q1 scores: [0, 1, 3, 0] -> -log(e^3 / (1 + e + e^3 + 1))
    l0 = -math.log(math.e**2 / (math.e**2 + 2 * math.e + 1))
    l1 = -math.log(math.e**3 / (math.e**3 + math.e + 2))
    assert out.loss.item() == pytest.approx((l0 + l1) / 2, rel=1e-6)
    assert out.scores.shape == (2, 4) and out.correct == 2


def test_temperature_scales_scores():
    q, p = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.0], [0.0, 0.5]])
    out = dpr_nll_loss(q, p, torch.tensor([0]), temperature=0.1)
    assert out.loss.item() == pytest.approx(-math.log(math.exp(5) / (math.exp(5) + 1)), rel=1e-6)


def test_in_batch_only_shape_is_b_by_b():
    q, p = torch.randn(5, 8), torch.randn(5, 8)
    out = dpr_nll_loss(q, p, torch.arange(5))
    assert out.scores.shape == (5, 5)


def test_duplicated_positive_is_not_a_negative():
    # Questions 0 and 1 share the positive passage "A" (positions 0 and 2); position 3 repeats q0's... nothing.
    keys = ["A", "x", "A", "y"]
    positive_idx = torch.tensor([0, 2])
    mask = duplicate_positive_mask(positive_idx, keys)
    assert mask.tolist() == [[False, False, True, False], [True, False, False, False]]
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    p = torch.tensor([[3.0, 0.0], [0.0, 0.0], [3.0, 0.0], [1.0, 0.0]])
    masked = dpr_nll_loss(q, p, positive_idx, mask)
    # With the copy masked, q0 sees [3, 0, -inf, 1]: -log(e^3 / (e^3 + 1 + e)).
    expected = -math.log(math.e**3 / (math.e**3 + 1 + math.e))
    assert masked.loss.item() == pytest.approx(expected, rel=1e-6)
    unmasked = dpr_nll_loss(q, p, positive_idx)
    assert unmasked.loss.item() > masked.loss.item() + 0.5  # the copy would have counted as a strong negative


def test_gradients_flow_to_both_towers():
    q = torch.randn(3, 4, requires_grad=True)
    p = torch.randn(6, 4, requires_grad=True)
    dpr_nll_loss(q, p, torch.tensor([0, 2, 4])).loss.backward()
    assert q.grad.abs().sum() > 0 and p.grad.abs().sum() > 0


# ---- RAG marginals ------------------------------------------------------------------------------------
from dpr_rag.rag.marginals import passage_posterior, rag_sequence_logprob, rag_token_logprob  # noqa: E402


def brute_force(doc_p, tok_p, lengths):
    """Probabilities (not logs) straight from the definitions, with Python loops."""
    seq, tok = [], []
    for b in range(len(doc_p)):
        T = lengths[b]
        seq.append(sum(doc_p[b][k] * math.prod(tok_p[b][k][t] for t in range(T)) for k in range(len(doc_p[b]))))
        tok.append(math.prod(sum(doc_p[b][k] * tok_p[b][k][t] for k in range(len(doc_p[b]))) for t in range(T)))
    return seq, tok


def test_rag_marginals_equal_brute_force():
    torch.manual_seed(0)
    B, K, T = 3, 4, 5
    doc_logp = torch.log_softmax(torch.randn(B, K, dtype=torch.float64), dim=1)
    tok_logp = torch.log_softmax(torch.randn(B, K, T, 7, dtype=torch.float64), dim=-1)[..., 0]  # log p of one token
    lengths = [5, 3, 1]
    mask = torch.tensor([[1 if t < n else 0 for t in range(T)] for n in lengths])
    tok_logp = tok_logp.masked_fill(mask.unsqueeze(1) == 0, float("nan"))  # padding must not leak in
    seq, tok = brute_force(doc_logp.exp().tolist(), tok_logp.exp().tolist(), lengths)
    assert rag_sequence_logprob(doc_logp, tok_logp, mask).exp().tolist() == pytest.approx(seq, rel=1e-9)
    assert rag_token_logprob(doc_logp, tok_logp, mask).exp().tolist() == pytest.approx(tok, rel=1e-9)
    post = passage_posterior(doc_logp, tok_logp, mask)
    expected_post = [
        [
            doc_logp.exp()[b, k].item() * math.prod(tok_logp.exp()[b, k, t].item() for t in range(lengths[b])) / seq[b]
            for k in range(K)
        ]
        for b in range(B)
    ]
    assert post.tolist() == [pytest.approx(row, rel=1e-9) for row in expected_post]


def test_one_passage_makes_both_modes_agree():
    doc_logp = torch.zeros(2, 1)
    tok_logp = torch.log(torch.rand(2, 1, 6))
    mask = torch.ones(2, 6)
    torch.testing.assert_close(rag_sequence_logprob(doc_logp, tok_logp, mask), rag_token_logprob(doc_logp, tok_logp, mask))


def test_modes_differ_when_passages_disagree():
    # Passage 1 explains both tokens, passage 2 neither: sequence mode keeps the coherent passage (0.5),
    # token mode mixes per token (0.5 * 0.5 = 0.25).
    doc_logp = torch.log(torch.tensor([[0.5, 0.5]]))
    tok_logp = torch.log(torch.tensor([[[1.0, 1.0], [1e-12, 1e-12]]]))
    mask = torch.ones(1, 2)
    assert rag_sequence_logprob(doc_logp, tok_logp, mask).exp().item() == pytest.approx(0.5)
    assert rag_token_logprob(doc_logp, tok_logp, mask).exp().item() == pytest.approx(0.25)
