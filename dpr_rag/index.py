"""`python -m dpr_rag.index`: build the BM25 and dense indexes of a corpus, into the cache or a folder.

Large corpora are encoded in parallel under torchrun, one shard per process (GPU or machine), then merged by
rank 0; re-running skips the shards already written:

    torchrun --nnodes 2 --nproc_per_node 8 ... -m dpr_rag.index --corpus psgs.tsv --shards /data/emb --out /data/index

or by hand, one shard per job, then one merge:

    python -m dpr_rag.index --corpus psgs.tsv --num-shards 4 --shard 0 --shards /data/emb   # ... --shard 3
    python -m dpr_rag.index --corpus psgs.tsv --merge --shards /data/emb --out /data/index

An index folder changes without a rebuild: `--add FILE` encodes only the new passages, `--delete ID,ID` encodes
nothing; both swap the new version in atomically (a killed change leaves the old index serving):

    python -m dpr_rag.index --index /data/index --add new_passages.jsonl
    python -m dpr_rag.index --index /data/index --delete 17,42
"""

from __future__ import annotations

import argparse

from .cli_common import add_corpus_args, index_params, run_cli
from .data.passages import load_corpus
from .errors import ConfigError
from .retrieval.index_update import add_passages, delete_passages
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
    change = parser.add_argument_group("changing an index folder (no rebuild)")
    change.add_argument("--index", help="the index folder to change (written by --out)")
    change.add_argument("--add", help="a passage file (TSV or JSONL) to add: only these passages are encoded")
    change.add_argument("--delete", help="comma-separated passage ids to delete")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.add or args.delete or args.index:
        return change_index(args)
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


def change_index(args: argparse.Namespace) -> int:
    if not args.index or bool(args.add) == bool(args.delete):
        raise ConfigError("changing an index takes --index DIR and one of --add FILE or --delete ID[,ID...]")
    report = lambda line: print(line, flush=True)  # noqa: E731
    if args.add:
        change = add_passages(args.index, load_corpus(args.add), report)
    else:
        change = delete_passages(args.index, [i.strip() for i in args.delete.split(",") if i.strip()], report)
    print(f"{args.index}: +{change.added:,} -{change.deleted:,} passages, {change.n_passages:,} now")
    return 0


if __name__ == "__main__":
    run_cli(main)
