"""RAG training (query encoder and generator, passage tower frozen) and hot-swapping the corpus under a trained
pipeline, end to end on the tiny random models of rag_helpers."""

from __future__ import annotations

import json

import pytest
import torch
from rag_helpers import CONTEXT, QA, SECRET_Q, pipeline, retriever_over, secret

from dpr_rag.answer import main as answer_main
from dpr_rag.data.passages import save_jsonl
from dpr_rag.data.qa import QAExample
from dpr_rag.errors import ConfigError
from dpr_rag.rag.pipeline import RagPipeline, load_rag_config
from dpr_rag.rag.trainer import RagTrainConfig, freeze_passage_tower, mean_loss, train_rag
from dpr_rag.retrieval.dense import DenseRetriever, encode_corpus
from dpr_rag.retrieval.encoder import DualEncoder

pytestmark = pytest.mark.usefixtures("one_thread")


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
    result = train_rag(
        pipe,
        examples,
        RagTrainConfig(out=str(tmp_path / "rag"), mode=mode, epochs=6, batch_size=4, lr=3e-3, show_progress=False),
        callback=records.append,
    )
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
    assert load_rag_config(out / "best") == {"mode": mode, "k": 2, "temperature": pipe.temperature, "max_new_tokens": 6}
    assert (out / "best" / "retriever").is_dir() and (out / "last" / "optimizer.pt").is_file()
    save_jsonl(toy_passages, tmp_path / "corpus.jsonl")
    again = RagPipeline.open(corpus=str(tmp_path / "corpus.jsonl"), rag=str(out), k=2)
    assert again.retriever.encoder.passage_fingerprint() == fingerprint  # so a cached index of the corpus is reused
    with torch.no_grad():
        torch.testing.assert_close(
            again.marginal_logprob([q for q, _ in QA], [a for _, a in QA], mode),
            pipe.marginal_logprob([q for q, _ in QA], [a for _, a in QA], mode),
            atol=1e-4,
            rtol=1e-4,
        )


def test_training_rejects_bad_settings(tiny_model_dir, toy_passages, gpt2_dir, tmp_path):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=2)
    examples = [QAExample(q, [a]) for q, a in QA]
    for mode in ("closed-book", "tokens"):  # the config refuses them itself: closed-book has no retrieval to train
        with pytest.raises(ConfigError, match=f"^mode must be one of 'passage', 'standard', 'token', 'sequence', got '{mode}'$"):
            RagTrainConfig(out=str(tmp_path / "a"), mode=mode, show_progress=False)
    with pytest.raises(ConfigError, match="batch size 16 is larger than the 8 training examples"):
        train_rag(pipe, examples, RagTrainConfig(out=str(tmp_path / "a"), batch_size=16, show_progress=False))
    with pytest.raises(ConfigError, match="batch size 4 is larger than the 3 training examples"):  # after max_examples
        train_rag(pipe, examples, RagTrainConfig(out=str(tmp_path / "a"), max_examples=3, show_progress=False))
    assert not (tmp_path / "a").exists()  # refused before anything was written
    too_long = examples + [QAExample("Why?", ["because " * 100])]
    message = rf"example 9: the answer has \d+ tokens, more than the generator's context of {CONTEXT}"
    with pytest.raises(ConfigError, match=message):
        train_rag(pipe, too_long, RagTrainConfig(out=str(tmp_path / "a"), show_progress=False))


def test_train_rag_cli(tiny_model_dir, toy_passages, gpt2_dir, tmp_path, capsys):
    from dpr_rag.train_rag import main as train_main

    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answer": [a, "other"]}) + "\n" for q, a in QA))
    excluded = tmp_path / "excluded.jsonl"  # never trained on: "Who painted the Mona Lisa?" in another case/spacing
    excluded.write_text(json.dumps({"question": "who painted  the mona lisa?", "answer": ["x"]}) + "\n")
    qa.write_text(qa.read_text() + json.dumps({"question": QA[0][0], "answer": [QA[0][1]]}) + "\n")
    save_jsonl(toy_passages, tmp_path / "corpus.jsonl")
    out = tmp_path / "run"
    assert (
        train_main(
            [
                "--out",
                str(out),
                "--qa",
                str(qa),
                "--corpus",
                str(tmp_path / "corpus.jsonl"),
                "--model",
                str(tiny_model_dir),
                "--generator",
                str(gpt2_dir),
                "--mode",
                "sequence",
                "--k",
                "2",
                "--epochs",
                "3",
                "--batch-size",
                "4",
                "--lr",
                "3e-3",
                "--max-examples",
                "8",
                "--data-k",
                "8",
                "--dev-fraction",
                "0.25",
                "--exclude",
                str(excluded),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    before = float(text.split("loss before training: ")[1].split()[0])
    after = float(text.split("loss after training: ")[1].split()[0])
    assert "--exclude: 2 of 9 questions left out" in text
    assert "7 questions: kept 7 (100.0%)" in text  # every answer is in a toy passage, all 8 searched
    assert "5 training questions, 2 dev questions, k=2" in text and "trained 3 steps" in text and after < before
    assert "best dev EM" in text
    assert load_rag_config(out / "best")["mode"] == "sequence"
    log = [json.loads(line) for line in (out / "rag_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "dev_em" in r] == [0, 1, 2, 3]  # before training and after each epoch
    # The CLI only parses: the library refuses bad settings, naming the field and the value.
    with pytest.raises(ConfigError, match="^k must be an integer between 1 and 1000, got 0$"):
        train_main(["--out", str(out), "--k", "0"])
    for flag, field, value in (
        ("--epochs", "epochs", "0"),
        ("--batch-size", "batch_size", "-1"),
        ("--lr", "lr", "0.0"),
        ("--max-examples", "max_examples", "0"),
    ):
        with pytest.raises(ConfigError, match=f"^{field} must be .*, got {value}$"):
            train_main(["--out", str(out), flag, value])


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
        assert (
            answer_main(
                [
                    SECRET_Q,
                    "--rag",
                    str(tmp_path / "rag"),
                    "--corpus",
                    str(tmp_path / f"{word}.jsonl"),
                    "--k",
                    "2",
                    "--mode",
                    "token,sequence",
                    "--fallback",
                    "--json",
                ]
            )
            == 0
        )
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(r["mode"], r["answer"]) for r in lines] == [("token", word), ("sequence", word)]
        assert [r["fallback"] for r in lines] == [False, False]  # the answer is in the passages: it stands
        assert all({p["id"] for p in r["passages"]} == {f"{word}-0", f"{word}-1"} for r in lines)
    with pytest.raises(ConfigError, match="not a RAG training folder"):
        RagPipeline.open(corpus=str(tmp_path / "stone.jsonl"), rag=str(tmp_path), k=2)
    with pytest.raises(ConfigError, match="either a RAG folder or"):
        RagPipeline.open(corpus=str(tmp_path / "stone.jsonl"), rag=str(tmp_path / "rag"), generator=str(copier_dir), k=2)
