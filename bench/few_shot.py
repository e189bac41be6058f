"""Few-shot prompting for the base generator: EM/F1 of each QA mode with 0, 1 and 3 demonstrations, on the TRAIN part
of the shared NQ split (prompt choices are tuned there, never on the held-out part), with paired bootstrap CIs of
each number of shots against zero-shot, over all questions and over the answerable ones.

    python bench/few_shot.py [--limit 200] [--shots 0,1,3] [--modes closed-book,token]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SHARED_NQ, machine, write_result  # noqa: E402
from dpr_rag.data.qa import load_qa  # noqa: E402
from dpr_rag.matching import CorpusAnswerIndex, exact_match, token_f1  # noqa: E402
from dpr_rag.rag.demonstrations import few_shot_template  # noqa: E402
from dpr_rag.rag.pipeline import RagPipeline  # noqa: E402
from eval.bootstrap import paired_bootstrap  # noqa: E402

BATCH = 8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa", type=Path, default=SHARED_NQ)
    ap.add_argument("--split", type=Path, default=SHARED_NQ.with_suffix(".split.json"))
    ap.add_argument("--part", default="train", choices=("train",), help="prompts are chosen on train only")
    ap.add_argument("--limit", type=int, default=200, help="the first N questions of the part")
    ap.add_argument("--shots", default="0,1,3")
    ap.add_argument("--modes", default="closed-book,token")
    ap.add_argument("--k", type=int, default=5)
    args = ap.parse_args()
    lines = json.loads(args.split.read_text())[args.part][: args.limit]
    examples = [load_qa(args.qa)[i] for i in lines]
    questions = [e.question for e in examples]
    pipe = RagPipeline.open(k=args.k)
    corpus = CorpusAnswerIndex([p.text for p in pipe.retriever.passages])
    answerable = [corpus.contains(e.answers) for e in examples]
    print(f"{len(examples)} questions ({args.part} part, {sum(answerable)} answerable); k={args.k}\n{machine()}", flush=True)
    rows, per_question = [], {}
    for mode in args.modes.split(","):
        for shots in map(int, args.shots.split(",")):
            pipe.template = few_shot_template(shots)
            t0 = time.perf_counter()
            preds = [a.answer for s in range(0, len(questions), BATCH) for a in pipe.answer_batch(questions[s : s + BATCH], mode)]
            seconds = (time.perf_counter() - t0) / len(questions)
            em = [exact_match(p, e.answers) for p, e in zip(preds, examples, strict=True)]
            f1 = [token_f1(p, e.answers) for p, e in zip(preds, examples, strict=True)]
            per_question[(mode, shots)] = (em, f1)
            sub = [i for i, ok in enumerate(answerable) if ok]
            row = {
                "mode": mode,
                "shots": shots,
                "em": 100 * sum(em) / len(em),
                "f1": 100 * sum(f1) / len(f1),
                "em_answerable": 100 * sum(em[i] for i in sub) / max(len(sub), 1),
                "f1_answerable": 100 * sum(f1[i] for i in sub) / max(len(sub), 1),
                "seconds_per_answer": seconds,
                "examples": [
                    {"question": q, "answer": p, "gold": e.answers[:3]}
                    for q, p, e in zip(questions[:5], preds, examples, strict=False)
                ],
            }
            if shots:
                base_em, base_f1 = per_question[(mode, 0)]
                row["em_vs_0_shot"] = paired_bootstrap(em, base_em).to_dict(scale=100.0)
                row["f1_vs_0_shot"] = paired_bootstrap(f1, base_f1).to_dict(scale=100.0)
            rows.append(row)
            ci = row.get("em_vs_0_shot")
            delta = f"  EM vs 0-shot {ci['difference']:+.1f} [{ci['low']:+.1f}, {ci['high']:+.1f}]" if ci else ""
            print(
                f"{mode:>11} {shots}-shot: EM {row['em']:.1f} F1 {row['f1']:.1f} (answerable EM {row['em_answerable']:.1f} "
                f"F1 {row['f1_answerable']:.1f}), {seconds:.2f} s/answer{delta}",
                flush=True,
            )
    write_result("few_shot", {"machine": machine(), "part": args.part, "n": len(examples), "k": args.k, "rows": rows})


if __name__ == "__main__":
    main()
