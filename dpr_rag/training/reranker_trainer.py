"""Train a cross-encoder reranker on the first stage's own candidates (`reranker_data.py`) with the listwise loss of
`rerank_loss.py`: per step, `batch_size` questions, each a group of one positive and `group_size − 1` hard negatives.

The model starts from the default MiniLM weights (or `model`) with a fresh one-logit head, and is trained whole or,
with `lora_rank > 0`, through LoRA adapters plus the head (a folder of a few MB). AdamW, linear warm-up and decay,
gradient clipping, optional bf16 autocast. Batches are a pure function of (seed, epoch, step), so `resume` continues
exactly. Dev metric: top-`dev_k` accuracy after reranking each dev question's candidates, against the first stage's
(logged once as `first_stage_top<k>`).

Output folder (every part replaced atomically):
    best/                 the reranker with the best dev top-k (load it with --rerank OUT/best)
    last/                 the latest: model/ + optimizer.pt, scheduler.pt, rng.pt, trainer_state.json
    data/                 train.json, dev.json: the examples (DPR JSON), as trained on; first_stage.json
    train_log.jsonl       loss, in-group accuracy and lr per step; dev top-k per evaluation
    loss.png              loss and dev curves
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from ..config_checks import check_bool, check_int
from ..data.qa import QAExample
from ..errors import ConfigError
from ..plots import plot_training_log
from ..retrieval.rerank import CrossEncoderReranker
from ..storage import atomic_dir, check_output_folder, recover
from .candidate_data import (  # noqa: F401 (FIRST_STAGES, group: re-exported)
    FIRST_STAGES,
    build_data,
    check_second_stage_settings,
    group,
    load_data,
    load_trainer_state,
    step_batch,
)
from .checkpoints import restore_training_state, save_checkpoint
from .rerank_loss import group_softmax_loss
from .train_log import append_record, start_log

MUST_MATCH_ON_RESUME = ("batch_size", "group_size", "epochs", "seed", "lora_rank", "model", "freeze_embeddings")


@dataclass
class RerankerTrainConfig:
    out: str
    qa: tuple[str, ...] = ()  # QA files; none: the embedded FanOutQA questions
    fanoutqa: bool = False  # add the embedded FanOutQA questions to the files
    exclude: tuple[str, ...] = ()  # QA files whose questions are never trained on
    corpus: str | None = None  # None: the default corpus
    retriever_model: str | None = None  # the first stage's dense encoder (None: the default)
    first_stage: str = "dense"
    model: str | None = None  # starting cross-encoder or encoder (None: the default MiniLM + a fresh head)
    candidates: int = 30  # first-stage hits per question: where positives and negatives come from
    group_size: int = 8  # passages per question in a step: 1 positive + group_size - 1 negatives
    epochs: int = 2
    batch_size: int = 8  # questions per step
    lr: float = 1e-4
    head_lr: float = 1e-3  # the fresh one-logit head learns faster than the pretrained body it sits on
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    lora_rank: int = 0  # 0: train the whole model
    freeze_embeddings: bool = True  # keep the word embeddings as the base has them (half of MiniLM): a shipped reranker
    # then stores only the rest (`CrossEncoderReranker.save_pretrained(compact=True)`)
    max_length: int = 256  # tokens of question + passage
    bf16: bool = False
    dev_fraction: float = 0.1
    dev_max: int = 100
    dev_k: int = 5
    dev_every: int = 0  # steps between dev evaluations (0: at each epoch's end)
    max_examples: int | None = None
    seed: int = 0
    resume: bool = False
    show_progress: bool = True

    def __post_init__(self) -> None:
        """Reject a setting training cannot use (ConfigError naming the field and the value) before any work."""
        check_second_stage_settings(self, min_group_size=2)
        check_int("lora_rank", self.lora_rank, 0, 1024)
        check_bool("freeze_embeddings", self.freeze_embeddings)


@dataclass
class RerankerTrainResult:
    out: Path
    steps: int
    best_dev: float | None
    first_stage_dev: float | None
    history: list[dict] = field(default_factory=list)
    cancelled: bool = False


@torch.no_grad()
def dev_ranks(reranker: CrossEncoderReranker, dev: Sequence[QAExample]) -> list[int]:
    """Each dev question's best rank (1-based) of a positive after reranking all of its candidates."""
    ranks = []
    for e in dev:
        candidates = [*e.positive_ctxs, *e.hard_negative_ctxs]
        order = reranker.score(e.question, candidates).argsort(kind="stable")[::-1]
        ranks.append(1 + int(np.flatnonzero(order < len(e.positive_ctxs))[0]))
    return ranks


def dev_top_k(reranker: CrossEncoderReranker, dev: Sequence[QAExample], k: int) -> float:
    """% of dev questions with a positive among the top k after reranking all of their candidates."""
    return 100.0 * sum(r <= k for r in dev_ranks(reranker, dev)) / max(len(dev), 1)


def _prepare_model(cfg: RerankerTrainConfig) -> CrossEncoderReranker:
    if cfg.resume:
        recover(Path(cfg.out) / "last")
        start = Path(cfg.out) / "last" / "model"
        if cfg.lora_rank:
            from peft import PeftModel

            reranker = CrossEncoderReranker.from_pretrained(cfg.model, max_length=cfg.max_length, bf16=cfg.bf16)
            reranker.model = PeftModel.from_pretrained(reranker.model, str(start), is_trainable=True)  # type: ignore[assignment]
            return reranker
        return CrossEncoderReranker.from_pretrained(start, max_length=cfg.max_length, bf16=cfg.bf16)
    reranker = CrossEncoderReranker.from_pretrained(cfg.model, max_length=cfg.max_length, bf16=cfg.bf16)
    if cfg.lora_rank:
        from peft import LoraConfig, TaskType, get_peft_model

        lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg.lora_rank, lora_alpha=2 * cfg.lora_rank, target_modules="all-linear")
        reranker.model = get_peft_model(reranker.model, lora)  # type: ignore[assignment]
    return reranker


def _save(out: Path, reranker: CrossEncoderReranker, optimizer, scheduler, state: dict, best: bool) -> None:
    if best:
        with atomic_dir(out / "best") as tmp:
            reranker.save_pretrained(tmp)
    save_checkpoint(out, reranker, optimizer, scheduler, state)  # last/: model/, optimizer, schedule, RNG, state


def train_reranker(
    cfg: RerankerTrainConfig,
    qa: Sequence[QAExample] = (),
    callback: Callable[[dict], None] | None = None,
    cancel: threading.Event | None = None,
) -> RerankerTrainResult:
    """Train as configured on `qa` (ignored on resume: the run's saved data is used); `callback` gets every log
    record, `cancel` stops after the current step with a checkpoint."""
    out, key = (
        check_output_folder(cfg.out, ("train_log.jsonl", "last", "best", "data"), "a reranker run's folder"),
        f"dev_top{cfg.dev_k}",
    )
    state: dict[str, Any] = load_trainer_state(cfg, MUST_MATCH_ON_RESUME) if cfg.resume else {"step": 0, "best": None}
    train, dev, first_stage = load_data(cfg) if cfg.resume else build_data(cfg, qa)
    per_epoch = len(train) // cfg.batch_size
    if per_epoch == 0:
        raise ConfigError(f"batch size {cfg.batch_size} is larger than the {len(train)} training questions")
    torch.manual_seed(cfg.seed)
    reranker = _prepare_model(cfg)
    if cfg.freeze_embeddings and not cfg.lora_rank:
        reranker.model.get_input_embeddings().requires_grad_(False)
    named = [(n, p) for n, p in reranker.model.named_parameters() if p.requires_grad]
    head = [p for n, p in named if "classifier" in n]
    params = [p for _, p in named]
    body = [p for n, p in named if "classifier" not in n]
    optimizer = torch.optim.AdamW([{"params": body, "lr": cfg.lr}, {"params": head, "lr": cfg.head_lr}])
    total = per_epoch * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total), total)
    log = out / "train_log.jsonl"
    if cfg.resume:
        restore_training_state(out, optimizer, scheduler)
    history = start_log(log, int(state["step"]) if cfg.resume else None)
    step, best = int(state["step"]), state["best"]
    pool = [p for e in train for p in e.hard_negative_ctxs]

    def checkpoint(evaluate: bool) -> None:
        nonlocal best
        improved = False
        if evaluate and dev:
            ranks = dev_ranks(reranker, dev)
            score = 100.0 * sum(r <= cfg.dev_k for r in ranks) / len(ranks)
            record = {"step": step, "epoch": step / per_epoch, key: round(score, 3)}
            record["dev_top1"] = round(100.0 * sum(r == 1 for r in ranks) / len(ranks), 3)
            record["dev_mrr"] = round(100.0 * sum(1 / r for r in ranks) / len(ranks), 3)
            append_record(log, history, record, callback)
            improved = best is None or score > best
            best = score if improved else best
        _save(out, reranker, optimizer, scheduler, {"step": step, "best": best, "config": asdict(cfg)}, improved or not dev)
        plot_training_log(log, out / "loss.png", title="Reranker training")

    if step == 0:
        append_record(log, history, {"step": 0, f"first_stage_top{cfg.dev_k}": first_stage}, callback)
        checkpoint(True)
    bar = tqdm(total=total, initial=step, desc="reranker training", unit="step", disable=not cfg.show_progress)
    cancelled = False
    reranker.model.train()
    while step < total and not cancelled:
        rows, groups = step_batch(train, step, per_epoch, cfg.batch_size, cfg.group_size, cfg.seed, pool)
        batch = reranker.tokenize([e.question for e in rows for _ in range(cfg.group_size)], [p for g in groups for p in g])
        result = group_softmax_loss(reranker.logits(batch), cfg.group_size)
        result.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        record = {
            "step": step,
            "epoch": step / per_epoch,
            "loss": round(float(result.loss.detach()), 6),
            "group_accuracy": result.correct / len(rows),
            "lr": scheduler.get_last_lr()[0],
        }
        append_record(log, history, record, callback)
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.3f}")
        cancelled = cancel is not None and cancel.is_set()
        if step % per_epoch == 0 or step == total or cancelled or (cfg.dev_every and step % cfg.dev_every == 0):
            checkpoint(evaluate=not cancelled)
            reranker.model.train()
    bar.close()
    reranker.model.eval()
    return RerankerTrainResult(out, step, best, first_stage, history, cancelled)
