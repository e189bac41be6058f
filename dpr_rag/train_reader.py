"""`python -m dpr_rag.train_reader --out DIR`: train DPR's extractive reader on the retriever's top passages.

Data, by distant supervision over the retriever's own top `--candidates` (as the reranker's: `training/reranker_data.py`):
the questions of `--qa` files (several may be given) and, with `--fanoutqa` or when no file is given, the embedded
FanOutQA questions; per question, the passages that hold an answer are positives (the answer's spans in them found by
`has_answer`'s normalisation) and those that hold none are negatives. The counts kept and dropped are printed. A dev part
(split by question) picks best/ by the EM of the reader's answers.

Answer with the result: `python -m dpr_rag.answer "QUESTION" --mode extractive --reader DIR/best`, and
`python -m eval.run --generate extractive --reader DIR/best`.
"""

from __future__ import annotations

import argparse
import time

from .cli_common import run_cli
from .extractive.model import ANSWER_RULES
from .training.candidate_data import FIRST_STAGES
from .training.questions import training_questions
from .training.reader_trainer import ReaderTrainConfig, train_reader


def build_parser() -> argparse.ArgumentParser:
    d = ReaderTrainConfig(out="-")  # the defaults, shown in --help
    parser = argparse.ArgumentParser(
        prog="python -m dpr_rag.train_reader", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="output folder (best/, last/, data/, train_log.jsonl, loss.png)")
    parser.add_argument("--qa", nargs="+", default=[], help="QA files: NQ-open .jsonl, DPR .json/.csv")
    parser.add_argument("--fanoutqa", action="store_true", help="add the embedded FanOutQA questions (the default with no --qa)")
    parser.add_argument("--exclude", nargs="+", default=[], help="QA files whose questions are never trained on")
    parser.add_argument("--corpus", help="passage file (default: the embedded Wikipedia summaries)")
    parser.add_argument("--retriever-model", help="the retriever's dense encoder (default all-MiniLM-L6-v2)")
    parser.add_argument("--first-stage", choices=FIRST_STAGES, default=d.first_stage, help=f"retriever (default {d.first_stage})")
    parser.add_argument("--model", help="encoder folder/id to start from (default: the embedded MiniLM)")
    parser.add_argument(
        "--layers", type=int, help="keep only the encoder's first N layers: reads proportionally faster (default: all)"
    )
    parser.add_argument(
        "--candidates", type=int, default=d.candidates, help=f"retrieved passages per question (default {d.candidates})"
    )
    parser.add_argument(
        "--group-size",
        type=int,
        default=d.group_size,
        help=f"passages read per question in a step: 1 positive + negatives (default {d.group_size})",
    )
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"(default {d.epochs})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"questions per step (default {d.batch_size})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"learning rate of the encoder (default {d.lr})")
    parser.add_argument("--head-lr", type=float, default=d.head_lr, help=f"learning rate of the heads (default {d.head_lr})")
    parser.add_argument(
        "--max-length", type=int, default=d.max_length, help=f"tokens of question + passage (default {d.max_length})"
    )
    parser.add_argument(
        "--max-answer-length",
        type=int,
        default=d.max_answer_length,
        help=f"longest answer span, in tokens (default {d.max_answer_length})",
    )
    parser.add_argument(
        "--answer-rule",
        choices=ANSWER_RULES,
        default=d.answer_rule,
        help="passage: DPR's (the selected passage's best span); joint: the best (passage, span) by P_sel · P_start · P_end; "
        f"prior: the same times the retriever's p(z|x) (default {d.answer_rule}; saved with the reader)",
    )
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster on CPUs with AVX512-BF16 or AMX)")
    parser.add_argument("--dev-fraction", type=float, default=d.dev_fraction)
    parser.add_argument("--dev-max", type=int, default=d.dev_max)
    parser.add_argument("--dev-every", type=int, default=d.dev_every, help="steps between dev evaluations (0: each epoch)")
    parser.add_argument("--max-examples", type=int, help="train on at most this many questions")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--resume", action="store_true", help="continue DIR/last exactly (same settings, same data)")
    return parser


def main(argv: list[str] | None = None) -> int:
    config = ReaderTrainConfig(**vars(build_parser().parse_args(argv)))  # checks every setting before any loading
    qa = [] if config.resume else training_questions(config.qa, config.fanoutqa, config.exclude)
    t0 = time.perf_counter()
    result = train_reader(config, qa)
    print(
        f"trained {result.steps} steps in {time.perf_counter() - t0:.0f} s; best dev EM {result.best_dev_em}; "
        f"answer with --mode extractive --reader {result.out / 'best'}"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
