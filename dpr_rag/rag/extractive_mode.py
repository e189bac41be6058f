"""The extractive QA mode's pieces that belong to the pipeline: which reader answers (a folder, else the shipped one)
and where its span stands in a passage's title or text (for highlighting)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..data.passages import Passage
from ..errors import ConfigError
from ..retrieval.base import SearchHit
from .answers import AnswerSpan, Provenance, RagAnswer

if TYPE_CHECKING:
    from ..extractive.model import ExtractiveReader


def load_extractive_reader(folder: str | None) -> ExtractiveReader:
    """The reader in `folder`, or (None) the shipped one; an error saying how to get one when neither exists."""
    from ..extractive.model import ExtractiveReader, shipped_extractive_reader

    path = folder or shipped_extractive_reader()
    if path is None:
        raise ConfigError(
            "no extractive reader: this checkout ships none; train one with python -m dpr_rag.train_reader --out DIR "
            "and pass --reader DIR/best"
        )
    return ExtractiveReader.from_pretrained(path)


def span_in_passage(passage: Passage, index: int, start: int, end: int) -> AnswerSpan:
    """A span of `passage_text(passage)` ("title: text") as a span of the passage's title or of its text."""
    if passage.title:
        cut = len(passage.title) + 2  # the ": " between title and text
        if start < cut:
            return AnswerSpan(index, "title", start, min(end, len(passage.title)))
        return AnswerSpan(index, "text", start - cut, end - cut)
    return AnswerSpan(index, "text", start, end)


def extractive_answers(
    reader: ExtractiveReader, questions: list[str], hits: list[list[SearchHit]], doc_logp: torch.Tensor
) -> list[RagAnswer]:
    """DPR's reader over each question's retrieved passages (`doc_logp`, the retriever's log p(z|x), is the "prior"
    answer rule's prior). Provenance: p(z|x) from the retriever; the
    "posterior" is the reader's passage selection P_sel(z | x); `span` says where the answer stands."""
    prior = doc_logp.exp()
    answers = []
    for b, (question, row) in enumerate(zip(questions, hits, strict=True)):
        found = reader.read(question, [h.passage for h in row], prior=doc_logp[b])
        span = span_in_passage(row[found.passage].passage, found.passage, found.start, found.end)
        provenance = [Provenance(h.passage, h.score, float(prior[b, i]), found.selection[i]) for i, h in enumerate(row)]
        answers.append(RagAnswer(question, found.text, "extractive", found.logprob, provenance, span=span))
    return answers
