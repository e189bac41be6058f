"""Writing an evaluation's results: report.json, report.md, per_question.jsonl and topk.png, into one folder.

`write_report(folder, report, per_question)` writes all four; `render_markdown(report)` is the Markdown alone.
The report dict is built by `eval.run.run_evaluation`; its schema (accuracies in percent, k keys as strings):

    {"n_questions": N, "n_answerable": M, "n_unanswerable": N - M,
     "retrieval": {"bm25": {"1": acc, "5": acc, ...}, ...},
     "answerable": {"n_questions": M, "retrieval": {...same, over the answerable subset...}, "qa": {...}},
     "qa": {"sequence": {"em": x, "f1": y}, ...},
     "comparisons": {"retrieval": [{"a", "b", "k", "difference", "low", "high", "excludes_zero", ...}],
                     "qa": [{"a", "b", "metric", "difference", "low", "high", "excludes_zero", ...}]},
     "queries_per_second": {"bm25": qps, ...}, "index_seconds": {"bm25": s, ...},
     "settings": {...}}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dpr_rag.plots import plot_topk

FILES = ("report.json", "report.md", "per_question.jsonl", "topk.png")


def write_report(folder: str | os.PathLike, report: dict, per_question: list[dict]) -> None:
    """Write the four outputs into `folder` (the caller makes it appear atomically)."""
    folder = Path(folder)
    (folder / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "report.md").write_text(render_markdown(report), encoding="utf-8")
    with open(folder / "per_question.jsonl", "w", encoding="utf-8") as f:
        for record in per_question:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    curves = {name: {int(k): acc for k, acc in accs.items()} for name, accs in report["retrieval"].items()}
    plot_topk(curves, folder / "topk.png", title=f"Top-k retrieval accuracy ({report['n_questions']:,} questions)")
    # The temporary folder and files are created private (mkdtemp/mkstemp); a report is meant to be read.
    folder.chmod(0o755)
    for name in FILES:
        (folder / name).chmod(0o644)


def _pct(x) -> str:
    return "–" if x is None else f"{x:.1f}"


def _qps(x) -> str:
    return "–" if x is None else f"{x:,.1f}"


def _ci_cells(c: dict) -> list[str]:
    """difference, [low, high], excludes 0 - in percentage points."""
    return [f"{c['difference']:+.1f}", f"[{c['low']:+.1f}, {c['high']:+.1f}]", "yes" if c["excludes_zero"] else "no"]


def _table(header: list[str], rows: list[list[str]], numeric: bool = True) -> list[str]:
    align = ["---"] + ["---:" if numeric else "---"] * (len(header) - 1)
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"] + ["| " + " | ".join(r) + " |" for r in rows]


def render_markdown(report: dict) -> str:
    s = report["settings"]
    n, m = report["n_questions"], report["n_answerable"]
    retrieval, subset = report["retrieval"], report["answerable"]["retrieval"]
    ks = [str(k) for k in s["k"]]
    qps = report.get("queries_per_second", {})
    out = ["# Evaluation report", ""]
    out.append(
        f"{n:,} questions ({s['qa_source']}) over {s['n_passages']:,} passages ({s['corpus_source']}); "
        f"dense encoder: {s['model_source']}."
    )
    out.append("")
    out.append(
        f"**Answerable:** {m:,} of {n:,} questions ({_pct(100 * m / n if n else None)}%) have an answer string "
        f"somewhere in the corpus (by the same `has_answer` rule, match={s['match']!r}); "
        f"{report['n_unanswerable']:,} have none, so no retriever can score on them. "
        "Accuracy is given over all questions and over the answerable subset."
    )
    out += ["", "## Top-k retrieval accuracy (%)", ""]
    if retrieval:
        out += _table(
            ["retriever"] + [f"top-{k}" for k in ks] + ["queries/s"],
            [[name] + [_pct(accs.get(k)) for k in ks] + [_qps(qps.get(name))] for name, accs in retrieval.items()],
        )
        out += ["", f"Answerable subset ({m:,} questions):", ""]
        out += _table(
            ["retriever"] + [f"top-{k}" for k in ks], [[name] + [_pct(accs.get(k)) for k in ks] for name, accs in subset.items()]
        )
        for name, accs in retrieval.items():
            ready = report["index_seconds"].get(name, 0)
            out += ["", f"### {name}", "", f"{_qps(qps.get(name))} queries/s (search only; index ready in {ready:.1f} s)", ""]
            out += _table(
                ["k", f"all ({n:,})", f"answerable ({m:,})"],
                [[k, _pct(accs.get(k)), _pct(subset.get(name, {}).get(k))] for k in ks],
            )
        out += ["", "![top-k accuracy](topk.png)"]
    else:
        out.append("(no retriever evaluated)")
    comparisons = report.get("comparisons", {})
    if comparisons.get("retrieval"):
        c0 = comparisons["retrieval"][0]
        out += [
            "",
            "## Is the difference real? Paired bootstrap",
            "",
            f"Difference in top-k accuracy (percentage points, first minus second) with its {c0['confidence']:.0%} "
            f"confidence interval from {c0['samples']:,} paired bootstrap resamples of the questions (seed {s['seed']}). "
            "If the interval excludes 0, the gap is unlikely to come from which questions happened to be asked.",
            "",
        ]
        out += _table(
            ["comparison", "k", "difference", f"{c0['confidence']:.0%} CI", "excludes 0"],
            [[f"{c['a']} − {c['b']}", c["k"], *_ci_cells(c)] for c in comparisons["retrieval"]],
        )
    qa = report.get("qa") or {}
    if qa:
        qa_subset = report["answerable"].get("qa", {})
        out += [
            "",
            "## Answer quality (SQuAD exact match and token F1, %)",
            "",
            f"Answered by: {s['generator_source']}; the modes read the top {s['rag_k']} "
            f"{s.get('rag_retriever', 'dense')} passages."
            + (" Rows marked (base) answer with the bare base model over the same passages." if s.get("with_base") else "")
            + (
                " Rows '+ fallback' take the closed-book answer where the RAG answer is in none of its passages ("
                + ", ".join(f"{label}: {n} of {report['n_questions']}" for label, n in report.get("fallbacks", {}).items())
                + ")."
                if s.get("fallback")
                else ""
            ),
            "",
        ]
        spa = report.get("seconds_per_answer", {})
        out += _table(
            ["mode", "EM", "F1", "EM (answerable)", "F1 (answerable)", "s / answer"],
            [
                [
                    mode,
                    _pct(v["em"]),
                    _pct(v["f1"]),
                    *(_pct(qa_subset.get(mode, {}).get(m)) for m in ("em", "f1")),
                    f"{spa[mode]:.2f}" if mode in spa else "–",
                ]
                for mode, v in qa.items()
            ],
        )
        if comparisons.get("qa"):
            out += [""]
            out += _table(
                ["comparison", "metric", "difference", f"{comparisons['qa'][0]['confidence']:.0%} CI", "excludes 0"],
                [[f"{c['a']} − {c['b']}", c["metric"].upper(), *_ci_cells(c)] for c in comparisons["qa"]],
            )
    out += ["", "## Settings", ""]
    out += _table(
        ["setting", "value"], [[key, f"`{_short(value)}`"] for key, value in s.items() if key != "command"], numeric=False
    )
    out += ["", "## Reproduce", "", "```bash", s["command"], "```", ""]
    return "\n".join(out)


def _short(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text.replace("|", "\\|").replace("`", "'")
