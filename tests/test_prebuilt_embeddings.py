"""Shipped passage embeddings: used only for the corpus and encoder they were made from, never stale."""

import importlib.util
import warnings

import numpy as np
import pytest

from dpr_rag.data.passages import Passage, corpus_fingerprint, load_corpus
from dpr_rag.errors import DataFormatError
from dpr_rag.retrieval import prebuilt
from dpr_rag.retrieval.encoder import DualEncoder
from dpr_rag.retrieval.searcher import Searcher, dense_index

QUESTIONS = ["who painted the mona lisa", "tallest mountain", "python language"]


def test_matching_embeddings_replace_encoding_and_others_are_ignored(tmp_path, tiny_model_dir, toy_passages, monkeypatch):
    encoder = DualEncoder.from_pretrained(str(tiny_model_dir))
    exact = encoder.encode_passages(toy_passages, show_progress=False)
    shipped = tmp_path / "embeddings.safetensors"
    prebuilt.save_embeddings(exact, corpus_fingerprint(toy_passages), encoder.passage_fingerprint(), shipped, source="test")
    monkeypatch.setattr(prebuilt, "SHIPPED_EMBEDDINGS", shipped)
    calls = []
    encode = DualEncoder.encode_passages
    monkeypatch.setattr(DualEncoder, "encode_passages", lambda self, p, **kw: calls.append(len(p)) or encode(self, p, **kw))

    index = dense_index(toy_passages, encoder, use_cache=False, show_progress=False)
    assert calls == []  # the shipped vectors, no encoding
    np.testing.assert_allclose(index.reconstruct(np.arange(len(toy_passages))), exact, atol=2e-3, rtol=2e-3)
    assert index.reconstruct(np.arange(len(toy_passages))).tolist() == exact.astype(np.float16).astype(np.float32).tolist()

    changed = [*toy_passages[:-1], Passage("new", "New", "A passage the shipped vectors never saw.")]
    dense_index(changed, encoder, use_cache=False, show_progress=False)
    assert calls == [len(changed)]  # another corpus: encoded
    other = DualEncoder.from_pretrained(str(tiny_model_dir), normalize=not encoder.settings.normalize)
    dense_index(toy_passages, other, use_cache=False, show_progress=False)
    assert calls == [len(changed), len(toy_passages)]  # another encoder setting: encoded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 on a CPU without bf16 instructions warns that it is slow
        dense_index(toy_passages, encoder, use_cache=False, show_progress=False, precision="bf16")
    assert len(calls) == 2  # bf16 asks for speed: the shipped fp32 vectors are faster still, and more exact
    if importlib.util.find_spec("onnxruntime"):
        dense_index(toy_passages, encoder, use_cache=False, show_progress=False, precision="int8")
        assert len(calls) == 3  # int8 vectors are other vectors: encoded


def test_a_damaged_file_is_an_error_naming_it(tmp_path, monkeypatch):
    bad = tmp_path / "embeddings.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(DataFormatError, match="embeddings.safetensors"):
        prebuilt.shipped_embeddings("a", "b", bad)
    assert prebuilt.shipped_embeddings("a", "b", tmp_path / "missing.safetensors") is None


def test_the_shipped_file_matches_the_default_corpus_and_encoder():
    """Guards the shipped vectors: a change of the default corpus or encoder must come with new embeddings."""
    passages, encoder = load_corpus(None), DualEncoder.from_pretrained()
    vectors = prebuilt.shipped_embeddings(corpus_fingerprint(passages), encoder.passage_fingerprint())
    assert vectors is not None, "re-run python bench/ship_default_embeddings.py"
    assert vectors.shape == (len(passages), encoder.dim)
    sample = [0, len(passages) // 2, len(passages) - 1]
    fresh = encoder.encode_passages([passages[i] for i in sample], show_progress=False)
    np.testing.assert_allclose(vectors[sample], fresh, atol=2e-3)  # the rows are these passages, in corpus order
    hits = Searcher(passages).search(["who painted the mona lisa"], k=5)[0]
    assert any("Leonardo" in h.passage.text for h in hits)
