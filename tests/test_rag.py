"""RAG (Lewis et al., 2020) on tiny random models built offline: a 2-layer BERT dual encoder over the toy passages and
a tiny GPT-2 (or BART) generator. The marginals and the decoders are checked against brute-force computations on
single unpadded rows; training, hot-swapping and bad input are checked end to end. One slow test uses the real
default models (--run-slow)."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from rag_helpers import CONTEXT, build_bart, build_gpt2, brute_next
from transformers import LogitsProcessor, LogitsProcessorList

from dpr_rag.answer import main as answer_main
from dpr_rag.answer import open_pipeline
from dpr_rag.dense import DenseRetriever, encode_corpus
from dpr_rag.encoder import DualEncoder
from dpr_rag.errors import ConfigError
from dpr_rag.generator import Generator, first_line, prompt
from dpr_rag.passages import Passage, save_jsonl
from dpr_rag.qa import QAExample
from dpr_rag.rag import RagPipeline, _MixturePerQuestion, load_rag_config
from dpr_rag.rag_trainer import RagTrainConfig, freeze_passage_tower, mean_loss, train_rag

USER_CACHE = os.environ.get("DPR_RAG_CACHE")  # read before conftest's per-test cache replaces it
QA = [  # one question per toy passage (tests/conftest.py), in the same order
    ("Who painted the Mona Lisa?", "Leonardo da Vinci"),
    ("When was the Eiffel Tower completed?", "1889"),
    ("Who created Python?", "Guido van Rossum"),
    ("What is Earth's highest mountain?", "Mount Everest"),
    ("Which river has the largest discharge?", "the Amazon River"),
    ("Where is the Great Wall?", "northern China"),
    ("Who researched radioactivity?", "Marie Curie"),
    ("What is the largest planet?", "Jupiter"),
]
# Hot-swapping: a generator trained to copy the secret word from its passage (the question never tells it).
WORDS = ["apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "forest"]
SECRET_Q = "What is the secret word?"


def secret(word: str, n: int = 0) -> Passage:
    return Passage(f"{word}-{n}", "Note", f"The secret word is {word}.")


SHARP = 0.3  # random generators' init std: peaked next-token distributions that depend on the passage
TEXTS = [prompt(q) + " " + a for q, a in QA] + [prompt(SECRET_Q, secret(w)) + " " + w for w in WORDS]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run many small ops: on a busy 2-core machine one thread is far faster than two."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return build_gpt2(tmp_path_factory.mktemp("rag-gpt2"), TEXTS, init_range=SHARP)


@pytest.fixture(scope="module")
def bart_dir(tmp_path_factory):
    return build_bart(tmp_path_factory.mktemp("rag-bart"), TEXTS, init_range=SHARP)


@pytest.fixture(scope="module")
def copier_dir(tmp_path_factory):
    """A tiny GPT-2 trained (about a second) to answer SECRET_Q with the word its passage states."""
    folder = build_gpt2(tmp_path_factory.mktemp("rag-copier"), TEXTS, seed=1)
    gen = Generator.from_pretrained(folder)
    inputs = [prompt(SECRET_Q, secret(w)) for w in WORDS]
    optimizer = torch.optim.Adam(gen.model.parameters(), lr=3e-3)
    gen.model.train()
    for _ in range(800):
        logp, _ = gen.target_logprobs(inputs, WORDS)
        loss = -logp.sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.02:
            break
    assert loss.item() < 0.05, "the copying generator did not learn"
    gen.model.eval()
    gen.save_pretrained(folder)
    return folder


def retriever_over(model_dir, passages: list[Passage]) -> DenseRetriever:
    # Mean pooling: the random BERT's [CLS] vectors are almost identical for every input (scores tie to 1e-3).
    encoder = DualEncoder.from_pretrained(model_dir, pooling="mean")
    return DenseRetriever(encoder, encode_corpus(encoder, passages, show_progress=False), passages)


def pipeline(model_dir, passages, gen_dir, k: int = 3, max_new_tokens: int = 6) -> RagPipeline:
    generator = Generator.from_pretrained(gen_dir)
    return RagPipeline(retriever_over(model_dir, passages), generator, k=k, max_new_tokens=max_new_tokens)


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
    sequence = sum(p * math.prod(row) for p, row in zip(prior, probs))
    token = math.prod(sum(prior[z] * probs[z][t] for z in range(len(top))) for t in range(len(target)))
    return math.log(sequence), math.log(token)


@pytest.mark.parametrize("arch", ["gpt2", "bart"])
def test_marginals_match_brute_force(arch, tiny_model_dir, toy_passages, gpt2_dir, bart_dir):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir if arch == "gpt2" else bart_dir, k=3)
    questions, answers = [q for q, _ in QA[:3]], [a for _, a in QA[:3]]  # answers of different lengths: padding
    with torch.no_grad():
        got = {mode: pipe.marginal_logprob(questions, answers, mode) for mode in ("sequence", "token")}
    for b, (q, a) in enumerate(zip(questions, answers)):
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
        torch.testing.assert_close(pipe.marginal_logprob(questions, answers, "token"),
                                   pipe.marginal_logprob(questions, answers, "sequence"))
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
    inputs = [prompt(q, h.passage) for q, row in zip(questions, pipe.retrieve(questions)[0]) for h in row]
    singles = pipe.generator.generate(inputs, 5, num_beams=1, num_return_sequences=1)
    assert any(s[0] != expected[i // 3] for i, s in enumerate(singles))


def test_token_beam_search_keeps_the_passages_in_lockstep(tiny_model_dir, toy_passages, gpt2_dir):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=3, max_new_tokens=6)
    questions = [q for q, _ in QA[:2]]
    hits, doc_logp = pipe.retrieve(questions)
    inputs = [prompt(q, h.passage) for q, row in zip(questions, hits) for h in row]
    for beams in (1, 3):
        processors = LogitsProcessorList([_MixturePerQuestion(doc_logp, beams)])
        out = pipe.generator.generate(inputs, 6, num_beams=beams, num_return_sequences=1, logits_processor=processors)
        for b in range(len(questions)):
            assert out[b * 3] == out[b * 3 + 1] == out[b * 3 + 2]  # all K rows decode the same mixture
        unstopped = pipe.generator.generate(inputs, 6, num_beams=beams, num_return_sequences=1, logits_processor=processors,
                                            stop_at_newline=False)
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
            out = gen.generate([source], 8, num_beams=beams, num_return_sequences=1, stop_at_newline=stop,
                               logits_processor=LogitsProcessorList([Force(forced, start)]))
            assert out == [["apple"]]
            prefill = 1 if beams > 1 else 0  # beam search runs the prompt once beforehand (shared by the beams)
            assert len(calls) == prefill + (steps if stop else 8)  # stops right after the answer's newline


def test_beam_search_shares_the_prompt_cache(tiny_model_dir, toy_passages, gpt2_dir):
    """Running each prompt once for all its beams gives exactly the beams of plain `generate` (which copies it)."""
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=3, max_new_tokens=6)
    questions = [q for q, _ in QA[:2]]
    hits, doc_logp = pipe.retrieve(questions)
    inputs = [prompt(q, h.passage) for q, row in zip(questions, hits) for h in row]
    gen = pipe.generator
    results = {}
    for share in (True, False):
        gen.share_prompt_cache = share
        results[share] = (gen.generate(inputs, 6, num_beams=3, num_return_sequences=3),
                          gen.generate(inputs, 6, num_beams=2, num_return_sequences=1,
                                       logits_processor=LogitsProcessorList([_MixturePerQuestion(doc_logp, 2)])),
                          [a.answer for a in pipe.answer_batch(questions, "sequence")])
    assert results[True] == results[False]
    assert any(len(c) > 1 for c in results[True][0])


@pytest.mark.parametrize("arch", ["gpt2", "bart"])
def test_encoded_prompts_are_shared_without_changing_results(arch, gpt2_dir, bart_dir):
    """Prompts run once (`encode_prompts`) give the same generations and scores as running them each time, and stay
    reusable: generating or scoring with them leaves them as they were."""
    gen = Generator.from_pretrained(gpt2_dir if arch == "gpt2" else bart_dir)
    gen.share_prompt_cache = False
    inputs = [prompt(q, p) for (q, _), p in zip(QA[:3], [secret("apple"), secret("river"), Passage("x", "T", "some text " * 5)])]
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
    inputs = [prompt(q, p) for (q, _), p in zip(QA[:3], [secret("apple"), secret("river"), Passage("x", "T", "some text " * 5)])]
    targets = [a for _, a in QA] + ["x"]
    with torch.no_grad():
        pairwise, pair_mask = gen.target_logprobs([i for i in inputs for _ in targets], targets * len(inputs))
    for budget in (2**25, 1):  # all targets in one pass, or one target per pass
        logp, mask = gen.cross_target_logprobs(inputs, targets, max_logits=budget)
        assert logp.shape == (3, len(targets), pair_mask.shape[1]) and torch.equal(mask, pair_mask[: len(targets)])
        torch.testing.assert_close(logp, pairwise.view(3, len(targets), -1), atol=1e-5, rtol=1e-4)


# ---- training --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["token", "sequence"])
def test_training_lowers_the_loss_and_freezes_the_passage_tower(mode, tiny_model_dir, toy_passages, gpt2_dir, tmp_path):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=2)
    examples = [QAExample(q, [a]) for q, a in QA]
    enc = pipe.retriever.encoder
    fingerprint = enc.passage_fingerprint()
    tower_before = {k: v.clone() for k, v in enc.query_encoder.model.state_dict().items()}  # shared: also the passage tower
    gen_before = {k: v.clone() for k, v in pipe.generator.model.state_dict().items()}
    before = mean_loss(pipe, examples, mode)
    records = []
    result = train_rag(pipe, examples, RagTrainConfig(out=str(tmp_path / "rag"), mode=mode, epochs=6, batch_size=4, lr=3e-3,
                                                      show_progress=False), callback=records.append)
    after = mean_loss(pipe, examples, mode)
    assert result.steps == 12 and len(result.history) == 12 and records == result.history
    first, last = [r["loss"] for r in result.history[:2]], [r["loss"] for r in result.history[-2:]]
    assert sum(last) / 2 < 0.8 * sum(first) / 2  # mean loss of the last epoch well below the first
    assert after < 0.8 * before
    # The passage tower (which built the index) is untouched; the query tower and the generator have moved.
    assert enc.passage_encoder is not enc.query_encoder and not enc.settings.shared
    for name, value in enc.passage_encoder.model.state_dict().items():
        assert torch.equal(value, tower_before[name]), name
    assert enc.passage_fingerprint() == fingerprint
    assert any(not torch.equal(v, tower_before[k]) for k, v in enc.query_encoder.model.state_dict().items())
    assert any(not torch.equal(v, gen_before[k]) for k, v in pipe.generator.model.state_dict().items())
    # The saved folder reloads, over a corpus file, as the same model.
    out = tmp_path / "rag"
    assert (out / "rag_log.jsonl").exists() and (out / "loss.png").exists()
    assert load_rag_config(out) == {"mode": mode, "k": 2, "temperature": pipe.temperature, "max_new_tokens": 6}
    save_jsonl(toy_passages, tmp_path / "corpus.jsonl")
    again = open_pipeline(corpus=str(tmp_path / "corpus.jsonl"), rag=str(out), k=2)
    assert again.retriever.encoder.passage_fingerprint() == fingerprint  # so a cached index of the corpus is reused
    with torch.no_grad():
        torch.testing.assert_close(again.marginal_logprob([q for q, _ in QA], [a for _, a in QA], mode),
                                   pipe.marginal_logprob([q for q, _ in QA], [a for _, a in QA], mode), atol=1e-4, rtol=1e-4)


def test_training_rejects_bad_settings(tiny_model_dir, toy_passages, gpt2_dir, tmp_path):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=2)
    examples = [QAExample(q, [a]) for q, a in QA]
    with pytest.raises(ConfigError, match="train a RAG mode"):
        train_rag(pipe, examples, RagTrainConfig(out=str(tmp_path / "a"), mode="closed-book", show_progress=False))
    with pytest.raises(ConfigError, match="unknown mode"):
        train_rag(pipe, examples, RagTrainConfig(out=str(tmp_path / "a"), mode="tokens", show_progress=False))
    with pytest.raises(ConfigError, match="batch size 16 is larger than the 8 training examples"):
        train_rag(pipe, examples, RagTrainConfig(out=str(tmp_path / "a"), batch_size=16, show_progress=False))
    too_long = examples + [QAExample("Why?", ["because " * 100])]
    message = rf"example 9: the answer has \d+ tokens, more than the generator's context of {CONTEXT}"
    with pytest.raises(ConfigError, match=message):
        train_rag(pipe, too_long, RagTrainConfig(out=str(tmp_path / "a"), show_progress=False))


def test_train_rag_cli(tiny_model_dir, toy_passages, gpt2_dir, tmp_path, capsys):
    from dpr_rag.train_rag import main as train_main

    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answer": [a, "other"]}) + "\n" for q, a in QA))
    save_jsonl(toy_passages, tmp_path / "corpus.jsonl")
    out = tmp_path / "run"
    assert train_main(["--out", str(out), "--qa", str(qa), "--corpus", str(tmp_path / "corpus.jsonl"),
                       "--model", str(tiny_model_dir), "--generator", str(gpt2_dir), "--mode", "sequence", "--k", "2",
                       "--epochs", "3", "--batch-size", "4", "--lr", "3e-3", "--max-examples", "8"]) == 0
    text = capsys.readouterr().out
    before = float(text.split("loss before training: ")[1].split()[0])
    after = float(text.split("loss after training: ")[1].split()[0])
    assert "8 questions, k=2" in text and "trained 6 steps" in text and after < before
    assert load_rag_config(out)["mode"] == "sequence"
    with pytest.raises(ConfigError, match="--k must be at least 1"):
        train_main(["--out", str(out), "--k", "0"])


# ---- hot-swapping ----------------------------------------------------------------------------------------------
def test_swap_corpus_changes_the_answer(tiny_model_dir, copier_dir, tmp_path):
    apples, rivers, stones = ([secret(w, 0), secret(w, 1)] for w in ("apple", "river", "stone"))
    pipe = pipeline(tiny_model_dir, apples, copier_dir, k=2)

    def check(word):
        for mode in ("token", "sequence"):
            a = pipe.answer(SECRET_Q, mode)
            assert a.answer == word and {p.passage.id for p in a.passages} == {f"{word}-0", f"{word}-1"}
            assert sum(p.posterior for p in a.passages) == pytest.approx(1.0)

    check("apple")
    encoder, generator = pipe.retriever.encoder, pipe.generator
    pipe.swap_corpus(rivers)  # passages: indexed with the pipeline's own passage tower
    check("river")
    save_jsonl(stones, tmp_path / "stones.jsonl")
    pipe.swap_corpus(str(tmp_path / "stones.jsonl"))  # a corpus file
    check("stone")
    assert pipe.retriever.encoder is encoder and pipe.generator is generator  # only the corpus and index moved
    other = retriever_over(tiny_model_dir, apples)  # a ready retriever with the same weights is used as it is
    pipe.swap_corpus(other)
    assert pipe.retriever is other
    check("apple")
    # A trained query encoder survives a swap to a retriever built from the untrained model.
    encoder = pipe.retriever.encoder
    freeze_passage_tower(pipe)  # as training does: the query tower gets its own weights
    with torch.no_grad():
        next(encoder.query_encoder.parameters()).add_(0.01)
    pipe.swap_corpus(retriever_over(tiny_model_dir, rivers))
    assert pipe.retriever.encoder is encoder
    check("river")
    cls_pooled = DualEncoder.from_pretrained(tiny_model_dir, pooling="cls")  # another passage encoder: vectors do not match
    with pytest.raises(ConfigError, match="different passage encoder"):
        pipe.swap_corpus(DenseRetriever(cls_pooled, encode_corpus(cls_pooled, apples, show_progress=False), apples))


def test_cli_hot_swaps_a_trained_rag_folder(tiny_model_dir, copier_dir, tmp_path, capsys):
    """`python -m dpr_rag.answer Q --rag DIR --corpus FILE`: a trained query encoder and generator over a new corpus."""
    pipe = pipeline(tiny_model_dir, [secret("apple", 0), secret("apple", 1)], copier_dir, k=2)
    config = RagTrainConfig(out=str(tmp_path / "rag"), epochs=1, batch_size=2, lr=1e-6, show_progress=False)
    train_rag(pipe, [QAExample(SECRET_Q, ["apple"])] * 2, config)
    for word in ("stone", "tiger"):
        save_jsonl([secret(word, 0), secret(word, 1)], tmp_path / f"{word}.jsonl")
        capsys.readouterr()
        assert answer_main([SECRET_Q, "--rag", str(tmp_path / "rag"), "--corpus", str(tmp_path / f"{word}.jsonl"), "--k", "2",
                            "--mode", "token,sequence", "--json"]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(r["mode"], r["answer"]) for r in lines] == [("token", word), ("sequence", word)]
        assert all({p["id"] for p in r["passages"]} == {f"{word}-0", f"{word}-1"} for r in lines)
    with pytest.raises(ConfigError, match="not a RAG training folder"):
        open_pipeline(corpus=str(tmp_path / "stone.jsonl"), rag=str(tmp_path), k=2)
    with pytest.raises(ConfigError, match="either a RAG folder or"):
        open_pipeline(corpus=str(tmp_path / "stone.jsonl"), rag=str(tmp_path / "rag"), generator=str(copier_dir), k=2)


# ---- bad input -------------------------------------------------------------------------------------------------
def test_bad_input(tiny_model_dir, toy_passages, gpt2_dir):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=3)
    for mode in ("token", "sequence", "closed-book"):
        with pytest.raises(ConfigError, match="empty question"):
            pipe.answer("   ", mode)
    with pytest.raises(ConfigError, match="question 2 is empty"):
        pipe.answer_batch(["Who painted the Mona Lisa?", ""], "token")
    with pytest.raises(ConfigError, match="empty question"):
        pipe.marginal_logprob([""], ["x"], "token")
    for call in (lambda: pipe.answer("Who?", "tokens"), lambda: pipe.marginal_logprob(["Who?"], ["x"], "seq")):
        with pytest.raises(ConfigError, match="unknown mode .*sequence, token, closed-book"):
            call()
    with pytest.raises(ConfigError, match="num_beams"):
        pipe.answer("Who?", "token", num_beams=0)
    for mode in ("token", "sequence", "closed-book"):  # an answer that cannot fit the context, with both lengths named
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
    pipe = open_pipeline(k=3)
    for mode in ("token", "sequence"):
        a = pipe.answer("who painted the mona lisa", mode)
        assert "leonardo" in a.answer.lower()
        assert a.passages[0].passage.title == "Mona Lisa" and max(p.posterior for p in a.passages) > 0.5
    assert pipe.answer("who painted the mona lisa", "closed-book").answer
