"""BM25 speed: this project's BM25Retriever against raw bm25s and rank_bm25, side by side in one process.

    python bench/bm25_speed.py                                   # the default corpus (10,365 passages), all three
    python bench/bm25_speed.py --synthetic 1000000 --rank-bm25-subset 100000 --queries 200

- dpr_rag: `BM25Retriever` (bm25s engine; our tokeniser, one query at a time as the app and eval search);
- bm25s: the same tokens fed to `bm25s.BM25(method="lucene")` directly, queries retrieved in one batched call;
- rank_bm25: `BM25Retriever(engine="rank_bm25")`, i.e. rank_bm25's Okapi code with Lucene's idf (pure Python);
  on a synthetic corpus it runs on the first `--rank-bm25-subset` passages, compared with dpr_rag on the same subset.
All compute Lucene BM25 (k1=0.9, b=0.4) over the same tokens, so their top-k must agree; the script checks it.

The synthetic corpus draws ~100-word passages from the default corpus's own unigram distribution (a Zipfian
vocabulary of real, stemmable English words); each query is 6 words drawn from one of its passages.
Writes bench/results/bm25_speed[_synthetic].json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bm25s  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import SHARED_NQ, machine, write_result  # noqa: E402
from dpr_rag.data.defaults import default_corpus  # noqa: E402
from dpr_rag.data.passages import Passage  # noqa: E402
from dpr_rag.retrieval.bm25 import BM25Retriever, passage_text, tokenize  # noqa: E402

DEFAULT_QA = SHARED_NQ


def real_queries(qa: Path, passages: list[Passage], n: int) -> tuple[list[str], str]:
    if qa.is_file():
        with open(qa, encoding="utf-8") as f:
            return [json.loads(line)["question"] for line in f if line.strip()][:n], f"questions from {qa}"
    step = max(1, len(passages) // n)  # spread over the corpus rather than its first articles
    return [p.title for p in passages[::step] if p.title.strip()][:n], "passage titles (QA file not found)"


def synthetic_corpus(n: int, n_queries: int, seed: int = 0) -> tuple[list[Passage], list[str]]:
    counts = Counter(w for p in default_corpus() for w in passage_text(p).split())
    words = np.array(list(counts))
    prob = np.array(list(counts.values()), dtype=np.float64)
    prob /= prob.sum()
    rng = np.random.default_rng(seed)
    lengths = rng.integers(80, 121, size=n)
    flat = words[rng.choice(len(words), size=int(lengths.sum()), p=prob)]
    ends = np.cumsum(lengths)
    passages = [
        Passage(str(i), f"Synthetic {i}", " ".join(flat[e - m : e])) for i, (e, m) in enumerate(zip(ends, lengths, strict=True))
    ]
    queries = [" ".join(rng.choice(passages[i].text.split(), size=6)) for i in rng.choice(n, size=n_queries, replace=False)]
    return passages, queries


def ids_of(results) -> list[list[tuple[str, float]]]:
    return [[(h.passage.id, h.score) for h in hits] for hits in results]


def run_dpr_rag(passages, queries, k, engine="bm25s") -> tuple[dict, list[list[str]]]:
    t = time.perf_counter()
    retriever = BM25Retriever(passages, engine=engine)
    build = time.perf_counter() - t
    t = time.perf_counter()
    hits = ids_of(retriever.search(queries, k))
    search = time.perf_counter() - t
    return {"build_s": build, "queries_per_s": len(queries) / search}, hits


def run_raw_bm25s(passages, queries, k) -> tuple[dict, list[list[str]]]:
    t = time.perf_counter()
    index = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
    index.index(tokenize([passage_text(p) for p in passages]), show_progress=False)
    build = time.perf_counter() - t
    t = time.perf_counter()
    docs, scores = index.retrieve(tokenize(queries), k=k, show_progress=False, n_threads=0)
    search = time.perf_counter() - t
    hits = [[(passages[i].id, float(s)) for i, s in zip(row, srow, strict=True)] for row, srow in zip(docs, scores, strict=True)]
    return {"build_s": build, "queries_per_s": len(queries) / search}, hits


def agreement(a: list[list[tuple[str, float]]], b: list[list[tuple[str, float]]]) -> dict:
    """Identical id lists, and identical score lists (ids may then differ only where scores tie)."""
    ids = [([i for i, _ in x], [i for i, _ in y]) for x, y in zip(a, b, strict=True)]
    same_scores = sum(np.allclose([s for _, s in x], [s for _, s in y], rtol=1e-4) for x, y in zip(a, b, strict=True))
    return {"identical": sum(x == y for x, y in ids), "same_scores": int(same_scores), "of": len(a)}


def table(title: str, ours: dict, peer: dict, peer_name: str, agree: dict, k: int) -> str:
    lines = [f"\n{title}", f"{'':<16}{'dpr_rag':>12}{peer_name:>12}{'ratio':>10}"]
    for key in ("build_s", "queries_per_s"):
        x, y = ours[key], peer[key]
        ratio = y / x if key == "build_s" else x / y  # > 1 means dpr_rag is faster
        lines.append(f"{key:<16}{x:>12.2f}{y:>12.2f}{ratio:>9.2f}x")
    lines.append(
        f"top-{k} ids identical: {agree['identical']}/{agree['of']}; "
        f"top-{k} scores identical (ids differ only among ties): {agree['same_scores']}/{agree['of']}"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa", type=Path, default=DEFAULT_QA, help="NQ-open JSONL for queries on the default corpus")
    ap.add_argument("--synthetic", type=int, default=0, help="use a synthetic corpus of N passages instead of the default one")
    ap.add_argument("--rank-bm25-subset", type=int, default=100_000, help="passages rank_bm25 indexes on a synthetic corpus")
    ap.add_argument("--queries", type=int, default=300, help="queries to time (default 300)")
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()

    t = time.perf_counter()
    if args.synthetic:
        passages, queries = synthetic_corpus(args.synthetic, args.queries)
        source = f"synthetic: {len(passages):,} passages of 80-120 words, 6-word queries"
    else:
        passages = default_corpus()
        queries, qsource = real_queries(args.qa, passages, args.queries)
        source = f"default corpus: {len(passages):,} passages; {len(queries)} {qsource}"
    print(f"{source} (prepared in {time.perf_counter() - t:.0f} s)\n{machine()}")

    result = {"corpus": source, "queries": len(queries), "k": args.k, "machine": machine()}
    ours, ours_hits = run_dpr_rag(passages, queries, args.k)
    raw, raw_hits = run_raw_bm25s(passages, queries, args.k)
    result["vs_bm25s"] = {"dpr_rag": ours, "bm25s": raw, "agreement": agreement(ours_hits, raw_hits)}
    print(
        table(f"dpr_rag vs raw bm25s on {len(passages):,} passages", ours, raw, "bm25s", result["vs_bm25s"]["agreement"], args.k)
    )

    subset = passages[: args.rank_bm25_subset] if args.synthetic else passages
    if len(subset) < len(passages):
        ours, ours_hits = run_dpr_rag(subset, queries, args.k)
    rank, rank_hits = run_dpr_rag(subset, queries, args.k, engine="rank_bm25")
    result["vs_rank_bm25"] = {
        "passages": len(subset),
        "dpr_rag": ours,
        "rank_bm25": rank,
        "agreement": agreement(ours_hits, rank_hits),
    }
    print(
        table(
            f"dpr_rag vs rank_bm25 on {len(subset):,} passages",
            ours,
            rank,
            "rank_bm25",
            result["vs_rank_bm25"]["agreement"],
            args.k,
        )
    )
    write_result("bm25_speed_synthetic" if args.synthetic else "bm25_speed", result)


if __name__ == "__main__":
    main()
