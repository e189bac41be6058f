"""ONNX Runtime as the CPU engine of an encoder tower: exported once, optionally quantised to dynamic int8.

ONNX Runtime answers a single query ~4x faster than eager torch on two cores (no per-layer Python overhead), with
embeddings equal to ~1e-7; for batches of long passages it is no faster than torch on an AVX2 CPU (BENCHMARKS.md,
`bench/encode_backends.py`). So by default queries run in ONNX Runtime where it is installed and passages in torch.
Dynamic int8 quantisation (`quantize_dynamic`: int8 weights per output channel, activations quantised per batch,
7-bit range so that CPUs without VNNI do not saturate) changes the embeddings (cosine >= 0.99 to fp32 on MiniLM), so
it is used only when asked (`precision="int8"`).

A tower is exported with `torch.onnx.export` (its inputs: input_ids, attention_mask and, for BERT-like models,
token_type_ids; output: the pooled, possibly normalised embedding) into `$DPR_RAG_CACHE/onnx/<weights hash>-<fp32|int8>/`,
written atomically, so each set of weights is exported once (~10 s for MiniLM on two cores) and loaded afterwards.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import DprRagError
from ..paths import cache_dir
from ..storage import atomic_dir

ONNX_PRECISIONS = ("fp32", "int8")
OPSET = 17
_EXPORTING = threading.Lock()  # torch.onnx.export keeps global state: one export at a time per process


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def weights_fingerprint(module: nn.Module, header: str) -> str:
    """Hash of `header` (the settings that shape the output: pooling, normalisation, lengths) and a module's weights."""
    h = hashlib.sha256(header.encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class _ExportedTower(nn.Module):
    """The tower with positional inputs in a fixed order (ONNX graphs name their inputs by position)."""

    def __init__(self, tower: nn.Module, with_token_types: bool):
        super().__init__()
        self.tower, self.with_token_types = tower, with_token_types

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        extra = {"token_type_ids": token_type_ids} if self.with_token_types else {}
        return self.tower(input_ids=input_ids, attention_mask=attention_mask, **extra)


def export_onnx(tower: nn.Module, sample: dict[str, torch.Tensor], folder: Path) -> Path:
    """Write `tower` as `folder/model.onnx` (fp32) and `folder/model-int8.onnx`, atomically; returns the folder."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in sample else [])
    model = _ExportedTower(copy.deepcopy(tower), "token_type_ids" in sample).eval()  # a copy: export changes modes
    with atomic_dir(folder) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings about Python control flow in transformers' masks
        torch.onnx.export(
            model,
            tuple(sample[n] for n in names),
            str(tmp / "model.onnx"),
            input_names=names,
            output_names=["embedding"],
            dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
        quiet = logging.getLogger()  # quantize_dynamic logs advice about a pre-processing step on the root logger
        level, quiet.level = quiet.level, logging.ERROR
        try:
            quantize_dynamic(
                str(tmp / "model.onnx"),
                str(tmp / "model-int8.onnx"),
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=True,  # 7-bit weights: without VNNI, u8 x s8 products overflow (min cosine 0.92 -> 0.99)
            )
        finally:
            quiet.setLevel(level)
    return folder


class OnnxTower:
    """Runs an exported tower with ONNX Runtime on the CPU; called like the torch tower, returns a float32 tensor."""

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for damaged files
            reason = str(e).splitlines()[0][:200]
            raise DprRagError(f"{path}: not a loadable ONNX model ({reason}); delete its folder to export again") from e
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, **batch: torch.Tensor) -> torch.Tensor:
        feed = {name: batch[name].cpu().numpy().astype(np.int64) for name in self.inputs}
        return torch.from_numpy(self.session.run(None, feed)[0])


def onnx_tower(tower: nn.Module, fingerprint: str, sample: dict[str, torch.Tensor], precision: str) -> OnnxTower:
    """The ONNX Runtime session of `tower` (whose weights hash to `fingerprint`), exported into the cache if needed."""
    if precision not in ONNX_PRECISIONS:
        raise DprRagError(f"ONNX Runtime runs fp32 or int8 towers, not {precision!r}")
    if not onnxruntime_available():
        raise DprRagError("the ONNX Runtime backend (and precision int8) needs the package onnxruntime: pip install onnxruntime")
    folder = cache_dir() / "onnx" / fingerprint
    name = "model.onnx" if precision == "fp32" else "model-int8.onnx"
    with _EXPORTING:  # concurrent searches of a fresh encoder wait for the one export instead of racing
        if not (folder / name).is_file():
            export_onnx(tower, sample, folder)
    return OnnxTower(folder / name, threads=int(os.environ.get("DPR_RAG_ONNX_THREADS", 0)) or None)
