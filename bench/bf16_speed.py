"""bfloat16 autocast against fp32 for the default generator on this CPU, side by side: one forward (answering) and
one forward + backward through LoRA adapters (training), on the same batch of 5 x 200 tokens.

    python bench/bf16_speed.py [--rows 5] [--tokens 200] [--repeats 2]

It prints seconds per batch and the ratio fp32 / bf16 (above 1: bf16 is faster). CPUs with AVX512-BF16 or AMX gain;
others may lose, which is why bf16 is an option (`--bf16` in train_rag, answer and eval.run), not the default.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.common import machine, write_result  # noqa: E402
from dpr_rag.rag.generator import Generator  # noqa: E402
from dpr_rag.rag.lora import add_lora  # noqa: E402


def seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    gen = Generator.from_pretrained(None)
    ids = torch.randint(100, 20000, (args.rows, args.tokens))

    def step(bf16: bool, train: bool) -> None:
        context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
        with context, nullcontext() if train else torch.no_grad():
            logits = gen.model(input_ids=ids, logits_to_keep=8, use_cache=False).logits
        if train:
            logits.float().logsumexp(-1).sum().backward()

    rows = {}
    for phase in ("answer", "train"):
        if phase == "train":
            gen.use_model(add_lora(gen.model, 16))
        train = phase == "train"
        fp32, bf16 = (seconds(lambda b=b, t=train: step(b, t), args.repeats) for b in (False, True))
        rows[phase] = {"fp32_s": round(fp32, 3), "bf16_s": round(bf16, 3), "fp32_over_bf16": round(fp32 / bf16, 2)}
        print(
            f"{phase:>6}: fp32 {fp32:.2f} s, bf16 {bf16:.2f} s per batch of {args.rows}x{args.tokens} tokens: "
            f"bf16 is {fp32 / bf16:.2f}x faster",
            flush=True,
        )
    write_result("bf16_speed", {"machine": machine(), "rows": args.rows, "tokens": args.tokens, **rows})


if __name__ == "__main__":
    main()
