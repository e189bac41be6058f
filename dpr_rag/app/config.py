"""The app's settings, read once from the environment.

DPR_RAG_APP_CORPUS       corpus file (.tsv/.jsonl) to start on; default: the embedded Wikipedia summaries
DPR_RAG_APP_MODEL        dense encoder (HF id/folder or a dual encoder saved by training); default: all-MiniLM-L6-v2
                         with the shipped question adapter (dpr_rag/retrieval/shipped)
DPR_RAG_APP_GENERATOR    RAG generator (HF id/folder, or a LoRA adapter folder); default: the shipped reader
                         (Gemma 3 270M + trained LoRA, dpr_rag/rag/reader)
DPR_RAG_APP_BASE_GENERATOR  1: the bare Gemma 3 270M instead of the shipped reader
DPR_RAG_APP_EXTRACTIVE_READER  the QA tab's extractive reader (python -m dpr_rag.train_reader); default: the shipped
                         one (dpr_rag/extractive/shipped); without either the tab offers no extractive mode
DPR_RAG_APP_RERANKER     reranker of the "+ rerank" retrievers (Search and QA tabs): a cross-encoder folder or hub id
                         (python -m dpr_rag.train_reranker), or "upr" (zero-shot, the generator's question likelihood);
                         default: none (the tabs then offer no reranking)
DPR_RAG_APP_UPLOAD_TTL   seconds Gradio keeps its own copy of an upload (default 86,400: a day; checked hourly)
DPR_RAG_APP_QA           questions used for the examples and as the "default" set of Train and Evaluate;
                         default: the embedded FanOutQA sub-questions
DPR_RAG_APP_DATA         the app's data folder (uploads, trained models, reports); default $DPR_RAG_CACHE/app
DPR_RAG_APP_MAX_UPLOAD_MB  upload size limit in MB (default 200)
DPR_RAG_APP_MAX_PASSAGES   most passages an uploaded corpus may have (default 50,000: ~13 min to encode on 2 CPU cores)
DPR_RAG_APP_MAX_QUESTIONS  most questions an uploaded question file may have (default 20,000)
DPR_RAG_APP_INDEX_TYPE   FAISS index type of the starting corpus: flat (default), fp16, hnsw or ivfpq
DPR_RAG_APP_PRECISION    passage encoding precision: auto (default: bf16 on CPUs with AMX/AVX512-BF16, else fp32),
                         fp32, bf16 or int8 (ONNX Runtime, quantised)
DPR_RAG_APP_SHOTS        few-shot demonstrations before each QA question by default (0-8, default 0; the QA tab
                         lets each user change it)
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT   where to serve (default 127.0.0.1:7860)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config_checks import check_bool, check_choice, check_float, check_int
from ..errors import ConfigError
from ..paths import cache_dir
from ..rag.demonstrations import MAX_SHOTS
from ..retrieval.encoder import PRECISIONS
from ..retrieval.faiss_index import KINDS

DEFAULT_MAX_UPLOAD_MB = 200.0
DEFAULT_MAX_PASSAGES = 50_000
DEFAULT_MAX_QUESTIONS = 20_000


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _flag(name: str) -> bool:
    value = (_env(name) or "0").lower()
    if value not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"{name}={value}: give 1 or 0")
    return value in ("1", "true", "yes")


def _path(name: str, local_only: bool) -> str | None:
    """An env var naming a file or folder, made absolute. Models may also be Hugging Face hub ids
    (`local_only=False`): a value that does not exist locally and does not look like a path is kept as it is."""
    value = _env(name)
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.exists():
        return str(path.resolve())
    if local_only or value.startswith((".", "/", "~")):
        raise ConfigError(f"{name}={value}: no such file or folder")
    return value


@dataclass(frozen=True)
class AppConfig:
    corpus: str | None = None
    model: str | None = None
    generator: str | None = None
    qa: str | None = None
    data_dir: Path = Path(".")
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_passages: int = DEFAULT_MAX_PASSAGES
    max_questions: int = DEFAULT_MAX_QUESTIONS
    index_kind: str = "flat"
    precision: str = "auto"
    server_name: str = "127.0.0.1"
    server_port: int = 7860
    shots: int = 0
    base_generator: bool = False
    reranker: str | None = None
    upload_ttl: int = 86_400
    extractive_reader: str | None = None

    def __post_init__(self) -> None:
        check_float("max_upload_mb", self.max_upload_mb, gt=0)
        check_int("max_passages", self.max_passages, 1)
        check_int("max_questions", self.max_questions, 1)
        check_choice("index_kind", self.index_kind, KINDS)
        check_choice("precision", self.precision, PRECISIONS)
        check_int("server_port", self.server_port, 0, 65535)
        check_int("shots", self.shots, 0, MAX_SHOTS)
        check_bool("base_generator", self.base_generator)
        check_int("upload_ttl", self.upload_ttl, 1)
        if self.base_generator and self.generator:
            raise ConfigError("DPR_RAG_APP_BASE_GENERATOR and DPR_RAG_APP_GENERATOR: give one of them")

    @classmethod
    def from_env(cls) -> AppConfig:
        try:
            max_mb = float(_env("DPR_RAG_APP_MAX_UPLOAD_MB") or DEFAULT_MAX_UPLOAD_MB)
            max_passages = int(_env("DPR_RAG_APP_MAX_PASSAGES") or DEFAULT_MAX_PASSAGES)
            max_questions = int(_env("DPR_RAG_APP_MAX_QUESTIONS") or DEFAULT_MAX_QUESTIONS)
            port = int(_env("GRADIO_SERVER_PORT") or 7860)
            shots = int(_env("DPR_RAG_APP_SHOTS") or 0)
            upload_ttl = int(_env("DPR_RAG_APP_UPLOAD_TTL") or 86_400)
        except ValueError as e:
            raise ConfigError(
                f"DPR_RAG_APP_MAX_UPLOAD_MB, DPR_RAG_APP_MAX_PASSAGES, DPR_RAG_APP_MAX_QUESTIONS, DPR_RAG_APP_SHOTS, "
                f"DPR_RAG_APP_UPLOAD_TTL and GRADIO_SERVER_PORT must be numbers: {e}"
            ) from e
        if not 0 <= shots <= MAX_SHOTS:
            raise ConfigError(f"DPR_RAG_APP_SHOTS={shots}: give 0 to {MAX_SHOTS} demonstrations")
        if max_mb <= 0 or max_passages <= 0 or max_questions <= 0:
            raise ConfigError(
                "DPR_RAG_APP_MAX_UPLOAD_MB, DPR_RAG_APP_MAX_PASSAGES and DPR_RAG_APP_MAX_QUESTIONS must be positive"
            )
        kind = _env("DPR_RAG_APP_INDEX_TYPE") or "flat"
        if kind not in KINDS:
            raise ConfigError(f"DPR_RAG_APP_INDEX_TYPE={kind}: choose one of {', '.join(KINDS)}")
        precision = _env("DPR_RAG_APP_PRECISION") or "auto"
        if precision not in PRECISIONS:
            raise ConfigError(f"DPR_RAG_APP_PRECISION={precision}: choose one of {', '.join(PRECISIONS)}")
        data = Path(_env("DPR_RAG_APP_DATA") or cache_dir() / "app").expanduser().resolve()
        return cls(
            corpus=_path("DPR_RAG_APP_CORPUS", True),
            model=_path("DPR_RAG_APP_MODEL", False),
            generator=_path("DPR_RAG_APP_GENERATOR", False),
            qa=_path("DPR_RAG_APP_QA", True),
            data_dir=data,
            max_upload_mb=max_mb,
            max_passages=max_passages,
            max_questions=max_questions,
            index_kind=kind,
            precision=precision,
            server_name=_env("GRADIO_SERVER_NAME") or "127.0.0.1",
            server_port=port,
            shots=shots,
            base_generator=_flag("DPR_RAG_APP_BASE_GENERATOR"),
            reranker=_path("DPR_RAG_APP_RERANKER", False),
            upload_ttl=upload_ttl,
            extractive_reader=_path("DPR_RAG_APP_EXTRACTIVE_READER", False),
        )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    # The data folder's parts; every file the app writes lives under one of these.
    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    def make_dirs(self) -> None:
        for d in (self.uploads_dir, self.runs_dir, self.reports_dir):
            d.mkdir(parents=True, exist_ok=True)
