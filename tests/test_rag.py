"""RAG (Lewis et al., 2020) on tiny random models built offline: a 2-layer BERT dual encoder over the toy passages and
a tiny GPT-2 (or BART) generator. The marginals and the decoders are checked against brute-force computations on
single unpadded rows, and bad input end to end (training and hot-swapping: test_rag_training.py). One slow test uses
the real default models (--run-slow)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from rag_helpers import CONTEXT, QA, SECRET_Q, brute_next, pipeline, secret
from transformers import LogitsProcessor, LogitsProcessorList

from dpr_rag.data.passages import Passage
from dpr_rag.errors import ConfigError
from dpr_rag.rag.generator import Generator
from dpr_rag.rag.marginals import MixturePerQuestion
from dpr_rag.rag.pipeline import RagPipeline
from dpr_rag.rag.prompting import first_line, prompt

pytestmark = pytest.mark.usefixtures("one_thread")
USER_CACHE = os.environ.get("DPR_RAG_CACHE")  # read before conftest's per-test cache replaces it


# ---- brute force ---------------------------------------------------------------------------------------------
def brute_retrieval(pipe: RagPipeline, question: str) -> tuple[list[int], np.ndarray]:
    """Top-k passage positions by E_Q(q)·E_P(p) over the whole corpus, and p(z|x) = softmax(score/τ) over them."""
    enc, passages = pipe.retriever.encoder, pipe.retriever.passages
    scores = (enc.encode_passages(passages, show_progress=False) @ enc.encode_queries([question])[0]).astype(np.float64)
    top = [int(i) for i in np.argsort(-scores)[: pipe.k]]
    z = scores[top] / pipe.temperature
    prior = np.exp(z - z.max())
    return top, prior / prior.sum()


def brute_marginals(pipe: RagPipeline, question: str, answer: str) -> tuple[float, float]:
    """log p(y|x) under RAG-Sequence (Σ_z p(z|x) Π_t p_t) and RAG-Token (Π_t Σ_z p(z|x) p_t), in probability space."""
    gen = pipe.generator
    top, prior = brute_retrieval(pipe, question)
    target = gen.encode_target(answer)
    probs = []  # probs[z][t] = p(y_t | x, z, y_<t)
    for i in top:
        ids = gen.tokenizer(prompt(question, pipe.retriever.passages[i]))["input_ids"]
        assert len(ids) + len(target) <= CONTEXT  # nothing truncated: the brute force sees the whole input
        probs.append([math.exp(brute_next(gen, ids, target[:t], torch.float64)[target[t]].item()) for t in range(len(target))])
    sequence = sum(p * math.prod(row) for p, row in zip(prior, probs, strict=True))
    token = math.prod(sum(prior[z] * probs[z][t] for z in range(len(top))) for t in range(len(target)))
    return math.log(sequence), math.log(token)


@pytest.mark.parametrize("arch", ["gpt2", "bart"])
def test_marginals_match_brute_force(arch, tiny_model_dir, toy_passages, gpt2_dir, bart_dir):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir if arch == "gpt2" else bart_dir, k=3)
    questions, answers = [q for q, _ in QA[:3]], [a for _, a in QA[:3]]  # answers of different lengths: padding
    with torch.no_grad():
        got = {mode: pipe.marginal_logprob(questions, answers, mode) for mode in ("sequence", "token")}
    for b, (q, a) in enumerate(zip(questions, answers, strict=True)):
        sequence, token = brute_marginals(pipe, q, a)
        assert got["sequence"][b].item() == pytest.approx(sequence, abs=2e-4)
        assert got["token"][b].item() == pytest.approx(token, abs=2e-4)
        assert sequence != pytest.approx(token, abs=1e-3)  # with k=3 the two marginals really differ
    # The retrieval half on its own: the pipeline's passages and p(z|x) are the brute-force top-k and softmax.
    hits, doc_logp = pipe.retrieve(questions)
    for b, q in enumerate(questions):
        top, prior = brute_retrieval(pipe, q)
        assert [h.passage.id for h in hits[b]] == [toy_passages[i].id for i in top]
        np.testing.assert_allclose(doc_logp[b].exp().numpy(), prior, atol=1e-5)


def test_closed_book_logprob_is_the_generator_alone(tiny_model_dir, toy_passages, gpt2_dir):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir)
    q, a = QA[0]
    gen = pipe.generator
    target = gen.encode_target(a)
    ids = gen.tokenizer(prompt(q))["input_ids"]
    expected = sum(brute_next(gen, ids, target[:t], torch.float64)[target[t]].item() for t in range(len(target)))
    with torch.no_grad():
        assert pipe.marginal_logprob([q], [a], "closed-book").item() == pytest.approx(expected, abs=1e-4)
    answer = pipe.answer(q, "closed-book")
    assert answer.mode == "closed-book" and answer.passages == []


def test_one_passage_modes_agree(tiny_model_dir, toy_passages, gpt2_dir):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=1)
    questions, answers = [q for q, _ in QA[:4]], [a for _, a in QA[:4]]
    with torch.no_grad():
        torch.testing.assert_close(
            pipe.marginal_logprob(questions, answers, "token"), pipe.marginal_logprob(questions, answers, "sequence")
        )
    for q in questions:
        token, sequence = pipe.answer(q, "token"), pipe.answer(q, "sequence", num_beams=1)  # both greedy
        assert token.answer == sequence.answer
        assert token.logprob == pytest.approx(sequence.logprob, abs=1e-5)
        assert token.passages[0].prior == pytest.approx(1.0) and token.passages[0].posterior == pytest.approx(1.0)


def hand_rolled_token_decode(pipe: RagPipeline, question: str) -> str:
    """Greedy RAG-Token decoding, one step at a time: argmax_y Σ_z p(z|x) p(y | x, z, y_<t) from next_token_logprobs."""
    gen = pipe.generator
    hits, doc_logp = pipe.retrieve([question])
    inputs = [prompt(question, h.passage) for h in hits[0]]
    prefix: list[int] = []
    for _ in range(pipe.max_new_tokens):
        logp = gen.next_token_logprobs(inputs, [prefix] * len(inputs))  # (K, V)
        mixture = torch.logsumexp(doc_logp[0][:, None] + logp, dim=0)
        token = int(mixture.argmax())
        prefix.append(token)
        if token == gen.eos_token_id or "\n" in gen.tokenizer.decode(prefix, skip_special_tokens=True).lstrip():
            break
    return first_line(gen.tokenizer.decode(prefix, skip_special_tokens=True))


@pytest.mark.parametrize("arch", ["gpt2", "bart"])
def test_token_decoding_is_the_mixture(arch, tiny_model_dir, toy_passages, gpt2_dir, bart_dir):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir if arch == "gpt2" else bart_dir, k=3, max_new_tokens=5)
    questions = [q for q, _ in QA[:3]]
    expected = [hand_rolled_token_decode(pipe, q) for q in questions]
    assert any(expected)  # random models still say something
    assert [a.answer for a in pipe.answer_batch(questions, "token")] == expected
    # The mixture differs from any single passage's greedy answer somewhere, or this test would prove little.
    inputs = [prompt(q, h.passage) for q, row in zip(questions, pipe.retrieve(questions)[0], strict=True) for h in row]
    singles = pipe.generator.generate(inputs, 5, num_beams=1, num_return_sequences=1)
    assert any(s[0] != expected[i // 3] for i, s in enumerate(singles))


def test_token_beam_search_keeps_the_passages_in_lockstep(tiny_model_dir, toy_passages, gpt2_dir):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=3, max_new_tokens=6)
    questions = [q for q, _ in QA[:2]]
    hits, doc_logp = pipe.retrieve(questions)
    inputs = [prompt(q, h.passage) for q, row in zip(questions, hits, strict=True) for h in row]
    for beams in (1, 3):
        processors = LogitsProcessorList([MixturePerQuestion(doc_logp, beams)])
        out = pipe.generator.generate(inputs, 6, num_beams=beams, num_return_sequences=1, logits_processor=processors)
        for b in range(len(questions)):
            assert out[b * 3] == out[b * 3 + 1] == out[b * 3 + 2]  # all K rows decode the same mixture
        unstopped = pipe.generator.generate(
            inputs, 6, num_beams=beams, num_return_sequences=1, logits_processor=processors, stop_at_newline=False
        )
        if beams == 1:
            assert out == unstopped  # stopping at the end of the answer never changes a greedy answer
    answers = pipe.answer_batch(questions, "token", num_beams=3)
    assert all(len(a.passages) == 3 for a in answers)


def test_sequence_picks_the_best_marginal_candidate(tiny_model_dir, toy_passages, gpt2_dir):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=3)
    for q, _ in QA[:3]:
        pool = pipe.sequence_candidates([q], 4)[0]
        assert len(pool) >= 2
        with torch.no_grad():
            scores = pipe.marginal_logprob([q] * len(pool), pool, "sequence")
        answer = pipe.answer(q, "sequence")  # 4 beams per passage by default
        assert answer.answer == pool[int(scores.argmax())]
        assert answer.logprob == pytest.approx(scores.max().item(), abs=1e-4)


# ---- stopping at the end of the answer ----------------------------------------------------------------------
class Force(LogitsProcessor):
    """Force a fixed token sequence, whatever the model thinks."""

    def __init__(self, tokens: list[int], start: int):
        self.tokens, self.start = tokens, start

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.start
        forced = torch.full_like(scores, -float("inf"))
        forced[:, self.tokens[min(step, len(self.tokens) - 1)]] = 0
        return forced


@pytest.mark.parametrize("beams", [1, 2])
def test_generation_stops_at_the_end_of_the_line(gpt2_dir, beams):
    gen = Generator.from_pretrained(gpt2_dir)
    calls = []
    gen.model.register_forward_hook(lambda *a: calls.append(1))
    piece = lambda text: gen.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    newline, apple, x = piece("\n"), piece(" apple"), piece(" x")
    assert len(newline) == 1
    source = prompt(SECRET_Q, secret("apple"))
    start = len(gen.tokenizer(source)["input_ids"])
    for forced, steps in ((apple + newline + x * 6, len(apple) + 1), (newline + apple + newline + x * 6, len(apple) + 2)):
        for stop in (True, False):
            calls.clear()
            out = gen.generate(
                [source],
                8,
                num_beams=beams,
                num_return_sequences=1,
                stop_at_newline=stop,
                logits_processor=LogitsProcessorList([Force(forced, start)]),
            )
            assert out == [["apple"]]
            prefill = 1 if beams > 1 else 0  # beam search runs the prompt once beforehand (shared by the beams)
            assert len(calls) == prefill + (steps if stop else 8)  # stops right after the answer's newline


def test_beam_search_shares_the_prompt_cache(tiny_model_dir, toy_passages, gpt2_dir):
    """Running each prompt once for all its beams gives exactly the beams of plain `generate` (which copies it)."""
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=3, max_new_tokens=6)
    questions = [q for q, _ in QA[:2]]
    hits, doc_logp = pipe.retrieve(questions)
    inputs = [prompt(q, h.passage) for q, row in zip(questions, hits, strict=True) for h in row]
    gen = pipe.generator
    results = {}
    for share in (True, False):
        gen.share_prompt_cache = share
        results[share] = (
            gen.generate(inputs, 6, num_beams=3, num_return_sequences=3),
            gen.generate(
                inputs,
                6,
                num_beams=2,
                num_return_sequences=1,
                logits_processor=LogitsProcessorList([MixturePerQuestion(doc_logp, 2)]),
            ),
            [a.answer for a in pipe.answer_batch(questions, "sequence")],
        )
    assert results[True] == results[False]
    assert any(len(c) > 1 for c in results[True][0])


@pytest.mark.parametrize("arch", ["gpt2", "bart"])
def test_encoded_prompts_are_shared_without_changing_results(arch, gpt2_dir, bart_dir):
    """Prompts run once (`encode_prompts`) give the same generations and scores as running them each time, and stay
    reusable: generating or scoring with them leaves them as they were."""
    gen = Generator.from_pretrained(gpt2_dir if arch == "gpt2" else bart_dir)
    gen.share_prompt_cache = False
    inputs = [
        prompt(q, p)
        for (q, _), p in zip(QA[:3], [secret("apple"), secret("river"), Passage("x", "T", "some text " * 5)], strict=True)
    ]
    prompts = gen.encode_prompts(inputs, reserve=12)
    for beams in (1, 3, 1):
        plain = gen.generate(inputs, 6, num_beams=beams, num_return_sequences=beams)
        assert gen.generate(inputs, 6, num_beams=beams, num_return_sequences=beams, prompts=prompts) == plain
    targets = [a for _, a in QA[:4]]
    for rows in ([0, 1, 2], [2, 0], [1]):
        expected = gen.cross_target_logprobs([inputs[r] for r in rows], targets)
        for _ in range(2):
            got = gen.cross_target_logprobs([inputs[r] for r in rows], targets, prompts=prompts, rows=rows)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ["gpt2", "bart"])
def test_cross_target_logprobs_match_pairwise_scoring(arch, gpt2_dir, bart_dir):
    gen = Generator.from_pretrained(gpt2_dir if arch == "gpt2" else bart_dir)
    inputs = [
        prompt(q, p)
        for (q, _), p in zip(QA[:3], [secret("apple"), secret("river"), Passage("x", "T", "some text " * 5)], strict=True)
    ]
    targets = [a for _, a in QA] + ["x"]
    with torch.no_grad():
        pairwise, pair_mask = gen.target_logprobs([i for i in inputs for _ in targets], targets * len(inputs))
    for budget in (2**25, 1):  # all targets in one pass, or one target per pass
        logp, mask = gen.cross_target_logprobs(inputs, targets, max_logits=budget)
        assert logp.shape == (3, len(targets), pair_mask.shape[1]) and torch.equal(mask, pair_mask[: len(targets)])
        torch.testing.assert_close(logp, pairwise.view(3, len(targets), -1), atol=1e-5, rtol=1e-4)


# ---- bad input -------------------------------------------------------------------------------------------------
def test_bad_input(tiny_model_dir, toy_passages, gpt2_dir):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=3)
    for mode in ("token", "sequence", "standard", "closed-book"):
        with pytest.raises(ConfigError, match="empty question"):
            pipe.answer("   ", mode)
    with pytest.raises(ConfigError, match="question 2 is empty"):
        pipe.answer_batch(["Who painted the Mona Lisa?", ""], "token")
    with pytest.raises(ConfigError, match="empty question"):
        pipe.marginal_logprob([""], ["x"], "token")
    for call in (lambda: pipe.answer("Who?", "tokens"), lambda: pipe.marginal_logprob(["Who?"], ["x"], "seq")):
        with pytest.raises(ConfigError, match="unknown mode .*sequence, token, standard, closed-book"):
            call()
    with pytest.raises(ConfigError, match="num_beams"):
        pipe.answer("Who?", "token", num_beams=0)
    for mode in ("token", "sequence", "standard", "closed-book"):  # an answer that cannot fit the context, both lengths named
        with pytest.raises(ConfigError, match=rf"target of \d+ tokens .*context of {CONTEXT} tokens"):
            pipe.marginal_logprob(["Who?"], ["Leonardo " * 200], mode)


def test_too_few_passages(tiny_model_dir, toy_passages, gpt2_dir):
    pipe = pipeline(tiny_model_dir, toy_passages[:3], gpt2_dir, k=5)
    for mode in ("token", "sequence"):
        with pytest.raises(ConfigError, match="only 3 passages retrieved .*k=5: the corpus has 3 passages; lower k"):
            pipe.answer("Who painted the Mona Lisa?", mode)
    assert pipe.answer("Who painted the Mona Lisa?", "closed-book").passages == []  # needs no passages
    empty = pipeline(tiny_model_dir, [], gpt2_dir, k=1)
    with pytest.raises(ConfigError, match="no passages retrieved: the corpus is empty"):
        empty.answer("Who painted the Mona Lisa?", "token")


def test_tokenizer_without_pad_and_provenance(tiny_model_dir, toy_passages, gpt2_dir):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=3)
    tok = pipe.generator.tokenizer
    assert tok.pad_token_id == tok.eos_token_id  # GPT-2 style: no pad token of its own, eos pads
    questions = [q for q, _ in QA[:4]]  # different lengths: the batch is padded
    for mode in ("token", "sequence"):
        batch = pipe.answer_batch(questions, mode)
        assert [a.answer for a in batch] == [pipe.answer(q, mode).answer for q in questions]
        for a in batch:
            assert a.mode == mode and len(a.passages) == 3 and math.isfinite(a.logprob) and a.logprob <= 0
            assert sum(p.prior for p in a.passages) == pytest.approx(1.0, abs=1e-5)
            assert sum(p.posterior for p in a.passages) == pytest.approx(1.0, abs=1e-5)
            assert [p.retrieval_score for p in a.passages] == sorted((p.retrieval_score for p in a.passages), reverse=True)


# ---- the real default models ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_default_models_answer_from_the_corpus(monkeypatch):
    """Gemma 3 270M over the embedded corpus (reuses $DPR_RAG_CACHE if it was set, else encodes and converts once)."""
    if USER_CACHE:
        monkeypatch.setenv("DPR_RAG_CACHE", USER_CACHE)
    pipe = RagPipeline.open(k=3)
    assert pipe.generator.adapter and pipe.generator.adapter.endswith(os.path.join("rag", "reader", "generator"))
    for mode in ("token", "sequence", "standard"):
        a = pipe.answer("who painted the mona lisa", mode)
        assert a.answer == "Leonardo da Vinci", (mode, a.answer)  # the shipped reader answers with the name alone
        assert a.passages[0].passage.title == "Mona Lisa"
        if mode != "standard":
            assert max(p.posterior for p in a.passages) > 0.5
    assert pipe.answer("what is the capital of france", "token").answer == "Paris"
    assert pipe.answer("who painted the mona lisa", "closed-book").answer
