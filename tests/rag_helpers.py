"""Tiny randomly initialised generators for the RAG tests (no download): a causal GPT-2 whose tokenizer has no pad
token, and a seq2seq BART, both with a byte-level BPE tokenizer trained on the texts the tests use. No dropout, so
training is deterministic, and no forced eos, so generation is plain greedy/beam search over the model."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer, processors
from transformers import BartConfig, BartForConditionalGeneration, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from dpr_rag.data.passages import Passage
from dpr_rag.rag.generator import Generator
from dpr_rag.rag.pipeline import RagPipeline
from dpr_rag.rag.prompting import prompt
from dpr_rag.retrieval.dense import DenseRetriever, encode_corpus
from dpr_rag.retrieval.encoder import DualEncoder

CONTEXT = 128  # the tiny generators' max_position_embeddings


def _bpe(texts: list[str], special: list[str], vocab_size: int = 500) -> ByteLevelBPETokenizer:
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts * 3, vocab_size=vocab_size, min_frequency=1, special_tokens=special)
    return bpe


def build_gpt2(folder: Path, texts: list[str], n_layer: int = 2, seed: int = 0, init_range: float = 0.02) -> Path:
    """GPT-2 (32-d) whose tokenizer, like GPT-2's, has an eos token but no pad token. A large `init_range` gives
    peaked next-token distributions that depend on the input (the default, 0.02, is close to uniform)."""
    tok = PreTrainedTokenizerFast(
        tokenizer_object=_bpe(texts, ["<|endoftext|>"])._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=CONTEXT,
        n_embd=32,
        n_layer=n_layer,
        n_head=2,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        initializer_range=init_range,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def build_bart(folder: Path, texts: list[str], seed: int = 0, init_range: float = 0.02) -> Path:
    """BART (32-d, 2+2 layers) with a tokenizer that wraps text as <s> ... </s>."""
    bpe = _bpe(texts, ["<s>", "<pad>", "</s>", "<unk>"])
    bpe._tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    torch.manual_seed(seed)
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
        forced_eos_token_id=None,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        init_std=init_range,
    )
    BartForConditionalGeneration(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def brute_next(gen, input_ids: list[int], prefix: list[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """log p(next | input, prefix) from the model run on this row alone: no padding, no masks, no cache."""
    with torch.no_grad():
        if gen.is_encoder_decoder:
            start = gen.model.config.decoder_start_token_id
            logits = gen.model(input_ids=torch.tensor([input_ids]), decoder_input_ids=torch.tensor([[start] + prefix])).logits
        else:
            logits = gen.model(input_ids=torch.tensor([input_ids + prefix])).logits
    return torch.log_softmax(logits[0, -1].to(dtype), -1)


# ---- what the RAG test modules share: questions and pipelines (their generator fixtures are in conftest.py) ---
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


def retriever_over(model_dir, passages: list[Passage]) -> DenseRetriever:
    # Mean pooling: the random BERT's [CLS] vectors are almost identical for every input (scores tie to 1e-3).
    encoder = DualEncoder.from_pretrained(model_dir, pooling="mean")
    return DenseRetriever(encoder, encode_corpus(encoder, passages, show_progress=False), passages)


def pipeline(model_dir, passages, gen_dir, k: int = 3, max_new_tokens: int = 6) -> RagPipeline:
    generator = Generator.from_pretrained(gen_dir)
    return RagPipeline(retriever_over(model_dir, passages), generator, k=k, max_new_tokens=max_new_tokens)
