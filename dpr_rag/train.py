"""`python -m dpr_rag.train --out DIR`: train a DPR dual encoder (defaults: the embedded questions and corpus).

Distributed: `torchrun --nproc_per_node N -m dpr_rag.train --out DIR ...` (the batch is split over the N
processes and passages are gathered, so every question sees the whole batch's passages as negatives).
"""

from __future__ import annotations

import argparse
import dataclasses

from .cli_common import run_cli
from .training.trainer import TrainConfig, train

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
    "gold_title_positives": "prefer an answer-bearing passage of the article the data names as gold (FanOutQA) as positive",
    "temperature": "softmax temperature (default 0.05 for L2-normalised encoders, else 1.0)",
    "grad_cache_chunk": "gradient caching: encode in chunks of this many sequences (0 = off)",
    "dev_fraction": "share of questions held out for model selection",
    "eval_k": "k of the dev top-k accuracy that picks the best checkpoint",
    "max_examples": "use at most this many training questions",
    "save_every": "steps between checkpoints (0 = each epoch)",
    "resume": "continue from OUT/last exactly where it stopped",
}


def build_parser() -> argparse.ArgumentParser:
    """One option per TrainConfig field, so the CLI and the library take exactly the same settings."""
    parser = argparse.ArgumentParser(
        prog="python -m dpr_rag.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for f in dataclasses.fields(TrainConfig):
        if f.name == "show_progress":
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", help=HELP.get(f.name))
            continue
        kind = {"int": int, "float": float, "str": str}.get(str(f.type).split(" ")[0].replace("|", "").strip(), str)
        required = f.default is dataclasses.MISSING
        shown_default = "" if required or f.default is None else f" (default {f.default})"
        parser.add_argument(
            flag,
            type=kind,
            required=required,
            default=None if required else f.default,
            help=(HELP.get(f.name, "") + shown_default).strip(),
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = train(TrainConfig(**vars(args)))
    print(
        f"trained {result.steps} steps; best dev top-{args.eval_k} accuracy: {result.best_dev_accuracy}; "
        f"model: {result.out / 'best'} (use --model {result.out})"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
