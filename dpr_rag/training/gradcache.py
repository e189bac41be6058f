"""Gradient caching (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup").

In-batch negatives need every vector of the batch at once, so gradient accumulation (separate losses over
sub-batches) changes the objective. GradCache keeps the objective and bounds the memory:
1. encode the batch in chunks *without* building graphs, and keep only the vectors;
2. compute the loss on those vectors and back-propagate to them: d loss / d vector, cheap;
3. re-encode each chunk *with* a graph and back-propagate the cached vector gradients through it.
Peak activation memory is that of one chunk, not of the batch; the gradients are the same as with plain
back-propagation. Dropout is replayed identically in step 3 by restoring the RNG state of step 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def _rng_state(device: torch.device):
    return (torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng_state(state, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _chunks(batch: dict[str, torch.Tensor], size: int) -> list[dict[str, torch.Tensor]]:
    n = next(iter(batch.values())).shape[0]
    return [{k: v[i : i + size] for k, v in batch.items()} for i in range(0, n, size)]


def grad_cache_backward(
    towers_and_batches: list[tuple[Callable, dict[str, torch.Tensor]]],
    loss_fn: Callable[..., tuple[torch.Tensor, Any]],
    chunk_size: int,
    autocast: Callable,
) -> tuple[torch.Tensor, Any]:
    """Run forward + backward of loss_fn(*vectors) with chunked re-computation; returns (loss, loss_fn's extra).

    `towers_and_batches`: [(tower, tokenised batch), ...], e.g. [(query tower, questions), (passage tower, passages)].
    `loss_fn` gets one vector tensor per tower and returns (loss, extra); `autocast()` gives the mixed-precision context.
    """
    device = next(iter(towers_and_batches[0][1].values())).device
    vectors, states = [], []
    for tower, batch in towers_and_batches:  # 1. vectors only
        reps, rng = [], []
        for chunk in _chunks(batch, chunk_size):
            rng.append(_rng_state(device))
            with torch.no_grad(), autocast():
                reps.append(tower(**chunk).float())
        vectors.append(torch.cat(reps).requires_grad_())
        states.append(rng)
    loss, extra = loss_fn(*vectors)  # 2. gradients w.r.t. the vectors
    loss.backward()
    for (tower, batch), v, rng in zip(towers_and_batches, vectors, states, strict=True):  # 3. through the towers, chunk by chunk
        assert v.grad is not None  # v is a leaf that the loss depends on
        for chunk, state, grad in zip(_chunks(batch, chunk_size), rng, v.grad.split(chunk_size), strict=True):
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                _set_rng_state(state, device)
                with autocast():
                    reps = tower(**chunk).float()
                reps.backward(grad)
    return loss.detach(), extra
