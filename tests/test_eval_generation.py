"""The evaluation harness's answer quality with a fake pipeline: EM/F1 per mode, RAG-Sequence's beams, the bare base
model beside the reader, generation without retrieval, and eval.compare pairing rows of separate reports."""

from __future__ import annotations

import types

import pytest
from eval_helpers import PNG_MAGIC, QA, config, read_per_question

from dpr_rag.data.passages import load_corpus
from dpr_rag.errors import ConfigError
from dpr_rag.rag.generator import Generator
from dpr_rag.rag.pipeline import MODES, RagPipeline
from eval.config import GENERATION_MODES
from eval.harness import run_evaluation


class FakePipeline:
    ANSWERS = {  # question -> answer per mode; hand-scored below
        "sequence": ["leonardo da vinci", "The 1889.", "Guido", "Everest", "Fleming"],
        "closed-book": ["", "1900", "", "", ""],
    }

    def answer_batch(self, questions, mode, num_beams=None):
        self.beams = [*getattr(self, "beams", []), (mode, num_beams)]
        index = {q: i for i, (q, _) in enumerate(QA)}
        return [
            types.SimpleNamespace(question=q, answer=self.ANSWERS[mode][index[q]], mode=mode, fallback=False) for q in questions
        ]


def test_generation_scores_each_mode(tmp_path, corpus_file, qa_file, monkeypatch):
    calls = []

    def fake_open(**kw):
        calls.append(kw)
        return FakePipeline()

    monkeypatch.setattr(RagPipeline, "open", fake_open)
    cfg = config(tmp_path, corpus_file, qa_file, generate=["sequence", "closed-book"], generator="my-gen", rag_k=3)
    report, out = run_evaluation(cfg)
    assert calls and calls[0]["generator"] == "my-gen" and calls[0]["k"] == 3
    # RAG reuses the searcher that retrieval opened: the corpus is not parsed, nor the encoder loaded, a second time
    assert [p.id for p in calls[0]["searcher"].passages] == [p.id for p in load_corpus(corpus_file)]
    # sequence: EM 1, 1, 0, 0, 0; F1 1, 1, 1/2 (guido | guido van rossum), 2/3 (everest | mount everest), 2/3
    assert report["qa"]["sequence"] == {"em": 40.0, "f1": round(100 * (1 + 1 + 0.5 + 2 / 3 + 2 / 3) / 5, 2)}
    assert report["qa"]["closed-book"] == {"em": 0.0, "f1": 0.0}
    assert report["answerable"]["qa"]["sequence"] == {"em": 50.0, "f1": round(100 * (1 + 1 + 0.5 + 2 / 3) / 4, 2)}
    assert [(c["a"], c["b"], c["metric"]) for c in report["comparisons"]["qa"]] == [
        ("closed-book", "sequence", "em"),
        ("closed-book", "sequence", "f1"),
    ]
    rows = read_per_question(out)
    assert rows[1]["predictions"]["sequence"] == {"answer": "The 1889.", "em": 1.0, "f1": 1.0}
    assert rows[2]["predictions"]["sequence"]["f1"] == 0.5
    md = (out / "report.md").read_text()
    assert "| mode | EM | F1 | EM (answerable) | F1 (answerable) |" in md and "| sequence | 40.0 |" in md
    assert "--generate sequence,closed-book --rag-k 3 --generator my-gen" in report["settings"]["command"]


def test_sequence_beams_reach_rag_sequence_only(tmp_path, corpus_file, qa_file, monkeypatch):
    pipeline = FakePipeline()
    monkeypatch.setattr(RagPipeline, "open", lambda **kw: pipeline)
    cfg = config(tmp_path, corpus_file, qa_file, generate=["sequence", "closed-book"], sequence_beams=1)
    report, _ = run_evaluation(cfg)
    assert set(pipeline.beams) == {("sequence", 1), ("closed-book", None)}  # type: ignore[attr-defined]
    assert "--sequence-beams 1" in report["settings"]["command"]
    for bad in (0, 17, 1.5):
        with pytest.raises(ConfigError, match="--sequence-beams"):
            config(tmp_path, corpus_file, qa_file, generate=["sequence"], sequence_beams=bad)


class FakeBasePipeline(FakePipeline):
    ANSWERS = {"closed-book": ["Leonardo da Vinci", "", "", "", ""], "sequence": ["", "", "", "", ""]}


def test_with_base_answers_with_the_bare_model_over_the_same_retrieval(tmp_path, corpus_file, qa_file, monkeypatch):
    loaded = []
    main = FakePipeline()
    main.with_generator = lambda generator: loaded.append(generator) or FakeBasePipeline()  # type: ignore[attr-defined]
    monkeypatch.setattr(RagPipeline, "open", lambda **kw: main)
    monkeypatch.setattr(Generator, "from_pretrained", lambda path=None: f"generator {path}")
    cfg = config(tmp_path, corpus_file, qa_file, generate=["sequence"], with_base=["closed-book"], bf16=True)
    report, out = run_evaluation(cfg)
    assert loaded == ["generator None"]  # the bare default model
    assert list(report["qa"]) == ["closed-book (base)", "sequence"]
    assert report["qa"]["closed-book (base)"]["em"] == 20.0 and main.bf16 is True  # type: ignore[attr-defined]
    assert [(c["a"], c["b"], c["metric"]) for c in report["comparisons"]["qa"]] == [
        ("sequence", "closed-book (base)", "em"),  # reader − base
        ("sequence", "closed-book (base)", "f1"),
    ]
    assert "--with-base closed-book" in report["settings"]["command"] and "--bf16" in report["settings"]["command"]
    assert "| closed-book (base) | 20.0 |" in (out / "report.md").read_text()
    with pytest.raises(ConfigError, match="--with-base needs --generate"):
        config(tmp_path, corpus_file, qa_file, with_base=["token"])
    with pytest.raises(ConfigError, match="at most one of --generator, --rag and --base-generator"):
        config(tmp_path, corpus_file, qa_file, generate=["token"], rag="x", base_generator=True)


def test_generation_only_without_retrievers(tmp_path, corpus_file, qa_file, monkeypatch):
    monkeypatch.setattr(RagPipeline, "open", lambda **kw: FakePipeline())
    report, out = run_evaluation(config(tmp_path, corpus_file, qa_file, retrievers=[], generate=["sequence"]))
    assert report["retrieval"] == {} and report["qa"]["sequence"]["em"] == 40.0
    assert (out / "topk.png").read_bytes()[:8] == PNG_MAGIC


def test_compare_pairs_rows_of_separate_reports_like_one_report(tmp_path, corpus_file, qa_file, monkeypatch, capsys):
    """Baselines answered in one run and a reader in another: eval.compare gives the CIs one joint report gives."""
    from eval import compare

    monkeypatch.setattr(RagPipeline, "open", lambda **kw: FakePipeline())
    joint, _ = run_evaluation(
        config(tmp_path, corpus_file, qa_file, generate=["closed-book", "sequence"], out=str(tmp_path / "j"))
    )
    run_evaluation(config(tmp_path, corpus_file, qa_file, generate=["closed-book"], out=str(tmp_path / "a")))
    run_evaluation(config(tmp_path, corpus_file, qa_file, generate=["sequence"], out=str(tmp_path / "b")))
    out = tmp_path / "cmp.md"
    compare.main([f"{tmp_path / 'a'}:closed-book", f"{tmp_path / 'b'}:sequence", "--bootstrap", "200", "--out", str(out)])
    text = capsys.readouterr().out
    assert out.read_text() == text and "5 questions (4 answerable from the corpus)" in text
    seq, seq_answerable = joint["qa"]["sequence"], joint["answerable"]["qa"]["sequence"]
    cells = [seq["em"], seq["f1"], seq_answerable["em"], seq_answerable["f1"]]
    assert "| sequence [b] | " + " | ".join(f"{c:.1f}" for c in cells) + " |" in text
    for c in joint["comparisons"]["qa"]:  # the same paired bootstrap (same seed and resamples) as the joint report
        assert f"| {c['metric'].upper()} | {c['difference']:+.1f} | [{c['low']:+.1f}, {c['high']:+.1f}] |" in text
    with pytest.raises(ConfigError, match="exists"):
        compare.main([f"{tmp_path / 'a'}:closed-book", f"{tmp_path / 'b'}:sequence", "--out", str(out)])
    with pytest.raises(ConfigError, match=r"line 1: no answers of row 'token' \(the rows there: closed-book\)"):
        compare.AnswerRow.load(f"{tmp_path / 'a'}:token")
    run_evaluation(config(tmp_path, corpus_file, qa_file, generate=["sequence"], limit=3, out=str(tmp_path / "c")))
    with pytest.raises(ConfigError, match="do not answer the same questions"):
        compare.compare(
            [compare.AnswerRow.load(f"{tmp_path / 'a'}:closed-book"), compare.AnswerRow.load(f"{tmp_path / 'c'}:sequence")]
        )


def test_generation_modes_match_the_rag_module():
    assert set(GENERATION_MODES) == set(MODES)
