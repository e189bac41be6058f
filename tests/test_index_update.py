"""Index folders that change: --add encodes only the new passages, --delete removes passages from every retriever,
and a change killed midway leaves the previous index serving."""

import json

import numpy as np
import pytest

from dpr_rag import index as index_cli
from dpr_rag.data.passages import Passage, corpus_fingerprint, save_jsonl
from dpr_rag.errors import ConfigError
from dpr_rag.retrieval import index_update
from dpr_rag.retrieval.encoder import DualEncoder
from dpr_rag.retrieval.searcher import Searcher

NEW = [
    Passage("n1", "Zanzibar spice", "Zanzibar cloves are a spice grown on the islands of the Zanzibar archipelago."),
    Passage("n2", "Quokka", "The quokka is a small marsupial that lives on Rottnest Island near Perth."),
]


def ids(searcher: Searcher, retriever: str, question: str, k: int | None = None) -> list[str]:
    return [h.passage.id for h in searcher.search([question], k or len(searcher.passages), retriever=retriever)[0]]


@pytest.fixture
def folder(tmp_path, toy_corpus, tiny_model_dir):
    out = tmp_path / "index"
    assert index_cli.main(["--corpus", str(toy_corpus), "--model", str(tiny_model_dir), "--out", str(out), "--no-cache"]) == 0
    return out


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_added_passages_are_found_by_every_retriever_and_deleted_ones_never(tmp_path, toy_corpus, tiny_model_dir, kind):
    out = tmp_path / kind
    args = ["--corpus", str(toy_corpus), "--model", str(tiny_model_dir), "--out", str(out), "--no-cache", "--index-type", kind]
    assert index_cli.main(args) == 0
    before = Searcher.open(index=out, show_progress=False)
    n = len(before.passages)
    new_file = tmp_path / "new.jsonl"
    save_jsonl(NEW, new_file)
    encoded: list[int] = []
    encode = DualEncoder.encode_passages
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DualEncoder, "encode_passages", lambda self, p, **kw: encoded.append(len(p)) or encode(self, p, **kw))
        assert index_cli.main(["--index", str(out), "--add", str(new_file)]) == 0
    assert encoded == [2]  # the new passages only, not the corpus

    after = Searcher.open(index=out, show_progress=False)
    assert len(after.passages) == n + 2 and [p.id for p in after.passages[-2:]] == ["n1", "n2"]
    assert ids(after, "bm25", "zanzibar cloves", 1) == ["n1"] and ids(after, "bm25", "quokka rottnest", 1) == ["n2"]
    assert ids(after, "hybrid", "zanzibar cloves spice", 3)[0] == "n1"
    dense = after.dense()
    q = dense.encoder.encode_queries(["zanzibar cloves"])[0]
    vectors = dense.encoder.encode_passages(NEW, show_progress=False)
    hits = {h.passage.id: h.score for h in after.search(["zanzibar cloves"], n + 2, retriever="dense")[0]}
    np.testing.assert_allclose([hits["n1"], hits["n2"]], vectors @ q, rtol=1e-4, atol=1e-4)  # indexed with their vectors
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_passages"] == n + 2 and manifest["model"]
    assert manifest["corpus_fingerprint"] == corpus_fingerprint(after.passages) != corpus_fingerprint(before.passages)

    assert index_cli.main(["--index", str(out), "--delete", "n1,0"]) == 0
    final = Searcher.open(index=out, show_progress=False)
    assert len(final.passages) == n
    for retriever in ("bm25", "dense", "hybrid"):
        for question in ("zanzibar cloves", "who painted the mona lisa"):
            found = ids(final, retriever, question)
            assert "n1" not in found and "0" not in found
    assert ids(final, "bm25", "quokka rottnest", 1) == ["n2"]
    # The dense index after a delete scores like one built over the remaining passages.
    rebuilt_q = final.dense().encoder.encode_queries(["quokka"])[0]
    kept = final.dense().encoder.encode_passages(final.passages, show_progress=False)
    got = {h.passage.id: h.score for h in final.search(["quokka"], n, retriever="dense")[0]}
    np.testing.assert_allclose([got[p.id] for p in final.passages], kept @ rebuilt_q, rtol=1e-4, atol=1e-4)


def test_a_change_killed_midway_leaves_the_previous_index_intact(folder, tmp_path, monkeypatch):
    before = {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    new_file = tmp_path / "new.jsonl"
    save_jsonl(NEW, new_file)

    def killed(*a, **k):
        raise KeyboardInterrupt  # the process dies after encoding, while BM25 is being rebuilt

    monkeypatch.setattr(index_update, "_bm25_like", killed)
    with pytest.raises(KeyboardInterrupt):
        index_cli.main(["--index", str(folder), "--add", str(new_file)])
    with pytest.raises(KeyboardInterrupt):
        index_cli.main(["--index", str(folder), "--delete", "0"])
    assert {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert not [p.name for p in folder.parent.iterdir() if p.name.startswith(".index")]  # no half-written copy left
    searcher = Searcher.open(index=folder, show_progress=False)
    assert ids(searcher, "bm25", "who painted the mona lisa", 1) == ["0"]  # still serving the old corpus


def test_bad_changes_are_clear_errors(folder, tmp_path, capsys):
    clash = tmp_path / "clash.jsonl"
    save_jsonl([Passage("0", "Again", "A second passage with an existing id.")], clash)
    with pytest.raises(ConfigError, match="already in"):
        index_update.add_passages(folder, [Passage("0", "x", "y")])
    with pytest.raises(SystemExit) as exit_info:
        index_cli.run_cli(index_cli.main, ["--index", str(folder), "--add", str(clash)])
    assert exit_info.value.code == 2 and "ids already in" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="no passage with id nope"):
        index_update.delete_passages(folder, ["nope"])
    with pytest.raises(SystemExit) as exit_info:
        index_cli.run_cli(index_cli.main, ["--index", str(folder)])
    assert exit_info.value.code == 2 and "one of --add FILE or --delete" in capsys.readouterr().err
