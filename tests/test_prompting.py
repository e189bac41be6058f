"""Few-shot prompts: the template's exact text, the choice of demonstrations, the shipped set, and the pipeline,
eval and app settings that use them."""

from __future__ import annotations

import json

import pytest
from rag_helpers import QA, pipeline

from dpr_rag.app.config import AppConfig
from dpr_rag.data.passages import Passage
from dpr_rag.data.qa import QAExample
from dpr_rag.errors import ConfigError, DataFormatError
from dpr_rag.rag import demonstrations as demos_module
from dpr_rag.rag.demonstrations import (
    MAX_SHOTS,
    few_shot_template,
    load_demonstrations,
    save_demonstrations,
    select_demonstrations,
)
from dpr_rag.rag.prompting import Demonstration, PromptTemplate, prompt
from eval.config import EvalConfig

EIFFEL = Passage("1", "Eiffel Tower", "The Eiffel Tower in Paris was designed by Gustave Eiffel's company.")
PARIS = Passage("2", "Paris", "Paris is the capital of France.")
DEMO = Demonstration("Who designed the Eiffel Tower?", "Gustave Eiffel", EIFFEL)


def test_zero_shot_template_is_the_plain_prompt():
    assert PromptTemplate().render("Who?") == prompt("Who?") == "Question: Who?\nAnswer:"
    assert (
        PromptTemplate().render("Who?", PARIS)
        == prompt("Who?", PARIS)
        == "Paris: Paris is the capital of France.\n\nQuestion: Who?\nAnswer:"
    )


def test_few_shot_template_puts_solved_examples_first():
    template = PromptTemplate((DEMO, Demonstration("What is 2 + 2?", "4")))
    assert template.render("What is the capital of France?", PARIS) == (
        "Eiffel Tower: The Eiffel Tower in Paris was designed by Gustave Eiffel's company.\n\n"
        "Question: Who designed the Eiffel Tower?\nAnswer: Gustave Eiffel\n\n"
        "Question: What is 2 + 2?\nAnswer: 4\n\n"
        "Paris: Paris is the capital of France.\n\nQuestion: What is the capital of France?\nAnswer:"
    )
    # Closed book: the demonstrations lose their passages too, so the prompt shows the task it asks for.
    assert template.render("Capital of France?") == (
        "Question: Who designed the Eiffel Tower?\nAnswer: Gustave Eiffel\n\n"
        "Question: What is 2 + 2?\nAnswer: 4\n\nQuestion: Capital of France?\nAnswer:"
    )


def test_select_demonstrations_keeps_short_answer_bearing_single_questions():
    long_passage = Passage("3", "Long", "word " * 80 + "Zeus")
    passages = [EIFFEL, PARIS, long_passage, Passage("4", "Rome", "Rome is the capital of Italy.")]
    examples = [
        QAExample("Who designed the Eiffel Tower?", ["Gustave Eiffel"], gold_titles=["Eiffel Tower"]),
        QAExample("Who is the god?", ["Zeus"], gold_titles=["Long"]),  # passage too long
        QAExample("What is the capital of France?", ["Berlin"], gold_titles=["Paris"]),  # answer not in the passage
        QAExample("Where is the tower, and who built it?", ["Paris"], gold_titles=["Eiffel Tower"]),  # two questions
        QAExample("What is the capital?", ["the capital of France and more words"], gold_titles=["Paris"]),  # long
        QAExample("Which city is the capital of Italy?", ["Rome"], gold_titles=["Rome"]),
        QAExample("Which city is the capital of France?", ["Paris"], gold_titles=["Paris"]),
    ]
    chosen = select_demonstrations(examples, passages, n=2)
    assert [(d.question, d.answer, d.passage.id) for d in chosen] == [
        ("Who designed the Eiffel Tower?", "Gustave Eiffel", "1"),
        ("Which city is the capital of Italy?", "Rome", "4"),
    ]


def test_demonstrations_round_trip_and_bad_files(tmp_path):
    path = tmp_path / "demos.json"
    save_demonstrations([DEMO, Demonstration("What is 2 + 2?", "4")], path)
    assert load_demonstrations(path) == [DEMO, Demonstration("What is 2 + 2?", "4")]
    path.write_text(json.dumps([{"question": "q"}]))
    with pytest.raises(DataFormatError, match="demos.json: not a demonstrations file"):
        load_demonstrations(path)


def test_the_shipped_demonstrations_are_what_the_builder_makes(tmp_path):
    shipped = load_demonstrations()
    assert len(shipped) == MAX_SHOTS
    assert all(d.passage is not None and d.answer.lower() in d.passage.text.lower() for d in shipped)
    rebuilt = demos_module.write_default_demonstrations(tmp_path / "rebuilt.json")
    assert rebuilt == shipped


def test_few_shot_template_checks_the_number_of_shots():
    assert few_shot_template(0) == PromptTemplate()
    assert few_shot_template(3).shots == tuple(load_demonstrations()[:3])
    for bad in (-1, MAX_SHOTS + 1, 1.5, True):
        with pytest.raises(ConfigError, match="shots must be"):
            few_shot_template(bad)
    with pytest.raises(DataFormatError, match="2 shots asked for, but only 1"):
        few_shot_template(2, [DEMO])


def test_the_pipeline_prompts_with_its_template(tiny_model_dir, toy_passages, gpt2_dir, monkeypatch):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=2)
    pipe.template = PromptTemplate((DEMO,))
    seen: list[list[str]] = []
    original = pipe.generator.generate

    def recording(inputs, *args, **kwargs):
        seen.append(list(inputs))
        return original(inputs, *args, **kwargs)

    monkeypatch.setattr(pipe.generator, "generate", recording)
    question = QA[0][0]
    pipe.answer(question, "token")
    hits, _ = pipe.retrieve([question])
    assert seen[-1] == [pipe.template.render(question, h.passage) for h in hits[0]]
    pipe.answer(question, "closed-book")
    assert seen[-1] == [f"Question: {DEMO.question}\nAnswer: {DEMO.answer}\n\nQuestion: {question}\nAnswer:"]


def test_eval_and_app_settings_take_shots(monkeypatch):
    assert "--shots 3" in EvalConfig(generate=["token"], shots=3).to_command()
    with pytest.raises(ConfigError, match="--shots must be an integer between 0 and 8"):
        EvalConfig(shots=9)
    monkeypatch.setenv("DPR_RAG_APP_SHOTS", "2")
    assert AppConfig.from_env().shots == 2
    monkeypatch.setenv("DPR_RAG_APP_SHOTS", "12")
    with pytest.raises(ConfigError, match="DPR_RAG_APP_SHOTS=12"):
        AppConfig.from_env()
