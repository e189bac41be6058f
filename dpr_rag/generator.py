"""The RAG generator p(y | x, z): a Hugging Face causal LM (Gemma, GPT-2...) or seq2seq model (BART, T5...).

Its input is the text template of `prompting.py`. A causal LM's target is `" " + answer` followed by the eos token, so the model also learns to stop; a
seq2seq model's target is the answer as its tokenizer encodes labels (with its eos).

The default generator is Gemma 3 270M (base): see `default_generator.py`.
"""
from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, StoppingCriteriaList
from transformers.modeling_outputs import BaseModelOutput

from .default_generator import default_generator_path
from .errors import ConfigError, DprRagError
from .prompting import StopAtNewline, first_line
from .storage import atomic_dir

_INSANE_LENGTH = 10**7  # tokenizers without a limit report model_max_length as ~1e30


def _pad(rows: Sequence[Sequence[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
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


def _cache_rows(cache, rows: torch.Tensor):
    """A key/value cache of the given batch rows (repeats allowed), leaving `cache` itself as it was."""
    layers = getattr(cache, "layers", None)
    if isinstance(layers, list):
        new = copy.copy(cache)  # new layer objects over the same tensors: selecting rows and extending make new tensors
        new.layers = [copy.copy(layer) for layer in layers]
    else:
        new = copy.deepcopy(cache)
    new.batch_select_indices(rows)
    return new


class Generator:
    """A Hugging Face generator with teacher-forced scoring, next-token distributions and beam search.

    A tokenizer without a pad token uses its eos token as pad (padding is always tracked by attention masks
    built from lengths, never by comparing ids, so a real eos and a pad eos are never confused).
    """

    def __init__(self, model, tokenizer, max_length: int | None = None, source: str = ""):
        self.model, self.tokenizer, self.source = model, tokenizer, source
        self.is_encoder_decoder = bool(model.config.is_encoder_decoder)
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token_id is None:
                raise ConfigError(f"generator {source or type(model).__name__}: its tokenizer has neither a pad nor an eos token; "
                                  "give it one (tokenizer.pad_token = ...)")
            tokenizer.pad_token = tokenizer.eos_token
        if not self.is_encoder_decoder:
            tokenizer.padding_side = "left"
        self.max_length = max_length or self._context_size()
        params = inspect.signature(model.forward).parameters
        self._takes_positions = "position_ids" in params
        self._takes_logits_to_keep = "logits_to_keep" in params
        self._cache_arg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.x
        with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
        bare = tokenizer("a", add_special_tokens=False)["input_ids"]
        # Special tokens the tokenizer puts before the text (e.g. Gemma's <bos>): kept when an input is truncated.
        self._n_head_special = next((i for i in range(len(with_special)) if with_special[i:i + len(bare)] == bare), 0)

    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike | None = None, max_length: int | None = None) -> Generator:
        """Load a hub id or folder (None: the embedded default, Gemma 3 270M); seq2seq or causal from its config."""
        path = str(path_or_id) if path_or_id else default_generator_path()
        try:
            config = AutoConfig.from_pretrained(path)
            auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
            model = auto.from_pretrained(path)
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise DprRagError(f"cannot load generator {path!r}: {e}") from e
        return cls(model.eval(), tokenizer, max_length=max_length, source=path)

    def save_pretrained(self, out: str | os.PathLike) -> None:
        """Write model (safetensors) and tokenizer atomically as one folder that `from_pretrained` loads."""
        with atomic_dir(out) as tmp:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)

    def _context_size(self) -> int:
        """The smaller sane value of the config's max_position_embeddings and the tokenizer's model_max_length."""
        sizes = [getattr(self.model.config, "max_position_embeddings", None), getattr(self.tokenizer, "model_max_length", None)]
        sizes = [int(s) for s in sizes if isinstance(s, int) and 0 < s < _INSANE_LENGTH]
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

    # ---- tokenisation --------------------------------------------------------------------------------
    def encode_target(self, answer: str) -> list[int]:
        """Target ids: `" " + answer` + eos for a causal LM; the tokenizer's label encoding (with eos) for seq2seq."""
        if self.is_encoder_decoder:
            return list(self.tokenizer(text_target=answer)["input_ids"])
        return list(self.tokenizer(" " + answer, add_special_tokens=False)["input_ids"]) + [self.eos_token_id]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()

    def _encode_inputs(self, inputs: Sequence[str], reserved: Sequence[int]) -> list[list[int]]:
        """Tokenise inputs, dropping tokens from the left (after any leading <bos>) so each fits the context.

        `reserved[n]` tokens are kept free for row n's target (causal LMs share one context with the target).
        The prompt ends with the question, so left truncation cuts the start of the passage, never the question.
        """
        rows = self.tokenizer(list(inputs), add_special_tokens=True)["input_ids"]
        out = []
        for ids, r in zip(rows, reserved):
            budget = self.max_length - r
            if budget < self._n_head_special + 1:
                raise ConfigError(f"target of {r} tokens leaves no room for the input in the generator's context of "
                                  f"{self.max_length} tokens")
            if len(ids) > budget:
                head = self._n_head_special
                ids = ids[:head] + ids[len(ids) - (budget - head):]
            out.append(list(ids))
        return out

    def _targets(self, targets: Sequence[str | Sequence[int]]) -> list[list[int]]:
        rows = [self.encode_target(t) if isinstance(t, str) else list(t) for t in targets]
        for r in rows:
            if not r:
                raise ConfigError("empty target: a target needs at least one token")
            if len(r) > self.max_length - (0 if self.is_encoder_decoder else 1):
                raise ConfigError(f"target of {len(r)} tokens is longer than the generator's context of {self.max_length} tokens")
        return rows

    def _causal_forward(self, ids: torch.Tensor, mask: torch.Tensor, keep: int) -> torch.Tensor:
        """Logits of the last `keep` positions, with position ids counted from each row's first real token."""
        kwargs: dict = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        if self._takes_positions:
            kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(self.device)
        if self._takes_logits_to_keep:
            kwargs["logits_to_keep"] = keep
        return self.model(**kwargs, use_cache=False).logits[:, -keep:]

    def _decoder_inputs(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        start = self.model.config.decoder_start_token_id
        if start is None:
            start = self.model.generation_config.decoder_start_token_id
        if start is None:
            raise ConfigError(f"generator {self.source}: no decoder_start_token_id in its config")
        return _pad([[start] + list(r) for r in rows], self.pad_token_id, left=False)

    # ---- scoring ---------------------------------------------------------------------------------------
    def target_logprobs(self, inputs: Sequence[str], targets: Sequence[str | Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced log p(target_t | input, target_<t): `(logp, mask)`, both (N, T), T = longest target.

        `targets` are answers (strings, encoded by `encode_target`) or token id lists. `mask` is 1 on real target
        tokens; `logp` is 0 on padding, so `logp.sum(1)` is each target's log-likelihood. Keeps gradients.
        """
        if len(inputs) != len(targets):
            raise ConfigError(f"{len(inputs)} inputs but {len(targets)} targets")
        tgt = self._targets(targets)
        lengths = [len(t) for t in tgt]
        tgt_ids, tgt_mask = _pad(tgt, self.pad_token_id, left=False)
        tgt_ids, tgt_mask = tgt_ids.to(self.device), tgt_mask.to(self.device)
        T = tgt_ids.shape[1]
        if self.is_encoder_decoder:
            src = self._encode_inputs(inputs, [0] * len(inputs))
            ids, mask = _pad(src, self.pad_token_id, left=False)
            dec_ids, _ = self._decoder_inputs(tgt)
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                decoder_input_ids=dec_ids[:, :T].to(self.device), use_cache=False).logits
        else:
            # [pad.. input | target ..pad]: inputs left-padded, targets right-padded, so every row's target starts
            # at the same column and only the last T + 1 positions' logits are needed.
            src = self._encode_inputs(inputs, lengths)
            in_ids, in_mask = _pad(src, self.pad_token_id, left=True)
            ids = torch.cat([in_ids, tgt_ids.cpu()], 1)
            mask = torch.cat([in_mask, tgt_mask.cpu()], 1)
            logits = self._causal_forward(ids, mask, T + 1)[:, :T]
        logp = torch.log_softmax(logits.float(), -1).gather(-1, tgt_ids.unsqueeze(-1)).squeeze(-1)
        return logp * tgt_mask, tgt_mask

    @torch.inference_mode()
    def cross_target_logprobs(self, inputs: Sequence[str], targets: Sequence[str | Sequence[int]], max_logits: int = 2**25,
                              prompts: EncodedPrompts | None = None,
                              rows: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
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
            if not self.is_encoder_decoder and prompts.ids.shape[1] + longest - 1 > self.max_length:
                prompts = None  # encoded with too little room for these targets: encode again with enough
        if prompts is None:
            prompts, rows = self.encode_prompts(inputs, reserve=longest), list(range(N))
        index = torch.tensor(rows, device=self.device)
        ids, mask = prompts.ids[index], prompts.mask[index]
        _, tgt_mask = _pad(tgt, self.pad_token_id, left=False)
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
            g_ids, g_mask = _pad([tgt[j] for j in group], self.pad_token_id, left=False)
            g_ids, g_mask = g_ids.to(self.device), g_mask.to(self.device)  # row i·n + j below: input i, target group[j]
            if self.is_encoder_decoder:
                dec_ids = self._decoder_inputs([tgt[j] for j in group])[0][:, :width].to(self.device)
                hidden = prompts.state[index].repeat_interleave(n, 0)
                logits = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                                    attention_mask=mask.repeat_interleave(n, 0), decoder_input_ids=dec_ids.repeat(N, 1),
                                    use_cache=False).logits
            else:
                # The cache holds each prompt but its last token: run that token and the target (but its last token),
                # so the `width` logits predict the target's tokens.
                step = torch.cat([ids[:, -1:].repeat_interleave(n, 0), g_ids[:, :-1].repeat(N, 1)], 1)
                attention = torch.cat([mask.repeat_interleave(n, 0), g_mask[:, :-1].repeat(N, 1)], 1)
                kwargs: dict = {"input_ids": step, "attention_mask": attention, "use_cache": prompts.state is not None}
                if prompts.state is not None:
                    kwargs[self._cache_arg] = _cache_rows(prompts.state, index.repeat_interleave(n))
                if self._takes_positions:
                    kwargs["position_ids"] = (attention.cumsum(-1) - 1).clamp(min=0)[:, -width:]
                logits = self.model(**kwargs).logits
            picked = torch.log_softmax(logits.float(), -1).gather(-1, g_ids.repeat(N, 1).unsqueeze(-1)).squeeze(-1)
            logp[:, group, :width] = picked.view(N, n, width)
        tgt_mask = tgt_mask.to(self.device)
        return logp * tgt_mask, tgt_mask

    @torch.inference_mode()
    def next_token_logprobs(self, inputs: Sequence[str], prefixes: Sequence[Sequence[int]]) -> torch.Tensor:
        """(N, V) log-distribution of the token after `inputs[n]` followed by the generated ids `prefixes[n]`."""
        if len(inputs) != len(prefixes):
            raise ConfigError(f"{len(inputs)} inputs but {len(prefixes)} prefixes")
        if self.is_encoder_decoder:
            if max(len(p) for p in prefixes) >= self.max_length:
                raise ConfigError(f"a prefix of {max(len(p) for p in prefixes)} tokens fills the decoder's context of {self.max_length}")
            ids, mask = _pad(self._encode_inputs(inputs, [0] * len(inputs)), self.pad_token_id, left=False)
            dec_ids, _ = self._decoder_inputs(prefixes)
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                decoder_input_ids=dec_ids.to(self.device), use_cache=False).logits
            last = torch.tensor([len(p) for p in prefixes], device=logits.device)
            logits = logits[torch.arange(len(prefixes), device=logits.device), last]
        else:
            src = self._encode_inputs(inputs, [len(p) for p in prefixes])
            ids, mask = _pad([s + list(p) for s, p in zip(src, prefixes)], self.pad_token_id, left=True)
            logits = self._causal_forward(ids, mask, 1)[:, -1]
        return torch.log_softmax(logits.float(), -1)

    # ---- generation ------------------------------------------------------------------------------------
    share_prompt_cache = True  # beam search over a causal LM: run each prompt once, not once per beam

    @torch.inference_mode()
    def encode_prompts(self, inputs: Sequence[str], reserve: int = 0) -> EncodedPrompts:
        """Run the inputs through the model once, for `generate` and `cross_target_logprobs` to share: a causal LM's
        key/value cache of each prompt but its last token (left-padded, `reserve` tokens of the context kept free
        for what follows), or a seq2seq model's encoder output."""
        if not inputs:
            raise ConfigError("no inputs to encode")
        if self.is_encoder_decoder:
            ids, mask = _pad(self._encode_inputs(inputs, [0] * len(inputs)), self.pad_token_id, left=False)
            ids, mask = ids.to(self.device), mask.to(self.device)
            return EncodedPrompts(ids, mask, self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state, 0)
        ids, mask = _pad(self._encode_inputs(inputs, [reserve] * len(inputs)), self.pad_token_id, left=True)
        ids, mask = ids.to(self.device), mask.to(self.device)
        state = None
        if ids.shape[1] > 1:
            head, head_mask = ids[:, :-1], mask[:, :-1]
            kwargs: dict = {"input_ids": head, "attention_mask": head_mask, "use_cache": True}
            if self._takes_positions:
                kwargs["position_ids"] = (head_mask.cumsum(-1) - 1).clamp(min=0)
            if self._takes_logits_to_keep:
                kwargs["logits_to_keep"] = 1
            out = self.model(**kwargs)
            state = out.get("cache", None) or out.get("past_key_values", None)
        return EncodedPrompts(ids, mask, state, reserve)

    @torch.inference_mode()
    def generate(self, inputs: Sequence[str], max_new_tokens: int = 16, num_beams: int = 4,
                 num_return_sequences: int = 4, stop_at_newline: bool = True, prompts: EncodedPrompts | None = None,
                 **generate_kwargs) -> list[list[str]]:
        """Beam-search candidate answers per input: decoded, stripped, cut at the first newline, de-duplicated,
        best first (empty answers dropped; `[""]` if nothing else is left). Generation stops at eos and, with
        `stop_at_newline`, at the end of the answer's first line instead of running on to `max_new_tokens` (the
        text after it would be cut anyway). `prompts`: the inputs already run by `encode_prompts` (beam search over
        a causal LM does that itself, so that each prompt runs once, not once per beam). Extra keyword arguments
        (e.g. `logits_processor`) go to `model.generate`; `num_return_sequences` is capped at `num_beams`."""
        num_return_sequences = max(1, min(num_return_sequences, num_beams))
        if prompts is not None and len(prompts) != len(inputs):
            raise ConfigError(f"{len(inputs)} inputs but {len(prompts)} encoded prompts")
        if prompts is not None and not self.is_encoder_decoder and prompts.ids.shape[1] + max_new_tokens > self.max_length:
            prompts = None  # encoded with too little room for max_new_tokens: encode again
        if prompts is None and self.share_prompt_cache and num_beams > 1 and not self.is_encoder_decoder:
            prompts = self.encode_prompts(inputs, reserve=max_new_tokens)
        extra: dict = {}
        if prompts is not None:
            ids, mask = prompts.ids, prompts.mask
            if self.is_encoder_decoder:
                extra["encoder_outputs"] = BaseModelOutput(last_hidden_state=prompts.state)  # generate copies it per beam
            elif prompts.state is not None:
                # generate copies each prompt num_beams times but not a cache it is given: give it one copy per beam.
                rows = torch.arange(len(inputs), device=self.device).repeat_interleave(num_beams)
                extra[self._cache_arg] = _cache_rows(prompts.state, rows)
        else:
            reserve = 0 if self.is_encoder_decoder else max_new_tokens
            ids, mask = _pad(self._encode_inputs(inputs, [reserve] * len(inputs)), self.pad_token_id, left=not self.is_encoder_decoder)
            ids, mask = ids.to(self.device), mask.to(self.device)
        stopping = StoppingCriteriaList(generate_kwargs.pop("stopping_criteria", None) or [])
        if stop_at_newline:
            stopping.append(StopAtNewline(self.tokenizer, 0 if self.is_encoder_decoder else ids.shape[1]))
        kwargs = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, "num_return_sequences": num_return_sequences,
                  "do_sample": False, "pad_token_id": self.pad_token_id, "eos_token_id": self.eos_token_id,
                  "stopping_criteria": stopping, **extra, **generate_kwargs}
        out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        if not self.is_encoder_decoder:
            out = out[:, ids.shape[1]:]
        results = []
        for n in range(len(inputs)):
            answers: list[str] = []
            for seq in out[n * num_return_sequences:(n + 1) * num_return_sequences]:
                text = first_line(self.tokenizer.decode(seq.tolist(), skip_special_tokens=True))
                if text and text not in answers:
                    answers.append(text)
            results.append(answers or [""])
        return results
