"""Standard IR evaluation where relevance judgments exist (BEIR, TREC, MS MARCO-style qrels): MRR@10, nDCG@10 and
Recall@k of each retriever, computed by `ir_measures` (pytrec_eval underneath, not re-implemented here), with paired
bootstrap intervals between retrievers on the per-query values, and a TREC run file per retriever.

`python -m eval.run --beir DIR` (or `--corpus corpus.jsonl --qa queries.jsonl --qrels qrels/test.tsv`) runs it; the
report folder gets report.json, report.md, per_query.jsonl and runs/<retriever>.trec, all at once. Queries without
judgments are left out and counted, as BEIR does.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dpr_rag.data.beir import Qrels, Query, load_qrels, load_queries
from dpr_rag.errors import ConfigError
from dpr_rag.retrieval.base import SearchHit
from dpr_rag.retrieval.searcher import Searcher
from dpr_rag.storage import atomic_dir

from .bootstrap import paired_bootstrap
from .config import EvalConfig
from .stages import Stages

SEARCH_BATCH = 64
CUTOFF = 10  # of MRR and nDCG, as BEIR and MS MARCO report them


def measures(ks: Sequence[int]) -> list:
    import ir_measures

    return [ir_measures.RR @ CUTOFF, ir_measures.nDCG @ CUTOFF, *(ir_measures.R @ k for k in ks)]


@dataclass
class _Runs:
    hits: dict[str, list[list[SearchHit]]] = field(default_factory=dict)
    queries_per_second: dict[str, float | None] = field(default_factory=dict)


def write_trec_runs(folder: Path, query_ids: Sequence[str], hits: dict[str, list[list[SearchHit]]]) -> None:
    """folder/runs/<retriever>.trec for each retriever, in TREC's run format: `qid Q0 docid rank score tag` a line."""
    (folder / "runs").mkdir()
    for name, results in hits.items():
        rows = zip(query_ids, results, strict=True)
        text = "".join(f"{qid} Q0 {h.passage.id} {h.rank} {h.score:.6f} {name}\n" for qid, row in rows for h in row)
        (folder / "runs" / f"{name}.trec").write_text(text, encoding="utf-8")
    (folder / "runs").chmod(0o755)


def per_query_scores(queries: Sequence[Query], results, qrels: Qrels, ks: Sequence[int]) -> dict[str, list[float]]:
    """measure name -> its value per query (in `queries` order), through ir_measures."""
    import ir_measures

    # Scored by rank, not by score: the order measured is the one the retriever returned (trec_eval would re-sort
    # tied scores, such as BM25's zero-score padding, by document id).
    run = {q.id: {h.passage.id: float(len(hits) - h.rank + 1) for h in hits} for q, hits in zip(queries, results, strict=True)}
    values: dict[str, dict[str, float]] = {str(m): {} for m in measures(ks)}
    for metric in ir_measures.iter_calc(measures(ks), qrels, run):
        values[str(metric.measure)][metric.query_id] = float(metric.value)
    return {name: [by_query.get(q.id, 0.0) for q in queries] for name, by_query in values.items()}


def _search(config: EvalConfig, searcher: Searcher, queries: list[Query], stages: Stages) -> _Runs:
    runs = _Runs()
    depth = max(max(config.k), CUTOFF)
    for name in config.retrievers:
        retriever = searcher.retriever(name)
        bar, found, seconds = stages.run(f"{name}: search", len(queries)), [], 0.0
        for start in range(0, len(queries), SEARCH_BATCH):
            t0 = time.perf_counter()
            found += retriever.search([q.text for q in queries[start : start + SEARCH_BATCH]], depth)
            seconds += time.perf_counter() - t0
            bar.update(len(found))
        bar.close()
        runs.hits[name] = found
        runs.queries_per_second[name] = round(len(queries) / seconds, 1) if seconds > 0 else None
    return runs


def run_ir_evaluation(config: EvalConfig, searcher: Searcher | None = None, stages: Stages | None = None) -> tuple[dict, Path]:
    """Evaluate `config.retrievers` on `config.qa` (queries) against `config.qrels`; write the report folder."""
    from .harness import open_searcher, report_folder  # the harness imports this module

    if config.qrels is None or config.qa is None:
        raise ConfigError("IR evaluation needs queries (--qa) and relevance judgments (--qrels), or --beir DIR")
    out = report_folder(config.out)
    stages = stages or Stages(config.show_progress, None, None)
    qrels = load_qrels(config.qrels)
    loaded = load_queries(config.qa)
    judged = [q for q in loaded if q.id in qrels]
    queries = judged[: config.limit] if config.limit is not None else judged
    if not queries:
        raise ConfigError(f"no query of {config.qa} has a judgment in {config.qrels} (their ids differ?)")
    searcher = searcher or open_searcher(config)
    runs = _search(config, searcher, queries, stages)
    scores = {name: per_query_scores(queries, hits, qrels, config.k) for name, hits in runs.hits.items()}
    report = {
        "n_queries": len(queries),
        "n_queries_without_judgments": len(loaded) - len(judged),
        "ir": {name: {m: round(100 * sum(v) / len(v), 2) for m, v in per.items()} for name, per in scores.items()},
        "comparisons": {"ir": _comparisons(config, scores)},
        "queries_per_second": runs.queries_per_second,
        "settings": {
            "corpus": config.corpus,
            "qa": config.qa,
            "qrels": config.qrels,
            "model": config.model,
            "retrievers": config.retrievers,
            "rerank": config.rerank,
            "n_passages": len(searcher.passages),
            "command": config.command or config.to_command(),
        },
    }
    stages.check_cancel()
    with atomic_dir(out) as tmp:
        _write(tmp, report, queries, runs, scores)
    return report, out


def _comparisons(config: EvalConfig, scores: dict[str, dict[str, list[float]]]) -> list[dict]:
    out = []
    for b, a in itertools.combinations(scores, 2):
        for measure in scores[a]:
            ci = paired_bootstrap(
                scores[a][measure], scores[b][measure], config.bootstrap_samples, config.confidence, config.seed
            )
            out.append({"a": a, "b": b, "measure": measure, **ci.to_dict(scale=100.0)})
    return out


def _write(folder: Path, report: dict, queries: list[Query], runs: _Runs, scores: dict[str, dict[str, list[float]]]) -> None:
    (folder / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "report.md").write_text(render_markdown(report), encoding="utf-8")
    write_trec_runs(folder, [q.id for q in queries], runs.hits)
    with open(folder / "per_query.jsonl", "w", encoding="utf-8") as f:
        for i, q in enumerate(queries):
            row = {"id": q.id, "query": q.text, **{n: {m: v[i] for m, v in per.items()} for n, per in scores.items()}}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    folder.chmod(0o755)


def render_markdown(report: dict) -> str:
    names = list(report["ir"])
    cols = list(report["ir"][names[0]]) if names else []
    lines = [
        f"# IR evaluation: {report['n_queries']:,} judged queries",
        "",
        f"{report['n_queries_without_judgments']:,} queries without judgments left out. Measures by ir_measures, in %.",
        "",
        "| retriever | " + " | ".join(cols) + " | queries/s |",
        "|---|" + "---:|" * (len(cols) + 1),
    ]
    for name in names:
        cells = [f"{report['ir'][name][c]:.2f}" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {report['queries_per_second'][name]} |")
    if report["comparisons"]["ir"]:
        lines += ["", "Paired bootstrap, 95% CI of the difference (points):", "", "| comparison | measure | difference | CI |"]
        lines.append("|---|---|---:|---|")
        for c in report["comparisons"]["ir"]:
            ci = f"[{c['low']:+.2f}, {c['high']:+.2f}]"
            shown = f"**{ci}**" if c["excludes_zero"] else ci
            lines.append(f"| {c['a']} − {c['b']} | {c['measure']} | {c['difference']:+.2f} | {shown} |")
    lines += ["", "```", report["settings"]["command"], "```", ""]
    return "\n".join(lines)
