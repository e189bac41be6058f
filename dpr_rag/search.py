"""`python -m dpr_rag.search "QUESTION" --k 5`: top-k passages from BM25, dense and hybrid retrieval, optionally
reranked by a cross-encoder (`--rerank FOLDER`), with the latency of each stage."""

from __future__ import annotations

import argparse
import json
import textwrap
import time

from .cli_common import add_corpus_args, add_rerank_args, index_params, run_cli
from .config_checks import check_int
from .errors import ConfigError
from .retrieval.hybrid import DEFAULT_WEIGHT
from .retrieval.rerank import MAX_CANDIDATES, RerankedRetriever
from .retrieval.searcher import RETRIEVERS, Searcher, check_retriever_names, reranked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpr_rag.search", description=__doc__)
    parser.add_argument("questions", nargs="+", help="one or more questions")
    parser.add_argument("--k", type=int, default=5, help="passages per retriever (default 5)")
    parser.add_argument("--retriever", default="all", help=f"{'|'.join(RETRIEVERS)}|all, or a comma-separated list (default all)")
    add_corpus_args(parser)
    parser.add_argument("--index", help="a folder written by python -m dpr_rag.index --out (instead of --corpus)")
    parser.add_argument(
        "--fusion", choices=("linear", "rrf"), default="linear", help="hybrid fusion (default: DPR's BM25 + λ·sim)"
    )
    parser.add_argument("--weight", type=float, default=DEFAULT_WEIGHT, help=f"λ of the linear hybrid (default {DEFAULT_WEIGHT})")
    add_rerank_args(parser)
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    args = parser.parse_args(argv)

    names = list(RETRIEVERS) if args.retriever == "all" else check_retriever_names(args.retriever)
    if args.rerank:
        names = list(dict.fromkeys(map(reranked, names)))
    if any(not q.strip() for q in args.questions):
        raise ConfigError("empty question")
    searcher = Searcher.open(
        args.corpus,
        model=args.model,
        index=args.index,
        index_kind=args.index_type,
        precision=args.precision,
        index_params=index_params(args),
        use_cache=not args.no_cache,
        hybrid_fusion=args.fusion,
        hybrid_weight=args.weight,
        reranker=args.rerank,
        rerank_candidates=check_int("--rerank-candidates", args.rerank_candidates, 1, MAX_CANDIDATES),
        rerank_fusion=args.rerank_fusion,
    )
    for name in names:
        retriever = searcher.retriever(name)  # built (or loaded from cache) before timing
        t0 = time.perf_counter()
        results = retriever.search(args.questions, args.k)
        ms = (time.perf_counter() - t0) * 1000 / len(args.questions)
        latency = f"{ms:.1f} ms/question"
        if isinstance(retriever, RerankedRetriever):
            first, rerank = (retriever.seconds[k] * 1000 / len(args.questions) for k in ("first_stage", "rerank"))
            latency += f": first stage {first:.1f} + rerank {rerank:.1f} of {retriever.candidates} candidates"
        for question, hits in zip(args.questions, results, strict=True):
            if args.json:
                print(
                    json.dumps(
                        {
                            "retriever": name,
                            "question": question,
                            "ms": round(ms, 2),
                            **({"rerank_ms": round(rerank, 2)} if isinstance(retriever, RerankedRetriever) else {}),
                            "hits": [{"rank": h.rank, "score": h.score, **h.passage.to_dict()} for h in hits],
                        },
                        ensure_ascii=False,
                    )
                )
                continue
            print(f"\n== {name} ({latency}) | {question}")
            for h in hits:
                print(f"{h.rank:>3}. [{h.score:8.3f}] {h.passage.title} (id {h.passage.id})")
                print(textwrap.indent(textwrap.shorten(h.passage.text, 300), "       "))
    return 0


if __name__ == "__main__":
    run_cli(main)
