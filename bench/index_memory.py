"""Resident memory of a search process over an ivfpq-exact index, at several sizes (default 1M and 4M synthetic
384-d vectors), so that the 21M estimate in docs/scale.md rests on more than one point:

    python bench/index_memory.py [--sizes 1000000,4000000] [--folder /tmp/index-memory]

For each size: build the index (IVF-PQ codes in memory, float16 vectors on disk) with this project's `DenseIndex`
from clustered synthetic vectors (bench/dense_index_speed.py's generator) and save it; then a fresh process loads it
and searches 1,000 queries (k=20, in a batch and one at a time) and reports, from /proc/self/status, its anonymous
resident memory (RssAnon: the process's own allocations) and its file-backed resident memory (RssFile: pages of
the memory-mapped vector file it touched, which the kernel may drop at any time), each minus the same process's
before loading. Writes bench/results/index_memory.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

SEARCH = r"""
import json, sys, time, numpy as np
sys.path.insert(0, sys.argv[3])
def status():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "RssAnon", "RssFile")}
from dpr_rag.retrieval.faiss_index import DenseIndex
before = status()
t = time.perf_counter(); index = DenseIndex.load(sys.argv[1]); load_s = time.perf_counter() - t
loaded = status()
queries = np.load(sys.argv[2])
index.search(queries[:20], 20)
t = time.perf_counter(); index.search(queries, 20); batch = time.perf_counter() - t
t = time.perf_counter()
for q in queries[:200]: index.search(q[None], 20)
single = (time.perf_counter() - t) / 200
after = status()
print(json.dumps({"load_s": load_s, "queries_per_s": len(queries) / batch, "single_query_ms": 1000 * single,
    "before": before, "loaded": loaded, "after": after, "params": index.params}))
"""


def main() -> None:
    from bench.common import machine, write_result
    from bench.dense_index_speed import clustered
    from dpr_rag.retrieval.faiss_index import DenseIndex

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000,4000000")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--folder", type=Path, default=Path("/tmp/index-memory"))
    ap.add_argument("--nprobe", type=int, default=64)
    ap.add_argument("--candidates", type=int, default=1000)
    ap.add_argument("--nlist", type=int, help="inverted lists (default 4*sqrt(n)); fewer build faster, same memory")
    args = ap.parse_args()
    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        rng = np.random.default_rng(0)
        centres = rng.standard_normal((2000, args.dim), dtype=np.float32) / np.sqrt(args.dim)
        queries = clustered(1000, args.dim, centres, np.random.default_rng(1))
        index = DenseIndex(args.dim, "ivfpq-exact", nprobe=args.nprobe, candidates=args.candidates, nlist=args.nlist)
        t = time.perf_counter()
        index.train(clustered(min(n, 40 * 4 * int(n**0.5)), args.dim, centres, rng), n_total=n)
        for a in range(0, n, 500_000):
            index.add(clustered(min(500_000, n - a), args.dim, centres, rng))
        build = time.perf_counter() - t
        folder = args.folder / str(n)
        index.save(folder)
        del index
        np.save(args.folder / "queries.npy", queries)
        root = str(Path(__file__).resolve().parents[1])
        out = subprocess.run(
            [sys.executable, "-c", SEARCH, str(folder), str(args.folder / "queries.npy"), root],
            capture_output=True,
            text=True,
            check=True,
        )
        m = json.loads(out.stdout.strip().splitlines()[-1])
        anon = m["after"]["RssAnon"] - m["before"]["RssAnon"]
        file_backed = m["after"]["RssFile"] - m["before"]["RssFile"]
        row = {
            "n": n,
            "build_s": round(build, 1),
            "load_s": round(m["load_s"], 2),
            "queries_per_s": round(m["queries_per_s"], 1),
            "single_query_ms": round(m["single_query_ms"], 2),
            "anon_bytes_per_vector": round(anon / n, 1),
            "file_backed_bytes_per_vector": round(file_backed / n, 1),
            "rss_after_mb": round(m["after"]["VmRSS"] / 2**20),
            "index_faiss_bytes_per_vector": round((folder / "index.faiss").stat().st_size / n, 1),
            "vectors_on_disk_bytes_per_vector": round((folder / "vectors.npy").stat().st_size / n, 1),
            "params": m["params"],
        }
        rows.append(row)
        print(row, flush=True)
        shutil.rmtree(folder)
    write_result("index_memory", {"machine": machine(), "dim": args.dim, "rows": rows})


if __name__ == "__main__":
    main()
