"""Train the RAG reader, on a CPU if need be. Four objectives (`mode`):

- `passage`: the distant-supervision reader. Each training row is (question, one answer-bearing passage z*, the
  answer it contains) and the loss is -log p(answer | question, z*): one passage per row, so the cheapest.
- `standard`: the reader of standard RAG (FiD-style reading without the fusion): -log p(answer | question, z_1..z_k)
  with the top k in one prompt, so the reader learns to find the answer among passages that mostly lack it.
- `token` / `sequence`: RAG end to end, as in the paper: -log of the RAG-Token or RAG-Sequence marginal
  Σ_z p(z|x) p(y|x,z) over the top k; the query encoder is trained too (`train_query_encoder`), through p(z|x).

The passage encoder and the index stay frozen, so the corpus never has to be re-encoded. The generator is trained
whole or, with `lora_rank > 0`, through LoRA adapters (`lora.py`: a few million parameters, a few MB saved). The LM
head runs only on the answer positions (`logits_to_keep`); `bf16` runs forward and backward under bfloat16 autocast
(1.9x faster on a CPU with AVX512-BF16: bench/bf16_speed.py, BENCHMARKS.md); `grad_accum` batches make one step.

Every `dev_every` steps and at the end of each epoch the pipeline answers the dev questions (`dev_mode` decoding) and
the dev EM is logged; `best/` keeps the model with the best dev EM, `last/` the latest with what an exact `resume`
needs (`checkpoints.py`). `rag_log.jsonl` logs loss and dev EM; `loss.png` plots both.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from ..config_checks import MAX_SEED, check_bool, check_choice, check_float, check_int, check_text
from ..data.qa import QAExample
from ..errors import ConfigError, DprRagError
from ..matching import exact_match
from ..plots import plot_training_log
from ..retrieval.dense import DenseRetriever
from ..storage import check_output_folder
from ..training.train_log import append_record, start_log
from .checkpoints import load_last_state, restore_optimizer_and_rng, save_best, save_last
from .lora import add_lora
from .pipeline import RagPipeline
from .reader_data import passage_rows, passage_target

TRAINABLE_MODES = ("passage", "standard", "token", "sequence")  # closed-book has no retriever in the loop
DEV_MODES = ("token", "sequence", "standard")
MARGINAL_MODES = ("token", "sequence")  # the modes whose loss reaches the query tower through p(z|x)


class NonFiniteLoss(DprRagError):
    """Training produced a NaN or infinite loss or gradient; the step was not applied."""


@dataclass
class RagTrainConfig:
    out: str
    mode: str = "token"  # passage (distant-supervision reader), standard (top k in one prompt), RAG-Token or -Sequence
    epochs: int = 1
    batch_size: int = 4  # rows per forward pass
    grad_accum: int = 1  # forward passes per optimizer step
    lr: float = 1e-5
    max_grad_norm: float = 1.0
    seed: int = 0
    show_progress: bool = True
    max_examples: int | None = None  # train on the first this many examples only (quick runs)
    lora_rank: int = 0  # 0: train the whole generator; r > 0: LoRA adapters of rank r
    lora_alpha: float | None = None  # LoRA scale α (default 2r)
    train_query_encoder: bool = True  # token/sequence: train the query tower through p(z|x) (passage/standard never do)
    bf16: bool = False  # bfloat16 autocast for forward and backward
    dev_every: int = 0  # optimizer steps between dev evaluations (0: at the end of each epoch only)
    dev_mode: str = "token"  # how the dev questions are answered
    dev_batch_size: int = 8  # dev questions answered at once (larger on a GPU)
    resume: bool = False  # continue OUT/last exactly

    def __post_init__(self) -> None:
        """Reject a setting training cannot use (ConfigError naming the field and the value) before any work."""
        check_text("out", self.out)
        check_choice("mode", self.mode, TRAINABLE_MODES)
        check_int("epochs", self.epochs, 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("grad_accum", self.grad_accum, 1)
        check_float("lr", self.lr, gt=0)
        check_float("max_grad_norm", self.max_grad_norm, gt=0)
        check_int("seed", self.seed, 0, MAX_SEED)
        check_bool("show_progress", self.show_progress)
        check_int("max_examples", self.max_examples, 1, optional=True)
        check_int("lora_rank", self.lora_rank, 0, 1024)
        check_float("lora_alpha", self.lora_alpha, gt=0, optional=True)
        check_bool("train_query_encoder", self.train_query_encoder)
        check_bool("bf16", self.bf16)
        check_int("dev_every", self.dev_every, 0)
        check_choice("dev_mode", self.dev_mode, DEV_MODES)
        check_int("dev_batch_size", self.dev_batch_size, 1)
        check_bool("resume", self.resume)

    @property
    def trains_retriever(self) -> bool:
        return self.mode in MARGINAL_MODES and self.train_query_encoder


@dataclass
class RagTrainResult:
    out: Path
    steps: int
    history: list[dict] = field(default_factory=list)
    cancelled: bool = False
    best_dev_em: float | None = None


def query_encoder(pipeline: RagPipeline) -> torch.nn.Module | None:
    """The dense retriever's query tower, or None when the pipeline retrieves otherwise (BM25, a run file): then
    only the generator trains (passage and standard modes, or a marginal mode with train_query_encoder=False)."""
    return pipeline.retriever.encoder.query_encoder if isinstance(pipeline.retriever, DenseRetriever) else None


def freeze_passage_tower(pipeline: RagPipeline) -> None:
    """Give the query tower its own weights (if shared) and freeze the passage tower that built the index."""
    if not isinstance(pipeline.retriever, DenseRetriever):
        return
    enc = pipeline.retriever.encoder
    if enc.passage_encoder is enc.query_encoder:
        enc.passage_encoder = copy.deepcopy(enc.query_encoder)
        enc.settings.shared = False
    enc.passage_encoder.requires_grad_(False)


def check_targets(pipeline: RagPipeline, examples: Sequence[QAExample]) -> None:
    """Every target answer must fit the generator's context (with room for the input): fail before training."""
    gen = pipeline.generator
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


def _rows(examples: Sequence[QAExample], mode: str) -> list[tuple[QAExample, int]]:
    """The training rows: (example, answer-bearing passage number) in passage mode, (example, -1) otherwise."""
    if mode != "passage":
        return [(e, -1) for e in examples]
    for i, e in enumerate(examples):
        if not e.positive_ctxs:
            raise ConfigError(
                f"training example {i + 1} ({e.question!r}) has no answer-bearing passage; passage mode trains on "
                "the examples of reader_examples (distant supervision)"
            )
    return passage_rows(examples)


def batch_loss(pipeline: RagPipeline, rows: Sequence[tuple[QAExample, int]], mode: str, with_grad: bool) -> torch.Tensor:
    """-log p(answer | question) per row (B,), under `mode`'s objective."""
    if mode == "passage":
        inputs = [pipeline.template.render(e.question, e.positive_ctxs[i]) for e, i in rows]
        logp, _ = pipeline.generator.target_logprobs(inputs, [passage_target(e, i) for e, i in rows])
        return -logp.sum(-1)
    questions, targets = [e.question for e, _ in rows], [e.answers[0] for e, _ in rows]
    return -pipeline.marginal_logprob(questions, targets, mode, with_grad=with_grad)


@contextmanager
def _eval_mode(pipeline: RagPipeline) -> Iterator[None]:
    """The query tower and the generator in eval mode (no dropout), restored to their modes afterwards."""
    query, gen = query_encoder(pipeline), pipeline.generator
    modes = query.training if query else False, gen.model.training
    if query:
        query.eval()
    gen.model.eval()
    try:
        yield
    finally:
        if query:
            query.train(modes[0])
        gen.model.train(modes[1])


@torch.no_grad()
def mean_loss(pipeline: RagPipeline, examples: list[QAExample], mode: str, batch_size: int = 8) -> float:
    """Mean training loss over `examples` (eval mode, no gradients)."""
    rows = _rows(examples, mode)
    with _eval_mode(pipeline):
        batches = (rows[s : s + batch_size] for s in range(0, len(rows), batch_size))
        total = sum(float(batch_loss(pipeline, batch, mode, False).sum()) for batch in batches)
    return total / max(len(rows), 1)


@torch.no_grad()
def dev_exact_match(pipeline: RagPipeline, dev: Sequence[QAExample], mode: str = "token", batch_size: int = 8) -> float:
    """EM (%) of the pipeline's answers to the dev questions, against all their answers."""
    hits = 0.0
    with _eval_mode(pipeline):
        for s in range(0, len(dev), batch_size):
            batch = dev[s : s + batch_size]
            answers = pipeline.answer_batch([e.question for e in batch], mode)
            hits += sum(exact_match(a.answer, e.answers) for a, e in zip(answers, batch, strict=True))
    return 100.0 * hits / max(len(dev), 1)


def _prepare(pipeline: RagPipeline, cfg: RagTrainConfig, out: Path) -> list[torch.nn.Parameter]:
    """Freeze what is not trained, add LoRA (or reload last/'s adapter on resume); the trained parameters."""
    freeze_passage_tower(pipeline)
    gen = pipeline.generator
    query = query_encoder(pipeline)
    if cfg.trains_retriever and query is None:
        raise ConfigError(
            f"RAG-{cfg.mode} training trains the query encoder, which needs the dense retriever; this pipeline "
            f"retrieves with {pipeline.retriever.name} (set train_query_encoder=False to train the generator only)"
        )
    # A model reloaded below comes back on the CPU with default attention kernels: keep the caller's choice of both.
    device, attention = gen.device, gen.model.config._attn_implementation
    if cfg.resume:
        last = out / "last"
        if cfg.lora_rank:  # from the base model: gen.model may hold a starting adapter merged in
            gen.use_model(type(gen).from_pretrained(last / "generator", trainable_adapter=True).model)
        else:
            gen.model.load_state_dict(type(gen).from_pretrained(last / "generator").model.state_dict())
        if cfg.trains_retriever:
            from ..retrieval.encoder import DualEncoder

            assert query is not None  # checked above
            query.load_state_dict(DualEncoder.from_pretrained(last / "retriever").query_encoder.state_dict())
    elif cfg.lora_rank and gen.adapter:
        # Loaded from a LoRA adapter: train that adapter on (its own rank), not a second one stacked on its merged weights.
        gen.use_model(type(gen).from_pretrained(gen.adapter, trainable_adapter=True).model)
    elif cfg.lora_rank:
        gen.use_model(add_lora(gen.model, cfg.lora_rank, cfg.lora_alpha))
    torch.nn.Module.to(gen.model, device)  # (the stubs of PreTrainedModel.to do not take a device)
    if gen.model.config._attn_implementation != attention:
        base = cast(PreTrainedModel, getattr(gen.model, "get_base_model", lambda: gen.model)())  # peft wraps it
        base.set_attn_implementation(attention)
    if query is not None:
        query.requires_grad_(cfg.trains_retriever)
    params = [p for p in gen.model.parameters() if p.requires_grad]
    if cfg.trains_retriever and query is not None:
        params += [p for p in query.parameters() if p.requires_grad]
    return params


def check_finite(value: float, step: int, batch: Sequence[tuple[QAExample, int]], out: Path, what: str = "loss") -> None:
    """Stop at a NaN or infinite loss (or gradient norm) before it reaches the weights: one such step would turn
    every weight it touches into NaN, and each later checkpoint with them. last/ keeps the last good state."""
    if math.isfinite(value):
        return
    questions = "; ".join(repr(e.question) for e, _ in batch[:4])
    raise NonFiniteLoss(
        f"the {what} is {value} at step {step}{' (questions: ' + questions + ')' if questions else ''}; nothing of this "
        f"step was applied, and {out / 'last'} holds the last checkpoint: lower --lr, or train without --bf16"
    )


def train_rag(
    pipeline: RagPipeline,
    examples: list[QAExample],
    cfg: RagTrainConfig,
    callback: Callable[[dict], None] | None = None,
    cancel: threading.Event | None = None,
    dev: Sequence[QAExample] = (),
) -> RagTrainResult:
    """Minimise the `cfg.mode` loss over `examples` (the first answer string is the target; passage mode trains on
    each of their answer-bearing `positive_ctxs`), with dev EM on `dev` (questions never trained on)."""
    check_output_folder(cfg.out, ("rag_log.jsonl", "last", "best"), "a RAG training run's folder")
    rows = _rows(examples[: cfg.max_examples], cfg.mode)
    if len(rows) < cfg.batch_size:
        raise ConfigError(f"batch size {cfg.batch_size} is larger than the {len(rows)} training examples")
    check_targets(pipeline, [e for e, _ in rows])
    out = Path(cfg.out)
    state: dict[str, Any] = load_last_state(out, cfg) if cfg.resume else {"step": 0, "best_dev_em": None}
    torch.manual_seed(cfg.seed)
    params = _prepare(pipeline, cfg, out)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "rag_log.jsonl"
    if cfg.resume:
        restore_optimizer_and_rng(out, optimizer)
    history = start_log(log_path, int(state["step"]) if cfg.resume else None)
    per_epoch = len(rows) // (cfg.batch_size * cfg.grad_accum)
    if per_epoch == 0:
        raise ConfigError(f"batch size × grad_accum = {cfg.batch_size * cfg.grad_accum} is more than the {len(rows)} rows")
    step: int = int(state["step"])
    best: float | None = state["best_dev_em"]

    def autocast():
        # On the generator's device: a run on a GPU autocasts there (the CPU's autocast would not touch CUDA ops).
        return torch.autocast(pipeline.generator.device.type, dtype=torch.bfloat16) if cfg.bf16 else nullcontext()

    bar = tqdm(
        total=per_epoch * cfg.epochs, initial=step, desc=f"RAG-{cfg.mode} training", unit="step", disable=not cfg.show_progress
    )
    cancelled = False

    def checkpoint(evaluate: bool) -> None:
        nonlocal best
        if evaluate and dev:
            with autocast():
                em = dev_exact_match(pipeline, dev, cfg.dev_mode, cfg.dev_batch_size)
            record = {"step": step, "epoch": step / per_epoch, "dev_em": round(em, 3)}
            append_record(log_path, history, record, callback)
            if best is None or em > best:
                best = em
                save_best(out, pipeline, cfg.mode, cfg.trains_retriever)
        elif not dev:
            save_best(out, pipeline, cfg.mode, cfg.trains_retriever)  # no dev set: the latest is the best we know
        state = {"step": step, "best_dev_em": best, "config": asdict(cfg)}
        save_last(out, pipeline, cfg.mode, cfg.trains_retriever, optimizer, state)
        plot_training_log(log_path, out / "loss.png", title=f"RAG training ({cfg.mode})")

    if step == 0 and dev:
        checkpoint(True)  # the untrained model's dev EM: the first point of the curve, and best/ to beat
    query = query_encoder(pipeline)
    pipeline.generator.model.train()
    if query:
        query.train(cfg.trains_retriever)
    while step < per_epoch * cfg.epochs and not cancelled:
        epoch, within = divmod(step, per_epoch)
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()
        losses = []
        for micro in range(cfg.grad_accum):
            start = (within * cfg.grad_accum + micro) * cfg.batch_size
            batch = [rows[i] for i in order[start : start + cfg.batch_size]]
            with autocast():
                loss = batch_loss(pipeline, batch, cfg.mode, with_grad=cfg.trains_retriever).mean() / cfg.grad_accum
            losses.append(float(loss.detach()))
            check_finite(losses[-1], step + 1, batch, out)
            loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
        check_finite(grad_norm, step + 1, [], out, what="gradient norm")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        append_record(log_path, history, {"step": step, "epoch": step / per_epoch, "loss": round(sum(losses), 6)}, callback)
        bar.update(1)
        bar.set_postfix(loss=f"{sum(losses):.3f}")
        cancelled = cancel is not None and cancel.is_set()
        end_of_epoch = step % per_epoch == 0
        if end_of_epoch or cancelled or (cfg.dev_every and step % cfg.dev_every == 0):
            checkpoint(evaluate=not cancelled)
            pipeline.generator.model.train()
            if query:
                query.train(cfg.trains_retriever)
    bar.close()
    pipeline.generator.model.eval()
    if query:
        query.eval()
    return RagTrainResult(out, step, history, cancelled, best)
