"""Evaluate tab: the evaluation harness (`eval.harness.run_evaluation`) on a chosen QA set and model, over the live
corpus; the top-k table, the accuracy-vs-k plot and the report folder as a zip to download."""

from __future__ import annotations

import html
import secrets
import shlex
import shutil
import threading
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from ..errors import ConfigError, DprRagError
from ..retrieval.searcher import RETRIEVERS
from ..storage import unique_folder
from .common import Shared, index_note, model_dropdown, session, user_errors
from .models import BASE_MODEL, ModelEntry
from .state import DEFAULT_MODEL, AppState
from .uploads import QA_TYPES, load_uploaded_qa, safe_name, store_upload

QA_DEFAULT, QA_UPLOAD = "Default questions", "Upload a file"
DEFAULT_LIMIT = 200


def topk_frame(report: dict) -> pd.DataFrame:
    """One row per retriever over all questions, then one per retriever over the answerable ones (those whose
    answer the corpus contains), so the table stays narrow."""
    ks = list(next(iter(report["retrieval"].values()), {}).keys())
    rows = []
    for subset, counts, n in (
        ("all", report["retrieval"], report["n_questions"]),
        ("answerable", report["answerable"]["retrieval"], report["n_answerable"]),
    ):
        for name, accs in counts.items():
            qps = report["queries_per_second"].get(name) if subset == "all" else None
            rows.append([name, f"{subset} ({n:,})", *[accs.get(k) for k in ks], qps])
    return pd.DataFrame(rows, columns=["retriever", "questions", *[f"top-{k} %" for k in ks], "queries/s"])


def summary_markdown(report: dict, model_label: str, corpus: str) -> str:
    s = report["settings"]
    lines = [
        f"**{report['n_questions']:,} questions** ({report['n_answerable']:,} have an answer somewhere in the corpus) · "
        f"corpus: {html.escape(corpus)} ({s['n_passages']:,} passages) · model: {html.escape(model_label)} · "
        f"{s['seconds']} s"
    ]
    significant = [c for c in report["comparisons"]["retrieval"] if c["excludes_zero"]]
    if significant:
        lines.append(
            "Differences whose 95% bootstrap interval excludes 0: "
            + "; ".join(
                f"{c['a']} − {c['b']} at top-{c['k']}: {c['difference']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}]"
                for c in significant[:6]
            )
        )
    command = s["command"].replace("`", "'")
    lines.append(f"Reproduce: `{command}`")  # a code span: Markdown shows it as it is (no HTML escapes)
    return "\n\n".join(lines)


def model_argument(model: ModelEntry) -> str | None:
    """What `--model` says for this model on the command line: nothing for the default, the base's name, or the
    folder name of a trained run (never a server path)."""
    if model.path is None:
        return None
    return "all-MiniLM-L6-v2" if model.id == BASE_MODEL else Path(model.path).name


def reproduce_command(
    qa: str | None, corpus: str | None, model: str | None, retrievers: list[str], ks: str, limit: int
) -> list[str]:
    """The `eval.run` command line of an evaluation run in the app, with the defaults left out so that it runs as
    shown; files are named by their file names (the user's copies), not by where the server keeps them."""
    command = ["python", "-m", "eval.run"]
    for flag, value in (("--qa", qa), ("--corpus", corpus), ("--model", model)):
        if value is not None:
            command += [flag, value]
    command += ["--retrievers", ",".join(retrievers), "--k", ks]
    return command + (["--limit", str(limit)] if limit else [])


def run_eval(
    state: AppState,
    qa_choice: str,
    qa_file,
    model_id: str,
    retrievers,
    ks: str,
    limit,
    owner: str | None,
    progress=None,
    cancel: threading.Event | None = None,
):
    """(summary markdown, top-k frame, plot path, zip path, whether an index job should be followed)."""
    from eval.config import EvalConfig, parse_ks
    from eval.harness import run_evaluation  # imports the metrics (evaluate): only when asked

    cfg = state.config
    retrievers = [r for r in (retrievers or []) if r]
    if not retrievers:
        raise ConfigError("choose at least one retriever")
    for r in retrievers:
        if r not in RETRIEVERS:
            raise ConfigError(f"unknown retriever {r!r}")
    try:
        limit = int(limit or 0)
    except (TypeError, ValueError) as e:
        raise ConfigError("limit must be a whole number (0 = all questions)") from e
    if limit < 0:
        raise ConfigError("limit must be 0 (all questions) or more")
    live = state.require_live()
    model = state.model(model_id)
    if ({"dense", "hybrid"} & set(retrievers)) and model.id not in live.ready:
        note, follow = index_note(state, model, owner)
        return f"{html.escape(note)} Run the evaluation again when it is ready.", None, None, None, follow
    examples = None
    qa: str | None
    if qa_choice == QA_UPLOAD:
        stored, shown = store_upload(qa_file, cfg.uploads_dir, QA_TYPES, cfg.max_upload_bytes, "question file")
        examples = load_uploaded_qa(stored, shown, cfg.max_questions)  # parsed once: the harness takes these
        qa = str(stored)
    elif qa_choice == QA_DEFAULT:
        qa, shown = cfg.qa, "the default questions"
    else:
        raise ConfigError(f"unknown question set {qa_choice!r}")
    # Unguessable: a report is served to whoever asks for its name, so the name must not be a timestamp alone.
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{safe_name(model.id.replace(':', '-'))}-{secrets.token_urlsafe(12)}"
    out = unique_folder(cfg.reports_dir, base)
    shown_command = reproduce_command(
        Path(shown).name if qa else None,
        None if live.path is None else Path(live.name).name,
        model_argument(model),
        retrievers,
        ks,
        limit,
    )
    config = EvalConfig(
        qa=qa,
        corpus=live.path,
        model=model.path,
        # the harness's baseline is the embedded encoder: meaningful when the app starts from it
        baseline=model.path is not None and state.model(DEFAULT_MODEL).path is None,
        retrievers=retrievers,
        k=parse_ks(ks),
        limit=limit or None,
        out=str(out),
        index_type=live.index_kind,
        show_progress=False,
        public=True,  # no server paths in what the page and the zip show
        command=shlex.join(shown_command),
    )

    def on_progress(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress((done, total), desc=stage, unit="questions")

    # The live searcher of this model holds the corpus and its indexes already (None: dense not built, BM25 only).
    report, folder = run_evaluation(
        config, progress=on_progress, cancel=cancel, examples=examples, searcher=live.searcher(model.id)
    )
    archive = shutil.make_archive(str(folder), "zip", root_dir=folder)
    return summary_markdown(report, model.label, live.name), topk_frame(report), str(folder / "topk.png"), archive, False


def build(shared: Shared) -> None:
    state = shared.state
    gr.Markdown(
        "Top-k retrieval accuracy (DPR's answer match) of each retriever over the live corpus, with paired "
        "bootstrap confidence intervals; the report folder (report.md, report.json, per-question results, plot) "
        "downloads as a zip."
    )
    with gr.Row():
        qa_choice = gr.Radio([QA_DEFAULT, QA_UPLOAD], value=QA_DEFAULT, label="Questions", scale=2, elem_id="eval-qa")
        qa_file = gr.File(
            label="Question file: NQ-open .jsonl, DPR .json, DPR .csv/.tsv",
            file_types=list(QA_TYPES),
            type="filepath",
            visible=False,
            scale=3,
            elem_id="eval-file",
        )
    with gr.Row():
        model = model_dropdown(state, "Dense model", "eval-model")
        retrievers = gr.CheckboxGroup(
            list(RETRIEVERS), value=list(RETRIEVERS), label="Retrievers", scale=2, elem_id="eval-retrievers"
        )
    with gr.Row():
        ks = gr.Textbox("1,5,20,100", label="k values", scale=2, elem_id="eval-k")
        limit = gr.Number(
            DEFAULT_LIMIT, label="Questions to use (0 = all)", precision=0, minimum=0, scale=2, elem_id="eval-limit"
        )
        run = gr.Button("Run evaluation", variant="primary", scale=1, elem_id="eval-run")
        cancel = gr.Button("Cancel", variant="stop", scale=1, elem_id="eval-cancel")
    summary = gr.Markdown(elem_id="eval-summary")
    table = gr.Dataframe(label="Top-k accuracy (%)", interactive=False, elem_id="eval-table")
    with gr.Row():
        plot = gr.Image(label="Accuracy against k", type="filepath", interactive=False, elem_id="eval-plot", scale=3)
        report = gr.File(label="Report (zip)", interactive=False, elem_id="eval-report", scale=1)
    shared.model_dropdowns.append(model)

    qa_choice.change(lambda c: gr.File(visible=c == QA_UPLOAD), qa_choice, qa_file, api_visibility="private", queue=False)

    @user_errors
    def on_run(qa_choice, qa_file, model_id, retrievers, ks, limit, request: gr.Request, progress=gr.Progress()):
        owner = session(request)
        cancel_event = threading.Event()
        state.eval_cancels[owner or ""] = cancel_event
        try:
            text, frame, png, archive, follow = run_eval(
                state, qa_choice, qa_file, model_id, retrievers, ks, limit, owner, progress, cancel_event
            )
        except DprRagError as e:
            if cancel_event.is_set():
                return "Evaluation cancelled; nothing was written.", None, None, None, gr.skip()
            raise e
        finally:
            state.eval_cancels.pop(owner or "", None)
        return text, frame, png, archive, gr.Timer(active=True) if follow else gr.skip()

    def on_cancel(request: gr.Request):
        event = state.eval_cancels.get(session(request) or "")
        if event is None:
            gr.Info("No evaluation of yours is running.")
        else:
            event.set()
            gr.Info("Cancelling the evaluation: it stops at the next batch of questions.")

    # One evaluation at a time (CPU-bound); others wait in the queue, which shows their position.
    run.click(
        on_run,
        [qa_choice, qa_file, model, retrievers, ks, limit],
        [summary, table, plot, report, shared.timer],
        api_name="evaluate",
        concurrency_limit=1,
        concurrency_id="evaluate",
    )
    cancel.click(on_cancel, None, None, api_name="evaluate_cancel", concurrency_limit=None)
