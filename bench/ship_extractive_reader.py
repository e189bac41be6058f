"""Ship a `python -m dpr_rag.train_reader` run's best/ reader as the package's default extractive reader
(`dpr_rag/extractive/shipped/`, or `--out DIR`), compact: fp16 weights without the (frozen) word embeddings, which
load from the embedded MiniLM again (~21 MB instead of ~90 MB), with the answer rule chosen on dev. A model card
(README.md) already in the folder is kept; it is written by hand.

    python bench/ship_extractive_reader.py runs/ext-all-l3 --answer-rule prior --max-length 96
    python bench/ship_extractive_reader.py runs/extractive-train --answer-rule joint --out runs/extractive-joint
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpr_rag.extractive.model import ANSWER_RULES, READER_WEIGHTS, SHIPPED, ExtractiveReader  # noqa: E402
from dpr_rag.storage import atomic_dir  # noqa: E402

CARD = "README.md"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a train_reader --out folder (its best/ is shipped)")
    ap.add_argument("--answer-rule", choices=ANSWER_RULES, help="ship it with this answer rule (default: as trained)")
    ap.add_argument(
        "--max-length", type=int, help="tokens read per passage at answer time (default: as trained; fewer read faster)"
    )
    ap.add_argument("--out", type=Path, default=SHIPPED, help="the folder to write (default: the package's shipped/)")
    args = ap.parse_args()
    reader = ExtractiveReader.from_pretrained(args.run / "best")
    reader.answer_rule = args.answer_rule or reader.answer_rule
    reader.max_length = args.max_length or reader.max_length
    card = (args.out / CARD).read_text() if (args.out / CARD).is_file() else None
    with atomic_dir(args.out) as tmp:
        reader.save_pretrained(tmp, compact=True)
        if card is not None:
            (tmp / CARD).write_text(card)
        shutil.copy(args.run / "loss.png", tmp / "training.png")
    size = (args.out / READER_WEIGHTS).stat().st_size / 2**20
    print(
        f"shipped {args.run / 'best'} -> {args.out} ({size:.1f} MiB of weights, answer rule {reader.answer_rule}, "
        f"{reader.max_length} tokens a passage)"
    )


if __name__ == "__main__":
    main()
