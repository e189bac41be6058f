"""`python -m dpr_rag.train_reranker --out DIR`: train a cross-encoder reranker for a first-stage retriever.

Data, by distant supervision over the first stage's own top `--candidates` (`training/reranker_data.py`): the
questions of `--qa` files (several may be given) and, with `--fanoutqa` or when no file is given, the embedded
FanOutQA questions; per question, the candidates whose text holds an answer are positives and those that hold none
are hard negatives. The counts kept and dropped are printed. A dev part (split by question) picks best/.

Use the result with `--rerank DIR/best` in `python -m dpr_rag.search`, `python -m eval.run` and `python -m
dpr_rag.answer`.
"""

from __future__ import annotations

import argparse
import time

from .cli_common import run_cli
from .training.questions import training_questions
from .training.reranker_trainer import FIRST_STAGES, RerankerTrainConfig, train_reranker


def build_parser() -> argparse.ArgumentParser:
    d = RerankerTrainConfig(out="-")  # the defaults, shown in --help
    parser = argparse.ArgumentParser(
        prog="python -m dpr_rag.train_reranker", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="output folder (best/, last/, data/, train_log.jsonl, loss.png)")
    parser.add_argument("--qa", nargs="+", default=[], help="QA files: NQ-open .jsonl, DPR .json/.csv")
    parser.add_argument("--fanoutqa", action="store_true", help="add the embedded FanOutQA questions (the default with no --qa)")
    parser.add_argument("--exclude", nargs="+", default=[], help="QA files whose questions are never trained on")
    parser.add_argument("--corpus", help="passage file (default: the embedded Wikipedia summaries)")
    parser.add_argument("--retriever-model", help="the first stage's dense encoder (default all-MiniLM-L6-v2)")
    parser.add_argument("--first-stage", choices=FIRST_STAGES, default=d.first_stage, help=f"(default {d.first_stage})")
    parser.add_argument("--model", help="starting cross-encoder or encoder folder/id (default: MiniLM + a fresh head)")
    parser.add_argument(
        "--candidates", type=int, default=d.candidates, help=f"first-stage hits per question (default {d.candidates})"
    )
    parser.add_argument(
        "--group-size", type=int, default=d.group_size, help=f"1 positive + negatives per question (default {d.group_size})"
    )
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"questions per step (default {d.batch_size})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"learning rate of the encoder (default {d.lr})")
    parser.add_argument("--head-lr", type=float, default=d.head_lr, help=f"learning rate of the new head (default {d.head_lr})")
    parser.add_argument("--lora-rank", type=int, default=d.lora_rank, help="LoRA rank (0: train the whole model; default 0)")
    parser.add_argument(
        "--max-length", type=int, default=d.max_length, help=f"tokens of question + passage (default {d.max_length})"
    )
    parser.add_argument(
        "--train-embeddings",
        action="store_true",
        help="train the word embeddings too (default: frozen, as the base has them; the saved folder stays small)",
    )
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster on CPUs with AVX512-BF16 or AMX)")
    parser.add_argument("--dev-fraction", type=float, default=d.dev_fraction)
    parser.add_argument("--dev-max", type=int, default=d.dev_max)
    parser.add_argument("--dev-k", type=int, default=d.dev_k, help=f"k of the dev top-k that picks best/ (default {d.dev_k})")
    parser.add_argument("--dev-every", type=int, default=d.dev_every, help="steps between dev evaluations (0: each epoch)")
    parser.add_argument("--max-examples", type=int, help="train on at most this many questions")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--resume", action="store_true", help="continue DIR/last exactly (same settings, same data)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    args["freeze_embeddings"] = not args.pop("train_embeddings")
    config = RerankerTrainConfig(**args)  # checks every setting before any loading
    qa = [] if config.resume else training_questions(config.qa, config.fanoutqa, config.exclude)
    t0 = time.perf_counter()
    result = train_reranker(config, qa)
    print(
        f"trained {result.steps} steps in {time.perf_counter() - t0:.0f} s; dev top-{config.dev_k}: first stage "
        f"{result.first_stage_dev}, best reranked {result.best_dev}; use it with --rerank {result.out / 'best'}"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
