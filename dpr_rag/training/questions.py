"""The questions a trainer learns from: QA files, the embedded FanOutQA questions, minus any it must never see."""

from __future__ import annotations

from collections.abc import Sequence

from ..data.qa import QAExample, load_fanoutqa, load_qa
from .distant_supervision import question_key


def training_questions(
    qa_files: Sequence[str] = (), fanoutqa: bool = False, exclude: Sequence[str] = (), verbose: bool = True
) -> list[QAExample]:
    """The questions of `qa_files` (NQ-open .jsonl, DPR .json/.csv), plus FanOutQA's with `fanoutqa` or when no file
    is given, without any question of the `exclude` files (evaluation or demo questions), matched by `question_key`."""
    qa = [e for path in qa_files for e in load_qa(path)]
    if fanoutqa or not qa_files:
        qa += load_fanoutqa()
    if exclude:
        excluded = {question_key(e.question) for path in exclude for e in load_qa(path)}
        n_all = len(qa)
        qa = [e for e in qa if question_key(e.question) not in excluded]
        if verbose:
            print(f"--exclude: {n_all - len(qa)} of {n_all} questions left out", flush=True)
    return qa
