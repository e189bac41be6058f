"""EM / F1 and paired bootstrap CIs of `bench/reader_gpu.py`'s held-out answers (computed on the CPU, from the file).

    python bench/reader_report.py OUT/heldout_predictions.jsonl --corpus runs/reader-data/corpus.jsonl [--out FILE.md]

Over all questions and over the answerable ones (an answer string somewhere in the corpus, the rule `eval.run`
uses); every trained system is compared with each base-model system and with the trained closed-book, 1,000 paired
resamples of the questions (`eval.bootstrap`).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from dpr_rag.data.passages import load_jsonl
from dpr_rag.matching import CorpusAnswerIndex, exact_match, token_f1
from eval.bootstrap import paired_bootstrap


def load_systems(path: Path) -> dict[str, list[dict]]:
    systems: dict[str, list[dict]] = defaultdict(list)
    for line in path.open(encoding="utf-8"):
        row = json.loads(line)
        systems[row["system"]].append(row)
    questions = {name: [r["question"] for r in rows] for name, rows in systems.items()}
    first = next(iter(questions.values()))
    for name, qs in questions.items():
        if qs != first:
            raise SystemExit(f"{name} answers other questions than the first system: not paired")
    return systems


def ci_text(a: list[float], b: list[float]) -> str:
    ci = paired_bootstrap(a, b)
    return f"{100 * ci.difference:+.1f} [{100 * ci.low:+.1f}, {100 * ci.high:+.1f}]" + (" *" if ci.excludes_zero else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--out")
    args = parser.parse_args()
    systems = load_systems(Path(args.predictions))
    first = next(iter(systems.values()))
    index = CorpusAnswerIndex([p.text for p in load_jsonl(args.corpus)])
    answerable = [index.contains(r["answers"], "string") for r in first]
    n, n_ans = len(first), sum(answerable)
    em = {s: [float(exact_match(r["prediction"], r["answers"])) for r in rows] for s, rows in systems.items()}
    f1 = {s: [token_f1(r["prediction"], r["answers"]) for r in rows] for s, rows in systems.items()}

    def mean(xs: list[float], only: list[bool] | None = None) -> float:
        picked = [x for x, keep in zip(xs, only or [True] * len(xs), strict=True) if keep]
        return 100 * sum(picked) / max(len(picked), 1)

    lines = [
        f"{n} held-out questions ({n_ans} answerable from the corpus)",
        "",
        f"| system | EM | F1 | EM ans. ({n_ans}) | F1 ans. |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {s} | {mean(em[s]):.1f} | {mean(f1[s]):.1f} | {mean(em[s], answerable):.1f} | {mean(f1[s], answerable):.1f} |"
        for s in systems
    ]
    lines += ["", "| paired bootstrap, 1,000 resamples (* excludes 0) | EM | F1 |", "|---|---|---|"]
    trained = [s for s in systems if "(trained)" in s and not s.startswith("closed-book")]
    baselines = [s for s in systems if "(base)" in s] + [s for s in systems if s.startswith("closed-book (trained)")]
    for t in trained:
        for b in baselines:
            lines.append(f"| {t} − {b} | {ci_text(em[t], em[b])} | {ci_text(f1[t], f1[b])} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
