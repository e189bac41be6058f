"""The answering stage of an evaluation: each reader (the configured one, and with `with_base` the bare base model)
answers every question in each RAG mode; each row of answers is scored with SQuAD EM/F1 over all questions and over
the answerable ones; with `fallback`, each RAG mode also gets a row with the closed-book fallback
(`dpr_rag.rag.fallback`); and every pair of rows gets a paired bootstrap CI."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dpr_rag.data.qa import QAExample
from dpr_rag.errors import DprRagError
from dpr_rag.retrieval.searcher import Searcher

from .bootstrap import paired_bootstrap
from .config import EvalConfig
from .metrics import load_metric
from .stages import Stages

if TYPE_CHECKING:  # the generator loads only when generating
    from dpr_rag.rag.pipeline import RagAnswer, RagPipeline

GENERATE_BATCH = 8


def percent(values: list[float]) -> float | None:
    return 100.0 * sum(values) / len(values) if values else None


def rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


@dataclass
class Generation:
    """What generation produced and scored, per RAG mode."""

    qa: dict[str, dict[str, float | None]] = field(default_factory=dict)
    qa_answerable: dict[str, dict[str, float | None]] = field(default_factory=dict)
    predictions: dict[str, list[str]] = field(default_factory=dict)
    scored: dict[str, dict] = field(default_factory=dict)
    seconds_per_answer: dict[str, float] = field(default_factory=dict)
    fallbacks: dict[str, int] = field(default_factory=dict)  # "<mode> + fallback" rows: how many answers fell back


def _open_pipeline(config: EvalConfig, searcher: Searcher) -> RagPipeline:
    """The RAG pipeline over the searcher already open (no second parse of the corpus, no second encoder), imported
    only when generation is asked for: it loads a generator LM, and retrieval-only evaluation must work without one."""
    try:
        from dpr_rag.rag.pipeline import RagPipeline
    except ImportError as e:
        raise DprRagError(f"--generate needs the RAG generator, which failed to import: {e}") from e
    return RagPipeline.open(
        generator=config.generator,
        rag=config.rag,
        base_generator=config.base_generator,
        k=config.rag_k,
        searcher=searcher,
        shots=config.shots,
        retriever=config.rag_retriever,
        extractive_reader=config.reader,
        load_generator=any(m != "extractive" for m in config.generate + config.with_base),
    )


def _readers(config: EvalConfig, searcher: Searcher) -> list[tuple[str, RagPipeline, list[str]]]:
    """(label suffix, pipeline, modes): the configured reader, and with `with_base` the bare base model over the same
    retriever, each with the modes it answers in."""
    from dpr_rag.rag.generator import Generator

    main = _open_pipeline(config, searcher)
    readers: list[tuple[str, RagPipeline, list[str]]] = [("", main, config.generate)]
    if config.with_base:  # the base first, so that each comparison reads "reader − base"
        readers.insert(0, (" (base)", main.with_generator(Generator.from_pretrained(None)), config.with_base))
    for _, pipeline, _ in readers:
        pipeline.bf16 = config.bf16
    return readers


def generate_answers(
    config: EvalConfig, searcher: Searcher, examples: list[QAExample], answerable: list[bool], stages: Stages
) -> Generation:
    """EM/F1 of each RAG mode's answers (and, with `config.fallback`, of each RAG mode with the closed-book fallback)."""
    made = Generation()
    if not config.generate:
        return made
    questions = [ex.question for ex in examples]
    for suffix, pipeline, modes in _readers(config, searcher):
        answered: dict[str, tuple[list[RagAnswer], float]] = {}  # mode -> (answers, seconds in all)
        for mode in modes:
            beams = config.sequence_beams if mode == "sequence" else None
            answered[mode] = _answer_all(pipeline, questions, mode, stages, mode + suffix, beams)
            _score(made, mode + suffix, *answered[mode], examples, answerable)
        if config.fallback:
            for mode in [m for m in modes if m not in ("closed-book", "extractive")]:  # an extracted span is grounded
                rows, seconds = _with_fallback(pipeline, questions, *answered[mode], answered.get("closed-book"), stages)
                _score(made, f"{mode} + fallback{suffix}", rows, seconds, examples, answerable)
    return made


def _answer_all(
    pipeline: RagPipeline, questions: list[str], mode: str, stages: Stages, label: str, num_beams: int | None = None
) -> tuple[list[RagAnswer], float]:
    """Every question answered in `mode` (`num_beams`: None = the mode's default), in batches with progress; and the
    seconds that took."""
    answers: list[RagAnswer] = []
    bar = stages.run(f"generate {label}", len(questions))
    t0 = time.perf_counter()
    for start in range(0, len(questions), GENERATE_BATCH):
        answers += pipeline.answer_batch(questions[start : start + GENERATE_BATCH], mode, num_beams)
        bar.update(len(answers))
    bar.close()
    return answers, time.perf_counter() - t0


def _with_fallback(
    pipeline: RagPipeline,
    questions: list[str],
    rag: list[RagAnswer],
    seconds: float,
    closed_book: tuple[list[RagAnswer], float] | None,
    stages: Stages,
) -> tuple[list[RagAnswer], float]:
    """`rag` with the closed-book fallback (`dpr_rag.rag.fallback`), from the reader's closed-book answers when it gave
    them (charged for the questions that fell back), else answering closed-book only where needed; and its seconds."""
    from dpr_rag.rag.fallback import is_grounded, with_fallback

    missing = [i for i, a in enumerate(rag) if not is_grounded(a)]
    if closed_book is not None:
        answers, cb_seconds = closed_book
        extra = [answers[i] for i in missing]
        cb_seconds *= len(missing) / max(len(answers), 1)
    else:
        extra, cb_seconds = _answer_all(pipeline, [questions[i] for i in missing], "closed-book", stages, "closed-book fallback")
    rows = list(rag)
    for i, a in zip(missing, with_fallback([rag[i] for i in missing], extra), strict=True):
        rows[i] = a
    return rows, seconds + cb_seconds


def _score(
    made: Generation, label: str, rows: list[RagAnswer], seconds: float, examples: list[QAExample], answerable: list[bool]
) -> None:
    """EM/F1 of one row of answers, over all questions and over the answerable ones."""
    squad = load_metric("squad_em_f1")
    preds = [a.answer for a in rows]
    subset = [i for i, ok in enumerate(answerable) if ok]
    scored = squad.compute(predictions=preds, references=[ex.answers for ex in examples])
    made.seconds_per_answer[label] = round(seconds / len(examples), 3)
    made.predictions[label], made.scored[label] = preds, scored
    made.qa[label] = {"em": rounded(scored["exact_match"]), "f1": rounded(scored["f1"])}
    made.qa_answerable[label] = {
        "em": rounded(percent([scored["exact_match_per_question"][i] for i in subset])),
        "f1": rounded(percent([scored["f1_per_question"][i] for i in subset])),
    }
    if any(a.fallback for a in rows):
        made.fallbacks[label] = sum(a.fallback for a in rows)


def generation_comparisons(config: EvalConfig, made: Generation) -> list[dict]:
    """Every pair of answer rows (modes, and readers when `with_base`): the later minus the earlier, in the order
    generated (base rows first, then modes in the order asked)."""
    out = []
    pairs = list(itertools.combinations(made.scored, 2))
    for b, a in pairs:
        for metric, key in (("em", "exact_match_per_question"), ("f1", "f1_per_question")):
            ci = paired_bootstrap(
                made.scored[a][key], made.scored[b][key], config.bootstrap_samples, config.confidence, config.seed
            )
            out.append({"a": a, "b": b, "metric": metric, **ci.to_dict(scale=100.0)})
    return out
