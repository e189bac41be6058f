"""Relevance-judged evaluation: BEIR folders and TREC qrels in, MRR@10 / nDCG@10 / Recall@k (ir_measures) and TREC
run files out, checked against values computed by hand from the run files themselves."""

from __future__ import annotations

import json
import math

import pytest

from dpr_rag.data.beir import beir_folder, load_qrels, load_queries
from dpr_rag.data.passages import load_corpus
from dpr_rag.errors import ConfigError, DataFormatError
from eval import run as eval_cli
from eval.config import EvalConfig
from eval.harness import run_evaluation

QUERIES = {
    "q1": ("who painted the mona lisa", {"0": 1}),
    "q2": ("when was the eiffel tower completed", {"1": 2, "5": 1}),
    "q3": ("which planet is the largest", {"7": 1}),
    "q4": ("who created python", {"2": 1}),
}


@pytest.fixture
def beir_dir(tmp_path, toy_passages):
    root = tmp_path / "toy-beir"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": p.id, "title": p.title, "text": p.text}) + "\n" for p in toy_passages)
    )
    queries = [{"_id": qid, "text": text} for qid, (text, _) in QUERIES.items()] + [{"_id": "q5", "text": "no judgment"}]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    rows = [f"{qid}\t{pid}\t{grade}" for qid, (_, rel) in QUERIES.items() for pid, grade in rel.items()]
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
    return root


def test_beir_files_load(beir_dir, toy_passages):
    found = beir_folder(beir_dir)
    assert [p.id for p in load_corpus(found.corpus)] == [p.id for p in toy_passages]  # "_id" read as the id
    assert [q.id for q in load_queries(found.queries)] == ["q1", "q2", "q3", "q4", "q5"]
    assert load_qrels(found.qrels)["q2"] == {"1": 2, "5": 1}
    with pytest.raises(DataFormatError, match="not a BEIR folder"):
        beir_folder(beir_dir, split="dev")


def test_trec_qrels_and_bad_lines(tmp_path):
    trec = tmp_path / "qrels.txt"
    trec.write_text("q1 0 d1 1\nq1 0 d2 0\nq2 0 d9 3\n")
    assert load_qrels(trec) == {"q1": {"d1": 1, "d2": 0}, "q2": {"d9": 3}}
    bad = tmp_path / "bad.tsv"
    bad.write_text("query-id\tcorpus-id\tscore\nq1\td1\thigh\n")
    with pytest.raises(DataFormatError, match=r"bad.tsv:2: the score must be an integer"):
        load_qrels(bad)
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"_id": "a", "text": "x"}\n{"_id": "b"}\n')
    with pytest.raises(DataFormatError, match=r"q.jsonl:2: field 'text'"):
        load_queries(queries)


def _trec(path) -> dict[str, list[str]]:
    ranked: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        qid, _, pid, rank, _, _ = line.split()
        ranked.setdefault(qid, []).append(pid)
        assert int(rank) == len(ranked[qid])
    return ranked


def test_ir_measures_agree_with_the_run_files(beir_dir, tiny_model_dir, tmp_path):
    found = beir_folder(beir_dir)
    config = EvalConfig(
        qa=str(found.queries),
        qrels=str(found.qrels),
        corpus=str(found.corpus),
        model=str(tiny_model_dir),
        retrievers=["bm25", "dense"],
        k=[1, 5],
        out=str(tmp_path / "report"),
        show_progress=False,
    )
    report, out = run_evaluation(config)
    assert report["n_queries"] == 4 and report["n_queries_without_judgments"] == 1
    for name in ("bm25", "dense"):
        ranked = _trec(out / "runs" / f"{name}.trec")
        assert set(ranked) == set(QUERIES) and all(len(r) == 8 for r in ranked.values())  # depth max(k, 10), 8 passages
        rr, recall1, ndcg = [], [], []
        for qid, (_, rel) in QUERIES.items():
            first = next(i for i, pid in enumerate(ranked[qid], start=1) if rel.get(pid, 0) > 0)
            rr.append(1 / first)
            recall1.append(sum(1 for pid in ranked[qid][:1] if rel.get(pid, 0) > 0) / len(rel))
            dcg = sum(rel.get(pid, 0) / math.log2(i + 1) for i, pid in enumerate(ranked[qid][:10], start=1))
            ideal = sum(g / math.log2(i + 1) for i, g in enumerate(sorted(rel.values(), reverse=True), start=1))
            ndcg.append(dcg / ideal)
        values = report["ir"][name]
        assert values["RR@10"] == pytest.approx(100 * sum(rr) / 4, abs=0.01)
        assert values["R@1"] == pytest.approx(100 * sum(recall1) / 4, abs=0.01)
        assert values["R@5"] >= values["R@1"]
        assert values["nDCG@10"] == pytest.approx(100 * sum(ndcg) / 4, abs=0.01)  # trec_eval's gain: the grade itself
    (comparison,) = [c for c in report["comparisons"]["ir"] if c["measure"] == "RR@10"]
    assert comparison["a"] == "dense" and comparison["b"] == "bm25"
    assert comparison["difference"] == pytest.approx(report["ir"]["dense"]["RR@10"] - report["ir"]["bm25"]["RR@10"], abs=0.02)
    assert "| bm25 |" in (out / "report.md").read_text()


def test_beir_cli_and_its_errors(beir_dir, tiny_model_dir, tmp_path, capsys):
    argv = [
        "--beir",
        str(beir_dir),
        "--model",
        str(tiny_model_dir),
        "--retrievers",
        "bm25",
        "--out",
        str(tmp_path / "r"),
        "--quiet",
    ]
    assert eval_cli.main(argv) == 0
    assert "RR@10" in capsys.readouterr().out and (tmp_path / "r" / "runs" / "bm25.trec").is_file()
    with pytest.raises(ConfigError, match="--beir names"):
        eval_cli.main([*argv, "--qa", "x.jsonl"])
    with pytest.raises(ConfigError, match="judges passages, not answers"):
        EvalConfig(qa="q.jsonl", qrels="q.tsv", generate=["token"])
