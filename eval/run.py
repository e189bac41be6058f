"""`python -m eval.run`: which retriever wins, in numbers. Top-k retrieval accuracy of BM25, dense and hybrid
retrieval (and, on request, EM/F1 of RAG answers), with paired bootstrap confidence intervals.

    python -m eval.run [--qa FILE] [--corpus FILE] [--model PATH] [--retrievers bm25,dense,hybrid]
                       [--k 1,5,20,100] [--generate sequence,token,closed-book] [--limit N] [--match string|regex]
                       [--out DIR]

Writes report.json, report.md, per_question.jsonl and topk.png into --out (default eval/reports/<timestamp>/),
all at once: a failed or interrupted run leaves no half report. Indexes come from the searcher's cache, so a
rerun does not re-encode the corpus. This module only parses the command line: the work is
`eval.harness.run_evaluation(EvalConfig(...))`, which the app calls too.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from dpr_rag.cli_common import add_corpus_args, add_rerank_args, index_params, run_cli
from dpr_rag.data.beir import beir_folder
from dpr_rag.errors import ConfigError
from dpr_rag.matching import MATCH_MODES
from dpr_rag.retrieval.hybrid import DEFAULT_WEIGHT, FUSIONS
from dpr_rag.retrieval.searcher import RERANKED, RETRIEVERS

from .bootstrap import DEFAULT_SAMPLES
from .config import DEFAULT_KS, GENERATION_MODES, EvalConfig, parse_ks, parse_modes, split_csv
from .harness import run_evaluation
from .report import FILES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--qa",
        help="questions: NQ-open .jsonl, DPR .json, or DPR .csv/.tsv (question<TAB>[answers]); "
        "default: the embedded FanOutQA dev sub-questions",
    )
    parser.add_argument(
        "--qrels", help="relevance judgments (BEIR qrels .tsv or TREC qrels): MRR@10, nDCG@10, Recall@k with --qa QUERIES"
    )
    parser.add_argument("--beir", help="a BEIR dataset folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    parser.add_argument("--split", default="test", help="the qrels split of --beir (default test)")
    add_corpus_args(parser)
    parser.add_argument(
        "--retrievers", default=",".join(RETRIEVERS), help=f"comma-separated, from {','.join(RETRIEVERS)} (default all)"
    )
    parser.add_argument("--k", default=",".join(map(str, DEFAULT_KS)), help="top-k cut-offs (default 1,5,20,100)")
    parser.add_argument(
        "--generate", default="", help=f"RAG modes to score with EM/F1, from {','.join(GENERATION_MODES)} (default none)"
    )
    parser.add_argument("--generator", help="generator LM (or LoRA adapter folder) for --generate (default: the shipped reader)")
    parser.add_argument("--rag", help="a RAG training folder (python -m dpr_rag.train_rag --out) to answer with")
    parser.add_argument(
        "--reader", help="the extractive mode's reader folder (python -m dpr_rag.train_reader; default: the shipped one)"
    )
    parser.add_argument("--base-generator", action="store_true", help="answer with the bare base model (Gemma 3 270M)")
    parser.add_argument(
        "--with-base", default="", help="modes also answered by the bare base model, as rows '<mode> (base)' (default none)"
    )
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast while generating (faster on recent CPUs)")
    parser.add_argument(
        "--fallback",
        action="store_true",
        help="also rows '<mode> + fallback': the closed-book answer wherever the RAG answer is in none of its passages",
    )
    parser.add_argument(
        "--rag-retriever",
        choices=[*RETRIEVERS, *(r + RERANKED for r in RETRIEVERS)],
        default="dense",
        help="what RAG retrieves with (default dense; '+rerank' needs --rerank)",
    )
    add_rerank_args(parser, "adds a '<retriever>+rerank' row each")
    parser.add_argument("--rag-k", type=int, default=5, help="passages RAG marginalises over (default 5)")
    parser.add_argument("--shots", type=int, default=0, help="few-shot demonstrations before each question (default 0)")
    parser.add_argument(
        "--sequence-beams", type=int, help="RAG-Sequence's beams per passage (default 4; 1: each passage's greedy answer)"
    )
    parser.add_argument("--limit", type=int, help="evaluate only the first N questions")
    parser.add_argument(
        "--match",
        choices=MATCH_MODES,
        default="string",
        help="answer matching: DPR's token match (string) or regular expressions (regex, CuratedTREC)",
    )
    parser.add_argument("--out", help="report folder (default eval/reports/<timestamp>/)")
    parser.add_argument("--fusion", choices=FUSIONS, default="linear", help="hybrid fusion (default linear: BM25 + λ·sim)")
    parser.add_argument("--weight", type=float, default=DEFAULT_WEIGHT, help=f"λ of the linear hybrid (default {DEFAULT_WEIGHT})")
    parser.add_argument(
        "--bootstrap", type=int, default=DEFAULT_SAMPLES, help=f"paired bootstrap resamples (default {DEFAULT_SAMPLES})"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="with --model, do not also evaluate the untrained default encoder (dense_untrained)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.beir:
        if args.qa or args.corpus or args.qrels:
            raise ConfigError("--beir names the corpus, queries and qrels: give none of --qa, --corpus, --qrels with it")
        found = beir_folder(args.beir, args.split)
        args.qa, args.corpus, args.qrels = str(found.queries), str(found.corpus), str(found.qrels)
    config = EvalConfig(
        qa=args.qa,
        qrels=args.qrels,
        corpus=args.corpus,
        model=args.model,
        retrievers=split_csv(args.retrievers),
        k=parse_ks(args.k),
        generate=parse_modes(args.generate),
        generator=args.generator,
        rag=args.rag,
        reader=args.reader,
        base_generator=args.base_generator,
        with_base=parse_modes(args.with_base),
        bf16=args.bf16,
        fallback=args.fallback,
        rag_retriever=args.rag_retriever,
        rerank=args.rerank,
        rerank_candidates=args.rerank_candidates,
        rerank_fusion=args.rerank_fusion,
        rag_k=args.rag_k,
        shots=args.shots,
        sequence_beams=args.sequence_beams,
        limit=args.limit,
        match=args.match,
        out=args.out,
        index_type=args.index_type,
        precision=args.precision,
        index_params=index_params(args),
        use_cache=not args.no_cache,
        fusion=args.fusion,
        weight=args.weight,
        bootstrap_samples=args.bootstrap,
        seed=args.seed,
        show_progress=not args.quiet,
        baseline=not args.no_baseline,
        command=shlex.join(["python", "-m", "eval.run", *argv]),
    )
    report, out = run_evaluation(config)
    if config.qrels is not None:
        print(f"{report['n_queries']:,} judged queries ({report['n_queries_without_judgments']:,} without judgments left out)")
        for name, values in report["ir"].items():
            cells = "  ".join(f"{m} {v:5.1f}" for m, v in values.items())
            print(f"{name:>15}: {cells}   ({report['queries_per_second'][name]} queries/s)")
        print(f"report: {out}/ (report.json, report.md, per_query.jsonl, runs/*.trec)")
        return 0
    n = report["n_questions"]
    print(f"{n:,} questions, {report['n_answerable']:,} answerable from the corpus")
    for name, accs in report["retrieval"].items():
        cells = "  ".join(f"top-{k} {v:5.1f}" for k, v in accs.items())
        print(f"{name:>15}: {cells}   ({report['queries_per_second'][name]} queries/s)")
    for mode, v in report["qa"].items():
        print(f"{mode:>18}: EM {v['em']:.1f}  F1 {v['f1']:.1f}  ({report['seconds_per_answer'][mode]} s/answer)")
    print(f"report: {out}/ ({', '.join(FILES)})")
    return 0


if __name__ == "__main__":
    run_cli(main)
