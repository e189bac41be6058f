"""The evaluation harness end to end on a tiny corpus: every QA format, the report schema, the outputs,
generation (with a fake pipeline), caching, atomic output, and bad inputs exiting 2 with one line."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import types

import pytest

from dpr_rag.cli_common import run_cli
from dpr_rag.data.passages import load_corpus, save_jsonl
from dpr_rag.errors import ConfigError
from dpr_rag.plots import plot_topk
from dpr_rag.rag.generator import Generator
from dpr_rag.rag.pipeline import MODES, RagPipeline
from dpr_rag.retrieval.encoder import DualEncoder
from eval import harness
from eval.config import GENERATION_MODES, EvalConfig, parse_ks
from eval.harness import run_evaluation
from eval.report import FILES
from eval.run import main
from eval.stages import EvalCancelled

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QA = [
    ("who painted the mona lisa", ["Leonardo da Vinci"]),
    ("in which year was the eiffel tower in paris completed", ["1889"]),
    ("who created the python programming language", ["Guido van Rossum"]),
    ("what is the highest mountain on earth", ["Mount Everest"]),
    ("who discovered penicillin", ["Alexander Fleming"]),  # in no passage: unanswerable
]
KS = ["1", "5", "20", "100"]


def write_qa(folder, fmt: str):
    path = folder / f"qa.{fmt}"
    if fmt == "jsonl":  # NQ-open
        path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QA))
    elif fmt == "json":  # DPR retriever JSON
        path.write_text(json.dumps([{"question": q, "answers": a, "positive_ctxs": [], "hard_negative_ctxs": []} for q, a in QA]))
    else:  # DPR CSV/TSV: question<TAB>python-or-json list literal
        path.write_text("".join(f"{q}\t{json.dumps(a) if i % 2 else repr(a)}\n" for i, (q, a) in enumerate(QA)))
    return path


@pytest.fixture
def corpus_file(tmp_path, toy_passages):
    path = tmp_path / "toy.jsonl"
    save_jsonl(toy_passages, path)
    return path


@pytest.fixture
def qa_file(tmp_path):
    return write_qa(tmp_path, "jsonl")


def config(tmp_path, corpus_file, qa_file, **kw) -> EvalConfig:
    kw.setdefault("retrievers", ["bm25"])
    kw.setdefault("out", str(tmp_path / "report"))
    return EvalConfig(qa=str(qa_file), corpus=str(corpus_file), show_progress=False, bootstrap_samples=200, **kw)


def read_per_question(folder):
    return [json.loads(line) for line in (folder / "per_question.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "tsv"])
def test_each_qa_format_end_to_end(tmp_path, corpus_file, fmt):
    report, out = run_evaluation(config(tmp_path, corpus_file, write_qa(tmp_path, fmt)))
    assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, "runs"])
    trec = [line.split() for line in (out / "runs" / "bm25.trec").read_text().splitlines()]
    assert len(trec) == 5 * 8 and {row[1] for row in trec} == {"Q0"} and trec[0][3] == "1"  # 8 passages each
    assert report["n_questions"] == 5
    assert (report["n_answerable"], report["n_unanswerable"]) == (4, 1)
    bm25 = report["retrieval"]["bm25"]
    assert list(bm25) == KS
    assert bm25["100"] == 80.0  # all 8 passages come back at k=100: every answerable question is found
    assert report["answerable"]["retrieval"]["bm25"]["100"] == 100.0
    assert bm25["1"] <= bm25["5"] <= bm25["20"] <= bm25["100"]
    rows = read_per_question(out)
    assert [r["question"] for r in rows] == [q for q, _ in QA]
    assert rows[-1]["answerable"] is False and rows[-1]["first_hit_rank"] == {"bm25": None}
    assert rows[0]["first_hit_rank"]["bm25"] == 1 and rows[0]["top1"]["bm25"]["title"] == "Mona Lisa"


def test_full_report_schema_with_all_retrievers_and_cached_rerun(tmp_path, corpus_file, qa_file, tiny_model_dir, monkeypatch):
    encodes = []
    original = DualEncoder.encode_passages
    monkeypatch.setattr(DualEncoder, "encode_passages", lambda self, p, **kw: encodes.append(len(p)) or original(self, p, **kw))
    stages = []
    cfg = config(
        tmp_path, corpus_file, qa_file, retrievers=["bm25", "dense", "hybrid"], model=str(tiny_model_dir), baseline=False
    )
    report, out = run_evaluation(cfg, progress=lambda stage, done, total: stages.append((stage, done, total)))

    # report.json: the schema of the issue, percent values, k keys as strings
    saved = json.loads((out / "report.json").read_text())
    assert saved == report
    assert {
        "n_questions",
        "retrieval",
        "qa",
        "settings",
        "n_answerable",
        "n_unanswerable",
        "answerable",
        "comparisons",
        "queries_per_second",
    } <= set(saved)
    assert list(saved["retrieval"]) == ["bm25", "dense", "hybrid"]
    for block in (saved["retrieval"], saved["answerable"]["retrieval"]):
        for accs in block.values():
            assert list(accs) == KS
            assert all(isinstance(v, float) and 0.0 <= v <= 100.0 for v in accs.values())
    assert saved["qa"] == {}
    assert all(q > 0 for q in saved["queries_per_second"].values())
    assert saved["settings"]["k"] == [1, 5, 20, 100] and saved["settings"]["model"] == str(tiny_model_dir)
    # paired bootstrap: every pair of retrievers at every k
    pairs = {(c["a"], c["b"], c["k"]) for c in saved["comparisons"]["retrieval"]}
    assert pairs == {(a, b, k) for a, b in [("dense", "bm25"), ("hybrid", "bm25"), ("hybrid", "dense")] for k in KS}
    for c in saved["comparisons"]["retrieval"]:
        assert c["low"] <= c["difference"] <= c["high"] and isinstance(c["excludes_zero"], bool)
        diff = saved["retrieval"][c["a"]][c["k"]] - saved["retrieval"][c["b"]][c["k"]]
        assert c["difference"] == pytest.approx(diff, abs=0.02)

    # per_question.jsonl: one line per question, first-hit ranks consistent with the accuracies
    rows = read_per_question(out)
    assert len(rows) == 5
    for name in ("bm25", "dense", "hybrid"):
        ranks = [r["first_hit_rank"][name] for r in rows]
        assert all(rank is None or 1 <= rank <= 8 for rank in ranks)
        assert all(r["answerable"] for r, rank in zip(rows, ranks, strict=True) if rank is not None)
        for k in KS:
            assert saved["retrieval"][name][k] == pytest.approx(100 * sum(r is not None and r <= int(k) for r in ranks) / 5)

    # report.md: tables, bootstrap, settings and the command; topk.png is a PNG
    md = (out / "report.md").read_text()
    assert "| retriever | top-1 | top-5 | top-20 | top-100 | queries/s |" in md
    assert "| k | all (5) | answerable (4) |" in md and "### hybrid" in md
    assert "| comparison | k | difference | 95% CI | excludes 0 |" in md and "| dense − bm25 | 1 |" in md
    assert "1 have none" in md and "## Settings" in md
    assert f"python -m eval.run --qa {qa_file}" in md
    assert (out / "topk.png").read_bytes()[:8] == PNG_MAGIC
    assert {s for s, _, _ in stages} >= {"answers in corpus", "bm25: search", "dense: match answers", "hybrid: search"}
    assert ("bm25: search", 5, 5) in stages

    # a rerun loads the cached dense index instead of re-encoding, and replaces the report
    assert encodes == [8]
    report2, _ = run_evaluation(
        config(tmp_path, corpus_file, qa_file, retrievers=["dense"], model=str(tiny_model_dir), baseline=False)
    )
    assert encodes == [8]
    assert report2["retrieval"]["dense"] == report["retrieval"]["dense"]
    assert list(json.loads((out / "report.json").read_text())["retrieval"]) == ["dense"]


def test_limit_takes_the_first_questions(tmp_path, corpus_file, qa_file):
    report, out = run_evaluation(config(tmp_path, corpus_file, qa_file, limit=2, k=[1, 3]))
    assert report["n_questions"] == 2 and report["settings"]["n_questions_in_file"] == 5
    assert list(report["retrieval"]["bm25"]) == ["1", "3"]
    assert [r["question"] for r in read_per_question(out)] == [QA[0][0], QA[1][0]]
    assert "--limit 2" in report["settings"]["command"]


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


def test_failed_or_cancelled_run_leaves_no_report(tmp_path, corpus_file, qa_file, monkeypatch):
    out = tmp_path / "report"

    def broken(folder, report, per_question):
        (folder / "report.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(harness, "write_report", broken)
    with pytest.raises(Exception, match="disk full"):
        run_evaluation(config(tmp_path, corpus_file, qa_file))
    assert not out.exists() and list(tmp_path.glob(".report*")) == []
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(EvalCancelled):
        run_evaluation(config(tmp_path, corpus_file, qa_file), cancel=cancel)
    assert not out.exists()


def test_out_must_be_new_empty_or_a_previous_report(tmp_path, corpus_file, qa_file):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    with pytest.raises(ConfigError, match="not an evaluation report folder"):
        run_evaluation(config(tmp_path, corpus_file, qa_file, out=str(precious)))
    assert (precious / "thesis.tex").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    run_evaluation(config(tmp_path, corpus_file, qa_file, out=str(empty)))
    assert (empty / "report.json").exists()


def test_default_out_is_a_timestamped_folder(tmp_path, corpus_file, qa_file, monkeypatch):
    monkeypatch.setattr(harness, "REPORTS_DIR", tmp_path / "reports")
    _, first = run_evaluation(config(tmp_path, corpus_file, qa_file, out=None))
    _, second = run_evaluation(config(tmp_path, corpus_file, qa_file, out=None))
    assert first.parent == second.parent == tmp_path / "reports" and first != second
    assert (first / "report.json").exists() and (second / "report.json").exists()


def test_cli_writes_the_report_and_the_exact_command(tmp_path, corpus_file, qa_file, capsys):
    out = tmp_path / "cli"
    argv = [
        "--qa",
        str(qa_file),
        "--corpus",
        str(corpus_file),
        "--retrievers",
        "bm25",
        "--k",
        "1,5",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "5 questions, 4 answerable" in printed and "top-1" in printed
    assert json.loads((out / "report.json").read_text())["settings"]["command"] == "python -m eval.run " + " ".join(argv)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--retrievers", "bm25,splade"], "unknown retriever 'splade'"),
        (["--k", "1,x"], "--k must be a comma-separated list"),
        (["--k", "0,5"], "--k must be a comma-separated list"),
        (["--limit", "0"], "--limit must be a positive integer"),
        (["--generate", "beam"], "unknown --generate mode 'beam'"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, corpus_file, qa_file, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, ["--qa", str(qa_file), "--corpus", str(corpus_file), "--out", str(tmp_path / "r"), "--quiet", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "content, message", [("", "file is empty"), ("\n\n", "no questions found"), ('{"question": "q"}\n', "missing field 'answer'")]
)
def test_bad_qa_file_exits_2_with_one_line(tmp_path, corpus_file, capsys, content, message):
    qa = tmp_path / "bad.jsonl"
    qa.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, ["--qa", str(qa), "--corpus", str(corpus_file), "--retrievers", "bm25", "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_module_entry_point_exits_2(tmp_path, qa_file):
    done = subprocess.run(
        [sys.executable, "-m", "eval.run", "--qa", str(qa_file), "--k", "1,x"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: --k must be")


def test_parse_ks():
    assert parse_ks("20, 1,5,5") == [1, 5, 20]
    assert parse_ks([100, 1]) == [1, 100]
    for bad in ("", "1,,5", "-1", "1.5", [True]):
        with pytest.raises(ConfigError):
            parse_ks(bad)


def test_plot_topk_writes_a_png(tmp_path):
    plot_topk({"bm25": {1: 10.0, 5: 30.0, 100: 60.0}, "dense": {1: 20.0, 5: 40.0, 100: 70.0}}, tmp_path / "k.png", "t")
    assert (tmp_path / "k.png").read_bytes()[:8] == PNG_MAGIC


def test_a_trained_model_is_reported_next_to_the_untrained_default(tmp_path, corpus_file, qa_file, tiny_model_dir):
    report, out = run_evaluation(config(tmp_path, corpus_file, qa_file, retrievers=["bm25", "dense"], model=str(tiny_model_dir)))
    assert list(report["retrieval"]) == ["bm25", "dense_untrained", "dense"]
    untrained, _ = run_evaluation(config(tmp_path / "u", corpus_file, qa_file, retrievers=["dense"]))
    assert report["retrieval"]["dense_untrained"] == untrained["retrieval"]["dense"]
    assert {(c["a"], c["b"]) for c in report["comparisons"]["retrieval"]} >= {("dense", "dense_untrained")}
    assert "| dense_untrained |" in (out / "report.md").read_text()
