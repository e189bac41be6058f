"""Train a DPR dual encoder: in-batch negatives + BM25 hard negatives, NLL loss, AdamW with linear warm-up
and decay, gradient clipping, optional gradient caching and distributed data parallel, exact resume.

Output folder:
    best/            the dual encoder with the best dev top-k accuracy (load it with --model OUT)
    last/            the last checkpoint: model/ + optimizer.pt, scheduler.pt, rng.pt, trainer_state.json
    data/            train.json, dev.json: the examples in DPR's format, as trained on
    train_log.jsonl  one line per step (loss, in-batch accuracy, lr) and per evaluation
    loss.png         the loss curve and dev accuracy, redrawn at every checkpoint
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from pickle import UnpicklingError  # only the exception type: nothing here unpickles

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from . import distributed as dist
from .encoder import DualEncoder, autocast
from .errors import ConfigError, DataFormatError
from .gradcache import grad_cache_backward
from .losses import dpr_nll_loss, duplicate_positive_mask
from .passages import Passage
from .plots import plot_training_log
from .qa import QAExample
from .storage import atomic_dir, recover
from .train_eval import dev_accuracy
from .training_data import load_or_build_training_data

CHECKPOINT_STATE = "trainer_state.json"


@dataclass
class TrainConfig:
    out: str
    qa: str | None = None  # QA file; None = the embedded fanoutqa questions
    corpus: str | None = None  # corpus for distant supervision and random negatives; None = the default corpus
    model: str | None = None  # starting encoder; None = all-MiniLM-L6-v2
    shared: bool = False  # one model for questions and passages (DPR: separate)
    epochs: int = 1
    batch_size: int = 16  # questions per step, over all processes
    hard_negatives: int = 1
    lr: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 2.0
    temperature: float | None = None  # None: 0.05 for L2-normalised encoders (cosines), else 1.0 (DPR)
    grad_cache_chunk: int = 0  # >0: GradCache with this many sequences per chunk
    dev_fraction: float = 0.1
    eval_k: int = 20
    max_examples: int | None = None  # cap the training questions (quick runs)
    seed: int = 42
    save_every: int = 0  # steps between checkpoints; 0 = once an epoch
    resume: bool = False
    show_progress: bool = True


@dataclass
class TrainResult:
    out: Path
    steps: int
    best_dev_accuracy: float | None
    history: list[dict] = field(default_factory=list)
    cancelled: bool = False


class _Batches:
    """Deterministic batches: the order of epoch e is a permutation seeded by (seed, e), so a resumed run
    sees exactly the batches it would have seen."""

    def __init__(self, examples: list[QAExample], pool: list[Passage], cfg: TrainConfig):
        self.examples, self.pool, self.cfg = examples, pool, cfg
        self.per_epoch = len(examples) // cfg.batch_size
        if self.per_epoch == 0:
            raise ConfigError(f"batch size {cfg.batch_size} is larger than the {len(examples)} training examples")

    def global_batch(self, epoch: int, step: int) -> tuple[list[str], list[Passage]]:
        """Questions and passages of the whole (all-rank) batch; passages grouped per question, positive first.
        Questions with fewer hard negatives than asked get random pool passages (random negatives)."""
        g = torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch)
        order = torch.randperm(len(self.examples), generator=g)[step * self.cfg.batch_size : (step + 1) * self.cfg.batch_size]
        fill = torch.Generator().manual_seed(self.cfg.seed * 1000003 + epoch * 10007 + step)
        questions, passages = [], []
        for i in order.tolist():
            ex = self.examples[i]
            negatives = ex.hard_negative_ctxs[: self.cfg.hard_negatives]
            while len(negatives) < self.cfg.hard_negatives:
                negatives.append(self.pool[int(torch.randint(len(self.pool), (1,), generator=fill))])
            questions.append(ex.question)
            passages += [ex.positive_ctxs[0], *negatives]
        return questions, passages


def _key(p: Passage) -> str:
    return p.id or f"{p.title}\x00{p.text}"


def _save_checkpoint(out: Path, encoder: DualEncoder, optimizer, scheduler, state: dict) -> None:
    with atomic_dir(out / "last") as tmp:
        encoder.save_pretrained(tmp / "model")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save({"cpu": torch.get_rng_state()}, tmp / "rng.pt")
        (tmp / CHECKPOINT_STATE).write_text(json.dumps(state, indent=2))


def _load_tensors(path: Path) -> dict:
    """A checkpoint's optimizer/scheduler/RNG state: tensors and plain containers only (weights_only=True), so a
    tampered file cannot run code; anything else is reported as a bad checkpoint, not unpickled."""
    try:
        return torch.load(path, weights_only=True)
    except (UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as e:
        raise DataFormatError(f"{path}: not a loadable checkpoint file ({str(e).splitlines()[0][:200]})") from e


def _load_checkpoint(out: Path, cfg: TrainConfig) -> tuple[DualEncoder, dict]:
    recover(out / "last")
    state_file = out / "last" / CHECKPOINT_STATE
    if not state_file.exists():
        raise ConfigError(f"cannot resume: {state_file} not found (train without --resume first)")
    state = json.loads(state_file.read_text())
    if cfg.model is not None and cfg.model != state["config"]["model"]:
        raise ConfigError(f"cannot resume: {out} was trained from {state['config']['model'] or 'the default encoder'!r}, not {cfg.model!r}")
    for name in ("batch_size", "hard_negatives", "epochs", "seed"):
        if getattr(cfg, name) != state["config"][name]:
            raise ConfigError(f"cannot resume with a different {name} ({getattr(cfg, name)} vs {state['config'][name]} in the checkpoint)")
    return DualEncoder.from_pretrained(out / "last" / "model"), state


def train(cfg: TrainConfig, callback: Callable[[dict], None] | None = None, cancel: threading.Event | None = None) -> TrainResult:
    """Train a dual encoder as configured; `callback` receives every log record, `cancel` stops after a step."""
    device = dist.init_from_env()
    out, is_main = Path(cfg.out), dist.rank() == 0
    world = dist.world_size()
    if cfg.batch_size % world:
        raise ConfigError(f"batch size {cfg.batch_size} must be divisible by the number of processes ({world})")
    torch.manual_seed(cfg.seed)
    if cfg.resume:
        encoder, state = _load_checkpoint(out, cfg)
    else:
        encoder, state = DualEncoder.from_pretrained(cfg.model, shared=cfg.shared), None
    encoder.to(device).train()
    dist.broadcast_parameters(encoder)
    train_set, dev_set, pool = load_or_build_training_data(cfg, out, is_main)
    batches = _Batches(train_set, pool, cfg)
    total_steps = batches.per_epoch * cfg.epochs
    temperature = cfg.temperature or (0.05 if encoder.settings.normalize else 1.0)

    optimizer = torch.optim.AdamW(encoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total_steps), total_steps)
    step, best = 0, None
    if state is not None:
        optimizer.load_state_dict(_load_tensors(out / "last" / "optimizer.pt"))
        scheduler.load_state_dict(_load_tensors(out / "last" / "scheduler.pt"))
        torch.set_rng_state(_load_tensors(out / "last" / "rng.pt")["cpu"])
        step, best = state["step"], state["best_dev_accuracy"]

    log_path, history = out / "train_log.jsonl", []

    def log(record: dict) -> None:
        history.append(record)
        if is_main:
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            if callback:
                callback(record)

    def evaluate_and_save() -> None:
        nonlocal best
        if is_main:
            acc = dev_accuracy(encoder, dev_set, cfg.eval_k) if dev_set else None
            log({"step": step, "epoch": step / batches.per_epoch, f"dev_top{cfg.eval_k}": acc})
            if not dev_set or best is None or acc > best:  # without a dev set, the latest model is "best"
                best = acc
                encoder.save_pretrained(out / "best")
            _save_checkpoint(out, encoder, optimizer, scheduler, {"step": step, "best_dev_accuracy": best, "config": asdict(cfg)})
            plot_training_log(log_path, out / "loss.png")
            encoder.train()
        if dist.is_distributed():
            torch.distributed.barrier()

    if step == 0 and is_main:
        log_path.unlink(missing_ok=True)
        log({"step": 0, "epoch": 0.0, f"dev_top{cfg.eval_k}": dev_accuracy(encoder, dev_set, cfg.eval_k) if dev_set else None})
        encoder.train()
    local = cfg.batch_size // world
    bar = tqdm(total=total_steps, initial=step, desc="training", unit="step", disable=not (cfg.show_progress and is_main))
    cancelled = False
    while step < total_steps:
        epoch, in_epoch = divmod(step, batches.per_epoch)
        questions, passages = batches.global_batch(epoch, in_epoch)
        per_q = 1 + cfg.hard_negatives
        r = dist.rank()
        my_q = questions[r * local : (r + 1) * local]
        my_p = passages[r * local * per_q : (r + 1) * local * per_q]
        positive_idx = torch.arange(r * local, (r + 1) * local, device=device) * per_q
        mask = duplicate_positive_mask(positive_idx, [_key(p) for p in passages])
        q_batch = {k: v.to(device) for k, v in encoder.tokenize_queries(my_q).items()}
        p_batch = {k: v.to(device) for k, v in encoder.tokenize_passages(my_p).items()}

        def loss_fn(q_vectors, p_vectors):
            out_ = dpr_nll_loss(q_vectors, dist.all_gather_with_grad(p_vectors), positive_idx, mask, temperature)
            return out_.loss, out_.correct

        t0 = time.perf_counter()
        if cfg.grad_cache_chunk > 0:
            loss, correct = grad_cache_backward([(encoder.query_encoder, q_batch), (encoder.passage_encoder, p_batch)],
                                                loss_fn, cfg.grad_cache_chunk, lambda: autocast(device))
        else:
            with autocast(device):
                q_vec, p_vec = encoder.query_encoder(**q_batch).float(), encoder.passage_encoder(**p_batch).float()
            loss, correct = loss_fn(q_vec, p_vec)
            loss.backward()
            loss = loss.detach()
        dist.average_gradients(encoder)
        loss, correct = dist.mean_over_ranks(loss), dist.sum_over_ranks(correct)  # log the global batch's figures
        grad_norm = torch.nn.utils.clip_grad_norm_(encoder.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        log({"step": step, "epoch": step / batches.per_epoch, "loss": round(float(loss), 6), "in_batch_accuracy": correct / cfg.batch_size,
             "lr": scheduler.get_last_lr()[0], "grad_norm": round(float(grad_norm), 4), "seconds": round(time.perf_counter() - t0, 4)})
        bar.set_postfix(loss=f"{float(loss):.3f}")
        end_of_epoch = step % batches.per_epoch == 0
        if (cfg.save_every and step % cfg.save_every == 0) or end_of_epoch or step == total_steps:
            evaluate_and_save()
        if cancel is not None and cancel.is_set():
            cancelled = True
            break
    bar.close()
    return TrainResult(out, step, best, history, cancelled)
