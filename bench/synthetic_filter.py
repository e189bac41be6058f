"""A stricter round trip for synthetic questions already generated (issue 14): keep a question only if a retriever
ranks its source passage in the top k (PAQ / Promptagator's consistency filter, tightened after the fact).

`python -m dpr_rag.generate_questions` keeps a question when BM25 puts its source passage in the top 20 (its
default), which lets through questions as vague as "What is the name of the fish?". This rereads its DPR JSON (or the
kept lines of its FILE.generated.jsonl log, for a run stopped early) and
writes the subset whose source passage is in the top `--k` of `--retriever` (the untrained encoder for dense, so no
trained model and no evaluation question is involved); it prints how many each setting keeps.

    python bench/synthetic_filter.py runs/qg/syn-bf16.json --retriever hybrid --k 3 --out runs/qg/syn-hybrid3.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpr_rag.data.defaults import default_corpus  # noqa: E402
from dpr_rag.data.qa import QAExample, load_dpr_json  # noqa: E402
from dpr_rag.retrieval.query_adapter import BASE_DEFAULT  # noqa: E402
from dpr_rag.retrieval.searcher import Searcher  # noqa: E402
from dpr_rag.training.distant_supervision import save_dpr_json  # noqa: E402


def source_ranks(searcher: Searcher, retriever: str, examples, depth: int = 20) -> list[int | None]:
    """1-based rank of each question's source passage in the retriever's top `depth` (None: not there)."""
    hits = searcher.retriever(retriever).search([e.question for e in examples], depth)
    ranks = []
    for e, hs in zip(examples, hits, strict=True):
        ids = [h.passage.id for h in hs]
        source = e.positive_ctxs[0].id
        ranks.append(ids.index(source) + 1 if source in ids else None)
    return ranks


def load_synthetic(path: str) -> list[QAExample]:
    """A DPR JSON, or the kept questions of a generation log (FILE.generated.jsonl) over the default corpus."""
    if not path.endswith(".generated.jsonl"):
        return load_dpr_json(path)
    by_id = {p.id: p for p in default_corpus()}
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    kept = [r for r in rows if r["verdict"] == "kept"]
    return [
        QAExample(r["question"], [r["answer"]], id=f"synthetic-{i}", positive_ctxs=[by_id[r["passage_id"]]])
        for i, r in enumerate(kept)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("synthetic", help="DPR JSON written by python -m dpr_rag.generate_questions, or its .generated.jsonl")
    ap.add_argument("--retriever", choices=("bm25", "dense", "hybrid"), default="hybrid")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--out", required=True, help="the filtered DPR JSON (never overwritten)")
    args = ap.parse_args()
    if Path(args.out).exists():
        raise SystemExit(f"{args.out} exists: choose another --out")
    examples = load_synthetic(args.synthetic)
    searcher = Searcher.open(None, model=BASE_DEFAULT, show_progress=False)
    for name in ("bm25", "dense", "hybrid"):
        ranks = source_ranks(searcher, name, examples)
        counts = {k: sum(r is not None and r <= k for r in ranks) for k in (1, 3, 5, 20)}
        print(f"{name}: source passage in the top k for " + ", ".join(f"k={k}: {n}" for k, n in counts.items()))
        if name == args.retriever:
            kept = [e for e, r in zip(examples, ranks, strict=True) if r is not None and r <= args.k]
    print(f"kept {len(kept)} of {len(examples)} ({args.retriever} top {args.k}) -> {args.out}")
    save_dpr_json(kept, args.out)


if __name__ == "__main__":
    main()
