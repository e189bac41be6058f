"""What every benchmark records next to its figures: the machine, the date, and where the JSON goes."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} cores, {gpu}; "
        f"Python {platform.python_version()}, torch {torch.__version__}; {time.strftime('%Y-%m-%d')}"
    )


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {path}")
    return path


# The shared NQ-open questions, in the `shared/` folder that sits beside a checkout (not part of the project).
SHARED_NQ = Path(__file__).resolve().parents[2] / "shared" / "data" / "nq-open-efficientqa-dev.jsonl"
