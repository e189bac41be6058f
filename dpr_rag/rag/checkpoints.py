"""The folders a RAG training run writes, each replaced atomically (`storage.atomic_dir`):

    OUT/best/   the model with the best dev EM so far: a RAG folder (below) that `RagPipeline.open(rag=OUT)` loads
    OUT/last/   the latest model, a RAG folder too, plus what an exact `--resume` needs:
                optimizer.pt (AdamW state), rng.pt (CPU RNG state), trainer_state.json (step, best dev EM, config)

A RAG folder holds `generator/` (a LoRA adapter or a full model, see `Generator.save_pretrained`), `retriever/` when
the query encoder was trained (else the retriever it was trained with is used as it is), and `rag_config.json`
(mode, k, temperature, max_new_tokens). The .pt files are read with weights_only=True: a tampered file cannot run code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import ConfigError
from ..storage import atomic_dir, read_json, recover
from ..training.checkpoints import load_tensors
from .pipeline import RagPipeline
from .rag_folder import RAG_CONFIG

if TYPE_CHECKING:
    from .trainer import RagTrainConfig

STATE = "trainer_state.json"
MUST_MATCH_ON_RESUME = ("mode", "batch_size", "grad_accum", "epochs", "seed", "lora_rank", "train_query_encoder")


def write_rag_folder(folder: Path, pipeline: RagPipeline, mode: str, with_retriever: bool) -> None:
    """The generator (and the retriever when trained) and the settings they were trained with, into `folder`."""
    if with_retriever:
        pipeline.dense.encoder.save_pretrained(folder / "retriever")
    pipeline.generator.save_pretrained(folder / "generator")
    config = {"mode": mode, "k": pipeline.k, "temperature": pipeline.temperature, "max_new_tokens": pipeline.max_new_tokens}
    (folder / RAG_CONFIG).write_text(json.dumps(config, indent=2))


def save_best(out: Path, pipeline: RagPipeline, mode: str, with_retriever: bool) -> None:
    with atomic_dir(out / "best") as tmp:
        write_rag_folder(tmp, pipeline, mode, with_retriever)


def save_last(
    out: Path, pipeline: RagPipeline, mode: str, with_retriever: bool, optimizer: torch.optim.Optimizer, state: dict
) -> None:
    with atomic_dir(out / "last") as tmp:
        write_rag_folder(tmp, pipeline, mode, with_retriever)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save({"cpu": torch.get_rng_state()}, tmp / "rng.pt")
        (tmp / STATE).write_text(json.dumps(state, indent=2))


def load_last_state(out: Path, cfg: RagTrainConfig) -> dict:
    """OUT/last's trainer state, after checking that `cfg` may continue it."""
    recover(out / "last")
    path = out / "last" / STATE
    if not path.exists():
        raise ConfigError(f"cannot resume: {path} not found (train without --resume first)")
    state = read_json(path)
    for name in MUST_MATCH_ON_RESUME:
        if getattr(cfg, name) != state["config"][name]:
            raise ConfigError(
                f"cannot resume with a different {name} ({getattr(cfg, name)!r} vs {state['config'][name]!r} in the checkpoint)"
            )
    return state


def restore_optimizer_and_rng(out: Path, optimizer: torch.optim.Optimizer) -> None:
    optimizer.load_state_dict(load_tensors(out / "last" / "optimizer.pt"))
    torch.set_rng_state(load_tensors(out / "last" / "rng.pt")["cpu"])
