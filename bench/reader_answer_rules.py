"""Dev EM of a `python -m dpr_rag.train_reader` run's best/ reader under each answer rule (DPR's "passage": the
selected passage's best span; "joint": the best (passage, span) over all passages; "prior": "joint" times the
retriever's p(z|x)), on the run's own dev questions (data/dev.json: split from the training questions, never the
held-out ones), so the rule can be chosen without touching evaluation data:

    python bench/reader_answer_rules.py runs/extractive-train [--k 10]

Each dev question is answered as at answer time: the default corpus's dense top k, the retriever's p(z|x) =
softmax(cos / τ), then the reader (the extractive mode of `RagPipeline`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpr_rag.data.qa import load_dpr_json  # noqa: E402
from dpr_rag.extractive.model import ANSWER_RULES, ExtractiveReader  # noqa: E402
from dpr_rag.matching import exact_match  # noqa: E402
from dpr_rag.rag.pipeline import RagPipeline  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a train_reader --out folder")
    ap.add_argument("--k", type=int, default=10, help="passages read per question (default 10, as dpr_rag.answer)")
    args = ap.parse_args()
    dev = load_dpr_json(args.run / "data" / "dev.json")
    pipeline = RagPipeline.open(k=args.k, load_generator=False, extractive_reader=args.run / "best")
    reader: ExtractiveReader = pipeline.extractive_reader  # type: ignore[assignment]
    for rule in ANSWER_RULES:
        reader.answer_rule = rule
        right = sum(exact_match(pipeline.answer(e.question, "extractive").answer, e.answers) for e in dev)
        print(f"{rule}: dev EM {100 * right / len(dev):.1f} ({len(dev)} dev questions, dense top {args.k})", flush=True)


if __name__ == "__main__":
    main()
