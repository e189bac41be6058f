import math

import pytest
import torch

from dpr_rag.losses import dpr_nll_loss, duplicate_positive_mask


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
