"""Distant supervision with BM25, train/dev split, DPR JSON saving."""

from __future__ import annotations

import json

import pytest

from dpr_rag.data.passages import Passage
from dpr_rag.data.qa import QAExample, load_dpr_json
from dpr_rag.errors import ConfigError
from dpr_rag.matching import has_answer
from dpr_rag.retrieval.bm25 import BM25Retriever
from dpr_rag.training.distant_supervision import (
    DistantSupervisionStats,
    distant_supervision,
    question_key,
    save_dpr_json,
    split_train_dev,
    with_positives,
)

PAINTER_Q = "Who painted the Mona Lisa portrait in the Louvre?"


@pytest.fixture
def corpus() -> list[Passage]:
    """Mona Lisa passages where the best BM25 match lacks the answer, plus filler."""
    return [
        Passage(
            "m1",
            "Mona Lisa",
            "The Mona Lisa portrait hangs in the Louvre. The Mona Lisa portrait is the most visited painting in the Louvre.",
        ),
        Passage("m2", "Louvre", "The Louvre in Paris shows the Mona Lisa portrait to millions of visitors."),
        Passage("m3", "Renaissance art", "Leonardo da Vinci painted the Mona Lisa."),
        Passage("m4", "Leonardo da Vinci", "This Italian polymath painted the Mona Lisa portrait."),  # answer in title only
        Passage("m5", "Mona Lisa (film)", "Mona Lisa is a 1986 British crime film."),
        Passage("m6", "Raphael", "Raphael also painted portraits; he admired the Mona Lisa."),
        Passage("e1", "Eiffel Tower", "The Eiffel Tower in Paris was completed in 1889."),
        Passage("j1", "Jupiter", "Jupiter is the largest planet in the Solar System."),
    ]


def _ranked(bm25: BM25Retriever, q: str) -> list:
    return [h for h in bm25.search([q], k=len(bm25.passages))[0] if h.score > 0]


def test_positive_is_highest_ranked_answer_passage_and_top1_is_first_hard_negative(corpus):
    bm25 = BM25Retriever(corpus)
    answers = ["Leonardo da Vinci"]
    hits = _ranked(bm25, PAINTER_Q)
    # the setup this test relies on: BM25's top-1 lacks the answer, the answer-bearing one ranks lower
    assert not has_answer(answers, hits[0].passage.text)
    pos_rank = next(h.rank for h in hits if has_answer(answers, h.passage.text))
    assert pos_rank >= 2 and hits[pos_rank - 1].passage.id == "m3"

    kept, stats = distant_supervision(
        [QAExample(PAINTER_Q, answers, id="q1", gold_titles=["Mona Lisa"])],
        bm25,
        top_k=10,
        max_hard_negatives=30,
        show_progress=False,
    )
    assert len(kept) == 1 and stats.n_kept == 1 and stats.n_no_positive == 0
    ex = kept[0]
    assert (ex.question, ex.answers, ex.id, ex.gold_titles) == (PAINTER_Q, answers, "q1", ["Mona Lisa"])
    assert [p.id for p in ex.positive_ctxs] == ["m3"]
    assert ex.negative_ctxs == []
    hard_ids = [p.id for p in ex.hard_negative_ctxs]
    assert hard_ids[0] == hits[0].passage.id
    # hard negatives: every positive-score hit without the answer (in text or title), in BM25 order
    expected = [
        h.passage.id for h in hits if not has_answer(answers, h.passage.text) and not has_answer(answers, h.passage.title)
    ]
    assert hard_ids == expected
    assert "m4" not in hard_ids  # answer in the title only: neither positive nor hard negative
    assert all(not has_answer(answers, p.text) for p in ex.hard_negative_ctxs)
    assert "j1" not in hard_ids  # zero BM25 score: not a BM25 hit
    # hard negatives fewer than asked -> counted
    assert stats.n_no_hard_negative == 1
    assert stats.scores[(PAINTER_Q, "m3")] == pytest.approx(hits[pos_rank - 1].score)


def test_dropped_questions_and_max_hard_negatives(corpus):
    bm25 = BM25Retriever(corpus)
    qa = [
        QAExample(PAINTER_Q, ["Leonardo da Vinci"], id="a"),
        QAExample("Who painted the Mona Lisa?", ["Vincent van Gogh"], id="b"),  # answer nowhere
        QAExample("When was the Eiffel Tower in Paris completed?", ["1889"], id="c"),
    ]
    kept, stats = distant_supervision(qa, bm25, top_k=100, max_hard_negatives=2, show_progress=False)
    assert [ex.id for ex in kept] == ["a", "c"]
    assert (stats.n_questions, stats.n_kept, stats.n_no_positive) == (3, 2, 1)
    assert stats.n_kept + stats.n_no_positive == stats.n_questions
    by_id = {ex.id: ex for ex in kept}
    assert len(by_id["a"].hard_negative_ctxs) == 2  # capped
    assert [p.id for p in by_id["c"].positive_ctxs] == ["e1"]
    assert len(by_id["c"].hard_negative_ctxs) < 2  # only "Paris" in m2 is a further hit
    assert stats.n_no_hard_negative == 1
    assert "kept 2" in stats.summary() and "3 questions" in stats.summary()
    # the inputs are not modified
    assert all(not ex.positive_ctxs and not ex.hard_negative_ctxs for ex in qa)

    kept0, stats0 = distant_supervision(qa[:1], bm25, max_hard_negatives=0, show_progress=False)
    assert kept0[0].hard_negative_ctxs == [] and stats0.n_no_hard_negative == 0


def test_top_k_limits_the_search(corpus):
    bm25 = BM25Retriever(corpus)
    hits = _ranked(bm25, PAINTER_Q)
    pos_rank = next(h.rank for h in hits if has_answer(["Leonardo da Vinci"], h.passage.text))
    qa = [QAExample(PAINTER_Q, ["Leonardo da Vinci"])]
    kept, stats = distant_supervision(qa, bm25, top_k=pos_rank - 1, show_progress=False)
    assert kept == [] and stats.n_no_positive == 1


def test_regex_match_mode(toy_passages):
    bm25 = BM25Retriever(toy_passages)
    qa = [QAExample("When was the Eiffel Tower in Paris completed?", [r"18\d\d"], id="r")]
    kept, _ = distant_supervision(qa, bm25, match="regex", show_progress=False)
    assert [p.title for p in kept[0].positive_ctxs] == ["Eiffel Tower"]
    assert all(not has_answer([r"18\d\d"], p.text, match="regex") for p in kept[0].hard_negative_ctxs)
    kept, stats = distant_supervision(qa, bm25, match="string", show_progress=False)
    assert kept == [] and stats.n_no_positive == 1  # as a plain string the pattern is not in the text


def test_bad_arguments(toy_passages):
    bm25 = BM25Retriever(toy_passages)
    qa = [QAExample("Who painted the Mona Lisa?", ["Leonardo da Vinci"])]
    for kwargs in ({"match": "fuzzy"}, {"top_k": 0}, {"max_hard_negatives": -1}, {"batch_size": 0}):
        with pytest.raises(ConfigError):
            distant_supervision(qa, bm25, show_progress=False, **kwargs)
    kept, stats = distant_supervision([], bm25, show_progress=False)
    assert kept == [] and stats == DistantSupervisionStats()


def test_batches_give_the_same_result(toy_passages):
    bm25 = BM25Retriever(toy_passages)
    qa = [QAExample(f"{p.title}?", [p.text.split()[-1].rstrip(".")], id=p.id) for p in toy_passages]
    one, s1 = distant_supervision(qa, bm25, batch_size=1, show_progress=False)
    many, s2 = distant_supervision(qa, bm25, batch_size=256, show_progress=False)
    assert one == many and s1 == s2 and s1.n_kept > 0


def _ex(q: str, i: int) -> QAExample:
    return QAExample(q, ["a"], id=str(i))


def test_split_train_dev_keeps_duplicates_together_and_is_deterministic():
    questions = [f"question number {i}" for i in range(50)]
    examples = [_ex(q, i) for i, q in enumerate(questions)]
    examples += [_ex("  QUESTION   number 3 ", 100), _ex("Question number\t7", 101), _ex("question NUMBER 3", 102)]
    for seed in range(5):
        train, dev = split_train_dev(examples, dev_fraction=0.2, seed=seed)
        assert len(train) + len(dev) == len(examples)
        assert sorted(e.id for e in train + dev) == sorted(e.id for e in examples)
        assert not {question_key(e.question) for e in train} & {question_key(e.question) for e in dev}
        assert len({question_key(e.question) for e in dev}) == 10  # 20% of 50 distinct questions
        assert split_train_dev(examples, 0.2, seed) == (train, dev)
    splits = {tuple(e.id for e in split_train_dev(examples, 0.2, seed)[1]) for seed in range(5)}
    assert len(splits) > 1  # the seed matters


def test_split_train_dev_edge_cases():
    two = [_ex("first", 0), _ex("second", 1), _ex("FIRST", 2)]
    train, dev = split_train_dev(two, dev_fraction=0.01)
    assert dev and train  # non-empty dev with >= 2 distinct questions, never everything
    assert split_train_dev(two, dev_fraction=0.0) == (two, [])
    for bad in (1.0, -0.1, 1.5, "0.1", True):
        with pytest.raises(ConfigError):
            split_train_dev(two, dev_fraction=bad)


def test_save_dpr_json_round_trip(tmp_path, corpus):
    bm25 = BM25Retriever(corpus)
    qa = [
        QAExample(PAINTER_Q, ["Leonardo da Vinci", "Léonard de Vinci"], id="q1"),
        QAExample("When was the Eiffel Tower in Paris completed?", ["1889"], id="q2"),
    ]
    kept, stats = distant_supervision(qa, bm25, show_progress=False)
    kept[1].negative_ctxs = [corpus[-1]]
    path = tmp_path / "out" / "train.json"
    save_dpr_json(kept, path, scores=stats.scores)
    raw = path.read_text(encoding="utf-8")
    assert "Léonard" in raw and "\n" not in raw  # ensure_ascii=False, compact
    data = json.loads(raw)
    assert set(data[0]) >= {"question", "answers", "positive_ctxs", "negative_ctxs", "hard_negative_ctxs"}
    assert data[0]["positive_ctxs"][0]["score"] == pytest.approx(stats.scores[(PAINTER_Q, "m3")])
    assert all("score" in c for c in data[0]["hard_negative_ctxs"])
    assert "score" not in data[1]["negative_ctxs"][0]  # unknown score: no field
    back = load_dpr_json(path)
    assert len(back) == len(kept)
    for a, b in zip(kept, back, strict=True):
        assert (a.question, a.answers, a.id) == (b.question, b.answers, b.id)
        assert a.positive_ctxs == b.positive_ctxs
        assert a.hard_negative_ctxs == b.hard_negative_ctxs
        assert a.negative_ctxs == b.negative_ctxs
    save_dpr_json(kept, path)  # without scores
    assert all("score" not in c for c in json.loads(path.read_text())[0]["positive_ctxs"])
    assert not [p for p in path.parent.iterdir() if p.name != "train.json"]  # no temporary left behind


def test_with_positives():
    p = Passage("1", "t", "x")
    examples = [
        QAExample("a", ["1"], positive_ctxs=[p]),
        QAExample("b", ["1"], hard_negative_ctxs=[p]),
        QAExample("c", ["1"], positive_ctxs=[p, p]),
        QAExample("d", ["1"]),
    ]
    kept, dropped = with_positives(examples)
    assert [e.question for e in kept] == ["a", "c"] and dropped == 2
    assert with_positives([]) == ([], 0)


def test_default_data_slice():
    from dpr_rag.data.defaults import default_corpus
    from dpr_rag.data.qa import load_fanoutqa

    qa = load_fanoutqa()[:200]
    bm25 = BM25Retriever(default_corpus())
    kept, stats = distant_supervision(qa, bm25, show_progress=False)
    assert stats.n_questions == 200 and stats.n_kept == len(kept) > 0
    assert stats.n_kept + stats.n_no_positive == stats.n_questions
    assert all(has_answer(ex.answers, ex.positive_ctxs[0].text) for ex in kept)
    assert all(len(ex.positive_ctxs) == 1 and len(ex.hard_negative_ctxs) <= 30 for ex in kept)
    assert all(not has_answer(ex.answers, p.text) for ex in kept for p in ex.hard_negative_ctxs)
