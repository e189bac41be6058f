"""Training examples from a first stage's own top candidates, shared by the trainers of the second stages (the
reranker, the extractive reader): distant supervision (`reranker_data.py`), split by question into train and dev, saved
under OUT/data so that a resumed run trains on exactly the same examples; and the group of passages one question
contributes to a step."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from ..config_checks import MAX_SEED, check_bool, check_choice, check_float, check_int, check_text
from ..data.passages import Passage
from ..data.qa import QAExample, load_dpr_json
from ..errors import ConfigError
from ..retrieval.rerank import MAX_CANDIDATES
from ..storage import atomic_file, read_json
from .checkpoints import CHECKPOINT_STATE
from .distant_supervision import save_dpr_json, split_train_dev
from .reranker_data import reranker_examples

FIRST_STAGES = ("dense", "bm25", "hybrid")


class CandidateDataConfig(Protocol):
    """The settings these functions read (`RerankerTrainConfig` and `ReaderTrainConfig` have them)."""

    out: str
    corpus: str | None
    retriever_model: str | None
    first_stage: str
    candidates: int
    dev_fraction: float
    dev_max: int
    dev_k: int
    max_examples: int | None
    seed: int
    show_progress: bool


def build_data(cfg: CandidateDataConfig, qa: Sequence[QAExample]) -> tuple[list[QAExample], list[QAExample], float | None]:
    """(train, dev, the first stage's dev top-k) by distant supervision over the first stage's top candidates."""
    from ..retrieval.searcher import Searcher

    searcher = Searcher.open(cfg.corpus, model=cfg.retriever_model, show_progress=cfg.show_progress)
    examples, stats = reranker_examples(qa, searcher.retriever(cfg.first_stage), cfg.candidates, show_progress=cfg.show_progress)
    print(f"distant supervision over the {cfg.first_stage} top {cfg.candidates}: {stats.summary()}", flush=True)
    train, dev = split_train_dev(examples, cfg.dev_fraction, seed=cfg.seed)
    dev = dev[: cfg.dev_max]
    train = train[: cfg.max_examples]
    best_ranks = [min(stats.ranks[(e.question, p.id)] for p in e.positive_ctxs) for e in dev]
    first = [r <= cfg.dev_k for r in best_ranks]
    scores = {key: -float(rank) for key, rank in stats.ranks.items()}  # "score" in the JSON: higher = ranked first
    data = Path(cfg.out) / "data"
    save_dpr_json(train, data / "train.json", scores)
    save_dpr_json(dev, data / "dev.json", scores)
    first_stage = 100.0 * sum(first) / len(first) if first else None
    with atomic_file(data / "first_stage.json") as f:
        top1 = 100.0 * sum(r == 1 for r in best_ranks) / len(best_ranks) if best_ranks else None
        json.dump({f"dev_top{cfg.dev_k}": first_stage, "dev_top1": top1, "n_dev": len(dev), "n_train": len(train)}, f)
    return train, dev, first_stage


def load_data(cfg: CandidateDataConfig) -> tuple[list[QAExample], list[QAExample], float | None]:
    """The examples a run was started with (a resume trains on exactly them); a missing part is an error, not a
    silent run without a dev set."""
    data = Path(cfg.out) / "data"
    for name in ("train.json", "dev.json", "first_stage.json"):
        if not (data / name).is_file():
            raise ConfigError(f"cannot resume: {data / name} is missing (start a new run without --resume)")
    meta = read_json(data / "first_stage.json")
    return load_dpr_json(data / "train.json"), load_dpr_json(data / "dev.json"), meta.get(f"dev_top{cfg.dev_k}")


def group(example: QAExample, epoch: int, step_seed: int, size: int, pool: Sequence[Passage]) -> list[Passage]:
    """The positive of this epoch (cycling through the example's positives), then `size − 1` of its negatives drawn
    without replacement; random pool passages fill in when it has too few."""
    rng = random.Random(step_seed)
    positive = example.positive_ctxs[epoch % len(example.positive_ctxs)]
    negatives = list(example.hard_negative_ctxs)
    chosen = rng.sample(negatives, min(size - 1, len(negatives)))
    while len(chosen) < size - 1:
        chosen.append(pool[rng.randrange(len(pool))])
    return [positive, *chosen]


def step_batch(
    train: Sequence[QAExample], step: int, per_epoch: int, batch_size: int, group_size: int, seed: int, pool: Sequence[Passage]
) -> tuple[list[QAExample], list[list[Passage]]]:
    """The questions of training step `step` and each one's group of passages (positive first): a pure function of
    (seed, epoch, step), so a resumed run draws exactly the batches a straight run would."""
    epoch, within = divmod(step, per_epoch)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
    rows = [train[i] for i in order[within * batch_size : (within + 1) * batch_size]]
    seeds = [seed * 1_000_003 + step * 4096 + j for j in range(len(rows))]
    return rows, [group(e, epoch, s, group_size, pool) for e, s in zip(rows, seeds, strict=True)]


def load_trainer_state(cfg: CandidateDataConfig, must_match: Sequence[str]) -> dict:
    """OUT/last's trainer state, after checking that `cfg` has the settings in `must_match` that the run had."""
    path = Path(cfg.out) / "last" / CHECKPOINT_STATE
    if not path.is_file():
        raise ConfigError(f"cannot resume: {path} not found (train without --resume first)")
    state = read_json(path)
    for name in must_match:
        if getattr(cfg, name) != state["config"][name]:
            raise ConfigError(f"cannot resume with a different {name} ({getattr(cfg, name)!r} vs {state['config'][name]!r})")
    return state


def check_second_stage_settings(cfg: Any, min_group_size: int) -> None:
    """The checks every second-stage trainer's config makes (ConfigError naming the field and the value): output,
    first stage, candidates and groups, schedule, dev split and seed; and `qa` / `exclude` made tuples."""
    check_text("out", cfg.out)
    cfg.qa, cfg.exclude = tuple(cfg.qa), tuple(cfg.exclude)
    check_choice("first_stage", cfg.first_stage, FIRST_STAGES)
    check_int("candidates", cfg.candidates, 2, MAX_CANDIDATES)
    check_int("group_size", cfg.group_size, min_group_size, 256)
    check_int("epochs", cfg.epochs, 1, 1000)
    check_int("batch_size", cfg.batch_size, 1, 4096)
    check_float("lr", cfg.lr, gt=0, le=1)
    check_float("head_lr", cfg.head_lr, gt=0, le=1)
    check_float("warmup_ratio", cfg.warmup_ratio, ge=0, lt=1)
    check_float("max_grad_norm", cfg.max_grad_norm, gt=0)
    check_int("max_length", cfg.max_length, 16, 8192)
    check_float("dev_fraction", cfg.dev_fraction, ge=0, lt=1)
    check_int("dev_max", cfg.dev_max, 0)
    check_int("dev_k", cfg.dev_k, 1, MAX_CANDIDATES)
    check_int("dev_every", cfg.dev_every, 0)
    check_int("max_examples", cfg.max_examples, 1, optional=True)
    check_int("seed", cfg.seed, 0, MAX_SEED)
    for name in ("fanoutqa", "bf16", "resume", "show_progress"):
        check_bool(name, getattr(cfg, name))
