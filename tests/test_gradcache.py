import contextlib

import pytest
import torch

from dpr_rag.retrieval.encoder import DualEncoder
from dpr_rag.training.dpr_loss import dpr_nll_loss
from dpr_rag.training.gradcache import grad_cache_backward

QUESTIONS = [f"question {i} about topic {i % 3}" for i in range(6)]
PASSAGES = [(f"Title {i}", f"passage {i} text " + "word " * i) for i in range(12)]


def grads(encoder, use_cache: bool, chunk: int, seed: int = 0):
    encoder.zero_grad(set_to_none=True)
    q = encoder.tokenize_queries(QUESTIONS)
    from dpr_rag.data.passages import Passage

    p = encoder.tokenize_passages([Passage(str(i), t, x) for i, (t, x) in enumerate(PASSAGES)])
    positive = torch.arange(6) * 2

    def loss_fn(qv, pv):
        out = dpr_nll_loss(qv, pv, positive)
        return out.loss, out.correct

    torch.manual_seed(seed)
    if use_cache:
        towers = [(encoder.query_encoder, q), (encoder.passage_encoder, p)]
        loss, _ = grad_cache_backward(towers, loss_fn, chunk, contextlib.nullcontext)
    else:
        loss, _ = loss_fn(encoder.query_encoder(**q), encoder.passage_encoder(**p))
        loss.backward()
    return float(loss), {n: t.grad.clone() for n, t in encoder.named_parameters() if t.grad is not None}


@pytest.mark.parametrize("chunk", [1, 4, 5])
def test_grad_cache_gives_the_same_gradients_without_dropout(tiny_model_dir, chunk):
    enc = DualEncoder.from_pretrained(tiny_model_dir, shared=False)
    enc.eval()  # no dropout: chunking must not change anything
    loss_a, g_a = grads(enc, False, chunk)
    loss_b, g_b = grads(enc, True, chunk)
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert g_a.keys() == g_b.keys() and len(g_a) > 10
    for name in g_a:
        torch.testing.assert_close(g_b[name], g_a[name], atol=2e-5, rtol=1e-3, msg=name)


def test_grad_cache_replays_dropout(tiny_model_dir):
    enc = DualEncoder.from_pretrained(tiny_model_dir, shared=False)
    enc.train()  # dropout on: the re-forward must reuse the first forward's masks
    loss_a, g_a = grads(enc, False, 100)
    loss_b, g_b = grads(enc, True, 100)
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    for name in g_a:
        torch.testing.assert_close(g_b[name], g_a[name], atol=2e-5, rtol=1e-3, msg=name)
    _, g_c = grads(enc, True, 100, seed=1)  # another seed, other masks: the check above is not vacuous
    assert any(not torch.allclose(g_c[n], g_a[n]) for n in g_a)
