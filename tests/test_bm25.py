import math

import numpy as np
import pytest

from dpr_rag.data.defaults import default_corpus
from dpr_rag.data.passages import Passage
from dpr_rag.errors import ConfigError, DataFormatError
from dpr_rag.retrieval.bm25 import ENGINES, BM25Retriever, tokenize

TINY = [
    Passage("t0", "", "cat cat dog"),
    Passage("t1", "", "dog fish"),
    Passage("t2", "", "bird fish fish fish"),
]

HAND = [
    Passage("h0", "Eiffel Tower", "A wrought-iron lattice tower on the Champ de Mars in Paris, France."),
    Passage("h1", "Great Wall of China", "A series of fortifications built across the historical northern borders of China."),
    Passage(
        "h2", "Photosynthesis", "The process by which green plants use sunlight to synthesize food from carbon dioxide and water."
    ),
    Passage(
        "h3", "Mount Everest", "Earth's highest mountain above sea level, located in the Himalayas on the Nepal-China border."
    ),
    Passage("h4", "Albert Einstein", "A theoretical physicist who developed the theory of relativity."),
    Passage("h5", "Amazon River", "The largest river by discharge volume of water in the world, flowing through South America."),
]

QUERIES = [
    "who developed the theory of relativity",
    "where is the eiffel tower",
    "highest mountain in the world",
    "how do plants make food from sunlight",
    "largest river in south america",
    "who was the first president of the united states",
    "when did world war ii end",
    "what is the capital of australia",
    "who wrote romeo and juliet",
    "which planet is closest to the sun",
    "what language is spoken in brazil",
    "who painted the mona lisa",
    "what is the boiling point of water",
    "when was the great wall of china built",
    "who invented the telephone",
    "what is the largest ocean on earth",
    "who won the football world cup in 2014",
    "what is the chemical symbol for gold",
    "american rock band formed in the 1990s",
    "film directed by steven spielberg",
]


@pytest.fixture(scope="module")
def sample():
    return default_corpus()[:2000] + HAND


@pytest.fixture(scope="module")
def engines(sample):
    return {e: BM25Retriever(sample, engine=e) for e in ENGINES}


def lucene_bm25(tf, dl, avgdl, df, n, k1, b):
    return math.log(1 + (n - df + 0.5) / (df + 0.5)) * tf / (tf + k1 * (1 - b + b * dl / avgdl))


def test_tokenize_lowercases_drops_stopwords_and_stems():
    assert tokenize(["The Running Dogs of Paris"]) == [["run", "dog", "pari"]]
    assert tokenize(["the of and", ""]) == [[], []]


def test_engines_agree_on_top10_and_scores(engines):
    a, r = engines["bm25s"], engines["rank_bm25"]
    hits_a, hits_r = a.search(QUERIES, k=10), r.search(QUERIES, k=10)
    for q, ha, hr in zip(QUERIES, hits_a, hits_r, strict=True):
        assert [h.passage.id for h in ha] == [h.passage.id for h in hr], q
        assert [h.rank for h in ha] == list(range(1, 11))
        assert ha[0].score > 0
        np.testing.assert_allclose([h.score for h in ha], [h.score for h in hr], rtol=1e-4)
    for q in QUERIES[:5]:
        sa, sr = a.scores(q), r.scores(q)
        assert sa.dtype == sr.dtype == np.float32 and sa.shape == (len(a.passages),)
        np.testing.assert_allclose(sa, sr, rtol=1e-4, atol=1e-6)


def test_scores_are_sorted_and_match_scores_vector(engines):
    for ret in engines.values():
        hits = ret.search(["highest mountain in the world"], k=10)[0]
        s = ret.scores("highest mountain in the world")
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert hits[0].score == pytest.approx(float(s.max()))


@pytest.mark.parametrize("engine", ENGINES)
def test_obvious_top_passage(engine, sample):
    ret = BM25Retriever(HAND, engine=engine)
    expected = {"eiffel tower paris": "h0", "theory of relativity physicist": "h4", "himalayas nepal": "h3", "great wall": "h1"}
    top = ret.search(list(expected), k=1)
    assert [h[0].passage.id for h in top] == list(expected.values())
    # title words alone find the passage: "Einstein" appears only in h4's title
    assert ret.search(["einstein"], k=1)[0][0].passage.id == "h4"


@pytest.mark.parametrize("engine", ENGINES)
def test_matches_hand_computed_bm25(engine):
    # corpus lengths 3, 2, 4 -> avgdl 3; "fish" is in 2 of 3 docs; t2 has tf 3, dl 4
    for k1, b in [(0.9, 0.4), (1.2, 0.75), (0.9, 0.0)]:
        s = BM25Retriever(TINY, k1=k1, b=b, engine=engine).scores("fish")
        assert s[0] == 0
        assert s[1] == pytest.approx(lucene_bm25(1, 2, 3, 2, 3, k1, b), rel=1e-6)
        assert s[2] == pytest.approx(lucene_bm25(3, 4, 3, 2, 3, k1, b), rel=1e-6)
    # b=0 removes length normalisation: 3 / (3 + 0.9) times idf
    s = BM25Retriever(TINY, k1=0.9, b=0.0, engine=engine).scores("fish")
    assert s[2] == pytest.approx(math.log(1 + 1.5 / 2.5) * 3 / 3.9, rel=1e-6)
    default, other = BM25Retriever(TINY, engine=engine), BM25Retriever(TINY, k1=1.5, b=0.75, engine=engine)
    assert not np.allclose(default.scores("fish"), other.scores("fish"))


@pytest.mark.parametrize("engine", ENGINES)
def test_term_in_every_passage_scores_positive(engine):
    # Lucene idf is never negative (classic Robertson idf would be ln(0.5/3.5) < 0 here)
    ret = BM25Retriever([Passage(str(i), "", f"common word{i}") for i in range(3)], engine=engine)
    assert (ret.scores("common") > 0).all()


@pytest.mark.parametrize("engine", ENGINES)
def test_ties_k_clipping_and_stopword_queries(engine):
    corpus = [Passage("a", "", "apple banana"), Passage("b", "", "cherry"), Passage("c", "", "apple banana")]
    ret = BM25Retriever(corpus, engine=engine)
    hits = ret.search(["apple"], k=1000)[0]
    assert [h.passage.id for h in hits] == ["a", "c", "b"]  # tie a/c broken by corpus position, k clipped to 3
    assert hits[0].score == hits[1].score > 0 and hits[2].score == 0
    for q in ["the of and", "xyzzy"]:
        hits = ret.search([q], k=2)[0]
        assert [(h.passage.id, h.score, h.rank) for h in hits] == [("a", 0.0, 1), ("b", 0.0, 2)]
        assert not ret.scores(q).any()


@pytest.mark.parametrize("engine", ENGINES)
def test_many_ties_keep_corpus_order(engine):
    # 60 identical matches interleaved with non-matches: partial selection must still keep corpus order
    corpus = [Passage(str(i), "", "apple pie" if i % 3 else "cherry tart") for i in range(90)]
    hits = BM25Retriever(corpus, engine=engine).search(["apple"], k=25)[0]
    assert [h.passage.id for h in hits] == [str(i) for i in range(90) if i % 3][:25]
    assert len({h.score for h in hits}) == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_save_load_roundtrip(engine, sample, tmp_path):
    ret = BM25Retriever(sample[:500] + HAND, k1=1.1, b=0.5, engine=engine)
    ret.save(tmp_path / "idx")
    ret.save(tmp_path / "idx")  # overwriting an existing index works
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no temp folder left behind
    loaded = BM25Retriever.load(tmp_path / "idx")
    assert (loaded.engine, loaded.k1, loaded.b, loaded.name) == (engine, 1.1, 0.5, "bm25")
    assert loaded.passages == ret.passages
    for before, after in zip(ret.search(QUERIES, k=10), loaded.search(QUERIES, k=10), strict=True):
        assert [(h.passage.id, h.score) for h in before] == [(h.passage.id, h.score) for h in after]
    np.testing.assert_array_equal(ret.scores(QUERIES[0]), loaded.scores(QUERIES[0]))


def test_load_errors(tmp_path):
    with pytest.raises(DataFormatError, match="not found"):
        BM25Retriever.load(tmp_path / "missing")
    BM25Retriever(HAND).save(tmp_path / "idx")
    (tmp_path / "idx" / "vocab.index.json").unlink()
    with pytest.raises(DataFormatError, match="vocab.index.json"):
        BM25Retriever.load(tmp_path / "idx")
    BM25Retriever(HAND, engine="rank_bm25").save(tmp_path / "idx2")
    (tmp_path / "idx2" / "bm25.json").unlink()
    with pytest.raises(DataFormatError, match=r"idx2.*bm25\.json"):
        BM25Retriever.load(tmp_path / "idx2")


def test_bad_arguments():
    ret = BM25Retriever(HAND)
    for queries, k in [([""], 10), (["   "], 10), ([], 10), (["paris"], 0), ("paris", 10)]:
        with pytest.raises(ConfigError):
            ret.search(queries, k=k)
    with pytest.raises(ConfigError, match="bm25s, rank_bm25"):
        BM25Retriever(HAND, engine="lucene")
    with pytest.raises(ConfigError):
        BM25Retriever(HAND, b=1.5)
    with pytest.raises(ConfigError):
        BM25Retriever([])
