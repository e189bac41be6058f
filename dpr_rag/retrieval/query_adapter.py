"""A question tower fine-tuned over a frozen base encoder: a LoRA adapter (peft) on the query tower only.

`python -m dpr_rag.train` (the query-side recipe) writes such a folder: `dpr_rag_query_adapter.json` (the base
encoder, the training recipe) and peft's `adapter_config.json` + `adapter_model.safetensors` (~1 MB). Loading it
gives a dual encoder whose passage tower is the base itself, so the corpus index built for the base (cached, or the
shipped default embeddings) serves it unchanged; the query tower is the base with the adapter merged in (inference
at the base's speed, ONNX export included). `DualEncoder.from_pretrained` recognises the folder.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from torch import nn

from ..errors import DprRagError
from ..storage import atomic_dir, read_json

QUERY_ADAPTER_CONFIG = "dpr_rag_query_adapter.json"
BASE_DEFAULT = "dpr-rag:base-encoder"  # the embedded all-MiniLM-L6-v2, wherever its package put it
# The retriever trained by this project and shipped as the default dense model (its model card is README.md there).
SHIPPED_QUERY_ADAPTER = Path(__file__).resolve().parent / "shipped"
# Names that mean the untrained base: the embedded copy of all-MiniLM-L6-v2 serves them without a download.
BASE_NAMES = (BASE_DEFAULT, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def is_query_adapter_folder(folder: str | os.PathLike) -> bool:
    return (Path(folder) / QUERY_ADAPTER_CONFIG).is_file()


def query_adapter_base(folder: str | os.PathLike) -> str | None:
    """The base encoder a query adapter was trained on: a hub id or folder, or None for the embedded default."""
    config = read_json(Path(folder) / QUERY_ADAPTER_CONFIG)
    base = config.get("base") if isinstance(config, dict) else None
    return None if base in (None, BASE_DEFAULT) else str(base)


def save_query_adapter(query_model: nn.Module, base: str | None, out: str | os.PathLike, recipe: dict) -> None:
    """Write the LoRA adapter of `query_model` (a peft model) and its base's name (`BASE_DEFAULT` for the embedded
    default) to `out`, atomically."""
    with atomic_dir(out) as tmp:
        query_model.save_pretrained(tmp)  # type: ignore[operator]
        (tmp / "README.md").unlink(missing_ok=True)  # peft's empty model-card template
        config_path = tmp / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = base or BASE_DEFAULT  # not this machine's cache path
        config_path.write_text(json.dumps(config, indent=2))
        (tmp / QUERY_ADAPTER_CONFIG).write_text(json.dumps({"base": base or BASE_DEFAULT, "recipe": recipe}, indent=2))


def merge_query_adapter(model: nn.Module, folder: str | os.PathLike) -> nn.Module:
    """`model` (the base's query tower transformer) with the adapter of `folder` merged into its weights."""
    from peft import PeftModel

    try:
        with warnings.catch_warnings():  # peft calls a transformers method deprecated in v5: not the user's concern
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise DprRagError(f"cannot load the query adapter in {folder}: {str(e).splitlines()[0][:200]}") from e
