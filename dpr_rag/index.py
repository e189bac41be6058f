"""`python -m dpr_rag.index`: build the BM25 and dense indexes of a corpus, into the cache or a folder.

Large corpora are encoded in parallel under torchrun, one shard per process (GPU or machine), then merged by
rank 0; re-running skips the shards already written:

    torchrun --nnodes 2 --nproc_per_node 8 ... -m dpr_rag.index --corpus psgs.tsv --shards /data/emb --out /data/index

or by hand, one shard per job, then one merge:

    python -m dpr_rag.index --corpus psgs.tsv --num-shards 4 --shard 0 --shards /data/emb   # ... --shard 3
    python -m dpr_rag.index --corpus psgs.tsv --merge --shards /data/emb --out /data/index
"""

from __future__ import annotations

import argparse

from .cli_common import add_corpus_args, index_params, run_cli
from .retrieval.indexing import IndexBuildConfig, build_index


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dpr_rag.index", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_corpus_args(parser)
    parser.add_argument("--out", help="write a self-contained index folder here (for search --index); default: the cache only")
    parser.add_argument("--batch-size", type=int, default=64, help="passages per encoder batch")
    parser.add_argument("--bm25-only", action="store_true", help="skip the dense index (no encoding)")
    sharding = parser.add_argument_group("sharded encoding")
    sharding.add_argument("--shard", type=int, help="encode only shard I (0-based) of --num-shards into --shards (float16 .npy)")
    sharding.add_argument(
        "--num-shards", type=int, help="number of shards the corpus is split into (default: 1 with --shard, else one per process)"
    )
    sharding.add_argument(
        "--shards",
        help="folder of shard embeddings (written by --shard, read by --merge); with --out alone: every torchrun process "
        "encodes its shards into it, then rank 0 merges them into --out",
    )
    sharding.add_argument("--merge", action="store_true", help="build the index folder --out from every shard in --shards")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = IndexBuildConfig(
        corpus=args.corpus,
        model=args.model,
        index_type=args.index_type,
        precision=args.precision,
        index_params=index_params(args),
        use_cache=not args.no_cache,
        out=args.out,
        batch_size=args.batch_size,
        bm25_only=args.bm25_only,
        shard=args.shard,
        num_shards=args.num_shards,
        shards=args.shards,
        merge=args.merge,
    )
    build_index(config, report=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    run_cli(main)
