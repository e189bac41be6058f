"""The RAG generator on tiny random models (a causal GPT-2 and a seq2seq BART) built offline, checked against
brute-force one-row, token-by-token computations; one slow test on the real default Gemma 3 270M."""

from __future__ import annotations

import os

import pytest
import torch
from rag_helpers import brute_next
from tokenizers import ByteLevelBPETokenizer, processors
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    GPT2Config,
    GPT2LMHeadModel,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedTokenizerFast,
)

from dpr_rag.data.passages import Passage
from dpr_rag.errors import ConfigError
from dpr_rag.rag.causal_generator import CausalGenerator
from dpr_rag.rag.generator import Generator
from dpr_rag.rag.prompting import prompt
from dpr_rag.rag.seq2seq_generator import Seq2SeqGenerator

USER_CACHE = os.environ.get("DPR_RAG_CACHE")  # read before conftest's per-test cache replaces it
CONTEXT = 128  # both tiny models' max_position_embeddings
SENTENCES = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France, completed in 1889.",
    "The Mona Lisa is a portrait painting by the Italian artist Leonardo da Vinci.",
    "Python is a programming language created by Guido van Rossum and released in 1991.",
    "Question: What is the capital of France?\nAnswer: Paris",
    "Mount Everest is Earth's highest mountain above sea level, in the Himalayas.",
]
INPUTS = [
    prompt("Where is the Eiffel Tower?", Passage("0", "Eiffel Tower", SENTENCES[0])),
    prompt("Who painted it?"),
    prompt("Who created Python and when was it released?", Passage("2", "Python", SENTENCES[2])),
]
TARGETS = ["Paris", "Leonardo da Vinci, the Italian artist", "Guido"]


def _bpe(special: list[str]) -> ByteLevelBPETokenizer:
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SENTENCES * 3, vocab_size=400, min_frequency=1, special_tokens=special)
    return bpe


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """Tiny GPT-2 whose tokenizer, like GPT-2's, has an eos token but no pad token."""
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=_bpe(["<|endoftext|>"])._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=CONTEXT,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bart_dir(tmp_path_factory):
    """Tiny BART with a byte-level BPE tokenizer that wraps text as <s> ... </s>."""
    folder = tmp_path_factory.mktemp("tiny-bart")
    bpe = _bpe(["<s>", "<pad>", "</s>", "<unk>"])
    bpe._tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=len(tok),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=CONTEXT,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_bos_token_id=None,
    )
    BartForConditionalGeneration(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(params=["gpt2", "bart"])
def gen(request, gpt2_dir, bart_dir) -> Generator:
    return Generator.from_pretrained(gpt2_dir if request.param == "gpt2" else bart_dir)


def brute_logprobs(gen: Generator, input_ids: list[int], target: list[int]) -> list[float]:
    return [brute_next(gen, input_ids, target[:t])[target[t]].item() for t in range(len(target))]


def test_prompt_template():
    assert prompt("Who?") == "Question: Who?\nAnswer:"
    assert prompt("Who?", Passage("1", "T", "some text")) == "T: some text\n\nQuestion: Who?\nAnswer:"


def test_loading(gpt2_dir, bart_dir):
    g = Generator.from_pretrained(gpt2_dir)
    assert not g.is_encoder_decoder and g.max_length == CONTEXT and g.device.type == "cpu"
    assert g.tokenizer.pad_token_id == g.tokenizer.eos_token_id  # GPT-2 style: eos doubles as pad
    assert g.tokenizer.padding_side == "left"
    assert g.encode_target("Paris")[-1] == g.eos_token_id
    assert g.decode(g.encode_target("Paris")) == "Paris"
    b = Generator.from_pretrained(bart_dir)
    assert b.is_encoder_decoder and b.max_length == CONTEXT and b.pad_token_id == 1
    assert b.encode_target("Paris")[0] == 0 and b.encode_target("Paris")[-1] == 2  # <s> Paris </s>


def test_one_class_per_kind(gpt2_dir, bart_dir):
    """`from_pretrained` and `wrap` pick the subclass of the model's kind; the base class is abstract."""
    g, b = Generator.from_pretrained(gpt2_dir), Generator.from_pretrained(bart_dir)
    assert type(g) is CausalGenerator and type(b) is Seq2SeqGenerator
    assert type(Generator.wrap(g.model, g.tokenizer)) is CausalGenerator
    assert type(Seq2SeqGenerator.wrap(b.model, b.tokenizer, max_length=64)) is Seq2SeqGenerator
    with pytest.raises(TypeError):
        Generator(g.model, g.tokenizer)  # type: ignore[abstract]  # the abstract base is not a generator itself
    with pytest.raises(ConfigError, match="cannot run this model"):
        Seq2SeqGenerator(g.model, g.tokenizer)
    # The longest target that leaves room for an input: a causal LM keeps one input token before it.
    assert g.max_target_tokens == CONTEXT - 1 and b.max_target_tokens == CONTEXT
    g.target_logprobs(INPUTS[:1], [[5] * g.max_target_tokens])
    b.target_logprobs(INPUTS[:1], [[5] * b.max_target_tokens])
    with pytest.raises(ConfigError):
        g.target_logprobs(INPUTS[:1], [[5] * (g.max_target_tokens + 1)])


def test_tokenizer_without_pad_or_eos():
    bpe = _bpe([])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=CONTEXT, n_embd=32, n_layer=1, n_head=2))
    with pytest.raises(ConfigError, match="neither a pad nor an eos"):
        Generator.wrap(model, tok)


def test_target_logprobs_match_brute_force(gen):
    logp, mask = gen.target_logprobs(INPUTS, TARGETS)
    targets = [gen.encode_target(t) for t in TARGETS]
    assert logp.shape == mask.shape == (3, max(len(t) for t in targets))
    assert mask.sum(1).tolist() == [len(t) for t in targets]
    assert (logp[mask == 0] == 0).all()
    for n, (inp, tgt) in enumerate(zip(INPUTS, targets, strict=True)):
        expected = brute_logprobs(gen, gen.tokenizer(inp)["input_ids"], tgt)
        torch.testing.assert_close(logp[n, : len(tgt)], torch.tensor(expected), atol=1e-5, rtol=1e-4)


def test_target_logprobs_accepts_ids(gen):
    ids = [gen.encode_target(t) for t in TARGETS]
    torch.testing.assert_close(gen.target_logprobs(INPUTS, ids)[0], gen.target_logprobs(INPUTS, TARGETS)[0])


def test_gradients_flow(gen):
    gen.model.zero_grad()
    logp, mask = gen.target_logprobs(INPUTS, TARGETS)
    assert logp.requires_grad
    logp.sum().backward()
    grads = [p.grad for p in gen.model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0
    gen.model.zero_grad()


def test_next_token_logprobs_padding_invariant(gen):
    prefixes = [[], gen.encode_target("Leonardo da")[:3], gen.encode_target("G")[:1]]
    batch = gen.next_token_logprobs(INPUTS, prefixes)
    assert batch.shape == (3, gen.model.config.vocab_size) and not batch.requires_grad
    for n, (inp, prefix) in enumerate(zip(INPUTS, prefixes, strict=True)):
        torch.testing.assert_close(batch[n], gen.next_token_logprobs([inp], [prefix])[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(batch[n], brute_next(gen, gen.tokenizer(inp)["input_ids"], prefix), atol=1e-5, rtol=1e-4)


def test_generate(gen):
    out = gen.generate(INPUTS, max_new_tokens=6, num_beams=4, num_return_sequences=3)
    assert len(out) == len(INPUTS)
    for answers in out:
        assert 1 <= len(answers) <= 3 and len(set(answers)) == len(answers)
        assert all(isinstance(a, str) and "\n" not in a and a == a.strip() for a in answers)
    greedy = gen.generate(INPUTS[:1], max_new_tokens=4, num_beams=1, num_return_sequences=1)
    assert len(greedy) == 1 and len(greedy[0]) == 1


def test_generate_padding_invariant_and_kwargs(gen):
    single = [gen.generate([x], max_new_tokens=5, num_beams=1, num_return_sequences=1)[0] for x in INPUTS]
    assert gen.generate(INPUTS, max_new_tokens=5, num_beams=1, num_return_sequences=1) == single

    token = gen.tokenizer("Paris", add_special_tokens=False)["input_ids"][0]

    class Force(LogitsProcessor):
        def __call__(self, input_ids, scores):
            forced = torch.full_like(scores, -float("inf"))
            forced[:, token] = 0
            return forced

    out = gen.generate(
        INPUTS, max_new_tokens=3, num_beams=2, num_return_sequences=2, logits_processor=LogitsProcessorList([Force()])
    )
    assert out == [[gen.decode([token] * 3)]] * len(INPUTS)


def test_save_and_reload(gen, tmp_path):
    gen.save_pretrained(tmp_path / "g")
    again = Generator.from_pretrained(tmp_path / "g")
    assert again.is_encoder_decoder == gen.is_encoder_decoder and again.pad_token_id == gen.pad_token_id
    torch.testing.assert_close(again.target_logprobs(INPUTS, TARGETS)[0], gen.target_logprobs(INPUTS, TARGETS)[0])


def test_too_long_target_raises(gen):
    with pytest.raises(ConfigError, match=rf"target of \d+ tokens .*{CONTEXT} tokens"):
        gen.target_logprobs(["Question: x\nAnswer:"], ["Paris " * 300])


def test_too_long_input_is_truncated_from_the_left(gen):
    long_input = prompt("What is the capital of France?", Passage("0", "Paris", " ".join(SENTENCES * 4)))
    full = gen.tokenizer(long_input)["input_ids"]
    target = gen.encode_target("Paris")
    assert len(full) > CONTEXT
    room = CONTEXT if gen.is_encoder_decoder else CONTEXT - len(target)
    head = 1 if gen.is_encoder_decoder else 0  # BART's <s> is kept; GPT-2 adds no special token in front
    kept = full[:head] + full[len(full) - (room - head) :]
    logp, mask = gen.target_logprobs([long_input, INPUTS[1]], ["Paris", TARGETS[1]])
    torch.testing.assert_close(logp[0, : len(target)], torch.tensor(brute_logprobs(gen, kept, target)), atol=1e-5, rtol=1e-4)
    assert torch.isfinite(gen.next_token_logprobs([long_input], [target[:1]])).all()
    assert len(gen.generate([long_input], max_new_tokens=5, num_beams=2, num_return_sequences=2)) == 1


@pytest.mark.slow
def test_default_gemma_knows_paris(monkeypatch):
    """The real default generator (converted once into the cache; reuses $DPR_RAG_CACHE if it was set)."""
    if USER_CACHE:
        monkeypatch.setenv("DPR_RAG_CACHE", USER_CACHE)
    gen = Generator.from_pretrained()
    assert not gen.is_encoder_decoder and gen.tokenizer.pad_token_id is not None
    question = prompt("What is the capital of France?")
    with torch.no_grad():
        logp, _ = gen.target_logprobs([question] * 3, ["Paris", "Berlin", "Madrid"])
    paris, berlin, madrid = logp.sum(1).tolist()
    assert paris > berlin and paris > madrid
    answers = gen.generate([question], max_new_tokens=8, num_beams=2, num_return_sequences=2)
    assert answers and all(isinstance(a, str) for a in answers[0])


def test_gguf_metadata_is_read_once_with_the_same_fields(tmp_path):
    """The default generator's conversion reads the GGUF once (not once each for config, tokenizer and weights)."""
    import gguf
    import numpy as np

    from dpr_rag.rag.default_generator import _gguf_read_once

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_array("tokenizer.ggml.tokens", [f"word{i}" for i in range(2000)])
    writer.add_tensor("token_embd.weight", np.arange(64, dtype=np.float32).reshape(8, 8))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    plain = gguf.GGUFReader(path)
    with _gguf_read_once():
        first, second = gguf.GGUFReader(path), gguf.GGUFReader(str(path))
        assert first is second and type(first.data) is np.ndarray  # one read, over a plain array view
    assert gguf.GGUFReader is not type(first) and isinstance(gguf.GGUFReader(path).data, np.memmap)  # restored after
    tokens = first.fields["tokenizer.ggml.tokens"]
    assert [bytes(tokens.parts[i]).decode() for i in tokens.data] == [f"word{i}" for i in range(2000)]
    assert list(first.fields) == list(plain.fields)
    np.testing.assert_array_equal(first.tensors[0].data, plain.tensors[0].data)
