"""Second-stage reranking: a cross-encoder reads the question and each first-stage candidate together.

A bi-encoder scores E_Q(q) · E_P(p) with q and p encoded apart; a cross-encoder scores s(q, p) = w · h_[CLS]([CLS] q
[SEP] p [SEP]) with full attention between the two (Nogueira & Cho 2019), which is more accurate and far slower, so it
only rescores the first stage's top `candidates` (BM25, dense or hybrid) and the top k of those are returned.

`CrossEncoderReranker` is any Hugging Face sequence-classification folder with one output (a hub id or folder, e.g.
a cross-encoder of sentence-transformers), an encoder folder (a fresh one-logit head is added: train it with
`python -m dpr_rag.train_reranker`), or a peft LoRA adapter folder over either (what that trainer saves).
`"upr"` (or `"upr:GENERATOR"`) reranks zero-shot by the generator's question likelihood instead (`rag/upr.py`).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from ..config_checks import check_choice, check_int
from ..data.passages import Passage
from ..errors import DprRagError
from ..storage import model_load_errors
from .base import Retriever, SearchHit, check_queries
from .encoder import default_encoder_path
from .score_scale import score_temperature

ADAPTER_CONFIG = "adapter_config.json"
COMPACT_CONFIG = "dpr_rag_reranker.json"  # a compact folder: the weights that differ from its base, and the base's name
COMPACT_WEIGHTS = "reranker.safetensors"
BASE_DEFAULT = "dpr-rag:default-encoder"  # the embedded all-MiniLM-L6-v2, wherever its package put it
DEFAULT_CANDIDATES = 50
FUSIONS = ("replace", "sum")  # the reranker's score alone, or added to the first stage's score / its τ
MAX_CANDIDATES = 1000


UPR = "upr"


class Reranker(Protocol):
    def score(self, question: str, passages: list[Passage]) -> np.ndarray:
        """s(question, p) for each passage, in order: higher is more relevant."""
        ...


def load_reranker(spec: str | os.PathLike, bf16: bool = False) -> Reranker:
    """A cross-encoder folder or hub id (`CrossEncoderReranker`), or "upr" / "upr:GENERATOR" (zero-shot UPR)."""
    text = str(spec)
    if text == UPR or text.startswith(UPR + ":"):
        from ..rag.upr import UPRReranker  # the generator lives in the RAG package; loaded only when asked for

        return UPRReranker.from_pretrained(text.partition(":")[2] or None, bf16=bf16)
    return CrossEncoderReranker.from_pretrained(spec, bf16=bf16)


def passage_text(p: Passage) -> str:
    """What the cross-encoder reads of a passage: its title, then its text (as DPR's passage tower reads them)."""
    return f"{p.title}: {p.text}" if p.title else p.text


def base_encoder_path(name: str | None) -> str:
    """Where an encoder named in a saved folder loads from: the embedded MiniLM for None or `BASE_DEFAULT`."""
    return default_encoder_path() if name in (None, BASE_DEFAULT) else str(name)


def cpu_autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


@dataclass
class CrossEncoderReranker:
    """s(q, p) from a sequence-classification model: one logit per (question, passage) pair."""

    model: PreTrainedModel
    tokenizer: object
    source: str = ""
    max_length: int = 256
    batch_size: int = 32
    bf16: bool = False

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None, **kw) -> CrossEncoderReranker:
        """A model folder or hub id, a LoRA adapter folder (merged into its base), or None: the default MiniLM with
        a fresh (untrained) one-logit head."""
        folder = Path(path) if path is not None else None
        if folder is not None and (folder / ADAPTER_CONFIG).is_file():
            return cls._from_adapter(folder, **kw)
        if folder is not None and (folder / COMPACT_CONFIG).is_file():
            return cls._from_compact(folder, **kw)
        name = base_encoder_path(None if path is None else str(path))
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
            model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=1)
        except model_load_errors() as e:
            raise DprRagError(f"cannot load a reranker from {path or 'the default encoder'}: {e}") from e
        return cls(model.eval(), tokenizer, source=str(path or BASE_DEFAULT), **kw)

    @classmethod
    def _from_adapter(cls, folder: Path, **kw) -> CrossEncoderReranker:
        import json

        from peft import PeftModel

        try:
            base = json.loads((folder / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
        except (OSError, ValueError, KeyError) as e:
            raise DprRagError(f"{folder / ADAPTER_CONFIG}: not a peft adapter config ({e})") from e
        reranker = cls.from_pretrained(None if base == BASE_DEFAULT else base, **kw)
        try:
            merged = PeftModel.from_pretrained(reranker.model, str(folder)).merge_and_unload()
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise DprRagError(f"cannot load the reranker adapter in {folder}: {e}") from e
        reranker.model, reranker.source = merged.eval(), str(folder)
        return reranker

    @classmethod
    def _from_compact(cls, folder: Path, **kw) -> CrossEncoderReranker:
        import json

        from safetensors.torch import load_file

        try:
            meta = json.loads((folder / COMPACT_CONFIG).read_text())
            base, omitted = meta["base"], set(meta["omitted"])
            weights = load_file(folder / COMPACT_WEIGHTS)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DprRagError(f"{folder}: not a compact reranker folder ({e})") from e
        reranker = cls.from_pretrained(None if base == BASE_DEFAULT else base, **kw)
        missing, unexpected = reranker.model.load_state_dict(weights, strict=False)
        if unexpected or set(missing) - omitted:
            wrong = sorted(set(missing) - omitted)[:3] + list(unexpected)[:3]
            raise DprRagError(f"{folder / COMPACT_WEIGHTS}: does not fit its base {base} (tensors {wrong})")
        reranker.model.eval()
        reranker.source = str(folder)
        return reranker

    def save_compact(self, folder: str | os.PathLike, base: str | None = None) -> None:
        """Only the weights that differ from `base` (None: the embedded MiniLM), in fp16: the word embeddings, when
        training kept them frozen, come from the base at load time (half of MiniLM's size). Checks they are equal."""
        import json

        from safetensors.torch import save_file

        reference = CrossEncoderReranker.from_pretrained(base).model.state_dict()
        mine = self.model.state_dict()
        key = next(k for k in mine if k.endswith("word_embeddings.weight"))
        if not torch.equal(mine[key], reference[key]):
            raise DprRagError("the word embeddings were trained: save the whole model (save_pretrained) instead")
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.half().contiguous() for k, v in mine.items() if k != key}, out / COMPACT_WEIGHTS)
        (out / COMPACT_CONFIG).write_text(
            json.dumps({"base": base or BASE_DEFAULT, "omitted": [key], "dtype": "float16"}, indent=2)
        )

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """A folder `from_pretrained` loads: the whole model and tokenizer (safetensors), or only the LoRA adapter and
        the head when the model is a peft model (its base named as `BASE_DEFAULT` when it is the embedded MiniLM)."""
        import json

        out = Path(folder)
        self.model.save_pretrained(out)
        if (out / ADAPTER_CONFIG).is_file():
            config = json.loads((out / ADAPTER_CONFIG).read_text())
            base = config.get("base_model_name_or_path")
            if base is None or str(base) == default_encoder_path():
                config["base_model_name_or_path"] = BASE_DEFAULT
            (out / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))
        else:
            self.tokenizer.save_pretrained(out)  # type: ignore[attr-defined]

    def tokenize(self, questions: list[str], passages: list[Passage]) -> dict[str, torch.Tensor]:
        """Question and passage as one pair; only the passage is cut to fit `max_length`."""
        return self.tokenizer(  # type: ignore[operator]
            questions,
            [passage_text(p) for p in passages],
            truncation="only_second",
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with cpu_autocast(self.bf16):
            return self.model(**batch).logits[:, 0].float()

    @torch.inference_mode()
    def score(self, question: str, passages: list[Passage]) -> np.ndarray:
        """s(question, p) for each passage, in order."""
        self.model.eval()
        out = []
        for start in range(0, len(passages), self.batch_size):
            chunk = passages[start : start + self.batch_size]
            out.append(self.logits(self.tokenize([question] * len(chunk), chunk)).numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)


@dataclass
class RerankedRetriever:
    """A first-stage retriever whose top `candidates` are reordered by a reranker; hits carry the new scores.

    fusion "replace": s(q, p) = the reranker's score; "sum": s(q, p) = first-stage score / τ + the reranker's score,
    with τ the first stage's score scale (`score_scale.py`: both terms in nats), so the reranker corrects the first
    stage's order rather than replacing it (a weak reranker then cannot undo a strong first stage)."""

    first_stage: Retriever
    reranker: Reranker
    candidates: int = DEFAULT_CANDIDATES
    fusion: str = "replace"
    seconds: dict[str, float] = field(default_factory=lambda: {"first_stage": 0.0, "rerank": 0.0}, repr=False)
    name: str = field(init=False)
    passages: list[Passage] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_int("candidates", self.candidates, 1, MAX_CANDIDATES)
        check_choice("fusion", self.fusion, FUSIONS)
        self.name, self.passages = f"{self.first_stage.name}+rerank", self.first_stage.passages

    def search(self, queries: list[str], k: int = 10) -> list[list[SearchHit]]:
        queries = check_queries(queries, k)
        t0 = time.perf_counter()
        first = self.first_stage.search(queries, max(k, self.candidates))
        t1 = time.perf_counter()
        results = []
        tau = score_temperature(self.first_stage)
        for question, hits in zip(queries, first, strict=True):
            scores = self.reranker.score(question, [h.passage for h in hits])
            if self.fusion == "sum":
                scores = scores + np.array([h.score for h in hits], dtype=np.float64) / tau
            order = np.argsort(-scores, kind="stable")[:k]
            results.append([SearchHit(hits[i].passage, float(scores[i]), r) for r, i in enumerate(order, start=1)])
        self.seconds["first_stage"] += t1 - t0
        self.seconds["rerank"] += time.perf_counter() - t1
        return results
