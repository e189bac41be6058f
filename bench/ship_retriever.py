"""Ship a `python -m dpr_rag.train` (query-side) run's best/ adapter as the package's default dense model
(`dpr_rag/retrieval/shipped/`, or `--out DIR`). `DualEncoder.from_pretrained(None)` then loads all-MiniLM-L6-v2 with
this adapter merged into its question tower; the passage tower, and so the default corpus's shipped embeddings and
every cached index, stay those of the base. A model card (README.md) already in the folder is kept; it is written by
hand.

    python bench/ship_retriever.py runs/qs-all
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpr_rag.retrieval.query_adapter import SHIPPED_QUERY_ADAPTER, is_query_adapter_folder  # noqa: E402
from dpr_rag.storage import atomic_dir  # noqa: E402

CARD = "README.md"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a dpr_rag.train --out folder of the query-side recipe (its best/ is shipped)")
    ap.add_argument("--out", type=Path, default=SHIPPED_QUERY_ADAPTER, help="the folder to write (default: the package's)")
    args = ap.parse_args()
    best = args.run / "best"
    if not is_query_adapter_folder(best):
        raise SystemExit(f"{best}: not a query-adapter folder (train it with python -m dpr_rag.train --recipe query-side)")
    card = (args.out / CARD).read_text() if (args.out / CARD).is_file() else None
    with atomic_dir(args.out) as tmp:
        for f in best.iterdir():
            if f.name != CARD:
                shutil.copy(f, tmp / f.name)
        if card is not None:
            (tmp / CARD).write_text(card)
        shutil.copy(args.run / "loss.png", tmp / "training.png")
    size = sum(f.stat().st_size for f in args.out.iterdir()) / 2**20
    print(f"shipped {best} -> {args.out} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()
