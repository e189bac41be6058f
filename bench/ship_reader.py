"""Copy a RAG training run's best/ reader into the package as the shipped default (`dpr_rag/rag/reader/`), its LoRA
weights stored as float16 (half the size; loaded into the fp32 model they change no answer we measured):

    python bench/ship_reader.py runs/reader-all

Only the adapter and rag_config.json are copied (the model card, reader/README.md, is written by hand); the folder is
replaced atomically.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from dpr_rag.rag.default_generator import SHIPPED_READER  # noqa: E402
from dpr_rag.rag.lora import ADAPTER_CONFIG, is_adapter_folder  # noqa: E402
from dpr_rag.rag.rag_folder import RAG_CONFIG, rag_folder  # noqa: E402

WEIGHTS = "adapter_model.safetensors"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a train_rag --out folder (its best/ is shipped)")
    args = ap.parse_args()
    source = rag_folder(args.run)
    if not is_adapter_folder(source / "generator"):
        raise SystemExit(f"{source}/generator is not a LoRA adapter (train with --lora-rank)")
    generator = SHIPPED_READER / "generator"
    generator.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / RAG_CONFIG, SHIPPED_READER / RAG_CONFIG)
    shutil.copy(source / "generator" / ADAPTER_CONFIG, generator / ADAPTER_CONFIG)
    weights = {k: v.to(torch.float16) for k, v in load_file(source / "generator" / WEIGHTS).items()}
    tmp = generator / f".{WEIGHTS}.tmp"
    save_file(weights, tmp, metadata={"format": "pt"})
    tmp.chmod(0o644)
    tmp.replace(generator / WEIGHTS)
    size = (generator / WEIGHTS).stat().st_size / 2**20
    print(f"shipped {source} -> {SHIPPED_READER} ({sum(v.numel() for v in weights.values()):,} parameters, {size:.1f} MiB)")


if __name__ == "__main__":
    main()
