"""The settings of an evaluation run (`EvalConfig`), validated when it is made, and the parsing of their CLI forms."""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from dpr_rag.config_checks import check_choice, check_int, check_text
from dpr_rag.errors import ConfigError
from dpr_rag.matching import MATCH_MODES
from dpr_rag.rag.demonstrations import MAX_SHOTS
from dpr_rag.retrieval.base import MAX_K
from dpr_rag.retrieval.hybrid import DEFAULT_WEIGHT, FUSIONS
from dpr_rag.retrieval.rerank import DEFAULT_CANDIDATES, MAX_CANDIDATES
from dpr_rag.retrieval.rerank import FUSIONS as RERANK_FUSIONS
from dpr_rag.retrieval.searcher import RERANKED, RETRIEVERS, check_retriever_names, reranked

from .bootstrap import DEFAULT_SAMPLES

DEFAULT_KS = (1, 5, 20, 100)
GENERATION_MODES = (
    "sequence",
    "token",
    "standard",
    "closed-book",
    "extractive",
)  # dpr_rag.rag.pipeline.MODES; checked against it when generating


@dataclass
class EvalConfig:
    qa: str | None = None  # QA file (.jsonl NQ-open, .json DPR, .csv/.tsv DPR); None = embedded fanoutqa sub-questions
    corpus: str | None = None  # passage file; None = embedded Wikipedia summaries
    qrels: str | None = None  # relevance judgments (BEIR TSV or TREC qrels): IR measures instead of answer matching
    model: str | None = None  # dense encoder; None = embedded all-MiniLM-L6-v2 (untrained for this task)
    baseline: bool = True  # with a --model, also evaluate the untrained default encoder as "dense_untrained"
    retrievers: list[str] = field(default_factory=lambda: list(RETRIEVERS))
    k: list[int] = field(default_factory=lambda: list(DEFAULT_KS))
    generate: list[str] = field(default_factory=list)  # RAG modes to score with EM/F1; empty = no generation
    generator: str | None = None  # None: the shipped reader (Gemma 3 270M + LoRA) unless base_generator
    rag: str | None = None  # a RAG training folder (python -m dpr_rag.train_rag --out) to answer with instead
    base_generator: bool = False  # the bare base model instead of the shipped reader
    reader: str | None = None  # the extractive mode's reader folder (python -m dpr_rag.train_reader); None: the shipped one
    with_base: list[str] = field(default_factory=list)  # modes also answered by the bare base model ("<mode> (base)")
    bf16: bool = False  # bfloat16 autocast while generating (faster on CPUs with AVX512-BF16/AMX)
    rag_retriever: str = "dense"  # what RAG retrieves with: dense, bm25 or hybrid (or one of them + "+rerank")
    rerank: str | None = None  # a cross-encoder folder: adds a "<retriever>+rerank" row for every retriever
    rerank_candidates: int = DEFAULT_CANDIDATES  # first-stage hits the cross-encoder rescores
    rerank_fusion: str = "replace"  # or "sum" (dpr_rag.retrieval.rerank.FUSIONS)
    rag_k: int = 5
    shots: int = 0  # few-shot demonstrations before each question (dpr_rag.rag.demonstrations)
    sequence_beams: int | None = None  # RAG-Sequence's beams per passage (None: the pipeline's 4; 1: greedy, fastest)
    fallback: bool = False  # also rows "<mode> + fallback": closed-book where the passages lack the answer
    limit: int | None = None  # the first N questions, in file order
    match: str = "string"
    out: str | None = None  # None = eval/reports/<timestamp>/
    index_type: str = "flat"
    precision: str = "auto"
    index_params: dict = field(default_factory=dict)  # FAISS parameters (hnsw_m, ef_search, nlist, pq_m, nprobe)
    use_cache: bool = True
    fusion: str = "linear"
    weight: float = DEFAULT_WEIGHT
    bootstrap_samples: int = DEFAULT_SAMPLES
    confidence: float = 0.95
    seed: int = 0
    show_progress: bool = True  # tqdm bars on stderr
    command: str | None = None  # the command line that ran this; None = rebuilt from the settings
    public: bool = False  # a report others see (the app): no server paths in its settings (give `command` as shown)

    def __post_init__(self) -> None:
        """Validate and normalise every option before any work starts (so a typo fails in a second, not an hour)."""
        for name in ("retrievers", "k", "generate", "with_base"):
            if isinstance(getattr(self, name), str):
                raise ConfigError(
                    f"EvalConfig.{name} must be a list, not the string {getattr(self, name)!r} "
                    f"(the CLI splits comma-separated values with eval.config.split_csv / parse_ks)"
                )
        self.generate = parse_modes(self.generate)
        if self.qrels is not None:
            check_text("qrels", self.qrels)
            if self.generate or self.qa is None:
                raise ConfigError("--qrels judges passages, not answers: give --qa QUERIES and no --generate")
        self.with_base = parse_modes(self.with_base)
        names = [str(n).strip() for n in self.retrievers if str(n).strip()]
        # No retriever is allowed only when generating (answers alone); otherwise the library's check names the problem.
        self.retrievers = list(dict.fromkeys(check_retriever_names(names))) if names or not self.generate else []
        if self.rerank is not None:
            check_text("rerank", self.rerank)
            check_int("rerank_candidates", self.rerank_candidates, 1, MAX_CANDIDATES)
            check_choice("rerank_fusion", self.rerank_fusion, RERANK_FUSIONS)
            self.retrievers = list(dict.fromkeys(n for r in self.retrievers for n in (r.removesuffix(RERANKED), reranked(r))))
        elif any(r.endswith(RERANKED) for r in [*self.retrievers, self.rag_retriever]):
            raise ConfigError(f"a {RERANKED} retriever needs --rerank FOLDER (a cross-encoder)")
        self.k = parse_ks(self.k)
        if self.match not in MATCH_MODES:
            raise ConfigError(f"unknown --match {self.match!r}; choose from {', '.join(MATCH_MODES)}")
        if self.limit is not None and (not _is_int(self.limit) or self.limit < 1):
            raise ConfigError(f"--limit must be a positive integer, got {self.limit!r}")
        if not _is_int(self.rag_k) or not 1 <= self.rag_k <= MAX_K:
            raise ConfigError(f"--rag-k must be an integer between 1 and {MAX_K}, got {self.rag_k!r}")
        if sum(map(bool, (self.generator, self.rag, self.base_generator))) > 1:
            raise ConfigError("give at most one of --generator, --rag and --base-generator")
        if self.with_base and self.base_generator:
            raise ConfigError("--with-base adds the base model beside the reader; with --base-generator it is the reader")
        if self.with_base and not self.generate:
            raise ConfigError("--with-base needs --generate (the reader's modes)")
        if "extractive" in self.with_base:
            raise ConfigError("--with-base answers with the base generator: extractive is not one of its modes")
        if self.reader is not None:
            check_text("reader", self.reader)
            if "extractive" not in self.generate:
                raise ConfigError("--reader is the extractive mode's reader: add extractive to --generate")
        for name in ("bf16", "fallback", "public"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.fallback and not [m for m in self.generate + self.with_base if m != "closed-book"]:
            raise ConfigError("--fallback needs a RAG mode in --generate or --with-base (sequence, token or standard)")
        if self.rag_retriever.removesuffix(RERANKED) not in RETRIEVERS:
            choices = ", ".join(RETRIEVERS)
            raise ConfigError(f"unknown --rag-retriever {self.rag_retriever!r}; choose from {choices} (optionally {RERANKED})")
        if self.sequence_beams is not None and (not _is_int(self.sequence_beams) or not 1 <= self.sequence_beams <= 16):
            raise ConfigError(f"--sequence-beams must be an integer between 1 and 16, got {self.sequence_beams!r}")
        if not _is_int(self.shots) or not 0 <= self.shots <= MAX_SHOTS:
            raise ConfigError(f"--shots must be an integer between 0 and {MAX_SHOTS}, got {self.shots!r}")
        if self.fusion not in FUSIONS:
            raise ConfigError(f"unknown --fusion {self.fusion!r}; choose from {', '.join(FUSIONS)}")
        if not isinstance(self.weight, (int, float)) or isinstance(self.weight, bool) or not math.isfinite(self.weight):
            raise ConfigError(f"--weight must be a finite number, got {self.weight!r}")
        if not _is_int(self.bootstrap_samples) or self.bootstrap_samples < 1:
            raise ConfigError(f"--bootstrap must be a positive integer, got {self.bootstrap_samples!r}")
        if not isinstance(self.confidence, (int, float)) or not 0 < self.confidence < 1:
            raise ConfigError(f"confidence must be between 0 and 1, got {self.confidence!r}")
        if not _is_int(self.seed):
            raise ConfigError(f"--seed must be an integer, got {self.seed!r}")

    def to_command(self) -> str:
        """A command line that reruns this evaluation."""
        args = ["python", "-m", "eval.run"]
        for flag, value in (("--qa", self.qa), ("--qrels", self.qrels), ("--corpus", self.corpus), ("--model", self.model)):
            if value is not None:
                args += [flag, str(value)]
        args += ["--retrievers", ",".join(self.retrievers), "--k", ",".join(map(str, self.k)), "--match", self.match]
        if self.generate:
            args += ["--generate", ",".join(self.generate), "--rag-k", str(self.rag_k)]
            if self.shots:
                args += ["--shots", str(self.shots)]
            if self.sequence_beams is not None:
                args += ["--sequence-beams", str(self.sequence_beams)]
            for flag, value in (("--generator", self.generator), ("--rag", self.rag), ("--reader", self.reader)):
                if value:
                    args += [flag, str(value)]
            for flag, on in (("--base-generator", self.base_generator), ("--bf16", self.bf16), ("--fallback", self.fallback)):
                if on:
                    args.append(flag)
            if self.with_base:
                args += ["--with-base", ",".join(self.with_base)]
            if self.rag_retriever != "dense":
                args += ["--rag-retriever", self.rag_retriever]
        if self.rerank is not None:
            args += ["--rerank", str(self.rerank), "--rerank-candidates", str(self.rerank_candidates)]
            if self.rerank_fusion != "replace":
                args += ["--rerank-fusion", self.rerank_fusion]
        if self.limit is not None:
            args += ["--limit", str(self.limit)]
        if self.index_type != "flat":
            args += ["--index-type", self.index_type]
        if self.precision != "auto":
            args += ["--precision", self.precision]
        for name, value in sorted(self.index_params.items()):
            args += [f"--{name.replace('_', '-')}", str(value)]
        if self.fusion != "linear" or self.weight != DEFAULT_WEIGHT:
            args += ["--fusion", self.fusion, "--weight", str(self.weight)]
        if self.bootstrap_samples != DEFAULT_SAMPLES or self.seed != 0:
            args += ["--bootstrap", str(self.bootstrap_samples), "--seed", str(self.seed)]
        if not self.use_cache:
            args.append("--no-cache")
        if self.model and not self.baseline:
            args.append("--no-baseline")
        if self.out is not None:
            args += ["--out", str(self.out)]
        return shlex.join(args)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def split_csv(value: str) -> list[str]:
    """'bm25, dense,' -> ['bm25', 'dense']: a comma-separated command-line value as a list."""
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_ks(value: str | Sequence[int]) -> list[int]:
    """'1,5,20' or [1, 5, 20] -> sorted distinct ints in [1, MAX_K]; anything else is a ConfigError."""
    items = value.split(",") if isinstance(value, str) else list(value)
    ks = []
    for item in items:
        text = item.strip() if isinstance(item, str) else item
        if isinstance(text, str) and text.isdigit():
            text = int(text)
        if not isinstance(text, int) or isinstance(text, bool) or not 1 <= text <= MAX_K:
            raise ConfigError(f"--k must be a comma-separated list of integers between 1 and {MAX_K}, got {value!r}")
        ks.append(text)
    if not ks:
        raise ConfigError("--k is empty; give e.g. 1,5,20,100")
    return sorted(set(ks))


def parse_modes(value: str | Sequence[str] | None) -> list[str]:
    items = split_csv(value) if isinstance(value, str) else list(value or [])
    for m in items:
        if m not in GENERATION_MODES:
            raise ConfigError(f"unknown --generate mode {m!r}; choose from {', '.join(GENERATION_MODES)}")
    return list(dict.fromkeys(items))
