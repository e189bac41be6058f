"""Query-side fine-tuning: train only the question tower (LoRA) against the frozen index of the corpus.

The default recipe of `python -m dpr_rag.train` (BENCHMARKS.md, "Retriever ablation"). Why: on a CPU, encoding the
corpus again after every change of the passage tower costs minutes per evaluation, and a small set of questions
moves a whole two-tower model little (DPR's recipe gained +1.7 top-20 on held-out NQ here). With the passage vectors
fixed, every step scores its questions against the *whole* corpus (`multi_positive_loss.py`: no sampled negatives,
every answer-bearing passage a positive), the dev metric is the real one (top-k answer accuracy over the corpus, in
seconds), and the result is a ~1 MB adapter that works with the index already built for the base encoder.

Data, per question: the positives are the passages among the starting encoder's top `positives_top_k` whose text
contains an answer (distant supervision, as DPR does with BM25's top 100); questions with none are dropped and
counted. With `gold_title_positives`, a question that names its gold article (FanOutQA does) takes that article's
answer-bearing passages instead, or, when none holds the answer string, the article's first passage (what the question
is about; the summary often lacks the detail asked). Synthetic questions (`python -m dpr_rag.generate_questions`)
bring their source passage as positive. The
dev part (split by question) is evaluated over the whole corpus, every question counted, at the start and after
every epoch; `best/` keeps the adapter of the best dev top-k accuracy.

Output folder: best/ (a query-adapter folder: `python -m dpr_rag.search --model OUT`), data/examples.json (the
questions as trained, with their positive passage ids), train_log.jsonl, loss.png (loss and dev accuracy).
"""

from __future__ import annotations

import functools
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from ..config_checks import MAX_SEED, check_bool, check_float, check_int, check_text
from ..data.passages import Passage, load_corpus
from ..data.qa import QAExample, load_dpr_json, load_fanoutqa, load_qa
from ..errors import ConfigError
from ..matching import CorpusAnswerIndex
from ..plots import plot_training_log
from ..retrieval.encoder import DualEncoder
from ..retrieval.query_adapter import BASE_DEFAULT, save_query_adapter
from ..retrieval.searcher import dense_index
from ..storage import atomic_file, check_output_folder
from .distant_supervision import passages_by_title, question_key, split_train_dev
from .multi_positive_loss import multi_positive_nll, positive_mask
from .train_log import append_record, start_log


@dataclass
class QuerySideConfig:
    out: str
    qa: str | None = None  # QA file; None = the embedded FanOutQA questions (or, with `synthetic` only, none)
    synthetic: str | None = None  # DPR JSON from dpr_rag.generate_questions, added to the training part only
    corpus: str | None = None  # None = the default corpus
    model: str | None = None  # starting encoder; None = the untrained all-MiniLM-L6-v2
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-4
    lora_rank: int = 16
    positives_top_k: int = 100
    gold_title_positives: bool = False  # questions naming their gold article: its passages as positives
    temperature: float | None = None  # None: 0.05 for L2-normalised encoders (cosines), else 1.0
    warmup_ratio: float = 0.1
    max_grad_norm: float = 2.0
    dev_fraction: float = 0.1
    eval_k: int = 20
    max_examples: int | None = None
    seed: int = 42
    show_progress: bool = True

    def __post_init__(self) -> None:
        """Reject a setting the trainer cannot use (ConfigError naming the field and the value) before any work."""
        check_text("out", self.out)
        for name in ("qa", "synthetic", "corpus", "model"):
            check_text(name, getattr(self, name), optional=True)
        check_int("epochs", self.epochs, 1)
        check_int("batch_size", self.batch_size, 1)
        check_float("lr", self.lr, gt=0)
        check_int("lora_rank", self.lora_rank, 1)
        check_int("positives_top_k", self.positives_top_k, 1)
        check_float("temperature", self.temperature, gt=0, optional=True)
        check_float("warmup_ratio", self.warmup_ratio, ge=0, lt=1)
        check_float("max_grad_norm", self.max_grad_norm, gt=0)
        check_float("dev_fraction", self.dev_fraction, ge=0, lt=1)
        check_int("eval_k", self.eval_k, 1)
        check_int("max_examples", self.max_examples, 1, optional=True)
        check_int("seed", self.seed, 0, MAX_SEED)
        check_bool("gold_title_positives", self.gold_title_positives)
        check_bool("show_progress", self.show_progress)


@dataclass
class QuerySideResult:
    out: Path
    steps: int
    start_dev_accuracy: float | None
    best_dev_accuracy: float | None
    history: list[dict] = field(default_factory=list)
    cancelled: bool = False


@dataclass
class _Example:
    question: str
    positives: list[int]  # indices into the corpus


class _Corpus:
    """The corpus, its frozen vectors under the starting encoder, and which passages contain which answers."""

    def __init__(self, passages: list[Passage], encoder: DualEncoder, show_progress: bool):
        self.passages = passages
        index = dense_index(passages, encoder, "flat", show_progress=show_progress)
        self.vectors = torch.from_numpy(np.ascontiguousarray(index.reconstruct(np.arange(len(passages))), dtype=np.float32))
        self.answers = CorpusAnswerIndex([p.text for p in passages])
        self.row = {p.id: i for i, p in enumerate(passages)}

    def top_k(self, query_vectors: torch.Tensor, k: int) -> list[list[int]]:
        return (query_vectors @ self.vectors.T).topk(min(k, len(self.passages)), dim=1).indices.tolist()


def _questions(cfg: QuerySideConfig, given: list[QAExample] | None) -> tuple[list[QAExample], list[QAExample]]:
    """(labelled questions, synthetic questions) as configured."""
    synthetic = load_dpr_json(cfg.synthetic) if cfg.synthetic else []
    if given is not None:
        return given, synthetic
    if cfg.qa is None and synthetic:
        return [], synthetic
    return (load_qa(cfg.qa) if cfg.qa else load_fanoutqa()), synthetic


def _encode_questions(encoder: DualEncoder, questions: list[str], batch_size: int = 128) -> torch.Tensor:
    tower = encoder.query_encoder
    was_training = tower.training
    tower.eval()
    with torch.inference_mode():
        out = [tower(**encoder.tokenize_queries(questions[i : i + batch_size])) for i in range(0, len(questions), batch_size)]
    tower.train(was_training)
    return torch.cat(out).float() if out else torch.zeros(0, encoder.dim)


def _label(
    train_qs: list[QAExample], synthetic: list[QAExample], corpus: _Corpus, encoder: DualEncoder, cfg: QuerySideConfig
) -> list[_Example]:
    """Distant supervision within the starting encoder's top k; synthetic questions keep their source passage."""
    tops = corpus.top_k(_encode_questions(encoder, [e.question for e in train_qs]), cfg.positives_top_k) if train_qs else []
    by_title = passages_by_title(corpus.passages) if cfg.gold_title_positives else {}
    examples, n_gold = [], 0
    for ex, top in zip(train_qs, tops, strict=True):
        bearing = set(corpus.answers.passages_with(ex.answers))
        positives = _gold_positives(ex, by_title, bearing, corpus.row)
        n_gold += bool(positives)
        positives = positives or [i for i in top if i in bearing]
        if positives:
            examples.append(_Example(ex.question, positives))
    n_labelled = len(examples)
    for ex in synthetic:
        rows = [corpus.row[p.id] for p in ex.positive_ctxs if p.id in corpus.row]
        if rows:
            examples.append(_Example(ex.question, rows))
    if cfg.show_progress:
        print(
            f"query-side training data: {n_labelled} of {len(train_qs)} questions kept (an answer-bearing passage in the "
            f"starting encoder's top {cfg.positives_top_k}"
            + (f" or the gold article: {n_gold} of them" if cfg.gold_title_positives else "")
            + f"), {len(train_qs) - n_labelled} dropped; "
            f"{len(examples) - n_labelled} of {len(synthetic)} synthetic questions kept (source passage in the corpus)",
            flush=True,
        )
    return examples


def _gold_positives(ex: QAExample, by_title: dict[str, list[Passage]], bearing: set[int], row: dict[str, int]) -> list[int]:
    """Rows of the gold articles' answer-bearing passages, else of each one's first passage; [] when none is here."""
    articles = [by_title[t] for t in ex.gold_titles if t in by_title]
    return [row[p.id] for ps in articles for p in ps if row[p.id] in bearing] or [row[ps[0].id] for ps in articles]


def dev_top_k(encoder: DualEncoder, corpus: _Corpus, dev: list[QAExample], k: int) -> float | None:
    """Percent of dev questions with an answer-bearing passage in the top k over the whole corpus (None: no dev)."""
    if not dev:
        return None
    tops = corpus.top_k(_encode_questions(encoder, [e.question for e in dev]), k)
    hits = [bool(set(top) & set(corpus.answers.passages_with(e.answers))) for e, top in zip(dev, tops, strict=True)]
    return round(100.0 * sum(hits) / len(hits), 2)


def train_query_side(
    cfg: QuerySideConfig,
    callback: Callable[[dict], None] | None = None,
    cancel: threading.Event | None = None,
    examples: list[QAExample] | None = None,
) -> QuerySideResult:
    """Train a LoRA adapter on the question tower as configured (see the module docstring); `callback` receives every
    log record, `cancel` stops after the current step (best/ keeps the best adapter so far)."""
    from ..rag.lora import add_lora  # peft, only when training

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("the query-side recipe runs in one process (minutes on a CPU); under torchrun use --recipe dpr")
    out = check_output_folder(cfg.out, ("train_log.jsonl", "best", "data"), "a training run's folder")
    torch.manual_seed(cfg.seed)
    encoder = DualEncoder.from_pretrained(cfg.model or BASE_DEFAULT)
    # the adapter names its base; a local folder by its absolute path, so the adapter loads from any directory
    base_name = str(Path(cfg.model).resolve()) if cfg.model and Path(cfg.model).exists() else cfg.model
    corpus = _Corpus(load_corpus(cfg.corpus), encoder, cfg.show_progress)
    labelled, synthetic = _questions(cfg, examples)
    train_qs, dev = split_train_dev(labelled, cfg.dev_fraction, seed=cfg.seed) if labelled else ([], [])
    if not labelled and synthetic:
        synthetic, dev = split_train_dev(synthetic, cfg.dev_fraction, seed=cfg.seed)
    dev_keys = {question_key(e.question) for e in dev}
    synthetic = [e for e in synthetic if question_key(e.question) not in dev_keys]
    data = _label(train_qs[: cfg.max_examples] if cfg.max_examples else train_qs, synthetic, corpus, encoder, cfg)
    per_epoch = len(data) // cfg.batch_size
    if per_epoch == 0:
        raise ConfigError(f"batch size {cfg.batch_size} is larger than the {len(data)} training examples")
    with atomic_file(out / "data" / "examples.json") as f:
        json.dump({"train": [asdict(e) for e in data], "dev": [e.question for e in dev]}, f)

    tower = encoder.query_encoder
    tower.model = add_lora(tower.model, cfg.lora_rank)  # the corpus vectors above came from the untouched base
    tower.train()
    optimizer = torch.optim.AdamW([p for p in tower.parameters() if p.requires_grad], lr=cfg.lr)
    total = per_epoch * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total), total)
    temperature = cfg.temperature or (0.05 if encoder.settings.normalize else 1.0)
    recipe = {k: v for k, v in asdict(cfg).items() if k not in ("out", "show_progress")}
    log = out / "train_log.jsonl"
    history = start_log(log, None)  # a new run: an empty log
    record = functools.partial(append_record, log, history, callback=callback)
    start = dev_top_k(encoder, corpus, dev, cfg.eval_k)
    record({"step": 0, "epoch": 0.0, f"dev_top{cfg.eval_k}": start})
    best: float | None = None
    step, cancelled = 0, False
    bar = tqdm(total=total, desc="training the question tower", unit="step", disable=not cfg.show_progress)
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch)).tolist()
        for s in range(per_epoch):
            batch = [data[i] for i in order[s * cfg.batch_size : (s + 1) * cfg.batch_size]]
            t0 = time.perf_counter()
            q = tower(**encoder.tokenize_queries([e.question for e in batch]))
            mask = positive_mask([e.positives for e in batch], len(corpus.passages))
            loss = multi_positive_nll(q, corpus.vectors, mask, temperature)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(tower.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            record(
                {
                    "step": step,
                    "epoch": step / per_epoch,
                    "loss": round(loss.item(), 6),
                    "lr": scheduler.get_last_lr()[0],
                    "grad_norm": round(float(grad_norm), 4),
                    "seconds": round(time.perf_counter() - t0, 4),
                }
            )
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
        acc = dev_top_k(encoder, corpus, dev, cfg.eval_k)
        record({"step": step, "epoch": step / per_epoch, f"dev_top{cfg.eval_k}": acc})
        if best is None or acc is None or acc > best:
            best = acc
            save_query_adapter(tower.model, base_name, out / "best", recipe | {"best_epoch": epoch + 1, "steps": step})
        plot_training_log(log, out / "loss.png", title="Query-side fine-tuning")
        if cancelled:
            break
    bar.close()
    return QuerySideResult(out, step, start, best, history, cancelled)
