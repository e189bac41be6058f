"""`python -m dpr_rag.prepare`: do ahead of the first run what the defaults would otherwise do on first use (`bin/setup`
runs it): build the default corpus's BM25 and dense indexes into the cache (the dense one from the shipped passage
embeddings: seconds, not the ~12 minutes of encoding), export the default query encoder and its untrained base
(offered beside it in the app) to ONNX Runtime (queries run there, ~4x faster), and convert the embedded generator
(Gemma 3 270M, GGUF to safetensors: ~40 s on two cores). Each step is skipped when the cache holds its result already."""

from __future__ import annotations

import argparse
import time

from .cli_common import run_cli
from .rag.default_generator import default_generator_path
from .retrieval.encoder import DualEncoder
from .retrieval.indexing import IndexBuildConfig, build_index
from .retrieval.query_adapter import BASE_DEFAULT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpr_rag.prepare", description=__doc__)
    parser.add_argument("--no-index", action="store_true", help="skip the default corpus's indexes")
    parser.add_argument("--no-generator", action="store_true", help="skip converting the default generator")
    args = parser.parse_args(argv)
    if not args.no_index:
        t0 = time.perf_counter()
        build_index(IndexBuildConfig(), report=lambda line: print(f"  {line}", flush=True))
        for model in (None, BASE_DEFAULT):  # the shipped default and its base: each query tower is exported once
            DualEncoder.from_pretrained(model).encode_queries(["who painted the mona lisa"])
        print(f"default corpus indexed: {time.perf_counter() - t0:.1f} s", flush=True)
    if not args.no_generator:
        t0 = time.perf_counter()
        path = default_generator_path()
        print(f"default generator ready in {path}: {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
