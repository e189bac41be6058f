"""Dense search at scale: exact flat against fp16, HNSW and IVF-PQ on synthetic 384-d vectors, in one process.

    python bench/dense_index_speed.py [--n 1000000] [--queries 1000] [--k 20]

Vectors are synthetic but clustered like sentence embeddings (unit vectors around 2,000 random centres, so an
approximate index has neighbourhoods to find; uniform random vectors would make every index look bad). Queries
are fresh draws from the same distribution. Each index kind is built through this project's `DenseIndex`
with its default parameters; recall@k is the overlap of its top-k with the exact flat top-k.
Memory per vector is the serialized index size divided by the number of vectors: what a search process holds in
RAM (for ivfpq-exact, its IVF-PQ part; its float16 vectors, 2·d bytes each, stay on disk and are memory-mapped:
`bench/index_memory.py` measures the resident memory of a search process). HNSW is also searched at several
efSearch, IVF-PQ at several nprobe, and ivfpq-exact at several (nprobe, candidates) (one build each).
`--real NQ.jsonl` adds the same comparison on
the default corpus's real MiniLM vectors (10,365) with NQ questions as queries.
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
from dpr_rag.retrieval.faiss_index import DenseIndex  # noqa: E402


def clustered(n: int, dim: int, centres: np.ndarray, rng: np.random.Generator, chunk: int = 100_000) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        x = centres[rng.integers(len(centres), size=b - a)] + 0.06 * rng.standard_normal((b - a, dim), dtype=np.float32)
        out[a:b] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def measure(index: DenseIndex, queries: np.ndarray, k: int, exact: np.ndarray | None) -> dict:
    index.search(queries[:50], k)  # warm-up: thread pool and caches
    t = time.perf_counter()
    _, ids = index.search(queries, k)
    batch = time.perf_counter() - t
    t = time.perf_counter()
    for q in queries[:100]:
        index.search(q[None], k)
    single_ms = (time.perf_counter() - t) * 1000 / min(100, len(queries))
    exact = ids if exact is None else exact
    recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, exact, strict=True)])
    return {"queries_per_s": len(queries) / batch, "single_query_ms": single_ms, "recall": float(recall), "ids": ids}


def compare(vectors: np.ndarray, queries: np.ndarray, k: int, kinds: list[str], label: str) -> list[dict]:
    """Build each index kind over `vectors`; time and score it (HNSW at several efSearch, IVF-PQ at several nprobe)."""
    rows, exact = [], None
    for kind in kinds:
        index = DenseIndex(vectors.shape[1], kind)
        t = time.perf_counter()
        index.add(vectors)
        build = time.perf_counter() - t
        size = faiss.serialize_index(index.index).nbytes / len(vectors)
        settings = {
            "hnsw": [("efSearch", e) for e in (32, 128, 512)],
            "ivfpq": [("nprobe", p) for p in (16, 64, 256)],
            "ivfpq-exact": [("nprobe,candidates", pc) for pc in ((16, 256), (64, 256), (64, 1000), (128, 1000))],
        }.get(kind, [(None, None)])
        for name, value in settings:
            if kind == "hnsw":
                index.index.hnsw.efSearch = value
            elif kind == "ivfpq":
                faiss.extract_index_ivf(index.index).nprobe = value
            elif kind == "ivfpq-exact":
                index.tune(nprobe=value[0], candidates=value[1])
            m = measure(index, queries, k, exact)
            exact = m.pop("ids") if exact is None else exact
            m.pop("ids", None)
            rows.append(
                {
                    "data": label,
                    "kind": kind,
                    "setting": f"{name}={value}".replace(" ", "") if name else "",
                    "build_s": build,
                    "bytes_per_vector": size,
                    **m,
                    "params": index.params,
                }
            )
            print(
                f"{label} {kind} {rows[-1]['setting']}: built in {build:.1f} s, {m['queries_per_s']:.0f} q/s batched, "
                f"{m['single_query_ms']:.2f} ms single, recall@{k} {m['recall']:.3f}, {size:.0f} B/vector",
                flush=True,
            )
        del index
    return rows


def table(rows: list[dict], k: int, n_queries: int) -> None:
    flat = rows[0]
    print(
        f"\n| index | setting | build | queries/s (batch of {n_queries}) | vs flat | ms/query (one at a time) | "
        f"recall@{k} vs flat | bytes/vector |\n|---|---|---:|---:|---:|---:|---:|---:|"
    )
    for r in rows:
        r["speedup_vs_flat"] = r["queries_per_s"] / flat["queries_per_s"]
        print(
            f"| {r['kind']} | {r['setting']} | {r['build_s']:.1f} s | {r['queries_per_s']:,.0f} | {r['speedup_vs_flat']:.1f}x | "
            f"{r['single_query_ms']:.2f} | {r['recall']:.3f} | {r['bytes_per_vector']:.0f} |"
        )


def real_vectors(qa: Path, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """The default corpus's MiniLM embeddings (from the index cache, built if missing) and NQ question embeddings."""
    import json

    from dpr_rag.retrieval.searcher import Searcher

    dense = Searcher.open(None).retriever("dense")
    vectors = dense.index.reconstruct(np.arange(len(dense.index)))
    questions = [json.loads(line)["question"] for line in qa.open(encoding="utf-8") if line.strip()][:n_queries]
    return vectors, dense.encode(questions)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--kinds", default="flat,fp16,hnsw,ivfpq")
    ap.add_argument(
        "--real",
        type=Path,
        help="also compare on the default corpus's real MiniLM vectors, with the questions of this NQ-open JSONL file as queries",
    )
    args = ap.parse_args()
    kinds = args.kinds.split(",")

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, args.dim), dtype=np.float32) / np.sqrt(args.dim)
    t = time.perf_counter()
    vectors = clustered(args.n, args.dim, centres, rng)
    queries = clustered(args.queries, args.dim, centres, rng)
    print(
        f"{args.n:,} x {args.dim}-d vectors, {args.queries} queries, k={args.k} "
        f"(generated in {time.perf_counter() - t:.0f} s); faiss {faiss.__version__}, "
        f"{faiss.omp_get_max_threads()} threads\n{machine()}"
    )
    rows = compare(vectors, queries, args.k, kinds, f"synthetic {args.n:,}")
    del vectors
    table(rows, args.k, args.queries)
    result = {"n": args.n, "dim": args.dim, "queries": args.queries, "k": args.k, "machine": machine(), "rows": rows}
    if args.real:
        real, real_queries = real_vectors(args.real, 1800)
        real_rows = compare(real, real_queries, args.k, kinds, f"default corpus {len(real):,}")
        table(real_rows, args.k, len(real_queries))
        result["real_rows"] = real_rows
    write_result("dense_index_speed", result)


if __name__ == "__main__":
    main()
