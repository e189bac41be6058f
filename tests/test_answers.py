"""Tests for dpr_rag.matching: DPR answer matching and SQuAD EM / F1, on hand-worked examples."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpr_rag.errors import ConfigError
from dpr_rag.matching import (
    SimpleTokenizer,
    answer_matcher,
    exact_match,
    first_hit_rank,
    has_answer,
    normalize_answer,
    token_f1,
)

PRECOMPOSED = "Caf\u00e9 Pel\u00e9"  # é as one code point
DECOMPOSED = "Cafe\u0301 Pele\u0301"  # e + combining acute accent


# --- SimpleTokenizer -------------------------------------------------------------------------------------


def test_tokenizer_splits_words_and_single_symbols():
    tok = SimpleTokenizer()
    assert tok.words("Leonardo da Vinci, 1452-1519!") == ["leonardo", "da", "vinci", ",", "1452", "-", "1519", "!"]
    assert tok.words("Hello World", uncased=False) == ["Hello", "World"]
    assert tok.words("") == []
    assert tok.words("  \t\n ") == []


def test_tokenizer_keeps_combining_marks_inside_word():
    assert SimpleTokenizer().words(DECOMPOSED) == ["cafe\u0301", "pele\u0301"]


# --- has_answer, string mode -----------------------------------------------------------------------------


def test_case_insensitive():
    assert has_answer(["PARIS"], "The capital of France is paris.")
    assert has_answer(["paris"], "PARIS is big")


def test_punctuation_is_its_own_token():
    # "Leonardo da Vinci." -> [leonardo, da, vinci, .]: the answer tokens are a contiguous sub-list
    assert has_answer(["leonardo da vinci"], "Leonardo da Vinci.")
    assert has_answer(["leonardo da vinci"], "(Leonardo da Vinci), painter")
    # DPR does not strip punctuation from answers: a trailing "." is a token that must appear in the text
    assert has_answer(["Leonardo da Vinci."], "painted by leonardo da vinci.")
    assert not has_answer(["Leonardo da Vinci."], "painted by leonardo da vinci in 1503")


def test_token_boundaries():
    assert not has_answer(["art"], "He was a famous artist.")
    assert has_answer(["art"], "a work of art.")
    assert has_answer(["1886"], "He lived there from 1884 to 1886.")
    assert not has_answer(["188"], "He lived there from 1884 to 1886.")


def test_nfd_both_directions():
    assert has_answer([PRECOMPOSED], "He met " + DECOMPOSED + " yesterday")
    assert has_answer([DECOMPOSED], "He met " + PRECOMPOSED + " yesterday")
    assert unicodedata.normalize("NFD", PRECOMPOSED) == DECOMPOSED  # the fixture really is the two forms
    assert not has_answer(["cafe"], "un " + PRECOMPOSED)  # the accent is part of the token


def test_multi_token_must_be_contiguous():
    assert has_answer(["new york city"], "I love New York City at night")
    assert not has_answer(["new york city"], "New ideas: York is a city")
    assert not has_answer(["york new"], "new york")


def test_any_of_several_answers():
    assert has_answer(["Rome", "Paris"], "paris in spring")
    assert not has_answer(["Rome", "Berlin"], "paris in spring")
    assert not has_answer([], "paris in spring")


def test_empty_answer_never_matches():
    assert not has_answer([""], "anything at all")
    assert not has_answer(["   "], "anything at all")
    assert not has_answer([""], "")
    assert has_answer(["", "at"], "anything at all")


def test_title_is_not_added():
    assert not has_answer(["Mona Lisa"], "a portrait painted in Florence")
    assert has_answer(["Mona Lisa"], "Mona Lisa. a portrait painted in Florence")


# --- has_answer, regex mode ------------------------------------------------------------------------------


def test_regex_mode():
    assert has_answer([r"leonardo( da vinci)?"], "Painted by LEONARDO.", match="regex")
    assert has_answer([r"leonardo( da vinci)?"], "by Leonardo da Vinci", match="regex")
    assert not has_answer([r"leonardo( da vinci)?"], "by Michelangelo", match="regex")
    assert has_answer([r"19[0-9]{2}"], "It opened in 1936.", match="regex")
    assert not has_answer([r"19[0-9]{2}"], "It opened in 1886.", match="regex")
    assert has_answer([r"^second line$"], "first line\nsecond line\n", match="regex")  # MULTILINE


def test_regex_mode_is_search_not_token_match():
    assert has_answer(["art"], "a famous artist", match="regex")


def test_regex_nfd():
    assert has_answer([PRECOMPOSED], "met " + DECOMPOSED, match="regex")
    assert has_answer([DECOMPOSED], "met " + PRECOMPOSED, match="regex")


def test_invalid_regex_does_not_crash():
    assert has_answer(["(unclosed", "[a-"], "anything (unclosed", match="regex") is False
    assert has_answer(["(unclosed", "anything"], "anything", match="regex") is True


def test_unknown_mode_raises():
    with pytest.raises(ConfigError, match="string.*regex"):
        has_answer(["a"], "a", match="fuzzy")
    with pytest.raises(ConfigError):
        first_hit_rank(["a"], [], match="exact")
    with pytest.raises(ConfigError, match="string.*regex"):
        answer_matcher([], "fuzzy")  # checked when the predicate is made, before any text


def test_answer_matcher_is_has_answer_prepared_once():
    texts = ["Painted by Leonardo da Vinci.", "leonardo", "Da Vinci Leonardo", "1889 in Paris", ""]
    for answers, match in ((["Leonardo da Vinci", "1889"], "string"), ([r"18\d\d", "^Da"], "regex")):
        contains = answer_matcher(answers, match)
        assert [contains(t) for t in texts] == [has_answer(answers, t, match) for t in texts]
    assert [answer_matcher(["leonardo"])(t) for t in texts] == [True, True, True, False, False]  # match="string" by default
    with pytest.raises(ConfigError, match="not a single string"):
        answer_matcher("Leonardo")


# --- first_hit_rank --------------------------------------------------------------------------------------


def test_first_hit_rank():
    texts = ["nothing here", "an artist", "a work of art", "more art"]
    assert first_hit_rank(["art"], texts) == 3
    assert first_hit_rank(["art"], texts, match="regex") == 2
    assert first_hit_rank(["nothing"], texts) == 1
    assert first_hit_rank(["sculpture"], texts) is None
    assert first_hit_rank(["art"], []) is None


# --- SQuAD normalisation and metrics ---------------------------------------------------------------------


def test_normalize_answer():
    assert normalize_answer("The  Cat!") == "cat"
    assert normalize_answer("theatre") == "theatre"
    assert normalize_answer("An apple, a pear and THE plum.") == "apple pear and plum"
    assert normalize_answer("  a  ") == ""
    assert normalize_answer("don't") == "dont"
    assert normalize_answer("U.S.A.") == "usa"


def test_exact_match():
    assert exact_match("The Cat!", ["cat"]) == 1.0
    assert exact_match("cat", ["dog", "a cat."]) == 1.0
    assert exact_match("cats", ["cat"]) == 0.0
    assert exact_match("", ["the"]) == 1.0  # both normalise to ""
    with pytest.raises(ConfigError):
        exact_match("cat", [])


def test_token_f1_hand_computed():
    # "cat sat on mat" vs "cat sat": overlap 2, precision 2/4, recall 2/2 -> F1 = 2*(1/2)*1/(3/2) = 2/3
    assert token_f1("the cat sat on mat", ["a cat sat"]) == pytest.approx(2 / 3)
    assert token_f1("cat", ["cat"]) == 1.0
    assert token_f1("cat", ["dog"]) == 0.0
    # max over answers
    assert token_f1("the cat sat on mat", ["dog", "a cat sat", "cat sat on mat"]) == 1.0


def test_token_f1_counts_repeats_as_multiset():
    # pred "cat cat" vs gold "cat": overlap min(2,1)=1 -> P=1/2, R=1 -> F1=2/3
    assert token_f1("cat cat", ["cat"]) == pytest.approx(2 / 3)


def test_token_f1_empty_sides():
    assert token_f1("", ["the"]) == 1.0
    assert token_f1("a", ["!!"]) == 1.0
    assert token_f1("", ["cat"]) == 0.0
    assert token_f1("cat", [""]) == 0.0
    with pytest.raises(ConfigError):
        token_f1("cat", [])


# --- properties ------------------------------------------------------------------------------------------


_has_alnum = st.text().filter(lambda t: any(ch.isalnum() for ch in t))


@settings(max_examples=300, deadline=None)
@given(_has_alnum)
def test_text_contains_itself(t):
    assert has_answer([t], t)
    assert first_hit_rank([t], ["", t]) == 2


@settings(max_examples=300, deadline=None)
@given(st.text(), st.lists(st.text(), min_size=1, max_size=4))
def test_metrics_never_crash(prediction, answers):
    em = exact_match(prediction, answers)
    f1 = token_f1(prediction, answers)
    assert em in (0.0, 1.0)
    assert 0.0 <= f1 <= 1.0
    if em == 1.0:
        assert f1 == 1.0
    assert exact_match(prediction, [prediction]) == 1.0
    assert token_f1(prediction, [prediction]) == 1.0


def test_corpus_answer_index_agrees_with_has_answer():
    from dpr_rag.matching import CorpusAnswerIndex

    texts = ["The Mona Lisa, by Leonardo da Vinci.", "The artist's studio", "Built in 1889 (Paris)."]
    index = CorpusAnswerIndex(texts)
    cases = [
        ["leonardo da vinci"],
        ["art"],
        ["artist"],
        ["1889"],
        ["paris."],
        ["Paris"],
        ["vinci. built"],
        ["nowhere"],
        [""],
        ["studio the"],
        ["studio built"],
        ["’s"],
    ]
    for answers in cases:
        assert index.contains(answers) == any(has_answer(answers, t) for t in texts), answers
    assert index.contains([r"18\d\d"], match="regex") and not index.contains([r"19\d\d"], match="regex")
