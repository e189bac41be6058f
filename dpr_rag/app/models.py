"""The models the app offers in its lists: the starting encoder ("default"), its untrained base beside it when the
default is the shipped (trained) one, and every model trained in the app or by `python -m dpr_rag.train` into its
runs folder (found again there after a restart). Each has an id the model dropdowns use.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..retrieval.query_adapter import BASE_DEFAULT

DEFAULT_MODEL = "default"
BASE_MODEL = "base"  # the untrained all-MiniLM-L6-v2 (same passage tower as the default: its index is the default's)


@dataclass
class ModelEntry:
    id: str
    label: str
    path: str | None  # None: the embedded default encoder
    created: float = field(default_factory=time.time)


def best_dev_accuracy(run_dir: Path) -> float | None:
    """A run's best dev top-20: from DPR's last/trainer_state.json, or the query-side log's dev records."""
    try:
        state_file = run_dir / "last" / "trainer_state.json"
        if state_file.exists():
            best = json.loads(state_file.read_text()).get("best_dev_accuracy")
            return float(best) if isinstance(best, (int, float)) else None
        records = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError, AttributeError):
        return None  # a label without a figure rather than a model missing from the lists
    devs = [v for r in records if isinstance(r, dict) for k, v in r.items() if k.startswith("dev_top")]
    return max((float(v) for v in devs if isinstance(v, (int, float))), default=None)


class ModelRegistry:
    """The selectable models. `entries` is replaced whole on every change (readers need no lock); `version` counts
    the changes, so the page knows when to refresh its lists."""

    def __init__(self, default_model: str | None, runs_dir: Path):
        self._lock = threading.Lock()
        self.entries: dict[str, ModelEntry] = {}
        self.version = 0
        default_label = (
            "all-MiniLM-L6-v2 + NQ question adapter (default)"
            if default_model is None
            else f"{Path(default_model).name} (starting model)"
        )
        self._add(ModelEntry(DEFAULT_MODEL, default_label, default_model, created=0.0))
        if default_model is None:  # the shipped default is trained: offer its untrained base beside it, to compare
            self._add(ModelEntry(BASE_MODEL, "all-MiniLM-L6-v2 (untrained base)", BASE_DEFAULT, created=0.0))
        found = [*runs_dir.glob("*/best/dpr_rag_encoder.json"), *runs_dir.glob("*/best/dpr_rag_query_adapter.json")]
        for run in sorted(found, key=lambda p: p.stat().st_mtime):  # two towers or a question adapter
            self.register_run(run.parent.parent)

    def _add(self, entry: ModelEntry) -> None:
        with self._lock:
            self.entries = {**self.entries, entry.id: entry}
            self.version += 1

    def register_run(self, run_dir: Path) -> ModelEntry | None:
        """Make a training output folder selectable (its best/ checkpoint), labelled with its dev accuracy."""
        if not (run_dir / "best").is_dir():
            return None
        best = best_dev_accuracy(run_dir)
        label = f"{run_dir.name} (trained here" + (f", dev top-20 {best:.1f}%" if best is not None else "") + ")"
        entry = ModelEntry(f"run:{run_dir.name}", label, str(run_dir), created=run_dir.stat().st_mtime)
        self._add(entry)
        return entry

    def get(self, model_id: str | None) -> ModelEntry:
        entry = self.entries.get(model_id or DEFAULT_MODEL)
        if entry is None:
            raise ConfigError(f"unknown model {model_id!r}; choose one of the list")
        return entry

    def choices(self) -> list[tuple[str, str]]:
        return [(m.label, m.id) for m in self.entries.values()]
