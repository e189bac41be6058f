"""dpr-rag: dense passage retrieval, BM25 and hybrid search, and retrieval-augmented generation."""

from .data.passages import Passage, load_corpus
from .data.qa import QAExample, load_qa
from .errors import ConfigError, DataFormatError, DprRagError
from .matching import exact_match, has_answer, token_f1
from .retrieval.base import SearchHit
from .retrieval.bm25 import BM25Retriever
from .retrieval.dense import DenseRetriever
from .retrieval.encoder import DualEncoder
from .retrieval.faiss_index import DenseIndex
from .retrieval.hybrid import HybridRetriever
from .retrieval.searcher import Searcher

__all__ = [
    "BM25Retriever",
    "ConfigError",
    "DataFormatError",
    "DenseIndex",
    "DenseRetriever",
    "DprRagError",
    "DualEncoder",
    "HybridRetriever",
    "Passage",
    "QAExample",
    "SearchHit",
    "Searcher",
    "exact_match",
    "has_answer",
    "load_corpus",
    "load_qa",
    "token_f1",
]
