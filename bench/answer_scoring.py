"""Standard RAG and closed-book answers with the prompt run once against the same answers scored from scratch, side by
side on the same questions (the shipped reader, the default retriever, k = 5, greedy):

    python bench/answer_scoring.py [--qa runs/nq/train.jsonl] [--limit 20]

`RagPipeline.answer` decodes the answer and scores log p(answer | prompt) on one key/value cache of the prompt; the peer
("from scratch", what the pipeline did before) decodes, then runs the whole prompt again to score the answer. The two
take turns question by question (this machine's speed drifts within minutes), must give the same answers and scores
(printed), and the ratio of their mean seconds is the speed-up. Questions: the shared split's train part if given,
else the embedded FanOutQA dev questions.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.common import machine, write_result  # noqa: E402
from dpr_rag.data.qa import load_fanoutqa, load_qa  # noqa: E402
from dpr_rag.rag.pipeline import RagPipeline  # noqa: E402


def from_scratch(pipe: RagPipeline, question: str, mode: str) -> tuple[str, float]:
    """The answer decoded, then scored by a second pass over the whole prompt."""
    if mode == "standard":
        hits, _ = pipe.retrieve([question])
        prompt = pipe._joined_inputs([question], hits)[0]
    else:
        prompt = pipe.template.render(question)
    with torch.no_grad():
        text = pipe.generator.generate([prompt], pipe.max_new_tokens, num_beams=1, num_return_sequences=1)[0][0]
        logp, _ = pipe.generator.target_logprobs([prompt], [text])
    return text, float(logp.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa", help="questions (default: the embedded FanOutQA dev questions)")
    ap.add_argument("--limit", type=int, default=20)
    args = ap.parse_args()
    questions = [e.question for e in (load_qa(args.qa) if args.qa else load_fanoutqa())][: args.limit]
    pipe = RagPipeline.open()
    pipe.answer(questions[0], "standard")  # warm-up: index, generator, first-call allocations
    rows = {}
    for mode in ("standard", "closed-book"):
        once_s = scratch_s = 0.0
        same, max_gap = 0, 0.0
        for q in questions:
            t0 = time.perf_counter()
            answer = pipe.answer(q, mode)
            t1 = time.perf_counter()
            text, logp = from_scratch(pipe, q, mode)
            t2 = time.perf_counter()
            once_s, scratch_s = once_s + t1 - t0, scratch_s + t2 - t1
            same += answer.answer == text
            max_gap = max(max_gap, abs(answer.logprob - logp))
        n = len(questions)
        rows[mode] = {
            "questions": n,
            "prompt_once_s": round(once_s / n, 3),
            "from_scratch_s": round(scratch_s / n, 3),
            "speedup": round(scratch_s / once_s, 2),
            "same_answers": same,
            "max_logprob_gap": round(max_gap, 5),
        }
        print(
            f"{mode:>11}: prompt once {once_s / n:.2f} s, from scratch {scratch_s / n:.2f} s an answer "
            f"({scratch_s / once_s:.2f}x); same answers {same}/{n}, largest score gap {max_gap:.1e}",
            flush=True,
        )
    write_result("answer_scoring", {"machine": machine(), "qa": Path(args.qa).name if args.qa else "fanoutqa", **rows})


if __name__ == "__main__":
    main()
