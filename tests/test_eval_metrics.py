"""The evaluation metrics (local `evaluate` modules) and the paired bootstrap, on hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest

from dpr_rag.errors import ConfigError
from dpr_rag.matching import first_hit_rank
from eval.bootstrap import paired_bootstrap
from eval.metrics import METRICS_DIR, load_metric


@pytest.fixture(scope="module")
def top_k():
    return load_metric("top_k_accuracy")


@pytest.fixture(scope="module")
def squad():
    return load_metric("squad_em_f1")


# --- top-k accuracy ---------------------------------------------------------------------------------------


def test_top_k_counts_a_question_from_its_first_hit(top_k):
    predictions = [
        ["Leonardo da Vinci painted it.", "x", "y"],  # first hit at rank 1
        ["nothing here", "still nothing", "He was born in 1889."],  # rank 3
        ["an artist", "art history", "arts"],  # "art" != "artist"/"arts": token match -> rank 2
        ["Paris", "France", "Europe"],  # no hit
    ]
    references = [["leonardo da vinci"], ["1889"], ["art"], ["Rome", "Italy"]]
    out = top_k.compute(predictions=predictions, references=references, k=[1, 2, 3])
    assert out["first_hit_rank"] == [1, 3, 2, None]
    # k=1: 1 of 4; k=2: 2 of 4 (rank 2 counts from k=2 on); k=3: 3 of 4
    assert out["accuracy"] == {1: 25.0, 2: 50.0, 3: 75.0}
    assert out["hit"] == {1: [1, 0, 0, 0], 2: [1, 0, 1, 0], 3: [1, 1, 1, 0]}


def test_top_k_beyond_the_retrieved_list_and_single_k(top_k):
    out = top_k.compute(predictions=[["a b c"], []], references=[["c"], ["c"]], k=100)
    assert out["accuracy"] == {100: 50.0}
    assert out["first_hit_rank"] == [1, None]


def test_top_k_regex_mode(top_k):
    out = top_k.compute(
        predictions=[["born in 1889", "x"], ["no year"]], references=[[r"18[0-9]{2}"], [r"18[0-9]{2}"]], k=[1], match="regex"
    )
    assert out["accuracy"] == {1: 50.0}
    # the same pattern as a plain string matches nothing
    assert top_k.compute(predictions=[["born in 1889"]], references=[[r"18[0-9]{2}"]], k=[1])["accuracy"] == {1: 0.0}


def test_top_k_agrees_with_the_library_rule(top_k):
    rng = np.random.default_rng(1)
    words = ["paris", "rome", "the", "eiffel", "tower", "1889", "da", "vinci", ".", "Leonardo"]
    predictions = [[" ".join(rng.choice(words, 6)) for _ in range(5)] for _ in range(30)]
    references = [[" ".join(rng.choice(words, 2))] for _ in range(30)]
    out = top_k.compute(predictions=predictions, references=references, k=[1, 5])
    assert out["first_hit_rank"] == [first_hit_rank(r, p) for p, r in zip(predictions, references, strict=True)]


def test_top_k_reports_progress_and_rejects_bad_settings(top_k):
    calls = []
    top_k.compute(predictions=[["a"]] * 70, references=[["a"]] * 70, k=[1], progress=lambda d, t: calls.append((d, t)))
    assert calls == [(64, 70), (70, 70)]
    with pytest.raises(ConfigError, match="k must be"):
        top_k.compute(predictions=[["a"]], references=[["a"]], k=[0])
    with pytest.raises(ConfigError, match="match mode"):
        top_k.compute(predictions=[["a"]], references=[["a"]], k=[1], match="fuzzy")


def test_metric_modules_load_by_file_path_too():
    import evaluate

    metric = evaluate.load(str(METRICS_DIR / "squad_em_f1" / "squad_em_f1.py"), keep_in_memory=True)
    assert metric.compute(predictions=["x"], references=[["x"]])["exact_match"] == 100.0


# --- SQuAD exact match and F1 -----------------------------------------------------------------------------


def test_squad_em_f1_hand_worked(squad):
    predictions = [
        "The Eiffel Tower!",  # normalises to "eiffel tower": EM 1, F1 1
        "an apple a day",  # articles dropped -> "apple day": EM 1
        "Tower",  # vs "eiffel tower": P = 1/1, R = 1/2 -> F1 2/3, EM 0
        "Guido",  # vs "guido van rossum": P = 1, R = 1/3 -> F1 1/2; vs "van rossum": 0 -> best 1/2
        "Paris",  # no overlap: 0, 0
    ]
    references = [["Eiffel Tower"], ["Apple day"], ["eiffel tower"], ["Guido van Rossum", "van Rossum"], ["Rome"]]
    out = squad.compute(predictions=predictions, references=references)
    assert out["exact_match_per_question"] == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert out["f1_per_question"] == pytest.approx([1.0, 1.0, 2 / 3, 0.5, 0.0])
    assert out["exact_match"] == pytest.approx(40.0)
    assert out["f1"] == pytest.approx(100 * (1 + 1 + 2 / 3 + 0.5 + 0) / 5)


def test_squad_best_of_several_answers_and_punctuation(squad):
    out = squad.compute(
        predictions=["U.S.A.", "the  Louvre"], references=[["usa", "United States"], ["Musée du Louvre", "louvre"]]
    )
    assert out["exact_match"] == 100.0 and out["f1"] == 100.0


# --- paired bootstrap ------------------------------------------------------------------------------------


def test_bootstrap_identical_systems_give_zero_interval():
    a = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1]
    ci = paired_bootstrap(a, list(a), samples=500, seed=3)
    assert (ci.difference, ci.low, ci.high) == (0.0, 0.0, 0.0)
    assert not ci.excludes_zero


def test_bootstrap_clearly_better_system_excludes_zero():
    better = [1] * 80 + [0] * 20
    worse = [1] * 20 + [0] * 80
    ci = paired_bootstrap(better, worse, samples=1000, seed=0)
    assert ci.difference == pytest.approx(0.6)
    assert 0 < ci.low < 0.6 < ci.high <= 1
    assert ci.excludes_zero
    reverse = paired_bootstrap(worse, better, samples=1000, seed=0)
    assert reverse.high < 0 and reverse.excludes_zero
    assert ci.to_dict(scale=100)["difference"] == 60.0


def test_bootstrap_small_difference_does_not_exclude_zero():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 60)
    b = a.copy()
    b[:2] = 1 - b[:2]  # two questions differ, in opposite directions or not: a tiny effect
    assert not paired_bootstrap(a, b, seed=0).excludes_zero


def test_bootstrap_is_deterministic_with_the_seed_and_matches_theory():
    rng = np.random.default_rng(7)
    a, b = rng.integers(0, 2, 400), rng.integers(0, 2, 400)
    first, again = paired_bootstrap(a, b, samples=2000, seed=11), paired_bootstrap(a, b, samples=2000, seed=11)
    assert first == again
    assert paired_bootstrap(a, b, samples=2000, seed=12) != first
    # the percentile interval is close to the normal one: diff ± 1.96 · sd(a - b) / sqrt(n)
    half = 1.96 * np.std(a - b) / np.sqrt(len(a))
    assert first.high - first.low == pytest.approx(2 * half, rel=0.15)
    assert first.low < first.difference < first.high


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ConfigError, match="same length"):
        paired_bootstrap([1, 0], [1])
    with pytest.raises(ConfigError, match="at least one"):
        paired_bootstrap([], [])
    with pytest.raises(ConfigError, match="samples"):
        paired_bootstrap([1], [0], samples=0)
