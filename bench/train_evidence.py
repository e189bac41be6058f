"""Does a BM25 hard negative help? Train DPR on half of a QA set and measure dense top-k accuracy on the
other half over the full corpus, for: the untrained encoder, in-batch negatives only, in-batch + 1 BM25
hard negative. Same data, seed, steps and settings otherwise.

    python bench/train_evidence.py --qa ../shared/data/nq-open-efficientqa-dev.jsonl [--epochs 3] [--batch-size 16]

Writes bench/results/train_evidence.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from dpr_rag.data.qa import load_qa
from dpr_rag.matching import CorpusAnswerIndex, first_hit_rank
from dpr_rag.retrieval.searcher import Searcher
from dpr_rag.training.distant_supervision import split_train_dev
from dpr_rag.training.trainer import TrainConfig, train

KS = (1, 5, 20, 100)


def accuracy(searcher: Searcher, test, corpus_has_answer: list[bool]) -> dict:
    hits = searcher.retriever("dense").search([e.question for e in test], max(KS))
    ranks = [first_hit_rank(e.answers, [h.passage.text for h in hs]) for e, hs in zip(test, hits, strict=True)]
    n_ans = sum(corpus_has_answer)
    out = {}
    for k in KS:
        ok = [r is not None and r <= k for r in ranks]
        out[f"top{k}"] = round(100 * sum(ok) / len(test), 2)
        out[f"top{k}_answerable"] = round(
            100 * sum(o for o, a in zip(ok, corpus_has_answer, strict=True) if a) / max(n_ans, 1), 2
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qa", required=True)
    parser.add_argument("--corpus")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--work", default="/tmp/dpr_train_evidence")
    parser.add_argument("--out", default="bench/results/train_evidence.json")
    args = parser.parse_args()

    qa = load_qa(args.qa)
    train_q, test_q = split_train_dev(qa, 0.5, seed=0)  # no question in both halves
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    train_file = work / "train_questions.jsonl"
    train_file.write_text("".join(json.dumps({"question": e.question, "answer": e.answers}) + "\n" for e in train_q))
    base = Searcher.open(args.corpus, show_progress=True)
    bm25 = base.retriever("bm25")
    corpus_answers = CorpusAnswerIndex([p.text for p in base.passages])
    answerable = [corpus_answers.contains(e.answers) for e in test_q]
    results = {
        "qa": args.qa,
        "n_train_questions": len(train_q),
        "n_test_questions": len(test_q),
        "n_test_answerable": sum(answerable),
        "settings": vars(args),
        "runs": {},
    }
    results["runs"]["untrained"] = accuracy(base, test_q, answerable)
    results["runs"]["bm25"] = {}
    bm_hits = bm25.search([e.question for e in test_q], max(KS))
    bm_ranks = [first_hit_rank(e.answers, [h.passage.text for h in hs]) for e, hs in zip(test_q, bm_hits, strict=True)]
    results["runs"]["bm25"] = {
        f"top{k}": round(100 * sum(r is not None and r <= k for r in bm_ranks) / len(test_q), 2) for k in KS
    }
    print(json.dumps(results["runs"]), flush=True)
    for name, hard in (("in-batch", 0), ("in-batch + 1 BM25 hard negative", 1)):
        t0 = time.perf_counter()
        out = work / f"model-h{hard}"
        result = train(
            TrainConfig(
                out=str(out),
                qa=str(train_file),
                corpus=args.corpus,
                epochs=args.epochs,
                batch_size=args.batch_size,
                hard_negatives=hard,
                lr=args.lr,
                dev_fraction=0.1,
            )
        )
        seconds = time.perf_counter() - t0
        run = accuracy(Searcher.open(args.corpus, model=str(out)), test_q, answerable)
        run.update(train_seconds=round(seconds, 1), steps=result.steps, best_dev_pool_top20=result.best_dev_accuracy)
        results["runs"][name] = run
        print(name, json.dumps(run), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\n{len(test_q)} test questions ({sum(answerable)} answerable in the corpus); top-k accuracy, %")
    print("| encoder | " + " | ".join(f"top-{k}" for k in KS) + " | top-20 (answerable) |")
    print("|---|" + "---|" * (len(KS) + 1))
    for name, run in results["runs"].items():
        print(
            f"| {name} | "
            + " | ".join(f"{run[f'top{k}']:.1f}" for k in KS)
            + f" | {run.get('top20_answerable', float('nan')):.1f} |"
        )


if __name__ == "__main__":
    main()
