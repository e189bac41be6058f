"""`Seq2SeqGenerator`: the RAG generator p(y | x, z) over an encoder-decoder Hugging Face LM (BART, T5...).

The encoder reads the input (right-padded, its own context); the decoder reads the decoder start token and the
target before the token it predicts. The target is the answer as the tokenizer encodes labels (with its eos).
A prompt run once (`encode_prompts`) is the encoder's output, which scoring and generation reuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from transformers.modeling_outputs import BaseModelOutput

from ..errors import ConfigError
from .generator import EncodedPrompts, Generator, pad_ids


class Seq2SeqGenerator(Generator):
    """An encoder-decoder LM as RAG generator (see `Generator`)."""

    is_encoder_decoder: ClassVar[bool] = True

    @property
    def max_target_tokens(self) -> int:
        """The whole context: the input has the encoder's context to itself."""
        return self.max_length

    @property
    def _target_context(self) -> int:
        return self.max_length

    def encode_target(self, answer: str) -> list[int]:
        """Target ids: the tokenizer's label encoding of the answer (with eos)."""
        return list(self.tokenizer(text_target=answer)["input_ids"])

    def _encode_sources(self, inputs: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder inputs, right-padded, on the model's device."""
        ids, mask = pad_ids(self._encode_inputs(inputs, [0] * len(inputs)), self.pad_token_id, left=False)
        return ids.to(self.device), mask.to(self.device)

    def _decoder_inputs(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder start token followed by each row, right-padded (on the CPU)."""
        start = self.model.config.decoder_start_token_id
        if start is None:
            start = self.model.generation_config.decoder_start_token_id
        if start is None:
            raise ConfigError(f"generator {self.source}: no decoder_start_token_id in its config")
        return pad_ids([[start] + list(r) for r in rows], self.pad_token_id, left=False)

    # ---- scoring ---------------------------------------------------------------------------------------
    def _target_logits(
        self, inputs: Sequence[str], targets: list[list[int]], tgt_ids: torch.Tensor, tgt_mask: torch.Tensor
    ) -> torch.Tensor:
        T = tgt_ids.shape[1]
        ids, mask = self._encode_sources(inputs)
        dec_ids, _ = self._decoder_inputs(targets)
        return self.model(
            input_ids=ids, attention_mask=mask, decoder_input_ids=dec_ids[:, :T].to(self.device), use_cache=False
        ).logits

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
        N, (n, width) = ids.shape[0], tgt_ids.shape
        dec_ids = self._decoder_inputs(targets)[0][:, :width].to(self.device)
        hidden = prompts.state[index].repeat_interleave(n, 0)
        return self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
            attention_mask=mask.repeat_interleave(n, 0),
            decoder_input_ids=dec_ids.repeat(N, 1),
            use_cache=False,
        ).logits

    def _next_token_logits(self, inputs: Sequence[str], prefixes: Sequence[Sequence[int]]) -> torch.Tensor:
        longest = max(len(p) for p in prefixes)
        if longest >= self.max_length:
            raise ConfigError(f"a prefix of {longest} tokens fills the decoder's context of {self.max_length}")
        ids, mask = self._encode_sources(inputs)
        dec_ids, _ = self._decoder_inputs(prefixes)
        logits = self.model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_ids.to(self.device), use_cache=False).logits
        last = torch.tensor([len(p) for p in prefixes], device=logits.device)
        return logits[torch.arange(len(prefixes), device=logits.device), last]

    # ---- generation ------------------------------------------------------------------------------------
    def _has_room(self, prompts: EncodedPrompts, tokens: int) -> bool:
        return True  # the decoder's context is not shared with the input

    def _encode_prompts(self, inputs: Sequence[str], reserve: int) -> EncodedPrompts:
        """The encoder's output (right-padded); `reserve` is not needed (the decoder has its own context)."""
        ids, mask = self._encode_sources(inputs)
        return EncodedPrompts(ids, mask, self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state, 0)

    def _generation_inputs(
        self, inputs: Sequence[str], prompts: EncodedPrompts | None, max_new_tokens: int, num_beams: int
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any], int]:
        if prompts is None:
            ids, mask = self._encode_sources(inputs)
            return ids, mask, {}, 0
        # generate copies the encoder output per beam; its output holds the decoder's tokens only (start: column 0).
        return prompts.ids, prompts.mask, {"encoder_outputs": BaseModelOutput(last_hidden_state=prompts.state)}, 0
