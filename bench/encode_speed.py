"""Passage encoding speed: this project's DualEncoder against sentence-transformers' `encode`, same model, same inputs.

    python bench/encode_speed.py [--passages 2000] [--batch-size 64] [--model PATH]

Both encode the same passages of the default corpus with all-MiniLM-L6-v2 at max length 256. sentence-transformers
gets each passage as the string "title [SEP] text", which its tokenizer turns into the same token ids as our
(title, text) pair, so both do the same work. Contenders, timed one after the other in this process:

- st fp32:        SentenceTransformer.encode (the peer);
- dpr_rag fp32:   DualEncoder.encode_passages (length-sorted batches, inference mode);
- dpr_rag bf16:   the same with precision="bf16" (a bfloat16 copy of the tower; fast on CPUs with AMX/AVX512-BF16);
- st bf16:        SentenceTransformer in bfloat16, to show what the peer gets from the same trick;
- dpr_rag int8:   torch's dynamic int8 quantisation of the Linear layers (tried; not offered: see BENCHMARKS.md).

Reports passages/s, the ratio to st fp32, and the mean/min cosine of each contender's embeddings to the fp32
embeddings of the same library.
Writes bench/results/encode_speed.json.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import machine, write_result  # noqa: E402
from dpr_rag.data.defaults import default_corpus  # noqa: E402
from dpr_rag.retrieval.encoder import DualEncoder, cpu_has_fast_bf16, default_encoder_path  # noqa: E402


def timed(fn) -> tuple[float, np.ndarray]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, np.asarray(out, dtype=np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=2000, help="passages to encode (spread over the default corpus)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--model", default=None, help="a sentence-transformers folder (default: the embedded all-MiniLM-L6-v2)")
    ap.add_argument("--skip-int8", action="store_true")
    args = ap.parse_args()
    from sentence_transformers import SentenceTransformer

    corpus = default_corpus()
    passages = corpus[:: max(1, len(corpus) // args.passages)][: args.passages]
    texts = [f"{p.title} [SEP] {p.text}" for p in passages]
    path = args.model or default_encoder_path()
    st = SentenceTransformer(path, device="cpu")
    st.max_seq_length = 256
    ours = DualEncoder.from_pretrained(path)
    ours.settings.max_passage_length = 256
    device = "cuda" if torch.cuda.is_available() else "cpu"
    st.to(device)
    print(
        f"{len(passages)} passages, batch {args.batch_size}, max length 256, {device}; "
        f"fast bf16 CPU: {cpu_has_fast_bf16()}\n{machine()}"
    )

    # Warm-up (thread pools, allocator), not timed.
    st.encode(texts[:64], batch_size=args.batch_size)
    ours.encode_passages(passages[:64], show_progress=False)

    contenders = {
        "st fp32": lambda: st.encode(texts, batch_size=args.batch_size),
        # On a GPU dpr_rag always encodes under bf16 autocast (fp16 where bf16 is missing).
        f"dpr_rag {'fp32' if device == 'cpu' else 'autocast'}": lambda: ours.encode_passages(
            passages, batch_size=args.batch_size, show_progress=False
        ),
    }
    if device == "cpu":
        contenders["dpr_rag bf16"] = lambda: ours.encode_passages(
            passages, batch_size=args.batch_size, show_progress=False, precision="bf16"
        )
    st_bf16 = copy.deepcopy(st).to(torch.bfloat16)
    contenders["st bf16"] = lambda: st_bf16.encode(texts, batch_size=args.batch_size)
    if not args.skip_int8 and device == "cpu":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao's deprecation notice
            int8 = copy.deepcopy(ours)
            int8.passage_encoder.model = torch.ao.quantization.quantize_dynamic(
                int8.passage_encoder.model, {torch.nn.Linear}, dtype=torch.qint8
            )
        contenders["dpr_rag int8 (dynamic)"] = lambda: int8.encode_passages(
            passages, batch_size=args.batch_size, show_progress=False
        )

    # Quality: cosine of each contender's embeddings to the fp32 ones of its own family (dpr_rag's pair encoding
    # gives the text segment id 1, so its vectors differ slightly from sentence-transformers' single string).
    rows, fp32 = [], {}
    for name, fn in contenders.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seconds, emb = timed(fn)
        family = name.split()[0]
        fp32.setdefault(family, emb)  # the first row of each family is its fp32 (or, on a GPU, autocast) reference
        cos = cosine(emb, fp32[family])
        rows.append(
            {
                "contender": name,
                "seconds": seconds,
                "passages_per_s": len(passages) / seconds,
                "cosine_to_fp32_mean": float(cos.mean()),
                "cosine_to_fp32_min": float(cos.min()),
            }
        )
    base = rows[0]["passages_per_s"]
    print("\n| contender | passages/s | vs st fp32 | cosine to its fp32 (mean / min) |\n|---|---:|---:|---:|")
    for r in rows:
        r["ratio_to_st_fp32"] = r["passages_per_s"] / base
        print(
            f"| {r['contender']} | {r['passages_per_s']:.1f} | {r['ratio_to_st_fp32']:.2f}x | "
            f"{r['cosine_to_fp32_mean']:.5f} / {r['cosine_to_fp32_min']:.5f} |"
        )
    write_result(
        "encode_speed" + ("_gpu" if device == "cuda" else ""),
        {
            "passages": len(passages),
            "batch_size": args.batch_size,
            "max_length": 256,
            "model": path,
            "device": device,
            "cpu_has_fast_bf16": cpu_has_fast_bf16(),
            "machine": machine(),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
