"""DPR's extractive reader: answer spans found by has_answer's rule, the best-span search, the loss against a value
computed by hand, the answer rules, save/load round trips (whole, compact, fewer layers) and training (learning, exact
resume). The extractive QA mode (pipeline, CLI, eval, the shipped reader): tests/test_extractive_mode.py."""

from __future__ import annotations

import json
import math
import threading

import pytest
import torch
from reader_helpers import toy_reader_qa
from transformers import AutoTokenizer

from dpr_rag.data.passages import Passage
from dpr_rag.errors import ConfigError, DprRagError
from dpr_rag.extractive.model import READER_CONFIG, READER_WEIGHTS, ExtractiveReader
from dpr_rag.extractive.spans import answer_char_spans, best_span, char_span_to_tokens, title_text_segments
from dpr_rag.matching import has_answer
from dpr_rag.rag.extractive_mode import span_in_passage
from dpr_rag.retrieval.encoder import default_encoder_path
from dpr_rag.retrieval.rerank import passage_text
from dpr_rag.training.reader_loss import reader_loss
from dpr_rag.training.reader_trainer import ReaderTrainConfig, answer_spans, train_reader


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
    result = train_reader(_config(tmp_path, tiny_model_dir, toy_corpus, epochs=8, lr=3e-3, warmup_ratio=0.0), toy_reader_qa())
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
    straight = train_reader(_config(tmp_path / "a", tiny_model_dir, toy_corpus), toy_reader_qa())
    cancel = _CancelAfter(2)
    config = _config(tmp_path / "b", tiny_model_dir, toy_corpus)
    half = train_reader(config, toy_reader_qa(), callback=cancel, cancel=cancel.event)
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
