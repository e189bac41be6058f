"""Checkpoints of a dual-encoder training run: OUT/last holds everything an exact resume needs.

    last/model/              the dual encoder (DualEncoder.save_pretrained)
    last/optimizer.pt        the AdamW state
    last/scheduler.pt        the learning-rate schedule
    last/rng.pt              the CPU RNG state (dropout, random negatives)
    last/trainer_state.json  step, best dev accuracy and the TrainConfig (as a dict) of the run

The folder is replaced atomically (`storage.atomic_dir`): a run killed while writing leaves the previous checkpoint,
which `recover` puts back before a resume reads it. The .pt files are read with weights_only=True: a tampered file
cannot run code.
"""

from __future__ import annotations

import json
from pathlib import Path
from pickle import UnpicklingError  # only the exception type: nothing here unpickles
from typing import TYPE_CHECKING, Protocol

import torch

from ..errors import ConfigError, DataFormatError
from ..retrieval.encoder import DualEncoder
from ..storage import atomic_dir, read_json, recover

if TYPE_CHECKING:
    from .trainer import TrainConfig

CHECKPOINT_STATE = "trainer_state.json"
MUST_MATCH_ON_RESUME = ("batch_size", "hard_negatives", "epochs", "seed")  # they fix the batches and the schedule


class SavesPretrained(Protocol):
    def save_pretrained(self, folder: Path) -> None: ...


def save_checkpoint(out: Path, encoder: SavesPretrained, optimizer: torch.optim.Optimizer, scheduler, state: dict) -> None:
    """Replace OUT/last with the current model (a dual encoder, a reranker: anything with `save_pretrained`), the
    optimizer, schedule, RNG state and `state` (JSON)."""
    with atomic_dir(out / "last") as tmp:
        encoder.save_pretrained(tmp / "model")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save({"cpu": torch.get_rng_state()}, tmp / "rng.pt")
        (tmp / CHECKPOINT_STATE).write_text(json.dumps(state, indent=2))


def load_tensors(path: Path) -> dict:
    """A checkpoint's optimizer/scheduler/RNG state: tensors and plain containers only (weights_only=True), so a
    tampered file cannot run code; anything else is reported as a bad checkpoint, not unpickled."""
    try:
        return torch.load(path, weights_only=True)
    except (UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as e:
        raise DataFormatError(f"{path}: not a loadable checkpoint file ({str(e).splitlines()[0][:200]})") from e


def load_checkpoint(out: Path, cfg: TrainConfig) -> tuple[DualEncoder, dict]:
    """The encoder and trainer state of OUT/last, after checking that `cfg` may continue it."""
    recover(out / "last")
    state_file = out / "last" / CHECKPOINT_STATE
    if not state_file.exists():
        raise ConfigError(f"cannot resume: {state_file} not found (train without --resume first)")
    state = read_json(state_file)
    if cfg.model is not None and cfg.model != state["config"]["model"]:
        trained_from = state["config"]["model"] or "the default encoder"
        raise ConfigError(f"cannot resume: {out} was trained from {trained_from!r}, not {cfg.model!r}")
    for name in MUST_MATCH_ON_RESUME:
        if getattr(cfg, name) != state["config"][name]:
            raise ConfigError(
                f"cannot resume with a different {name} ({getattr(cfg, name)} vs {state['config'][name]} in the checkpoint)"
            )
    return DualEncoder.from_pretrained(out / "last" / "model"), state


def restore_training_state(out: Path, optimizer: torch.optim.Optimizer, scheduler) -> None:
    """Load OUT/last's optimizer and schedule state into `optimizer` and `scheduler`, and its RNG state into torch."""
    optimizer.load_state_dict(load_tensors(out / "last" / "optimizer.pt"))
    scheduler.load_state_dict(load_tensors(out / "last" / "scheduler.pt"))
    torch.set_rng_state(load_tensors(out / "last" / "rng.pt")["cpu"])
