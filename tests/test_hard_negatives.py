"""Dense-mined hard negatives with a false-negative margin, and gold-title positives in distant supervision."""

from __future__ import annotations

import numpy as np
import pytest

from dpr_rag.data.passages import Passage
from dpr_rag.data.qa import QAExample
from dpr_rag.errors import ConfigError
from dpr_rag.retrieval.bm25 import BM25Retriever
from dpr_rag.retrieval.dense import DenseRetriever, encode_corpus
from dpr_rag.retrieval.encoder import DualEncoder
from dpr_rag.training.distant_supervision import distant_supervision, passages_by_title
from dpr_rag.training.hard_negatives import mine_dense_negatives
from dpr_rag.training.trainer import TrainConfig


@pytest.fixture
def dense(tiny_model_dir, toy_passages):
    encoder = DualEncoder.from_pretrained(str(tiny_model_dir))
    return DenseRetriever(encoder, encode_corpus(encoder, toy_passages, show_progress=False), toy_passages)


def _example(toy_passages, bm25_negative=None):
    eiffel = toy_passages[1]
    return QAExample("where is the eiffel tower", ["Paris"], positive_ctxs=[eiffel], hard_negative_ctxs=bm25_negative or [])


def test_dense_negatives_skip_the_positive_and_every_answer_bearing_passage(dense, toy_passages):
    extra = Passage("x", "Paris", "Paris is the capital of France.")  # contains the answer: a false negative
    corpus = [*toy_passages, extra]
    retriever = DenseRetriever(dense.encoder, encode_corpus(dense.encoder, corpus, show_progress=False), corpus)
    (mined,), stats = mine_dense_negatives([_example(toy_passages)], retriever, n=20, show_progress=False)
    ids = [p.id for p in mined.hard_negative_ctxs]
    assert "1" not in ids and "x" not in ids and len(ids) == len(corpus) - 2
    assert stats.n_answer_bearing == 2 and stats.n_short == 1


def test_dense_negatives_are_in_the_encoders_rank_order(dense, toy_passages):
    (mined,), _ = mine_dense_negatives([_example(toy_passages)], dense, n=3, show_progress=False)
    q = dense.encode(["where is the eiffel tower"])[0]
    sims = [float(dense.encoder.encode_passages([p], show_progress=False)[0] @ q) for p in mined.hard_negative_ctxs]
    assert len(sims) == 3 and sims == sorted(sims, reverse=True)


def test_the_margin_drops_candidates_scored_close_to_the_positive(dense, toy_passages):
    ex = _example(toy_passages)
    q = dense.encode([ex.question])[0]
    pos = float(dense.encoder.encode_passages([ex.positive_ctxs[0]], show_progress=False)[0] @ q)
    others = [p for p in toy_passages if p.id != "1"]
    sims = np.array([float(dense.encoder.encode_passages([p], show_progress=False)[0] @ q) for p in others])
    gaps = np.sort(pos - sims)
    margin = float(gaps[len(gaps) // 2 - 1] + gaps[len(gaps) // 2]) / 2  # between two gaps: no candidate on the boundary
    (mined,), stats = mine_dense_negatives([ex], dense, n=20, margin=margin, show_progress=False)
    kept = {p.id for p in mined.hard_negative_ctxs}
    assert kept == {p.id for p, s in zip(others, sims, strict=True) if s < pos - margin}
    assert stats.n_within_margin == len(others) - len(kept) > 0


def test_both_sources_interleave_dense_and_bm25_negatives(dense, toy_passages):
    bm25_negs = [toy_passages[7], toy_passages[6]]
    (mined,), _ = mine_dense_negatives([_example(toy_passages, bm25_negs)], dense, n=2, sources="both", show_progress=False)
    (dense_only,), _ = mine_dense_negatives([_example(toy_passages)], dense, n=2, show_progress=False)
    d = [p.id for p in dense_only.hard_negative_ctxs]
    expected = list(dict.fromkeys([d[0], "7", d[1], "6"]))
    assert [p.id for p in mined.hard_negative_ctxs] == expected
    with pytest.raises(ConfigError, match="sources"):
        mine_dense_negatives([_example(toy_passages)], dense, sources="bm25")
    with pytest.raises(ConfigError, match="negatives"):
        TrainConfig(out="x", negatives="random")


def test_gold_title_positives_beat_a_higher_ranked_coincidence():
    passages = [
        Passage("0", "Tower trivia", "The tower was completed in 1889, the tower tower tower year of a fair."),
        Passage("1", "Eiffel Tower", "The Eiffel Tower in Paris was finished in 1889 for the World's Fair."),
        Passage("2", "Louvre", "The Louvre is a museum in Paris."),
    ]
    ex = QAExample("when was the tower completed", ["1889"], gold_titles=["Eiffel Tower"])
    bm25 = BM25Retriever(passages)
    (plain,), _ = distant_supervision([ex], bm25, show_progress=False)
    assert plain.positive_ctxs[0].id == "0"  # BM25's best answer-bearing hit
    (gold,), stats = distant_supervision([ex], bm25, show_progress=False, by_title=passages_by_title(passages))
    assert gold.positive_ctxs[0].id == "1" and stats.n_gold_title == 1
    assert "1" not in [p.id for p in gold.hard_negative_ctxs]
    no_gold = QAExample("when was the tower completed", ["1889"], gold_titles=["Louvre"])  # its article lacks the answer
    (fallback,), stats = distant_supervision([no_gold], bm25, show_progress=False, by_title=passages_by_title(passages))
    assert fallback.positive_ctxs[0].id == "0" and stats.n_gold_title == 0


def test_training_data_with_dense_negatives(tmp_path, tiny_model_dir, toy_passages):
    from dpr_rag.data.passages import save_jsonl
    from dpr_rag.training.distant_supervision import load_or_build_training_data

    save_jsonl(toy_passages, tmp_path / "corpus.jsonl")
    qa = [
        QAExample("where is the eiffel tower", ["Paris"]),
        QAExample("who painted the mona lisa", ["Leonardo da Vinci"]),
        QAExample("who created python", ["Guido van Rossum"]),
    ]
    cfg = TrainConfig(
        out=str(tmp_path / "run"),
        corpus=str(tmp_path / "corpus.jsonl"),
        model=str(tiny_model_dir),
        negatives="dense",
        hard_negatives=2,
        dev_fraction=0.0,
        show_progress=False,
    )
    train, _, _ = load_or_build_training_data(cfg, tmp_path / "run", qa=qa)
    assert len(train) == 3
    for ex in train:
        assert len(ex.hard_negative_ctxs) >= 2
        assert all(not any(a in p.text for a in ex.answers) for p in ex.hard_negative_ctxs)
        assert ex.positive_ctxs[0].id not in {p.id for p in ex.hard_negative_ctxs}
