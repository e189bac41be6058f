"""Train DPR's extractive reader (`dpr_rag.extractive`) with DPR's loss (`reader_loss.py`), in isolation from the
retriever, on the retriever's own top candidates (`candidate_data.py`): per step, `batch_size` questions, each read
with one answer-bearing passage (a positive whose answer span survives the `max_length` cut) and `group_size − 1`
passages of its candidates that hold no answer.

AdamW with linear warm-up and decay, gradient clipping, optional bf16 autocast; the word embeddings stay frozen, so
a trained reader saves compactly. Batches are a pure function of (seed, epoch, step), so `resume` continues exactly.
Dev metric: EM of the reader's answer when it reads each dev question's candidates (`dev_em`), which picks best/.

Output folder (every part replaced atomically):
    best/                 the reader with the best dev EM (use it with --reader OUT/best)
    last/                 the latest: model/ + optimizer.pt, scheduler.pt, rng.pt, trainer_state.json
    data/                 train.json, dev.json (DPR JSON, as trained on); first_stage.json
    train_log.jsonl       loss (selection + span), selection accuracy and lr per step; dev EM per evaluation
    loss.png              loss and dev-EM curves
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from ..config_checks import check_choice, check_int
from ..data.qa import QAExample
from ..errors import ConfigError
from ..extractive.model import ANSWER_RULES, DEFAULT_MAX_ANSWER_LENGTH, DEFAULT_MAX_LENGTH, ExtractiveReader
from ..extractive.spans import answer_char_spans, char_span_to_tokens
from ..matching import exact_match
from ..plots import plot_training_log
from ..retrieval.rerank import passage_text
from ..storage import atomic_dir, check_output_folder, recover
from .candidate_data import build_data, check_second_stage_settings, load_data, load_trainer_state, step_batch
from .checkpoints import restore_training_state, save_checkpoint
from .reader_loss import ReaderLoss, reader_loss
from .train_log import append_record, start_log

MUST_MATCH_ON_RESUME = ("batch_size", "group_size", "epochs", "seed", "model", "layers", "max_length")


@dataclass
class ReaderTrainConfig:
    out: str
    qa: tuple[str, ...] = ()  # QA files; none: the embedded FanOutQA questions
    fanoutqa: bool = False  # add the embedded FanOutQA questions to the files
    exclude: tuple[str, ...] = ()  # QA files whose questions are never trained on
    corpus: str | None = None  # None: the default corpus
    retriever_model: str | None = None  # the retriever's dense encoder (None: the default)
    first_stage: str = "dense"
    model: str | None = None  # the encoder to start from (None: the default MiniLM)
    layers: int | None = None  # keep the encoder's first N layers (faster reading); None: all of them
    candidates: int = 20  # retrieved passages per question: where positives and negatives come from
    group_size: int = 4  # passages read per question in a step: 1 positive + group_size - 1 negatives
    epochs: int = 3
    batch_size: int = 8  # questions per step
    lr: float = 5e-5
    head_lr: float = 1e-3  # the fresh heads learn faster than the pretrained encoder
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_length: int = DEFAULT_MAX_LENGTH
    max_answer_length: int = DEFAULT_MAX_ANSWER_LENGTH
    # How dev questions are answered ("passage": DPR's; "joint"; "prior", which dev answers as "joint": the saved
    # candidates keep their ranks, not the retriever's scores); saved with the reader.
    answer_rule: str = "passage"
    bf16: bool = False
    dev_fraction: float = 0.1
    dev_max: int = 100
    dev_k: int = 5  # only names the first stage's dev top-k in the log (the reader reads all candidates)
    dev_every: int = 0  # steps between dev evaluations (0: at each epoch's end)
    max_examples: int | None = None
    seed: int = 0
    resume: bool = False
    show_progress: bool = True

    def __post_init__(self) -> None:
        """Reject a setting training cannot use (ConfigError naming the field and the value) before any work."""
        check_second_stage_settings(self, min_group_size=1)
        check_int("max_answer_length", self.max_answer_length, 1, 512)
        check_choice("answer_rule", self.answer_rule, ANSWER_RULES)
        if self.layers is not None:
            check_int("layers", self.layers, 1, 1024)


@dataclass
class ReaderTrainResult:
    out: Path
    steps: int
    best_dev_em: float | None
    history: list[dict] = field(default_factory=list)
    cancelled: bool = False


def answer_spans(reader: ExtractiveReader, question: str, passage_answers: Sequence[str], passage) -> list[tuple[int, int]]:
    """The token spans (inclusive) of every answer occurrence in `passage` as the reader sees it next to `question`;
    occurrences cut off by `max_length` are left out."""
    _, in_passage, offsets = reader.tokenize([question], [passage])
    chars = answer_char_spans(passage_answers, passage_text(passage))
    found = [char_span_to_tokens(c, [tuple(o) for o in offsets[0]], in_passage[0].tolist()) for c in chars]
    return [s for s in found if s is not None]


def readable(reader: ExtractiveReader, examples: Sequence[QAExample]) -> tuple[list[QAExample], int]:
    """The examples with only the positives whose answer the reader can see (inside `max_length`); the examples left
    with none are dropped, and counted."""
    kept, dropped = [], 0
    for e in examples:
        positives = [p for p in e.positive_ctxs if answer_spans(reader, e.question, e.answers, p)]
        if positives:
            kept.append(dataclasses.replace(e, positive_ctxs=positives))
        else:
            dropped += 1
    return kept, dropped


@torch.no_grad()
def dev_exact_match(reader: ExtractiveReader, dev: Sequence[QAExample]) -> float:
    """% of dev questions answered exactly right when the reader reads all of each one's candidates."""
    right = 0.0
    for e in dev:
        answer = reader.read(e.question, [*e.positive_ctxs, *e.hard_negative_ctxs])
        right += exact_match(answer.text, e.answers)
    return 100.0 * right / max(len(dev), 1)


def _prepare_model(cfg: ReaderTrainConfig) -> ExtractiveReader:
    if cfg.resume:
        recover(Path(cfg.out) / "last")
        reader = ExtractiveReader.from_pretrained(Path(cfg.out) / "last" / "model")
    else:
        reader = ExtractiveReader.from_encoder(
            cfg.model, layers=cfg.layers, max_length=cfg.max_length, max_answer_length=cfg.max_answer_length
        )
    reader.bf16, reader.answer_rule = cfg.bf16, cfg.answer_rule
    reader.encoder.get_input_embeddings().requires_grad_(False)  # frozen: a compact save leaves them out
    return reader


def _step_loss(reader: ExtractiveReader, rows: list[QAExample], groups: list[list]) -> ReaderLoss:
    """DPR's loss for one step: each question's group (positive first) read together."""
    M = len(groups[0])
    batch, in_passage, _ = reader.tokenize([e.question for e in rows for _ in range(M)], [p for g in groups for p in g])
    logits = reader(batch)
    positive = torch.arange(len(rows)) * M
    spans = [answer_spans(reader, e.question, e.answers, g[0]) for e, g in zip(rows, groups, strict=True)]
    return reader_loss(
        logits.selection.view(len(rows), M), logits.start[positive], logits.end[positive], in_passage[positive], spans
    )


def train_reader(
    cfg: ReaderTrainConfig,
    qa: Sequence[QAExample] = (),
    callback: Callable[[dict], None] | None = None,
    cancel: threading.Event | None = None,
) -> ReaderTrainResult:
    """Train as configured on `qa` (ignored on resume: the run's saved data is used); `callback` gets every log
    record, `cancel` stops after the current step with a checkpoint."""
    out = check_output_folder(cfg.out, ("train_log.jsonl", "last", "best", "data"), "a reader run's folder")
    state: dict[str, Any] = load_trainer_state(cfg, MUST_MATCH_ON_RESUME) if cfg.resume else {"step": 0, "best": None}
    train, dev, _ = load_data(cfg) if cfg.resume else build_data(cfg, qa)
    torch.manual_seed(cfg.seed)
    reader = _prepare_model(cfg)
    train, dropped = readable(reader, train)
    print(f"reader examples: {len(train)} train questions ({dropped} dropped: answer past {cfg.max_length} tokens)")
    per_epoch = len(train) // cfg.batch_size
    if per_epoch == 0:
        raise ConfigError(f"batch size {cfg.batch_size} is larger than the {len(train)} training questions")
    named = [(n, p) for n, p in reader.named_parameters() if p.requires_grad]
    heads = [p for n, p in named if n.startswith("qa_")]
    body = [p for n, p in named if not n.startswith("qa_")]
    optimizer = torch.optim.AdamW([{"params": body, "lr": cfg.lr}, {"params": heads, "lr": cfg.head_lr}])
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
            score = dev_exact_match(reader, dev)
            append_record(log, history, {"step": step, "epoch": step / per_epoch, "dev_em": round(score, 3)}, callback)
            improved = best is None or score > best
            best = score if improved else best
        if improved or not dev:
            with atomic_dir(out / "best") as tmp:
                reader.save_pretrained(tmp)
        save_checkpoint(out, reader, optimizer, scheduler, {"step": step, "best": best, "config": asdict(cfg)})
        plot_training_log(log, out / "loss.png", title="Extractive reader training")

    if step == 0:
        checkpoint(True)
    bar = tqdm(total=total, initial=step, desc="reader training", unit="step", disable=not cfg.show_progress)
    cancelled = False
    reader.train()
    while step < total and not cancelled:
        rows, groups = step_batch(train, step, per_epoch, cfg.batch_size, cfg.group_size, cfg.seed, pool)
        result = _step_loss(reader, rows, groups)
        result.loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in named], cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        record = {
            "step": step,
            "epoch": step / per_epoch,
            "loss": round(float(result.loss.detach()), 6),
            "selection_loss": round(result.selection, 6),
            "span_loss": round(result.span, 6),
            "selection_accuracy": result.selected / len(rows),
            "lr": scheduler.get_last_lr()[0],
        }
        append_record(log, history, record, callback)
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.3f}")
        cancelled = cancel is not None and cancel.is_set()
        if step % per_epoch == 0 or step == total or cancelled or (cfg.dev_every and step % cfg.dev_every == 0):
            checkpoint(evaluate=not cancelled)
            reader.train()
    bar.close()
    reader.eval()
    return ReaderTrainResult(out, step, best, history, cancelled)
