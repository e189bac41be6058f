"""`python -m eval.compare`: compare answer rows of separate `eval.run` reports on the same questions, with paired
bootstrap CIs, so a reader trained later is compared with baselines answered earlier without answering them again.

    python -m eval.compare runs/base:closed-book runs/base:standard runs/trained:standard [--out FILE.md]

Each system is REPORT_FOLDER:ROW, ROW being a row of that report's answers ('standard', 'token (base)', ...). The
reports must hold the same questions in the same order (checked, by id and question). Prints (and with --out writes,
atomically) EM and F1 over all questions and over the answerable subset, seconds per answer, and the paired
bootstrap CI of every later system minus every earlier one.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from dpr_rag.cli_common import run_cli
from dpr_rag.errors import ConfigError
from dpr_rag.storage import atomic_file

from .bootstrap import DEFAULT_SAMPLES, paired_bootstrap


@dataclass
class AnswerRow:
    """One system's per-question answers, read from a report folder."""

    label: str
    keys: list[tuple[str, str]]  # (id, question) per question, to check that two rows answer the same questions
    em: list[float]
    f1: list[float]
    answerable: list[bool]
    seconds_per_answer: float | None

    @classmethod
    def load(cls, spec: str) -> AnswerRow:
        folder, sep, row = spec.rpartition(":")
        if not sep or not folder or not row:
            raise ConfigError(f"{spec!r}: give a system as REPORT_FOLDER:ROW (e.g. runs/base:standard)")
        path = Path(folder) / "per_question.jsonl"
        if not path.is_file():
            raise ConfigError(f"{path}: not found (an eval.run --generate report folder holds it)")
        keys, em, f1, answerable = [], [], [], []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            record = json.loads(line)
            made = record.get("predictions", {})
            if row not in made:
                raise ConfigError(f"{path}, line {n}: no answers of row {row!r} (the rows there: {', '.join(made) or 'none'})")
            keys.append((str(record["id"]), record["question"]))
            em.append(float(made[row]["em"]))
            f1.append(float(made[row]["f1"]))
            answerable.append(bool(record["answerable"]))
        report = json.loads((Path(folder) / "report.json").read_text(encoding="utf-8"))
        seconds = report.get("seconds_per_answer", {}).get(row)
        return cls(f"{row} [{Path(folder).name}]", keys, em, f1, answerable, seconds)


def _mean(values: list[float], keep: list[bool] | None = None) -> float:
    chosen = [v for v, k in zip(values, keep or [True] * len(values), strict=True) if k]
    return 100.0 * sum(chosen) / len(chosen) if chosen else float("nan")


def compare(rows: list[AnswerRow], samples: int = DEFAULT_SAMPLES, seed: int = 0) -> str:
    """The comparison as markdown: a score table, then the CI of each later row minus each earlier one."""
    if len(rows) < 2:
        raise ConfigError("give at least two systems to compare")
    for row in rows[1:]:
        if row.keys != rows[0].keys:
            raise ConfigError(f"{row.label} and {rows[0].label} do not answer the same questions in the same order")
    n, n_answerable = len(rows[0].keys), sum(rows[0].answerable)
    lines = [
        f"{n} questions ({n_answerable} answerable from the corpus)",
        "",
        "| system | EM | F1 | EM (answerable) | F1 (answerable) | s/answer |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        seconds = f"{r.seconds_per_answer:.2f}" if r.seconds_per_answer is not None else "-"
        cells = [_mean(r.em), _mean(r.f1), _mean(r.em, r.answerable), _mean(r.f1, r.answerable)]
        lines.append(f"| {r.label} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {seconds} |")
    lines += ["", "| difference | metric | Δ | 95% CI | excludes 0 |", "|---|---|---:|---|---|"]
    for b, a in itertools.combinations(rows, 2):
        for metric in ("em", "f1"):
            ci = paired_bootstrap(getattr(a, metric), getattr(b, metric), samples, seed=seed)
            lines.append(
                f"| {a.label} − {b.label} | {metric.upper()} | {100 * ci.difference:+.1f} | "
                f"[{100 * ci.low:+.1f}, {100 * ci.high:+.1f}] | {'yes' if ci.excludes_zero else 'no'} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval.compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("systems", nargs="+", help="REPORT_FOLDER:ROW, two or more")
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_SAMPLES, help="paired bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the comparison to this markdown file (never over an existing one)")
    args = parser.parse_args(argv)
    if args.out and Path(args.out).exists():
        raise ConfigError(f"{args.out}: exists; choose another --out (a report is never overwritten)")
    text = compare([AnswerRow.load(s) for s in args.systems], args.bootstrap, args.seed)
    print(text, end="")
    if args.out:
        with atomic_file(args.out) as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    run_cli(main)
