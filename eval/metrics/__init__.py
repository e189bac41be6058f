"""The evaluation metrics, as local `evaluate` modules (the hub's cannot be fetched offline).

Each lives in a folder named after its script (`top_k_accuracy/top_k_accuracy.py`), which is what
`evaluate.load(folder)` expects; `load_metric(name)` loads one by path, kept in memory (no Arrow cache files).
"""

from __future__ import annotations

from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent
METRICS = ("top_k_accuracy", "squad_em_f1")


def load_metric(name: str):
    """Load one of `METRICS` with `evaluate.load` from its folder."""
    import evaluate  # heavy (datasets, pandas): imported only when a metric is needed

    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
    return evaluate.load(str(METRICS_DIR / name), keep_in_memory=True)
