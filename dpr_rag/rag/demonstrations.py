"""Few-shot demonstrations for the generator's prompt, chosen from training data only.

The shipped set (`demonstrations.json`, beside this file) is drawn from FanOutQA's dev sub-questions (CC BY-SA 4.0),
which are not the NQ questions anything is evaluated on, each with the passage of its gold Wikipedia article in the
default corpus (CC BY-SA) that contains the answer. It is rebuilt, deterministically, by

    python -c "from dpr_rag.rag.demonstrations import write_default_demonstrations; write_default_demonstrations()"

`select_demonstrations` picks short, answer-bearing, single-answer examples about different articles, so that the
prompt stays short and shows the answer format (a few words, copied from the passage).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..config_checks import check_int
from ..data.passages import Passage
from ..data.qa import QAExample
from ..errors import DataFormatError
from ..matching import has_answer
from ..storage import atomic_file
from .prompting import Demonstration, PromptTemplate

DEFAULT_FILE = Path(__file__).resolve().parent / "demonstrations.json"
MAX_SHOTS = 8
MAX_ANSWER_WORDS = 4
MAX_PASSAGE_WORDS = 70


def select_demonstrations(examples: Sequence[QAExample], passages: Sequence[Passage], n: int = MAX_SHOTS) -> list[Demonstration]:
    """Up to `n` demonstrations: examples in file order whose first answer (at most 4 words) appears in a short
    passage (at most 70 words) of one of their gold titles, one per article and per answer, no two-part questions."""
    by_title: dict[str, list[Passage]] = {}
    for p in passages:
        by_title.setdefault(p.title, []).append(p)
    chosen: list[Demonstration] = []
    titles: set[str] = set()
    answers: set[str] = set()
    for ex in examples:
        answer = ex.answers[0]
        if len(answer.split()) > MAX_ANSWER_WORDS or answer.lower() in answers or " and " in ex.question:
            continue  # long answers, repeats and two-part questions ("Who wrote X and when?") teach the wrong format
        for title in ex.gold_titles:
            hits = [
                p for p in by_title.get(title, []) if len(p.text.split()) <= MAX_PASSAGE_WORDS and has_answer([answer], p.text)
            ]
            if hits and title not in titles:
                chosen.append(Demonstration(ex.question, answer, hits[0]))
                titles.add(title)
                answers.add(answer.lower())
                break
        if len(chosen) == n:
            break
    return chosen


def save_demonstrations(demos: Sequence[Demonstration], path: str | os.PathLike) -> None:
    records = [{"question": d.question, "answer": d.answer, "passage": d.passage.to_dict() if d.passage else None} for d in demos]
    with atomic_file(path) as f:
        f.write(json.dumps(records, indent=1, ensure_ascii=False) + "\n")


def load_demonstrations(path: str | os.PathLike = DEFAULT_FILE) -> list[Demonstration]:
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
        return [Demonstration(r["question"], r["answer"], Passage(**r["passage"]) if r.get("passage") else None) for r in records]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataFormatError(f"{path}: not a demonstrations file ({e})") from e


def few_shot_template(shots: int, demonstrations: Sequence[Demonstration] | None = None) -> PromptTemplate:
    """The prompt template with the first `shots` demonstrations (default: the shipped ones); 0 = zero-shot."""
    check_int("shots", shots, 0, MAX_SHOTS)
    demos = list(demonstrations) if demonstrations is not None else (load_demonstrations() if shots else [])
    if shots > len(demos):
        raise DataFormatError(f"{shots} shots asked for, but only {len(demos)} demonstrations are available")
    return PromptTemplate(tuple(demos[:shots]))


def write_default_demonstrations(path: str | os.PathLike = DEFAULT_FILE) -> list[Demonstration]:
    """Rebuild the shipped set from the embedded FanOutQA questions and the default corpus."""
    from ..data.defaults import default_corpus
    from ..data.qa import load_fanoutqa

    demos = select_demonstrations(load_fanoutqa(), default_corpus())
    save_demonstrations(demos, path)
    return demos
