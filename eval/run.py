"""`python -m eval.run`: which retriever wins, in numbers. Top-k retrieval accuracy of BM25, dense and hybrid
retrieval (and, on request, EM/F1 of RAG answers), with paired bootstrap confidence intervals.

    python -m eval.run [--qa FILE] [--corpus FILE] [--model PATH] [--retrievers bm25,dense,hybrid]
                       [--k 1,5,20,100] [--generate sequence,token,closed-book] [--limit N] [--match string|regex]
                       [--out DIR]

Writes report.json, report.md, per_question.jsonl and topk.png into --out (default eval/reports/<timestamp>/),
all at once: a failed or interrupted run leaves no half report. Indexes come from the searcher's cache, so a
rerun does not re-encode the corpus. The library entry point is `run_evaluation(EvalConfig(...), progress=...)`.
"""
from __future__ import annotations

import argparse
import importlib
import itertools
import platform
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from dpr_rag.answers import MATCH_MODES, CorpusAnswerIndex
from dpr_rag.cli_common import add_corpus_args, index_params, run_cli
from dpr_rag.errors import ConfigError, DprRagError
from dpr_rag.hybrid import DEFAULT_WEIGHT, FUSIONS
from dpr_rag.passages import corpus_fingerprint
from dpr_rag.qa import load_qa
from dpr_rag.searcher import RETRIEVERS, Searcher
from dpr_rag.storage import atomic_dir

from .bootstrap import DEFAULT_SAMPLES, paired_bootstrap
from .config import DEFAULT_KS, GENERATION_MODES, EvalConfig, parse_ks, parse_modes  # noqa: F401 (re-exported)
from .metrics import load_metric
from .report import FILES, write_report

REPORTS_DIR = Path(__file__).resolve().parent / "reports"
SEARCH_BATCH = 64
GENERATE_BATCH = 8
UNTRAINED = "dense_untrained"  # the default encoder, evaluated beside a trained --model

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class EvalCancelled(DprRagError):
    """The caller set the cancel event; nothing was written."""


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                              text=True, timeout=5)
        return done.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _out_folder(out: str | None) -> Path:
    """The report folder; refuses an existing folder that is not a report (atomic_dir would replace it whole)."""
    if out is None:
        base = REPORTS_DIR / time.strftime("%Y%m%d-%H%M%S")
        folder, i = base, 1
        while folder.exists():
            folder, i = base.with_name(f"{base.name}-{i}"), i + 1
        return folder
    folder = Path(out)
    if folder.exists():
        if not folder.is_dir():
            raise ConfigError(f"--out {folder} is a file; give a folder")
        if any(folder.iterdir()) and not (folder / "report.json").exists():
            raise ConfigError(f"--out {folder} exists and is not an evaluation report folder; give a new or empty folder")
    return folder


class _Stage:
    """A tqdm bar that also reports to the caller's progress callback and honours the cancel event."""

    def __init__(self, name: str, total: int, config: EvalConfig, progress: Progress | None, cancel: threading.Event | None,
                 unit: str):
        self.name, self.total, self.progress, self.cancel = name, total, progress, cancel
        self.bar = tqdm(total=total, desc=name, unit=unit, disable=not config.show_progress, leave=config.show_progress)
        self.done = 0
        self.update(0)

    def update(self, done: int) -> None:
        if self.cancel is not None and self.cancel.is_set():
            self.bar.close()
            raise EvalCancelled("evaluation cancelled")
        self.bar.update(done - self.done)
        self.done = done
        if self.progress is not None:
            self.progress(self.name, done, self.total)

    def close(self) -> None:
        self.bar.close()


def _mean(values: list[float]) -> float | None:
    return 100.0 * sum(values) / len(values) if values else None


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def run_evaluation(config: EvalConfig | None = None, progress: Progress | None = None,
                   cancel: threading.Event | None = None) -> tuple[dict, Path]:
    """Evaluate, write the report folder, and return (report dict, folder).

    `progress(stage, done, total)` is called as each stage advances (stages: "<retriever>: search",
    "<retriever>: match answers", "answers in corpus", "generate <mode>"); setting `cancel` stops at the next
    batch with `EvalCancelled`, and nothing is written.
    """
    config = (config or EvalConfig()).check()
    out = _out_folder(config.out)
    started, t_start = time.strftime("%Y-%m-%dT%H:%M:%S"), time.perf_counter()

    def stage(name: str, total: int, unit: str = "q") -> _Stage:
        return _Stage(name, total, config, progress, cancel, unit)

    examples = load_qa(config.qa)
    n_loaded = len(examples)
    if config.limit is not None:
        examples = examples[: config.limit]
    questions = [ex.question for ex in examples]
    answers = [ex.answers for ex in examples]
    n = len(examples)
    searcher = Searcher.open(config.corpus, model=config.model, index_kind=config.index_type, use_cache=config.use_cache,
                             precision=config.precision, index_params=dict(config.index_params),
                             hybrid_fusion=config.fusion, hybrid_weight=config.weight, show_progress=config.show_progress)
    passages = searcher.passages
    # A trained --model is shown next to the untrained default encoder it is compared against.
    names = list(config.retrievers)
    baseline = None
    if config.model and config.baseline and "dense" in names:
        baseline = Searcher(passages, model=None, index_kind=config.index_type, use_cache=config.use_cache, precision=config.precision,
                            index_params=dict(config.index_params),
                            show_progress=config.show_progress)
        names.insert(names.index("dense"), UNTRAINED)  # before "dense", so comparisons read "dense − dense_untrained"

    # Which questions could be answered at all: an answer string somewhere in the corpus (same has_answer rule).
    bar = stage("answers in corpus", n)
    corpus_index = CorpusAnswerIndex([p.text for p in passages])
    answerable = []
    for i, a in enumerate(answers, start=1):
        answerable.append(corpus_index.contains(a, config.match))
        if i % 64 == 0 or i == n:
            bar.update(i)
    bar.close()
    subset = [i for i, ok in enumerate(answerable) if ok]

    # Retrieval: search every question once at the largest k; the metric finds each question's first hit.
    top_k = load_metric("top_k_accuracy") if names else None
    retrieval, retrieval_subset, hits_at, ranks, top1, qps, index_seconds = {}, {}, {}, {}, {}, {}, {}
    for name in names:
        t0 = time.perf_counter()
        # Built, or loaded from the cache, before the clock starts.
        retriever = baseline.retriever("dense") if name == UNTRAINED else searcher.retriever(name)
        index_seconds[name] = round(time.perf_counter() - t0, 2)
        results, seconds = [], 0.0
        bar = stage(f"{name}: search", n)
        for start in range(0, n, SEARCH_BATCH):
            t0 = time.perf_counter()
            results += retriever.search(questions[start : start + SEARCH_BATCH], max(config.k))
            seconds += time.perf_counter() - t0
            bar.update(len(results))
        bar.close()
        qps[name] = round(n / seconds, 1) if seconds > 0 else None
        bar = stage(f"{name}: match answers", n)
        scored = top_k.compute(predictions=[[h.passage.text for h in row] for row in results], references=answers,
                               k=config.k, match=config.match, progress=lambda done, total: bar.update(done))
        bar.close()
        ranks[name], hits_at[name] = scored["first_hit_rank"], scored["hit"]
        if any(r is not None and not answerable[i] for i, r in enumerate(ranks[name])):
            raise DprRagError(f"{name}: a retrieved passage has an answer that the corpus check missed; "
                              "the retriever's passages differ from the corpus")
        retrieval[name] = {str(k): _r(acc) for k, acc in scored["accuracy"].items()}
        retrieval_subset[name] = {str(k): _r(_mean([hits_at[name][k][i] for i in subset])) for k in config.k}
        top1[name] = [{"id": row[0].passage.id, "title": row[0].passage.title} if row else None for row in results]

    comparisons = {"retrieval": [], "qa": []}
    for b, a in itertools.combinations(names, 2):  # later minus earlier: dense − bm25, hybrid − bm25, ...
        for k in config.k:
            ci = paired_bootstrap(hits_at[a][k], hits_at[b][k], config.bootstrap_samples, config.confidence, config.seed)
            comparisons["retrieval"].append({"a": a, "b": b, "k": str(k), **ci.to_dict(scale=100.0)})

    # Generation (only on request): EM/F1 of each RAG mode's answers.
    qa, qa_subset, predictions, seconds_per_answer = {}, {}, {}, {}
    if config.generate:
        pipeline = _open_pipeline(config)
        squad = load_metric("squad_em_f1")
        per_mode = {}
        for mode in config.generate:
            preds = []
            bar = stage(f"generate {mode}", n)
            t0 = time.perf_counter()
            for start in range(0, n, GENERATE_BATCH):
                preds += [a.answer for a in pipeline.answer_batch(questions[start : start + GENERATE_BATCH], mode)]
                bar.update(len(preds))
            bar.close()
            seconds_per_answer[mode] = round((time.perf_counter() - t0) / n, 3)
            scored = squad.compute(predictions=preds, references=answers)
            predictions[mode], per_mode[mode] = preds, scored
            qa[mode] = {"em": _r(scored["exact_match"]), "f1": _r(scored["f1"])}
            qa_subset[mode] = {"em": _r(_mean([scored["exact_match_per_question"][i] for i in subset])),
                               "f1": _r(_mean([scored["f1_per_question"][i] for i in subset]))}
        for b, a in itertools.combinations(config.generate, 2):
            for metric, key in (("em", "exact_match_per_question"), ("f1", "f1_per_question")):
                ci = paired_bootstrap(per_mode[a][key], per_mode[b][key], config.bootstrap_samples, config.confidence,
                                      config.seed)
                comparisons["qa"].append({"a": a, "b": b, "metric": metric, **ci.to_dict(scale=100.0)})

    settings = {
        "qa": config.qa, "qa_source": config.qa or "embedded: FanOutQA dev single-hop sub-questions",
        "n_questions_in_file": n_loaded, "limit": config.limit,
        "corpus": config.corpus, "corpus_source": config.corpus or "embedded: Wikipedia summaries",
        "n_passages": len(passages), "corpus_fingerprint": corpus_fingerprint(passages),
        "model": config.model, "model_source": config.model or "embedded all-MiniLM-L6-v2 (not trained on this task)",
        "retrievers": names, "k": config.k, "match": config.match,
        "index_type": config.index_type, "precision": config.precision, "index_params": config.index_params, "fusion": config.fusion, "weight": config.weight, "use_cache": config.use_cache,
        "generate": config.generate, "generator": config.generator,
        "generator_source": config.generator or "embedded default generator", "rag_k": config.rag_k,
        "bootstrap_samples": config.bootstrap_samples, "confidence": config.confidence, "seed": config.seed,
        "started": started, "seconds": round(time.perf_counter() - t_start, 1), "git_commit": _git_commit(),
        "python": platform.python_version(), "cwd": str(Path.cwd()),
        "command": config.command or config.to_command(),
    }
    report = {
        "n_questions": n, "n_answerable": len(subset), "n_unanswerable": n - len(subset),
        "retrieval": retrieval,
        "answerable": {"n_questions": len(subset), "retrieval": retrieval_subset, "qa": qa_subset},
        "qa": qa,
        "comparisons": comparisons,
        "queries_per_second": qps, "index_seconds": index_seconds, "seconds_per_answer": seconds_per_answer,
        "settings": settings,
    }
    per_question = []
    for i, ex in enumerate(examples):
        record = {"id": ex.id, "question": ex.question, "answers": ex.answers, "answerable": answerable[i],
                  "first_hit_rank": {name: ranks[name][i] for name in names},
                  "top1": {name: top1[name][i] for name in names}}
        if config.generate:
            record["predictions"] = {mode: {"answer": predictions[mode][i],
                                            "em": per_mode[mode]["exact_match_per_question"][i],
                                            "f1": round(per_mode[mode]["f1_per_question"][i], 4)} for mode in config.generate}
        per_question.append(record)
    if cancel is not None and cancel.is_set():
        raise EvalCancelled("evaluation cancelled")
    with atomic_dir(out) as tmp:
        write_report(tmp, report, per_question)
    return report, out


def _open_pipeline(config: EvalConfig):
    """The RAG pipeline (`dpr_rag.answer.open_pipeline`), imported only when generation is asked for: it loads a
    generator LM, and retrieval-only evaluation must work without one."""
    try:
        answer = importlib.import_module("dpr_rag.answer")
    except ImportError as e:
        raise DprRagError(f"--generate needs the RAG generator, which failed to import: {e}") from e
    return answer.open_pipeline(corpus=config.corpus, model=config.model, generator=config.generator, k=config.rag_k,
                                index_kind=config.index_type, use_cache=config.use_cache)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qa", help="questions: NQ-open .jsonl, DPR .json, or DPR .csv/.tsv (question<TAB>[answers]); "
                                     "default: the embedded FanOutQA dev sub-questions")
    add_corpus_args(parser)
    parser.add_argument("--retrievers", default=",".join(RETRIEVERS),
                        help=f"comma-separated, from {','.join(RETRIEVERS)} (default all)")
    parser.add_argument("--k", default=",".join(map(str, DEFAULT_KS)), help="top-k cut-offs (default 1,5,20,100)")
    parser.add_argument("--generate", default="",
                        help=f"RAG modes to score with EM/F1, from {','.join(GENERATION_MODES)} (default none)")
    parser.add_argument("--generator", help="generator LM for --generate (default: the embedded one)")
    parser.add_argument("--rag-k", type=int, default=5, help="passages RAG marginalises over (default 5)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N questions")
    parser.add_argument("--match", choices=MATCH_MODES, default="string",
                        help="answer matching: DPR's token match (string) or regular expressions (regex, CuratedTREC)")
    parser.add_argument("--out", help="report folder (default eval/reports/<timestamp>/)")
    parser.add_argument("--fusion", choices=FUSIONS, default="linear", help="hybrid fusion (default linear: BM25 + λ·sim)")
    parser.add_argument("--weight", type=float, default=DEFAULT_WEIGHT,
                        help=f"λ of the linear hybrid (default {DEFAULT_WEIGHT})")
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_SAMPLES,
                        help=f"paired bootstrap resamples (default {DEFAULT_SAMPLES})")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="with --model, do not also evaluate the untrained default encoder (dense_untrained)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    config = EvalConfig(qa=args.qa, corpus=args.corpus, model=args.model, retrievers=args.retrievers, k=args.k,
                        generate=args.generate, generator=args.generator, rag_k=args.rag_k, limit=args.limit, match=args.match,
                        out=args.out, index_type=args.index_type, precision=args.precision, index_params=index_params(args), use_cache=not args.no_cache, fusion=args.fusion,
                        weight=args.weight, bootstrap_samples=args.bootstrap, seed=args.seed, show_progress=not args.quiet,
                        baseline=not args.no_baseline,
                        command=shlex.join(["python", "-m", "eval.run", *argv]))
    report, out = run_evaluation(config)
    n = report["n_questions"]
    print(f"{n:,} questions, {report['n_answerable']:,} answerable from the corpus")
    for name, accs in report["retrieval"].items():
        cells = "  ".join(f"top-{k} {v:5.1f}" for k, v in accs.items())
        print(f"{name:>15}: {cells}   ({report['queries_per_second'][name]} queries/s)")
    for mode, v in report["qa"].items():
        print(f"{mode:>11}: EM {v['em']:.1f}  F1 {v['f1']:.1f}  ({report['seconds_per_answer'][mode]} s/answer)")
    print(f"report: {out}/ ({', '.join(FILES)})")
    return 0


if __name__ == "__main__":
    run_cli(main)
