"""Speed of the two BM25 engines on the default corpus, built side by side in one process.

    python bench/bm25_speed.py [--qa FILE] [--queries N] [--k K]

Times index build (tokenising included) and search throughput, checks that both engines return the same top-k,
and prints a table with the ratio bm25s / rank_bm25.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from dpr_rag.bm25 import BM25Retriever  # noqa: E402
from dpr_rag.passages import default_corpus  # noqa: E402

DEFAULT_QA = "/work/shared/data/nq-open-efficientqa-dev.jsonl"


def load_queries(qa: Path, passages, n: int) -> tuple[list[str], str]:
    if qa.is_file():
        with open(qa, encoding="utf-8") as f:
            qs = [json.loads(line)["question"] for line in f if line.strip()]
        return qs[:n], f"questions from {qa}"
    step = max(1, len(passages) // n)  # spread over the corpus rather than its first articles
    return [p.title for p in passages[::step] if p.title.strip()][:n], "passage titles (QA file not found)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa", type=Path, default=Path(DEFAULT_QA), help="NQ-open style JSONL with a 'question' field")
    ap.add_argument("--queries", type=int, default=300, help="number of queries to time (default 300)")
    ap.add_argument("--k", type=int, default=10, help="hits per query compared between engines (default 10)")
    args = ap.parse_args()
    if args.queries < 1:
        ap.error("--queries must be at least 1")

    t = time.perf_counter()
    passages = default_corpus()
    print(f"corpus: {len(passages)} passages, loaded in {time.perf_counter() - t:.2f}s")
    queries, source = load_queries(args.qa, passages, args.queries)
    print(f"queries: {len(queries)} {source}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}\n")

    stats, hits = {}, {}
    for engine in ("bm25s", "rank_bm25"):
        t = time.perf_counter()
        ret = BM25Retriever(passages, engine=engine)
        build = time.perf_counter() - t
        t = time.perf_counter()
        hits[engine] = ret.search(queries, k=args.k)
        search = time.perf_counter() - t
        stats[engine] = {"build_s": build, "queries_per_s": len(queries) / search, "ms_per_query": 1000 * search / len(queries)}

    a, r = hits["bm25s"], hits["rank_bm25"]
    same = sum([h.passage.id for h in x] == [h.passage.id for h in y] for x, y in zip(a, r))
    same_set = sum({h.passage.id for h in x} == {h.passage.id for h in y} for x, y in zip(a, r))
    rel = max(
        float(np.max(np.abs(np.array([h.score for h in x]) - [h.score for h in y]) / np.maximum([h.score for h in y], 1e-9)))
        for x, y in zip(a, r)
    )
    print(f"{'':<14}{'bm25s':>12}{'rank_bm25':>12}{'bm25s/rank_bm25':>18}")
    for key in ("build_s", "queries_per_s", "ms_per_query"):
        x, y = stats["bm25s"][key], stats["rank_bm25"][key]
        print(f"{key:<14}{x:>12.3f}{y:>12.3f}{x / y:>18.3f}")
    print(f"\ntop-{args.k} identical (ids in order): {same}/{len(queries)} = {same / len(queries):.3f}")
    print(f"top-{args.k} same set of ids:          {same_set}/{len(queries)} = {same_set / len(queries):.3f}")
    print(f"max relative score difference in top-{args.k}: {rel:.2e}")


if __name__ == "__main__":
    main()
