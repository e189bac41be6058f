"""The RAG generator p(y | x, z): the base class `Generator`, its helpers (`pad_ids`, `EncodedPrompts`) and the
factory (`Generator.wrap`, `Generator.from_pretrained`) that picks the subclass of a model's kind, `CausalGenerator`
(`causal_generator.py`: Gemma, GPT-2...) or `Seq2SeqGenerator` (`seq2seq_generator.py`: BART, T5...).

Its input is the text template of `prompting.py`. The base class holds what both kinds share (tokenizer and pad setup,
context size, input truncation, target checks, the target groups of `cross_target_logprobs`, decoding generated
answers); each subclass implements the small abstract hooks that run its model. The default generator is Gemma 3 270M
(base): see `default_generator.py`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel
from transformers.generation import GenerationMixin, StoppingCriteriaList
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from ..errors import ConfigError, DprRagError
from ..storage import atomic_dir, model_load_errors
from .default_generator import DEFAULT_GENERATOR_NAME, default_generator_path
from .lora import adapter_base, is_adapter_folder, is_lora, load_lora, save_lora
from .prompting import StopAtNewline, first_line

_INSANE_LENGTH = 10**7  # tokenizers without a limit report model_max_length as ~1e30


def _default_path_if_converted() -> str | None:
    """The default generator's cache folder if it exists (without converting it)."""
    from ..paths import cache_dir

    folder = cache_dir() / "generators" / DEFAULT_GENERATOR_NAME
    return str(folder) if folder.is_dir() else None


def pad_ids(rows: Sequence[Sequence[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad id lists to one (N, longest) tensor on the left or right; returns (ids, attention_mask)."""
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            cols = slice(width - len(r), width) if left else slice(0, len(r))
            ids[i, cols] = torch.tensor(list(r), dtype=torch.long)
            mask[i, cols] = 1
    return ids, mask


@dataclass
class EncodedPrompts:
    """Inputs run through the generator once (`Generator.encode_prompts`), shared by generation and scoring."""

    ids: torch.Tensor  # (N, S) input ids: left-padded for a causal LM, right-padded for a seq2seq encoder
    mask: torch.Tensor  # (N, S) attention mask
    state: Any  # causal: key/value cache of ids[:, :-1] (None if S == 1); seq2seq: encoder output (N, S, d)
    reserve: int  # causal: context tokens left free after the prompts

    def __len__(self) -> int:
        return int(self.ids.shape[0])


class Generator(ABC):
    """A Hugging Face generator with teacher-forced scoring, next-token distributions and beam search.

    Build one with `Generator.wrap(model, tokenizer)` or `Generator.from_pretrained(path)`: both return the
    subclass of the model's kind, `CausalGenerator` or `Seq2SeqGenerator`.

    A tokenizer without a pad token uses its eos token as pad (padding is always tracked by attention masks
    built from lengths, never by comparing ids, so a real eos and a pad eos are never confused).
    """

    is_encoder_decoder: ClassVar[bool]  # the kind of model a subclass runs

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_length: int | None = None, source: str = ""
    ):
        name = source or type(model).__name__
        if bool(model.config.is_encoder_decoder) != self.is_encoder_decoder:
            raise ConfigError(f"generator {name}: {type(self).__name__} cannot run this model (Generator.wrap picks its class)")
        self.model, self.tokenizer, self.source = model, tokenizer, source
        self.adapter: str | None = None  # the LoRA adapter folder it was loaded with, if any
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token_id is None:
                raise ConfigError(
                    f"generator {name}: its tokenizer has neither a pad nor an eos token; give it one (tokenizer.pad_token = ...)"
                )
            tokenizer.pad_token = tokenizer.eos_token
        self.max_length = max_length or self._context_size()
        with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
        bare = tokenizer("a", add_special_tokens=False)["input_ids"]
        # Special tokens the tokenizer puts before the text (e.g. Gemma's <bos>): kept when an input is truncated.
        self._n_head_special = next((i for i in range(len(with_special)) if with_special[i : i + len(bare)] == bare), 0)

    @classmethod
    def wrap(
        cls, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_length: int | None = None, source: str = ""
    ) -> Generator:
        """The generator of `model`'s kind (its config's `is_encoder_decoder`): a `Seq2SeqGenerator` or a `CausalGenerator`."""
        from .causal_generator import CausalGenerator  # imported here: both subclass modules import this one
        from .seq2seq_generator import Seq2SeqGenerator

        kind = Seq2SeqGenerator if model.config.is_encoder_decoder else CausalGenerator
        return kind(model, tokenizer, max_length=max_length, source=source)

    @classmethod
    def from_pretrained(
        cls, path_or_id: str | os.PathLike | None = None, max_length: int | None = None, trainable_adapter: bool = False
    ) -> Generator:
        """Load a hub id or folder (None: the embedded default, Gemma 3 270M); seq2seq or causal from its config.
        A LoRA adapter folder (`lora.py`) loads its base model with the adapter merged in; `trainable_adapter` keeps
        it as a trainable peft model instead (to continue training it)."""
        path = str(path_or_id) if path_or_id else default_generator_path()
        adapter = path if is_adapter_folder(path) else None
        base = adapter_base(adapter) if adapter else path
        try:
            config = AutoConfig.from_pretrained(base)
            model = (AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM).from_pretrained(base)
            tokenizer = AutoTokenizer.from_pretrained(base)
        except model_load_errors() as e:
            raise DprRagError(f"cannot load generator {base!r}: {e}") from e
        if adapter:
            model = load_lora(model, adapter, trainable=trainable_adapter)
        generator = cls.wrap(model.eval(), tokenizer, max_length=max_length, source=base)
        generator.adapter = adapter
        return generator

    def save_pretrained(self, out: str | os.PathLike) -> None:
        """Write the model atomically as one folder that `from_pretrained` loads: a LoRA model as its adapter only
        (naming its base), any other as model (safetensors) and tokenizer."""
        with atomic_dir(out) as tmp:
            if is_lora(self.model):
                save_lora(self.model, tmp, self.source, default_base=self.source == _default_path_if_converted())
            else:
                self.model.save_pretrained(tmp)
                self.tokenizer.save_pretrained(tmp)

    def use_model(self, model: PreTrainedModel) -> None:
        """Run `model` (e.g. the same model with LoRA adapters added) from now on, with this generator's tokenizer."""
        self.model = model

    def _context_size(self) -> int:
        """The smaller sane value of the config's max_position_embeddings and the tokenizer's model_max_length."""
        found = [getattr(self.model.config, "max_position_embeddings", None), getattr(self.tokenizer, "model_max_length", None)]
        sizes = [int(s) for s in found if isinstance(s, int) and 0 < s < _INSANE_LENGTH]
        return min(sizes) if sizes else 1024

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def eos_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    # ---- what a subclass implements ------------------------------------------------------------------
    @property
    @abstractmethod
    def max_target_tokens(self) -> int:
        """The longest target, in tokens, that still leaves room for an input in the generator's context."""

    @property
    @abstractmethod
    def _target_context(self) -> int:
        """The most target tokens the context holds at all: a longer target is refused before any input is read."""

    @abstractmethod
    def encode_target(self, answer: str) -> list[int]:
        """The target ids of an answer (ending with eos, so the model also learns to stop)."""

    @abstractmethod
    def _target_logits(
        self, inputs: Sequence[str], targets: list[list[int]], tgt_ids: torch.Tensor, tgt_mask: torch.Tensor
    ) -> torch.Tensor:
        """(N, T, V) teacher-forced logits: position t predicts `targets[n][t]` after `inputs[n]` and the target
        before it. `tgt_ids`, `tgt_mask`: the targets right-padded to (N, T), on the model's device."""

    @abstractmethod
    def _cross_logits(
        self,
        prompts: EncodedPrompts,
        index: torch.Tensor,
        ids: torch.Tensor,
        mask: torch.Tensor,
        targets: list[list[int]],
        tgt_ids: torch.Tensor,
        tgt_mask: torch.Tensor,
    ) -> torch.Tensor:
        """(N·n, W, V) teacher-forced logits of n targets after each of N encoded prompts, row i·n + j for prompt
        `index[i]` (`ids`, `mask`: its rows of `prompts`) and target j. `tgt_ids`, `tgt_mask`: (n, W), right-padded."""

    @abstractmethod
    def _next_token_logits(self, inputs: Sequence[str], prefixes: Sequence[Sequence[int]]) -> torch.Tensor:
        """(N, V) logits of the token after `inputs[n]` followed by the generated ids `prefixes[n]`."""

    @abstractmethod
    def _has_room(self, prompts: EncodedPrompts, tokens: int) -> bool:
        """Whether encoded prompts leave room for `tokens` more tokens after them (else they are encoded again)."""

    @abstractmethod
    def _encode_prompts(self, inputs: Sequence[str], reserve: int) -> EncodedPrompts:
        """`encode_prompts` of a non-empty batch."""

    @abstractmethod
    def _generation_inputs(
        self, inputs: Sequence[str], prompts: EncodedPrompts | None, max_new_tokens: int, num_beams: int
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any], int]:
        """What `model.generate` starts from: `(ids, mask, extra keyword arguments, start)`, `start` being the
        column of its output where the generated tokens begin. `prompts`: the inputs already encoded, or None."""

    # ---- tokenisation --------------------------------------------------------------------------------
    def decode(self, ids: Sequence[int]) -> str:
        """The text of token ids, special tokens dropped, stripped."""
        return cast(str, self.tokenizer.decode(list(ids), skip_special_tokens=True)).strip()  # one sequence: one string

    def _encode_inputs(self, inputs: Sequence[str], reserved: Sequence[int]) -> list[list[int]]:
        """Tokenise inputs, dropping tokens from the left (after any leading <bos>) so each fits the context.

        `reserved[n]` tokens are kept free for row n's target (causal LMs share one context with the target).
        The prompt ends with the question, so left truncation cuts the start of the passage, never the question.
        """
        rows = self.tokenizer(list(inputs), add_special_tokens=True)["input_ids"]
        out = []
        for ids, r in zip(rows, reserved, strict=True):
            budget = self.max_length - r
            if budget < self._n_head_special + 1:
                raise ConfigError(
                    f"target of {r} tokens leaves no room for the input in the generator's context of {self.max_length} tokens"
                )
            if len(ids) > budget:
                head = self._n_head_special
                ids = ids[:head] + ids[len(ids) - (budget - head) :]
            out.append(list(ids))
        return out

    def _targets(self, targets: Sequence[str | Sequence[int]]) -> list[list[int]]:
        rows = [self.encode_target(t) if isinstance(t, str) else list(t) for t in targets]
        for r in rows:
            if not r:
                raise ConfigError("empty target: a target needs at least one token")
            if len(r) > self._target_context:
                raise ConfigError(f"target of {len(r)} tokens is longer than the generator's context of {self.max_length} tokens")
        return rows

    # ---- scoring ---------------------------------------------------------------------------------------
    def target_logprobs(self, inputs: Sequence[str], targets: Sequence[str | Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced log p(target_t | input, target_<t): `(logp, mask)`, both (N, T), T = longest target.

        `targets` are answers (strings, encoded by `encode_target`) or token id lists. `mask` is 1 on real target
        tokens; `logp` is 0 on padding, so `logp.sum(1)` is each target's log-likelihood. Keeps gradients.
        """
        if len(inputs) != len(targets):
            raise ConfigError(f"{len(inputs)} inputs but {len(targets)} targets")
        tgt = self._targets(targets)
        tgt_ids, tgt_mask = pad_ids(tgt, self.pad_token_id, left=False)
        tgt_ids, tgt_mask = tgt_ids.to(self.device), tgt_mask.to(self.device)
        logits = self._target_logits(inputs, tgt, tgt_ids, tgt_mask)
        logp = torch.log_softmax(logits.float(), -1).gather(-1, tgt_ids.unsqueeze(-1)).squeeze(-1)
        return logp * tgt_mask, tgt_mask

    @torch.inference_mode()
    def cross_target_logprobs(
        self,
        inputs: Sequence[str],
        targets: Sequence[str | Sequence[int]],
        max_logits: int = 2**25,
        prompts: EncodedPrompts | None = None,
        rows: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every target scored after every input: `(logp, mask)` of shapes (N, C, T) and (C, T), T = longest target.

        The same numbers as `target_logprobs` on all N·C (input, target) pairs, but each input is run once: a causal
        LM's prompt key/value cache, or a seq2seq encoder's output, is shared by all targets. RAG-Sequence scores its
        candidates under every passage with it. `prompts` (from `encode_prompts`, e.g. the ones generation used)
        and its `rows` holding `inputs` skip even that. Targets go in groups of similar length, about `max_logits`
        logits at a time (a 262k-token vocabulary makes logits the largest tensor). No gradients.
        """
        tgt = self._targets(targets)
        N, C = len(inputs), len(tgt)
        if N == 0 or C == 0:
            raise ConfigError("cross_target_logprobs needs at least one input and one target")
        longest = max(len(t) for t in tgt)
        if prompts is not None:
            rows = list(range(len(prompts))) if rows is None else list(rows)
            if len(rows) != N:
                raise ConfigError(f"{N} inputs but {len(rows)} prompt rows")
            if not self._has_room(prompts, longest - 1):
                prompts = None  # encoded with too little room for these targets: encode again with enough
        if prompts is None:
            prompts, rows = self.encode_prompts(inputs, reserve=longest), list(range(N))
        index = torch.tensor(rows, device=self.device)
        ids, mask = prompts.ids[index], prompts.mask[index]
        _, tgt_mask = pad_ids(tgt, self.pad_token_id, left=False)
        T = tgt_mask.shape[1]
        logp = torch.zeros(N, C, T, device=self.device)
        vocab = max(int(self.model.get_output_embeddings().weight.shape[0]), 1)
        groups, order = [], sorted(range(C), key=lambda j: len(tgt[j]))
        while order:  # shortest first; each group as large as the logits budget allows for its longest target
            n = 1
            while n < len(order) and N * (n + 1) * len(tgt[order[n]]) * vocab <= max_logits:
                n += 1
            groups.append(order[:n])
            order = order[n:]
        for group in groups:
            n, width = len(group), max(len(tgt[j]) for j in group)
            g_ids, g_mask = pad_ids([tgt[j] for j in group], self.pad_token_id, left=False)
            g_ids, g_mask = g_ids.to(self.device), g_mask.to(self.device)  # row i·n + j below: input i, target group[j]
            logits = self._cross_logits(prompts, index, ids, mask, [tgt[j] for j in group], g_ids, g_mask)
            picked = torch.log_softmax(logits.float(), -1).gather(-1, g_ids.repeat(N, 1).unsqueeze(-1)).squeeze(-1)
            logp[:, group, :width] = picked.view(N, n, width)
        tgt_mask = tgt_mask.to(self.device)
        return logp * tgt_mask, tgt_mask

    @torch.inference_mode()
    def next_token_logprobs(self, inputs: Sequence[str], prefixes: Sequence[Sequence[int]]) -> torch.Tensor:
        """(N, V) log-distribution of the token after `inputs[n]` followed by the generated ids `prefixes[n]`."""
        if len(inputs) != len(prefixes):
            raise ConfigError(f"{len(inputs)} inputs but {len(prefixes)} prefixes")
        return torch.log_softmax(self._next_token_logits(inputs, prefixes).float(), -1)

    # ---- generation ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_prompts(self, inputs: Sequence[str], reserve: int = 0) -> EncodedPrompts:
        """Run the inputs through the model once, for `generate` and `cross_target_logprobs` to share: a causal LM's
        key/value cache of each prompt but its last token (left-padded, `reserve` tokens of the context kept free
        for what follows), or a seq2seq model's encoder output."""
        if not inputs:
            raise ConfigError("no inputs to encode")
        return self._encode_prompts(inputs, reserve)

    @torch.inference_mode()
    def generate(
        self,
        inputs: Sequence[str],
        max_new_tokens: int = 16,
        num_beams: int = 4,
        num_return_sequences: int = 4,
        stop_at_newline: bool = True,
        prompts: EncodedPrompts | None = None,
        **generate_kwargs: Any,
    ) -> list[list[str]]:
        """Beam-search candidate answers per input: decoded, stripped, cut at the first newline, de-duplicated,
        best first (empty answers dropped; `[""]` if nothing else is left). Generation stops at eos and, with
        `stop_at_newline`, at the end of the answer's first line instead of running on to `max_new_tokens` (the
        text after it would be cut anyway). `prompts`: the inputs already run by `encode_prompts` (beam search over
        a causal LM does that itself, so that each prompt runs once, not once per beam). Extra keyword arguments
        (e.g. `logits_processor`) go to `model.generate`; `num_return_sequences` is capped at `num_beams`."""
        num_return_sequences = max(1, min(num_return_sequences, num_beams))
        if prompts is not None and len(prompts) != len(inputs):
            raise ConfigError(f"{len(inputs)} inputs but {len(prompts)} encoded prompts")
        if prompts is not None and not self._has_room(prompts, max_new_tokens):
            prompts = None  # encoded with too little room for max_new_tokens: encode again
        ids, mask, extra, start = self._generation_inputs(inputs, prompts, max_new_tokens, num_beams)
        stopping = StoppingCriteriaList(generate_kwargs.pop("stopping_criteria", None) or [])
        if stop_at_newline:
            stopping.append(StopAtNewline(self.tokenizer, start))
        kwargs = {
            "max_new_tokens": max_new_tokens,
            "num_beams": num_beams,
            "num_return_sequences": num_return_sequences,
            "do_sample": False,
            "pad_token_id": self.pad_token_id,
            "eos_token_id": self.eos_token_id,
            "stopping_criteria": stopping,
            **extra,
            **generate_kwargs,
        }
        # Every model a generator runs is a GenerationMixin (its LM head class), which PreTrainedModel's type does not say.
        out = cast(GenerationMixin, self.model).generate(input_ids=ids, attention_mask=mask, **kwargs)[:, start:]
        results = []
        for n in range(len(inputs)):
            answers: list[str] = []
            for seq in out[n * num_return_sequences : (n + 1) * num_return_sequences]:
                text = first_line(self.decode(seq.tolist()))
                if text and text not in answers:
                    answers.append(text)
            results.append(answers or [""])
        return results
