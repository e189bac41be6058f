"""Fine-tune RAG end to end, as in the paper: the query encoder and the generator are trained jointly to
maximise the marginal likelihood of the answer (RAG-Sequence or RAG-Token); the passage encoder and the
index stay frozen, so the corpus never has to be re-encoded.

Output folder: `retriever/` (the dual encoder: trained query tower, untouched passage tower), `generator/`
(a Hugging Face folder), `rag_config.json` (mode, k, temperature), `rag_log.jsonl`, `loss.png`; each part is written
atomically at the end of every epoch. `python -m dpr_rag.answer --rag OUT` (or `RagPipeline.open(rag=OUT)`) loads it,
over the corpus it was trained with or any other: the index is built with the frozen passage tower.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..config_checks import MAX_SEED, check_bool, check_choice, check_float, check_int, check_text
from ..data.qa import QAExample
from ..errors import ConfigError
from ..plots import plot_training_log
from ..storage import atomic_file
from .pipeline import RAG_CONFIG, RagPipeline

TRAINABLE_MODES = ("token", "sequence")  # closed-book has no retriever in the loop: nothing to marginalise over


@dataclass
class RagTrainConfig:
    out: str
    mode: str = "token"  # RAG-Token or RAG-Sequence marginalisation
    epochs: int = 1
    batch_size: int = 4
    lr: float = 1e-5
    max_grad_norm: float = 1.0
    seed: int = 0
    show_progress: bool = True
    max_examples: int | None = None  # train on the first this many examples only (quick runs)

    def __post_init__(self) -> None:
        """Reject a setting training cannot use (ConfigError naming the field and the value) before any work."""
        check_text("out", self.out)
        check_choice("mode", self.mode, TRAINABLE_MODES)
        check_int("epochs", self.epochs, 1)
        check_int("batch_size", self.batch_size, 1)
        check_float("lr", self.lr, gt=0)
        check_float("max_grad_norm", self.max_grad_norm, gt=0)
        check_int("seed", self.seed, 0, MAX_SEED)
        check_bool("show_progress", self.show_progress)
        check_int("max_examples", self.max_examples, 1, optional=True)


@dataclass
class RagTrainResult:
    out: Path
    steps: int
    history: list[dict] = field(default_factory=list)
    cancelled: bool = False


def freeze_passage_tower(pipeline: RagPipeline) -> None:
    """Give the query tower its own weights (if shared) and freeze the passage tower that built the index."""
    enc = pipeline.retriever.encoder
    if enc.passage_encoder is enc.query_encoder:
        enc.passage_encoder = copy.deepcopy(enc.query_encoder)
        enc.settings.shared = False
    enc.passage_encoder.requires_grad_(False)


def check_targets(pipeline: RagPipeline, examples: list[QAExample]) -> None:
    """Every target answer must fit the generator's context (with room for the input): fail before training."""
    gen = pipeline.generator
    # A causal LM reads input and answer in one context, with at least one input token (after any <bos>) to predict from.
    limit = gen.max_target_tokens
    for i, e in enumerate(examples):
        if not e.answers:
            raise ConfigError(f"training example {i + 1} ({e.question!r}) has no answer")
        n = len(gen.encode_target(e.answers[0]))
        if n > limit:
            raise ConfigError(
                f"training example {i + 1}: the answer has {n} tokens, more than the generator's context of "
                f"{gen.max_length} tokens allows"
            )


@torch.no_grad()
def mean_loss(pipeline: RagPipeline, examples: list[QAExample], mode: str, batch_size: int = 8) -> float:
    """Mean -log p(answer | question) over `examples` (eval mode, no gradients): the training objective."""
    enc, gen = pipeline.retriever.encoder, pipeline.generator
    modes = enc.query_encoder.training, gen.model.training
    enc.query_encoder.eval()
    gen.model.eval()
    try:
        total = 0.0
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            total += -float(pipeline.marginal_logprob([e.question for e in batch], [e.answers[0] for e in batch], mode).sum())
        return total / max(len(examples), 1)
    finally:
        enc.query_encoder.train(modes[0])
        gen.model.train(modes[1])


def train_rag(
    pipeline: RagPipeline,
    examples: list[QAExample],
    cfg: RagTrainConfig,
    callback: Callable[[dict], None] | None = None,
    cancel: threading.Event | None = None,
) -> RagTrainResult:
    """Minimise -log p(answer | question) over `examples` (the first answer string is the target; only the first
    `cfg.max_examples` examples when set)."""
    examples = examples[: cfg.max_examples]
    if len(examples) < cfg.batch_size:
        raise ConfigError(f"batch size {cfg.batch_size} is larger than the {len(examples)} training examples")
    check_targets(pipeline, examples)
    torch.manual_seed(cfg.seed)
    freeze_passage_tower(pipeline)
    enc, gen = pipeline.retriever.encoder, pipeline.generator
    params = [p for p in [*enc.query_encoder.parameters(), *gen.model.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "rag_log.jsonl"
    log_path.unlink(missing_ok=True)
    history, step, cancelled = [], 0, False
    per_epoch = len(examples) // cfg.batch_size
    bar = tqdm(total=per_epoch * cfg.epochs, desc=f"RAG-{cfg.mode} training", unit="step", disable=not cfg.show_progress)
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()
        enc.query_encoder.train()
        gen.model.train()
        for b in range(per_epoch):
            batch = [examples[i] for i in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            questions, targets = [e.question for e in batch], [e.answers[0] for e in batch]
            loss = -pipeline.marginal_logprob(questions, targets, cfg.mode, with_grad=True).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            record = {"step": step, "epoch": step / per_epoch, "loss": round(float(loss.detach()), 6)}
            history.append(record)
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            if callback:
                callback(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}")
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
        enc.eval()
        gen.model.eval()
        save_rag(pipeline, out, cfg.mode)
        plot_training_log(log_path, out / "loss.png")
        if cancelled:
            break
    bar.close()
    return RagTrainResult(out, step, history, cancelled)


def save_rag(pipeline: RagPipeline, out: str | Path, mode: str | None = None) -> None:
    """Write the trained retriever (both towers) and generator, and the settings they were trained with."""
    out = Path(out)
    pipeline.retriever.encoder.save_pretrained(out / "retriever")
    pipeline.generator.save_pretrained(out / "generator")
    config = {"mode": mode, "k": pipeline.k, "temperature": pipeline.temperature, "max_new_tokens": pipeline.max_new_tokens}
    with atomic_file(out / RAG_CONFIG) as f:
        f.write(json.dumps(config, indent=2))
