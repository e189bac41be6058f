"""Run files: a retriever's results written once and served back (`dpr_rag.retrieval.run_file`), so a reader trains
and answers on fixed passages without the index or the encoder (a GPU machine, or readers compared on the same
inputs). Tiny random models of rag_helpers."""

from __future__ import annotations

import json

import pytest
import torch
from rag_helpers import QA, retriever_over

from dpr_rag.data.qa import QAExample
from dpr_rag.errors import ConfigError, DataFormatError
from dpr_rag.rag.generator import Generator
from dpr_rag.rag.pipeline import RagPipeline
from dpr_rag.rag.reader_data import reader_examples
from dpr_rag.rag.trainer import RagTrainConfig, mean_loss, train_rag
from dpr_rag.retrieval.base import Retriever
from dpr_rag.retrieval.run_file import RunFileRetriever, write_run_file
from dpr_rag.retrieval.score_scale import score_temperature

pytestmark = pytest.mark.usefixtures("one_thread")
QUESTIONS = [q for q, _ in QA]


@pytest.fixture
def dense_and_run(tiny_model_dir, toy_passages, tmp_path):
    dense = retriever_over(tiny_model_dir, toy_passages)
    path = tmp_path / "run.jsonl"
    write_run_file(dense, QUESTIONS + QUESTIONS[:1], 4, path, score_temperature(dense), show_progress=False)
    return dense, path


def test_a_run_file_serves_back_exactly_what_the_retriever_found(dense_and_run, toy_passages):
    dense, path = dense_and_run
    lines = path.read_text().splitlines()
    assert len(lines) == len(QUESTIONS)  # a repeated question is written once
    assert json.loads(lines[0])["retriever"] == "dense" and json.loads(lines[0])["temperature"] == score_temperature(dense)
    served = RunFileRetriever.from_files([path], toy_passages)
    assert isinstance(served, Retriever) and served.name == "dense"
    assert score_temperature(served) == score_temperature(dense)  # p(z|x) as sharp as the dense retriever's
    for want, got in zip(dense.search(QUESTIONS, 4), served.search(QUESTIONS, 4), strict=True):
        assert [h.passage for h in got] == [h.passage for h in want]
        assert [h.rank for h in got] == [1, 2, 3, 4]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-6)
    assert [len(hits) for hits in served.search(QUESTIONS[:2], 2)] == [2, 2]  # a shallower k is a prefix


def test_a_question_or_a_depth_the_run_lacks_is_an_error_naming_it(dense_and_run, toy_passages):
    _, path = dense_and_run
    served = RunFileRetriever.from_files([path], toy_passages)
    with pytest.raises(ConfigError, match="no retrieval for the question 'what is not there'"):
        served.search(["what is not there"], 2)
    with pytest.raises(ConfigError, match="hold 4 passages .* k=5 asks for more"):
        served.search(QUESTIONS[:1], 5)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", r"run\.jsonl, line 2: not JSON"),
        ('{"question": "q"}', r"line 2: needs a 'question' string and a 'hits' list"),
        ('{"question": "q", "hits": [["1"]]}', r"line 2: each hit must be \[passage id, score\]"),
        ('{"question": "q", "hits": [["no-such-id", 1.0]]}', r"names passage 'no-such-id', which is not in the corpus"),
    ],
)
def test_a_broken_run_file_names_the_file_and_line(dense_and_run, toy_passages, line, message):
    _, path = dense_and_run
    first = path.read_text().splitlines()[0]
    path.write_text(first + "\n" + line + "\n")
    with pytest.raises(DataFormatError, match=message):
        RunFileRetriever.from_files([path], toy_passages)


def test_the_reader_trains_over_a_run_file_without_a_dense_retriever(dense_and_run, toy_passages, gpt2_dir, tmp_path):
    """Standard RAG's reader trains on the run's passages (the same examples and loss as over the live retriever);
    a marginal mode that would train the query tower asks for the dense retriever instead."""
    dense, path = dense_and_run
    served = RunFileRetriever.from_files([path], toy_passages)
    qa = [QAExample(q, [a]) for q, a in QA]
    live, _ = reader_examples(qa, dense, k=4, show_progress=False)
    examples, _ = reader_examples(qa, served, k=4, show_progress=False)
    assert [(e.question, e.positive_ctxs) for e in examples] == [(e.question, e.positive_ctxs) for e in live]
    pipe = RagPipeline(served, Generator.from_pretrained(gpt2_dir), k=2)
    on_dense = RagPipeline(dense, Generator.from_pretrained(gpt2_dir), k=2)
    before = mean_loss(pipe, examples, "standard")
    assert before == pytest.approx(mean_loss(on_dense, examples, "standard"), rel=1e-5)
    cfg = RagTrainConfig(
        out=str(tmp_path / "run"), mode="standard", lora_rank=4, lr=1e-2, batch_size=4, epochs=4, show_progress=False
    )
    result = train_rag(pipe, examples, cfg, dev=examples[:2])
    assert mean_loss(pipe, examples, "standard") < 0.7 * before
    assert (result.out / "best" / "generator" / "adapter_model.safetensors").exists()
    assert pipe.generator.device == torch.device("cpu")
    token = RagTrainConfig(out=str(tmp_path / "token"), mode="token", lora_rank=4, batch_size=4, show_progress=False)
    with pytest.raises(ConfigError, match="needs the dense retriever; this pipeline retrieves with dense"):
        train_rag(RagPipeline(served, Generator.from_pretrained(gpt2_dir), k=2), examples, token)
    generator_only = RagTrainConfig(**{**token.__dict__, "out": str(tmp_path / "token2"), "train_query_encoder": False})
    train_rag(RagPipeline(served, Generator.from_pretrained(gpt2_dir), k=2), examples, generator_only)  # trains


def test_train_rag_cli_reads_passages_from_run_files(dense_and_run, toy_passages, gpt2_dir, tmp_path, capsys):
    from dpr_rag.data.passages import save_jsonl
    from dpr_rag.train_rag import main as train_main

    _, path = dense_and_run
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answer": [a]}) + "\n" for q, a in QA))
    save_jsonl(toy_passages, tmp_path / "corpus.jsonl")
    common = ["--qa", str(qa), "--corpus", str(tmp_path / "corpus.jsonl"), "--runs", str(path), "--generator", str(gpt2_dir)]
    settings = ["--k", "2", "--data-k", "4", "--batch-size", "2", "--lr", "1e-2", "--lora-rank", "4", "--dev-fraction", "0.25"]
    out = tmp_path / "run"
    assert train_main(["--out", str(out), *common, *settings, "--mode", "standard", "--dev-mode", "standard"]) == 0
    printed = capsys.readouterr().out
    assert "distant supervision over the top 4" in printed and "trained " in printed
    assert (out / "best" / "generator" / "adapter_model.safetensors").exists()
    # No encoder to train through p(z|x): RAG-Token asks for the frozen query tower, by its flag.
    with pytest.raises(ConfigError, match="train_query_encoder=False"):
        train_main(["--out", str(tmp_path / "token"), *common, *settings, "--mode", "token"])
    assert train_main(["--out", str(tmp_path / "token2"), *common, *settings, "--mode", "token", "--no-query-encoder"]) == 0


def test_train_rag_cli_takes_dev_questions_from_a_file_and_never_trains_on_them(
    dense_and_run, toy_passages, gpt2_dir, tmp_path, capsys
):
    from dpr_rag.data.passages import save_jsonl
    from dpr_rag.train_rag import main as train_main

    _, path = dense_and_run
    qa, dev = tmp_path / "qa.jsonl", tmp_path / "dev.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answer": [a]}) + "\n" for q, a in QA))
    dev.write_text("".join(json.dumps({"question": q, "answer": [a]}) + "\n" for q, a in QA[:3]))  # also in qa.jsonl
    save_jsonl(toy_passages, tmp_path / "corpus.jsonl")
    out = tmp_path / "run"
    args = ["--out", str(out), "--qa", str(qa), "--dev-qa", str(dev), "--corpus", str(tmp_path / "corpus.jsonl")]
    args += ["--runs", str(path), "--generator", str(gpt2_dir), "--mode", "standard", "--dev-mode", "standard", "--k", "2"]
    assert train_main([*args, "--data-k", "4", "--batch-size", "2", "--lr", "1e-2", "--lora-rank", "4"]) == 0
    printed = capsys.readouterr().out
    assert f"{len(QA) - 3} questions: kept" in printed  # the dev questions never reach distant supervision
    assert ", 3 dev questions" in printed
    assert any("dev_em" in json.loads(line) for line in (out / "rag_log.jsonl").read_text().splitlines())
