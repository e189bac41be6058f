"""The retriever ablation of issue 14: which training data and negatives lift dense retrieval on held-out NQ?

Each recipe trains a DPR dual encoder from all-MiniLM-L6-v2 on the same questions (the shared split's train part plus
FanOutQA, distant supervision over the default corpus with gold-title positives; the app's example questions left out)
with the same seed, schedule and batch; then dense top-k accuracy of the held-out part over the whole corpus is
compared with the untrained encoder and with the recipe before it (paired bootstrap, 1,000 resamples):

    in-batch            in-batch negatives only
    + bm25              one BM25 hard negative per question (DPR)
    + dense             one BM25 and one dense hard negative (the untrained encoder's top hits without an answer)
    + synthetic         the same, plus synthetic questions (python -m dpr_rag.generate_questions) in training
    query-side          the default recipe of `python -m dpr_rag.train`: a LoRA adapter on the question tower only, trained
                        against the frozen index (full-corpus softmax, every answer-bearing passage of the starting
                        encoder's top 100 a positive; dpr_rag/training/query_side.py), its own default settings
    query-side+synthetic  the same with the synthetic questions added to its training part

    python bench/retriever_ablation.py --train runs/nq/train.jsonl --heldout runs/nq/heldout.jsonl \\
        --synthetic runs/qg/synthetic-4k.json --exclude runs/app_examples.jsonl [--recipes in-batch,bm25,dense,synthetic]

Per-question ranks are kept in the results JSON (`--out`), so a later call with other `--recipes` adds to it and the
table compares them all. Held-out questions are never trained on, tuned on or used to pick a checkpoint (best/ is
chosen by the dev part of the training questions).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpr_rag.data.qa import load_qa  # noqa: E402
from dpr_rag.matching import CorpusAnswerIndex, first_hit_rank  # noqa: E402
from dpr_rag.retrieval.query_adapter import BASE_DEFAULT  # noqa: E402
from dpr_rag.retrieval.searcher import Searcher  # noqa: E402
from dpr_rag.storage import atomic_file  # noqa: E402
from dpr_rag.training.query_side import QuerySideConfig, train_query_side  # noqa: E402
from dpr_rag.training.questions import training_questions  # noqa: E402
from dpr_rag.training.trainer import TrainConfig, train  # noqa: E402
from eval.bootstrap import paired_bootstrap  # noqa: E402

KS = (1, 5, 20, 100)
RECIPES = {
    "in-batch": {"hard_negatives": 0},
    "bm25": {"hard_negatives": 1},
    "dense": {"hard_negatives": 2, "negatives": "both"},
    "synthetic": {"hard_negatives": 2, "negatives": "both", "synthetic": True},
    "query-side": {"query_side": True},
    "query-side+synthetic": {"query_side": True, "synthetic": True},
}


def ranks(searcher: Searcher, questions) -> list[int | None]:
    hits = searcher.retriever("dense").search([e.question for e in questions], max(KS))
    return [first_hit_rank(e.answers, [h.passage.text for h in hs]) for e, hs in zip(questions, hits, strict=True)]


def hits_at(rank_list: list[int | None], k: int) -> list[float]:
    return [float(r is not None and r <= k) for r in rank_list]


def table(results: dict) -> str:
    answerable = results["answerable"]
    names = list(results["runs"])
    lines = [
        f"{len(answerable)} held-out questions ({sum(answerable)} answerable from the corpus); dense top-k accuracy, %",
        "",
        "| encoder | " + " | ".join(f"top-{k}" for k in KS) + " | top-20, answerable | top-20 − untrained | top-20 − previous |",
        "|---|" + "---:|" * (len(KS) + 3),
    ]
    base = results["runs"]["untrained"]["ranks"]
    for i, name in enumerate(names):
        r = results["runs"][name]["ranks"]
        accs = [100 * sum(hits_at(r, k)) / len(r) for k in KS]
        ans = 100 * sum(h for h, a in zip(hits_at(r, 20), answerable, strict=True) if a) / max(sum(answerable), 1)
        cis = []
        for other in (base, results["runs"][names[i - 1]]["ranks"] if i > 1 else None):
            if i == 0 or other is None:
                cis.append("")
                continue
            ci = paired_bootstrap(hits_at(r, 20), hits_at(other, 20))
            cis.append(f"{100 * ci.difference:+.1f} [{100 * ci.low:+.1f}, {100 * ci.high:+.1f}]")
        lines.append(f"| {name} | " + " | ".join(f"{a:.1f}" for a in accs) + f" | {ans:.1f} | {cis[0]} | {cis[1]} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="training questions (the shared split's train part)")
    ap.add_argument("--heldout", required=True, help="held-out questions (reported on, never trained on)")
    ap.add_argument("--synthetic", help="DPR JSON of synthetic questions, for the synthetic recipe")
    ap.add_argument("--exclude", nargs="*", default=[], help="QA files never trained on (the app's examples)")
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--epochs", type=int, default=2, help="DPR recipes (query-side: its own defaults)")
    ap.add_argument("--batch-size", type=int, default=16, help="DPR recipes")
    ap.add_argument("--lr", type=float, default=2e-5, help="DPR recipes")
    ap.add_argument("--work", default="runs/ablation")
    ap.add_argument("--out", default="bench/results/retriever_ablation.json")
    args = ap.parse_args()

    heldout = load_qa(args.heldout)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    base = Searcher.open(None, model=BASE_DEFAULT, show_progress=True)  # the untrained all-MiniLM-L6-v2
    corpus_answers = CorpusAnswerIndex([p.text for p in base.passages])
    results["answerable"] = [corpus_answers.contains(e.answers) for e in heldout]
    if "untrained" not in results["runs"]:
        results["runs"]["untrained"] = {"ranks": ranks(base, heldout)}
    questions = training_questions([args.train], fanoutqa=True, exclude=args.exclude)
    for name in args.recipes.split(","):
        recipe = dict(RECIPES[name])
        synthetic = args.synthetic if recipe.pop("synthetic", False) else None
        if name.endswith("synthetic") and not synthetic:
            raise SystemExit("the synthetic recipe needs --synthetic FILE")
        folder = Path(args.work) / name
        t0 = time.perf_counter()
        if recipe.pop("query_side", False):
            qs_config = QuerySideConfig(out=str(folder), synthetic=synthetic, **recipe)
            qs_result = train_query_side(qs_config, examples=questions)
            steps, best_dev = qs_result.steps, qs_result.best_dev_accuracy
        else:
            config = TrainConfig(
                out=str(folder),
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                synthetic=synthetic,
                gold_title_positives=True,
                **recipe,
            )
            result = train(config, examples=questions)
            steps, best_dev = result.steps, result.best_dev_accuracy
        seconds = time.perf_counter() - t0
        run = {"ranks": ranks(Searcher.open(None, model=str(folder / "best")), heldout)}
        run.update(recipe=RECIPES[name], synthetic=synthetic, train_seconds=round(seconds), steps=steps)
        run["best_dev_top20"] = best_dev
        results["runs"][name] = run
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(out) as f:
            json.dump(results, f)
        print(name, {k: v for k, v in run.items() if k != "ranks"}, flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
