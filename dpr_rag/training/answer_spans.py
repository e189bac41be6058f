"""Answer candidates in a passage: the short spans a question could ask for (PAQ's first step, Lewis et al. 2021).

Answer-first question generation picks a span, then asks the generator for a question that the span answers, so every
synthetic question comes with an answer that is really in its passage. NQ answers are mostly names, dates and numbers;
without a tagger, three patterns find those in Wikipedia prose:

- dates: "March 3, 1990", "3 March 1990", and years (1000-2099);
- numbers: "8,848.86", "1.5 million" (not part of a date);
- names: runs of capitalised words (joined by "of", "the", "de" ...), 1-5 words, not at the start of a sentence
  (where every word is capitalised), not the passage's own title (a question about X rarely has X as its answer),
  and not a one-word adjective ("French", "Catholic"); a possessive "'s" is cut off.

Candidates are returned with their sentence, so the prompt can show the sentence the answer is in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_MONTH = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
_DATE = re.compile(rf"\b(?:{_MONTH} \d{{1,2}}, \d{{4}}|\d{{1,2}} {_MONTH} \d{{4}}|{_MONTH} \d{{4}})\b")
_YEAR = re.compile(r"\b(?:1\d{3}|20\d{2})\b")
_NUMBER = re.compile(r"\b\d{1,3}(?:,\d{3})+(?:\.\d+)?\b|\b\d+(?:\.\d+)? (?:million|billion|thousand)\b")
_WORD = r"(?:[A-Z][\w'’.-]*[\w]|[A-Z])"
_NAME = re.compile(rf"{_WORD}(?:(?: (?:of|the|de|da|von|van|del|la|le))* {_WORD}){{0,4}}")
# Capitalised words that start clauses or are too generic to be an answer.
_NOT_NAMES = frozenset(
    "The A An In On At It Its He She They His Her Their This That These Those There After Before During When While "
    "Although However Since From For By As With Its It's I We You Also According Other Some Many Most English".split()
)

_ADJECTIVE_ENDINGS = ("ian", "ean", "can", "ese", "ish", "ic", "ench", "tch")


@dataclass(frozen=True)
class AnswerSpan:
    answer: str
    sentence: str
    kind: str  # "date", "number" or "name"


def sentences(text: str) -> list[str]:
    """The passage's sentences (a split after . ! ? before a capital, digit or quote)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _names(sentence: str, title: str) -> list[str]:
    found = []
    for m in _NAME.finditer(sentence):
        if m.start() == 0:
            continue  # the sentence's first word is capitalised anyway
        words = m.group(0).split()
        while words and words[0] in _NOT_NAMES:
            words = words[1:]
        name = re.sub(r"['’]s?$", "", " ".join(words))  # "Earth's" -> "Earth"
        if " " not in name and name.endswith(_ADJECTIVE_ENDINGS):
            continue  # "French", "Catholic": adjectives, rarely what a question asks for
        if not name or name in _NOT_NAMES or len(name) < 3:
            continue
        if name.lower() in title.lower() or title.lower() in name.lower():
            continue
        found.append(name)
    return found


def answer_spans(text: str, title: str = "") -> list[AnswerSpan]:
    """Every answer candidate of the passage, in text order, each once (dates, numbers, then names per sentence)."""
    out: list[AnswerSpan] = []
    seen: set[str] = set()

    def add(answer: str, sentence: str, kind: str) -> None:
        if answer.lower() not in seen:
            seen.add(answer.lower())
            out.append(AnswerSpan(answer, sentence, kind))

    for sentence in sentences(text):
        dates = [m.group(0) for m in _DATE.finditer(sentence)]
        for d in dates:
            add(d, sentence, "date")
        rest = _DATE.sub(" ", sentence)
        for m in _YEAR.finditer(rest):
            add(m.group(0), sentence, "date")
        for m in _NUMBER.finditer(rest):
            add(m.group(0), sentence, "number")
        for name in _names(sentence, title):
            add(name, sentence, "name")
    return out
