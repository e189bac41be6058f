"""Where dpr-rag keeps what it builds: the cache folder (indexes, the converted default generator, app data)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$DPR_RAG_CACHE`, default `~/.cache/dpr_rag`. Read on every call, so tests and apps can move it at run time."""
    return Path(os.environ.get("DPR_RAG_CACHE") or Path.home() / ".cache" / "dpr_rag")
