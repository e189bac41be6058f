import json

import pytest

from dpr_rag.data.qa import answer_strings, load_dpr_csv, load_dpr_json, load_fanoutqa, load_nq_open, load_qa
from dpr_rag.errors import DataFormatError


def test_nq_open_jsonl(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text(
        '{"question": "who wrote hamlet", "answer": ["Shakespeare", "William Shakespeare"], "extra": 1}\n\n'
        '{"question": "capital of france", "answer": ["Paris"]}\n'
    )
    ex = load_nq_open(f)
    assert [(e.question, e.answers) for e in ex] == [
        ("who wrote hamlet", ["Shakespeare", "William Shakespeare"]),
        ("capital of france", ["Paris"]),
    ]


@pytest.mark.parametrize(
    "content,message",
    [
        ('{"question": "q", "answer": []}\n', "q.jsonl:1: no non-empty answer"),
        ('{"answer": ["a"]}\n', "q.jsonl:1: missing field 'question'"),
        ('{"question": "ok", "answer": ["a"]}\n{"question": "", "answer": ["a"]}\n', "q.jsonl:2: field 'question'"),
        ('{"question": "q", "answer": [1]}\n', "q.jsonl:1: answers must be a list of strings"),
        ("not json\n", "q.jsonl:1: invalid JSON"),
    ],
)
def test_nq_open_errors(tmp_path, content, message):
    f = tmp_path / "q.jsonl"
    f.write_text(content)
    with pytest.raises(DataFormatError, match=message):
        load_nq_open(f)


def test_dpr_retriever_json(tmp_path):
    data = [
        {
            "question": "q1",
            "answers": ["a"],
            "positive_ctxs": [{"title": "T", "text": "a b", "passage_id": "5"}],
            "negative_ctxs": [],
            "hard_negative_ctxs": [{"title": "H", "text": "c", "psg_id": 9}],
        }
    ]
    f = tmp_path / "train.json"
    f.write_text(json.dumps(data))
    (e,) = load_dpr_json(f)
    assert e.answers == ["a"] and e.positive_ctxs[0].id == "5" and e.hard_negative_ctxs[0].id == "9"
    f.write_text(json.dumps([{"question": "q", "answers": ["a"], "positive_ctxs": [{"title": "x"}]}]))
    with pytest.raises(DataFormatError, match=r"entry 1 positive_ctxs\[0\]: a passage needs a string field 'text'"):
        load_dpr_json(f)


def test_dpr_csv_parses_literals_without_eval(tmp_path):
    f = tmp_path / "nq-test.csv"
    f.write_text('who got the first nobel prize in physics\t[\'Wilhelm Conrad Röntgen\']\nwhen was it\t["1901", "in 1901"]\n')
    ex = load_qa(f)
    assert [e.answers for e in ex] == [["Wilhelm Conrad Röntgen"], ["1901", "in 1901"]]
    f.write_text("q\t__import__('os').system('echo pwned')\n")
    with pytest.raises(DataFormatError, match="nq-test.csv:1: answers column is not a list literal"):
        load_dpr_csv(f)


def test_answer_strings_conversion():
    assert answer_strings("Right") == ["Right"]
    assert answer_strings(True) == ["yes"]
    assert answer_strings(1998) == ["1998", "1,998"]
    assert answer_strings(12.0) == ["12"]
    assert answer_strings(3.5) == ["3.5"]
    assert answer_strings(["A", ["B", 7]]) == ["A", "B", "7"]
    assert answer_strings({"x": "Left", "y": "Left", "z": 2000}) == ["Left", "2000", "2,000"]
    assert answer_strings(None) == [] and answer_strings(float("nan")) == []


def test_default_questions_are_fanoutqa_single_hop():
    ex = load_fanoutqa()
    assert len(ex) > 1500
    assert all(e.question and e.answers and all(isinstance(a, str) and a for a in e.answers) for e in ex)
    assert len({e.question.lower() for e in ex}) == len(ex)
    assert sum(bool(e.gold_titles) for e in ex) > 0.9 * len(ex)
    assert any(e.question == "What is the batting hand of Pat Burrell?" and e.answers == ["Right"] for e in ex)
