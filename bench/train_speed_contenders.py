"""The contenders of `bench/train_speed.py`, one per process: how each library is set up, and the timed steps.

`st_setup` builds sentence-transformers' MultipleNegativesRankingLoss step, `ours_setup` this project's DPR step (shared
or separate towers, GradCache optional); `run_contender` times the same loop over either (tokenise, forward under the
project's autocast, loss, backward, clip, AdamW) and reads the process's peak memory.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUERY_MAX, PASSAGE_MAX, LR, MAX_GRAD_NORM, ST_SCALE = 64, 256, 2e-5, 2.0, 20.0
CONTENDERS = {  # name -> description
    "st-mnrl": "sentence-transformers MultipleNegativesRankingLoss, shared weights",
    "ours-shared": "dpr_rag, shared towers",
    "ours-shared-q256": "dpr_rag, shared towers, queries up to 256 tokens (as ST)",
    "ours-separate": "dpr_rag, separate towers (DPR default)",
    "ours-separate-gradcache": "dpr_rag, separate towers + GradCache",
}


def proc_status(field: str) -> int | None:
    """A kB field of /proc/self/status (VmRSS, VmHWM), in bytes; None where there is no /proc."""
    try:
        m = re.search(rf"^{field}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: resets VmHWM to the current RSS
        return True
    except OSError:
        return False


@dataclass
class Setup:
    """One library's training step: batch -> features, features -> loss (backward unless told not to)."""

    tokenize: Callable[[list[dict]], Any]
    loss_and_backward: Callable[..., Any]
    train_mode: Callable[[], Any]
    eval_mode: Callable[[], Any]
    params: list
    details: dict


def _to_device(features: dict, device) -> dict:
    import torch

    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}


def st_setup(model_path: str, device) -> Setup:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from dpr_rag.retrieval.encoder import autocast

    model = SentenceTransformer(model_path, device=str(device))
    model.max_seq_length = PASSAGE_MAX
    loss_module = MultipleNegativesRankingLoss(model, scale=ST_SCALE)
    prep = getattr(model, "preprocess", None) or model.tokenize  # tokenize() is the deprecated alias in ST >= 6

    def tokenize(batch):
        q = prep([r["question"] for r in batch])
        pos = prep([(r["positive"][1], r["positive"][2]) for r in batch])
        neg = prep([(r["negative"][1], r["negative"][2]) for r in batch])
        return [_to_device(q, device), _to_device(pos, device), _to_device(neg, device)]

    def loss_and_backward(features, backward=True):
        with autocast(device):
            loss = loss_module(features, labels=None)
        if backward:
            loss.backward()
        return loss.detach()

    details = {
        "library": "sentence-transformers",
        "towers": "shared",
        "query_max_length": PASSAGE_MAX,
        "passage_max_length": PASSAGE_MAX,
        "loss": f"MultipleNegativesRankingLoss(scale={ST_SCALE})",
    }
    return Setup(tokenize, loss_and_backward, model.train, model.eval, list(model.parameters()), details)


def ours_setup(name: str, model_path: str, device, chunk_size: int) -> Setup:
    import torch

    from dpr_rag.data.passages import Passage
    from dpr_rag.retrieval.encoder import DualEncoder, autocast
    from dpr_rag.training.dpr_loss import dpr_nll_loss, duplicate_positive_mask
    from dpr_rag.training.gradcache import grad_cache_backward

    shared = name.startswith("ours-shared")
    encoder = DualEncoder.from_pretrained(model_path, shared=shared).to(device)
    encoder.settings.max_query_length = PASSAGE_MAX if name.endswith("q256") else QUERY_MAX
    encoder.settings.max_passage_length = PASSAGE_MAX
    temperature = 0.05 if encoder.settings.normalize else 1.0  # the trainer's default
    chunk = chunk_size if name.endswith("gradcache") else 0

    def tokenize(batch):
        passages = [Passage(*p) for r in batch for p in (r["positive"], r["negative"])]
        q = _to_device(encoder.tokenize_queries([r["question"] for r in batch]), device)
        p = _to_device(encoder.tokenize_passages(passages), device)
        positive_idx = torch.arange(len(batch), device=device) * 2
        mask = duplicate_positive_mask(positive_idx, [x.id or f"{x.title}\x00{x.text}" for x in passages])
        return q, p, positive_idx, mask

    def loss_and_backward(features, backward=True):
        q_batch, p_batch, positive_idx, mask = features

        def loss_fn(q_vectors, p_vectors):
            out = dpr_nll_loss(q_vectors, p_vectors, positive_idx, mask, temperature)
            return out.loss, out.correct

        if backward and chunk > 0:
            towers: list[tuple[Callable[..., Any], Any]] = [(encoder.query_encoder, q_batch), (encoder.passage_encoder, p_batch)]
            loss, _ = grad_cache_backward(towers, loss_fn, chunk, lambda: autocast(device))
            return loss
        with autocast(device):
            q_vec, p_vec = encoder.query_encoder(**q_batch).float(), encoder.passage_encoder(**p_batch).float()
        loss, _ = loss_fn(q_vec, p_vec)
        if backward:
            loss.backward()
        return loss.detach()

    details = {
        "library": "dpr_rag",
        "towers": "shared" if shared else "separate",
        "query_max_length": encoder.settings.max_query_length,
        "passage_max_length": PASSAGE_MAX,
        "loss": f"dpr_nll_loss(temperature={temperature})" + (f" + GradCache(chunk={chunk})" if chunk else ""),
    }
    return Setup(tokenize, loss_and_backward, encoder.train, encoder.eval, list(encoder.parameters()), details)


def _first_batch_check(setup: Setup, batch: list[dict], name: str) -> dict:
    """The loss on the first batch without dropout, before any update (the objectives must match), and its shapes."""
    import torch

    setup.eval_mode()
    with torch.no_grad():
        features = setup.tokenize(batch)
        loss = float(setup.loss_and_backward(features, backward=False))
    passages = [list(f["input_ids"].shape) for f in features[1:3]] if name == "st-mnrl" else list(features[1]["input_ids"].shape)
    setup.train_mode()
    return {
        "first_batch_loss_eval": round(loss, 5),
        "first_batch_tokens": {"query": list(features[0]["input_ids"].shape), "passages": passages},
    }


def _memory(device, rss_before: int | None, rss_reset: bool, cuda_before: int | None) -> dict:
    import torch

    out: dict[str, Any]
    if device.type == "cuda":
        out = {
            "peak_memory_bytes": torch.cuda.max_memory_allocated(device),
            "memory_before_training_bytes": cuda_before,
            "memory_kind": "torch.cuda.max_memory_allocated (warm-up + timed steps)",
        }
    else:
        out = {
            "peak_memory_bytes": proc_status("VmHWM") if rss_reset else None,
            "memory_before_training_bytes": rss_before,
            "memory_kind": "peak RSS (VmHWM) of the subprocess during warm-up + timed steps",
        }
    if out["peak_memory_bytes"] is not None and out["memory_before_training_bytes"] is not None:
        out["peak_increase_bytes"] = out["peak_memory_bytes"] - out["memory_before_training_bytes"]
    return out


def run_contender(name: str, rows: list[dict], args) -> dict:
    """Time `args.steps` training steps of contender `name` after `args.warmup` untimed ones, in this process."""
    import torch

    device = torch.device(args.device)
    torch.manual_seed(0)
    data = [rows[i : i + args.batch_size] for i in range(0, len(rows), args.batch_size)]
    setup = st_setup(args.model, device) if name == "st-mnrl" else ours_setup(name, args.model, device, args.chunk)
    optimizer = torch.optim.AdamW(setup.params, lr=LR, weight_decay=0.0)
    details = setup.details | {"parameters": sum(p.numel() for p in {id(p): p for p in setup.params}.values())}
    details |= _first_batch_check(setup, data[0], name)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step(batch) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        features = setup.tokenize(batch)
        t1 = time.perf_counter()
        loss = setup.loss_and_backward(features)
        torch.nn.utils.clip_grad_norm_(setup.params, MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - t0, t1 - t0, float(loss)

    sync()
    rss_before, rss_reset, cuda_before = proc_status("VmRSS"), reset_peak_rss(), None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        cuda_before = torch.cuda.memory_allocated(device)
    for i in range(args.warmup):
        step(data[i % len(data)])
    timed = [step(data[i]) for i in range(args.steps)]
    total = sum(t for t, _, _ in timed)
    return {
        "name": name,
        "description": CONTENDERS[name],
        **details,
        "timed_steps": args.steps,
        "warmup_steps": args.warmup,
        "batch_size": args.batch_size,
        "seconds_total": round(total, 4),
        "seconds_per_step": round(total / args.steps, 4),
        "questions_per_second": round(args.steps * args.batch_size / total, 3),
        "tokenize_seconds_per_step": round(sum(t for _, t, _ in timed) / args.steps, 4),
        "step_seconds": [round(t, 4) for t, _, _ in timed],
        "losses": [round(loss, 5) for _, _, loss in timed],
        **_memory(device, rss_before, rss_reset, cuda_before),
    }
