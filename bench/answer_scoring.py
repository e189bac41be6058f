"""Answer and score with the prompt run once against the same answer scored from scratch, side by side on the same
prompts (the shipped reader, the default retriever, k = 5, greedy), for standard RAG (k passages in one prompt) and
closed-book (the question alone):

    python bench/answer_scoring.py [--qa runs/nq/train.jsonl] [--limit 20]

"Prompt once" (`dpr_rag.rag.scored_answers.answer_on_prompt_cache`) decodes the answer and scores log p(answer |
prompt) on one key/value cache of the prompt; "from scratch" (`answer_from_scratch`) decodes, then runs the whole
prompt again to score the answer.
The two take turns prompt by prompt (this machine's speed drifts within minutes), must give the same answers and
scores (printed), and the ratio of their mean seconds is the speed-up. The pipeline uses the faster one for each mode.
Questions: the shared split's train part if given, else the embedded FanOutQA dev questions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.common import bench_questions, machine, take_turns, write_result  # noqa: E402
from dpr_rag.rag.pipeline import RagPipeline  # noqa: E402
from dpr_rag.rag.scored_answers import answer_from_scratch, answer_on_prompt_cache  # noqa: E402


def prompts_for(pipe: RagPipeline, questions: list[str], mode: str) -> list[str]:
    """Each question's prompt in this mode (retrieval happens here, outside the timed part)."""
    if mode == "closed-book":
        return [pipe.template.render(q) for q in questions]
    hits, _ = pipe.retrieve(questions)
    return pipe._joined_inputs(questions, hits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa", help="questions (default: the embedded FanOutQA dev questions)")
    ap.add_argument("--limit", type=int, default=20)
    args = ap.parse_args()
    questions = bench_questions(args.qa, args.limit)
    pipe = RagPipeline.open()
    pipe.answer(questions[0], "standard")  # warm-up: index, generator, first-call allocations
    rows = {}
    for mode in ("standard", "closed-book"):
        with torch.no_grad():
            mean, out = take_turns(
                prompts_for(pipe, questions, mode),
                {
                    "once": lambda p: answer_on_prompt_cache(pipe.generator, [p], pipe.max_new_tokens, 1),
                    "scratch": lambda p: answer_from_scratch(pipe.generator, [p], pipe.max_new_tokens, 1),
                },
            )
        once_s, scratch_s = mean["once"], mean["scratch"]
        same = sum(a[0] == b[0] for a, b in zip(out["once"], out["scratch"], strict=True))
        max_gap = max(abs(a[1][0] - b[1][0]) for a, b in zip(out["once"], out["scratch"], strict=True))
        n = len(questions)
        rows[mode] = {
            "questions": n,
            "prompt_once_s": round(once_s, 3),
            "from_scratch_s": round(scratch_s, 3),
            "speedup": round(scratch_s / once_s, 2),
            "same_answers": same,
            "max_logprob_gap": round(max_gap, 5),
        }
        print(
            f"{mode:>11}: prompt once {once_s:.2f} s, from scratch {scratch_s:.2f} s an answer "
            f"({scratch_s / once_s:.2f}x); same answers {same}/{n}, largest score gap {max_gap:.1e}",
            flush=True,
        )
    write_result("answer_scoring", {"machine": machine(), "qa": Path(args.qa).name if args.qa else "fanoutqa", **rows})


if __name__ == "__main__":
    main()
