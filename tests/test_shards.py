"""Sharded encoding: N shards merged into one index give the same search results as encoding in one go."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dpr_rag import index as index_cli
from dpr_rag.data.passages import Passage, save_jsonl
from dpr_rag.errors import DataFormatError
from dpr_rag.retrieval.encoder import DualEncoder
from dpr_rag.retrieval.searcher import Searcher
from dpr_rag.retrieval.shards import encode_shard, merge_shards, shard_range

QUESTIONS = ["who painted the mona lisa", "tallest mountain", "python language", "river in south america", "planet 7"]


@pytest.fixture
def corpus(tmp_path, toy_passages):
    # 8 facts + 29 numbered variants: 37 passages, which no shard count below divides evenly.
    extra = [Passage(f"x{i}", f"Planet {i}", f"Planet {i} is a made-up world number {i} with {i % 5} moons.") for i in range(29)]
    path = tmp_path / "corpus.jsonl"
    save_jsonl(toy_passages + extra, path)
    return path


def build(argv: list[str]) -> None:
    assert index_cli.main(argv) == 0


def search(folder, model, k=5):
    results = Searcher.open(index=folder, model=model, show_progress=False).search(QUESTIONS, k, retriever="dense")
    return [[(h.passage.id, h.score) for h in hits] for hits in results]


def test_shard_ranges_tile_the_corpus():
    for n, shards in [(37, 1), (37, 2), (37, 5), (3, 4), (0, 2)]:
        ranges = [shard_range(n, i, shards) for i in range(shards)]
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))


def test_two_shards_merge_to_the_same_results_as_one_index(corpus, tiny_model_dir, tmp_path):
    model = str(tiny_model_dir)
    common = ["--corpus", str(corpus), "--model", model, "--no-cache", "--precision", "fp32"]  # the same on any CPU
    build(common + ["--out", str(tmp_path / "whole")])
    for shards in (1, 2):
        folder = tmp_path / f"emb{shards}"
        for i in range(shards):
            build(common + ["--num-shards", str(shards), "--shard", str(i), "--shards", str(folder)])
        build(common + ["--merge", "--shards", str(folder), "--out", str(tmp_path / f"merged{shards}")])

    one, two = search(tmp_path / "merged1", model), search(tmp_path / "merged2", model)
    assert one == two  # the same float16 rows however the corpus is split
    # Against the float32 index built in one go: the same ranking up to float16 rounding (a random tiny model
    # scores near-ties, so compare each hit's score with the exact score of that passage, and the score lists).
    whole = search(tmp_path / "whole", model, k=37)
    for merged_hits, exact_hits in zip(two, whole, strict=True):
        exact = dict(exact_hits)
        tol = 2e-3 * max(abs(s) for _, s in exact_hits)
        for pid, score in merged_hits:
            assert abs(exact[pid] - score) <= tol
        np.testing.assert_allclose([s for _, s in merged_hits], [s for _, s in exact_hits[:5]], atol=tol, rtol=0)
    manifest = json.loads((tmp_path / "merged2" / "manifest.json").read_text())
    assert manifest["passage_encoder_fingerprint"] == DualEncoder.from_pretrained(model).passage_fingerprint()
    assert np.load(tmp_path / "emb2" / "shard-00001-of-00002.npy", mmap_mode="r").dtype == np.float16


def test_merge_names_missing_shards_and_other_corpora(corpus, tiny_model_dir, tmp_path, toy_passages, capsys):
    encoder = DualEncoder.from_pretrained(str(tiny_model_dir))
    passages = Searcher.open(corpus).passages
    encode_shard(encoder, passages, tmp_path / "emb", 0, 3, show_progress=False)
    encode_shard(encoder, passages, tmp_path / "emb", 2, 3, show_progress=False)
    with pytest.raises(DataFormatError, match=r"1 of 3 shards missing or unfinished: \[1\]"):
        merge_shards(tmp_path / "emb", passages)
    encode_shard(encoder, passages, tmp_path / "emb", 1, 3, show_progress=False)
    with pytest.raises(DataFormatError, match="another corpus"):
        merge_shards(tmp_path / "emb", passages[:-1])
    index, fingerprint = merge_shards(tmp_path / "emb", passages, show_progress=False)
    assert len(index) == len(passages) and fingerprint == encoder.passage_fingerprint()
    # The CLI reports the same problem as one line and exit status 2.
    with pytest.raises(SystemExit) as exit_info:
        index_cli.run_cli(
            index_cli.main,
            [
                "--corpus",
                str(corpus),
                "--model",
                str(tiny_model_dir),
                "--merge",
                "--shards",
                str(tmp_path / "nowhere"),
                "--out",
                str(tmp_path / "x"),
            ],
        )
    assert exit_info.value.code == 2 and "no shard-*-of-*.json" in capsys.readouterr().err


def test_a_finished_shard_is_not_encoded_again_and_a_killed_one_leaves_no_file(corpus, tiny_model_dir, tmp_path, monkeypatch):
    encoder = DualEncoder.from_pretrained(str(tiny_model_dir))
    passages = Searcher.open(corpus).passages
    encode_shard(encoder, passages, tmp_path / "emb", 0, 2, show_progress=False)
    before = sorted(p.name for p in (tmp_path / "emb").iterdir())

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(DualEncoder, "encode_passages", crash)
    encode_shard(encoder, passages, tmp_path / "emb", 0, 2, show_progress=False)  # done already: no encoding
    with pytest.raises(KeyboardInterrupt):
        encode_shard(encoder, passages, tmp_path / "emb", 1, 2, show_progress=False)
    assert sorted(p.name for p in (tmp_path / "emb").iterdir()) == before  # no half-written shard 1


def test_ivfpq_index_trains_on_a_sample_across_shards(tiny_model_dir, tmp_path):
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "river", "tower", "planet", "music"]
    passages = [Passage(str(i), f"T{i}", " ".join(rng.choice(words, 12))) for i in range(420)]
    encoder = DualEncoder.from_pretrained(str(tiny_model_dir))
    for i in range(2):
        encode_shard(encoder, passages, tmp_path / "emb", i, 2, show_progress=False)
    index, _ = merge_shards(tmp_path / "emb", passages, kind="ivfpq", show_progress=False)
    assert len(index) == 420 and index.kind == "ivfpq"
    exact, _ = merge_shards(tmp_path / "emb", passages, kind="flat", show_progress=False)
    q = encoder.encode_queries(["alpha river"])
    top_exact = set(exact.search(q, 20)[1][0])
    assert len(top_exact & set(index.search(q, 20)[1][0])) >= 5  # an approximation of the same ranking


def test_index_cli_passes_faiss_parameters_and_caches_by_them(tiny_model_dir, tmp_path):
    rng = np.random.default_rng(1)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "river", "tower", "planet", "music"]
    corpus = tmp_path / "c.jsonl"
    save_jsonl([Passage(str(i), f"T{i}", " ".join(rng.choice(words, 12))) for i in range(420)], corpus)
    common = ["--corpus", str(corpus), "--model", str(tiny_model_dir), "--index-type", "ivfpq"]
    build(common + ["--pq-m", "8", "--nprobe", "4", "--out", str(tmp_path / "a")])
    params = json.loads((tmp_path / "a" / "dense" / "index.json").read_text())["params"]
    assert (params["pq_m"], params["nprobe"]) == (8, 4)
    build(common)  # default parameters: a cache entry of their own
    from dpr_rag.paths import cache_dir

    names = sorted(p.name for p in (cache_dir() / "dense").iterdir())
    assert len(names) == 2 and names[1].endswith("-ivfpq-pq_m8")
    assert json.loads((cache_dir() / "dense" / names[1] / "index.json").read_text())["params"]["nprobe"] == 16  # not 4
    searcher = Searcher.open(index=tmp_path / "a", model=str(tiny_model_dir), index_params={"nprobe": 2})
    assert searcher.retriever("dense").index.params["nprobe"] == 2  # search-time parameters apply to a saved index


def test_torchrun_two_gloo_processes_build_the_index_one_process_builds(corpus, tiny_model_dir, tmp_path, monkeypatch):
    """`torchrun -m dpr_rag.index --shards DIR --out INDEX`: rank r encodes shard r, a barrier, rank 0 merges."""
    model = str(tiny_model_dir)
    common = ["--corpus", str(corpus), "--model", model, "--no-cache", "--precision", "fp32"]  # the same on any CPU
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DPR_RAG_CACHE": str(tmp_path / "cache")}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531"]
    two = subprocess.run(
        [*launch, "-m", "dpr_rag.index", *common, "--shards", str(tmp_path / "emb2"), "--out", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    written = sorted(p.name for p in (tmp_path / "emb2").glob("shard-*.json"))
    assert written == ["shard-00000-of-00002.json", "shard-00001-of-00002.json"]  # one shard per rank
    build(common + ["--shards", str(tmp_path / "emb1"), "--out", str(tmp_path / "one")])  # no torchrun: world size 1
    assert len(list((tmp_path / "emb1").glob("shard-*.json"))) == 1
    assert search(tmp_path / "two", model, k=37) == search(tmp_path / "one", model, k=37)
    for name in ("passages.jsonl", "bm25/bm25.json"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
    manifests = [json.loads((tmp_path / run / "manifest.json").read_text()) for run in ("one", "two")]
    assert manifests[0]["passage_encoder_fingerprint"] == manifests[1]["passage_encoder_fingerprint"] is not None

    # Re-running skips the finished shards (here one process takes both shards of the torchrun run): no encoding.
    monkeypatch.setattr(DualEncoder, "encode_passages", lambda *a, **k: pytest.fail("a finished shard was encoded again"))
    build(common + ["--num-shards", "2", "--shards", str(tmp_path / "emb2"), "--out", str(tmp_path / "again")])
    assert search(tmp_path / "again", model) == search(tmp_path / "two", model)


def test_shards_alone_names_what_is_missing(corpus, tiny_model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        index_cli.run_cli(index_cli.main, ["--corpus", str(corpus), "--shards", str(tmp_path / "emb")])
    assert exit_info.value.code == 2 and "--shards needs --shard I" in capsys.readouterr().err
