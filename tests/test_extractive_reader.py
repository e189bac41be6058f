"""DPR's extractive reader: answer spans found by has_answer's rule, the best-span search, the loss against a value
computed by hand, save/load round trips (whole and compact), training (learning, exact resume) and the extractive
QA mode in the pipeline, the answer CLI and eval."""

from __future__ import annotations

import json
import math
import threading

import pytest
import torch
from transformers import AutoTokenizer

from dpr_rag.answer import main as answer_main
from dpr_rag.data.passages import Passage, load_corpus
from dpr_rag.data.qa import QAExample
from dpr_rag.errors import ConfigError, DprRagError
from dpr_rag.extractive import model
from dpr_rag.extractive.model import READER_CONFIG, READER_WEIGHTS, ExtractiveReader
from dpr_rag.extractive.spans import answer_char_spans, best_span, char_span_to_tokens, title_text_segments
from dpr_rag.matching import exact_match, has_answer
from dpr_rag.rag.extractive_mode import span_in_passage
from dpr_rag.rag.pipeline import RagPipeline
from dpr_rag.retrieval.bm25 import BM25Retriever
from dpr_rag.retrieval.encoder import default_encoder_path
from dpr_rag.retrieval.rerank import passage_text
from dpr_rag.training.reader_loss import reader_loss
from dpr_rag.training.reader_trainer import ReaderTrainConfig, answer_spans, train_reader
from eval.config import EvalConfig
from eval.harness import run_evaluation


# ---- spans --------------------------------------------------------------------------------------------------------
def test_answer_spans_follow_has_answer():
    text = "Leonardo da Vinci painted it. Later, LEONARDO DA VINCI's pupils copied it; an artist, not art."
    spans = answer_char_spans(["leonardo da vinci"], text)
    assert [text[s:e] for s, e in spans] == ["Leonardo da Vinci", "LEONARDO DA VINCI"]
    assert answer_char_spans(["art"], text) == [(text.index("art."), text.index("art.") + 3)]  # not inside "artist"
    assert answer_char_spans(["Leonardo", "da Vinci"], text) == sorted(
        answer_char_spans(["Leonardo"], text) + answer_char_spans(["da Vinci"], text)
    )
    assert answer_char_spans(["", "  "], text) == []  # an answer with no tokens never occurs
    for answer in ("vinci painted", "pupils copied", "1503", "leonardo da"):  # the same verdict as has_answer
        assert bool(answer_char_spans([answer], text)) == has_answer([answer], text)


def test_answer_spans_keep_accents_and_original_offsets():
    text = "The Café de Flore is in Paris."
    (span,) = answer_char_spans(["cafe\u0301 de flore"], text)  # NFD on both sides, as has_answer does
    assert text[span[0] : span[1]] == "Café de Flore"


def test_char_span_to_tokens_maps_onto_wordpieces_and_notices_truncation():
    tok = AutoTokenizer.from_pretrained(default_encoder_path())
    passage = "Mona Lisa: The portrait was painted by Leonardo da Vinci in Florence."
    enc = tok("who painted it", passage, return_offsets_mapping=True)
    in_passage = [sid == 1 for sid in enc.sequence_ids()]
    (chars,) = answer_char_spans(["Leonardo da Vinci"], passage)
    first, last = char_span_to_tokens(chars, enc["offset_mapping"], in_passage)
    assert tok.decode(enc["input_ids"][first : last + 1]) == "leonardo da vinci"
    cut = tok("who painted it", passage, return_offsets_mapping=True, truncation="only_second", max_length=12)
    assert char_span_to_tokens(chars, cut["offset_mapping"], [s == 1 for s in cut.sequence_ids()]) is None


def test_best_span_respects_the_length_limit_and_the_passage():
    start = torch.tensor([0.0, 5.0, 0.0, 1.0, 0.0])
    end = torch.tensor([9.0, 0.0, 0.0, 0.0, 4.0])
    allowed = torch.tensor([False, True, True, True, True])  # token 0 is the question: never part of an answer
    assert best_span(start, end, allowed, max_answer_length=10) == (1, 4, 9.0)
    s, e, score = best_span(start, end, allowed, max_answer_length=2)  # 1..4 is too long now: e < s + 2
    assert (s, e) in {(1, 1), (1, 2)} and score == 5.0
    s, e, score = best_span(start, end, allowed, max_answer_length=1)
    assert (s, e, score) == (1, 1, 5.0)


def test_spans_never_cross_from_title_to_text():
    tok = AutoTokenizer.from_pretrained(default_encoder_path())
    p = Passage("1", "Mona Lisa", "The portrait")
    enc = tok("q", passage_text(p), return_offsets_mapping=True)
    offsets = [tuple(o) for o, sid in zip(enc["offset_mapping"], enc.sequence_ids(), strict=True) if sid == 1]
    segment, usable = title_text_segments(offsets, p.title)
    words = [passage_text(p)[s:e] for s, e in offsets]
    assert words == ["Mona", "Lisa", ":", "The", "portrait"]
    assert segment.tolist() == [0, 0, 1, 1, 1] and usable.tolist() == [True, True, False, True, True]
    start, end = torch.tensor([5.0, 0, 0, 0, 0]), torch.tensor([0.0, 0, 0, 0, 5.0])  # wants "Mona ... portrait"
    s, e, _ = best_span(start, end, usable, 10, segment)
    assert segment[s] == segment[e] and not (s == 0 and e == 4)


def test_span_in_passage_splits_title_and_text():
    p = Passage("1", "Mona Lisa", "A portrait by Leonardo da Vinci.")
    shown = passage_text(p)
    s = shown.index("Leonardo")
    span = span_in_passage(p, 3, s, s + len("Leonardo da Vinci"))
    assert (span.passage, span.field) == (3, "text") and p.text[span.start : span.end] == "Leonardo da Vinci"
    title = span_in_passage(p, 0, 0, 4)
    assert title.field == "title" and p.title[title.start : title.end] == "Mona"


# ---- the loss -----------------------------------------------------------------------------------------------------
def test_reader_loss_matches_a_hand_computed_value():
    selection = torch.tensor([[2.0, 0.0, 1.0]])  # the positive first
    start = torch.tensor([[9.0, 1.0, 0.0, 2.0]])  # token 0 is not in the passage: masked out
    end = torch.tensor([[9.0, 0.0, 3.0, 1.0]])
    allowed = torch.tensor([[False, True, True, True]])
    spans = [[(1, 2), (3, 3)]]  # two occurrences of the answer
    result = reader_loss(selection, start, end, allowed, spans)
    z_start = math.exp(1) + math.exp(0) + math.exp(2)
    z_end = math.exp(0) + math.exp(3) + math.exp(1)
    p_spans = (math.exp(1) / z_start) * (math.exp(3) / z_end) + (math.exp(2) / z_start) * (math.exp(1) / z_end)
    select = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(1)))
    assert result.loss.item() == pytest.approx(select - math.log(p_spans), rel=1e-6)
    assert result.span == pytest.approx(-math.log(p_spans), rel=1e-6) and result.selected == 1
    with pytest.raises(ValueError, match="answer span"):
        reader_loss(selection, start, end, allowed, [[]])


def test_reader_loss_averages_over_questions():
    torch.manual_seed(0)
    sel, st, en = torch.randn(2, 3), torch.randn(2, 6), torch.randn(2, 6)
    allowed = torch.ones(2, 6, dtype=torch.bool)
    spans = [[(1, 2)], [(0, 4), (3, 3)]]
    both = reader_loss(sel, st, en, allowed, spans).loss
    one = [reader_loss(sel[i : i + 1], st[i : i + 1], en[i : i + 1], allowed[i : i + 1], spans[i : i + 1]).loss for i in (0, 1)]
    assert both.item() == pytest.approx((one[0].item() + one[1].item()) / 2, rel=1e-6)


# ---- the model ----------------------------------------------------------------------------------------------------
@pytest.fixture
def reader(tiny_model_dir) -> ExtractiveReader:
    torch.manual_seed(0)
    return ExtractiveReader.from_encoder(tiny_model_dir, max_length=64)


def test_read_answers_with_a_span_of_the_selected_passage(reader, toy_passages):
    found = reader.read("who painted the mona lisa", toy_passages[:4])
    assert 0 <= found.passage < 4 and sum(found.selection) == pytest.approx(1.0)
    assert found.selection[found.passage] == max(found.selection)
    assert passage_text(toy_passages[found.passage])[found.start : found.end] == found.text and found.text
    assert found.logprob <= 0


def test_the_joint_rule_maximises_over_every_passage(reader, toy_passages):
    dpr = reader.read("who painted the mona lisa", toy_passages)
    assert dpr.passage == max(range(len(toy_passages)), key=lambda i: dpr.selection[i])  # DPR: the selected passage
    reader.answer_rule = "joint"
    joint = reader.read("who painted the mona lisa", toy_passages)
    assert joint.logprob >= dpr.logprob and joint.selection == pytest.approx(dpr.selection)
    only = reader.read("who painted the mona lisa", [toy_passages[joint.passage]])  # alone, the same span wins
    assert (only.start, only.end) == (joint.start, joint.end)
    with pytest.raises(ConfigError):
        ExtractiveReader(reader.encoder, reader.tokenizer, answer_rule="best")


def test_the_prior_rule_adds_the_retrievers_log_probability(reader, toy_passages):
    reader.answer_rule = "joint"
    joint = reader.read("who painted the mona lisa", toy_passages)
    other = (joint.passage + 1) % len(toy_passages)
    reader.answer_rule = "prior"
    assert reader.read("who painted the mona lisa", toy_passages).logprob == pytest.approx(joint.logprob)  # no prior
    flat = torch.zeros(len(toy_passages))
    same = reader.read("who painted the mona lisa", toy_passages, prior=flat)
    assert (same.passage, same.start, same.end) == (joint.passage, joint.start, joint.end)  # uniform: as joint
    confident = torch.full((len(toy_passages),), -30.0)
    confident[other] = 0.0  # the retriever is sure of another passage: its best span wins
    chosen = reader.read("who painted the mona lisa", toy_passages, prior=confident)
    assert chosen.passage == other
    alone = reader.read("who painted the mona lisa", [toy_passages[other]])
    assert (chosen.start, chosen.end) == (alone.start, alone.end)
    expected = alone.logprob + math.log(chosen.selection[other]) + float(torch.log_softmax(confident, 0)[other])
    assert chosen.logprob == pytest.approx(expected, abs=1e-4)  # log p(z|x) + log P_sel + log P_start + log P_end
    with pytest.raises(DprRagError, match="2 prior log-probabilities"):
        reader.read("who painted the mona lisa", toy_passages, prior=torch.zeros(2))


def test_save_and_load_round_trip(reader, tmp_path, toy_passages):
    batch, _, _ = reader.tokenize(["who painted it"] * 3, toy_passages[:3])
    before = reader.eval()(batch)
    reader.save_pretrained(tmp_path / "full")
    assert (tmp_path / "full" / READER_WEIGHTS).is_file() and not list((tmp_path / "full").glob("*.bin"))
    again = ExtractiveReader.from_pretrained(tmp_path / "full")
    after = again(batch)
    for a, b in ((before.selection, after.selection), (before.start, after.start), (before.end, after.end)):
        torch.testing.assert_close(a, b)
    assert again.max_length == 64 and again.max_answer_length == reader.max_answer_length
    reader.answer_rule = "joint"
    reader.save_pretrained(tmp_path / "joint")
    assert ExtractiveReader.from_pretrained(tmp_path / "joint").answer_rule == "joint"


def test_compact_save_leaves_out_frozen_embeddings_and_refuses_trained_ones(tiny_model_dir, tmp_path, toy_passages):
    torch.manual_seed(0)
    reader = ExtractiveReader.from_encoder(tiny_model_dir, max_length=64)
    reader.save_pretrained(tmp_path / "compact", compact=True)
    meta = json.loads((tmp_path / "compact" / READER_CONFIG).read_text())
    assert meta["omitted"] == ["encoder.embeddings.word_embeddings.weight"]
    again = ExtractiveReader.from_pretrained(tmp_path / "compact")
    batch, _, _ = reader.tokenize(["who painted it"], toy_passages[:1])
    torch.testing.assert_close(reader.eval()(batch).start, again(batch).start, atol=2e-2, rtol=1e-2)  # fp16 weights
    with torch.no_grad():
        reader.encoder.get_input_embeddings().weight[5] += 1.0
    with pytest.raises(DprRagError, match="word embeddings were trained"):
        reader.save_pretrained(tmp_path / "bad", compact=True)


def test_fewer_layers_keep_the_first_ones_and_reload_compactly(tiny_model_dir, tmp_path, toy_passages):
    full = ExtractiveReader.from_encoder(tiny_model_dir, max_length=64)
    torch.manual_seed(0)
    shallow = ExtractiveReader.from_encoder(tiny_model_dir, layers=1, max_length=64)
    assert shallow.encoder.config.num_hidden_layers == len(shallow.encoder.encoder.layer) == 1
    kept = {k: v for k, v in shallow.encoder.state_dict().items()}
    for name, tensor in full.encoder.state_dict().items():  # layer 0 and the embeddings are the pretrained ones
        if ".layer.1." not in name and "pooler" not in name:
            torch.testing.assert_close(kept[name], tensor, msg=name)
    assert not any(".layer.1." in k for k in kept)
    shallow.save_pretrained(tmp_path / "shallow", compact=True)
    again = ExtractiveReader.from_pretrained(tmp_path / "shallow")
    assert len(again.encoder.encoder.layer) == 1
    batch, _, _ = shallow.tokenize(["who painted it"], toy_passages[:1])
    torch.testing.assert_close(shallow.eval()(batch).start, again(batch).start, atol=2e-2, rtol=1e-2)
    with pytest.raises(ConfigError, match="layers.*between 1 and 2"):
        ExtractiveReader.from_encoder(tiny_model_dir, layers=3)


def test_from_pretrained_names_a_folder_that_is_not_a_reader(tmp_path):
    with pytest.raises(DprRagError, match="not an extractive reader folder"):
        ExtractiveReader.from_pretrained(tmp_path)
    (tmp_path / READER_CONFIG).write_text("{not json")
    with pytest.raises(DprRagError, match=READER_CONFIG):
        ExtractiveReader.from_pretrained(tmp_path)


# ---- training -----------------------------------------------------------------------------------------------------
def _toy_qa() -> list[QAExample]:
    painter = ["who painted it", "which artist", "the painter", "by whom"]
    year = ["what year", "when completed", "which date", "the year"]
    return [QAExample(q, ["Leonardo da Vinci"]) for q in painter] + [QAExample(q, ["1889"]) for q in year]


def _config(tmp_path, tiny_model_dir, toy_corpus, **kw) -> ReaderTrainConfig:
    settings = dict(
        out=str(tmp_path / "run"),
        corpus=str(toy_corpus),
        retriever_model=str(tiny_model_dir),
        model=str(tiny_model_dir),
        first_stage="bm25",
        candidates=6,
        group_size=3,
        batch_size=2,
        epochs=2,
        lr=1e-3,
        max_length=64,
        dev_fraction=0.25,
        show_progress=False,
    )
    return ReaderTrainConfig(**{**settings, **kw})


def test_training_learns_and_writes_its_folders(tmp_path, tiny_model_dir, toy_corpus):
    result = train_reader(_config(tmp_path, tiny_model_dir, toy_corpus, epochs=8, lr=3e-3, warmup_ratio=0.0), _toy_qa())
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert result.steps == len(losses) == 8 * 3  # 6 training questions, 2 per step
    assert sum(losses[-3:]) < sum(losses[:3]) / 2
    out = tmp_path / "run"
    for name in ("best/reader.safetensors", "last/model/reader.safetensors", "last/trainer_state.json", "loss.png"):
        assert (out / name).is_file(), name
    assert [r for r in result.history if "dev_em" in r] and result.best_dev_em is not None
    trained = ExtractiveReader.from_pretrained(out / "last" / "model")
    toy = [Passage(str(i), t, x) for i, (t, x) in enumerate([("Mona Lisa", "A portrait by Leonardo da Vinci.")])]
    assert answer_spans(trained, "who painted it", ["Leonardo da Vinci"], toy[0])  # spans still found after a reload


class _CancelAfter:
    def __init__(self, steps: int):
        self.event, self.steps = threading.Event(), steps

    def __call__(self, record: dict) -> None:
        if record.get("step", 0) >= self.steps and "loss" in record:
            self.event.set()


def test_resume_continues_exactly(tmp_path, tiny_model_dir, toy_corpus):
    straight = train_reader(_config(tmp_path / "a", tiny_model_dir, toy_corpus), _toy_qa())
    cancel = _CancelAfter(2)
    half = train_reader(_config(tmp_path / "b", tiny_model_dir, toy_corpus), _toy_qa(), callback=cancel, cancel=cancel.event)
    assert half.cancelled and half.steps == 2
    resumed = train_reader(_config(tmp_path / "b", tiny_model_dir, toy_corpus, resume=True))
    assert resumed.steps == straight.steps
    a = ExtractiveReader.from_pretrained(tmp_path / "a" / "run" / "last" / "model").state_dict()
    b = ExtractiveReader.from_pretrained(tmp_path / "b" / "run" / "last" / "model").state_dict()
    for name, tensor in a.items():
        torch.testing.assert_close(b[name], tensor, msg=name)
    assert [r["loss"] for r in resumed.history if "loss" in r] == [r["loss"] for r in straight.history if "loss" in r]


def test_config_rejects_bad_settings(tmp_path):
    for bad in (
        dict(candidates=1),
        dict(group_size=0),
        dict(lr=0.0),
        dict(first_stage="sparse"),
        dict(max_answer_length=0),
        dict(layers=0),
    ):
        with pytest.raises(ConfigError):
            ReaderTrainConfig(out=str(tmp_path), **bad)  # type: ignore[arg-type]


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
    qa.write_text("".join(json.dumps({"question": e.question, "answer": e.answers}) + "\n" for e in _toy_qa()))
    config = EvalConfig(
        qa=str(qa), corpus=str(toy_corpus), retrievers=["bm25"], k=[1], generate=["extractive"], reader=str(saved_reader),
        rag_retriever="bm25", rag_k=3, out=str(tmp_path / "r"), show_progress=False, bootstrap_samples=50,
    )  # fmt: skip
    report, out = run_evaluation(config)
    reader = ExtractiveReader.from_pretrained(saved_reader)
    bm25 = BM25Retriever(load_corpus(toy_corpus))
    expected = [reader.read(e.question, [h.passage for h in bm25.search([e.question], 3)[0]]).text for e in _toy_qa()]
    em = 100.0 * sum(exact_match(p, e.answers) for p, e in zip(expected, _toy_qa(), strict=True)) / len(expected)
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
