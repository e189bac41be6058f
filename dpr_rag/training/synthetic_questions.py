"""Synthetic questions for any corpus: answer-first generation with a round-trip check (GenQ / InPars / PAQ).

Users often have a corpus and no labelled questions. For each sampled passage z:

1. pick an answer span a in z (`answer_spans`: a name, date or number) and the sentence s it is in;
2. prompt the generator with a few solved examples (FanOutQA's, with their sentences: never evaluation questions),
   then "Article: {title of z}\\nSentence: {s}\\nAnswer: {a}\\nQuestion:", and decode greedily to the end of the line;
3. keep the question q only if it is well formed (3-30 words, not a copy of a demonstration, does not give the answer
   away), new, and passes the **round trip**: a retriever's top k for q contains z (Alberti et al. 2019's roundtrip
   consistency; Promptagator's filter). A question that does not lead back to its passage is vague ("when was it
   founded?") or wrong.

The kept (q, a, z) are DPR training examples: z is the positive, and BM25's top hits for q that contain no answer
(and are not z) its hard negatives. The output is DPR's JSON, which `dpr_rag.train --qa` (or `--synthetic`) and
`dpr_rag.train_rag --qa` read. Generation appends every verdict to `OUT.generated.jsonl` as it goes, so a cancelled
or killed run continues with `resume` where it stopped, and the final file is written atomically.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..config_checks import check_int
from ..data.passages import Passage
from ..data.qa import QAExample
from ..errors import ConfigError
from ..matching import answer_matcher
from ..retrieval.base import Retriever
from ..storage import atomic_file
from .answer_spans import AnswerSpan, answer_spans, sentences
from .distant_supervision import question_key, save_dpr_json

INSTRUCTION = "Write the question that the answer answers, using the article and the sentence.\n\n"
QUESTION_WORDS = frozenset(
    "who whom whose what which when where why how in on at from by for is are was were do does did".split()
)


@dataclass(frozen=True)
class QGDemonstration:
    title: str
    sentence: str
    answer: str
    question: str


def qg_block(title: str, sentence: str, answer: str, question: str | None = None) -> str:
    block = f"Article: {title}\nSentence: {sentence}\nAnswer: {answer}\nQuestion:"
    return block if question is None else f"{block} {question}"


def qg_demonstrations(n: int = 4) -> list[QGDemonstration]:
    """The first `n` of the shipped reader demonstrations (FanOutQA, `rag/demonstrations.json`), each with the sentence
    of its passage that holds the answer."""
    from ..rag.demonstrations import load_demonstrations

    out = []
    for d in load_demonstrations():
        if d.passage is None:
            continue
        holding = [s for s in sentences(d.passage.text) if answer_matcher([d.answer])(s)]
        if holding:
            out.append(QGDemonstration(d.passage.title, holding[0], d.answer, d.question))
    if len(out) < n:
        raise ConfigError(f"{n} question-generation demonstrations asked for, but only {len(out)} are available")
    return out[:n]


def qg_prompt(demos: Sequence[QGDemonstration], passage: Passage, span: AnswerSpan) -> str:
    shown = "".join(qg_block(d.title, d.sentence, d.answer, d.question) + "\n\n" for d in demos)
    return INSTRUCTION + shown + qg_block(passage.title, span.sentence, span.answer)


@dataclass(frozen=True)
class Candidate:
    passage: Passage
    span: AnswerSpan

    @property
    def key(self) -> str:
        return f"{self.passage.id}\t{self.span.answer}"


def candidates(
    passages: Sequence[Passage], per_passage: int = 1, max_passages: int | None = None, seed: int = 0
) -> list[Candidate]:
    """Up to `per_passage` answer spans from each of up to `max_passages` passages, drawn with `seed` (passages in a
    seeded shuffle, so a partial run covers the corpus evenly rather than its first articles)."""
    rng = random.Random(seed)
    order = list(range(len(passages)))
    rng.shuffle(order)
    out: list[Candidate] = []
    used = 0
    for i in order:
        if max_passages is not None and used >= max_passages:
            break
        spans = answer_spans(passages[i].text, passages[i].title)
        if not spans:
            continue
        used += 1
        out += [Candidate(passages[i], s) for s in rng.sample(spans, min(per_passage, len(spans)))]
    return out


def question_problem(question: str, answer: str, demo_questions: frozenset[str]) -> str | None:
    """Why a generated question is unusable, or None: the reasons `GenerationStats.rejected` counts."""
    words = question.split()
    if not 3 <= len(words) <= 30:
        return "length"
    if question_key(question) in demo_questions:
        return "copied a demonstration"
    if words[0].lower().rstrip(":") in {"article", "sentence", "answer", "question"}:
        return "format"
    if not question.endswith("?") and words[0].lower() not in QUESTION_WORDS:
        return "not a question"
    if answer_matcher([answer])(question):
        return "gives the answer away"
    return None


@dataclass
class GenerationConfig:
    """Settings of `generate_questions`; checked on creation."""

    out: str
    per_passage: int = 1  # answer spans (so questions) per passage
    max_passages: int | None = None  # None: the whole corpus
    round_trip_k: int = 20  # the source passage must be in the round-trip retriever's top k
    shots: int = 4
    batch_size: int = 16
    max_new_tokens: int = 32
    hard_negatives: int = 10
    bf16: bool = False
    seed: int = 0
    resume: bool = False

    def __post_init__(self) -> None:
        check_int("per_passage", self.per_passage, 1, 20)
        check_int("max_passages", self.max_passages, 1, optional=True)
        check_int("round_trip_k", self.round_trip_k, 1, 1000)
        check_int("shots", self.shots, 0, 8)
        check_int("batch_size", self.batch_size, 1, 1024)
        check_int("max_new_tokens", self.max_new_tokens, 4, 128)
        check_int("hard_negatives", self.hard_negatives, 0, 100)
        check_int("seed", self.seed)
        out = Path(self.out)
        if out.exists():
            raise ConfigError(f"{out} exists; choose a new --out (a finished run is never overwritten)")
        if self.log_path.exists() and not self.resume:
            raise ConfigError(f"{self.log_path} holds an unfinished run: continue it with --resume, or choose a new --out")

    @property
    def log_path(self) -> Path:
        return Path(f"{self.out}.generated.jsonl")


@dataclass
class GenerationStats:
    n_candidates: int = 0  # (passage, answer) pairs of the run
    n_generated: int = 0  # questions generated by this process (not counting a resumed run's earlier ones)
    n_kept: int = 0  # in the output, over every run of this log
    rejected: Counter = field(default_factory=Counter)  # reason -> count, over every run of this log
    seconds: float = 0.0  # generating and checking, this process

    @property
    def per_minute(self) -> float:
        return 60.0 * self.n_generated / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        n = self.n_kept + sum(self.rejected.values())
        why = ", ".join(f"{c} {r}" for r, c in self.rejected.most_common())
        return (
            f"{n} questions generated from {self.n_candidates} answer spans: kept {self.n_kept} "
            f"({100.0 * self.n_kept / max(n, 1):.1f}%); rejected {why or 'none'}; "
            f"{self.per_minute:.1f} generated/min ({self.n_generated} in {self.seconds:.0f} s)"
        )


def _read_log(path: Path) -> list[dict]:
    """The verdicts written so far; a last line cut short by a kill is ignored (it is generated again)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def _batches(items: Sequence[Candidate], size: int) -> Iterator[list[Candidate]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _judge(
    batch: list[Candidate], questions: list[str], retriever: Retriever, k: int, seen: set[str], demo_questions: frozenset[str]
) -> list[str]:
    verdicts = []
    pending: set[str] = set()  # this batch's questions so far: a repeat within the batch is a duplicate too
    for c, q in zip(batch, questions, strict=True):
        problem = question_problem(q, c.span.answer, demo_questions)
        if problem is None and (question_key(q) in seen or question_key(q) in pending):
            problem = "duplicate"
        pending.add(question_key(q))
        verdicts.append(problem or "")
    ask = [i for i, v in enumerate(verdicts) if not v]
    if ask:
        hits = retriever.search([questions[i] for i in ask], k)
        for i, top in zip(ask, hits, strict=True):
            ok = any(h.passage.id == batch[i].passage.id for h in top)
            verdicts[i] = "kept" if ok else "failed the round trip"
            if ok:
                seen.add(question_key(questions[i]))
    return verdicts


def generate_questions(
    passages: Sequence[Passage],
    generator,
    round_trip: Retriever,
    negatives: Retriever,
    config: GenerationConfig,
    show_progress: bool = True,
) -> GenerationStats:
    """Generate, check and save synthetic questions for `passages` (see the module docstring); `round_trip` is the
    retriever of the round-trip check, `negatives` (BM25) mines the hard negatives."""
    demos = qg_demonstrations(config.shots) if config.shots else []
    demo_questions = frozenset(question_key(d.question) for d in demos)
    todo_all = candidates(passages, config.per_passage, config.max_passages, config.seed)
    log = config.log_path
    done = {r["key"]: r for r in _read_log(log)}
    seen = {question_key(r["question"]) for r in done.values() if r["verdict"] == "kept"}
    todo = [c for c in todo_all if c.key not in done]
    stats = GenerationStats(n_candidates=len(todo_all))
    generator.model.eval()
    t0 = time.perf_counter()
    with (
        open(log, "a", encoding="utf-8") as f,
        tqdm(
            total=len(todo_all),
            initial=len(todo_all) - len(todo),
            desc="generating questions",
            unit="q",
            disable=not show_progress,
        ) as bar,
    ):
        for batch in _batches(todo, config.batch_size):
            prompts = [qg_prompt(demos, c.passage, c.span) for c in batch]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                out = generator.generate(prompts, max_new_tokens=config.max_new_tokens, num_beams=1, num_return_sequences=1)
            questions = [o[0].strip() for o in out]
            for c, q, v in zip(
                batch, questions, _judge(batch, questions, round_trip, config.round_trip_k, seen, demo_questions), strict=True
            ):
                record = {"key": c.key, "passage_id": c.passage.id, "answer": c.span.answer, "question": q, "verdict": v}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                done[c.key] = record
            f.flush()
            os.fsync(f.fileno())  # a kill loses at most the batch being generated
            stats.n_generated += len(batch)
            bar.update(len(batch))
    stats.seconds = time.perf_counter() - t0
    by_id = {p.id: p for p in passages}
    kept = [r for r in done.values() if r["verdict"] == "kept" and r["passage_id"] in by_id]
    stats.n_kept = len(kept)
    stats.rejected = Counter(r["verdict"] for r in done.values() if r["verdict"] != "kept")
    examples = _with_negatives(kept, by_id, negatives, config.hard_negatives)
    save_dpr_json(examples, config.out)
    with atomic_file(f"{config.out}.stats.json") as f:
        json.dump({"summary": stats.summary(), "kept": stats.n_kept, "rejected": dict(stats.rejected)}, f, indent=1)
    return stats


def _with_negatives(kept: list[dict], by_id: dict[str, Passage], bm25: Retriever, n: int, batch: int = 256) -> list[QAExample]:
    """DPR examples: the source passage as positive, BM25's top hits without the answer (and not the source) as hard
    negatives."""
    examples = []
    for start in range(0, len(kept), batch):
        chunk = kept[start : start + batch]
        hits = bm25.search([r["question"] for r in chunk], n + 10) if n else [[] for _ in chunk]
        for j, (r, top) in enumerate(zip(chunk, hits, strict=True)):
            contains = answer_matcher([r["answer"]])
            negs = [h.passage for h in top if h.passage.id != r["passage_id"] and not contains(h.passage.text)][:n]
            examples.append(
                QAExample(
                    r["question"],
                    [r["answer"]],
                    id=f"synthetic-{start + j}",
                    positive_ctxs=[by_id[r["passage_id"]]],
                    hard_negative_ctxs=negs,
                )
            )
    return examples
