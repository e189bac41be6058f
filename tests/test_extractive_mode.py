"""DPR's extractive reader as a QA mode: the pipeline without a generator, the answer CLI (its span, its default of 10
passages), eval's scores, the clear error without a reader, and the reader that ships (real corpus, encoder and
reader)."""

from __future__ import annotations

import json

import pytest
import torch
from reader_helpers import toy_reader_qa

from dpr_rag.answer import main as answer_main
from dpr_rag.data.passages import Passage, load_corpus
from dpr_rag.errors import ConfigError
from dpr_rag.extractive import model
from dpr_rag.extractive.model import ExtractiveReader
from dpr_rag.matching import exact_match
from dpr_rag.rag.pipeline import RagPipeline
from dpr_rag.retrieval.bm25 import BM25Retriever
from eval.config import EvalConfig
from eval.harness import run_evaluation


# ---- the extractive QA mode: pipeline, answer CLI, eval -----------------------------------------------------------
@pytest.fixture
def saved_reader(tiny_model_dir, tmp_path):
    torch.manual_seed(1)
    folder = tmp_path / "reader"
    ExtractiveReader.from_encoder(tiny_model_dir, max_length=64).save_pretrained(folder)
    return folder


def test_pipeline_answers_extractively_without_a_generator(saved_reader, toy_passages):
    pipe = RagPipeline(BM25Retriever(toy_passages), None, k=3)
    pipe.extractive_source = str(saved_reader)
    (a,) = pipe.answer_batch(["who painted the mona lisa"], "extractive")
    hits = pipe.retriever.search(["who painted the mona lisa"], 3)[0]
    expected = ExtractiveReader.from_pretrained(saved_reader).read(a.question, [h.passage for h in hits])
    assert a.mode == "extractive" and a.answer == expected.text and a.logprob == pytest.approx(expected.logprob)
    assert [p.passage.id for p in a.passages] == [h.passage.id for h in hits]
    assert [p.posterior for p in a.passages] == pytest.approx(expected.selection)  # the reader's passage selection
    assert a.span is not None and a.span.passage == expected.passage
    chosen = a.passages[a.span.passage].passage
    assert getattr(chosen, a.span.field)[a.span.start : a.span.end] == a.answer
    assert not pipe.has_generator
    with pytest.raises(ConfigError, match="without a generator"):
        pipe.answer("who painted the mona lisa", "token")


def test_no_reader_is_a_clear_error(toy_passages, monkeypatch):
    monkeypatch.setattr(model, "SHIPPED", model.SHIPPED.parent / "missing")
    with pytest.raises(ConfigError, match="train_reader"):
        RagPipeline(BM25Retriever(toy_passages), None, k=2).answer("who painted it", "extractive")
    with pytest.raises(ConfigError, match="train_reader"):  # before any index is loaded (no corpus file is read)
        RagPipeline.open(corpus="no-such-corpus.jsonl", load_generator=False)


def test_answer_cli_extractive_mode(saved_reader, toy_corpus, tiny_model_dir, capsys):
    argv = ["who painted the mona lisa", "--mode", "extractive", "--reader", str(saved_reader), "--corpus", str(toy_corpus)]
    assert answer_main([*argv, "--model", str(tiny_model_dir), "--retriever", "bm25", "--k", "3", "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["mode"] == "extractive" and row["answer"] and len(row["passages"]) == 3
    span = row["span"]
    corpus = {p.id: p for p in load_corpus(toy_corpus)}
    passage = corpus[row["passages"][span["passage"]]["id"]].to_dict()
    assert passage[span["field"]][span["start"] : span["end"]] == row["answer"]
    assert answer_main([*argv, "--model", str(tiny_model_dir), "--retriever", "bm25", "--k", "3"]) == 0
    shown = capsys.readouterr().out
    assert f"answer: {row['answer']!r}" in shown and ("[[" + row["answer"] + "]]") in shown


def test_answer_cli_reads_ten_passages_by_default_in_extractive_mode(
    saved_reader, toy_passages, tiny_model_dir, tmp_path, capsys
):
    fillers = [Passage(f"f{i}", f"Filler passage number {i} about painting and years.", f"Filler {i}") for i in range(8)]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in [*toy_passages, *fillers]))
    argv = ["who painted the mona lisa", "--reader", str(saved_reader), "--corpus", str(corpus), "--json"]
    assert answer_main([*argv, "--mode", "extractive", "--model", str(tiny_model_dir), "--retriever", "bm25"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(row["passages"]) == 10


def test_eval_scores_the_extractive_mode(saved_reader, toy_corpus, tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": e.question, "answer": e.answers}) + "\n" for e in toy_reader_qa()))
    config = EvalConfig(
        qa=str(qa), corpus=str(toy_corpus), retrievers=["bm25"], k=[1], generate=["extractive"], reader=str(saved_reader),
        rag_retriever="bm25", rag_k=3, out=str(tmp_path / "r"), show_progress=False, bootstrap_samples=50,
    )  # fmt: skip
    report, out = run_evaluation(config)
    reader = ExtractiveReader.from_pretrained(saved_reader)
    bm25 = BM25Retriever(load_corpus(toy_corpus))
    expected = [reader.read(e.question, [h.passage for h in bm25.search([e.question], 3)[0]]).text for e in toy_reader_qa()]
    em = 100.0 * sum(exact_match(p, e.answers) for p, e in zip(expected, toy_reader_qa(), strict=True)) / len(expected)
    assert report["qa"]["extractive"]["em"] == pytest.approx(em)
    assert "--reader" in report["settings"]["command"]
    assert "Answered by: extractive reader" in (out / "report.md").read_text()  # no generator was loaded or named
    with pytest.raises(ConfigError, match="add extractive"):
        EvalConfig(qa=str(qa), generate=["token"], reader=str(saved_reader))
    with pytest.raises(ConfigError, match="with-base"):
        EvalConfig(qa=str(qa), generate=["token"], with_base=["extractive"])


# ---- the shipped reader -------------------------------------------------------------------------------------------
def test_the_shipped_reader_answers_from_the_default_corpus():
    """A fresh install's extractive mode: the shipped 3-layer reader over the default corpus's dense top 10 (its index
    is built from the shipped embeddings: no encoding)."""
    assert model.shipped_extractive_reader() == model.SHIPPED, "no shipped reader in dpr_rag/extractive/shipped/"
    pipe = RagPipeline.open(k=10, load_generator=False)
    reader = pipe.extractive_reader
    assert reader is not None and reader.source == str(model.SHIPPED) and reader.answer_rule == "prior"
    assert len(reader.encoder.encoder.layer) == 3 and reader.max_length == 96
    answer = pipe.answer("who painted the mona lisa", "extractive")
    assert answer.answer == "Leonardo da Vinci" and answer.span is not None
    read_from = answer.passages[answer.span.passage].passage
    assert read_from.to_dict()[answer.span.field][answer.span.start : answer.span.end] == "Leonardo da Vinci"
    assert pipe.answer("What is the origin city of The Beatles?", "extractive").answer == "Liverpool"
