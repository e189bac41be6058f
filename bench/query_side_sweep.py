"""Choosing the query-side recipe on NQ dev questions only (issue 14): settings, seeds, and averaged adapters.

The dev questions are a fixed part of the shared split's **train** part (`--dev-size`, split by question with a fixed
seed), never trained on here; the held-out part is not read at all. Each variant trains the query-side recipe
(`dpr_rag/training/query_side.py`, its defaults unless the variant overrides them) on the rest of the train part plus
FanOutQA (the app's examples left out), and its `best/` is scored on the dev questions: dense top-k accuracy over the
whole default corpus, paired bootstrap against the default recipe's first seed.

Two ways to spend more training compute without new data are also scored:
    name:fanoutqa=false  the NQ questions only (no FanOutQA)
    soup(A+B+...)   the average of several runs' weight updates (a model soup, Wortsman et al. 2022): their LoRA
                    factors stacked into one adapter of rank Σr, each B scaled by 1/n, so that ΔW = (1/n) Σ B_i A_i
    scale(A,s)      one run's update times s (WiSE-FT's interpolation towards the base for s < 1)

    python bench/query_side_sweep.py --train runs/nq/train.jsonl --exclude runs/app_examples.jsonl \\
        --variants 'default,seed1:seed=1,seed2:seed=2,t03:temperature=0.03,top50:positives_top_k=50' \\
        --soups default+seed1+seed2 --scales default:0.5,default:1.5
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from dpr_rag.data.qa import load_qa  # noqa: E402
from dpr_rag.matching import first_hit_rank  # noqa: E402
from dpr_rag.retrieval.query_adapter import BASE_DEFAULT  # noqa: E402
from dpr_rag.retrieval.searcher import Searcher  # noqa: E402
from dpr_rag.storage import atomic_file  # noqa: E402
from dpr_rag.training.distant_supervision import question_key, split_train_dev  # noqa: E402
from dpr_rag.training.query_side import QuerySideConfig, train_query_side  # noqa: E402
from dpr_rag.training.questions import training_questions  # noqa: E402
from eval.bootstrap import paired_bootstrap  # noqa: E402

KS = (1, 5, 20, 100)
WEIGHTS = "adapter_model.safetensors"


def parse_variant(text: str) -> tuple[str, dict]:
    """'name:key=value,key=value' -> (name, QuerySideConfig overrides); values are JSON (numbers) or strings."""
    name, _, rest = text.partition(":")
    overrides = {}
    for item in filter(None, rest.split(";")):
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    return name, overrides


def dev_ranks(folder: Path | str, questions) -> list[int | None]:
    searcher = Searcher.open(None, model=str(folder), show_progress=False)
    hits = searcher.retriever("dense").search([e.question for e in questions], max(KS))
    return [first_hit_rank(e.answers, [h.passage.text for h in hs]) for e, hs in zip(questions, hits, strict=True)]


def soup(folders: list[Path], out: Path, scale: float = 1.0) -> Path:
    """One adapter whose update is scale × the mean of the folders' updates (LoRA factors stacked along the rank)."""
    states = [load_file(str(f / WEIGHTS)) for f in folders]
    merged = {}
    for key in states[0]:
        parts = [s[key] for s in states]
        if "lora_A" in key:
            merged[key] = torch.cat(parts, dim=0)
        else:  # lora_B: (out, r) each; the mean of the products, times scale
            merged[key] = torch.cat(parts, dim=1) * (scale / len(parts))
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(folders[0], out)
    config = json.loads((out / "adapter_config.json").read_text())
    # peft scales B·A by lora_alpha / r: keep each part's own scale at the stacked rank
    config["lora_alpha"], config["r"] = config["lora_alpha"] * len(folders), config["r"] * len(folders)
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))
    save_file(merged, str(out / WEIGHTS))
    return out


def report(results: dict) -> str:
    names = list(results["runs"])
    ref = results["runs"].get("default", {}).get("ranks")
    lines = [
        f"{len(results['runs']['untrained']['ranks'])} NQ dev questions (train part of the shared split); top-k %",
        "",
        "| variant | " + " | ".join(f"top-{k}" for k in KS) + " | top-20 − default | train s |",
        "|---|" + "---:|" * (len(KS) + 2),
    ]
    for name in names:
        run = results["runs"][name]
        r = run["ranks"]
        accs = [100 * sum(x is not None and x <= k for x in r) / len(r) for k in KS]
        diff = ""
        if ref is not None and name != "default":
            ci = paired_bootstrap([float(x is not None and x <= 20) for x in r], [float(x is not None and x <= 20) for x in ref])
            diff = f"{100 * ci.difference:+.1f} [{100 * ci.low:+.1f}, {100 * ci.high:+.1f}]"
        lines.append(f"| {name} | " + " | ".join(f"{a:.1f}" for a in accs) + f" | {diff} | {run.get('seconds', '')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="the shared split's train part (dev questions are taken from it)")
    ap.add_argument("--exclude", nargs="*", default=[], help="QA files never trained on (the app's examples)")
    ap.add_argument("--dev-size", type=int, default=200)
    ap.add_argument("--variants", default="default", help="name[:key=value;key=value],... (QuerySideConfig fields)")
    ap.add_argument("--soups", default="", help="A+B+...,... of trained variants")
    ap.add_argument("--scales", default="", help="A:s,... a variant's update scaled by s")
    ap.add_argument("--work", default="runs/qs-sweep")
    ap.add_argument("--out", default="bench/results/query_side_sweep.json")
    args = ap.parse_args()

    nq = load_qa(args.train)
    rest, dev = split_train_dev(nq, args.dev_size / len(nq), seed=12345)
    dev_keys = {question_key(e.question) for e in dev}
    every = training_questions([args.train], fanoutqa=True, exclude=args.exclude)
    questions = [e for e in every if question_key(e.question) not in dev_keys]
    print(f"{len(dev)} NQ dev questions; {len(questions)} training questions ({len(rest)} NQ before --exclude)", flush=True)
    nq_keys = {e.question.lower() for e in rest}
    out, work = Path(args.out), Path(args.work)
    results = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    results["dev"] = [e.question for e in dev]

    def save(name: str, run: dict) -> None:
        results["runs"][name] = run
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(out) as f:
            json.dump(results, f)
        r = run["ranks"]
        print(name, {k: round(100 * sum(x is not None and x <= k for x in r) / len(r), 1) for k in KS}, flush=True)

    if "untrained" not in results["runs"]:
        save("untrained", {"ranks": dev_ranks(BASE_DEFAULT, dev)})
    for text in filter(None, args.variants.split(",")):
        name, overrides = parse_variant(text)
        t0 = time.perf_counter()
        fanoutqa = overrides.pop("fanoutqa", True)  # False: the NQ questions only
        given = questions if fanoutqa else [e for e in questions if e.question.lower() in nq_keys]
        config = QuerySideConfig(out=str(work / name), show_progress=False, **overrides)
        train_query_side(config, examples=given)
        run = {"ranks": dev_ranks(work / name / "best", dev), "overrides": overrides | {"fanoutqa": fanoutqa}}
        save(name, run | {"seconds": round(time.perf_counter() - t0)})
    for text in filter(None, args.soups.split(",")):
        parts = text.split("+")
        folder = soup([work / p / "best" for p in parts], work / f"soup-{'+'.join(parts)}")
        save(f"soup({text})", {"ranks": dev_ranks(folder, dev)})
    for text in filter(None, args.scales.split(",")):
        name, _, s = text.partition(":")
        folder = soup([work / name / "best"], work / f"scale-{name}-{s}", scale=float(s))
        save(f"scale({name},{s})", {"ranks": dev_ranks(folder, dev)})
    print(report(results))


if __name__ == "__main__":
    main()
