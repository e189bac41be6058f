"""Zero-shot reranking by question likelihood (UPR: Sachan et al. 2022, "Improving Passage Retrieval with Zero-Shot
Question Generation"): a passage is relevant to the degree that a language model, reading it, would ask the question.

    s(q, z) = (1 / |q|) Σ_t log p(q_t | prompt(z), q_<t)

with prompt(z) = "Passage: {title}: {text}\\nPlease write a question based on this passage.\\nQuestion:". No training
data at all; any causal or seq2seq generator (the default: the bare Gemma 3 270M). It needs one forward pass of the
generator per candidate, so it is far slower than a trained cross-encoder: rerank a short list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data.passages import Passage
from ..retrieval.rerank import passage_text
from .generator import Generator

UPR_PROMPT = "Passage: {passage}\nPlease write a question based on this passage.\nQuestion:"


@dataclass
class UPRReranker:
    generator: Generator
    batch_size: int = 8
    bf16: bool = False

    @classmethod
    def from_pretrained(cls, path: str | None = None, **kw) -> UPRReranker:
        """A generator id or folder (None: the embedded Gemma 3 270M, the bare base model)."""
        return cls(Generator.from_pretrained(path), **kw)

    @torch.inference_mode()
    def score(self, question: str, passages: Sequence[Passage]) -> np.ndarray:
        """s(question, p) for each passage: the mean log-probability of the question's tokens after the passage."""
        self.generator.model.eval()
        out = []
        for start in range(0, len(passages), self.batch_size):
            chunk = passages[start : start + self.batch_size]
            inputs = [UPR_PROMPT.format(passage=passage_text(p)) for p in chunk]
            with torch.autocast(self.generator.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logp, mask = self.generator.target_logprobs(inputs, [question] * len(chunk))
            out.append((logp.sum(1) / mask.sum(1).clamp(min=1)).float().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)
