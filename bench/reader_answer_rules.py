"""Dev EM of a `python -m dpr_rag.train_reader` run's best/ reader under each answer rule (DPR's "passage": the
selected passage's best span; "joint": the best (passage, span) over all passages), on the run's own dev questions
(data/dev.json: split from the training questions, never the held-out ones), so the rule can be chosen without
touching evaluation data:

    python bench/reader_answer_rules.py runs/extractive-train
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpr_rag.data.qa import load_dpr_json  # noqa: E402
from dpr_rag.extractive.model import ANSWER_RULES, ExtractiveReader  # noqa: E402
from dpr_rag.training.reader_trainer import dev_exact_match  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a train_reader --out folder")
    args = ap.parse_args()
    reader = ExtractiveReader.from_pretrained(args.run / "best")
    dev = load_dpr_json(args.run / "data" / "dev.json")
    for rule in ANSWER_RULES:
        reader.answer_rule = rule
        print(f"{rule}: dev EM {dev_exact_match(reader, dev):.1f} ({len(dev)} dev questions, all their candidates)", flush=True)


if __name__ == "__main__":
    main()
