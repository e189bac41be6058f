"""Sparse retrieval: Okapi BM25 over `title + " " + text`, the baseline DPR compares against.

Scoring (Lucene's BM25, as used by pyserini/Anserini), for query terms t (counted with repetition) and doc d:

    score(q, d) = sum_t idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

N = number of passages, df = passages containing t, |d| = tokens in d, avgdl = mean |d|. Lucene's idf is never
negative, unlike the classic Robertson idf ln((N - df + 0.5) / (df + 0.5)) that rank_bm25 floors with an epsilon;
Lucene (since 8.0) also drops the constant (k1 + 1) numerator factor, which changes no ranking.
pyserini's open-domain QA setting, used for DPR's BM25 baselines, is k1=0.9, b=0.4: the defaults here.

Two engines compute this same function: "bm25s" (default; precomputed sparse matrix, fast) and "rank_bm25"
(pure-Python reference, slow), so either can check the other. Both share `tokenize`: lowercase, bm25s's English
stopword list, words of 2+ characters, English Snowball stemmer (PyStemmer). It is close to, not identical to,
pyserini's analyzer (Porter stemmer, Lucene stopwords), so scores are comparable in kind, not bit for bit.

`search` always returns min(k, len(passages)) hits, ordered by score then corpus position. Passages sharing no
term with the query score 0 and fill the tail in corpus order; a query of only stopwords / unknown words thus
gets the first k passages, all with score 0.
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path

import bm25s
import numpy as np
from rank_bm25 import BM25Okapi

from ..data.passages import Passage, load_jsonl, save_jsonl
from ..errors import ConfigError, DataFormatError
from ..storage import atomic_dir, read_json
from .base import SearchHit, check_queries

ENGINES = ("bm25s", "rank_bm25")
FORMAT_VERSION = 1
TOKENIZER_ID = "bm25s-en-stopwords+snowball-english"  # saved with an index: a changed tokeniser invalidates it
BM25S_FILES = ("params.index.json", "vocab.index.json", "data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy")
_local = threading.local()  # PyStemmer objects are not thread-safe: one per thread


def _stemmer():
    if not hasattr(_local, "stemmer"):
        try:
            import Stemmer
        except ImportError as e:
            raise ConfigError("BM25 needs PyStemmer for its stemmer: pip install PyStemmer") from e
        _local.stemmer = Stemmer.Stemmer("english")
    return _local.stemmer


def tokenize(texts: list[str]) -> list[list[str]]:
    """The one tokeniser of both engines, for passages and queries alike."""
    return bm25s.tokenize(list(texts), lower=True, stopwords="en", stemmer=_stemmer(), return_ids=False, show_progress=False)


def passage_text(p: Passage) -> str:
    return f"{p.title} {p.text}" if p.title else p.text  # the title carries much of a Wikipedia passage's signal


class _LuceneOkapi(BM25Okapi):
    """rank_bm25's Okapi made to compute Lucene's BM25 (idf and tf part), i.e. what bm25s method="lucene" does.
    Only get_scores is overridden; the inherited get_batch_scores keeps rank_bm25's formula and is not used."""

    def _calc_idf(self, nd: dict[str, int]) -> None:
        n = self.corpus_size
        self.idf = {w: math.log(1 + (n - df + 0.5) / (df + 0.5)) for w, df in nd.items()}

    def get_scores(self, query: list[str]) -> np.ndarray:
        score = np.zeros(self.corpus_size)
        norm = self.k1 * (1 - self.b + self.b * np.array(self.doc_len) / self.avgdl)
        for q in query:  # same loop as the parent, minus its (k1 + 1) factor
            tf = np.array([doc.get(q) or 0 for doc in self.doc_freqs])
            score += self.idf.get(q, 0.0) * tf / (tf + norm)
        return score


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores, ties broken by corpus position, without sorting the whole corpus."""
    n = len(scores)
    k = min(k, n)
    if k < n:
        cand = np.flatnonzero(scores >= np.partition(scores, n - k)[n - k])  # all that tie with the k-th, in order
    else:
        cand = np.arange(n)
    return cand[np.argsort(-scores[cand], kind="stable")][:k]


class BM25Retriever:
    name = "bm25"

    def __init__(
        self, passages: list[Passage], k1: float = 0.9, b: float = 0.4, engine: str = "bm25s", show_progress: bool = False
    ):
        self._setup(passages, k1, b, engine)
        tokens = tokenize([passage_text(p) for p in self.passages])
        if not any(tokens):
            raise ConfigError("no passage has an indexable word (all empty, stopwords or 1-letter words)")
        self._build(tokens, show_progress)

    def _setup(self, passages: list[Passage], k1: float, b: float, engine: str) -> None:
        if engine not in ENGINES:
            raise ConfigError(f"unknown BM25 engine {engine!r}; choose one of: {', '.join(ENGINES)}")
        if not (isinstance(k1, (int, float)) and k1 >= 0) or not (isinstance(b, (int, float)) and 0 <= b <= 1):
            raise ConfigError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1!r}, b={b!r}")
        self.passages = list(passages)
        if not self.passages:
            raise ConfigError("cannot build a BM25 index over an empty corpus")
        self.k1, self.b, self.engine = float(k1), float(b), engine

    def _build(self, tokens: list[list[str]], show_progress: bool = False) -> None:
        if self.engine == "bm25s":
            self._index = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
            self._index.index(tokens, show_progress=show_progress)
        else:
            self._tokens = tokens  # kept for save(): rank_bm25 has no format of its own
            self._index = _LuceneOkapi(tokens, k1=self.k1, b=self.b)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage for one query, float32 in corpus order (0 for no shared term)."""
        q = tokenize([query])[0]
        if self.engine == "bm25s":
            ids = self._index.get_tokens_ids(q)
            # bm25s' get_scores fails on an empty id list (all stopwords / unknown words)
            s = self._index.get_scores_from_ids(ids) if ids else np.zeros(len(self.passages))
        else:
            s = self._index.get_scores(q)
        return np.asarray(s, dtype=np.float32)

    def ranked(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Corpus positions of the k best of `scores` (from `scores()`), best first, ties in corpus order."""
        return _top_k(scores, k)

    def search(self, queries: list[str], k: int = 10) -> list[list[SearchHit]]:
        queries = check_queries(queries, k)
        results = []
        for q in queries:
            s = self.scores(q)
            results.append([SearchHit(self.passages[i], float(s[i]), r) for r, i in enumerate(self.ranked(s, k), start=1)])
        return results

    def save(self, path: str | os.PathLike) -> None:
        """Write the index folder in one step: complete under `path`, or the previous copy left untouched."""
        meta = {
            "format_version": FORMAT_VERSION,
            "engine": self.engine,
            "k1": self.k1,
            "b": self.b,
            "n_passages": len(self.passages),
            "tokenizer": TOKENIZER_ID,
        }
        with atomic_dir(path) as tmp:
            save_jsonl(self.passages, tmp / "passages.jsonl")
            if self.engine == "bm25s":
                self._index.save(str(tmp), allow_pickle=False, show_progress=False)
            else:
                (tmp / "tokens.json").write_text(json.dumps(self._tokens, ensure_ascii=False), encoding="utf-8")
            (tmp / "bm25.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")  # last: marks it complete

    @classmethod
    def load(cls, path: str | os.PathLike) -> BM25Retriever:
        path = Path(path)
        if not path.is_dir():
            raise DataFormatError(f"{path}: BM25 index folder not found")
        meta = _read_json(path, "bm25.json")
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            raise DataFormatError(f"{path / 'bm25.json'}: not a BM25 index of format version {FORMAT_VERSION}")
        if meta.get("tokenizer") != TOKENIZER_ID:
            raise DataFormatError(
                f"{path / 'bm25.json'}: built with tokenizer {meta.get('tokenizer')!r}, "
                f"this version uses {TOKENIZER_ID!r}; rebuild the index"
            )
        self = cls.__new__(cls)
        try:
            self._setup(load_jsonl(_need(path, "passages.jsonl")), meta["k1"], meta["b"], meta["engine"])
        except (KeyError, ConfigError) as e:
            raise DataFormatError(f"{path / 'bm25.json'}: bad index settings ({e})") from e
        n = len(self.passages)
        if meta.get("n_passages") != n:
            raise DataFormatError(f"{path}: bm25.json says {meta.get('n_passages')} passages, passages.jsonl has {n}")
        if self.engine == "bm25s":
            for name in BM25S_FILES:
                _need(path, name)
            try:  # allow_pickle=False: an index folder must never be able to run code
                self._index = bm25s.BM25.load(str(path), mmap=False, allow_pickle=False, show_progress=False)
            except (OSError, ValueError, KeyError) as e:
                raise DataFormatError(f"{path}: unreadable bm25s index ({e})") from e
            got = (self._index.scores.get("num_docs"), self._index.k1, self._index.b, self._index.method)
            if got != (n, self.k1, self.b, "lucene"):  # scores are baked in: the settings must be the ones saved
                raise DataFormatError(f"{path}: bm25s index (passages, k1, b, method) = {got} does not match bm25.json")
        else:
            tokens = _read_json(path, "tokens.json")
            if not (isinstance(tokens, list) and len(tokens) == n and all(isinstance(t, list) for t in tokens)):
                raise DataFormatError(f"{path / 'tokens.json'}: expected {n} token lists")
            self._build(tokens)
        return self


def _need(folder: Path, name: str) -> Path:
    if not (folder / name).is_file():
        raise DataFormatError(f"{folder}: BM25 index folder lacks {name}")
    return folder / name


def _read_json(folder: Path, name: str):
    try:
        return read_json(_need(folder, name))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataFormatError(f"{folder / name}: invalid JSON ({e})") from e
