"""A training run's log: one JSON record a line (steps and evaluations), kept in memory and handed to a callback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ..storage import atomic_file


def append_record(log: Path, history: list[dict], record: dict, callback: Callable[[dict], None] | None = None) -> None:
    """Keep `record` in `history`, append it to the log file and give it to `callback`."""
    history.append(record)
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    if callback:
        callback(record)


def start_log(log: Path, resumed_step: int | None) -> list[dict]:
    """The history a run starts with: none for a new run (the log file emptied); for a run resumed from a checkpoint at
    `resumed_step`, the log's records up to it (a log written past the checkpoint is cut back, so every step is logged
    once). The log file is rewritten to hold just them."""
    lines = log.read_text(encoding="utf-8").splitlines() if resumed_step is not None and log.exists() else []
    history = [r for r in map(json.loads, filter(None, lines)) if r["step"] <= (resumed_step or 0)]
    write_log(log, history)
    return history


def write_log(log: Path, history: list[dict]) -> None:
    with atomic_file(log) as f:
        f.writelines(json.dumps(r) + "\n" for r in history)
