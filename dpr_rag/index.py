"""`python -m dpr_rag.index`: build the BM25 and dense indexes of a corpus, into the cache or a folder."""
from __future__ import annotations

import argparse
import time

from .cli_common import add_corpus_args, run_cli
from .searcher import Searcher, bm25_index, dense_index, save_index_folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpr_rag.index", description=__doc__)
    add_corpus_args(parser)
    parser.add_argument("--out", help="write a self-contained index folder here (for search --index); default: the cache only")
    parser.add_argument("--batch-size", type=int, default=64, help="passages per encoder batch")
    parser.add_argument("--bm25-only", action="store_true", help="skip the dense index (no encoding)")
    args = parser.parse_args(argv)

    searcher = Searcher.open(args.corpus, model=args.model, index_kind=args.index_type, use_cache=not args.no_cache)
    passages = searcher.passages
    print(f"corpus: {len(passages):,} passages")
    t0 = time.perf_counter()
    bm25 = bm25_index(passages, use_cache=searcher.use_cache)
    print(f"bm25 index: {time.perf_counter() - t0:.1f} s")
    dense = None
    if not args.bm25_only:
        t0 = time.perf_counter()
        dense = dense_index(passages, searcher.encoder, args.index_type, use_cache=searcher.use_cache, batch_size=args.batch_size)
        print(f"dense index ({args.index_type}, {searcher.encoder.dim}-d, {len(dense):,} vectors): {time.perf_counter() - t0:.1f} s")
    if args.out:
        save_index_folder(args.out, passages, bm25, dense, model=args.model,
                          passage_fingerprint=searcher.encoder.passage_fingerprint() if dense is not None else None)
        print(f"saved index folder: {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
