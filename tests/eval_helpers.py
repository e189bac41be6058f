"""What the evaluation tests share: the toy questions in every QA format, a small `EvalConfig` and the per-question
rows a report writes (the `corpus_file` and `qa_file` fixtures built from them are in conftest.py)."""

from __future__ import annotations

import json

from eval.config import EvalConfig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QA = [
    ("who painted the mona lisa", ["Leonardo da Vinci"]),
    ("in which year was the eiffel tower in paris completed", ["1889"]),
    ("who created the python programming language", ["Guido van Rossum"]),
    ("what is the highest mountain on earth", ["Mount Everest"]),
    ("who discovered penicillin", ["Alexander Fleming"]),  # in no passage: unanswerable
]
KS = ["1", "5", "20", "100"]


def write_qa(folder, fmt: str):
    path = folder / f"qa.{fmt}"
    if fmt == "jsonl":  # NQ-open
        path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QA))
    elif fmt == "json":  # DPR retriever JSON
        path.write_text(json.dumps([{"question": q, "answers": a, "positive_ctxs": [], "hard_negative_ctxs": []} for q, a in QA]))
    else:  # DPR CSV/TSV: question<TAB>python-or-json list literal
        path.write_text("".join(f"{q}\t{json.dumps(a) if i % 2 else repr(a)}\n" for i, (q, a) in enumerate(QA)))
    return path


def config(tmp_path, corpus_file, qa_file, **kw) -> EvalConfig:
    kw.setdefault("retrievers", ["bm25"])
    kw.setdefault("out", str(tmp_path / "report"))
    return EvalConfig(qa=str(qa_file), corpus=str(corpus_file), show_progress=False, bootstrap_samples=200, **kw)


def read_per_question(folder):
    return [json.loads(line) for line in (folder / "per_question.jsonl").read_text().splitlines()]
