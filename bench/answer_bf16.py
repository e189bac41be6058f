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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, write_result  # noqa: E402
from dpr_rag.data.qa import load_fanoutqa, load_qa  # noqa: E402
from dpr_rag.rag.pipeline import RagPipeline  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa", help="questions (default: the embedded FanOutQA dev questions)")
    ap.add_argument("--limit", type=int, default=12)
    ap.add_argument("--modes", default="standard,closed-book")
    args = ap.parse_args()
    questions = [e.question for e in (load_qa(args.qa) if args.qa else load_fanoutqa())][: args.limit]
    pipe = RagPipeline.open()
    rows = {}
    for mode in args.modes.split(","):
        for bf16 in (False, True):  # warm-up of both settings
            pipe.bf16 = bf16
            pipe.answer(questions[0], mode)
        seconds = {False: 0.0, True: 0.0}
        answers: dict[bool, list[str]] = {False: [], True: []}
        for q in questions:
            for bf16 in (False, True):
                pipe.bf16 = bf16
                t0 = time.perf_counter()
                answers[bf16].append(pipe.answer(q, mode).answer)
                seconds[bf16] += time.perf_counter() - t0
        n = len(questions)
        same = sum(a == b for a, b in zip(answers[False], answers[True], strict=True))
        rows[mode] = {
            "questions": n,
            "fp32_s": round(seconds[False] / n, 3),
            "bf16_s": round(seconds[True] / n, 3),
            "bf16_speedup": round(seconds[False] / seconds[True], 2),
            "same_answers": same,
        }
        print(
            f"{mode:>11}: fp32 {seconds[False] / n:.2f} s, bf16 autocast {seconds[True] / n:.2f} s an answer "
            f"({seconds[False] / seconds[True]:.2f}x); same answers {same}/{n}",
            flush=True,
        )
    write_result("answer_bf16", {"machine": machine(), "qa": Path(args.qa).name if args.qa else "fanoutqa", **rows})


if __name__ == "__main__":
    main()
