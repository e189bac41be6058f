"""Retrieve once on the CPU, for reader training and evaluation elsewhere (`bench/reader_gpu.py` on a lent GPU).

Writes to OUT: `corpus.jsonl` (the default corpus), the question files, and run files (`dpr_rag.retrieval.run_file`)
of the dense top `--k`, and per part `dev_pool.jsonl`, the NQ questions dev EM may be taken on:
- `heldout/`: retrieval by the retriever trained on the train part only (`--train-model`), for the train part +
  FanOutQA (`train.jsonl`, what the reader trains on) and the 900 held-out questions (`heldout.jsonl`);
- `all/`: retrieval by the shipped retriever (trained on everything), for all 1,800 NQ questions + FanOutQA
  (`train.jsonl`): the shipped reader's training data, used only after the held-out figures are taken.
The app's example questions are left out of every training file.

    python bench/nq_split.py --out runs/nq && python bench/app_examples.py --out runs/app_examples.jsonl
    python -m dpr_rag.train --out runs/qs-train --qa runs/nq/train_fanout.jsonl
    python bench/reader_runs.py --train-model runs/qs-train --out runs/reader-data
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dpr_rag.data.passages import save_jsonl
from dpr_rag.data.qa import QAExample, load_qa
from dpr_rag.retrieval.run_file import write_run_file
from dpr_rag.retrieval.score_scale import score_temperature
from dpr_rag.retrieval.searcher import Searcher
from dpr_rag.training.questions import training_questions


def save_questions(examples: list[QAExample], path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps({"question": e.question, "answer": list(e.answers)}, ensure_ascii=False) + "\n" for e in examples)


def write_part(searcher: Searcher, parts: dict[str, list[QAExample]], k: int, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    dense = searcher.retriever("dense")
    for name, examples in parts.items():
        save_questions(examples, folder / f"{name}.jsonl")
        write_run_file(dense, [e.question for e in examples], k, folder / f"{name}.run.jsonl", score_temperature(dense))
        print(f"{folder / name}: {len(examples)} questions, top {k}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nq", default="runs/nq", help="the shared split (bench/nq_split.py): train.jsonl, heldout.jsonl")
    parser.add_argument("--exclude", default="runs/app_examples.jsonl", help="questions never trained on (the app's examples)")
    parser.add_argument("--train-model", required=True, help="the retriever trained on the train part only")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out, nq = Path(args.out), Path(args.nq)
    out.mkdir(parents=True, exist_ok=True)
    train_only = Searcher.open(None, model=args.train_model)
    save_jsonl(train_only.passages, out / "corpus.jsonl")
    exclude = [args.exclude]
    train = training_questions([str(nq / "train.jsonl")], fanoutqa=True, exclude=exclude)
    write_part(train_only, {"train": train, "heldout": load_qa(nq / "heldout.jsonl")}, args.k, out / "heldout")
    # The NQ questions dev EM may be taken on (split off by question before training): the train part's, then all.
    save_questions(training_questions([str(nq / "train.jsonl")], exclude=exclude), out / "heldout" / "dev_pool.jsonl")
    everything = training_questions([str(nq / "train.jsonl"), str(nq / "heldout.jsonl")], fanoutqa=True, exclude=exclude)
    write_part(Searcher.open(None), {"train": everything}, args.k, out / "all")
    nq_all = [str(nq / "train.jsonl"), str(nq / "heldout.jsonl")]
    save_questions(training_questions(nq_all, exclude=exclude), out / "all" / "dev_pool.jsonl")


if __name__ == "__main__":
    main()
