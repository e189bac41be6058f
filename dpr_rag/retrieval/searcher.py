"""Build, cache, save and open retrievers: the one entry point the CLI, the app and eval share.

Indexes are cached under `$DPR_RAG_CACHE` (default `~/.cache/dpr_rag`), keyed by what they depend on:
- `bm25/<corpus fingerprint>-<engine>-k1<k1>-b<b>/`
- `dense/<corpus fingerprint>-<passage encoder fingerprint>-<index kind>[-bf16]/`
so a second run with the same corpus, model and settings loads instead of re-encoding, and a changed
corpus or retrained model never picks up a stale index. Entries are written atomically.

A saved index folder (`python -m dpr_rag.index --out DIR`) has the same parts in one place:
`passages.jsonl`, `bm25/`, `dense/` and `manifest.json` (which model encoded it).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.passages import Passage, corpus_fingerprint, load_corpus, load_jsonl, save_jsonl
from ..errors import ConfigError, DataFormatError
from ..paths import cache_dir
from ..storage import atomic_dir, read_json
from .base import Retriever, SearchHit
from .bm25 import BM25Retriever
from .dense import DenseRetriever, encode_corpus
from .encoder import DualEncoder, cpu_has_fast_bf16, resolve_precision
from .faiss_index import SEARCH_PARAMS, DenseIndex, params_key
from .hybrid import DEFAULT_WEIGHT, HybridRetriever
from .prebuilt import shipped_embeddings
from .rerank import DEFAULT_CANDIDATES, RerankedRetriever, Reranker, load_reranker

RETRIEVERS = ("bm25", "dense", "hybrid")
RERANKED = "+rerank"  # "dense+rerank": the dense top candidates reordered by the searcher's cross-encoder
MANIFEST = "manifest.json"


def reranked(name: str) -> str:
    return name if name.endswith(RERANKED) else name + RERANKED


def check_retriever_names(names: list[str] | str) -> list[str]:
    names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    for n in names:
        if n.removesuffix(RERANKED) not in RETRIEVERS:
            choices = ", ".join(RETRIEVERS)
            raise ConfigError(f"unknown retriever {n!r}; choose from {choices} (each optionally with {RERANKED})")
    if not names:
        raise ConfigError("no retriever named")
    return names


def bm25_index(
    passages: list[Passage], k1: float = 0.9, b: float = 0.4, engine: str = "bm25s", use_cache: bool = True
) -> BM25Retriever:
    folder = cache_dir() / "bm25" / f"{corpus_fingerprint(passages)}-{engine}-k1{k1}-b{b}"
    if use_cache and (folder / "bm25.json").exists():
        return BM25Retriever.load(folder)
    retriever = BM25Retriever(passages, k1=k1, b=b, engine=engine)
    if use_cache:
        retriever.save(folder)
    return retriever


def dense_index(
    passages: list[Passage],
    encoder: DualEncoder,
    kind: str = "flat",
    use_cache: bool = True,
    batch_size: int = 64,
    show_progress: bool = True,
    progress=None,
    precision: str = "auto",
    **index_params,
) -> DenseIndex:
    """The FAISS index of this corpus under this passage encoder: from the cache, or encoded now and cached."""
    corpus_fp, encoder_fp = corpus_fingerprint(passages), encoder.passage_fingerprint()  # each hashes a lot: once
    precision = resolve_precision(precision)
    folder = dense_cache_folder(corpus_fp, encoder_fp, kind, precision, index_params)
    search = {k: index_params.pop(k) for k in SEARCH_PARAMS if k in index_params}
    if use_cache and (folder / "index.faiss").exists():
        index = DenseIndex.load(folder)
        if len(index) == len(passages):
            index.tune(**search)
            index.origin = "loaded from the cache"
            return index
    flat = dense_cache_folder(corpus_fp, encoder_fp, "flat", precision, {})
    if use_cache and kind != "flat" and (flat / "index.faiss").exists() and len(exact := DenseIndex.load(flat)) == len(passages):
        # The exact index of the same corpus and encoder holds the very vectors: build from them, no re-encoding.
        index = DenseIndex(encoder.dim, kind, **index_params)
        index.add(exact.reconstruct(np.arange(len(exact))))
        index.origin = "built from the cached flat index"
    elif precision != "int8" and (shipped := shipped_embeddings(corpus_fp, encoder_fp)) is not None:
        # The default corpus under the default encoder: its fp32 vectors (better than a bf16 encoding, and free).
        index = DenseIndex(encoder.dim, kind, **index_params)
        index.add(shipped)
        index.origin = "built from the shipped embeddings"
    else:
        index = encode_corpus(
            encoder,
            passages,
            kind,
            batch_size=batch_size,
            show_progress=show_progress,
            progress=progress,
            precision=precision,
            **index_params,
        )
    if use_cache:
        index.save(folder)  # with default search parameters: they are not part of the key
    index.tune(**search)
    return index


def dense_cache_folder(corpus_fp: str, encoder_fp: str, kind: str, precision: str, index_params: dict) -> Path:
    """Where `dense_index` caches the index of a corpus (its fingerprint) under a passage encoder (its fingerprint),
    kind, build parameters and precision."""
    precision = resolve_precision(precision)
    precision_key = "" if precision == "fp32" else f"-{precision}"
    return cache_dir() / "dense" / f"{corpus_fp}-{encoder_fp}-{kind}{params_key(index_params)}{precision_key}"


def save_index_folder(
    out: str | os.PathLike,
    passages: list[Passage],
    bm25: BM25Retriever,
    dense: DenseIndex | None,
    model: str | None,
    passage_fingerprint: str | None = None,
) -> None:
    """Write a self-contained index folder atomically (a failed build leaves any previous one intact)."""
    with atomic_dir(out) as tmp:
        save_jsonl(passages, tmp / "passages.jsonl")
        bm25.save(tmp / "bm25")
        if dense is not None:
            dense.save(tmp / "dense")
        manifest = {
            "model": str(Path(model).resolve()) if model and Path(model).exists() else model,  # usable from any folder
            "corpus_fingerprint": corpus_fingerprint(passages),
            "n_passages": len(passages),
            "dense": dense is not None,
            "index_kind": dense.kind if dense else None,
            "passage_encoder_fingerprint": passage_fingerprint,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))


@dataclass
class Searcher:
    """A corpus with its retrievers, built lazily: asking only for BM25 never encodes the corpus."""

    passages: list[Passage]
    model: str | None = None  # encoder id/folder; None = the embedded default
    index_kind: str = "flat"
    precision: str = "auto"  # of the passage encoding pass (see encoder.PRECISIONS)
    index_params: dict = field(default_factory=dict)  # DenseIndex parameters: hnsw_m, nlist, pq_m, ef_search, nprobe
    hybrid_fusion: str = "linear"
    hybrid_weight: float = DEFAULT_WEIGHT
    use_cache: bool = True
    show_progress: bool = True  # a tqdm bar while the corpus is encoded
    progress: Callable[[int, int], None] | None = None  # called (done, total) while the corpus is encoded
    index_folder: Path | None = None
    reranker: str | None = None  # a cross-encoder folder or hub id: what the "<name>+rerank" retrievers rerank with
    rerank_candidates: int = DEFAULT_CANDIDATES  # first-stage hits the cross-encoder rescores
    rerank_fusion: str = "replace"  # or "sum": first-stage score / τ + reranker score (rerank.FUSIONS)
    _retrievers: dict[str, Retriever] = field(default_factory=dict, repr=False)
    _encoder: DualEncoder | None = field(default=None, repr=False)
    _rerank_model: Reranker | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls, corpus: str | os.PathLike | None = None, model: str | None = None, index: str | os.PathLike | None = None, **kw
    ) -> Searcher:
        """Open the default corpus, a corpus file, or a saved index folder (`index`, which wins over `corpus`)."""
        if index is None:
            return cls(load_corpus(corpus), model=model, **kw)
        folder = Path(index)
        if not (folder / MANIFEST).exists():
            raise DataFormatError(f"{folder}: not an index folder ({MANIFEST} missing); build one with python -m dpr_rag.index")
        manifest = read_json(folder / MANIFEST)
        kw.setdefault("index_kind", manifest.get("index_kind") or "flat")
        return cls(load_jsonl(folder / "passages.jsonl"), model=model or manifest.get("model"), index_folder=folder, **kw)

    @property
    def encoder(self) -> DualEncoder:
        if self._encoder is None:
            self._encoder = DualEncoder.from_pretrained(self.model)
        return self._encoder

    @property
    def rerank_model(self) -> Reranker:
        """The model of the "+rerank" retrievers (`rerank.load_reranker(self.reranker)`), loaded on first use."""
        if self.reranker is None:
            raise ConfigError(
                f"a {RERANKED} retriever needs a reranker: --rerank FOLDER (python -m dpr_rag.train_reranker) or --rerank upr"
            )
        if self._rerank_model is None:
            self._rerank_model = load_reranker(self.reranker, bf16=cpu_has_fast_bf16())
        return self._rerank_model

    def retriever(self, name: str) -> Retriever:
        (name,) = check_retriever_names([name])
        if name not in self._retrievers:
            self._retrievers[name] = self._build(name)
        return self._retrievers[name]

    def _build(self, name: str) -> Retriever:
        if name.endswith(RERANKED):
            return RerankedRetriever(
                self.retriever(name.removesuffix(RERANKED)), self.rerank_model, self.rerank_candidates, self.rerank_fusion
            )
        if name == "bm25":
            if self.index_folder is not None:
                return BM25Retriever.load(self.index_folder / "bm25")
            return bm25_index(self.passages, use_cache=self.use_cache)
        if name == "dense":
            if self.index_folder is not None and (self.index_folder / "dense").exists():
                built_with = read_json(self.index_folder / MANIFEST).get("passage_encoder_fingerprint")
                if built_with and built_with != self.encoder.passage_fingerprint():
                    raise ConfigError(
                        f"{self.index_folder}: its dense index was built with another passage encoder than "
                        f"{self.model or 'the default encoder'}; rebuild it with python -m dpr_rag.index --model ..."
                    )
                index = DenseIndex.load(self.index_folder / "dense")
                index.tune(**{k: v for k, v in self.index_params.items() if k in SEARCH_PARAMS})
            else:
                index = dense_index(
                    self.passages,
                    self.encoder,
                    self.index_kind,
                    use_cache=self.use_cache,
                    show_progress=self.show_progress,
                    progress=self.progress,
                    precision=self.precision,
                    **self.index_params,
                )
            return DenseRetriever(self.encoder, index, self.passages)
        return HybridRetriever(self.bm25(), self.dense(), fusion=self.hybrid_fusion, weight=self.hybrid_weight)

    def bm25(self) -> BM25Retriever:
        retriever = self.retriever("bm25")
        assert isinstance(retriever, BM25Retriever)
        return retriever

    def dense(self) -> DenseRetriever:
        """The dense retriever: its index from the cache or a saved folder, or the corpus encoded now (with progress)."""
        retriever = self.retriever("dense")
        assert isinstance(retriever, DenseRetriever)
        return retriever

    def search(self, questions: list[str], k: int = 10, retriever: str = "dense") -> list[list[SearchHit]]:
        return self.retriever(retriever).search(questions, k)
