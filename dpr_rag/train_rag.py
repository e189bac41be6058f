"""`python -m dpr_rag.train_rag --out DIR`: train the RAG reader (and, end to end, the query encoder; the passage encoder
and the index stay frozen).

Data, by distant supervision (`rag/reader_data.py`): the questions of `--qa` files (NQ-open .jsonl, DPR .json/.csv;
several may be given) and, with `--fanoutqa` or when no file is given, the embedded FanOutQA questions; a question is
kept when one of its answers appears in a passage of the retriever's top `--data-k`. The counts kept and dropped are
printed. A part of the kept questions (`--dev-fraction`, at most `--dev-max`), split by question, is never trained on:
the pipeline answers it every `--dev-every` steps and best/ keeps the model with the best dev EM. Kept questions
have an answer in the top k, so that dev EM flatters; `--dev-qa FILE` takes the dev questions from a file instead
(all of them, answerable or not, never trained on), so it estimates EM on questions like them.

Objectives (`--mode`): `passage` trains -log p(answer | question, z) on every answer-bearing passage z (cheap: one
passage per row); `standard` the answer given the top `--k` in one prompt; `token` / `sequence` the RAG marginal
over the top `--k`. `--unanswered R` adds up to R questions whose top k lack the answer per kept one (the reader
learns to answer from memory there too). `--generator ADAPTER` continues training a LoRA adapter (such as the
shipped reader's). `--lora-rank R` trains LoRA adapters
instead of the whole generator; `--bf16` uses bfloat16 autocast; `--grad-accum N` batches per step; `--resume`
continues DIR/last exactly. `--runs FILE...` reads each question's passages from run files (`retrieval/run_file.py`)
instead of searching, so the reader trains where the index is not (token/sequence then need --no-query-encoder).
Output: DIR/best/ and DIR/last/ (RAG folders), rag_log.jsonl, loss.png (loss and dev EM).
Use the result with `python -m dpr_rag.answer "QUESTION" --rag DIR`.
"""

from __future__ import annotations

import argparse
import time

from .cli_common import add_corpus_args, run_cli
from .data.qa import load_qa
from .rag.reader_data import reader_examples
from .rag.trainer import DEV_MODES, TRAINABLE_MODES, RagTrainConfig, mean_loss, train_rag
from .training.distant_supervision import split_train_dev
from .training.questions import training_questions

LOSS_EXAMPLES = 64  # questions the before/after loss is measured on


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dpr_rag.train_rag", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="output folder (best/, last/, rag_log.jsonl, loss.png)")
    parser.add_argument("--qa", nargs="+", default=[], help="QA files: NQ-open .jsonl, DPR .json/.csv")
    parser.add_argument("--fanoutqa", action="store_true", help="add the embedded FanOutQA questions (the default with no --qa)")
    parser.add_argument(
        "--exclude", nargs="+", default=[], help="QA files whose questions are never trained on (evaluation or demo questions)"
    )
    add_corpus_args(parser)
    parser.add_argument(
        "--runs",
        nargs="+",
        default=[],
        help="run files (retrieval.run_file; bench/reader_runs.py writes them) to read the passages from instead of "
        "searching: no index or encoder is loaded; --corpus must be the corpus they were made on",
    )
    parser.add_argument("--generator", help="Hugging Face causal or seq2seq LM id/folder (default: Gemma 3 270M, embedded)")
    parser.add_argument("--mode", choices=TRAINABLE_MODES, default="token", help="objective (default token)")
    parser.add_argument("--k", type=int, default=5, help="retrieved passages per question at answer time (default 5)")
    parser.add_argument("--data-k", type=int, help="passages searched for an answer when building the data (default --k)")
    parser.add_argument("--max-per-question", type=int, default=3, help="answer-bearing passages kept per question (default 3)")
    parser.add_argument(
        "--unanswered",
        type=float,
        default=0.0,
        help="also train on up to this many questions without an answer-bearing passage per kept one (standard/token/"
        "sequence; default 0)",
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=1, help="batches per optimizer step (default 1)")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--lora-rank", type=int, default=0, help="LoRA rank (0: train the whole generator; default 0)")
    parser.add_argument("--lora-alpha", type=float, help="LoRA scale alpha (default 2 x rank)")
    parser.add_argument("--no-query-encoder", action="store_true", help="token/sequence: keep the query encoder frozen")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster on CPUs with AVX512-BF16 or AMX)")
    parser.add_argument(
        "--dev-qa",
        help="dev questions from this QA file instead of a part of the kept ones: all of them count (answerable or not), "
        "and none is trained on; dev EM then estimates EM on questions like them",
    )
    parser.add_argument("--dev-fraction", type=float, default=0.1, help="kept questions held out as dev (default 0.1)")
    parser.add_argument("--dev-max", type=int, default=64, help="at most this many dev questions (default 64)")
    parser.add_argument("--dev-every", type=int, default=0, help="steps between dev evaluations (0: each epoch's end)")
    parser.add_argument("--dev-mode", choices=DEV_MODES, default="token", help="how dev questions are answered (default token)")
    parser.add_argument("--max-examples", type=int, help="train on at most this many questions (the first ones)")
    parser.add_argument("--resume", action="store_true", help="continue DIR/last exactly (same settings)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = RagTrainConfig(
        out=args.out,
        mode=args.mode,
        epochs=args.epochs,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        max_examples=args.max_examples,
        seed=args.seed,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        train_query_encoder=not args.no_query_encoder,
        bf16=args.bf16,
        dev_every=args.dev_every,
        dev_mode=args.dev_mode,
        resume=args.resume,
    )  # checks the settings before any loading
    # --dev-qa's questions are left out of training like --exclude's (matched by question_key).
    qa = training_questions(args.qa, args.fanoutqa, args.exclude + ([args.dev_qa] if args.dev_qa else []))
    from .rag.pipeline import RagPipeline  # loads the index and the generator (checks k first)

    if args.runs:
        from .data.passages import load_corpus
        from .rag.generator import Generator
        from .retrieval.run_file import RunFileRetriever

        retriever = RunFileRetriever.from_files(args.runs, load_corpus(args.corpus))
        pipeline = RagPipeline(retriever, Generator.from_pretrained(args.generator), k=args.k)
    else:
        pipeline = RagPipeline.open(
            corpus=args.corpus,
            model=args.model,
            generator=args.generator,
            k=args.k,
            index_kind=args.index_type,
            use_cache=not args.no_cache,
        )
    kept, stats = reader_examples(
        qa, pipeline.retriever, k=args.data_k or args.k, max_per_question=args.max_per_question, unanswered=args.unanswered
    )
    print(f"distant supervision over the top {args.data_k or args.k}: {stats.summary()}", flush=True)
    if args.dev_qa:
        train, dev = kept, load_qa(args.dev_qa)
    else:
        train, dev = split_train_dev(kept, args.dev_fraction, args.seed)
    dev = dev[: args.dev_max]
    probe = train[:LOSS_EXAMPLES]
    before = mean_loss(pipeline, probe, args.mode, batch_size=args.batch_size)
    print(
        f"RAG-{args.mode}: {len(train)} training questions, {len(dev)} dev questions, k={args.k}; loss before "
        f"training: {before:.4f} (on {len(probe)} training questions)",
        flush=True,
    )
    t0 = time.perf_counter()
    result = train_rag(pipeline, train, config, dev=dev)
    seconds = time.perf_counter() - t0
    after = mean_loss(pipeline, probe, args.mode, batch_size=args.batch_size)
    best = f"; best dev EM {result.best_dev_em:.1f}" if result.best_dev_em is not None else ""
    print(f"trained {result.steps} steps in {seconds:.0f} s; loss after training: {after:.4f} (before {before:.4f}){best}")
    print(f'saved to {result.out}; answer with: python -m dpr_rag.answer "QUESTION" --rag {result.out} [--corpus FILE]')
    return 0


if __name__ == "__main__":
    run_cli(main)
