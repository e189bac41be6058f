"""Inputs that used to end in a traceback (or, later, in a lost evaluation) get one error naming file and line; CSV
answers that are not strings are refused instead of becoming "None" or "{'alpha'}"."""

from __future__ import annotations

import pytest

from dpr_rag.data.passages import load_corpus
from dpr_rag.data.qa import load_qa
from dpr_rag.errors import DataFormatError


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"question": "q \\ud800", "answer": ["a"]}', "lone surrogate"),
        ('{"question": "q", "answer": ["\\udfff"]}', "lone surrogate"),
        ('{"question": "q", "answer": [' + "1" * 5000 + "]}", "digits"),
        ('{"question": "q", "answer": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
    ],
)
def test_hostile_jsonl_questions(tmp_path, line, message):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "fine", "answer": ["x"]}\n' + line + "\n")
    with pytest.raises(DataFormatError, match=rf"q.jsonl:2: .*{message}"):
        load_qa(path)


def test_a_lone_surrogate_in_a_passage_is_refused(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "1", "title": "t", "text": "fine"}\n{"id": "2", "title": "t", "text": "bad \\ud800 text"}\n')
    with pytest.raises(DataFormatError, match=r"c.jsonl:2: a string holds a lone surrogate"):
        load_corpus(path)


@pytest.mark.parametrize(
    "answers, message",
    [
        ("null", "list of strings"),
        ('{"a": 1}', "list of strings"),
        ("{'alpha'}", "list of strings"),
        ("[1, 2]", "list of strings"),
        ("[['nested']]", "list of strings"),
        ("[" * 5000 + "]" * 5000, "not a list literal|list of strings"),
        ("[" + "9" * 5000 + "]", "not a list literal|list of strings"),
        ('["\\ud800"]', "lone surrogate"),
    ],
)
def test_hostile_csv_answers(tmp_path, answers, message):
    path = tmp_path / "qa.csv"
    path.write_text(f"fine question\t['ok']\nbad question\t{answers}\n")
    with pytest.raises(DataFormatError, match=rf"qa.csv:2: .*({message})"):
        load_qa(path)


def test_dpr_json_with_a_huge_number_or_a_surrogate(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"question": "q", "answers": ["a"], "id": ' + "7" * 5000 + "}]")
    with pytest.raises(DataFormatError, match="d.json"):
        load_qa(path)
    path.write_text('[{"question": "q \\ud800", "answers": ["a"]}]')
    with pytest.raises(DataFormatError, match="lone surrogate"):
        load_qa(path)


def test_eval_keeps_its_figures_when_the_report_fails_late(tmp_path, monkeypatch, toy_passages):
    import json

    import eval.harness as harness
    from dpr_rag.data.passages import save_jsonl
    from dpr_rag.errors import DprRagError
    from eval.config import EvalConfig

    corpus, qa = tmp_path / "c.jsonl", tmp_path / "q.jsonl"
    save_jsonl(toy_passages, corpus)
    qa.write_text('{"question": "who painted the mona lisa", "answer": ["Leonardo da Vinci"]}\n')

    def fail(*args, **kwargs):
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")

    monkeypatch.setattr(harness, "write_report", fail)
    config = EvalConfig(qa=str(qa), corpus=str(corpus), retrievers=["bm25"], k=[1], out=str(tmp_path / "r"), show_progress=False)
    with pytest.raises(DprRagError, match="its figures are kept in"):
        harness.run_evaluation(config)
    (kept,) = tmp_path.glob("r.figures-*.json")
    assert json.loads(kept.read_text())["report"]["retrieval"]["bm25"]["1"] == 100.0
    assert not (tmp_path / "r").exists()  # no half report
