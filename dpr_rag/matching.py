"""Answer matching: DPR's retrieval "has answer" check and the SQuAD v1.1 EM / token-F1 metrics.

Retrieval accuracy (top-k) follows DPR (facebookresearch/DPR, dpr/data/qa_validation.py with the
SimpleTokenizer of dpr/utils/tokenizers.py). Reader metrics follow the official SQuAD v1.1 evaluation script.
Deliberate departures from the originals are noted where they occur.
"""

from __future__ import annotations

import bisect
import itertools
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence

import regex

from .errors import ConfigError

MATCH_MODES = ("string", "regex")
_PUNCTUATION = frozenset(string.punctuation)


class SimpleTokenizer:
    """DPR's SimpleTokenizer: a token is a maximal run of letters/digits/marks, or any single other
    character that is neither a separator (``\\p{Z}``) nor a control/format/unassigned one (``\\p{C}``)."""

    ALPHA_NUM = r"[\p{L}\p{N}\p{M}]+"
    NON_WS = r"[^\p{Z}\p{C}]"

    def __init__(self) -> None:
        self._regexp = regex.compile(
            f"({self.ALPHA_NUM})|({self.NON_WS})",
            flags=regex.IGNORECASE + regex.UNICODE + regex.MULTILINE,
        )

    def words(self, text: str, uncased: bool = True) -> list[str]:
        """The tokens of ``text`` in order, lower-cased (``str.lower``) when ``uncased``."""
        tokens = [m.group() for m in self._regexp.finditer(text)]
        return [t.lower() for t in tokens] if uncased else tokens

    def spans(self, text: str) -> list[tuple[str, int, int]]:
        """(token, start, end) for each token of ``text`` as given (not normalised), with its character offsets."""
        return [(m.group(), m.start(), m.end()) for m in self._regexp.finditer(text)]


_TOKENIZER = SimpleTokenizer()


def _nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def _regex_matches(pattern: str, text: str) -> bool:
    try:
        compiled = re.compile(pattern, flags=re.IGNORECASE | re.UNICODE | re.MULTILINE)
    except (re.error, ValueError, OverflowError, RecursionError):
        return False  # DPR: a pattern that does not compile matches nothing
    return compiled.search(text) is not None


def answer_matcher(answers: Sequence[str], match: str = "string") -> Callable[[str], bool]:
    """A predicate ``text -> bool`` equal to ``has_answer(answers, text, match)``, for testing many texts against
    the same answers: the answers are normalised and tokenised (``"string"``) or prepared as patterns (``"regex"``)
    once, not once per text. ``match`` is validated here, when the predicate is made, so
    ``answer_matcher([], match)`` checks a match mode up front. An unknown ``match``, or ``answers`` given as a
    single string instead of a sequence of strings, raises :class:`ConfigError`."""
    if isinstance(answers, str):
        raise ConfigError("answers must be a sequence of strings, not a single string")
    if match == "string":
        answer_tokens = [toks for toks in (_TOKENIZER.words(_nfd(a), uncased=True) for a in answers) if toks]

        def string_match(text: str) -> bool:
            words = _TOKENIZER.words(_nfd(text), uncased=True)
            for toks in answer_tokens:
                n = len(toks)
                if any(words[i : i + n] == toks for i in range(len(words) - n + 1)):
                    return True
            return False

        return string_match
    if match == "regex":
        patterns = [_nfd(a) for a in answers]
        return lambda text: any(_regex_matches(p, _nfd(text)) for p in patterns)
    raise ConfigError(f"unknown answer match mode {match!r}; allowed: {', '.join(map(repr, MATCH_MODES))}")


def has_answer(answers: Sequence[str], text: str, match: str = "string") -> bool:
    """Whether ``text`` contains any of ``answers``, by DPR's rule.

    ``match="string"``: the text and each answer are NFD-normalised and tokenised uncased with
    :class:`SimpleTokenizer`; an answer matches when its token list occurs as a contiguous sub-list of the
    text's tokens. So case does not matter, "art" does not match "artist", and "leonardo da vinci" matches
    "Leonardo da Vinci." (each punctuation character is a token of its own, so an answer that ends in "."
    needs that "." in the text too). An answer with no tokens never matches. (In DPR an empty answer would
    match trivially; here it cannot.)

    ``match="regex"`` (CuratedTREC): each answer is a regular expression; the text and the pattern are
    NFD-normalised, the pattern compiled with ``re.IGNORECASE | re.UNICODE | re.MULTILINE``, and it matches
    when ``pattern.search(text)`` finds something. A pattern that does not compile matches nothing.

    The text is checked as given: callers decide whether it includes the passage title.
    Any other ``match`` raises :class:`ConfigError`.
    """
    return answer_matcher(answers, match)(text)


def first_hit_rank(answers: Sequence[str], texts: Sequence[str], match: str = "string") -> int | None:
    """1-based rank of the first of ``texts`` for which :func:`has_answer` holds, or None if none does."""
    hit = answer_matcher(answers, match)
    for rank, text in enumerate(texts, start=1):
        if hit(text):
            return rank
    return None


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 normalisation, in the official order: lower-case; delete every ``string.punctuation``
    character; replace the whole words a/an/the (``\\b(a|an|the)\\b``) with a space; collapse whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _check_answers(answers: Sequence[str]) -> None:
    if isinstance(answers, str):
        raise ConfigError("answers must be a sequence of strings, not a single string")
    if len(answers) == 0:
        raise ConfigError("cannot score a prediction against an empty list of answers")


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """SQuAD exact match: 1.0 if ``normalize_answer(prediction)`` equals ``normalize_answer`` of any answer,
    else 0.0. An empty answer list raises :class:`ConfigError`."""
    _check_answers(answers)
    pred = normalize_answer(prediction)
    return 1.0 if any(pred == normalize_answer(a) for a in answers) else 0.0


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:
        return 1.0 if pred_tokens == gold_tokens else 0.0
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """SQuAD token F1, maximised over ``answers``.

    Tokens are ``normalize_answer(x).split()``; overlap is the multiset (Counter) intersection;
    precision = overlap / len(prediction tokens), recall = overlap / len(answer tokens), F1 their harmonic
    mean (0.0 when there is no overlap). If both sides have no tokens the F1 is 1.0 (the v1.1 script gives
    0.0 there); if only one side is empty it is 0.0. An empty answer list raises :class:`ConfigError`.
    """
    _check_answers(answers)
    pred = normalize_answer(prediction).split()
    return max(_f1(pred, normalize_answer(a).split()) for a in answers)


class CorpusAnswerIndex:
    """Which questions have an answer anywhere in a corpus, by the same rule as `has_answer`, fast.

    Each passage text is tokenised once (as `has_answer` does) and stored as " tok tok ... " in one string,
    passages separated by newlines. A contiguous token match of an answer is then a substring search for
    " ans tok ... " - no token contains whitespace, and no answer string contains the newline between
    passages, so the two tests agree exactly. Regex answers are searched passage by passage.
    """

    def __init__(self, texts: Sequence[str]):
        self.texts = list(texts)
        lines = [" " + " ".join(_TOKENIZER.words(_nfd(t))) + " " for t in self.texts]
        self._joined = "\n".join(lines)
        self._starts = list(itertools.accumulate((len(line) + 1 for line in lines[:-1]), initial=0))

    def passages_with(self, answers: Sequence[str], match: str = "string") -> list[int]:
        """Indices of the passages that contain an answer (`has_answer`'s rule), ascending."""
        if match != "string":
            hit = answer_matcher(answers, match)
            return [i for i, t in enumerate(self.texts) if hit(t)]
        answer_matcher(answers, match)
        found: set[int] = set()
        for toks in (_TOKENIZER.words(_nfd(a)) for a in answers):
            needle = f" {' '.join(toks)} " if toks else ""
            at = self._joined.find(needle) if needle else -1
            while at >= 0:
                found.add(bisect.bisect_right(self._starts, at) - 1)
                at = self._joined.find(needle, at + 1)
        return sorted(found)

    def contains(self, answers: Sequence[str], match: str = "string") -> bool:
        if match == "string":
            answer_matcher(answers, match)  # same validation as has_answer
            return any(toks and f" {' '.join(toks)} " in self._joined for toks in (_TOKENIZER.words(_nfd(a)) for a in answers))
        hit = answer_matcher(answers, match)
        return any(hit(t) for t in self.texts)
