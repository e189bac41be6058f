"""LoRA adapters on the generator (Hu et al. 2021, through `peft`): W x + (α/r) B A x, with A (r×d) and B (d×r) the only
trained weights of every linear layer (`target_modules="all-linear"`: attention and MLP, not the LM head).

Use it to train a reader on a CPU: Gemma 3 270M with r=16 trains 3.8M of its 272M parameters, and the result is an
adapter folder of a few MB (`adapter_config.json` + `adapter_model.safetensors`, peft's format) instead of a full copy.
An adapter folder names its base model; the embedded default is written as `BASE_DEFAULT` rather than as the
cache path it was loaded from, so the folder works on any machine. `Generator.from_pretrained(adapter_folder)` loads
the base, applies the adapter and merges it (inference then runs at the base model's speed).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import cast

import torch
from transformers import PreTrainedModel

from ..errors import DprRagError
from .default_generator import default_generator_path

ADAPTER_CONFIG = "adapter_config.json"
BASE_DEFAULT = "dpr-rag:default-generator"  # the embedded Gemma 3 270M, wherever its cache is


def is_adapter_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base(path: str | os.PathLike) -> str:
    """The base model an adapter folder was trained on (a hub id or folder; the default generator's cache path)."""
    try:
        base = json.loads((Path(path) / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DprRagError(f"{Path(path) / ADAPTER_CONFIG}: not a peft adapter config ({e})") from e
    return default_generator_path() if base in (BASE_DEFAULT, None) else str(base)


def add_lora(model: PreTrainedModel, rank: int, alpha: float | None = None, dropout: float = 0.0) -> PreTrainedModel:
    """`model` with fresh LoRA adapters of rank `rank` on every linear layer (B = 0: the output is unchanged at first);
    only the adapters require gradients."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=alpha or 2 * rank, lora_dropout=dropout, target_modules="all-linear")  # type: ignore[arg-type]
    with warnings.catch_warnings():  # peft calls a transformers method deprecated in v5: not the user's concern
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return cast(PreTrainedModel, get_peft_model(model, config))


def load_lora(model: PreTrainedModel, folder: str | os.PathLike, trainable: bool = False) -> PreTrainedModel:
    """`model` with the adapter of `folder` applied (trainable: to continue training it; else merged into the weights)."""
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(model, str(folder), is_trainable=trainable)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise DprRagError(f"cannot load the adapter in {folder}: {e}") from e
    return cast(PreTrainedModel, peft_model if trainable else peft_model.merge_and_unload())


def save_lora(model: torch.nn.Module, out: Path, base: str, default_base: bool) -> None:
    """Write the adapter of a peft `model` into the (fresh) folder `out`, naming `base` (or `BASE_DEFAULT`) as its base."""
    model.save_pretrained(out)  # type: ignore[operator]
    config_path = out / ADAPTER_CONFIG
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = BASE_DEFAULT if default_base else base
    config_path.write_text(json.dumps(config, indent=2))


def is_lora(model: torch.nn.Module) -> bool:
    return hasattr(model, "peft_config")
