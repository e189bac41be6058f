import json
import subprocess
import sys

import pytest

from dpr_rag import search as search_cli
from dpr_rag.data.passages import save_jsonl
from dpr_rag.errors import ConfigError
from dpr_rag.paths import cache_dir
from dpr_rag.retrieval.encoder import DualEncoder, default_encoder_path
from dpr_rag.retrieval.searcher import Searcher


@pytest.fixture
def corpus_file(tmp_path, toy_passages):
    path = tmp_path / "toy.jsonl"
    save_jsonl(toy_passages, path)
    return path


def count_encodes(monkeypatch):
    calls = []
    original = DualEncoder.encode_passages

    def counting(self, passages, **kw):
        calls.append(len(passages))
        return original(self, passages, **kw)

    monkeypatch.setattr(DualEncoder, "encode_passages", counting)
    return calls


def test_dense_index_is_cached_and_keyed_by_corpus(corpus_file, tiny_model_dir, toy_passages, monkeypatch, tmp_path):
    calls = count_encodes(monkeypatch)
    first = Searcher.open(corpus_file, model=str(tiny_model_dir), show_progress=False).search(["eiffel tower"], 3)
    second = Searcher.open(corpus_file, model=str(tiny_model_dir), show_progress=False).search(["eiffel tower"], 3)
    assert calls == [len(toy_passages)]  # the second run loaded the cache instead of re-encoding
    assert first == second
    assert len(list((cache_dir() / "dense").iterdir())) == 1
    changed = tmp_path / "changed.jsonl"
    save_jsonl(toy_passages[:-1], changed)
    Searcher.open(changed, model=str(tiny_model_dir), show_progress=False).search(["eiffel tower"], 3)
    assert calls == [len(toy_passages), len(toy_passages) - 1]
    assert len(list((cache_dir() / "dense").iterdir())) == 2


def test_other_index_kinds_reuse_the_cached_vectors_instead_of_re_encoding(
    corpus_file, tiny_model_dir, toy_passages, monkeypatch
):
    calls = count_encodes(monkeypatch)
    flat = Searcher.open(corpus_file, model=str(tiny_model_dir), show_progress=False).search(["eiffel tower"], 3)
    for kind in ("hnsw", "fp16"):
        other = Searcher.open(corpus_file, model=str(tiny_model_dir), index_kind=kind, show_progress=False)
        hits = other.search(["eiffel tower"], 3)[0]
        # 8 vectors: HNSW is exact here; fp16 rounds the scores of a random tiny model's near-ties (~1e-3)
        assert [h.score for h in hits] == pytest.approx([h.score for h in flat[0]], rel=2e-3)
    assert calls == [len(toy_passages)]  # encoded once, for the flat index
    assert len(list((cache_dir() / "dense").iterdir())) == 3


def test_bm25_only_never_loads_an_encoder(corpus_file, monkeypatch):
    monkeypatch.setattr(DualEncoder, "from_pretrained", lambda *a, **k: pytest.fail("encoder loaded"))
    hits = Searcher.open(corpus_file).search(["Guido van Rossum"], 1, retriever="bm25")[0]
    assert hits[0].passage.title == "Python (programming language)"


def test_failed_build_leaves_no_cache_entry(corpus_file, tiny_model_dir, monkeypatch):
    def crash(self, passages, **kw):
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-encoding

    monkeypatch.setattr(DualEncoder, "encode_passages", crash)
    with pytest.raises(KeyboardInterrupt):
        Searcher.open(corpus_file, model=str(tiny_model_dir)).search(["x"], 1)
    assert not (cache_dir() / "dense").exists() or not any((cache_dir() / "dense").iterdir())


def test_unknown_retriever(corpus_file):
    with pytest.raises(ConfigError, match="unknown retriever 'splade'"):
        Searcher.open(corpus_file).retriever("splade")


def run_cli(module, *args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def test_index_folder_roundtrip_through_the_cli(corpus_file, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "idx"
    built = run_cli("dpr_rag.index", "--corpus", str(corpus_file), "--model", str(tiny_model_dir), "--out", str(out))
    assert built.returncode == 0, built.stderr
    assert "saved index folder" in built.stdout
    assert sorted(p.name for p in out.iterdir()) == ["bm25", "dense", "manifest.json", "passages.jsonl"]
    args = ["who painted the mona lisa", "--k", "3", "--json"]
    assert search_cli.main([*args, "--index", str(out)]) == 0
    from_folder = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert search_cli.main([*args, "--corpus", str(corpus_file), "--model", str(tiny_model_dir)]) == 0
    from_corpus = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["retriever"] for r in from_folder] == ["bm25", "dense", "hybrid"]
    for a, b in zip(from_folder, from_corpus, strict=True):
        assert [h["id"] for h in a["hits"]] == [h["id"] for h in b["hits"]]
        assert [h["score"] for h in a["hits"]] == pytest.approx([h["score"] for h in b["hits"]], rel=1e-5)
    assert from_folder[0]["hits"][0]["title"] == "Mona Lisa"  # BM25 on the toy corpus
    # The folder remembers which passage encoder built it: another model's queries would not match its vectors.
    with pytest.raises(ConfigError, match="built with another passage encoder"):
        Searcher.open(index=out, model=default_encoder_path()).retriever("dense")


@pytest.mark.parametrize(
    "args,message",
    [
        (["  "], "error: empty question"),
        (["q", "--retriever", "splade"], "error: unknown retriever 'splade'"),
        (["q", "--k", "0", "--retriever", "bm25"], "error: k must be an integer"),
        (["q", "--index", "/nonexistent"], "not an index folder"),
    ],
)
def test_search_cli_errors_are_one_clear_line(args, message, corpus_file):
    result = run_cli("dpr_rag.search", *args, "--corpus", str(corpus_file))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_bad_corpus_line_is_reported_by_the_cli(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\ttext\ttitle\n1\tfine\tT\n2\tbroken\n")
    result = run_cli("dpr_rag.search", "q", "--corpus", str(bad), "--retriever", "bm25")
    assert result.returncode == 2 and f"{bad}:3: expected 3 tab-separated fields" in result.stderr


@pytest.mark.slow
def test_default_corpus_end_to_end():
    """The README's first command: all three retrievers find the Mona Lisa passage (encodes 10k passages)."""
    # Encoding takes ~3 minutes on 2 free cores; the limit only guards against a hang (a busy CI machine is slower).
    result = run_cli("dpr_rag.search", "who painted the mona lisa", "--k", "3", "--json", timeout=1800)
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        assert "Mona Lisa" in [h["title"] for h in json.loads(line)["hits"]]
