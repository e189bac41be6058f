"""What every benchmark records next to its figures: the machine, the date, and where the JSON goes."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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


def take_turns(items: Sequence[Any], methods: dict[str, Callable[[Any], Any]]) -> tuple[dict[str, float], dict[str, list]]:
    """Run every method on each item in turn, so that peers side by side meet the same moments of a machine whose speed
    drifts within minutes; returns each method's mean seconds an item and its outputs."""
    seconds = dict.fromkeys(methods, 0.0)
    outputs: dict[str, list] = {name: [] for name in methods}
    for item in items:
        for name, method in methods.items():
            t0 = time.perf_counter()
            outputs[name].append(method(item))
            seconds[name] += time.perf_counter() - t0
    return {name: total / max(len(items), 1) for name, total in seconds.items()}, outputs


def bench_questions(qa: str | None, limit: int) -> list[str]:
    """The first `limit` questions of a QA file, else of the embedded FanOutQA dev questions."""
    from dpr_rag.data.qa import load_fanoutqa, load_qa

    return [e.question for e in (load_qa(qa) if qa else load_fanoutqa())][:limit]
