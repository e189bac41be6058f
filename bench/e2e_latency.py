"""End-to-end latency, one question at a time as a user asks them: each retriever, then each RAG mode.

    python bench/e2e_latency.py [--qa FILE] [--search-questions 100] [--rag-questions 10] [--reader DIR ...]

Over the default corpus with its cached indexes (built first if missing, not timed), the default encoder and the
default generator (Gemma 3 270M). Search latency includes encoding the question; RAG latency is question to
answer: retrieval of k=5 passages (dense, as RAG's p(z|x) needs E_Q(x)·E_P(z)), generation and marginalisation.
With `--reader DIR ...`, DPR's extractive readers (`python -m dpr_rag.train_reader` folders) are timed too, over the dense
top `--extractive-k` (default 10), question by question in turn, so that the machine's slow spells hit each alike.
Prints p50/p95/mean and the ratio of each to BM25 (search) or closed-book (RAG);
writes bench/results/e2e_latency.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import SHARED_NQ, machine, write_result  # noqa: E402
from dpr_rag.rag.answers import GENERATIVE_MODES  # noqa: E402
from dpr_rag.rag.generator import Generator  # noqa: E402
from dpr_rag.rag.pipeline import RagPipeline  # noqa: E402
from dpr_rag.retrieval.searcher import RETRIEVERS, Searcher  # noqa: E402

DEFAULT_QA = SHARED_NQ


def percentiles(seconds: list[float]) -> dict:
    s = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(s, 50)), "p95_ms": float(np.percentile(s, 95)), "mean_ms": float(s.mean()), "n": len(s)}


def timed_each(fn, items) -> list[float]:
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa", type=Path, default=DEFAULT_QA)
    ap.add_argument("--search-questions", type=int, default=100)
    ap.add_argument("--rag-questions", type=int, default=10)
    ap.add_argument("--k", type=int, default=20, help="hits per search (default 20)")
    ap.add_argument("--reader", type=Path, nargs="+", default=[], help="extractive reader folders: time the extractive mode too")
    ap.add_argument("--extractive-k", type=int, default=10, help="passages the extractive reader reads (default 10)")
    ap.add_argument("--modes", default=",".join(GENERATIVE_MODES), help="generative RAG modes to time (default all)")
    args = ap.parse_args()

    searcher = Searcher.open(None, show_progress=True)
    if args.qa.is_file():
        questions = [json.loads(line)["question"] for line in args.qa.open(encoding="utf-8") if line.strip()]
    else:
        questions = [f"what is {p.title}" for p in searcher.passages[::97]]
    print(
        f"{len(searcher.passages):,} passages; questions from {args.qa if args.qa.is_file() else 'passage titles'}\n{machine()}"
    )

    result = {"machine": machine(), "search": {}, "rag": {}}
    for name in RETRIEVERS:
        retriever = searcher.retriever(name)  # built / loaded before timing
        retriever.search(questions[:3], args.k)  # warm-up
        result["search"][name] = percentiles(
            timed_each(lambda q, r=retriever: r.search([q], args.k), questions[: args.search_questions])
        )
    pipeline = RagPipeline(searcher.retriever("dense"), Generator.from_pretrained(None), k=5)
    pipeline.answer(questions[0], "closed-book")  # warm-up
    for mode in ["closed-book", *(m for m in args.modes.split(",") if m and m != "closed-book")]:
        result["rag"][mode] = percentiles(timed_each(lambda q, m=mode: pipeline.answer(q, m), questions[: args.rag_questions]))
    readers = {}
    for folder in args.reader:
        readers[f"extractive {folder} (k={args.extractive_k})"] = reader = RagPipeline(
            searcher.retriever("dense"), None, k=args.extractive_k
        )
        reader.extractive_source = str(folder)
        reader.answer(questions[0], "extractive")  # warm-up (loads the reader)
    seconds: dict[str, list[float]] = {label: [] for label in readers}
    for q in questions[: args.rag_questions]:  # interleaved: a slow spell of the machine hits every reader alike
        for label, reader in readers.items():
            seconds[label] += timed_each(lambda x, r=reader: r.answer(x, "extractive"), [q])
    result["rag"].update({label: percentiles(s) for label, s in seconds.items()})

    print(
        f"\n| search (k={args.k}), one question at a time | p50 ms | p95 ms | mean ms | mean vs BM25 |\n|---|---:|---:|---:|---:|"
    )
    for name, r in result["search"].items():
        print(
            f"| {name} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['mean_ms']:.1f} | "
            f"{r['mean_ms'] / result['search']['bm25']['mean_ms']:.1f}x |"
        )
    print(
        "\n| mode (dense, k=5 unless named), question to answer | p50 s | p95 s | mean s | mean vs closed-book |"
        "\n|---|---:|---:|---:|---:|"
    )
    for mode, r in result["rag"].items():
        print(
            f"| {mode} | {r['p50_ms'] / 1000:.2f} | {r['p95_ms'] / 1000:.2f} | {r['mean_ms'] / 1000:.2f} | "
            f"{r['mean_ms'] / result['rag']['closed-book']['mean_ms']:.1f}x |"
        )
    write_result("e2e_latency", result)


if __name__ == "__main__":
    main()
