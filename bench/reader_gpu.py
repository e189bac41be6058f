"""The reader recipe at GPU scale: train on the train part, answer the 900 held-out questions, then train on everything.

Runs `dpr_rag.train_rag`'s library code (`train_rag`, `reader_examples`, `RagPipeline.answer_batch`) over the run files
of `bench/reader_runs.py`, so the GPU needs neither the index nor the encoder. Nothing here is chosen on held-out
questions: k and the checkpoint are chosen by dev EM on NQ questions of the train part (`--dev` of them, split off by
question before anything else), and the final reader repeats that recipe on everything after the held-out answers
are written.

1. stage 1, passage mode: -log p(answer | question, z) on every answer-bearing passage z of the top 20 (up to 5 a
   question);
2. stage 2, standard mode, for each k of `--ks`: the top k in one prompt, plus half as many questions whose top k lacks
   the answer (taught the gold answer anyway), continuing stage 1's best adapter;
3. held-out: every system's answer to each of the 900 questions (`heldout_predictions.jsonl`; EM, F1 and paired
   bootstrap CIs are computed from it on the CPU by `bench/reader_report.py`);
4. the shipped reader: 1 + 2 (the dev-chosen k) on all 1,800 NQ questions + FanOutQA, retrieved by the shipped
   retriever.

    python bench/reader_gpu.py --data runs/reader-data --out OUT            # on a GPU: a few minutes
    python bench/reader_gpu.py --data runs/reader-data --out OUT --smoke    # every step on a tiny model (any machine)

On the H200 of 2026-12-04 the loss went NaN in stage 1 (bf16 autocast, transformers' default attention); training
now stops at the first non-finite loss (`NonFiniteLoss`). `--fp32` and `--attn eager` are the next things to try.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import time
import types
from dataclasses import dataclass
from pathlib import Path

import torch


def _stand_in_for_faiss() -> None:
    """The GPU image lacks faiss; nothing here searches an index (the passages come from run files), but the
    library imports it at load time. A module that fails on first use stands in for it."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        module = types.ModuleType("faiss")

        def missing(name: str):
            raise AttributeError(f"faiss is not installed here (faiss.{name} was asked for)")

        module.__getattr__ = missing  # type: ignore[method-assign]
        sys.modules["faiss"] = module


_stand_in_for_faiss()

from dpr_rag.data.passages import load_jsonl  # noqa: E402
from dpr_rag.data.qa import QAExample, load_qa  # noqa: E402
from dpr_rag.matching import exact_match, token_f1  # noqa: E402
from dpr_rag.rag.generator import Generator  # noqa: E402
from dpr_rag.rag.pipeline import RagPipeline  # noqa: E402
from dpr_rag.rag.reader_data import reader_examples  # noqa: E402
from dpr_rag.rag.trainer import RagTrainConfig, train_rag  # noqa: E402
from dpr_rag.retrieval.run_file import RunFileRetriever  # noqa: E402
from dpr_rag.training.distant_supervision import split_train_dev  # noqa: E402
from dpr_rag.training.questions import question_key  # noqa: E402

START = time.perf_counter()
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:6.0f} s] {message}", flush=True)


@dataclass
class Recipe:
    stage1_epochs: int = 3
    stage2_epochs: int = 3
    lora_rank: int = 16
    data_k: int = 20  # stage 1 looks for answer-bearing passages in the top data_k
    max_per_question: int = 5
    unanswered: float = 0.5
    batch_size: int = 16  # stage 1; stage 2 uses half (its prompts are k passages long)
    bf16: bool = True
    eval_batch_size: int = 32  # questions answered at once (dev and held-out)
    attention: str | None = None  # the generator's attention kernels (None: transformers' default)


def open_pipeline(retriever: RunFileRetriever, generator: str | None, k: int, attention: str | None) -> RagPipeline:
    """The generator (attention: its kernels, None for transformers' default) on DEVICE over the run files."""
    gen = Generator.from_pretrained(generator)
    if attention:
        gen.model.set_attn_implementation(attention)
    gen.model.to(DEVICE)
    return RagPipeline(retriever, gen, k=k)


def train_reader(
    retriever: RunFileRetriever,
    train: list[QAExample],
    dev: list[QAExample],
    k: int,
    recipe: Recipe,
    out: Path,
    generator: str | None,
    stage1: Path | None = None,
) -> tuple[Path, float | None, dict]:
    """Stage 1 (unless `stage1`'s adapter is given) and stage 2 at k; the best stage-2 adapter folder and its dev EM."""
    info: dict = {}
    if stage1 is None:
        pipeline = open_pipeline(retriever, generator, k, recipe.attention)
        rows, stats = reader_examples(
            train, retriever, k=recipe.data_k, max_per_question=recipe.max_per_question, show_progress=False
        )
        log(f"stage 1 data (top {recipe.data_k}): {stats.summary()}")
        cfg = RagTrainConfig(
            out=str(out / "stage1"), mode="passage", epochs=recipe.stage1_epochs, batch_size=recipe.batch_size, lr=2e-4,
            lora_rank=recipe.lora_rank, bf16=recipe.bf16, dev_mode="standard", dev_batch_size=recipe.eval_batch_size,
            show_progress=False,
        )  # fmt: skip
        result = train_rag(pipeline, rows, cfg, dev=dev)
        log(f"stage 1: {result.steps} steps, best dev EM {result.best_dev_em}")
        info["stage1"] = {
            "data": stats.summary(),
            "steps": result.steps,
            "best_dev_em": result.best_dev_em,
            "log": result.history,
        }
        stage1 = out / "stage1" / "best" / "generator"
        del pipeline
    pipeline = open_pipeline(retriever, str(stage1), k, recipe.attention)
    rows, stats = reader_examples(
        train, retriever, k=k, max_per_question=recipe.max_per_question, unanswered=recipe.unanswered, show_progress=False
    )
    log(f"stage 2 data (top {k}): {stats.summary()}")
    cfg = RagTrainConfig(
        out=str(out / f"stage2-k{k}"), mode="standard", epochs=recipe.stage2_epochs, batch_size=recipe.batch_size // 2,
        lr=1e-4, lora_rank=recipe.lora_rank, bf16=recipe.bf16, dev_mode="standard", dev_batch_size=recipe.eval_batch_size,
        show_progress=False,
    )  # fmt: skip
    result = train_rag(pipeline, rows, cfg, dev=dev)
    log(f"stage 2 (k={k}): {result.steps} steps, best dev EM {result.best_dev_em}")
    info[f"stage2_k{k}"] = {
        "data": stats.summary(),
        "steps": result.steps,
        "best_dev_em": result.best_dev_em,
        "log": result.history,
    }
    return out / f"stage2-k{k}" / "best", result.best_dev_em, info


@torch.no_grad()
def predictions(pipeline: RagPipeline, questions: list[QAExample], mode: str, system: str, batch_size: int = 32) -> list[dict]:
    """Greedy answers in fp32 (no autocast), `batch_size` questions at a time, with EM and F1 logged."""
    rows = []
    t0 = time.perf_counter()
    for s in range(0, len(questions), batch_size):
        batch = questions[s : s + batch_size]
        for ex, answer in zip(batch, pipeline.answer_batch([e.question for e in batch], mode), strict=True):
            rows.append({"system": system, "question": ex.question, "answers": list(ex.answers), "prediction": answer.answer})
    em = 100 * sum(exact_match(r["prediction"], r["answers"]) for r in rows) / len(rows)
    f1 = 100 * sum(token_f1(r["prediction"], r["answers"]) for r in rows) / len(rows)
    log(f"held-out {system}: EM {em:.1f} F1 {f1:.1f} ({time.perf_counter() - t0:.0f} s)")
    return rows


def heldout_systems(
    retriever: RunFileRetriever,
    heldout: list[QAExample],
    adapters: dict[int, Path],
    k_best: int,
    base: str | None,
    attention: str | None,
    path: Path,
) -> None:
    """Every system's answers to the held-out questions, appended to `path` system by system (a run cut short
    keeps what it finished)."""

    def write(rows: list[dict]) -> None:
        with path.open("a", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

    path.unlink(missing_ok=True)
    best = open_pipeline(retriever, str(adapters[k_best] / "generator"), k_best, attention)
    write(predictions(best, heldout, "standard", f"standard k={k_best} (trained)"))
    base_pipeline = open_pipeline(retriever, base, k_best, attention)
    write(predictions(base_pipeline, heldout, "closed-book", "closed-book (base)"))
    write(predictions(base_pipeline, heldout, "standard", f"standard k={k_best} (base)"))
    write(predictions(best, heldout, "closed-book", "closed-book (trained)"))
    best.fallback = True
    write(predictions(best, heldout, "standard", f"standard k={k_best} + fallback (trained)"))
    for k, folder in sorted(adapters.items()):
        if k != k_best:
            write(
                predictions(
                    open_pipeline(retriever, str(folder / "generator"), k, attention),
                    heldout,
                    "standard",
                    f"standard k={k} (trained)",
                )
            )


def pack(folder: Path, archive: Path) -> None:
    """A trained RAG folder (adapter, rag_config.json) and its training logs and plot, as one tar file."""
    with tarfile.open(archive, "w") as tar:
        tar.add(folder / "best", arcname="best")
        for name in ("rag_log.jsonl", "loss.png"):
            if (folder / name).exists():
                tar.add(folder / name, arcname=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="bench/reader_runs.py's folder")
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", default="/tmp/reader-gpu", help="checkpoints (only the results go to --out)")
    parser.add_argument("--generator", default=None, help="base generator (default: the embedded Gemma 3 270M)")
    parser.add_argument("--ks", default="5,10", help="stage-2 k values; the dev EM chooses one")
    parser.add_argument("--dev", type=int, default=200, help="NQ train-part questions held out for dev EM")
    parser.add_argument("--skip-final", action="store_true", help="stop after the held-out answers")
    parser.add_argument(
        "--final-within", type=float, default=0, help="start the final run only within this many seconds (0: always)"
    )
    parser.add_argument("--smoke", action="store_true", help="a tiny slice, one epoch each (checks every step runs)")
    parser.add_argument("--fp32", action="store_true", help="train without bf16 autocast")
    parser.add_argument("--attn", choices=["eager", "sdpa"], help="attention kernels (default: transformers' choice)")
    args = parser.parse_args()
    data, out, work = Path(args.data), Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    ks = [int(k) for k in args.ks.split(",")]
    recipe = Recipe(stage1_epochs=1, stage2_epochs=1, batch_size=4) if args.smoke else Recipe()
    recipe.bf16 = not args.fp32
    recipe.attention = args.attn
    name = torch.cuda.get_device_name(0) if DEVICE.type == "cuda" else "no GPU"
    log(f"device {DEVICE} ({name}), recipe {recipe}, ks {ks}, attention {recipe.attention or 'default'}")
    passages = load_jsonl(data / "corpus.jsonl")
    summary: dict = {"recipe": recipe.__dict__, "ks": ks, "device": str(DEVICE)}

    # ---- held-out experiment: trained on the train part + FanOutQA only ----
    part = data / "heldout"
    retriever = RunFileRetriever.from_files([part / "train.run.jsonl", part / "heldout.run.jsonl"], passages)
    heldout = load_qa(part / "heldout.jsonl")[: 24 if args.smoke else None]
    train, dev = split_part(part, args.dev, args.smoke)
    log(f"held-out run: {len(train)} training questions, {len(dev)} NQ dev questions, {len(heldout)} held-out")
    adapters: dict[int, Path] = {}
    dev_em: dict[int, float] = {}
    stage1 = None
    for k in ks:
        folder, em, info = train_reader(retriever, train, dev, k, recipe, work / "heldout", args.generator, stage1)
        stage1 = work / "heldout" / "stage1" / "best" / "generator"
        adapters[k], dev_em[k] = folder, em if em is not None else -1.0
        summary.setdefault("heldout_training", {}).update(info)
    k_best = max(ks, key=lambda k: (dev_em[k], -k))  # ties: the smaller k (faster to answer)
    summary["dev_em"], summary["k_best"] = dev_em, k_best
    log(f"dev EM by k: {dev_em}; chosen k={k_best}")
    pack(adapters[k_best].parent, out / "heldout_reader.tar")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    heldout_systems(retriever, heldout, adapters, k_best, args.generator, recipe.attention, out / "heldout_predictions.jsonl")
    log("held-out answers written")
    if args.skip_final or (args.final_within and time.perf_counter() - START > args.final_within):
        log("final run skipped")
        return

    # ---- the shipped reader: the same recipe (k chosen above) on everything ----
    part = data / "all"
    retriever = RunFileRetriever.from_files([part / "train.run.jsonl"], passages)
    train, dev = split_part(part, args.dev, args.smoke)
    log(f"final run: {len(train)} training questions, {len(dev)} NQ dev questions, k={k_best}")
    folder, em, info = train_reader(retriever, train, dev, k_best, recipe, work / "all", args.generator)
    summary["final_training"] = info
    pack(folder.parent, out / "final_reader.tar")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log("final reader written")


def split_part(part: Path, n_dev: int, smoke: bool) -> tuple[list[QAExample], list[QAExample]]:
    """(training questions, dev questions): dev is `n_dev` NQ questions of the part's dev pool, split off by question;
    training is every other question of the part (NQ and FanOutQA)."""
    questions = load_qa(part / "train.jsonl")
    pool = load_qa(part / "dev_pool.jsonl")
    if smoke:
        questions, pool = questions[:120], pool[:60]
    pool_keys = {question_key(e.question) for e in pool}
    pool = [e for e in questions if question_key(e.question) in pool_keys]
    _, dev = split_train_dev(pool, min(n_dev, len(pool) // 3) / len(pool), seed=0)
    dev_keys = {question_key(e.question) for e in dev}
    return [e for e in questions if question_key(e.question) not in dev_keys], dev


if __name__ == "__main__":
    main()
