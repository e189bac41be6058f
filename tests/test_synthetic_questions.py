"""Synthetic questions: answer candidates, the question checks, the round trip, resume, and the training-data hookup."""

from __future__ import annotations

import json

import pytest

from dpr_rag.data.qa import load_dpr_json
from dpr_rag.errors import ConfigError
from dpr_rag.retrieval.bm25 import BM25Retriever
from dpr_rag.training.answer_spans import answer_spans, sentences
from dpr_rag.training.synthetic_questions import (
    GenerationConfig,
    candidates,
    generate_questions,
    qg_demonstrations,
    qg_prompt,
    question_problem,
)

TEXT = (
    "Tanzania is a country in East Africa within the African Great Lakes region. It is bordered by Uganda to the "
    "northwest and Kenya to the northeast. Its population was 67.5 million in 2024. The capital moved to Dodoma on "
    "March 3, 1996. Earth's largest lakes include Lake Victoria."
)


def test_sentences_split_after_full_stops():
    assert sentences("One is here. Two is 3.5 m long. 1999 was a year.") == [
        "One is here.",
        "Two is 3.5 m long.",
        "1999 was a year.",
    ]


def test_answer_spans_find_dates_numbers_and_names_but_not_the_title_or_sentence_starts():
    spans = {s.answer: s for s in answer_spans(TEXT, "Tanzania")}
    assert spans["March 3, 1996"].kind == "date" and "1996" not in spans  # the year is part of the date
    assert spans["2024"].kind == "date"
    assert spans["67.5 million"].kind == "number"
    for name in ("East Africa", "African Great Lakes", "Uganda", "Kenya", "Dodoma", "Lake Victoria"):
        assert spans[name].kind == "name", name
    assert "Tanzania" not in spans  # the title
    assert "It" not in spans and "Its" not in spans and "Earth" not in spans  # sentence starts
    assert spans["Kenya"].sentence == "It is bordered by Uganda to the northwest and Kenya to the northeast."


def test_answer_spans_drop_adjectives_and_possessives():
    spans = [s.answer for s in answer_spans("It was built by French monks for Napoleon's army.", "Abbey")]
    assert spans == ["Napoleon"]


def test_question_problem_names_each_reason():
    demos = frozenset({"what is the height of mount everest?"})
    assert question_problem("Who painted the Mona Lisa?", "Leonardo da Vinci", demos) is None
    assert question_problem("Painted?", "Leonardo", demos) == "length"
    assert question_problem("What is the height of Mount Everest?", "8,848 m", demos) == "copied a demonstration"
    assert question_problem("Answer: the Mona Lisa", "Leonardo", demos) == "format"
    assert question_problem("The Mona Lisa is a painting", "Leonardo", demos) == "not a question"
    assert question_problem("Did Leonardo da Vinci paint it?", "Leonardo da Vinci", demos) == "gives the answer away"


def test_the_prompt_shows_demonstrations_then_the_span_to_ask_about(toy_passages):
    demos = qg_demonstrations(2)
    span = answer_spans(toy_passages[1].text, toy_passages[1].title)[0]
    text = qg_prompt(demos, toy_passages[1], span)
    assert text.count("Question:") == 3 and text.endswith(f"Answer: {span.answer}\nQuestion:")
    assert demos[0].question in text and demos[0].answer in demos[0].sentence


def test_candidates_are_seeded_and_cover_the_corpus_in_shuffled_order(toy_passages):
    a = candidates(toy_passages, per_passage=1, seed=3)
    assert [c.key for c in a] == [c.key for c in candidates(toy_passages, per_passage=1, seed=3)]
    assert len({c.passage.id for c in a}) == len(a)  # one per passage
    assert [c.passage.id for c in candidates(toy_passages, max_passages=2, seed=3)] == [c.passage.id for c in a[:2]]
    assert all(c.span.answer in c.passage.text for c in a)


class ScriptedGenerator:
    """Asks about the passage's title when the prompt's article is in `good` (the same question for each of its spans),
    else something vague (a new question each time); counts calls."""

    def __init__(self, good: set[str], fail_after: int | None = None):
        self.good, self.fail_after, self.calls, self.n_vague = good, fail_after, 0, 0
        self.model = type("M", (), {"eval": lambda self: None})()

    def generate(self, prompts, **kw):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        out = []
        for p in prompts:
            title = p.rsplit("Article: ", 1)[1].split("\n", 1)[0]
            self.n_vague += title not in self.good
            out.append([f"What is known about the {title}?" if title in self.good else f"What is thing {self.n_vague}?"])
        return out


def _corpus(toy_passages):
    return toy_passages, BM25Retriever(toy_passages)


def test_round_trip_keeps_questions_that_lead_back_to_their_passage(tmp_path, toy_passages):
    passages, bm25 = _corpus(toy_passages)
    good = {"Eiffel Tower", "Mona Lisa", "Python (programming language)"}
    config = GenerationConfig(
        out=str(tmp_path / "synthetic.json"), per_passage=2, round_trip_k=1, batch_size=3, shots=2, hard_negatives=2
    )
    stats = generate_questions(passages, ScriptedGenerator(good), bm25, bm25, config, show_progress=False)
    examples = load_dpr_json(tmp_path / "synthetic.json")
    spans = candidates(passages, per_passage=2)
    with_span = {c.passage.title for c in spans}
    assert {ex.positive_ctxs[0].title for ex in examples} == good & with_span
    for ex in examples:
        assert ex.answers[0] in ex.positive_ctxs[0].text
        assert all(n.id != ex.positive_ctxs[0].id and ex.answers[0] not in n.text for n in ex.hard_negative_ctxs)
        assert len(ex.hard_negative_ctxs) == 2
    assert stats.n_kept == len(examples)
    n_vague = sum(c.passage.title not in good for c in spans)
    n_repeats = sum(c.passage.title in good for c in spans) - len(examples)  # a passage's second span: the same question
    assert n_repeats > 0 and stats.rejected == {"failed the round trip": n_vague, "duplicate": n_repeats}
    assert json.loads((tmp_path / "synthetic.json.stats.json").read_text())["kept"] == len(examples)
    with pytest.raises(ConfigError, match="exists"):
        GenerationConfig(out=str(tmp_path / "synthetic.json"))  # never overwritten


def test_a_cancelled_run_resumes_without_generating_again(tmp_path, toy_passages):
    passages, bm25 = _corpus(toy_passages)
    good = {p.title for p in passages}
    out = str(tmp_path / "s.json")
    with pytest.raises(KeyboardInterrupt):
        generate_questions(
            passages,
            ScriptedGenerator(good, fail_after=1),
            bm25,
            bm25,
            GenerationConfig(out=out, batch_size=2, shots=1),
            show_progress=False,
        )
    assert len((tmp_path / "s.json.generated.jsonl").read_text().splitlines()) == 2
    with pytest.raises(ConfigError, match="--resume"):
        GenerationConfig(out=out)
    with open(tmp_path / "s.json.generated.jsonl", "a") as f:
        f.write('{"key": "cut sho')  # a kill in the middle of a line
    gen = ScriptedGenerator(good)
    stats = generate_questions(
        passages, gen, bm25, bm25, GenerationConfig(out=out, batch_size=2, shots=1, resume=True), show_progress=False
    )
    n = len(candidates(passages))
    assert gen.calls == (n - 2 + 1) // 2  # only what the first run had not finished
    assert stats.n_generated == n - 2 and stats.n_kept + sum(stats.rejected.values()) == n


def test_the_command_runs_a_real_generator_end_to_end(tmp_path, toy_passages, gpt2_dir):
    from dpr_rag.data.passages import save_jsonl
    from dpr_rag.generate_questions import main

    save_jsonl(toy_passages, tmp_path / "corpus.jsonl")
    out = tmp_path / "q.json"
    argv = ["--out", str(out), "--corpus", str(tmp_path / "corpus.jsonl"), "--generator", str(gpt2_dir), "--shots", "1"]
    assert main([*argv, "--max-passages", "3", "--no-cache"]) == 0
    records = [json.loads(line) for line in (tmp_path / "q.json.generated.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(r["verdict"] for r in records)
    assert json.loads(out.read_text()) == [] or load_dpr_json(out)  # a random tiny LM rarely asks a usable question


def test_training_data_puts_synthetic_questions_in_train_only(tmp_path, toy_passages):
    from dpr_rag.data.qa import QAExample
    from dpr_rag.training.distant_supervision import load_or_build_training_data, save_dpr_json
    from dpr_rag.training.trainer import TrainConfig

    real = [QAExample(f"real question {i}?", ["x"], positive_ctxs=[toy_passages[i]]) for i in range(6)]
    synth = [QAExample(f"synthetic question {i}?", ["y"], positive_ctxs=[toy_passages[i]]) for i in range(5)]
    synth.append(QAExample("real question 0?", ["x"], positive_ctxs=[toy_passages[0]]))  # equal to a real one
    save_dpr_json(real, tmp_path / "real.json")
    save_dpr_json(synth, tmp_path / "synth.json")
    cfg = TrainConfig(
        out=str(tmp_path / "run"), qa=str(tmp_path / "real.json"), synthetic=str(tmp_path / "synth.json"), dev_fraction=0.34
    )
    train, dev, _ = load_or_build_training_data(cfg, tmp_path / "run")
    assert dev and all(ex.question.startswith("real") for ex in dev)
    assert sum(ex.question.startswith("synthetic") for ex in train) == 5
    assert len(train) + len(dev) == 6 + 5 + (0 if "real question 0?" in {e.question for e in dev} else 1)
    alone = TrainConfig(out=str(tmp_path / "run2"), synthetic=str(tmp_path / "synth.json"), dev_fraction=0.34)
    train2, dev2, _ = load_or_build_training_data(alone, tmp_path / "run2")
    assert dev2 and len(train2) + len(dev2) == 6  # no labelled questions: the synthetic ones are split
