"""`python -m dpr_rag.index`: build the BM25 and dense indexes of a corpus, into the cache or a folder.

Large corpora can be encoded in parallel, one shard per machine or GPU, then merged:

    python -m dpr_rag.index --corpus psgs.tsv --num-shards 4 --shard 0 --shards /data/emb   # ... --shard 3
    python -m dpr_rag.index --corpus psgs.tsv --merge --shards /data/emb --out /data/index
"""
from __future__ import annotations

import argparse
import time

from .cli_common import add_corpus_args, index_params, run_cli
from .errors import ConfigError
from .searcher import Searcher, bm25_index, dense_index, save_index_folder
from .shards import encode_shard, merge_shards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpr_rag.index", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_args(parser)
    parser.add_argument("--out", help="write a self-contained index folder here (for search --index); default: the cache only")
    parser.add_argument("--batch-size", type=int, default=64, help="passages per encoder batch")
    parser.add_argument("--bm25-only", action="store_true", help="skip the dense index (no encoding)")
    sharding = parser.add_argument_group("sharded encoding")
    sharding.add_argument("--shard", type=int, help="encode only shard I (0-based) of --num-shards into --shards (float16 .npy)")
    sharding.add_argument("--num-shards", type=int, default=1, help="number of shards the corpus is split into")
    sharding.add_argument("--shards", help="folder of shard embeddings (written by --shard, read by --merge)")
    sharding.add_argument("--merge", action="store_true", help="build the index folder --out from every shard in --shards")
    args = parser.parse_args(argv)
    if (args.shard is not None or args.merge) and not args.shards:
        raise ConfigError("--shard and --merge need --shards DIR (where shard embeddings live)")
    if args.merge and not args.out:
        raise ConfigError("--merge needs --out DIR (the index folder to write)")
    if args.shard is not None and args.merge:
        raise ConfigError("use --shard (encode one shard) or --merge (combine them), not both")

    searcher = Searcher.open(args.corpus, model=args.model, index_kind=args.index_type, use_cache=not args.no_cache,
                             precision=args.precision, index_params=index_params(args))
    passages = searcher.passages
    print(f"corpus: {len(passages):,} passages")
    if args.shard is not None:
        t0 = time.perf_counter()
        path = encode_shard(searcher.encoder, passages, args.shards, args.shard, args.num_shards,
                            batch_size=args.batch_size, precision=args.precision)
        print(f"shard {args.shard} of {args.num_shards}: {path} ({time.perf_counter() - t0:.1f} s)")
        return 0

    t0 = time.perf_counter()
    bm25 = bm25_index(passages, use_cache=searcher.use_cache)
    print(f"bm25 index: {time.perf_counter() - t0:.1f} s")
    dense, fingerprint = None, None
    if args.merge:
        t0 = time.perf_counter()
        dense, fingerprint = merge_shards(args.shards, passages, args.index_type, **index_params(args))
        print(f"dense index ({args.index_type}, {dense.dim}-d, {len(dense):,} vectors) merged from shards: {time.perf_counter() - t0:.1f} s")
    elif not args.bm25_only:
        t0 = time.perf_counter()
        dense = dense_index(passages, searcher.encoder, args.index_type, use_cache=searcher.use_cache, batch_size=args.batch_size,
                            precision=args.precision, **index_params(args))
        fingerprint = searcher.encoder.passage_fingerprint()
        print(f"dense index ({args.index_type}, {searcher.encoder.dim}-d, {len(dense):,} vectors): {time.perf_counter() - t0:.1f} s")
    if args.out:
        save_index_folder(args.out, passages, bm25, dense, model=args.model, passage_fingerprint=fingerprint)
        print(f"saved index folder: {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
