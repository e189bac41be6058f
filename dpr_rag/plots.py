"""Pictures a user would rather look at than read: training curves (and, for eval, accuracy against k)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

from .storage import atomic_file  # noqa: E402


def plot_training_log(log_path: str | os.PathLike, out_png: str | os.PathLike, title: str = "DPR training") -> None:
    """Loss per step (with a moving average) and the dev metric per evaluation (`dev_top<k>` accuracy or `dev_em`),
    from a training log (JSON lines)."""
    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    steps = [r for r in records if "loss" in r]
    evals = [(r["step"], v, k) for r in records for k, v in r.items() if k.startswith(("dev_top", "dev_em")) and v is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    if steps:
        x, y = [r["step"] for r in steps], [r["loss"] for r in steps]
        ax.plot(x, y, color="tab:blue", alpha=0.35, label="loss")
        w = max(1, len(y) // 20)
        smooth = [sum(y[max(0, i - w + 1) : i + 1]) / len(y[max(0, i - w + 1) : i + 1]) for i in range(len(y))]
        ax.plot(x, smooth, color="tab:blue", label=f"loss (mean of {w})")
    ax.set_xlabel("step")
    ax.set_ylabel("NLL loss")
    if evals:
        ax2 = ax.twinx()
        key = evals[0][2]
        label = "dev EM" if key == "dev_em" else key.replace("dev_top", "dev top-") + " accuracy"
        ax2.plot([e[0] for e in evals], [e[1] for e in evals], "o-", color="tab:orange", label=label)
        ax2.set_ylabel(label + " (%)")
        ax2.legend(loc="upper right")
    if steps:
        ax.legend(loc="upper left")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_file(out_png, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def plot_topk(curves: dict[str, dict[int, float]], out_png: str | os.PathLike, title: str = "Top-k retrieval accuracy") -> None:
    """Accuracy (%) against k, one line per retriever (`{name: {k: accuracy}}`), k on a log axis."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    all_k = sorted({int(k) for curve in curves.values() for k in curve})
    for name, curve in curves.items():
        ks = sorted(curve, key=int)
        ax.plot([int(k) for k in ks], [curve[k] for k in ks], "o-", label=name)
    if len(all_k) > 1 and all_k[-1] / max(all_k[0], 1) >= 10:
        ax.set_xscale("log")
    if all_k:
        ax.set_xticks(all_k)
        ax.set_xticklabels([str(k) for k in all_k])
        ax.minorticks_off()
    ax.set_ylim(0, 100)
    ax.set_xlabel("k (passages retrieved)")
    ax.set_ylabel("top-k accuracy (%)")
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_file(out_png, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
