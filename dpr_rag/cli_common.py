"""Argument helpers shared by the command-line drivers, so every CLI spells the same option the same way."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .errors import DprRagError
from .retrieval.encoder import PRECISIONS
from .retrieval.faiss_index import KINDS


def add_corpus_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--corpus",
        help="passage file: DPR .tsv (id, text, title) or .jsonl {id, title, text}; default: the embedded Wikipedia summaries",
    )
    parser.add_argument(
        "--model",
        help="encoder: a Hugging Face id or folder, or a dual encoder saved by dpr_rag.train; "
        "default: all-MiniLM-L6-v2 with the shipped question adapter (dpr_rag/retrieval/shipped); "
        "all-MiniLM-L6-v2: the untrained base",
    )
    parser.add_argument("--index-type", choices=KINDS, default="flat", help="FAISS index type (default: exact flat)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="passage encoding on CPU: fp32 (ONNX Runtime where installed, else torch), bf16 (torch; 2-3x faster on "
        "CPUs with AMX/AVX512-BF16), int8 (ONNX Runtime, quantised); default auto: bf16 where fast, else fp32",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="do not read or write the index cache ($DPR_RAG_CACHE, default ~/.cache/dpr_rag)"
    )
    tuning = parser.add_argument_group("FAISS index parameters (defaults: docs/scale.md)")
    tuning.add_argument("--hnsw-m", type=int, help="hnsw: links per node (default 32)")
    tuning.add_argument("--ef-search", type=int, help="hnsw: candidates explored per query (default 128; more = higher recall)")
    tuning.add_argument("--nlist", type=int, help="ivfpq: inverted lists (default 4*sqrt(passages))")
    tuning.add_argument("--pq-m", type=int, help="ivfpq: bytes per vector code, must divide the dimension (default dim/4)")
    tuning.add_argument("--nprobe", type=int, help="ivfpq: lists searched per query (default 16; more = higher recall)")
    tuning.add_argument(
        "--exact-candidates",
        dest="candidates",
        type=int,
        help="ivfpq-exact: IVF-PQ hits rescored exactly from disk per query (default 256)",
    )


def add_rerank_args(parser: argparse.ArgumentParser, what: str = "rerank each retriever's top hits") -> None:
    from .retrieval.rerank import DEFAULT_CANDIDATES, FUSIONS

    parser.add_argument(
        "--rerank", help=f"a cross-encoder folder or hub id (python -m dpr_rag.train_reranker), or upr (zero-shot): {what}"
    )
    parser.add_argument(
        "--rerank-candidates",
        type=int,
        default=DEFAULT_CANDIDATES,
        help=f"first-stage hits the reranker rescores (default {DEFAULT_CANDIDATES})",
    )
    parser.add_argument(
        "--rerank-fusion",
        choices=FUSIONS,
        default="replace",
        help="replace: the reranker's score alone (default); sum: first-stage score / τ + the reranker's score",
    )


def index_params(args: argparse.Namespace) -> dict:
    """The FAISS parameters given on the command line (the rest keep their defaults)."""
    names = ("hnsw_m", "ef_search", "nlist", "pq_m", "nprobe", "candidates")
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """Run a CLI main; the project's own errors print as one clear line and exit 2 instead of a traceback."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-tensor "Loading weights" bars drown the CLI's own output
    try:
        sys.exit(main(argv))
    except DprRagError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
