"""Standard RAG (the top k in one prompt) and RAG over BM25 and hybrid retrieval, on the tiny models of rag_helpers."""

from __future__ import annotations

import math

import pytest
import torch
from rag_helpers import QA, SECRET_Q, pipeline, retriever_over, secret

from dpr_rag.errors import ConfigError
from dpr_rag.rag.pipeline import TEMPERATURES, RagPipeline, default_temperature
from dpr_rag.rag.prompting import PromptTemplate, prompt
from dpr_rag.retrieval.bm25 import BM25Retriever
from dpr_rag.retrieval.hybrid import HybridRetriever

pytestmark = pytest.mark.usefixtures("one_thread")


def test_standard_rag_reads_all_passages_in_one_prompt(tiny_model_dir, toy_passages, gpt2_dir):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=3)
    questions = [q for q, _ in QA[:3]]
    hits, doc_logp = pipe.retrieve(questions)
    joined = pipe._joined_inputs(questions, hits)
    for text, q, row in zip(joined, questions, hits, strict=True):
        assert text == PromptTemplate().render_passages(q, [h.passage for h in row])
        assert text.endswith(f"Question: {q}\nAnswer:") and all(f"{h.passage.title}: {h.passage.text}" in text for h in row)
        assert text.index(row[0].passage.text) < text.index(row[1].passage.text)  # rank order, top first
    answers = pipe.answer_batch(questions, "standard")
    with torch.no_grad():
        expected = pipe.generator.generate(joined, pipe.max_new_tokens, num_beams=1, num_return_sequences=1)
        scores = pipe.marginal_logprob(questions, [a.answer for a in answers], "standard")
    for a, e, s, lp in zip(answers, expected, scores, doc_logp, strict=True):
        assert a.mode == "standard" and a.answer == e[0] and a.logprob == pytest.approx(float(s), abs=1e-4)
        assert [p.prior for p in a.passages] == pytest.approx(lp.exp().tolist())
        assert all(p.posterior == p.prior for p in a.passages)  # one prompt: no passage has a posterior of its own
    assert PromptTemplate().render_passages("q?", [toy_passages[0]]) == prompt("q?", toy_passages[0])


@pytest.mark.parametrize("mode,prompt_passes", [("standard", 1), ("closed-book", 2)])
def test_standard_rag_runs_its_prompt_once_and_closed_book_twice(mode, prompt_passes, tiny_model_dir, toy_passages, gpt2_dir):
    """Standard RAG: decoding and scoring the answer share the prompt's key/value cache, so one forward pass holds the
    prompt's tokens and every other pass (each decoded token, then the answer scored) runs only new tokens. Closed-book
    (a short prompt) scores from scratch, a second pass over the prompt. The scores are the same either way."""
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=1)  # prompts well inside the tiny model's context
    question = QA[0][0]
    hits, _ = pipe.retrieve([question])
    text = pipe._joined_inputs([question], hits)[0] if mode == "standard" else pipe.template.render(question)
    head = pipe.generator.tokenizer(text)["input_ids"][:-1]  # the prompt but its last token
    passes: list[list[int]] = []
    hook = pipe.generator.model.register_forward_pre_hook(
        lambda _m, _a, kw: passes.append(kw["input_ids"][0].tolist()), with_kwargs=True
    )
    try:
        answer = pipe.answer(question, mode)
    finally:
        hook.remove()
    assert len(passes) > 2 and sum(ids[: len(head)] == head for ids in passes) == prompt_passes
    with torch.no_grad():
        expected = pipe.marginal_logprob([question], [answer.answer], mode)  # the answer scored from scratch
    assert answer.logprob == pytest.approx(float(expected[0]), abs=1e-4)


def test_standard_rag_with_the_copier_answers_the_secret(tiny_model_dir, copier_dir):
    pipe = pipeline(tiny_model_dir, [secret("apple", 0), secret("river", 1)], copier_dir, k=1)
    assert pipe.answer(SECRET_Q, "standard").answer in ("apple", "river")


@pytest.mark.parametrize("kind", ["bm25", "hybrid", "hybrid-rrf"])
def test_rag_over_bm25_and_hybrid(kind, tiny_model_dir, toy_passages, gpt2_dir):
    bm25 = BM25Retriever(toy_passages)
    retriever = (
        bm25
        if kind == "bm25"
        else HybridRetriever(
            bm25, retriever_over(tiny_model_dir, toy_passages), fusion="rrf" if kind == "hybrid-rrf" else "linear"
        )
    )
    dense = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=3)
    pipe = RagPipeline(retriever, dense.generator, k=3, max_new_tokens=6)
    assert pipe.temperature == default_temperature(retriever) == TEMPERATURES[kind]
    question = "Who painted the Mona Lisa?"
    hits, doc_logp = pipe.retrieve([question])
    expected = retriever.search([question], 3)[0]
    assert [h.passage.id for h in hits[0]] == [h.passage.id for h in expected]
    scores = torch.tensor([h.score for h in expected])
    torch.testing.assert_close(doc_logp[0], torch.log_softmax(scores / TEMPERATURES[kind], 0))
    if kind == "bm25":
        assert hits[0][0].passage.title == "Mona Lisa"  # BM25 finds it; the random dense model may not
    for mode in ("token", "sequence", "standard", "closed-book"):
        a = pipe.answer(question, mode)
        assert math.isfinite(a.logprob)
        if mode != "closed-book":
            assert sum(p.prior for p in a.passages) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ConfigError, match=f"needs the dense retriever .* retrieves with {retriever.name}"):
        pipe.retrieve([question], with_grad=True)
    with pytest.raises(ConfigError, match="needs the dense retriever"):
        pipe.swap_corpus(toy_passages)
