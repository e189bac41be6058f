"""Training the reader: distant-supervision data, the passage objective with LoRA adapters, dev EM choosing best/,
exact resume, gradient accumulation; adapter folders that load anywhere. Tiny random models of rag_helpers."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from rag_helpers import QA, SECRET_Q, pipeline, retriever_over, secret
from safetensors.torch import load_file

from dpr_rag.data.passages import save_jsonl
from dpr_rag.data.qa import QAExample
from dpr_rag.errors import ConfigError
from dpr_rag.matching import has_answer
from dpr_rag.rag.generator import Generator
from dpr_rag.rag.lora import ADAPTER_CONFIG, BASE_DEFAULT, add_lora
from dpr_rag.rag.pipeline import RagPipeline, load_rag_config
from dpr_rag.rag.reader_data import passage_rows, passage_target, reader_examples
from dpr_rag.rag.trainer import RagTrainConfig, mean_loss, train_rag

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(tmp_path, name="run", **kw) -> RagTrainConfig:
    settings = {"mode": "passage", "lora_rank": 4, "lr": 1e-2, "batch_size": 4, "epochs": 3, "show_progress": False}
    return RagTrainConfig(out=str(tmp_path / name), **{**settings, **kw})


# ---- distant supervision ---------------------------------------------------------------------------------------
def test_reader_examples_keep_every_answer_bearing_passage_in_the_top_k(tiny_model_dir, toy_passages):
    retriever = retriever_over(tiny_model_dir, toy_passages)
    qa = [QAExample(q, ["nowhere to be found", a]) for q, a in QA] + [QAExample("Who is nobody?", ["Zyxwv Qqq"])]
    kept, stats = reader_examples(qa, retriever, k=len(toy_passages), max_per_question=2, show_progress=False)
    assert (stats.n_questions, stats.n_kept, stats.n_dropped) == (9, 8, 1)  # every toy answer is in its passage
    assert stats.n_passages == sum(len(e.positive_ctxs) for e in kept)
    assert "kept 8 (88.9%)" in stats.summary() and "dropped 1" in stats.summary()
    for ex, (q, a) in zip(kept, QA, strict=True):
        assert ex.question == q and ex.answers[0] == a  # the answer found first, the others after it
        assert 1 <= len(ex.positive_ctxs) <= 2 and all(has_answer([a], p.text) for p in ex.positive_ctxs)
    rows = passage_rows(kept)
    assert len(rows) == stats.n_passages and all(passage_target(e, i) == e.answers[0] for e, i in rows)
    shallow, stats1 = reader_examples(qa, retriever, k=1, show_progress=False)  # only the top passage is searched
    assert stats1.n_kept == len(shallow) <= 8 and all(len(e.positive_ctxs) == 1 for e in shallow)
    with pytest.raises(ConfigError, match="k must be"):
        reader_examples(qa, retriever, k=0)


def test_reader_examples_keep_some_unanswered_questions_on_request(tiny_model_dir, toy_passages):
    retriever = retriever_over(tiny_model_dir, toy_passages)
    nobody = [QAExample(f"Who is nobody number {i}?", [f"Zyxwv{i}"]) for i in range(6)]
    qa = [QAExample(q, [a]) for q, a in QA[:4]] + nobody
    kept, stats = reader_examples(qa, retriever, k=len(toy_passages), unanswered=0.5, show_progress=False)
    assert (stats.n_kept, stats.n_dropped, stats.n_unanswered) == (4, 6, 2)  # 0.5 per answer-bearing question
    assert "2 of which kept without one" in stats.summary()
    extra = kept[4:]
    assert [e.question for e in extra] == [nobody[0].question, nobody[3].question]  # spread over the dropped ones
    assert all(not e.positive_ctxs and e.answers == [f"Zyxwv{i}"] for e, i in zip(extra, (0, 3), strict=True))
    everything, stats_all = reader_examples(qa, retriever, k=len(toy_passages), unanswered=10, show_progress=False)
    assert stats_all.n_unanswered == 6 and len(everything) == 10  # never more than there are
    with pytest.raises(ConfigError, match="unanswered"):
        reader_examples(qa, retriever, unanswered=-1)


# ---- standard RAG's reader, and continuing an adapter ------------------------------------------------------------
def test_standard_training_continues_an_adapter_and_trains_no_retriever(tiny_model_dir, toy_passages, gpt2_dir, tmp_path):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=2)
    examples, _ = reader_examples([QAExample(q, [a]) for q, a in QA], pipe.retriever, k=2, show_progress=False)
    first = train_rag(pipe, examples, _config(tmp_path, "first", epochs=2))
    started = mean_loss(pipe, examples, "standard")
    # Loaded from the adapter folder, training goes on with that adapter (its rank 4, not a second one of rank 8).
    pipe = pipeline(tiny_model_dir, toy_passages, first.out / "best" / "generator", k=2)
    query_before = {k: v.clone() for k, v in pipe.retriever.encoder.query_encoder.state_dict().items()}
    assert mean_loss(pipe, examples, "standard") == pytest.approx(started, rel=1e-4)
    second = train_rag(pipe, examples, _config(tmp_path, "second", mode="standard", lora_rank=8, epochs=4))
    assert mean_loss(pipe, examples, "standard") < 0.7 * started
    adapter = second.out / "best" / "generator"
    a = load_file(first.out / "best" / "generator" / "adapter_model.safetensors")
    b = load_file(adapter / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert json.loads((adapter / ADAPTER_CONFIG).read_text())["base_model_name_or_path"] == str(gpt2_dir)
    assert load_rag_config(second.out / "best")["mode"] == "standard" and not (second.out / "best" / "retriever").exists()
    for name, value in pipe.retriever.encoder.query_encoder.state_dict().items():
        assert torch.equal(value, query_before[name]), name


# ---- LoRA on the passage objective -------------------------------------------------------------------------------
def test_passage_training_with_lora_trains_only_the_adapter_and_reloads(tiny_model_dir, toy_passages, gpt2_dir, tmp_path):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=2)
    examples, _ = reader_examples([QAExample(q, [a]) for q, a in QA], pipe.retriever, k=8, show_progress=False)
    base_before = {k: v.clone() for k, v in pipe.generator.model.state_dict().items()}
    query_before = {k: v.clone() for k, v in pipe.retriever.encoder.query_encoder.state_dict().items()}
    before = mean_loss(pipe, examples, "passage")
    result = train_rag(pipe, examples, _config(tmp_path, epochs=8))
    after = mean_loss(pipe, examples, "passage")
    assert after < 0.5 * before
    model = pipe.generator.model
    assert hasattr(model, "peft_config")
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n for n in trained)
    for name, value in model.get_base_model().state_dict().items():  # the base weights never move
        key = name.replace(".base_layer", "")
        if key in base_before:
            assert torch.equal(value, base_before[key]), name
    for name, value in pipe.retriever.encoder.query_encoder.state_dict().items():  # passage mode trains no retriever
        assert torch.equal(value, query_before[name]), name
    # best/ holds the adapter alone (a few kB here), naming the base it was trained on; no retriever (it was not trained).
    best = result.out / "best"
    files = {p.name for p in (best / "generator").iterdir()}
    assert {ADAPTER_CONFIG, "adapter_model.safetensors"} <= files and "model.safetensors" not in files
    assert not (best / "retriever").exists()
    assert json.loads((best / "generator" / ADAPTER_CONFIG).read_text())["base_model_name_or_path"] == str(gpt2_dir)
    assert load_rag_config(best)["mode"] == "passage"
    # Loaded again (base + merged adapter) over a corpus file and the same retriever model: the same scores.
    save_jsonl(toy_passages, tmp_path / "corpus.jsonl")
    again = RagPipeline.open(corpus=str(tmp_path / "corpus.jsonl"), model=str(tiny_model_dir), rag=str(result.out), k=2)
    assert not hasattr(again.generator.model, "peft_config") and again.generator.adapter == str(best / "generator")
    again.retriever = pipe.retriever  # the tests' retriever uses mean pooling; compare the generators alone
    pipe.generator.model.eval()
    with torch.no_grad():
        for mode in ("passage", "token"):
            torch.testing.assert_close(
                torch.tensor(mean_loss(again, examples, mode)),
                torch.tensor(mean_loss(pipe, examples, mode)),
                atol=1e-4,
                rtol=1e-4,
            )


def test_an_adapter_of_the_default_generator_names_it_portably(gpt2_dir, tmp_path, monkeypatch):
    """An adapter trained on the embedded default names BASE_DEFAULT, not this machine's cache path, and loads."""
    import dpr_rag.rag.generator as generator_module
    import dpr_rag.rag.lora as lora_module

    monkeypatch.setattr(generator_module, "_default_path_if_converted", lambda: str(gpt2_dir))
    monkeypatch.setattr(lora_module, "default_generator_path", lambda: str(gpt2_dir))
    gen = Generator.from_pretrained(gpt2_dir)
    gen.use_model(add_lora(gen.model, 2))
    with torch.no_grad():
        for name, p in gen.model.named_parameters():
            if "lora_B" in name:
                p.normal_()  # a non-zero adapter, so merging it changes the outputs
    gen.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / ADAPTER_CONFIG).read_text())
    assert config["base_model_name_or_path"] == BASE_DEFAULT
    assert all(v.dtype == torch.float32 for v in load_file(tmp_path / "adapter" / "adapter_model.safetensors").values())
    loaded = Generator.from_pretrained(tmp_path / "adapter")
    inputs, targets = ["Question: a\nAnswer:", "Question: bb\nAnswer:"], ["x", "yy"]
    gen.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.target_logprobs(inputs, targets)[0], gen.target_logprobs(inputs, targets)[0])
        plain = Generator.from_pretrained(gpt2_dir)
        assert not torch.allclose(plain.target_logprobs(inputs, targets)[0], gen.target_logprobs(inputs, targets)[0])


# ---- dev EM, best/ and last/ -------------------------------------------------------------------------------------------
def test_dev_em_keeps_the_best_model_in_best(tiny_model_dir, copier_dir, tmp_path):
    """The copier answers the secret word; training it on a wrong answer drops dev EM, so best/ stays the untrained one."""
    passages = [secret("apple", 0), secret("apple", 1)]
    pipe = pipeline(tiny_model_dir, passages, copier_dir, k=2)
    wrong = [QAExample(SECRET_Q, ["banana"], positive_ctxs=[passages[0]])] * 4
    dev = [QAExample(SECRET_Q, ["apple"])]
    records: list[dict] = []
    cfg = _config(tmp_path, lora_rank=0, lr=1e-2, epochs=8)  # one step an epoch: dev EM after every step
    result = train_rag(pipe, wrong, cfg, callback=records.append, dev=dev)
    ems = [r["dev_em"] for r in records if "dev_em" in r]
    assert ems[0] == 100.0 and ems[-1] == 0.0 and result.best_dev_em == 100.0
    assert [r["step"] for r in records if "dev_em" in r] == list(range(9))
    best = RagPipeline(pipe.retriever, Generator.from_pretrained(result.out / "best" / "generator"), k=2, max_new_tokens=6)
    assert best.answer(SECRET_Q, "token").answer == "apple"
    assert pipe.answer(SECRET_Q, "token").answer != "apple"  # the model in memory (= last/) learned the wrong answer
    assert json.loads((result.out / "last" / "trainer_state.json").read_text())["best_dev_em"] == 100.0
    assert (result.out / "loss.png").stat().st_size > 0


def test_resume_continues_exactly(tiny_model_dir, toy_passages, gpt2_dir, tmp_path):
    def fresh():
        pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=2)
        examples, _ = reader_examples([QAExample(q, [a]) for q, a in QA], pipe.retriever, k=8, show_progress=False)
        return pipe, examples

    pipe, examples = fresh()
    straight = train_rag(pipe, examples, _config(tmp_path, "straight", epochs=2))
    stop = threading.Event()
    pipe, examples = fresh()
    cut = train_rag(
        pipe, examples, _config(tmp_path, "cut", epochs=2), callback=lambda r: r["step"] == 3 and stop.set(), cancel=stop
    )
    assert cut.cancelled and cut.steps == 3 < straight.steps
    pipe, examples = fresh()
    resumed = train_rag(pipe, examples, _config(tmp_path, "cut", epochs=2, resume=True))
    assert resumed.steps == straight.steps
    a = load_file(straight.out / "last" / "generator" / "adapter_model.safetensors")
    b = load_file(resumed.out / "last" / "generator" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [[r["loss"] for r in run.history if "loss" in r] for run in (straight, resumed)]
    assert losses[0] == losses[1]  # the log of the resumed run is the straight run's, step for step
    with pytest.raises(ConfigError, match="cannot resume with a different batch_size"):
        train_rag(pipe, examples, _config(tmp_path, "cut", epochs=2, batch_size=2, resume=True))
    with pytest.raises(ConfigError, match="cannot resume: .* not found"):
        train_rag(pipe, examples, _config(tmp_path, "never", resume=True))


def test_gradient_accumulation_matches_one_big_batch(tiny_model_dir, toy_passages, gpt2_dir, tmp_path):
    """Two batches of 2 accumulated make the step of one batch of 4: the same loss, and (up to Adam's first step
    amplifying rounding in near-zero gradients) the same weights."""
    weights, losses = [], []
    for name, batch, accum in (("big", 4, 1), ("accum", 2, 2)):
        pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=2)
        examples = [QAExample(q, [a], positive_ctxs=[p]) for (q, a), p in zip(QA[:4], toy_passages, strict=False)]
        cfg = _config(tmp_path, name, lora_rank=0, lr=1e-3, epochs=1, batch_size=batch, grad_accum=accum, seed=3)
        result = train_rag(pipe, examples, cfg)
        weights.append({k: v.clone() for k, v in pipe.generator.model.state_dict().items()})
        losses.append([r["loss"] for r in result.history])
    assert len(losses[0]) == 1 and losses[0] == pytest.approx(losses[1], rel=1e-5)
    for k in weights[0]:
        torch.testing.assert_close(weights[0][k], weights[1][k], atol=5e-4, rtol=0)


def test_bf16_autocast_trains(tiny_model_dir, toy_passages, gpt2_dir, tmp_path):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=2)
    examples, _ = reader_examples([QAExample(q, [a]) for q, a in QA], pipe.retriever, k=8, show_progress=False)
    before = mean_loss(pipe, examples, "passage")
    train_rag(pipe, examples, _config(tmp_path, bf16=True, epochs=6))
    assert mean_loss(pipe, examples, "passage") < 0.7 * before


def test_passage_mode_needs_answer_bearing_passages(tiny_model_dir, toy_passages, gpt2_dir, tmp_path):
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=2)
    with pytest.raises(ConfigError, match="training example 1 .* has no answer-bearing passage"):
        train_rag(pipe, [QAExample(q, [a]) for q, a in QA], _config(tmp_path))
    with pytest.raises(ConfigError, match=r"batch size × grad_accum = 16 is more than the 8 rows"):
        examples = [QAExample(q, [a], positive_ctxs=[p]) for (q, a), p in zip(QA, toy_passages, strict=False)]
        train_rag(pipe, examples, _config(tmp_path, batch_size=4, grad_accum=4))


# ---- the shipped reader is the default ---------------------------------------------------------------------------
def test_the_shipped_reader_answers_by_default_and_the_base_on_request(
    tiny_model_dir, toy_passages, gpt2_dir, tmp_path, monkeypatch
):
    import dpr_rag.rag.generator as generator_module
    import dpr_rag.rag.pipeline as pipeline_module

    shipped = tmp_path / "reader"
    gen = Generator.from_pretrained(gpt2_dir)
    gen.use_model(add_lora(gen.model, 2))
    gen.save_pretrained(shipped / "generator")
    (shipped / "rag_config.json").write_text(json.dumps({"mode": "passage", "k": 5, "temperature": 0.07}))
    monkeypatch.setattr(pipeline_module, "shipped_reader", lambda: shipped)
    monkeypatch.setattr(generator_module, "default_generator_path", lambda: str(gpt2_dir))
    save_jsonl(toy_passages, tmp_path / "corpus.jsonl")
    corpus, model = str(tmp_path / "corpus.jsonl"), str(tiny_model_dir)
    default = RagPipeline.open(corpus=corpus, model=model, k=2)
    assert default.generator.adapter == str(shipped / "generator") and default.temperature == 0.07
    base = RagPipeline.open(corpus=corpus, model=model, k=2, base_generator=True)
    assert base.generator.adapter is None and base.generator.source == str(gpt2_dir)
    chosen = RagPipeline.open(corpus=corpus, model=model, k=2, generator=str(gpt2_dir))
    assert chosen.generator.adapter is None
    with pytest.raises(ConfigError, match="base_generator means the bare default generator"):
        RagPipeline.open(corpus=corpus, model=model, k=2, generator=str(gpt2_dir), base_generator=True)
    monkeypatch.setattr(pipeline_module, "shipped_reader", lambda: None)  # a checkout without it: the base model
    assert RagPipeline.open(corpus=corpus, model=model, k=2).generator.adapter is None


def test_the_shipped_adapter_names_the_default_base_portably():
    from dpr_rag.rag.default_generator import SHIPPED_READER, shipped_reader

    assert shipped_reader() == SHIPPED_READER, "the shipped reader is missing from dpr_rag/rag/reader/"
    config = json.loads((SHIPPED_READER / "generator" / ADAPTER_CONFIG).read_text())
    assert config["base_model_name_or_path"] == BASE_DEFAULT and config["peft_type"] == "LORA"
    assert (SHIPPED_READER / "README.md").read_text().count("python -m dpr_rag.train_rag") >= 1  # the model card
    assert load_rag_config(SHIPPED_READER)["k"] == 5


def test_a_nan_loss_stops_training_before_it_reaches_the_weights(tiny_model_dir, toy_passages, gpt2_dir, tmp_path, monkeypatch):
    """A NaN loss at step 3 stops the run with an error naming the step and its questions; the weights and last/
    stay as they were after step 2 (a NaN step would otherwise poison every weight and checkpoint after it)."""
    import dpr_rag.rag.trainer as trainer

    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=2)
    examples, _ = reader_examples([QAExample(q, [a]) for q, a in QA], pipe.retriever, k=8, show_progress=False)
    real_loss, calls = trainer.batch_loss, []

    def loss_with_a_nan(*args, **kw):
        calls.append(1)
        loss = real_loss(*args, **kw)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(trainer, "batch_loss", loss_with_a_nan)
    cfg = _config(tmp_path, dev_every=2, batch_size=2)
    with pytest.raises(trainer.NonFiniteLoss, match=r"the loss is nan at step 3 \(questions: .*\); nothing of this step"):
        train_rag(pipe, examples, cfg)
    assert json.loads((tmp_path / "run" / "last" / "trainer_state.json").read_text())["step"] == 2
    assert all(torch.isfinite(p).all() for p in pipe.generator.model.parameters())


def test_continuing_an_adapter_keeps_the_callers_attention_kernels(tiny_model_dir, toy_passages, gpt2_dir, tmp_path):
    """Training from an adapter folder reloads the base model; it keeps the attention implementation (and device)
    the caller set on the generator, not the default it would load with."""
    pipe = pipeline(tiny_model_dir, toy_passages, gpt2_dir, k=2)
    examples, _ = reader_examples([QAExample(q, [a]) for q, a in QA], pipe.retriever, k=2, show_progress=False)
    first = train_rag(pipe, examples, _config(tmp_path, "first", epochs=1))
    pipe = pipeline(tiny_model_dir, toy_passages, first.out / "best" / "generator", k=2)
    default = pipe.generator.model.config._attn_implementation
    chosen = "eager" if default != "eager" else "sdpa"
    pipe.generator.model.set_attn_implementation(chosen)
    train_rag(pipe, examples, _config(tmp_path, "second", mode="standard", epochs=1))
    assert hasattr(pipe.generator.model, "peft_config")  # the reloaded, trainable adapter
    assert pipe.generator.model.config._attn_implementation == chosen
