"""`python -m dpr_rag.train_rag --out DIR`: fine-tune RAG end to end (query encoder + generator; the passage encoder
and the index stay frozen), minimising -log p(answer | question) under RAG-Token or RAG-Sequence.

Data: question-answer pairs, NQ-open JSONL (`--qa FILE`) or the embedded FanOutQA questions; the first answer
string of each question is the target. Passages come from `--corpus` (default: the embedded Wikipedia summaries).
Prints the mean loss on (up to 64 of) the training questions before and after training.
Use the result with `python -m dpr_rag.answer "QUESTION" --rag DIR [--corpus OTHER_FILE]`.
"""

from __future__ import annotations

import argparse
import time

from .cli_common import add_corpus_args, run_cli
from .data.qa import load_qa
from .rag.trainer import RagTrainConfig, mean_loss, train_rag

LOSS_EXAMPLES = 64  # questions the before/after loss is measured on


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dpr_rag.train_rag", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", required=True, help="output folder (retriever/, generator/, rag_config.json, rag_log.jsonl, loss.png)"
    )
    parser.add_argument("--qa", help="QA pairs: NQ-open .jsonl (or DPR .json/.csv); default: the embedded FanOutQA questions")
    add_corpus_args(parser)
    parser.add_argument("--generator", help="Hugging Face causal or seq2seq LM id/folder (default: Gemma 3 270M, embedded)")
    parser.add_argument("--mode", choices=("token", "sequence"), default="token", help="marginalisation trained (default token)")
    parser.add_argument("--k", type=int, default=5, help="retrieved passages per question (default 5)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--max-examples", type=int, help="use at most this many questions (the first ones)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = RagTrainConfig(
        out=args.out,
        mode=args.mode,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        max_examples=args.max_examples,
        seed=args.seed,
    )  # checks the settings before any loading
    examples = load_qa(args.qa)[: config.max_examples]  # what train_rag trains on: the probe is drawn from them
    from .rag.pipeline import RagPipeline  # loads the index and the generator (checks k first)

    pipeline = RagPipeline.open(
        corpus=args.corpus,
        model=args.model,
        generator=args.generator,
        k=args.k,
        index_kind=args.index_type,
        use_cache=not args.no_cache,
    )
    probe = examples[:LOSS_EXAMPLES]
    before = mean_loss(pipeline, probe, args.mode, batch_size=args.batch_size)
    print(
        f"RAG-{args.mode}: {len(examples)} questions, k={args.k}; loss before training: {before:.4f} "
        f"(mean -log p(answer|question) on {len(probe)} training questions)",
        flush=True,
    )
    t0 = time.perf_counter()
    result = train_rag(pipeline, examples, config)
    seconds = time.perf_counter() - t0
    after = mean_loss(pipeline, probe, args.mode, batch_size=args.batch_size)
    print(f"trained {result.steps} steps in {seconds:.0f} s; loss after training: {after:.4f} (before {before:.4f})")
    print(f'saved to {result.out}; answer with: python -m dpr_rag.answer "QUESTION" --rag {result.out} [--corpus FILE]')
    return 0


if __name__ == "__main__":
    run_cli(main)
