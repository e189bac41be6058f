"""`python -m dpr_rag.train --out DIR`: train a retriever (defaults: the embedded questions and corpus).

Two recipes (BENCHMARKS.md, "Retriever ablation", compares them on held-out NQ):
- `--recipe query-side` (the default): a LoRA adapter on the question tower, trained against the frozen index of the
  corpus (full-corpus softmax, every answer-bearing passage a positive); minutes on a CPU, no re-indexing, a ~1 MB
  `best/` (dpr_rag/training/query_side.py);
- `--recipe dpr`: DPR's two-tower training with in-batch and hard negatives, GradCache, DDP and exact resume
  (dpr_rag/training/trainer.py). Distributed: `torchrun --nproc_per_node N -m dpr_rag.train --recipe dpr ...` (the
  batch is split over the N processes and passages are gathered, so every question sees the whole batch's passages).

An option that only one recipe uses is refused with the other.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .cli_common import run_cli
from .errors import ConfigError
from .training.query_side import QuerySideConfig, train_query_side
from .training.trainer import TrainConfig, train

RECIPES = {"query-side": QuerySideConfig, "dpr": TrainConfig}

HELP = {
    "out": "output folder (best/, last/, data/, train_log.jsonl)",
    "qa": "QA file: NQ-open .jsonl or DPR .json/.csv (default: embedded fanoutqa questions); without passages "
    "they are turned into training examples by distant supervision against --corpus",
    "synthetic": "DPR JSON of synthetic questions (python -m dpr_rag.generate_questions) added to the training part "
    "(never to dev); alone, it is split into train and dev itself",
    "corpus": "passages for distant supervision and random negatives (default: embedded Wikipedia summaries)",
    "model": "starting encoder (default all-MiniLM-L6-v2)",
    "shared": "one model for questions and passages instead of DPR's two",
    "batch_size": "questions per step (over all processes)",
    "hard_negatives": "BM25 hard negatives per question (0 = in-batch negatives only)",
    "negatives": "hard negatives from bm25 (DPR), dense (the starting encoder's top hits, answer-bearing ones skipped) or both",
    "negative_margin": "dense negatives: skip candidates the encoder scores within this cosine of the positive "
    "(likely false negatives; sentence-transformers' absolute_margin)",
    "gold_title_positives": "prefer an answer-bearing passage of the article the data names as gold (FanOutQA) as "
    "positive (query-side: else the article's first passage)",
    "temperature": "softmax temperature (default 0.05 for L2-normalised encoders, else 1.0)",
    "grad_cache_chunk": "gradient caching: encode in chunks of this many sequences (0 = off)",
    "dev_fraction": "share of questions held out for model selection",
    "eval_k": "k of the dev top-k accuracy that picks the best checkpoint",
    "max_examples": "use at most this many training questions",
    "save_every": "steps between checkpoints (0 = each epoch)",
    "resume": "continue from OUT/last exactly where it stopped",
    "lora_rank": "rank of the LoRA adapter on the question tower",
    "positives_top_k": "positives: the answer-bearing passages among the starting encoder's top k",
}


def _kind(f: dataclasses.Field) -> type:
    return {"int": int, "float": float, "str": str}.get(str(f.type).split(" ")[0].replace("|", "").strip(), str)


def build_parser() -> argparse.ArgumentParser:
    """One option per field of either recipe's config, so the CLI and the library take exactly the same settings;
    defaults are the chosen recipe's own (shown as "query-side / dpr")."""
    parser = argparse.ArgumentParser(
        prog="python -m dpr_rag.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", choices=list(RECIPES), default="query-side", help="what to train (default query-side)")
    fields: dict[str, dict[str, dataclasses.Field]] = {}
    for recipe, config in RECIPES.items():
        for f in dataclasses.fields(config):
            if f.name != "show_progress":
                fields.setdefault(f.name, {})[recipe] = f
    for name, by_recipe in fields.items():
        f = next(iter(by_recipe.values()))
        flag = "--" + name.replace("_", "-")
        scope = "" if len(by_recipe) == len(RECIPES) else f"[{'/'.join(by_recipe)} only] "
        if f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", default=None, help=scope + HELP.get(name, ""))
            continue
        required = f.default is dataclasses.MISSING
        defaults = [str(g.default) for g in by_recipe.values() if g.default is not None]
        shown = "" if required or not defaults else f" (default {' / '.join(dict.fromkeys(defaults))})"
        parser.add_argument(
            flag, type=_kind(f), required=required, default=None, help=(scope + HELP.get(name, "") + shown).strip()
        )
    return parser


def config_from_args(args: argparse.Namespace) -> QuerySideConfig | TrainConfig:
    """The chosen recipe's config from the options given; one the recipe does not use is a ConfigError."""
    given = {k: v for k, v in vars(args).items() if v is not None and k != "recipe"}
    config = RECIPES[args.recipe]
    names = {f.name for f in dataclasses.fields(config)}
    if foreign := sorted(set(given) - names):
        flags = ", ".join("--" + n.replace("_", "-") for n in foreign)
        raise ConfigError(f"{flags}: not an option of --recipe {args.recipe}")
    return config(**given)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    if isinstance(config, QuerySideConfig):
        result = train_query_side(config)
        start, best = result.start_dev_accuracy, result.best_dev_accuracy
        print(f"trained {result.steps} steps; dev top-{config.eval_k} accuracy: {start} at the start, best {best}")
    else:
        dpr = train(config)
        print(f"trained {dpr.steps} steps; best dev top-{config.eval_k} accuracy: {dpr.best_dev_accuracy}")
    print(f"model: {Path(config.out) / 'best'} (use --model {config.out})")
    return 0


if __name__ == "__main__":
    run_cli(main)
