"""CPU encoding backends side by side: dpr-rag's torch fp32 / torch bf16 / ONNX Runtime fp32 / ONNX Runtime int8
against sentence-transformers' own backends (`backend="torch"` and `backend="onnx"`) on the same passages and queries:

    python bench/encode_backends.py --st-python /path/to/venv/bin/python [--top20 ../shared/data/nq-open-efficientqa-dev.jsonl]

- passages/s: the first --passages passages of the default corpus, batches of 64, up to 256 tokens (the same for all);
- query latency: one query at a time (as the app searches), median and p90 over --queries questions;
- `--top20 QA`: dense top-20 answer accuracy over the whole default corpus for each dpr-rag precision that changes the
  vectors (int8; fp32 in ONNX Runtime is compared by its largest difference to torch, bf16 by its cosine).

sentence-transformers' ONNX backend needs `optimum-onnx`, which pins transformers < 4.58 while dpr-rag runs
transformers 5, so the peer runs in its own environment (`--st-python`: a venv with sentence-transformers 5.1.2,
transformers 4.57.6, optimum-onnx 0.1.0, onnxruntime 1.32.0, torch 2.13.0). Both sides run one after the other on the
same machine with the same thread count. Writes bench/results/encode_backends.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

PEER = r"""
import json, sys, time, numpy as np, torch
from sentence_transformers import SentenceTransformer
model_dir, data, out = sys.argv[1:4]
data = json.load(open(data))
results = {}
for backend in ("torch", "onnx"):
    m = SentenceTransformer(model_dir, backend=backend, device="cpu")
    m.max_seq_length = 256
    texts = data["passages"]
    m.encode(texts[:8], batch_size=64)
    t = time.perf_counter(); m.encode(texts, batch_size=64); dt = time.perf_counter() - t
    lat = []
    for q in data["queries"]:
        t = time.perf_counter(); m.encode([q]); lat.append(time.perf_counter() - t)
    results[f"sentence-transformers {backend}"] = {"passages_per_s": len(texts) / dt,
        "query_p50_ms": 1000 * float(np.median(lat)), "query_p90_ms": 1000 * float(np.percentile(lat, 90))}
json.dump(results, open(out, "w"))
"""


def timed(encoder, passages, queries, precision: str, backend: str) -> dict:
    os.environ["DPR_RAG_ENCODER_BACKEND"] = backend
    query_precision = "int8" if precision == "int8" else "fp32"
    encoder.encode_passages(passages[:8], show_progress=False, precision=precision)  # exports / warms up first
    encoder.encode_queries(queries[:2], precision=query_precision)
    t = time.perf_counter()
    vectors = encoder.encode_passages(passages, show_progress=False, precision=precision)
    seconds = time.perf_counter() - t
    latencies = []
    for q in queries:
        t = time.perf_counter()
        encoder.encode_queries([q], precision=query_precision)
        latencies.append(time.perf_counter() - t)
    return {
        "passages_per_s": len(passages) / seconds,
        "query_p50_ms": 1000 * float(np.median(latencies)),
        "query_p90_ms": 1000 * float(np.percentile(latencies, 90)),
        "vectors": vectors,
    }


def top20(encoder, corpus, examples, precision: str) -> float:
    """Dense top-20 answer accuracy over the whole corpus; fp32 uses the shipped fp32 vectors (0 of 1,800 NQ top-20
    outcomes differ from a fresh fp32 encoding: dpr_rag/data/default_embeddings/README.md) instead of 12 minutes."""
    from dpr_rag.data.passages import corpus_fingerprint
    from dpr_rag.matching import has_answer
    from dpr_rag.retrieval.faiss_index import DenseIndex
    from dpr_rag.retrieval.prebuilt import shipped_embeddings

    index = DenseIndex(encoder.dim)
    shipped = shipped_embeddings(corpus_fingerprint(corpus), encoder.passage_fingerprint()) if precision == "fp32" else None
    index.add(shipped if shipped is not None else encoder.encode_passages(corpus, show_progress=True, precision=precision))
    _, ids = index.search(encoder.encode_queries([ex.question for ex in examples]), 20)
    hits = [has_answer(ex.answers, " ".join(corpus[i].text for i in row)) for ex, row in zip(examples, ids, strict=True)]
    return round(100 * float(np.mean(hits)), 2)


def main() -> None:
    from bench.common import machine, write_result
    from dpr_rag.data.passages import load_corpus
    from dpr_rag.data.qa import load_qa
    from dpr_rag.retrieval.encoder import DualEncoder, cpu_has_fast_bf16, default_encoder_path

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=512)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--st-python", help="a Python with sentence-transformers and optimum-onnx (the peer run)")
    ap.add_argument("--top20", help="a QA file: dense top-20 over the default corpus per precision (encodes it)")
    ap.add_argument("--skip-bf16", action="store_true", help="skip torch bf16 (emulated, slow, on CPUs without bf16)")
    args = ap.parse_args()
    corpus = load_corpus(None)
    passages = corpus[: args.passages]
    examples = load_qa(args.top20) if args.top20 else None
    questions = [ex.question for ex in (examples or load_qa(None))][: args.queries]
    encoder = DualEncoder.from_pretrained()
    rows: dict[str, dict] = {}
    runs = [("dpr-rag torch fp32", "fp32", "torch"), ("dpr-rag ONNX Runtime fp32", "fp32", "onnx")]
    runs += [("dpr-rag ONNX Runtime int8", "int8", "onnx")]
    if not args.skip_bf16:
        runs.insert(1, ("dpr-rag torch bf16", "bf16", "torch"))
    for name, precision, backend in runs:
        rows[name] = timed(encoder, passages, questions, precision, backend)
        print(name, {k: round(v, 1) for k, v in rows[name].items() if k != "vectors"}, flush=True)
    reference = rows["dpr-rag torch fp32"]["vectors"]
    for row in rows.values():
        vectors = row.pop("vectors")
        cos = (vectors * reference).sum(1) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1))
        row["min_cosine_to_torch_fp32"] = round(float(cos.min()), 5)
    if args.st_python:
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(tmp) / "minilm"
            subprocess.run(["cp", "-r", default_encoder_path(), str(model_dir)], check=True)
            data = Path(tmp) / "data.json"
            # sentence-transformers encodes one string: give it DPR's "title [SEP] text" as one, the same token count.
            data.write_text(json.dumps({"passages": [f"{p.title} [SEP] {p.text}" for p in passages], "queries": questions}))
            out = Path(tmp) / "peer.json"
            subprocess.run([args.st_python, "-c", PEER, str(model_dir), str(data), str(out)], check=True)
            rows.update(json.loads(out.read_text()))
    base = rows.get("sentence-transformers torch") or rows["dpr-rag torch fp32"]
    for row in rows.values():
        row["passages_ratio_vs_st_torch"] = round(row["passages_per_s"] / base["passages_per_s"], 2)
        row["query_speedup_vs_st_torch"] = round(base["query_p50_ms"] / row["query_p50_ms"], 2)
    if examples is not None:
        os.environ["DPR_RAG_ENCODER_BACKEND"] = "torch"
        rows["dpr-rag torch fp32"]["nq_top20"] = top20(encoder, corpus, examples, "fp32")
        os.environ["DPR_RAG_ENCODER_BACKEND"] = "onnx"
        rows["dpr-rag ONNX Runtime int8"]["nq_top20"] = top20(encoder, corpus, examples, "int8")
    rounded = {name: {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()} for name, row in rows.items()}
    result = {"machine": machine(), "threads": __import__("torch").get_num_threads(), "fast_bf16": cpu_has_fast_bf16()}
    result.update(passages=len(passages), queries=len(questions), rows=rounded)
    print(json.dumps(result, indent=2))
    write_result("encode_backends", result)


if __name__ == "__main__":
    main()
