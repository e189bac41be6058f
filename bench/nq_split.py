"""Write the shared NQ-open questions' fixed split as two question files, for `--qa` options:

    python bench/nq_split.py --out runs/nq     # -> runs/nq/train.jsonl (900), runs/nq/heldout.jsonl (900)

The split (`../shared/data/nq-open-efficientqa-dev.split.json`) is by question: train on train.jsonl, report on
heldout.jsonl, and never tune on it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SHARED_NQ  # noqa: E402
from dpr_rag.storage import atomic_file  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa", type=Path, default=SHARED_NQ)
    ap.add_argument("--split", type=Path, default=SHARED_NQ.with_suffix(".split.json"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    lines = args.qa.read_text(encoding="utf-8").splitlines()
    args.out.mkdir(parents=True, exist_ok=True)
    split = json.loads(args.split.read_text())
    for part in ("train", "heldout"):
        numbers = split[part]
        with atomic_file(args.out / f"{part}.jsonl") as f:
            f.writelines(lines[i] + "\n" for i in numbers)
        print(f"{args.out / part}.jsonl: {len(numbers)} questions")


if __name__ == "__main__":
    main()
