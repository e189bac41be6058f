"""Questions for the extractive reader's tests, answerable from the `toy_passages` of conftest."""

from __future__ import annotations

from dpr_rag.data.qa import QAExample


def toy_reader_qa() -> list[QAExample]:
    painter = ["who painted it", "which artist", "the painter", "by whom"]
    year = ["what year", "when completed", "which date", "the year"]
    return [QAExample(q, ["Leonardo da Vinci"]) for q in painter] + [QAExample(q, ["1889"]) for q in year]
