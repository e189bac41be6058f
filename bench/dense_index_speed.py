"""Dense search at scale: exact flat against fp16, HNSW and IVF-PQ on synthetic 384-d vectors, in one process.

    python bench/dense_index_speed.py [--n 1000000] [--queries 1000] [--k 20]

Vectors are synthetic but clustered like sentence embeddings (unit vectors around 2,000 random centres, so an
approximate index has neighbourhoods to find; uniform random vectors would make every index look bad). Queries
are fresh draws from the same distribution. Each index kind is built through this project's `DenseIndex`
with its default parameters; recall@k is the overlap of its top-k with the exact flat top-k.
Memory per vector is the serialized index size divided by the number of vectors.
Writes bench/results/dense_index_speed.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import machine, write_result  # noqa: E402
from dpr_rag.faiss_index import DenseIndex  # noqa: E402


def clustered(n: int, dim: int, centres: np.ndarray, rng: np.random.Generator, chunk: int = 100_000) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        x = centres[rng.integers(len(centres), size=b - a)] + 0.06 * rng.standard_normal((b - a, dim), dtype=np.float32)
        out[a:b] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--kinds", default="flat,fp16,hnsw,ivfpq")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, args.dim), dtype=np.float32) / np.sqrt(args.dim)
    t = time.perf_counter()
    vectors = clustered(args.n, args.dim, centres, rng)
    queries = clustered(args.queries, args.dim, centres, rng)
    print(f"{args.n:,} x {args.dim}-d vectors, {args.queries} queries, k={args.k} "
          f"(generated in {time.perf_counter() - t:.0f} s); faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads\n{machine()}")

    rows, exact = [], None
    for kind in args.kinds.split(","):
        index = DenseIndex(args.dim, kind)
        t = time.perf_counter()
        index.add(vectors)
        build = time.perf_counter() - t
        index.search(queries[:50], args.k)  # warm-up: thread pool and caches
        t = time.perf_counter()
        _, ids = index.search(queries, args.k)
        batch = time.perf_counter() - t
        t = time.perf_counter()
        for q in queries[:100]:
            index.search(q[None], args.k)
        single_ms = (time.perf_counter() - t) * 1000 / min(100, len(queries))
        exact = ids if exact is None else exact
        recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(ids, exact)])
        size = faiss.serialize_index(index.index).nbytes
        rows.append({"kind": kind, "build_s": build, "queries_per_s": len(queries) / batch, "single_query_ms": single_ms,
                     f"recall@{args.k}_vs_flat": float(recall), "bytes_per_vector": size / args.n, "params": index.params})
        print(f"{kind}: built in {build:.1f} s, {rows[-1]['queries_per_s']:.0f} q/s batched, {single_ms:.2f} ms single, "
              f"recall@{args.k} {recall:.3f}, {size / args.n:.0f} B/vector", flush=True)
        del index

    flat = rows[0]
    print(f"\n| index | build | queries/s (batch of {args.queries}) | vs flat | ms/query (one at a time) | recall@{args.k} vs flat | bytes/vector |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        r["speedup_vs_flat"] = r["queries_per_s"] / flat["queries_per_s"]
        print(f"| {r['kind']} | {r['build_s']:.1f} s | {r['queries_per_s']:,.0f} | {r['speedup_vs_flat']:.1f}x | "
              f"{r['single_query_ms']:.2f} | {r[f'recall@{args.k}_vs_flat']:.3f} | {r['bytes_per_vector']:.0f} |")
    write_result("dense_index_speed", {"n": args.n, "dim": args.dim, "queries": args.queries, "k": args.k,
                                       "machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
