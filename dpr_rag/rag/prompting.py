"""What the generator reads and what counts as its answer: a plain text template made for a base LM rather than
a chat model, and the first line of what it writes.

    {title}: {text}\n\nQuestion: {question}\nAnswer:        (with a retrieved passage z)
    {title 1}: {text 1}\n\n...{title k}: {text k}\n\nQuestion: {question}\nAnswer:   (standard RAG: the top k in one)
    Question: {question}\nAnswer:                          (closed book)

A base LM given only that tends to repeat the question or ramble; a few demonstrations in front (few-shot, Brown et
al. 2020) show it the task. `PromptTemplate(shots)` puts N solved examples before the question, each in the same
form as the question's own block (with its passage when the question has one), separated by blank lines:

    {demo title}: {demo text}\n\nQuestion: {demo question}\nAnswer: {demo answer}\n\n{the block above}

The demonstrations come from training data (`demonstrations.py`), never from the questions being evaluated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import StoppingCriteria

from ..data.passages import Passage


@dataclass(frozen=True)
class Demonstration:
    """A solved example shown before the question: the passage it reads (None for closed-book use) and its answer."""

    question: str
    answer: str
    passage: Passage | None = None


def _block(question: str, passages: Sequence[Passage], answer: str | None = None) -> str:
    context = "".join(f"{p.title}: {p.text}\n\n" for p in passages)
    return f"{context}Question: {question}\nAnswer:" + ("" if answer is None else f" {answer}")


@dataclass(frozen=True)
class PromptTemplate:
    """The generator's input: `shots` demonstrations, then the question with its passage (or none: closed book).
    A closed-book prompt shows the demonstrations without their passages."""

    shots: tuple[Demonstration, ...] = ()

    def render(self, question: str, passage: Passage | None = None) -> str:
        return self.render_passages(question, [] if passage is None else [passage])

    def render_passages(self, question: str, passages: Sequence[Passage]) -> str:
        """The question after all of `passages` in one prompt (standard RAG's input; one passage: `render`)."""
        demos = [_block(d.question, [d.passage] if passages and d.passage else [], d.answer) for d in self.shots]
        return "\n\n".join([*demos, _block(question, passages)])

    def render_all(self, questions: Sequence[str], passages: Sequence[Passage | None]) -> list[str]:
        return [self.render(q, p) for q, p in zip(questions, passages, strict=True)]


ZERO_SHOT = PromptTemplate()


def prompt(question: str, passage: Passage | None = None) -> str:
    """The zero-shot input for `question`, reading `passage` (None: closed book)."""
    return ZERO_SHOT.render(question, passage)


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
