"""Retriever training data: DPR's distant supervision with BM25, a leak-free train/dev split, DPR's JSON format.

For datasets that come without gold passages (TriviaQA, WebQuestions, CuratedTREC in the DPR paper, and
NQ-open / fanoutqa here), DPR takes the highest-ranked BM25 passage that contains an answer as the positive
and BM25 passages that contain no answer as hard negatives; questions with no such positive are discarded.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from ..config_checks import check_float, check_int
from ..data.passages import Passage
from ..data.qa import QAExample
from ..errors import ConfigError
from ..matching import answer_matcher
from ..retrieval.base import SearchHit
from ..retrieval.bm25 import BM25Retriever
from ..storage import atomic_file

ScoreMap = Mapping[tuple[str, str], float]  # (question, passage id) -> BM25 score


@dataclass
class DistantSupervisionStats:
    """Counts from `distant_supervision`; `scores` maps (question, passage id) to the BM25 score of every
    passage placed in a kept example, for `save_dpr_json(..., scores=stats.scores)`."""

    n_questions: int = 0
    n_kept: int = 0
    n_no_positive: int = 0  # dropped: no BM25 hit in the top-k contains an answer
    n_no_hard_negative: int = 0  # kept, but got fewer hard negatives than asked for
    n_gold_title: int = 0  # kept with a positive from the gold article the data names (`gold_titles`)
    scores: dict[tuple[str, str], float] = field(default_factory=dict, repr=False, compare=False)

    def summary(self) -> str:
        pct = 100.0 * self.n_kept / self.n_questions if self.n_questions else 0.0
        return (
            f"{self.n_questions} questions: kept {self.n_kept} ({pct:.1f}%), dropped {self.n_no_positive} "
            f"with no answer-bearing passage in the BM25 top-k; {self.n_no_hard_negative} kept with fewer "
            f"hard negatives than asked" + (f"; {self.n_gold_title} positives from the gold article" if self.n_gold_title else "")
        )


def distant_supervision(
    qa: list[QAExample],
    bm25: BM25Retriever,
    top_k: int = 100,
    max_hard_negatives: int = 30,
    match: str = "string",
    batch_size: int = 256,
    show_progress: bool = True,
    by_title: Mapping[str, Sequence[Passage]] | None = None,
) -> tuple[list[QAExample], DistantSupervisionStats]:
    """Label BM25 passages as positive / hard negative for each question, as DPR did for TriviaQA/WQ/TREC.

    Rule, per question: retrieve the BM25 top `top_k`, keeping only hits with a score > 0 (passages that share
    no term with the question are not BM25 matches; `BM25Retriever.search` merely pads with them).
    - positive: the highest-ranked hit whose passage TEXT (not title) `has_answer(answers, text, match)`;
    - hard negatives: the highest-ranked hits whose text contains no answer, in BM25 order, at most
      `max_hard_negatives` (a hit ranked above the positive is a hard negative too); a hit whose title alone
      contains an answer is neither (it is likely a false negative, so it is skipped);
    - gold-title positives: with `by_title` (the corpus's passages per title), a question whose data names its gold
      articles (`gold_titles`, as FanOutQA does) takes as positive the first answer-bearing passage of those articles,
      wherever BM25 ranks it, over any other hit (an answer string in an unrelated article is often a coincidence);
    - no positive: the question is dropped and counted in `n_no_positive`.
    Kept questions become new QAExamples (same question, answers, id, gold_titles) with
    positive_ctxs=[positive], hard_negative_ctxs=[...], negative_ctxs=[]; input examples are not modified.
    """
    check_int("top_k", top_k, 1)
    check_int("max_hard_negatives", max_hard_negatives, 0)
    check_int("batch_size", batch_size, 1)
    answer_matcher([], match)  # validates `match` up front (ConfigError for an unknown mode)
    stats = DistantSupervisionStats(n_questions=len(qa))
    kept: list[QAExample] = []
    with tqdm(total=len(qa), desc="distant supervision", unit="question", disable=not show_progress) as bar:
        for start in range(0, len(qa), batch_size):
            batch = qa[start : start + batch_size]
            for ex, hits in zip(batch, bm25.search([ex.question for ex in batch], k=top_k), strict=True):
                contains = answer_matcher(ex.answers, match)
                positive: SearchHit | None = None
                hard: list[SearchHit] = []
                for hit in hits:
                    if hit.score <= 0:
                        break  # hits are sorted by score: the rest are zero-score padding
                    if contains(hit.passage.text):
                        if positive is None:
                            positive = hit
                    elif len(hard) < max_hard_negatives and not contains(hit.passage.title):
                        hard.append(hit)
                    if positive is not None and len(hard) >= max_hard_negatives:
                        break
                gold = _gold_positive(ex, by_title, contains) if by_title else None
                if gold is not None:
                    stats.n_gold_title += 1
                    hard = [h for h in hard if h.passage.id != gold.id]
                    positive = SearchHit(gold, next((h.score for h in hits if h.passage.id == gold.id), 0.0), 0)
                if positive is None:
                    stats.n_no_positive += 1
                    continue
                if len(hard) < max_hard_negatives:
                    stats.n_no_hard_negative += 1
                for hit in (positive, *hard):
                    stats.scores[(ex.question, hit.passage.id)] = hit.score
                kept.append(
                    QAExample(
                        ex.question,
                        list(ex.answers),
                        id=ex.id,
                        gold_titles=list(ex.gold_titles),
                        positive_ctxs=[positive.passage],
                        negative_ctxs=[],
                        hard_negative_ctxs=[h.passage for h in hard],
                    )
                )
            bar.update(len(batch))
    stats.n_kept = len(kept)
    return kept, stats


def _gold_positive(ex: QAExample, by_title: Mapping[str, Sequence[Passage]], contains) -> Passage | None:
    return next((p for t in ex.gold_titles for p in by_title.get(t, ()) if contains(p.text)), None)


def passages_by_title(passages: Sequence[Passage]) -> dict[str, list[Passage]]:
    out: dict[str, list[Passage]] = {}
    for p in passages:
        out.setdefault(p.title, []).append(p)
    return out


def question_key(question: str) -> str:
    """The grouping key of `split_train_dev`: lowercased, whitespace runs collapsed to one space, stripped."""
    return re.sub(r"\s+", " ", question).strip().lower()


def split_train_dev(
    examples: list[QAExample], dev_fraction: float = 0.1, seed: int = 0
) -> tuple[list[QAExample], list[QAExample]]:
    """Split into (train, dev) so that no question is in both.

    Examples are grouped by `question_key` (duplicates differing in case/whitespace stay together); the
    groups are shuffled with `random.Random(seed)` and the first round(dev_fraction * n_groups) go to dev,
    at least 1 when dev_fraction > 0 and there are >= 2 groups, and never all of them. So the fraction is
    one of distinct questions, not of examples. Both lists keep the input order. Deterministic per seed.
    dev_fraction outside [0, 1), or a seed that is not an integer, raises ConfigError.
    """
    check_float("dev_fraction", dev_fraction, ge=0, lt=1)
    check_int("seed", seed)
    keys = list(dict.fromkeys(question_key(ex.question) for ex in examples))
    random.Random(seed).shuffle(keys)
    n_dev = round(dev_fraction * len(keys))
    if dev_fraction > 0 and len(keys) >= 2:
        n_dev = min(max(n_dev, 1), len(keys) - 1)
    dev_keys = set(keys[:n_dev])
    train = [ex for ex in examples if question_key(ex.question) not in dev_keys]
    dev = [ex for ex in examples if question_key(ex.question) in dev_keys]
    return train, dev


def _ctx(p: Passage, question: str, scores: ScoreMap | None) -> dict:
    d: dict[str, str | float] = {"title": p.title, "text": p.text, "passage_id": p.id}
    if scores is not None and (question, p.id) in scores:
        d["score"] = float(scores[(question, p.id)])
    return d


def save_dpr_json(examples: list[QAExample], path: str | os.PathLike, scores: ScoreMap | None = None) -> None:
    """Write DPR's retriever JSON: a list of {"question", "answers", "id", "positive_ctxs", "negative_ctxs",
    "hard_negative_ctxs"}, each ctx {"title", "text", "passage_id"} plus "score" when `scores` has
    (question, passage id) (e.g. `DistantSupervisionStats.scores`). Atomic, UTF-8, compact (no indent).
    `dpr_rag.qa.load_dpr_json` reads it back with question, answers, id and passages intact."""
    data = [
        {
            "question": ex.question,
            "answers": list(ex.answers),
            "id": ex.id,
            "positive_ctxs": [_ctx(p, ex.question, scores) for p in ex.positive_ctxs],
            "negative_ctxs": [_ctx(p, ex.question, scores) for p in ex.negative_ctxs],
            "hard_negative_ctxs": [_ctx(p, ex.question, scores) for p in ex.hard_negative_ctxs],
        }
        for ex in examples
    ]
    with atomic_file(path) as f:
        json.dump(data, f, ensure_ascii=False, indent=None)


def _dense_negatives(cfg, train: list[QAExample], pool: list[Passage] | None, show_progress: bool) -> list[QAExample]:
    """The training examples with hard negatives mined by the starting encoder over the corpus (`hard_negatives.py`)."""
    from ..data.passages import load_corpus
    from ..retrieval.searcher import Searcher
    from .hard_negatives import mine_dense_negatives

    searcher = Searcher(pool if pool is not None else load_corpus(cfg.corpus), model=cfg.model, show_progress=show_progress)
    mined, stats = mine_dense_negatives(
        train,
        searcher.dense(),
        n=max(cfg.hard_negatives, 10),
        margin=cfg.negative_margin,
        sources=cfg.negatives,
        show_progress=show_progress,
    )
    if show_progress:
        print(stats.summary())
    return mined


def with_positives(examples: list[QAExample]) -> tuple[list[QAExample], int]:
    """For data that already has contexts (DPR JSON): keep the examples with at least one positive_ctxs.
    Returns (kept, number dropped)."""
    kept = [ex for ex in examples if ex.positive_ctxs]
    return kept, len(examples) - len(kept)


def load_or_build_training_data(
    cfg, out, is_main: bool = True, qa: list[QAExample] | None = None
) -> tuple[list[QAExample], list[QAExample], list[Passage]]:
    """The (train, dev, negative pool) of a training run configured by `cfg` (a TrainConfig).

    Examples come from `qa` when given (already parsed, e.g. an upload checked on arrival), else from the file
    `cfg.qa`; as they are when they carry positive passages (DPR JSON), else by distant supervision against
    `cfg.corpus`. They are saved under OUT/data in DPR's format; a resumed run reads them back, so it trains on
    exactly the same examples. The pool (random negatives for questions with too few hard negatives) is the
    corpus, or every passage of the examples when no corpus is involved. `cfg.synthetic` (DPR JSON from
    `dpr_rag.generate_questions`) is added to the training part only, never to dev (a synthetic question equal to a dev
    question is dropped); with no `cfg.qa` either, the synthetic questions are split into train and dev themselves.
    """
    from pathlib import Path

    from ..data.passages import load_corpus
    from ..data.qa import load_dpr_json, load_qa
    from ..retrieval.searcher import bm25_index

    data_dir = Path(out) / "data"
    synthetic = load_dpr_json(cfg.synthetic) if getattr(cfg, "synthetic", None) else []
    if qa is None and synthetic and cfg.qa is None:
        qa = synthetic  # no labelled questions: the synthetic ones give the dev split too
        synthetic = []
    if qa is None:
        qa = load_qa(cfg.qa)
    given = all(ex.positive_ctxs for ex in qa)  # DPR JSON with its own positives: no corpus involved
    pool: list[Passage] | None = None if given else load_corpus(cfg.corpus)
    if cfg.resume and (data_dir / "train.json").exists():
        if not (data_dir / "dev.json").exists():  # written by every run, empty or not: its loss is not a "no dev set"
            raise ConfigError(f"cannot resume: {data_dir / 'dev.json'} is missing (the run's dev set); start a new run")
        train = load_dpr_json(data_dir / "train.json")
        dev = load_dpr_json(data_dir / "dev.json", allow_empty=True)
    else:
        scores = None
        if given:
            examples, _ = with_positives(qa)
        else:
            assert pool is not None  # not given: the corpus was loaded above
            examples, stats = distant_supervision(
                qa,
                bm25_index(pool),
                max_hard_negatives=max(cfg.hard_negatives, 10),
                show_progress=cfg.show_progress and is_main,
                by_title=passages_by_title(pool) if cfg.gold_title_positives else None,
            )
            scores = stats.scores
            if is_main:
                print(f"distant supervision: {stats.summary()}")
        train, dev = split_train_dev(examples, cfg.dev_fraction, seed=cfg.seed)
        if cfg.max_examples:
            train = train[: cfg.max_examples]
        dev_keys = {question_key(ex.question) for ex in dev}
        train += [ex for ex in with_positives(synthetic)[0] if question_key(ex.question) not in dev_keys]
        if cfg.negatives != "bm25":
            train = _dense_negatives(cfg, train, pool, show_progress=cfg.show_progress and is_main)
        if not train:
            raise ConfigError("no training examples: no question has a positive passage")
        if is_main:
            save_dpr_json(train, data_dir / "train.json", scores)
            save_dpr_json(dev, data_dir / "dev.json", scores)
    if pool is None:
        pool = list({p.id or p.text: p for ex in train for p in [*ex.positive_ctxs, *ex.hard_negative_ctxs]}.values())
    return train, dev, pool
