"""Distributed data parallel helpers (torchrun): process-group setup, a differentiable all-gather, and
gradient averaging.

With in-batch negatives, every rank must score its questions against the passages of *all* ranks, so the
passage vectors are gathered. `all_gather_with_grad` sums the incoming gradients over ranks in backward,
so each rank's passage tower receives the gradient of every rank's loss. Averaging parameter gradients
afterwards (`average_gradients`) then gives each rank the gradient of the mean loss over the global batch,
exactly what one process holding the whole batch would compute.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def init_from_env(timeout: timedelta | None = None) -> torch.device:
    """Join the process group that torchrun describes (RANK, WORLD_SIZE, ...); a no-op for a single process.
    `timeout` bounds every collective (torch's default: 30 minutes for gloo, 10 for nccl)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_distributed():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=timeout)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every rank gets here (a no-op for a single process)."""
    if is_distributed():
        dist.barrier()


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's loss depends on this rank's slice
        n = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * n : (dist.get_rank() + 1) * n]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate x from all ranks in rank order (x itself when not distributed); gradients flow back."""
    return _AllGather.apply(x) if is_distributed() else x


def average_gradients(module: torch.nn.Module) -> None:
    if not is_distributed():
        return
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= dist.get_world_size()


def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / dist.get_world_size()


def sum_over_ranks(n: int) -> int:
    if not is_distributed():
        return n
    t = torch.tensor([n])
    dist.all_reduce(t)
    return int(t)


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Start every rank from rank 0's weights."""
    if is_distributed():
        for t in module.state_dict().values():
            dist.broadcast(t, 0)
