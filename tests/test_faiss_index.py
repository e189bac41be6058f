import numpy as np
import pytest

from dpr_rag.errors import ConfigError, DataFormatError
from dpr_rag.retrieval.faiss_index import DenseIndex


def unit_vectors(n, d=16, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_is_exact_inner_product():
    x, q = unit_vectors(200), unit_vectors(5, seed=1)
    index = DenseIndex(16)
    index.add(x)
    scores, ids = index.search(q, 10)
    expected = np.argsort(-(q @ x.T), axis=1)[:, :10]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(q @ x.T, expected, axis=1), rtol=1e-5)


def test_incremental_add_equals_one_add():
    x, q = unit_vectors(300), unit_vectors(4, seed=2)
    once, twice = DenseIndex(16), DenseIndex(16)
    once.add(x)
    twice.add(x[:120])
    twice.add(x[120:])
    assert len(twice) == 300
    for a, b in zip(once.search(q, 7), twice.search(q, 7), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["flat", "fp16", "hnsw", "ivfpq"])
def test_save_load_gives_identical_results(tmp_path, kind):
    x, q = unit_vectors(3000), unit_vectors(8, seed=3)
    index = DenseIndex(16, kind, pq_m=8)
    index.add(x)
    before = index.search(q, 20)
    index.save(tmp_path / "idx")
    loaded = DenseIndex.load(tmp_path / "idx")
    assert (loaded.kind, len(loaded)) == (kind, 3000)
    after = loaded.search(q, 20)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0])
    assert loaded.reconstruct(np.array([0, 5])).shape == (2, 16)
    # Approximate indexes still find most of the exact top-20.
    exact = np.argsort(-(q @ x.T), axis=1)[:, :20]
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(after[1], exact, strict=True)])
    assert recall >= (1.0 if kind == "flat" else 0.98 if kind == "fp16" else 0.5)


def test_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown index type"):
        DenseIndex(16, "lsh")
    with pytest.raises(ConfigError, match="expected vectors of shape"):
        DenseIndex(16).add(np.zeros((3, 8), np.float32))
    with pytest.raises(ConfigError, match="IVF-PQ index needs at least"):
        DenseIndex(16, "ivfpq").add(unit_vectors(50))
    with pytest.raises(ConfigError, match="empty"):
        DenseIndex(16).search(unit_vectors(1), 3)
    with pytest.raises(DataFormatError, match="not a dense index folder"):
        DenseIndex.load(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "index.json").write_text('{"format_version": 1, "kind": "flat", "dim": 16, "ntotal": 1, "params": {}}')
    (tmp_path / "bad" / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match="not a readable FAISS index"):
        DenseIndex.load(tmp_path / "bad")


def test_failed_save_leaves_previous_index(tmp_path, monkeypatch):
    index = DenseIndex(16)
    index.add(unit_vectors(10))
    index.save(tmp_path / "idx")
    bigger = DenseIndex(16)
    bigger.add(unit_vectors(20))
    import faiss

    def crash(*a):
        raise RuntimeError("disk full")

    monkeypatch.setattr(faiss, "write_index", crash)
    with pytest.raises(RuntimeError):
        bigger.save(tmp_path / "idx")
    assert len(DenseIndex.load(tmp_path / "idx")) == 10
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no temporary folder left behind


def recall_at(index: DenseIndex, x: np.ndarray, q: np.ndarray, k: int = 20) -> float:
    exact = np.argsort(-(q @ x.T), axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(index.search(q, k)[1], exact, strict=True)]))


def test_search_parameters_trade_speed_for_recall_and_survive_save(tmp_path):
    x, q = unit_vectors(4000), unit_vectors(50, seed=4)
    ivf = DenseIndex(16, "ivfpq", pq_m=16, nlist=64)
    ivf.add(x)
    ivf.tune(nprobe=1)
    narrow = recall_at(ivf, x, q)
    ivf.tune(nprobe=64)  # every list: only the quantisation error is left
    assert recall_at(ivf, x, q) > narrow + 0.2
    ivf.save(tmp_path / "ivf")
    assert DenseIndex.load(tmp_path / "ivf").params["nprobe"] == 64
    hnsw = DenseIndex(16, "hnsw", hnsw_m=4)
    hnsw.add(x)
    hnsw.tune(ef_search=1)
    low = recall_at(hnsw, x, q)
    hnsw.tune(ef_search=256)
    assert recall_at(hnsw, x, q) > low
    with pytest.raises(ConfigError, match="nprobe must be None or an integer between 1 and"):
        ivf.tune(nprobe=0)


def test_ivfpq_exact_rescoring_from_disk_returns_exact_scores_and_survives_save(tmp_path):
    """ivfpq-exact: IVF-PQ proposes candidates, float16 vectors on disk score them exactly."""
    from dpr_rag.retrieval.faiss_index import DenseIndex

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 32)).astype(np.float32)
    vectors = centres[rng.integers(20, size=4000)] + 0.3 * rng.standard_normal((4000, 32)).astype(np.float32)
    queries = vectors[rng.integers(4000, size=30)] + 0.1 * rng.standard_normal((30, 32)).astype(np.float32)
    flat, approx = DenseIndex(32, "flat"), DenseIndex(32, "ivfpq-exact", nlist=16, pq_m=4, nprobe=16, candidates=4000)
    for index in (flat, approx):
        index.add(vectors[:2500])
        index.add(vectors[2500:])
    exact_scores, exact_ids = flat.search(queries, 10)
    scores, ids = approx.search(queries, 10)  # every vector a candidate: the exact ranking, float16 scores
    assert (ids == exact_ids).mean() > 0.97
    np.testing.assert_allclose(scores, exact_scores, atol=0.02 * np.abs(exact_scores).max())
    plain = DenseIndex(32, "ivfpq", nlist=16, pq_m=4, nprobe=16)
    plain.add(vectors)
    recall = lambda found: np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact_ids, strict=True)])  # noqa: E731
    approx.tune(candidates=100)
    assert recall(approx.search(queries, 10)[1]) > recall(plain.search(queries, 10)[1])  # rescoring beats PQ's own order
    approx.save(tmp_path / "idx")
    loaded = DenseIndex.load(tmp_path / "idx")
    assert loaded.kind == "ivfpq-exact" and isinstance(loaded.vectors.rows(np.array([3])), np.ndarray)
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], approx.search(queries, 10)[1])
    np.testing.assert_allclose(loaded.reconstruct(np.array([5, 1])), vectors[[5, 1]], atol=2e-3)
    assert (tmp_path / "idx" / "vectors.npy").stat().st_size > 4000 * 32 * 2  # float16 rows on disk


@pytest.mark.parametrize("kind", ["flat", "fp16", "hnsw", "ivfpq", "ivfpq-exact"])
def test_subset_keeps_the_other_vectors_in_order_without_retraining(kind):
    from dpr_rag.retrieval.faiss_index import DenseIndex

    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((3000, 16)).astype(np.float32)
    index = DenseIndex(16, kind, nlist=8, pq_m=4, candidates=3000) if "ivf" in kind else DenseIndex(16, kind)
    index.add(vectors)
    keep = np.array([i for i in range(3000) if i % 3], dtype=np.int64)
    part = index.subset(keep)
    assert len(part) == len(keep) and part.kind == kind
    np.testing.assert_allclose(part.reconstruct(np.arange(len(keep))), index.reconstruct(keep), atol=1e-5)
    if "ivf" in kind:  # the trained coarse quantiser is the same object's copy, not a retrained one
        import faiss

        old, new = (faiss.extract_index_ivf(i.index).quantizer for i in (index, part))
        np.testing.assert_array_equal(old.reconstruct_n(0, old.ntotal), new.reconstruct_n(0, new.ntotal))
