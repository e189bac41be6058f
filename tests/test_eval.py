"""The evaluation harness end to end on a tiny corpus: every QA format, the report schema, the outputs,
caching, atomic output, and bad inputs exiting 2 with one line (answer quality: tests/test_eval_generation.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from eval_helpers import KS, PNG_MAGIC, QA, config, read_per_question, write_qa

from dpr_rag.cli_common import run_cli
from dpr_rag.errors import ConfigError
from dpr_rag.plots import plot_topk
from dpr_rag.retrieval.encoder import DualEncoder
from eval import harness
from eval.config import parse_ks
from eval.harness import run_evaluation
from eval.report import FILES
from eval.run import main
from eval.stages import EvalCancelled


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
