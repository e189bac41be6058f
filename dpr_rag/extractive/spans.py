"""Answer spans in a passage: where an answer string occurs (for training), and the best span under the reader's
start/end scores (for answering).

Occurrences follow `matching.has_answer` exactly: the text is cut into DPR's SimpleTokenizer tokens (NFD, uncased) and
an answer occurs where its token list is a contiguous run of the text's tokens. Each occurrence is returned as the
character span [start, end) of those tokens in the original text, so it can be mapped onto any sub-word tokenizer's
offsets.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import torch

from ..matching import SimpleTokenizer

_TOKENIZER = SimpleTokenizer()


def _words_with_offsets(text: str) -> list[tuple[str, int, int]]:
    """(normalised token, start, end) for each SimpleTokenizer token of `text`, offsets into `text` itself."""
    return [(unicodedata.normalize("NFD", t).lower(), s, e) for t, s, e in _TOKENIZER.spans(text)]


def answer_char_spans(answers: Sequence[str], text: str) -> list[tuple[int, int]]:
    """Every [start, end) character span of `text` where one of `answers` occurs by `has_answer`'s rule, in order
    of start (then end), without repeats. An answer with no tokens never occurs."""
    words = _words_with_offsets(text)
    tokens = [w for w, _, _ in words]
    found: set[tuple[int, int]] = set()
    for answer in answers:
        target = _TOKENIZER.words(unicodedata.normalize("NFD", answer), uncased=True)
        n = len(target)
        if n == 0:
            continue
        for i in range(len(tokens) - n + 1):
            if tokens[i : i + n] == target:
                found.add((words[i][1], words[i + n - 1][2]))
    return sorted(found)


def char_span_to_tokens(
    span: tuple[int, int], offsets: Sequence[tuple[int, int]], in_passage: Sequence[bool]
) -> tuple[int, int] | None:
    """The first and last sub-word token (inclusive) covering the character span, among the tokens that belong to the
    passage (`in_passage`); None when the span was cut off by truncation. `offsets` are the tokenizer's (start, end)
    character offsets into the passage string."""
    start, end = span
    covering = [i for i, ((s, e), ok) in enumerate(zip(offsets, in_passage, strict=True)) if ok and s < end and e > start]
    if not covering or offsets[covering[-1]][1] < end:
        return None  # not kept, or cut inside the answer
    return covering[0], covering[-1]


def title_text_segments(offsets: Sequence[tuple[int, int]], title: str) -> tuple[torch.Tensor, torch.Tensor]:
    """For a passage read as "title: text": each token's segment (0 title, 1 text) and whether it may be part of an
    answer (the ": " between title and text may not). Offsets are into that string; without a title all is text."""
    cut = len(title) + 2 if title else 0
    segment = torch.tensor([0 if e <= len(title) and title else 1 for _, e in offsets])
    usable = torch.tensor([not (title and s >= len(title) and e <= cut) for s, e in offsets])
    return segment, usable


def best_span(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    allowed: torch.Tensor,
    max_answer_length: int,
    segment: torch.Tensor | None = None,
) -> tuple[int, int, float]:
    """argmax over spans s ≤ e < s + max_answer_length, both tokens allowed (the passage's tokens), of
    start_logits[s] + end_logits[e] (DPR's span score); returns (s, e, score). `allowed` is a bool mask (L,); with
    `segment` (L,), a span's two ends must lie in the same segment (a passage's title or its text, never across)."""
    L = start_logits.shape[0]
    neg = torch.finfo(start_logits.dtype).min
    start = start_logits.masked_fill(~allowed, neg)
    end = end_logits.masked_fill(~allowed, neg)
    scores = start[:, None] + end[None, :]  # (L, L): [s, e]
    rows = torch.arange(L)
    width = rows[None, :] - rows[:, None]
    valid = (width >= 0) & (width < max_answer_length) & allowed[:, None] & allowed[None, :]
    if segment is not None:
        valid &= segment[:, None] == segment[None, :]
    scores = scores.masked_fill(~valid, float("-inf"))
    flat = int(scores.argmax())
    s, e = divmod(flat, L)
    return s, e, float(scores[s, e])
