"""ONNX Runtime as the encoders' CPU engine: the same embeddings as torch, exported once, never stale."""

import numpy as np
import pytest
import torch

from dpr_rag.errors import ConfigError, DprRagError
from dpr_rag.paths import cache_dir
from dpr_rag.retrieval import encoder as encoder_module
from dpr_rag.retrieval import onnx_backend
from dpr_rag.retrieval.encoder import DualEncoder, resolve_precision
from dpr_rag.retrieval.onnx_backend import OnnxTower
from dpr_rag.retrieval.searcher import dense_index

pytest.importorskip("onnxruntime")
QUESTIONS = ["who painted the mona lisa", "tallest mountain on earth", "python"]


def exported() -> list[str]:
    folder = cache_dir() / "onnx"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_onnx_runtime_gives_torch_embeddings_and_exports_once(tiny_model_dir, toy_passages, monkeypatch):
    encoder = DualEncoder.from_pretrained(str(tiny_model_dir))
    ref_p = encoder.encode_passages(toy_passages, show_progress=False, precision="fp32")
    ref_q = encoder.encode_queries(QUESTIONS)
    monkeypatch.setenv("DPR_RAG_ENCODER_BACKEND", "onnx")
    np.testing.assert_allclose(encoder.encode_passages(toy_passages, show_progress=False, precision="fp32"), ref_p, atol=1e-5)
    np.testing.assert_allclose(encoder.encode_queries(QUESTIONS), ref_q, atol=1e-5)
    assert len(exported()) == 1  # one shared tower: one export, for queries and passages
    assert sorted(p.name for p in (cache_dir() / "onnx" / exported()[0]).iterdir()) == ["model-int8.onnx", "model.onnx"]

    monkeypatch.setattr(onnx_backend, "export_onnx", lambda *a: pytest.fail("exported again"))
    again = DualEncoder.from_pretrained(str(tiny_model_dir))  # a new process would do the same: load the export
    np.testing.assert_allclose(again.encode_queries(QUESTIONS), ref_q, atol=1e-5)


def test_auto_runs_queries_in_onnx_runtime_and_passages_in_torch(tiny_model_dir, toy_passages, monkeypatch):
    monkeypatch.setenv("DPR_RAG_ENCODER_BACKEND", "auto")
    encoder = DualEncoder.from_pretrained(str(tiny_model_dir))
    encoder.encode_passages(toy_passages, show_progress=False, precision="fp32")
    assert exported() == []  # passage batches: torch (ONNX Runtime is no faster there)
    encoder.encode_queries(QUESTIONS)
    assert len(exported()) == 1 and any(isinstance(run, OnnxTower) for _, run in encoder._onnx.values())


def test_a_tower_changed_since_loading_is_never_served_by_a_stale_export(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("DPR_RAG_ENCODER_BACKEND", "auto")
    encoder = DualEncoder.from_pretrained(str(tiny_model_dir))
    before = encoder.encode_queries(QUESTIONS)
    with torch.no_grad():
        for p in encoder.query_encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))  # what an optimizer step does: in place
    monkeypatch.setenv("DPR_RAG_ENCODER_BACKEND", "torch")
    changed = encoder.encode_queries(QUESTIONS)
    assert np.abs(changed - before).max() > 1e-3
    monkeypatch.setenv("DPR_RAG_ENCODER_BACKEND", "auto")
    np.testing.assert_allclose(encoder.encode_queries(QUESTIONS), changed, atol=1e-5)  # auto: torch while trained
    monkeypatch.setenv("DPR_RAG_ENCODER_BACKEND", "onnx")
    np.testing.assert_allclose(encoder.encode_queries(QUESTIONS), changed, atol=1e-5)  # forced: a new export
    assert len(exported()) == 2


def test_int8_is_close_to_fp32_and_has_its_own_cache_key(tiny_model_dir, toy_passages, monkeypatch):
    encoder = DualEncoder.from_pretrained(str(tiny_model_dir))
    fp32 = encoder.encode_passages(toy_passages, show_progress=False, precision="fp32")
    int8 = encoder.encode_passages(toy_passages, show_progress=False, precision="int8")  # ONNX Runtime whatever the backend
    cos = (fp32 * int8).sum(1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(int8, axis=1))
    assert cos.min() > 0.95 and np.abs(fp32 - int8).max() > 1e-6  # quantised: close, not equal
    dense_index(toy_passages, encoder, show_progress=False, precision="int8")
    dense_index(toy_passages, encoder, show_progress=False, precision="fp32")
    names = sorted(p.name for p in (cache_dir() / "dense").iterdir())
    assert [n.rsplit("-", 1)[-1] for n in names] == ["flat", "int8"]


def test_settings_and_damaged_exports_are_clear_errors(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("DPR_RAG_ENCODER_BACKEND", "gpu")
    with pytest.raises(ConfigError, match="DPR_RAG_ENCODER_BACKEND=gpu"):
        DualEncoder.from_pretrained(str(tiny_model_dir)).encode_queries(QUESTIONS)
    monkeypatch.setenv("DPR_RAG_ENCODER_BACKEND", "onnx")
    DualEncoder.from_pretrained(str(tiny_model_dir)).encode_queries(QUESTIONS)
    (cache_dir() / "onnx" / exported()[0] / "model.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(DprRagError, match="model.onnx: not a loadable ONNX model"):
        DualEncoder.from_pretrained(str(tiny_model_dir)).encode_queries(QUESTIONS)


def test_auto_precision_is_bf16_only_where_the_cpu_has_bf16_instructions(monkeypatch):
    monkeypatch.delenv("DPR_RAG_AUTO_PRECISION")  # conftest fixes it; here the CPU decides
    for fast, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(encoder_module, "cpu_has_fast_bf16", lambda fast=fast: fast)
        assert resolve_precision("auto") == expected
    for fixed in ("fp32", "bf16"):  # DPR_RAG_AUTO_PRECISION overrides the CPU either way
        monkeypatch.setenv("DPR_RAG_AUTO_PRECISION", fixed)
        assert resolve_precision("auto") == fixed
    monkeypatch.setenv("DPR_RAG_AUTO_PRECISION", "int8")
    with pytest.raises(ConfigError, match="DPR_RAG_AUTO_PRECISION must be fp32 or bf16, got 'int8'"):
        resolve_precision("auto")
    assert resolve_precision("int8") == "int8"
    with pytest.raises(ConfigError, match="unknown precision"):
        resolve_precision("fp8")
