"""`ExtractiveReader`: DPR's reader (Karpukhin et al., 2020, §6.1). One encoder reads `[CLS] question [SEP] title: text
[SEP]` for each of a question's top-k passages; with P_i the token states of passage i,

    selection:  P_sel(i | q) = softmax_i(w_sel · P_i[CLS])           which passage holds the answer
    span:       P_start(s | q, i) = softmax_s(w_start · P_i[s])      where it starts, and likewise where it ends

The answer is the best span s ≤ e < s + max_answer_length (score start[s] + end[e]) of the passage with the highest
selection score, as DPR answers at inference. Any Hugging Face encoder works (BERT-like: `AutoModel`); the default is
the embedded all-MiniLM-L6-v2.

A folder holds `reader.json` (settings, and the base encoder when weights are left out), `reader.safetensors`, the
encoder's config and the tokenizer. A compact folder (`save_pretrained(compact=True)`) stores fp16 weights without the
word embeddings, which training keeps frozen and `from_pretrained` takes from the base encoder again (a MiniLM reader
is then ~21 MB instead of ~90 MB).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel
from transformers.utils import logging as hf_logging

from ..config_checks import check_choice, check_int
from ..data.passages import Passage
from ..errors import ConfigError, DprRagError
from ..retrieval.rerank import BASE_DEFAULT, base_encoder_path, cpu_autocast, passage_text
from ..storage import model_load_errors, read_json
from .spans import best_span, title_text_segments

READER_CONFIG = "reader.json"
READER_WEIGHTS = "reader.safetensors"
DEFAULT_MAX_LENGTH = 192  # question + title + a ~100-word passage fit in ~170 MiniLM tokens
DEFAULT_MAX_ANSWER_LENGTH = 10  # DPR's span-length limit, in sub-word tokens
# DPR's selected passage; the best (passage, span) jointly; the same with the retriever's p(z|x) as a prior (`read`)
ANSWER_RULES = ("passage", "joint", "prior")


@dataclass
class ReaderLogits:
    selection: torch.Tensor  # (N,) one per (question, passage) row
    start: torch.Tensor  # (N, L)
    end: torch.Tensor  # (N, L)


@dataclass
class ExtractedAnswer:
    """The best span of the selected passage: its text, where it is (`passage`: index among the passages read;
    [start, end) characters of `passage_text(passage)`), log P_sel(passage) + log P_start(s) + log P_end(e), and
    P_sel over the passages read."""

    text: str
    passage: int
    start: int
    end: int
    logprob: float
    selection: list[float]


class ExtractiveReader(nn.Module):
    def __init__(
        self,
        encoder: PreTrainedModel,
        tokenizer,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_answer_length: int = DEFAULT_MAX_ANSWER_LENGTH,
        base: str = BASE_DEFAULT,
        answer_rule: str = "passage",
    ):
        super().__init__()
        check_int("max_length", max_length, 16, 8192)
        check_int("max_answer_length", max_answer_length, 1, 512)
        check_choice("answer_rule", answer_rule, ANSWER_RULES)
        self.answer_rule = answer_rule
        self.encoder: PreTrainedModel = encoder
        self.tokenizer = tokenizer
        self.max_length, self.max_answer_length, self.base = max_length, max_answer_length, base
        hidden = encoder.config.hidden_size
        self.qa_outputs = nn.Linear(hidden, 2)  # start and end scores of each token
        self.qa_classifier = nn.Linear(hidden, 1)  # the passage-selection score, from [CLS]
        self.bf16 = False
        self.source = base

    # ---- loading and saving -----------------------------------------------------------------------------
    @classmethod
    def from_encoder(cls, name: str | os.PathLike | None = None, layers: int | None = None, **kw) -> ExtractiveReader:
        """A new reader on a pretrained encoder (None: the embedded MiniLM); its heads start untrained. `layers` keeps
        only the encoder's first N transformer layers (fewer layers, proportionally faster reading; None: all)."""
        path = base_encoder_path(None if name is None else str(name))
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            full = AutoConfig.from_pretrained(path).num_hidden_layers
        except model_load_errors() as e:
            raise DprRagError(f"cannot load an encoder from {name or 'the default encoder'}: {e}") from e
        if layers is not None:
            check_int("layers", layers, 1, full)  # no more than the encoder has
        try:
            if layers is None:
                encoder = AutoModel.from_pretrained(path)
            else:  # the first N layers' weights load; the report of the others left unused is expected, so not shown
                verbosity = hf_logging.get_verbosity()
                hf_logging.set_verbosity_error()
                try:
                    encoder = AutoModel.from_pretrained(path, num_hidden_layers=layers)
                finally:
                    hf_logging.set_verbosity(verbosity)
        except model_load_errors() as e:
            raise DprRagError(f"cannot load an encoder from {name or 'the default encoder'}: {e}") from e
        return cls(encoder, tokenizer, base=BASE_DEFAULT if name is None else str(name), **kw)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> ExtractiveReader:
        """A folder written by `save_pretrained` (or by `python -m dpr_rag.train_reader`: give its best/)."""
        folder = Path(folder)
        if not (folder / READER_CONFIG).is_file():
            raise DprRagError(f"{folder}: not an extractive reader folder (no {READER_CONFIG})")
        meta = read_json(folder / READER_CONFIG)
        try:
            omitted = set(meta.get("omitted", []))
            length, answer_length = int(meta["max_length"]), int(meta["max_answer_length"])
            rule = str(meta.get("answer_rule", "passage"))
            if omitted:  # weights left out come from the base encoder
                base = None if meta["base"] == BASE_DEFAULT else meta["base"]
                layers = AutoConfig.from_pretrained(folder).num_hidden_layers  # a reader may keep fewer than its base
                reader = cls.from_encoder(
                    base, layers=layers, max_length=length, max_answer_length=answer_length, answer_rule=rule
                )
            else:
                encoder = AutoModel.from_config(AutoConfig.from_pretrained(folder))
                tokenizer = AutoTokenizer.from_pretrained(folder)
                base = meta.get("base", BASE_DEFAULT)
                reader = cls(encoder, tokenizer, length, answer_length, base, rule)
            weights = load_file(folder / READER_WEIGHTS)
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            raise DprRagError(f"{folder / READER_CONFIG}: not a valid reader description ({e})") from e
        except model_load_errors() as e:
            raise DprRagError(f"cannot load the reader in {folder}: {e}") from e
        missing, unexpected = reader.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False)
        if unexpected or set(missing) - omitted:
            wrong = sorted(set(missing) - omitted)[:3] + list(unexpected)[:3]
            raise DprRagError(f"{folder / READER_WEIGHTS}: does not fit its encoder (tensors {wrong})")
        reader.source = str(folder)
        return reader.eval()

    def save_pretrained(self, folder: str | os.PathLike, compact: bool = False) -> None:
        """Write a folder `from_pretrained` loads (safetensors). `compact`: fp16, and the word embeddings left out when
        they equal the base encoder's (training froze them); an error if they were trained."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach() for k, v in self.state_dict().items()}
        omitted: list[str] = []
        if compact:
            key = next(k for k in state if k.endswith("word_embeddings.weight"))
            base = None if self.base == BASE_DEFAULT else self.base
            reference = ExtractiveReader.from_encoder(base, layers=self.encoder.config.num_hidden_layers).state_dict()[key]
            if not torch.equal(state[key], reference):
                raise DprRagError("the word embeddings were trained: save the reader without compact=True")
            omitted = [key]
            state = {k: v.half() for k, v in state.items() if k != key}
        save_file({k: v.contiguous() for k, v in state.items()}, out / READER_WEIGHTS)
        self.encoder.config.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        settings = {"max_length": self.max_length, "max_answer_length": self.max_answer_length, "answer_rule": self.answer_rule}
        (out / READER_CONFIG).write_text(json.dumps({"base": self.base, "omitted": omitted, **settings}, indent=2))

    # ---- reading ----------------------------------------------------------------------------------------
    def tokenize(self, questions: list[str], passages: list[Passage]) -> tuple[dict[str, torch.Tensor], torch.Tensor, list]:
        """The model's inputs for (question, passage) pairs (only the passage is cut to `max_length`), a bool mask
        (N, L) of the tokens that belong to the passage, and each row's character offsets into `passage_text`."""
        enc = self.tokenizer(
            questions,
            [passage_text(p) for p in passages],
            truncation="only_second",
            max_length=self.max_length,
            padding=True,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        offsets = enc.pop("offset_mapping").tolist()
        in_passage = torch.tensor([[sid == 1 for sid in enc.sequence_ids(i)] for i in range(len(passages))], dtype=torch.bool)
        return dict(enc), in_passage, offsets

    def forward(self, batch: dict[str, torch.Tensor]) -> ReaderLogits:
        with cpu_autocast(self.bf16):
            hidden = self.encoder(**batch).last_hidden_state
            span = self.qa_outputs(hidden).float()
            selection = self.qa_classifier(hidden[:, 0]).float()[:, 0]
        return ReaderLogits(selection, span[..., 0], span[..., 1])

    @torch.inference_mode()
    def read(self, question: str, passages: list[Passage], prior: torch.Tensor | None = None) -> ExtractedAnswer:
        """Answer from `passages` by `self.answer_rule`: "passage" is DPR's inference (the passage with the highest
        selection score, then its best span); "joint" takes the (passage, span) of highest log P_sel(i) +
        log P_start(s | i) + log P_end(e | i) over all passages, so a confident span can outweigh a weak selection;
        "prior" adds the retriever's log p(i | q) (`prior`, one per passage; None: uniform, i.e. "joint"), a product
        of the two experts that judge the passage, so a reader whose selection is weak still reads the passages the
        retriever trusts."""
        if not passages:
            raise DprRagError("the reader needs at least one passage")
        if prior is not None and len(prior) != len(passages):
            raise DprRagError(f"{len(prior)} prior log-probabilities for {len(passages)} passages")
        self.eval()
        batch, in_passage, offsets = self.tokenize([question] * len(passages), passages)
        logits = self.forward(batch)
        log_select = torch.log_softmax(logits.selection, 0)
        log_prior = torch.log_softmax(prior.float(), 0) if self.answer_rule == "prior" and prior is not None else None
        rows = [int(log_select.argmax())] if self.answer_rule == "passage" else range(len(passages))
        best: tuple[float, int, int, int] | None = None
        for i in rows:
            segment, usable = title_text_segments([tuple(o) for o in offsets[i]], passages[i].title)
            allowed = in_passage[i] & usable
            neg = torch.finfo(logits.start.dtype).min
            log_start = torch.log_softmax(logits.start[i].masked_fill(~allowed, neg), 0)
            log_end = torch.log_softmax(logits.end[i].masked_fill(~allowed, neg), 0)
            s, e, span_logp = best_span(log_start, log_end, allowed, self.max_answer_length, segment)
            logprob = float(log_select[i]) + span_logp + (0.0 if log_prior is None else float(log_prior[i]))
            if best is None or logprob > best[0]:
                best = (logprob, i, s, e)
        assert best is not None
        logprob, i, s, e = best
        start, end = offsets[i][s][0], offsets[i][e][1]
        text = passage_text(passages[i])[start:end]
        return ExtractedAnswer(text, i, start, end, logprob, log_select.exp().tolist())


SHIPPED = Path(__file__).resolve().parent / "shipped"  # the reader a fresh install answers with (model card inside)


def shipped_extractive_reader() -> Path | None:
    """The shipped reader's folder, or None in a checkout without one."""
    return SHIPPED if (SHIPPED / READER_CONFIG).is_file() else None
