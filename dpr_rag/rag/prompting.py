"""What the generator reads and what counts as its answer: a plain text template made for a base LM rather than
a chat model, and the first line of what it writes.

    {title}: {text}\n\nQuestion: {question}\nAnswer:        (with a retrieved passage z)
    Question: {question}\nAnswer:                          (closed book)
"""

from __future__ import annotations

import torch
from transformers import StoppingCriteria

from ..data.passages import Passage


def prompt(question: str, passage: Passage | None = None) -> str:
    """The generator's input for `question`, reading `passage` (None: closed book). A plain template for base LMs."""
    if passage is None:
        return f"Question: {question}\nAnswer:"
    return f"{passage.title}: {passage.text}\n\nQuestion: {question}\nAnswer:"


def first_line(text: str) -> str:
    """The answer in a generated text: its first non-blank line, stripped."""
    return text.strip().split("\n")[0].strip()


class StopAtNewline(StoppingCriteria):
    """Stop a row as soon as its generated text (leading whitespace aside) holds a newline: the answer is its first
    line, so nothing after that can change it. A newline before any text does not stop (the answer may start on
    the next line). Works per row, so with beam search too; rows that generate the same tokens stop together."""

    def __init__(self, tokenizer, start: int):
        self.tokenizer, self.start = tokenizer, start  # start: the column where the generated tokens begin

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :].tolist(), skip_special_tokens=True)
        return torch.tensor(["\n" in t.lstrip() for t in texts], dtype=torch.bool, device=input_ids.device)
