"""`CausalGenerator`: the RAG generator p(y | x, z) over a decoder-only Hugging Face LM (Gemma, GPT-2...).

Input and target share one context: `[pad.. input | target ..pad]`, inputs left-padded so every row's target
starts at the same column. The target is `" " + answer` followed by the eos token, so the model also learns to
stop. A prompt run once (`encode_prompts`) is the key/value cache of all its tokens but the last, which scoring
and every beam of generation then extend without running the prompt again.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .generator import EncodedPrompts, Generator, pad_ids


def _cache_rows(cache: Any, rows: torch.Tensor) -> Any:
    """A key/value cache of the given batch rows (repeats allowed), leaving `cache` itself as it was."""
    layers = getattr(cache, "layers", None)
    if isinstance(layers, list):
        new = copy.copy(cache)  # new layer objects over the same tensors: selecting rows and extending make new tensors
        new.layers = [copy.copy(layer) for layer in layers]
    else:
        new = copy.deepcopy(cache)
    new.batch_select_indices(rows)
    return new


class CausalGenerator(Generator):
    """A decoder-only LM as RAG generator (see `Generator`); its tokenizer pads on the left."""

    is_encoder_decoder: ClassVar[bool] = False
    share_prompt_cache = True  # beam search: run each prompt once, not once per beam

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_length: int | None = None, source: str = ""
    ):
        super().__init__(model, tokenizer, max_length=max_length, source=source)
        tokenizer.padding_side = "left"
        self._inspect(model)

    def _inspect(self, model: PreTrainedModel) -> None:
        """Which arguments the model's forward takes (a peft model passes them on to its base model's forward)."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # type: ignore[operator]
        params = inspect.signature(base.forward).parameters
        self._takes_positions = "position_ids" in params
        self._takes_logits_to_keep = "logits_to_keep" in params
        self._cache_arg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.x

    def use_model(self, model: PreTrainedModel) -> None:
        super().use_model(model)
        self._inspect(model)

    @property
    def max_target_tokens(self) -> int:
        """The context but one input token (after any <bos>) to predict the target's first token from."""
        return self.max_length - 1 - self._n_head_special

    @property
    def _target_context(self) -> int:
        return self.max_length - 1  # at least one input token goes before the target

    def encode_target(self, answer: str) -> list[int]:
        """Target ids: `" " + answer` + eos."""
        return list(self.tokenizer(" " + answer, add_special_tokens=False)["input_ids"]) + [self.eos_token_id]

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, keep: int) -> torch.Tensor:
        """Logits of the last `keep` positions, with position ids counted from each row's first real token."""
        kwargs: dict[str, Any] = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        if self._takes_positions:
            kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(self.device)
        if self._takes_logits_to_keep:
            kwargs["logits_to_keep"] = keep
        return self.model(**kwargs, use_cache=False).logits[:, -keep:]

    def _encode_left(self, inputs: Sequence[str], reserve: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs left-padded on the model's device, each leaving `reserve` tokens of the context free."""
        ids, mask = pad_ids(self._encode_inputs(inputs, [reserve] * len(inputs)), self.pad_token_id, left=True)
        return ids.to(self.device), mask.to(self.device)

    # ---- scoring ---------------------------------------------------------------------------------------
    def _target_logits(
        self, inputs: Sequence[str], targets: list[list[int]], tgt_ids: torch.Tensor, tgt_mask: torch.Tensor
    ) -> torch.Tensor:
        # [pad.. input | target ..pad]: inputs left-padded, targets right-padded, so every row's target starts
        # at the same column and only the last T + 1 positions' logits are needed.
        T = tgt_ids.shape[1]
        src = self._encode_inputs(inputs, [len(t) for t in targets])
        in_ids, in_mask = pad_ids(src, self.pad_token_id, left=True)
        ids = torch.cat([in_ids, tgt_ids.cpu()], 1)
        mask = torch.cat([in_mask, tgt_mask.cpu()], 1)
        return self._forward(ids, mask, T + 1)[:, :T]

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
        # The cache holds each prompt but its last token: run that token and the target (but its last token),
        # so the `width` logits predict the target's tokens.
        N, (n, width) = ids.shape[0], tgt_ids.shape
        step = torch.cat([ids[:, -1:].repeat_interleave(n, 0), tgt_ids[:, :-1].repeat(N, 1)], 1)
        attention = torch.cat([mask.repeat_interleave(n, 0), tgt_mask[:, :-1].repeat(N, 1)], 1)
        kwargs: dict[str, Any] = {"input_ids": step, "attention_mask": attention, "use_cache": prompts.state is not None}
        if prompts.state is not None:
            kwargs[self._cache_arg] = _cache_rows(prompts.state, index.repeat_interleave(n))
        if self._takes_positions:
            kwargs["position_ids"] = (attention.cumsum(-1) - 1).clamp(min=0)[:, -width:]
        return self.model(**kwargs).logits

    def _next_token_logits(self, inputs: Sequence[str], prefixes: Sequence[Sequence[int]]) -> torch.Tensor:
        src = self._encode_inputs(inputs, [len(p) for p in prefixes])
        ids, mask = pad_ids([s + list(p) for s, p in zip(src, prefixes, strict=True)], self.pad_token_id, left=True)
        return self._forward(ids, mask, 1)[:, -1]

    # ---- generation ------------------------------------------------------------------------------------
    def _has_room(self, prompts: EncodedPrompts, tokens: int) -> bool:
        return prompts.ids.shape[1] + tokens <= self.max_length

    def _encode_prompts(self, inputs: Sequence[str], reserve: int) -> EncodedPrompts:
        """The key/value cache of each prompt but its last token, left-padded, `reserve` tokens of the context free."""
        ids, mask = self._encode_left(inputs, reserve)
        state = None
        if ids.shape[1] > 1:
            head, head_mask = ids[:, :-1], mask[:, :-1]
            kwargs: dict[str, Any] = {"input_ids": head, "attention_mask": head_mask, "use_cache": True}
            if self._takes_positions:
                kwargs["position_ids"] = (head_mask.cumsum(-1) - 1).clamp(min=0)
            if self._takes_logits_to_keep:
                kwargs["logits_to_keep"] = 1
            out = self.model(**kwargs)
            state = out.get("cache", None) or out.get("past_key_values", None)
        return EncodedPrompts(ids, mask, state, reserve)

    def _generation_inputs(
        self, inputs: Sequence[str], prompts: EncodedPrompts | None, max_new_tokens: int, num_beams: int
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any], int]:
        if prompts is None and self.share_prompt_cache and num_beams > 1:
            prompts = self.encode_prompts(inputs, reserve=max_new_tokens)
        extra: dict[str, Any] = {}
        if prompts is None:
            ids, mask = self._encode_left(inputs, max_new_tokens)
        else:
            ids, mask = prompts.ids, prompts.mask
            if prompts.state is not None:
                # generate copies each prompt num_beams times but not a cache it is given: give it one copy per beam.
                rows = torch.arange(len(inputs), device=self.device).repeat_interleave(num_beams)
                extra[self._cache_arg] = _cache_rows(prompts.state, rows)
        return ids, mask, extra, ids.shape[1]
