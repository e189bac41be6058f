"""A RAG folder: what RAG training writes and `RagPipeline.open(rag=...)` loads: `generator/` (a full model or a LoRA
adapter), `retriever/` when the query encoder was trained, and `rag_config.json` (mode, k, temperature,
max_new_tokens). A training run's folder holds two of them, `best/` and `last/`."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError
from ..storage import read_json

RAG_CONFIG = "rag_config.json"  # written by RAG training beside retriever/ and generator/


def rag_folder(path: str | os.PathLike) -> Path:
    """The RAG folder to load from `path`: a training run's best/ (or last/ if no dev EM chose one yet), or `path`
    itself when it holds generator/."""
    folder = Path(path)
    for candidate in (folder, folder / "best", folder / "last"):
        if (candidate / "generator").is_dir():
            return candidate
    raise ConfigError(
        f"{folder}: not a RAG training folder (no generator/, best/ or last/ in it); "
        "write one with python -m dpr_rag.train_rag --out DIR"
    )


def load_rag_config(folder) -> dict:
    """The settings a RAG training folder was trained with (mode, k, temperature), or {} for an older folder."""
    path = Path(folder) / RAG_CONFIG
    return read_json(path) if path.exists() else {}


def answer_mode(config: dict) -> str:
    """The mode a RAG folder's reader answers in by default: the one it was trained with (a `passage` reader, trained
    on one passage at a time, answers with RAG-Token over the top k)."""
    mode = config.get("mode", "token")
    return "token" if mode == "passage" else str(mode)
