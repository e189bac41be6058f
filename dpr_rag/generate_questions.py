"""`python -m dpr_rag.generate_questions --out FILE [--corpus FILE]`: synthetic training questions for a corpus.

Answer-first generation with the generator (default: the bare Gemma 3 270M) and a few FanOutQA demonstrations, then a
round-trip check (the source passage must be in the `--round-trip` retriever's top `--round-trip-k`); see
`dpr_rag/training/synthetic_questions.py`. Writes DPR JSON (question, answer, the source passage as positive, BM25 hard
negatives) that `python -m dpr_rag.train --synthetic FILE` and `python -m dpr_rag.train_rag --qa FILE` train on.
Every verdict goes to FILE.generated.jsonl as it is made: `--resume` continues a cancelled run. Prints how many
questions a minute this machine generates.
"""

from __future__ import annotations

import argparse

from .cli_common import add_corpus_args, index_params, run_cli
from .training.synthetic_questions import GenerationConfig, generate_questions


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dpr_rag.generate_questions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output DPR .json (never overwritten)")
    add_corpus_args(parser)
    parser.add_argument("--generator", help="Hugging Face causal or seq2seq LM id/folder (default: Gemma 3 270M, embedded)")
    parser.add_argument("--max-passages", type=int, help="passages to sample (default: all)")
    parser.add_argument("--per-passage", type=int, default=1, help="questions per passage (default 1)")
    parser.add_argument(
        "--round-trip", choices=("bm25", "dense", "hybrid"), default="bm25", help="round-trip retriever (default bm25)"
    )
    parser.add_argument("--round-trip-k", type=int, default=20, help="the source passage must be in this top k (default 20)")
    parser.add_argument("--shots", type=int, default=4, help="demonstrations in the prompt (default 4)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--hard-negatives", type=int, default=10, help="BM25 hard negatives per question (default 10)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster on CPUs with AVX512-BF16 or AMX)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue the run whose FILE.generated.jsonl exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = GenerationConfig(
        out=args.out,
        per_passage=args.per_passage,
        max_passages=args.max_passages,
        round_trip_k=args.round_trip_k,
        shots=args.shots,
        batch_size=args.batch_size,
        hard_negatives=args.hard_negatives,
        bf16=args.bf16,
        seed=args.seed,
        resume=args.resume,
    )  # checks the settings and --out before any loading
    from .rag.generator import Generator
    from .retrieval.searcher import Searcher

    searcher = Searcher.open(
        args.corpus,
        model=args.model,
        index_kind=args.index_type,
        precision=args.precision,
        index_params=index_params(args),
        use_cache=not args.no_cache,
    )
    generator = Generator.from_pretrained(args.generator)
    stats = generate_questions(
        searcher.passages, generator, searcher.retriever(args.round_trip), searcher.retriever("bm25"), config
    )
    print(stats.summary())
    print(f"wrote {args.out}; train on it with: python -m dpr_rag.train --synthetic {args.out} --out DIR")
    return 0


if __name__ == "__main__":
    run_cli(main)
