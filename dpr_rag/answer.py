"""`python -m dpr_rag.answer "QUESTION"`: answer with RAG-Token, RAG-Sequence, standard RAG, closed-book and DPR's
extractive reader, with provenance. The shipped reader (Gemma 3 270M with trained LoRA adapters) generates unless
`--generator`, `--rag` or `--base-generator` chooses another; the shipped extractive reader reads unless `--reader`
chooses another. `--mode extractive` alone loads no generator."""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from dataclasses import asdict

from .cli_common import add_corpus_args, add_rerank_args, run_cli
from .errors import ConfigError
from .extractive.model import shipped_extractive_reader
from .rag.pipeline import MODES, RagAnswer, RagPipeline
from .retrieval.searcher import RETRIEVERS

GENERATIVE_K, EXTRACTIVE_K = 5, 10  # passages read by default: DPR's extractive reader is cheap per passage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpr_rag.answer", description=__doc__)
    parser.add_argument("questions", nargs="+")
    parser.add_argument(
        "--mode",
        default="all",
        help=f"{'|'.join(MODES)}|all, or a comma-separated list (default all: extractive too where a reader is shipped)",
    )
    parser.add_argument(
        "--k", type=int, help=f"passages to read (default {GENERATIVE_K}; {EXTRACTIVE_K} when the only mode is extractive)"
    )
    parser.add_argument(
        "--beams",
        type=int,
        default=None,
        help="beam size (default: 1 = greedy for RAG-Token and closed-book, 4 per passage for RAG-Sequence)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument(
        "--shots",
        type=int,
        default=0,
        help="demonstrations (solved questions from training data) before each question; 0 = zero-shot (default 0)",
    )
    add_corpus_args(parser)
    parser.add_argument("--index", help="a folder written by python -m dpr_rag.index --out")
    parser.add_argument(
        "--generator", help="Hugging Face causal or seq2seq LM id/folder, or a LoRA adapter folder (default: the shipped reader)"
    )
    parser.add_argument(
        "--base-generator", action="store_true", help="the bare base model (Gemma 3 270M) instead of the shipped reader"
    )
    parser.add_argument(
        "--rag",
        help="a folder written by RAG training (python -m dpr_rag.train_rag): its query encoder and "
        "generator, over --corpus or the default corpus (hot-swapping: no retraining needed)",
    )
    parser.add_argument(
        "--reader", help="the extractive mode's reader folder (python -m dpr_rag.train_reader; default: the shipped one)"
    )
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="bfloat16 autocast while generating: faster for large batches on CPUs with AVX512-BF16/AMX, "
        "slower for one question at a time (bench/answer_bf16.py)",
    )
    parser.add_argument(
        "--fallback",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="answer closed-book where the RAG answer is in none of its passages (default: as the reader's rag_config.json says)",
    )
    parser.add_argument("--retriever", choices=RETRIEVERS, default="dense", help="what RAG retrieves with (default dense)")
    add_rerank_args(parser, "rerank the retriever's top hits")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.mode.split(",")]
    if args.mode == "all":
        modes = ["token", "sequence", "standard", "closed-book"]
        modes += ["extractive"] if args.reader or shipped_extractive_reader() else []
    for m in modes:
        if m not in MODES:
            raise ConfigError(f"unknown mode {m!r}; choose from {', '.join(MODES)} or all")
    if any(not q.strip() for q in args.questions):
        raise ConfigError("empty question")
    if args.k is None:  # the extractive reader was trained to pick among many passages, and each costs it little
        args.k = EXTRACTIVE_K if modes == ["extractive"] else GENERATIVE_K
    pipeline = RagPipeline.open(
        args.corpus,
        args.index,
        args.model,
        args.generator,
        args.rag,
        args.k,
        args.index_type,
        not args.no_cache,
        args.max_new_tokens,
        shots=args.shots,
        base_generator=args.base_generator,
        fallback=args.fallback,
        retriever=args.retriever,
        reranker=args.rerank,
        rerank_candidates=args.rerank_candidates,
        rerank_fusion=args.rerank_fusion,
        extractive_reader=args.reader if "extractive" in modes else None,
        load_generator=any(m != "extractive" for m in modes),
    )
    pipeline.bf16 = args.bf16
    for mode in modes:
        for question in args.questions:
            t0 = time.perf_counter()
            a = pipeline.answer(question, mode, num_beams=args.beams)
            seconds = time.perf_counter() - t0
            if args.json:
                print(
                    json.dumps(
                        {
                            "question": question,
                            "mode": mode,
                            "answer": a.answer,
                            "logprob": a.logprob,
                            "fallback": a.fallback,
                            "seconds": round(seconds, 3),
                            "passages": [
                                {"id": p.passage.id, "title": p.passage.title, "prior": p.prior, "posterior": p.posterior}
                                for p in a.passages
                            ],
                            **({"span": asdict(a.span)} if a.span else {}),
                        },
                        ensure_ascii=False,
                    )
                )
                continue
            note = "  [closed-book: the passages lack the RAG answer]" if a.fallback else ""
            print(f"\n== {mode} ({seconds:.1f} s) | {question}\nanswer: {a.answer!r}  (log p = {a.logprob:.2f}){note}")
            for i, p in enumerate(a.passages):
                print(f"  p(z|x)={p.prior:.2f}  p(z|x,y)={p.posterior:.2f}  {p.passage.title} (id {p.passage.id})")
                print(textwrap.indent(_passage_line(a, i), "      "))
    return 0


def _passage_line(a: RagAnswer, i: int) -> str:
    """A passage's text, shortened; the extractive answer's own passage with the span marked [[like this]] instead."""
    p = a.passages[i].passage
    if a.span is None or a.span.passage != i:
        return textwrap.shorten(p.text, 160)
    s = a.span
    title, text = p.title, p.text
    if s.field == "title":
        title = f"{title[: s.start]}[[{title[s.start : s.end]}]]{title[s.end :]}"
        return f"(title: {title}) {textwrap.shorten(text, 140)}"
    return f"...{text[max(0, s.start - 80) : s.start]}[[{text[s.start : s.end]}]]{text[s.end : s.end + 80]}..."


if __name__ == "__main__":
    run_cli(main)
