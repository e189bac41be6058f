"""Building a corpus's indexes as one job (`python -m dpr_rag.index` is its command line): BM25 and the dense
index into the cache, optionally a self-contained index folder; or one shard of a big corpus's embeddings; or the
merge of all shards into one index folder.

    build_index(IndexBuildConfig(corpus="psgs.tsv", out="idx"))                     # BM25 + dense, saved to idx/
    build_index(IndexBuildConfig(corpus="psgs.tsv", shards="emb", shard=0, num_shards=4))  # one of 4 slices
    build_index(IndexBuildConfig(corpus="psgs.tsv", shards="emb", merge=True, out="idx"))  # all slices, one index
    build_index(IndexBuildConfig(corpus="psgs.tsv", shards="emb", out="idx"))  # under torchrun: every rank a slice,
                                                                              # a barrier, then rank 0 merges
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..config_checks import check_bool, check_choice, check_int, check_text
from ..errors import ConfigError
from ..storage import check_output_folder
from ..training.distributed import barrier, init_from_env, rank, world_size
from .encoder import PRECISIONS
from .faiss_index import KINDS, DenseIndex
from .searcher import MANIFEST, Searcher, bm25_index, dense_index, save_index_folder
from .shards import encode_shard, merge_shards

# Ranks wait at the barrier for the slowest shard: hours on a 21M-passage corpus, not torch's default 30 minutes.
BARRIER_TIMEOUT = timedelta(days=2)


@dataclass
class IndexBuildConfig:
    corpus: str | None = None  # passage file; None = the embedded Wikipedia summaries
    model: str | None = None  # encoder id or folder; None = the embedded all-MiniLM-L6-v2
    index_type: str = "flat"
    precision: str = "auto"
    index_params: dict[str, Any] = field(default_factory=dict)  # FAISS: hnsw_m, nlist, pq_m, ef_search, nprobe
    use_cache: bool = True
    out: str | None = None  # a self-contained index folder (for `search --index`); None = the cache only
    batch_size: int = 64
    bm25_only: bool = False
    shard: int | None = None  # encode only this shard (0-based) of num_shards into `shards`
    num_shards: int | None = None  # None: 1 with `shard`; one per process when `shards` and `out` are given alone
    shards: str | None = None  # folder of shard embeddings
    merge: bool = False  # build `out` from every shard in `shards`

    def __post_init__(self) -> None:
        check_text("corpus", self.corpus, optional=True)
        check_text("model", self.model, optional=True)
        check_choice("index_type", self.index_type, KINDS)
        check_choice("precision", self.precision, PRECISIONS)
        check_text("out", self.out, optional=True)
        check_text("shards", self.shards, optional=True)
        for name in ("use_cache", "bm25_only", "merge"):
            check_bool(name, getattr(self, name))
        check_int("batch_size", self.batch_size, 1, 4096)
        check_int("num_shards", self.num_shards, 1, 100_000, optional=True)
        check_int("shard", self.shard, 0, (self.num_shards or 1) - 1, optional=True)
        if (self.shard is not None or self.merge) and not self.shards:
            raise ConfigError("--shard and --merge need --shards DIR (where shard embeddings live)")
        if self.merge and not self.out:
            raise ConfigError("--merge needs --out DIR (the index folder to write)")
        if self.shard is not None and self.merge:
            raise ConfigError("use --shard (encode one shard) or --merge (combine them), not both")
        if self.shards and self.shard is None and not self.merge and not self.out:
            raise ConfigError(
                "--shards needs --shard I (encode one shard), --merge, or --out DIR (encode every shard, then merge)"
            )

    @property
    def encodes_all_shards(self) -> bool:
        """`--shards DIR --out INDEX` alone: every process (torchrun rank) encodes its shards, then rank 0 merges."""
        return self.shards is not None and self.shard is None and not self.merge


@dataclass
class IndexBuildResult:
    n_passages: int
    seconds: dict[str, float] = field(default_factory=dict)  # per stage: bm25, dense, shard
    dense: DenseIndex | None = None
    shard_path: Path | None = None
    out: Path | None = None


def build_index(config: IndexBuildConfig, report: Callable[[str], None] = lambda line: None) -> IndexBuildResult:
    """Build what `config` asks for; `report` receives one line per finished stage (the CLI prints them)."""
    if config.encodes_all_shards:
        return _build_on_all_ranks(config, report)
    if config.out is not None:
        check_output_folder(config.out, (MANIFEST,), "an index folder")
    searcher = Searcher.open(
        config.corpus,
        model=config.model,
        index_kind=config.index_type,
        use_cache=config.use_cache,
        precision=config.precision,
        index_params=dict(config.index_params),
    )
    passages = searcher.passages
    result = IndexBuildResult(len(passages))
    report(f"corpus: {len(passages):,} passages")
    if config.shard is not None:
        assert config.shards is not None  # checked by the config
        t0 = time.perf_counter()
        result.shard_path = encode_shard(
            searcher.encoder,
            passages,
            config.shards,
            config.shard,
            config.num_shards or 1,
            batch_size=config.batch_size,
            precision=config.precision,
        )
        result.seconds["shard"] = time.perf_counter() - t0
        report(f"shard {config.shard} of {config.num_shards or 1}: {result.shard_path} ({result.seconds['shard']:.1f} s)")
        return result

    t0 = time.perf_counter()
    bm25 = bm25_index(passages, use_cache=config.use_cache)
    result.seconds["bm25"] = time.perf_counter() - t0
    report(f"bm25 index: {result.seconds['bm25']:.1f} s")
    fingerprint = None
    t0 = time.perf_counter()
    if config.merge:
        assert config.shards is not None  # checked by the config
        result.dense, fingerprint = merge_shards(config.shards, passages, config.index_type, **config.index_params)
        how = "merged from shards"
    elif not config.bm25_only:
        result.dense = dense_index(
            passages,
            searcher.encoder,
            config.index_type,
            use_cache=config.use_cache,
            batch_size=config.batch_size,
            precision=config.precision,
            **config.index_params,
        )
        fingerprint, how = searcher.encoder.passage_fingerprint(), result.dense.origin
    if result.dense is not None:
        result.seconds["dense"] = time.perf_counter() - t0
        report(
            f"dense index ({config.index_type}, {result.dense.dim}-d, {len(result.dense):,} vectors, {how}): "
            f"{result.seconds['dense']:.1f} s"
        )
    if config.out:
        save_index_folder(config.out, passages, bm25, result.dense, model=config.model, passage_fingerprint=fingerprint)
        result.out = Path(config.out)
        report(f"saved index folder: {config.out}")
    return result


def _build_on_all_ranks(config: IndexBuildConfig, report: Callable[[str], None]) -> IndexBuildResult:
    """Rank r of W (torchrun's RANK and WORLD_SIZE; 0 of 1 without torchrun) encodes shards r, r+W, r+2W, ... of
    `num_shards` (default W); after a barrier, rank 0 merges them into `out`. Finished shards are skipped, so a
    re-run after a failure encodes only what is missing. The other ranks return once their shards are written."""
    assert config.out is not None  # checked by the config
    check_output_folder(config.out, (MANIFEST,), "an index folder")
    init_from_env(timeout=BARRIER_TIMEOUT)
    r, w = rank(), world_size()
    num_shards = config.num_shards or w
    result = IndexBuildResult(0)
    for shard in range(r, num_shards, w):
        result = build_index(replace(config, shard=shard, num_shards=num_shards, out=None), report)
    barrier()
    if r == 0:
        result = build_index(replace(config, merge=True, num_shards=num_shards), report)
    return result
