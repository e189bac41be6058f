"""dpr-rag: dense passage retrieval, BM25 and hybrid search, and retrieval-augmented generation."""
from .answers import exact_match, has_answer, token_f1
from .bm25 import BM25Retriever
from .dense import DenseRetriever
from .encoder import DualEncoder
from .errors import ConfigError, DataFormatError, DprRagError
from .faiss_index import DenseIndex
from .hybrid import HybridRetriever
from .passages import Passage, load_corpus
from .qa import QAExample, load_qa
from .retriever import SearchHit
from .searcher import Searcher

__all__ = [
    "BM25Retriever", "ConfigError", "DataFormatError", "DenseIndex", "DenseRetriever", "DprRagError", "DualEncoder",
    "HybridRetriever", "Passage", "QAExample", "SearchHit", "Searcher", "exact_match", "has_answer", "load_corpus",
    "load_qa", "token_f1",
]
