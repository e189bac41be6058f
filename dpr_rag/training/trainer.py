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

import functools
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from ..config_checks import MAX_SEED, check_bool, check_choice, check_float, check_int, check_text
from ..data.passages import Passage
from ..data.qa import QAExample
from ..errors import ConfigError
from ..plots import plot_training_log
from ..retrieval.encoder import DualEncoder, autocast
from ..retrieval.query_adapter import BASE_DEFAULT
from ..storage import check_output_folder
from . import distributed as dist
from .checkpoints import load_checkpoint, restore_training_state, save_checkpoint
from .dev_eval import dev_accuracy
from .distant_supervision import load_or_build_training_data
from .dpr_loss import dpr_nll_loss, duplicate_positive_mask
from .gradcache import grad_cache_backward
from .hard_negatives import NEGATIVE_SOURCES
from .train_log import start_log


@dataclass
class TrainConfig:
    out: str
    qa: str | None = None  # QA file; None = the embedded fanoutqa questions (or, with `synthetic` only, none)
    synthetic: str | None = None  # DPR JSON of synthetic questions (dpr_rag.generate_questions), training part only
    corpus: str | None = None  # corpus for distant supervision and random negatives; None = the default corpus
    model: str | None = None  # starting encoder; None = the untrained all-MiniLM-L6-v2
    shared: bool = False  # one model for questions and passages (DPR: separate)
    epochs: int = 1
    batch_size: int = 16  # questions per step, over all processes
    hard_negatives: int = 1
    negatives: str = "bm25"  # where hard negatives come from: bm25, dense (the starting encoder's top hits) or both
    negative_margin: float = 0.0  # dense: skip candidates scored within this of the positive (false negatives)
    gold_title_positives: bool = False  # prefer an answer-bearing passage of the gold article the data names
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

    def __post_init__(self) -> None:
        """Reject a setting the trainer cannot use (ConfigError naming the field and the value) before any work."""
        check_text("out", self.out)
        check_int("epochs", self.epochs, 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("hard_negatives", self.hard_negatives, 0)
        check_choice("negatives", self.negatives, NEGATIVE_SOURCES)
        check_float("negative_margin", self.negative_margin, ge=0, le=2)
        check_text("synthetic", self.synthetic, optional=True)
        check_float("lr", self.lr, gt=0)
        check_float("warmup_ratio", self.warmup_ratio, ge=0, lt=1)
        check_float("weight_decay", self.weight_decay, ge=0)
        check_float("max_grad_norm", self.max_grad_norm, gt=0)
        check_float("temperature", self.temperature, gt=0, optional=True)
        check_int("grad_cache_chunk", self.grad_cache_chunk, 0)
        check_float("dev_fraction", self.dev_fraction, ge=0, lt=1)
        check_int("eval_k", self.eval_k, 1)
        check_int("max_examples", self.max_examples, 1, optional=True)
        check_int("seed", self.seed, 0, MAX_SEED)
        check_int("save_every", self.save_every, 0)
        for name in ("shared", "resume", "show_progress", "gold_title_positives"):
            check_bool(name, getattr(self, name))


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


@dataclass
class _Run:
    """One training run: what `_setup` builds once, and the step and best dev accuracy that the loop moves on."""

    cfg: TrainConfig
    out: Path
    device: torch.device
    is_main: bool  # rank 0: the process that logs, evaluates and writes
    encoder: DualEncoder
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batches: _Batches
    dev_set: list[QAExample]
    temperature: float
    callback: Callable[[dict], None] | None = None
    step: int = 0
    best: float | None = None
    history: list[dict] = field(default_factory=list)

    @property
    def total_steps(self) -> int:
        return self.batches.per_epoch * self.cfg.epochs

    @property
    def log_path(self) -> Path:
        return self.out / "train_log.jsonl"

    def checkpoint_due(self) -> bool:
        """After every `save_every` steps, at the end of every epoch and at the last step."""
        every = self.cfg.save_every > 0 and self.step % self.cfg.save_every == 0
        return every or self.step % self.batches.per_epoch == 0 or self.step == self.total_steps


def _setup(cfg: TrainConfig, examples: list[QAExample] | None, callback: Callable[[dict], None] | None) -> _Run:
    """Join the process group, seed, load the starting encoder (or the checkpoint's), build the data, the optimizer
    and the schedule; a resumed run gets its optimizer, schedule, RNG state, step and best accuracy back."""
    device = dist.init_from_env()
    out, is_main, world = Path(cfg.out), dist.rank() == 0, dist.world_size()
    if cfg.batch_size % world:
        raise ConfigError(f"batch size {cfg.batch_size} must be divisible by the number of processes ({world})")
    torch.manual_seed(cfg.seed)
    if cfg.resume:
        encoder, state = load_checkpoint(out, cfg)
    else:
        # None: the untrained base (all-MiniLM-L6-v2), not the shipped query-side default, so runs stay comparable
        encoder, state = DualEncoder.from_pretrained(cfg.model or BASE_DEFAULT, shared=cfg.shared), None
    encoder.to(device).train()
    dist.broadcast_parameters(encoder)
    train_set, dev_set, pool = load_or_build_training_data(cfg, out, is_main, examples)
    batches = _Batches(train_set, pool, cfg)
    total_steps = batches.per_epoch * cfg.epochs
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total_steps), total_steps)
    temperature = cfg.temperature or (0.05 if encoder.settings.normalize else 1.0)
    run = _Run(cfg, out, device, is_main, encoder, optimizer, scheduler, batches, dev_set, temperature, callback)
    if state is not None:
        _restore(run, state)
    return run


def _restore(run: _Run, state: dict) -> None:
    """Continue where the checkpoint stopped: optimizer, schedule and RNG state, step and best dev accuracy."""
    restore_training_state(run.out, run.optimizer, run.scheduler)
    run.step, run.best = state["step"], state["best_dev_accuracy"]


def _log(run: _Run, record: dict) -> None:
    """Keep `record` in the history; the main process also appends it to train_log.jsonl and hands it to the callback."""
    run.history.append(record)
    if run.is_main:
        with open(run.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if run.callback:
            run.callback(record)


def _log_dev_accuracy(run: _Run) -> float | None:
    """Log (and return) the dev top-k accuracy of the encoder now; None without a dev set. Leaves the encoder in
    training mode."""
    acc = dev_accuracy(run.encoder, run.dev_set, run.cfg.eval_k) if run.dev_set else None
    _log(run, {"step": run.step, "epoch": run.step / run.batches.per_epoch, f"dev_top{run.cfg.eval_k}": acc})
    run.encoder.train()
    return acc


def _evaluate_and_save(run: _Run) -> None:
    """Main process: log the dev accuracy, save best/ when it improved (always without a dev set: the latest model is
    "best"), replace last/ and redraw loss.png. Every process then waits for it."""
    if run.is_main:
        acc = _log_dev_accuracy(run)
        if acc is None or run.best is None or acc > run.best:
            run.best = acc
            run.encoder.save_pretrained(run.out / "best")
        save_checkpoint(
            run.out,
            run.encoder,
            run.optimizer,
            run.scheduler,
            {"step": run.step, "best_dev_accuracy": run.best, "config": asdict(run.cfg)},
        )
        plot_training_log(run.log_path, run.out / "loss.png")
    if dist.is_distributed():
        torch.distributed.barrier()


def _nll(
    q_vectors: torch.Tensor, p_vectors: torch.Tensor, positive_idx: torch.Tensor, mask: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, int]:
    """The loss of a step: DPR's NLL of this rank's questions against every rank's passages (gathered with their
    gradients); returns (loss, number of questions whose positive scored highest)."""
    result = dpr_nll_loss(q_vectors, dist.all_gather_with_grad(p_vectors), positive_idx, mask, temperature)
    return result.loss, result.correct


def _local_batch(run: _Run) -> tuple[dict, dict, torch.Tensor, torch.Tensor]:
    """This rank's share of the next global batch, tokenised on the device: (questions, passages, the positives'
    indices among all ranks' passages, the mask of passages that duplicate another question's positive)."""
    cfg = run.cfg
    questions, passages = run.batches.global_batch(*divmod(run.step, run.batches.per_epoch))
    local, per_q, r = cfg.batch_size // dist.world_size(), 1 + cfg.hard_negatives, dist.rank()
    my_q = questions[r * local : (r + 1) * local]
    my_p = passages[r * local * per_q : (r + 1) * local * per_q]
    positive_idx = torch.arange(r * local, (r + 1) * local, device=run.device) * per_q
    mask = duplicate_positive_mask(positive_idx, [_key(p) for p in passages])
    q_batch = {k: v.to(run.device) for k, v in run.encoder.tokenize_queries(my_q).items()}
    p_batch = {k: v.to(run.device) for k, v in run.encoder.tokenize_passages(my_p).items()}
    return q_batch, p_batch, positive_idx, mask


def _train_step(run: _Run) -> dict:
    """One optimisation step on the next batch: forward and backward (plain or GradCache), gradients averaged over the
    processes and clipped, AdamW and schedule step. Returns the step's log record (global-batch figures)."""
    cfg, encoder, device = run.cfg, run.encoder, run.device
    q_batch, p_batch, positive_idx, mask = _local_batch(run)
    loss_fn = functools.partial(_nll, positive_idx=positive_idx, mask=mask, temperature=run.temperature)
    t0 = time.perf_counter()
    if cfg.grad_cache_chunk > 0:
        loss, correct = grad_cache_backward(
            [(encoder.query_encoder, q_batch), (encoder.passage_encoder, p_batch)],
            loss_fn,
            cfg.grad_cache_chunk,
            lambda: autocast(device),
        )
    else:
        with autocast(device):
            q_vec, p_vec = encoder.query_encoder(**q_batch).float(), encoder.passage_encoder(**p_batch).float()
        loss, correct = loss_fn(q_vec, p_vec)
        loss.backward()
        loss = loss.detach()
    dist.average_gradients(encoder)
    loss, correct = dist.mean_over_ranks(loss), dist.sum_over_ranks(correct)  # log the global batch's figures
    grad_norm = torch.nn.utils.clip_grad_norm_(encoder.parameters(), cfg.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    return {
        "step": run.step,
        "epoch": run.step / run.batches.per_epoch,
        "loss": round(float(loss), 6),
        "in_batch_accuracy": correct / cfg.batch_size,
        "lr": run.scheduler.get_last_lr()[0],
        "grad_norm": round(float(grad_norm), 4),
        "seconds": round(time.perf_counter() - t0, 4),
    }


def train(
    cfg: TrainConfig,
    callback: Callable[[dict], None] | None = None,
    cancel: threading.Event | None = None,
    examples: list[QAExample] | None = None,
) -> TrainResult:
    """Train a dual encoder as configured; `callback` receives every log record, `cancel` stops after a step.
    `examples`: QA examples already parsed, used instead of loading `cfg.qa` (which is still recorded as the source)."""
    check_output_folder(cfg.out, ("train_log.jsonl", "last", "best", "data"), "a training run's folder")
    run = _setup(cfg, examples, callback)
    if run.step == 0 and run.is_main:  # a fresh run: a new log, opened by the starting model's dev accuracy
        run.log_path.unlink(missing_ok=True)
        _log_dev_accuracy(run)
    elif run.is_main:  # resumed: the log cut back to the checkpoint, so no step is logged twice
        start_log(run.log_path, run.step)
    show = cfg.show_progress and run.is_main
    bar = tqdm(total=run.total_steps, initial=run.step, desc="training", unit="step", disable=not show)
    cancelled = False
    while run.step < run.total_steps:
        record = _train_step(run)
        bar.update(1)
        _log(run, record)
        bar.set_postfix(loss=f"{record['loss']:.3f}")
        if run.checkpoint_due():
            _evaluate_and_save(run)
        if cancel is not None and cancel.is_set():
            cancelled = True
            break
    bar.close()
    return TrainResult(run.out, run.step, run.best, run.history, cancelled)
