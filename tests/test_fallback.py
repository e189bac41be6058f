"""The closed-book fallback (`dpr_rag.rag.fallback`): a RAG answer kept only where its passages hold it, in the
pipeline, the answer CLI's output and the eval harness's '+ fallback' rows."""

from __future__ import annotations

import json

import pytest
from rag_helpers import QA, SECRET_Q, pipeline, secret

from dpr_rag.data.passages import Passage
from dpr_rag.errors import ConfigError
from dpr_rag.rag.fallback import is_grounded, with_fallback
from dpr_rag.rag.pipeline import Provenance, RagAnswer, RagPipeline
from eval.config import EvalConfig
from eval.harness import run_evaluation

pytestmark = pytest.mark.usefixtures("one_thread")

MONA = Passage("1", "Leonardo da Vinci", "An Italian polymath who painted the Mona Lisa around 1503.")
TOWER = Passage("2", "Eiffel Tower", "A wrought-iron tower in Paris, completed in 1889.")
EVAL_QA = [
    ("who painted the mona lisa", ["Leonardo da Vinci"]),
    ("in which year was the eiffel tower in paris completed", ["1889"]),
    ("who created the python programming language", ["Guido van Rossum"]),
    ("what is the highest mountain on earth", ["Mount Everest"]),
    ("who discovered penicillin", ["Alexander Fleming"]),
]


def rag(question: str, answer: str, *passages: Passage) -> RagAnswer:
    return RagAnswer(question, answer, "standard", -1.0, [Provenance(p, 0.5, 0.5, 0.5) for p in passages])


def test_grounded_means_the_answer_is_in_a_passage_title_or_text():
    assert is_grounded(rag("q", "around 1503", TOWER, MONA))  # in the text of the second passage
    assert is_grounded(rag("q", "LEONARDO DA VINCI", TOWER, MONA))  # in a title; DPR's match is uncased
    assert is_grounded(rag("q", "Paris,", TOWER))  # punctuation is not a token of the match
    assert not is_grounded(rag("q", "Michelangelo", TOWER, MONA))
    assert not is_grounded(rag("q", "Leonardo Vinci", MONA))  # the tokens must be adjacent
    assert not is_grounded(rag("q", "da", TOWER))  # "da" is not a token of "Eiffel Tower ... 1889"
    assert not is_grounded(rag("q", "  ", MONA)) and not is_grounded(rag("q", "1889"))  # empty answer; no passages


def test_with_fallback_replaces_only_the_unsupported_answers():
    answers = [rag("a?", "1889", TOWER), rag("b?", "Raphael", MONA)]
    closed = [RagAnswer("a?", "1900", "closed-book", -3.0), RagAnswer("b?", "Michelangelo", "closed-book", -2.0)]
    kept, fell = with_fallback(answers, closed)
    assert kept is answers[0] and not kept.fallback
    assert (fell.answer, fell.logprob, fell.fallback, fell.mode) == ("Michelangelo", -2.0, True, "standard")
    assert fell.passages == answers[1].passages  # the passages that lacked the answer stay as provenance
    with pytest.raises(ConfigError, match="1 RAG answers but 2"):
        with_fallback(answers[:1], closed)
    with pytest.raises(ConfigError, match="other questions"):
        with_fallback(answers, closed[::-1])


@pytest.mark.parametrize("mode", ["standard", "token", "sequence"])
def test_pipeline_falls_back_exactly_where_the_passages_lack_the_answer(mode, tiny_model_dir, toy_passages, gpt2_dir):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=2)
    questions = [q for q, _ in QA]
    plain = pipe.answer_batch(questions, mode)
    closed = pipe.answer_batch(questions, "closed-book")
    pipe.fallback = True
    mixed = pipe.answer_batch(questions, mode)
    assert any(not is_grounded(a) for a in plain)  # a random generator: some answers are in no passage
    for p, c, m in zip(plain, closed, mixed, strict=True):
        expected = p if is_grounded(p) else c
        assert (m.answer, m.fallback, m.mode) == (expected.answer, not is_grounded(p), mode)
        assert m.logprob == pytest.approx(expected.logprob, abs=1e-4)
        assert [x.passage.id for x in m.passages] == [x.passage.id for x in p.passages]
    assert [a.answer for a in pipe.answer_batch(questions, "closed-book")] == [a.answer for a in closed]


def test_a_grounded_answer_never_falls_back(tiny_model_dir, copier_dir):
    pipe = pipeline(tiny_model_dir, [secret("apple", 0), secret("river", 1)], copier_dir, k=1)
    pipe.fallback = True
    a = pipe.answer(SECRET_Q, "standard")
    assert a.answer in ("apple", "river") and not a.fallback


def test_open_takes_the_fallback_from_the_rag_folder(monkeypatch, tmp_path):
    folder = tmp_path / "reader"
    (folder / "generator").mkdir(parents=True)
    searcher = type("S", (), {"retriever": lambda self, name: object()})()
    monkeypatch.setattr("dpr_rag.rag.pipeline.Generator.from_pretrained", lambda path: object())
    monkeypatch.setattr(RagPipeline, "__init__", lambda self, *a, **kw: None)
    for config, flag, expected in (({}, None, False), ({"fallback": True}, None, True), ({"fallback": True}, False, False)):
        (folder / "rag_config.json").write_text(json.dumps({"mode": "standard", **config}))
        assert RagPipeline.open(rag=folder, searcher=searcher, fallback=flag).fallback is expected


class GroundedPipeline:
    """Answers with passages: sequence answers 1 and 3 are in their passage, 2, 4 and 5 are not."""

    PASSAGE = {0: MONA, 1: TOWER}
    ANSWERS = {
        "sequence": ["Leonardo da Vinci", "1900", "Guido", "Everest", "Fleming"],
        "closed-book": ["Michelangelo", "1889", "Guido van Rossum", "Mount Everest", "Alexander Fleming"],
    }

    def __init__(self):
        self.asked: list[tuple[str, int]] = []

    def answer_batch(self, questions, mode, num_beams=None):  # RagPipeline.answer_batch's signature
        self.asked.append((mode, len(questions)))
        index = {q: i for i, (q, _) in enumerate(EVAL_QA)}
        passages = {0: [MONA], 1: [MONA], 2: [Passage("3", "Python", "Guido van Rossum began Python.")]}
        out = []
        for q in questions:
            i = index[q]
            given = [] if mode == "closed-book" else passages.get(i, [TOWER])
            out.append(rag(q, self.ANSWERS[mode][i], *given) if given else RagAnswer(q, self.ANSWERS[mode][i], mode, -1.0))
        return out


@pytest.mark.parametrize("with_closed_book", [False, True])
def test_eval_adds_a_fallback_row_per_rag_mode(with_closed_book, tmp_path, monkeypatch):
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in EVAL_QA))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": p.id, "title": p.title, "text": p.text}) + "\n" for p in (MONA, TOWER)))
    fake = GroundedPipeline()
    monkeypatch.setattr(RagPipeline, "open", lambda **kw: fake)
    modes = ["sequence", "closed-book"] if with_closed_book else ["sequence"]
    config = EvalConfig(
        qa=str(qa), corpus=str(corpus), retrievers=["bm25"], k=[1], generate=modes, fallback=True, out=str(tmp_path / "r"),
        show_progress=False, bootstrap_samples=200,
    )  # fmt: skip
    report, out = run_evaluation(config)
    # Sequence answers: right, wrong (not in MONA), wrong (grounded "Guido"), wrong, wrong; questions 2, 4 and 5 fall
    # back to the closed-book answers, which are right: EM 1/5 -> 4/5.
    assert report["qa"]["sequence"]["em"] == 20.0 and report["qa"]["sequence + fallback"]["em"] == 80.0
    assert report["fallbacks"] == {"sequence + fallback": 3}
    assert list(report["qa"])[-1] == "sequence + fallback"
    # Closed-book is answered once for every question when it is a row, else only for the 3 that fall back.
    closed_book_calls = [m for m in fake.asked if m[0] == "closed-book"]
    assert closed_book_calls == ([("closed-book", 5)] if with_closed_book else [("closed-book", 3)])
    assert any(c["a"] == "sequence + fallback" and c["b"] == "sequence" for c in report["comparisons"]["qa"])
    assert "sequence + fallback: 3 of 5" in (out / "report.md").read_text() and "--fallback" in report["settings"]["command"]
    with pytest.raises(ConfigError, match="--fallback needs a RAG mode"):
        EvalConfig(qa=str(qa), generate=["closed-book"], fallback=True)
