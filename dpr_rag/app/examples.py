"""Example questions to click: real questions of the embedded default set (FanOutQA dev sub-questions) whose
answers the default corpus contains, or the first questions of the app's QA file (DPR_RAG_APP_QA)."""

from __future__ import annotations

from ..data.qa import load_qa

# (question, answers) exactly as in the default set (tests/test_app.py checks that they are); chosen so that
# the three retrievers disagree on some of them (e.g. BM25 finds the Titanic budget only at rank 5).
DEFAULT_EXAMPLES = [
    ("What is the headquarter of Apple?", ["Cupertino, California"]),
    ("What state do the New England Patriots play in?", ["Massachusetts"]),
    ("What was the budget (in USD Millions) of Titanic?", ["200"]),
    ("When was the Taj Mahal built?", ["1631"]),
    ("What is the origin city of The Beatles?", ["Liverpool"]),
    ("Who are the founders of YouTube?", ["Steve Chen", "Chad Hurley", "Jawed Karim"]),
]


def example_questions(qa_path: str | None, n: int = 6) -> list[tuple[str, list[str]]]:
    if qa_path is None:
        return DEFAULT_EXAMPLES[:n]
    return [(ex.question, ex.answers) for ex in load_qa(qa_path)[:n]]
