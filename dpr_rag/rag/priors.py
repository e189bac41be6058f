"""The prior p(z | x) of RAG over any retriever: softmax(score / τ) over the top k, with a temperature τ suited to the
retriever's score scale (`retrieval/score_scale.py`). Without it, p(z|x) would be almost uniform or one-hot."""

from __future__ import annotations

from ..retrieval.base import Retriever
from ..retrieval.score_scale import TEMPERATURES, score_temperature

__all__ = ["TEMPERATURES", "default_temperature"]


def default_temperature(retriever: Retriever) -> float:
    """τ suited to the retriever's scores (`score_scale.TEMPERATURES`)."""
    return score_temperature(retriever)
