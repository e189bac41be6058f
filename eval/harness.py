"""The evaluation harness: top-k retrieval accuracy of BM25, dense and hybrid retrieval (and, on request, EM/F1 of
RAG answers), with paired bootstrap confidence intervals. The CLI (`python -m eval.run`) and the app's Evaluate tab
both call `run_evaluation(EvalConfig(...))`.

It runs in stages, each a function below: load the questions; open the retrievers; find which questions the corpus
can answer at all; search and score each retriever; compare retrievers; generate and score answers; write the report
folder, all at once (a failed or cancelled run leaves no half report). Indexes come from the searcher's cache, so a
rerun does not re-encode the corpus.
"""

from __future__ import annotations

import itertools
import platform
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from dpr_rag.data.passages import corpus_fingerprint
from dpr_rag.data.qa import QAExample, load_qa
from dpr_rag.errors import ConfigError, DprRagError
from dpr_rag.matching import CorpusAnswerIndex
from dpr_rag.retrieval.base import SearchHit
from dpr_rag.retrieval.encoder import resolve_precision
from dpr_rag.retrieval.query_adapter import BASE_DEFAULT
from dpr_rag.retrieval.searcher import Searcher
from dpr_rag.storage import atomic_dir, unique_folder

from .answering import Generation, generate_answers, generation_comparisons, percent, rounded
from .bootstrap import paired_bootstrap
from .config import EvalConfig
from .ir_eval import run_ir_evaluation, write_trec_runs
from .metrics import load_metric
from .report import write_report
from .stages import Progress, Stages

REPORTS_DIR = Path(__file__).resolve().parent / "reports"
SEARCH_BATCH = 64
UNTRAINED = "dense_untrained"  # the untrained base encoder, evaluated beside a trained --model


@dataclass
class _Retrieval:
    """What retrieval found, per retriever name."""

    names: list[str]
    accuracy: dict[str, dict[str, float | None]] = field(default_factory=dict)
    accuracy_answerable: dict[str, dict[str, float | None]] = field(default_factory=dict)
    hits_at: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    ranks: dict[str, list[int | None]] = field(default_factory=dict)
    top1: dict[str, list[dict | None]] = field(default_factory=dict)
    hits: dict[str, list[list[SearchHit]]] = field(default_factory=dict)  # for the TREC run files
    queries_per_second: dict[str, float | None] = field(default_factory=dict)
    index_seconds: dict[str, float] = field(default_factory=dict)


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return done.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def report_folder(out: str | None) -> Path:
    """The report folder; refuses an existing folder that is not a report (atomic_dir would replace it whole)."""
    if out is None:
        return unique_folder(REPORTS_DIR, time.strftime("%Y%m%d-%H%M%S"))
    folder = Path(out)
    if folder.exists():
        if not folder.is_dir():
            raise ConfigError(f"--out {folder} is a file; give a folder")
        if any(folder.iterdir()) and not (folder / "report.json").exists():
            raise ConfigError(f"--out {folder} exists and is not an evaluation report folder; give a new or empty folder")
    return folder


def open_searcher(config: EvalConfig) -> Searcher:
    return Searcher.open(
        config.corpus,
        model=config.model,
        index_kind=config.index_type,
        use_cache=config.use_cache,
        precision=config.precision,
        index_params=dict(config.index_params),
        hybrid_fusion=config.fusion,
        hybrid_weight=config.weight,
        show_progress=config.show_progress,
        reranker=config.rerank,
        rerank_candidates=config.rerank_candidates,
        rerank_fusion=config.rerank_fusion,
    )


def _answerable(examples: list[QAExample], searcher: Searcher, config: EvalConfig, stages: Stages) -> list[bool]:
    """Which questions could be answered at all: an answer string somewhere in the corpus (same has_answer rule)."""
    bar = stages.run("answers in corpus", len(examples))
    corpus_index = CorpusAnswerIndex([p.text for p in searcher.passages])
    answerable = []
    for i, ex in enumerate(examples, start=1):
        answerable.append(corpus_index.contains(ex.answers, config.match))
        if i % 64 == 0 or i == len(examples):
            bar.update(i)
    bar.close()
    return answerable


def _retrieve(
    config: EvalConfig, searcher: Searcher, examples: list[QAExample], answerable: list[bool], stages: Stages
) -> _Retrieval:
    """Search every question once at the largest k; the metric finds each question's first hit."""
    names = list(config.retrievers)
    baseline = None
    if config.model and config.baseline and "dense" in names:  # a trained --model is shown next to the untrained default
        baseline = Searcher(
            searcher.passages,
            model=BASE_DEFAULT,  # the untrained all-MiniLM-L6-v2, not the shipped trained default
            index_kind=config.index_type,
            use_cache=config.use_cache,
            precision=config.precision,
            index_params=dict(config.index_params),
            show_progress=config.show_progress,
        )
        names.insert(names.index("dense"), UNTRAINED)  # before "dense", so comparisons read "dense − dense_untrained"
    found = _Retrieval(names)
    if not names:
        return found
    top_k = load_metric("top_k_accuracy")
    questions, answers = [ex.question for ex in examples], [ex.answers for ex in examples]
    subset = [i for i, ok in enumerate(answerable) if ok]
    n = len(examples)
    for name in names:
        t0 = time.perf_counter()
        # Built, or loaded from the cache, before the clock starts.
        retriever = baseline.retriever("dense") if baseline is not None and name == UNTRAINED else searcher.retriever(name)
        found.index_seconds[name] = round(time.perf_counter() - t0, 2)
        results: list = []
        seconds = 0.0
        bar = stages.run(f"{name}: search", n)
        for start in range(0, n, SEARCH_BATCH):
            t0 = time.perf_counter()
            results += retriever.search(questions[start : start + SEARCH_BATCH], max(config.k))
            seconds += time.perf_counter() - t0
            bar.update(len(results))
        bar.close()
        found.queries_per_second[name] = round(n / seconds, 1) if seconds > 0 else None
        bar = stages.run(f"{name}: match answers", n)
        scored = top_k.compute(
            predictions=[[h.passage.text for h in row] for row in results],
            references=answers,
            k=config.k,
            match=config.match,
            progress=lambda done, total, bar=bar: bar.update(done),
        )
        bar.close()
        found.ranks[name], found.hits_at[name] = scored["first_hit_rank"], scored["hit"]
        if any(r is not None and not answerable[i] for i, r in enumerate(found.ranks[name])):
            raise DprRagError(
                f"{name}: a retrieved passage has an answer that the corpus check missed; "
                "the retriever's passages differ from the corpus"
            )
        found.accuracy[name] = {str(k): rounded(acc) for k, acc in scored["accuracy"].items()}
        found.accuracy_answerable[name] = {
            str(k): rounded(percent([found.hits_at[name][k][i] for i in subset])) for k in config.k
        }
        found.hits[name] = results
        found.top1[name] = [{"id": row[0].passage.id, "title": row[0].passage.title} if row else None for row in results]
    return found


def _retrieval_comparisons(config: EvalConfig, found: _Retrieval) -> list[dict]:
    out = []
    for b, a in itertools.combinations(found.names, 2):  # later minus earlier: dense − bm25, hybrid − bm25, ...
        for k in config.k:
            ci = paired_bootstrap(
                found.hits_at[a][k], found.hits_at[b][k], config.bootstrap_samples, config.confidence, config.seed
            )
            out.append({"a": a, "b": b, "k": str(k), **ci.to_dict(scale=100.0)})
    return out


def _settings(config: EvalConfig, searcher: Searcher, names: list[str], n_loaded: int, started: str, seconds: float) -> dict:
    settings = {
        "qa": config.qa,
        "qa_source": config.qa or "embedded: FanOutQA dev single-hop sub-questions",
        "n_questions_in_file": n_loaded,
        "limit": config.limit,
        "corpus": config.corpus,
        "corpus_source": config.corpus or "embedded: Wikipedia summaries",
        "n_passages": len(searcher.passages),
        "corpus_fingerprint": corpus_fingerprint(searcher.passages),
        "model": config.model,
        "model_source": config.model or "embedded all-MiniLM-L6-v2 (not trained on this task)",
        "retrievers": names,
        "k": config.k,
        "match": config.match,
        "index_type": config.index_type,
        "precision": resolve_precision(config.precision),
        "index_params": config.index_params,
        "fusion": config.fusion,
        "weight": config.weight,
        "use_cache": config.use_cache,
        "generate": config.generate,
        "generator": config.generator,
        "rag": config.rag,
        "base_generator": config.base_generator,
        "with_base": config.with_base,
        "bf16": config.bf16,
        "fallback": config.fallback,
        "rag_retriever": config.rag_retriever,
        "rerank": config.rerank,
        "rerank_candidates": config.rerank_candidates if config.rerank else None,
        "rerank_fusion": config.rerank_fusion if config.rerank else None,
        "generator_source": _generator_source(config),
        "rag_k": config.rag_k,
        "shots": config.shots,
        "bootstrap_samples": config.bootstrap_samples,
        "confidence": config.confidence,
        "seed": config.seed,
        "started": started,
        "seconds": round(seconds, 1),
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "cwd": str(Path.cwd()),
        "command": config.command or config.to_command(),
    }
    return _redacted(settings) if config.public else settings


def _redacted(settings: dict) -> dict:
    """A report shown to the public (the app): file names without their server folders, no working directory."""
    for key in ("qa", "qa_source", "corpus", "corpus_source", "model", "model_source", "generator", "rag", "rerank"):
        value = settings.get(key)
        if isinstance(value, str) and ("/" in value or "\\" in value):
            settings[key] = Path(value).name
    settings.pop("cwd", None)
    return settings


def _generator_source(config: EvalConfig) -> str:
    """Who answers: the generator of the generative modes, and the extractive reader when that mode is asked."""
    reader = f"extractive reader {config.reader or 'shipped (dpr_rag/extractive/shipped)'}"
    if not [m for m in config.generate + config.with_base if m != "extractive"]:
        return reader
    if config.generator or config.rag:
        source = str(config.generator or f"RAG folder {config.rag}")
    elif config.base_generator:
        source = "embedded base model (Gemma 3 270M)"
    else:
        source = "shipped reader (Gemma 3 270M + LoRA, dpr_rag/rag/reader)"
    return f"{source}; {reader}" if "extractive" in config.generate else source


def _per_question(examples: list[QAExample], answerable: list[bool], found: _Retrieval, made: Generation) -> list[dict]:
    rows = []
    for i, ex in enumerate(examples):
        record: dict = {
            "id": ex.id,
            "question": ex.question,
            "answers": ex.answers,
            "answerable": answerable[i],
            "first_hit_rank": {name: found.ranks[name][i] for name in found.names},
            "top1": {name: found.top1[name][i] for name in found.names},
        }
        if made.predictions:
            record["predictions"] = {
                mode: {
                    "answer": made.predictions[mode][i],
                    "em": made.scored[mode]["exact_match_per_question"][i],
                    "f1": round(made.scored[mode]["f1_per_question"][i], 4),
                }
                for mode in made.predictions
            }
        rows.append(record)
    return rows


def run_evaluation(
    config: EvalConfig | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    examples: list[QAExample] | None = None,
    searcher: Searcher | None = None,
) -> tuple[dict, Path]:
    """Evaluate, write the report folder, and return (report dict, folder).

    `progress(stage, done, total)` is called as each stage advances (stages: "<retriever>: search",
    "<retriever>: match answers", "answers in corpus", "generate <mode>"); setting `cancel` stops at the next
    batch with `EvalCancelled`, and nothing is written. `examples` (questions already parsed from `config.qa`) and
    `searcher` (already open over `config.corpus` with `config.model`) save parsing and loading them again.
    """
    config = config or EvalConfig()
    stages = Stages(config.show_progress, progress, cancel)
    if config.qrels is not None:  # relevance judgments: IR measures (ir_eval.py) instead of answer matching
        return run_ir_evaluation(config, searcher, stages)
    out = report_folder(config.out)
    started, t_start = time.strftime("%Y-%m-%dT%H:%M:%S"), time.perf_counter()

    loaded = examples if examples is not None else load_qa(config.qa)
    examples = loaded[: config.limit] if config.limit is not None else list(loaded)
    searcher = searcher or open_searcher(config)
    answerable = _answerable(examples, searcher, config, stages)
    found = _retrieve(config, searcher, examples, answerable, stages)
    made = generate_answers(config, searcher, examples, answerable, stages)

    n, n_answerable = len(examples), sum(answerable)
    report = {
        "n_questions": n,
        "n_answerable": n_answerable,
        "n_unanswerable": n - n_answerable,
        "retrieval": found.accuracy,
        "answerable": {"n_questions": n_answerable, "retrieval": found.accuracy_answerable, "qa": made.qa_answerable},
        "qa": made.qa,
        "comparisons": {"retrieval": _retrieval_comparisons(config, found), "qa": generation_comparisons(config, made)},
        "queries_per_second": found.queries_per_second,
        "index_seconds": found.index_seconds,
        "seconds_per_answer": made.seconds_per_answer,
        "fallbacks": made.fallbacks,
        "settings": _settings(config, searcher, found.names, len(loaded), started, time.perf_counter() - t_start),
    }
    per_question = _per_question(examples, answerable, found, made)
    stages.check_cancel()
    try:
        with atomic_dir(out) as tmp:
            write_report(tmp, report, per_question)
            write_trec_runs(tmp, [ex.id or str(i + 1) for i, ex in enumerate(examples)], found.hits)
    except Exception as e:  # all the work is done: keep its figures even when the report cannot be written
        kept = keep_figures(out, report, per_question)
        raise DprRagError(f"could not write the report {out} ({e}); its figures are kept in {kept}") from e
    return report, out


def keep_figures(out: Path, report: dict, per_question: list[dict]) -> Path:
    """The computed report as plain ASCII JSON beside the report folder that could not be written (or in the temp
    folder when even that fails), so an hour of evaluation is never lost to a late error."""
    import json
    import tempfile

    payload = json.dumps({"report": report, "per_question": per_question}, ensure_ascii=True, default=str)
    for folder in (out.parent, Path(tempfile.gettempdir())):
        path = folder / f"{out.name}.figures-{time.strftime('%Y%m%d-%H%M%S')}.json"
        try:
            path.write_text(payload, encoding="ascii")
            return path
        except OSError:
            continue
    raise DprRagError(f"could not write the report {out}, nor keep its figures anywhere")
