"""The prior p(z | x) of RAG over any retriever: softmax(score / τ) over the top k, with a temperature τ suited to the
retriever's score scale (cosines of a normalised dense encoder lie in [-1, 1]; BM25 and hybrid scores are unbounded;
reciprocal-rank fusion differs by ~1e-3 between ranks). Without it, p(z|x) would be almost uniform or one-hot."""

from __future__ import annotations

from ..retrieval.base import Retriever
from ..retrieval.dense import DenseRetriever
from ..retrieval.hybrid import HybridRetriever
from ..retrieval.rerank import RerankedRetriever

# p(z|x) = softmax(score / τ) over the top k, τ per retriever's score scale: on 200 NQ train questions the median gap
# between the top-1 and top-5 scores is 0.093 (dense cosine), 1.61 (BM25), 5.9 (linear hybrid), so these τ give each
# about the same spread of priors (~1.6-1.9 nats between first and fifth). RRF scores differ by ~1e-3 between ranks.
# A cross-encoder trained with the listwise softmax (training/rerank_loss.py) already scores in nats: τ = 1.
TEMPERATURES = {"dense": 0.05, "bm25": 1.0, "hybrid": 3.0, "hybrid-rrf": 0.001, "rerank": 1.0}


def default_temperature(retriever: Retriever) -> float:
    """τ suited to the retriever's scores (`TEMPERATURES`); 1 for an unnormalised dense encoder (inner products)."""
    if isinstance(retriever, RerankedRetriever):
        return TEMPERATURES["rerank"]
    if isinstance(retriever, DenseRetriever):
        return TEMPERATURES["dense"] if retriever.encoder.settings.normalize else 1.0
    if isinstance(retriever, HybridRetriever) and retriever.fusion == "rrf":
        return TEMPERATURES["hybrid-rrf"]
    return TEMPERATURES.get(retriever.name, 1.0)
