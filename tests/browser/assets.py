"""Small inputs for the app's tests: a toy corpus, questions answered by it, and a tiny random GPT-2 generator
(built offline, like tests/test_generator.py). The tiny BERT encoder comes from conftest's `tiny_model_dir`."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

# (title, text, question, answer): each answer occurs in its passage's text only.
FACTS = [
    (
        "Mona Lisa",
        "The Mona Lisa is a portrait painting by the Italian artist Leonardo da Vinci.",
        "who painted the mona lisa",
        "Leonardo da Vinci",
    ),
    (
        "Eiffel Tower",
        "The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889.",
        "when was the eiffel tower completed",
        "1889",
    ),
    (
        "Python",
        "Python is a programming language created by Guido van Rossum.",
        "who created the python programming language",
        "Guido van Rossum",
    ),
    (
        "Mount Everest",
        "Mount Everest is the highest mountain on Earth, in the Himalayas of Nepal.",
        "in which mountains is mount everest",
        "Himalayas",
    ),
    (
        "Amazon River",
        "The Amazon River flows through Brazil and Peru into the Atlantic Ocean.",
        "into which ocean does the amazon river flow",
        "Atlantic",
    ),
    (
        "Jupiter",
        "Jupiter is the largest planet of the Solar System and has 95 known moons.",
        "how many moons does jupiter have",
        "95",
    ),
    (
        "Marie Curie",
        "Marie Curie won Nobel prizes in physics and in chemistry for research on radioactivity.",
        "what did marie curie research",
        "radioactivity",
    ),
    (
        "Great Wall",
        "The Great Wall was built across northern China over many centuries by several dynasties.",
        "where was the great wall built",
        "northern China",
    ),
    (
        "Nile",
        "The Nile flows north through Egypt into the Mediterranean Sea.",
        "into which sea does the nile flow",
        "Mediterranean",
    ),
    ("Hamlet", "Hamlet is a tragedy written by William Shakespeare around 1600.", "who wrote hamlet", "Shakespeare"),
    (
        "Moon landing",
        "Apollo 11 landed the first humans on the Moon in July 1969.",
        "when did apollo 11 land on the moon",
        "1969",
    ),
    (
        "Penicillin",
        "Penicillin was discovered by Alexander Fleming in London in 1928.",
        "who discovered penicillin",
        "Alexander Fleming",
    ),
    ("Tokyo", "Tokyo is the capital of Japan and its most populous city.", "what is the capital of japan", "Tokyo"),
    (
        "Beethoven",
        "Ludwig van Beethoven composed nine symphonies, the last while deaf.",
        "how many symphonies did beethoven compose",
        "nine",
    ),
    (
        "Sahara",
        "The Sahara is the largest hot desert in the world, in North Africa.",
        "where is the sahara desert",
        "North Africa",
    ),
    (
        "Telephone",
        "Alexander Graham Bell was granted the first patent for the telephone in 1876.",
        "who patented the telephone",
        "Alexander Graham Bell",
    ),
    (
        "DNA",
        "The double helix structure of DNA was described by Watson and Crick in 1953.",
        "when was the structure of dna described",
        "1953",
    ),
    (
        "Olympics",
        "The first modern Olympic Games were held in Athens in 1896.",
        "where were the first modern olympic games held",
        "Athens",
    ),
    ("Light", "Light travels at about 299,792 kilometres per second in a vacuum.", "how fast does light travel", "299,792"),
    ("Chess", "Chess is played on a board of 64 squares by two players.", "how many squares does a chess board have", "64"),
    ("Gold", "Gold is a chemical element with the symbol Au and atomic number 79.", "what is the chemical symbol of gold", "Au"),
    (
        "Titanic",
        "The Titanic sank in the North Atlantic in April 1912 after striking an iceberg.",
        "what did the titanic strike",
        "iceberg",
    ),
    ("Kangaroo", "The kangaroo is a marsupial found only in Australia.", "where do kangaroos live", "Australia"),
    (
        "Piano",
        "The piano was invented in Italy by Bartolomeo Cristofori around 1700.",
        "who invented the piano",
        "Bartolomeo Cristofori",
    ),
]


def write_corpus_jsonl(path: Path, facts=FACTS) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, (title, text, _, _) in enumerate(facts):
            f.write(json.dumps({"id": f"p{i}", "title": title, "text": text}) + "\n")
    return path


def write_corpus_tsv(path: Path, facts=FACTS) -> Path:
    lines = ["id\ttext\ttitle"] + [f"t{i}\t{text}\t{title}" for i, (title, text, _, _) in enumerate(facts)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_qa_jsonl(path: Path, facts=FACTS) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for _, _, question, answer in facts:
            f.write(json.dumps({"question": question, "answer": [answer]}) + "\n")
    return path


def build_tiny_gpt2(folder: Path) -> Path:
    """A 2-layer, 32-d GPT-2 with random weights and a byte-level BPE tokenizer trained on the toy corpus."""
    texts = [f"{t}: {x}\n\nQuestion: {q}\nAnswer: {a}" for t, x, q, a in FACTS]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts * 2, vocab_size=600, min_frequency=1, special_tokens=["<|endoftext|>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=256,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def build_tiny_reader(folder: Path, encoder_dir: Path) -> Path:
    """DPR's extractive reader on the tiny BERT (random heads): its answers are arbitrary spans, but real ones."""
    from dpr_rag.extractive.model import ExtractiveReader

    torch.manual_seed(0)
    ExtractiveReader.from_encoder(encoder_dir, max_length=128).save_pretrained(folder)
    return folder
