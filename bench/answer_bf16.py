"""bf16 autocast against fp32 for answering one question at a time, as the app and `python -m dpr_rag.answer` do (the
shipped reader, the default retriever, k = 5, greedy), side by side on the same questions:

    python bench/answer_bf16.py [--qa runs/nq/train.jsonl] [--limit 12] [--modes standard,closed-book]

`bench/bf16_speed.py` times one large forward pass (5 x 200 tokens), where bf16 wins on CPUs with AVX512-BF16/AMX;
answering a single question is a prompt plus a few decoding steps of one row, and autocast casts the fp32 weights
again at every step. The two settings take turns question by question; the ratio of their mean seconds is printed
(above 1: bf16 is faster), with how many answers they share.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bench_questions, machine, take_turns, write_result  # noqa: E402
from dpr_rag.rag.pipeline import RagPipeline  # noqa: E402


def answerer(pipe: RagPipeline, mode: str, bf16: bool) -> Callable[[str], str]:
    """Answer one question in `mode` with bf16 autocast on or off."""

    def run(question: str) -> str:
        pipe.bf16 = bf16
        return pipe.answer(question, mode).answer

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa", help="questions (default: the embedded FanOutQA dev questions)")
    ap.add_argument("--limit", type=int, default=12)
    ap.add_argument("--modes", default="standard,closed-book")
    args = ap.parse_args()
    questions = bench_questions(args.qa, args.limit)
    pipe = RagPipeline.open()
    rows = {}
    for mode in args.modes.split(","):
        methods = {"fp32": answerer(pipe, mode, bf16=False), "bf16": answerer(pipe, mode, bf16=True)}
        for run in methods.values():  # warm-up of both settings
            run(questions[0])
        mean, out = take_turns(questions, methods)
        n = len(questions)
        same = sum(a == b for a, b in zip(out["fp32"], out["bf16"], strict=True))
        rows[mode] = {
            "questions": n,
            "fp32_s": round(mean["fp32"], 3),
            "bf16_s": round(mean["bf16"], 3),
            "bf16_speedup": round(mean["fp32"] / mean["bf16"], 2),
            "same_answers": same,
        }
        print(
            f"{mode:>11}: fp32 {mean['fp32']:.2f} s, bf16 autocast {mean['bf16']:.2f} s an answer "
            f"({mean['fp32'] / mean['bf16']:.2f}x); same answers {same}/{n}",
            flush=True,
        )
    write_result("answer_bf16", {"machine": machine(), "qa": Path(args.qa).name if args.qa else "fanoutqa", **rows})


if __name__ == "__main__":
    main()
