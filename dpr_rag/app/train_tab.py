"""Train tab: train a retriever on the default questions or an uploaded file, with a live loss curve.

Two recipes, the same library functions as `python -m dpr_rag.train --recipe ...`: query-side fine-tuning (the
default: a LoRA adapter on the question tower against the frozen corpus vectors, `training/query_side.py`) or DPR
(both towers, in-batch + BM25 hard negatives, `training/trainer.py`). Training runs in the background (in a thread,
one run at a time); the page follows it
with the status timer, so the app stays responsive and a reloaded page still sees the run. When it ends,
its best checkpoint joins the model lists of Search, QA and Evaluate.
"""

from __future__ import annotations

import html
import time

import gradio as gr
import pandas as pd

from ..data.qa import QAExample
from ..errors import ConfigError
from ..training.query_side import QuerySideConfig, train_query_side
from ..training.trainer import TrainConfig, train
from .common import Shared, session, user_errors
from .jobs import Job
from .render import progress_html
from .state import DEFAULT_MODEL, AppState
from .uploads import QA_TYPES, load_uploaded_qa, safe_name, store_upload

DATA_DEFAULT, DATA_UPLOAD = "Default questions", "Upload a file"
RECIPE_QUERY_SIDE, RECIPE_DPR = "Query-side (question adapter)", "DPR (both towers)"
# The defaults each recipe's command line has (batch size, learning rate), shown when the recipe is chosen.
RECIPE_DEFAULTS = {RECIPE_QUERY_SIDE: (32, 5e-4), RECIPE_DPR: (16, 2e-5)}
PREPARING = {
    RECIPE_QUERY_SIDE: "labelling the questions (answer-bearing passages in the starting model's dense top 100) and "
    "scoring the starting model on dev",
    RECIPE_DPR: "preparing the training data (BM25 distant supervision) and scoring the starting model on dev",
}


def _check_int(name: str, value, low: int, high: int) -> int:
    try:
        v = float(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from e
    if not v.is_integer() or not low <= v <= high:
        raise ConfigError(f"{name} must be a whole number between {low} and {high}, got {value!r}")
    return int(v)


def start_training(
    state: AppState,
    data: str,
    qa_file,
    epochs,
    batch_size,
    hard_negatives,
    lr,
    max_examples,
    run_name,
    owner: str | None,
    recipe: str = RECIPE_QUERY_SIDE,
) -> Job:
    cfg = state.config
    if recipe not in RECIPE_DEFAULTS:
        raise ConfigError(f"unknown recipe {recipe!r}; choose {RECIPE_QUERY_SIDE!r} or {RECIPE_DPR!r}")
    epochs = _check_int("epochs", epochs, 1, 100)
    batch_size = _check_int("batch size", batch_size, 2, 512)
    hard_negatives = _check_int("hard negatives", hard_negatives, 0, 10)
    max_examples = _check_int("max examples", max_examples or 0, 0, 10**7)
    try:
        lr = float(lr)
    except (TypeError, ValueError) as e:
        raise ConfigError("learning rate must be a number such as 2e-5") from e
    if not 0 < lr < 1:
        raise ConfigError(f"learning rate must be between 0 and 1, got {lr}")
    if max_examples and max_examples < batch_size:
        raise ConfigError(f"max examples ({max_examples}) must be at least the batch size ({batch_size}), or 0 for all")
    state.train_jobs.ensure_free(owner)  # fail before copying an upload when the slot is taken
    examples: list[QAExample] | None = None  # parsed here already: training takes them instead of parsing the file again
    qa: str | None
    if data == DATA_UPLOAD:
        stored, shown = store_upload(qa_file, cfg.uploads_dir, QA_TYPES, cfg.max_upload_bytes, "question file")
        examples = load_uploaded_qa(stored, shown, cfg.max_questions)  # validate now: errors name the line
        qa, data_name = str(stored), shown  # the stored file stays the run's recorded source
    elif data == DATA_DEFAULT:
        qa, data_name = cfg.qa, ("the default questions" if cfg.qa is None else safe_name(cfg.qa))
    else:
        raise ConfigError(f"unknown data choice {data!r}")
    live = state.require_live()
    name = safe_name(run_name or "", fallback="") or time.strftime("run-%Y%m%d-%H%M%S")
    out = cfg.runs_dir / name
    n = 2
    while out.exists() or f"run:{out.name}" in state.models:
        out, n = cfg.runs_dir / f"{name}-{n}", n + 1
    common = dict(out=str(out), qa=qa, corpus=live.path, model=state.model(DEFAULT_MODEL).path, epochs=epochs)
    common |= dict(batch_size=batch_size, lr=lr, max_examples=max_examples or None, show_progress=False)
    config: QuerySideConfig | TrainConfig = (
        QuerySideConfig(**common) if recipe == RECIPE_QUERY_SIDE else TrainConfig(**common, hard_negatives=hard_negatives)
    )

    def work(job: Job):
        job.update(PREPARING[recipe])

        def on_record(record: dict) -> None:
            job.records.append(record)
            step, epoch = record.get("step", 0), record.get("epoch") or 0.0
            total = round(step / epoch * epochs) if epoch else 0
            if "loss" in record:
                job.update(f"epoch {epoch:.2f} of {epochs}, loss {record['loss']:.4f}", step, total)
            else:
                dev = next(
                    (
                        f"{k.replace('dev_top', 'dev top-')} accuracy {v:.1f}%"
                        for k, v in record.items()
                        if k.startswith("dev_top") and v is not None
                    ),
                    "evaluated",
                )
                job.update(f"step {step}: {dev}", step, total or job.total)

        if isinstance(config, QuerySideConfig):
            return train_query_side(config, callback=on_record, cancel=job.cancel, examples=examples)
        return train(config, callback=on_record, cancel=job.cancel, examples=examples)

    def on_success(job: Job) -> str:
        result = job.result
        entry = state.register_run(out)
        best = f", best dev top-20 {result.best_dev_accuracy:.1f}%" if result.best_dev_accuracy is not None else ""
        head = f"{out.name}: {'cancelled at' if result.cancelled else 'finished after'} step {result.steps}{best}."
        if entry is None:
            return head + " No checkpoint was saved yet (one is saved at the end of each epoch)."
        return head + f" Now selectable in Search, QA and Evaluate as “{entry.label}”."

    what = "a question adapter" if recipe == RECIPE_QUERY_SIDE else "DPR"
    return state.train_jobs.start(f"Training {out.name} ({what}) on {data_name}", owner, work, on_success, tag=out.name)


def loss_frame(job: Job | None) -> pd.DataFrame:
    """Step and loss of every logged step. Typed even when empty: an untyped empty frame would make the plot's
    axes categorical, and the page keeps the first axis types it sees."""
    records = [r for r in (job.records if job else []) if "loss" in r]
    return pd.DataFrame(
        {
            "step": pd.Series([r["step"] for r in records], dtype="int64"),
            "loss": pd.Series([r["loss"] for r in records], dtype="float64"),
        }
    )


def dev_text(job: Job | None) -> str:
    if job is None:
        return ""
    evals = [(r["step"], k, v) for r in job.records for k, v in r.items() if k.startswith("dev_top") and v is not None]
    if not evals:
        return ""
    return "Dev accuracy (top-20): " + ", ".join(f"step {s}: {v:.1f}%" for s, _, v in evals)


def train_outputs(state: AppState):
    """(progress html, loss frame, dev accuracy text) of the latest training run."""
    job = state.train_jobs.last
    return progress_html(job), loss_frame(job), html.escape(dev_text(job))


def build(shared: Shared) -> tuple:
    state = shared.state
    gr.Markdown(
        "Train a retriever from the default encoder. **Query-side** (the default, as in `python -m dpr_rag.train`): a "
        "small adapter on the question tower, trained against the live corpus's vectors, which stay as they are (no "
        "index is rebuilt); dev accuracy is top-20 over the whole corpus. **DPR**: both towers, in-batch negatives "
        "and BM25 hard negatives; dev accuracy is top-20 over a dev pool. Questions without passages are labelled "
        "against the live corpus by distant supervision. Small runs take minutes on a CPU."
    )
    recipe = gr.Radio(list(RECIPE_DEFAULTS), value=RECIPE_QUERY_SIDE, label="Recipe", elem_id="train-recipe")
    with gr.Row():
        data = gr.Radio([DATA_DEFAULT, DATA_UPLOAD], value=DATA_DEFAULT, label="Training data", scale=2, elem_id="train-data")
        qa_file = gr.File(
            label="Question file: NQ-open .jsonl, DPR .json (with positives), DPR .csv/.tsv",
            file_types=list(QA_TYPES),
            type="filepath",
            visible=False,
            scale=3,
            elem_id="train-file",
        )
    with gr.Row():
        epochs = gr.Number(1, label="Epochs", precision=0, minimum=1, maximum=100, elem_id="train-epochs")
        batch_default, lr_default = RECIPE_DEFAULTS[RECIPE_QUERY_SIDE]
        batch = gr.Number(batch_default, label="Batch size", precision=0, minimum=2, maximum=512, elem_id="train-batch")
        hard = gr.Number(
            1,
            label="Hard negatives per question",
            precision=0,
            minimum=0,
            maximum=10,
            visible=False,  # DPR only
            elem_id="train-hard",
        )
        lr = gr.Number(lr_default, label="Learning rate", elem_id="train-lr")
        max_examples = gr.Number(160, label="Max training questions (0 = all)", precision=0, minimum=0, elem_id="train-max")
    with gr.Row():
        run_name = gr.Textbox(label="Run name (optional)", placeholder="run-<date>", scale=3, elem_id="train-name")
        start = gr.Button("Start training", variant="primary", scale=1, elem_id="train-start")
        cancel = gr.Button("Cancel", variant="stop", scale=1, elem_id="train-cancel")
    progress = gr.HTML(elem_id="train-progress")
    dev = gr.Markdown(elem_id="train-dev")
    plot = gr.LinePlot(
        loss_frame(None),
        x="step",
        y="loss",
        title="Training loss (NLL of the positives)",
        height=320,
        elem_id="train-loss",
    )

    data.change(lambda d: gr.File(visible=d == DATA_UPLOAD), data, qa_file, api_visibility="private", queue=False)

    def on_recipe(chosen: str):
        batch_size, learning_rate = RECIPE_DEFAULTS.get(chosen, RECIPE_DEFAULTS[RECIPE_QUERY_SIDE])
        return gr.Number(visible=chosen == RECIPE_DPR), batch_size, learning_rate

    recipe.change(on_recipe, recipe, [hard, batch, lr], api_visibility="private", queue=False)

    @user_errors
    def on_start(data, qa_file, epochs, batch, hard, lr, max_examples, run_name, recipe, request: gr.Request):
        start_training(state, data, qa_file, epochs, batch, hard, lr, max_examples, run_name, session(request), recipe)
        return (*train_outputs(state), gr.Timer(active=True))

    @user_errors
    def on_cancel(request: gr.Request):
        gr.Info(html.escape(state.train_jobs.cancel(session(request)), quote=False))
        return progress_html(state.train_jobs.last)

    start.click(
        on_start,
        [data, qa_file, epochs, batch, hard, lr, max_examples, run_name, recipe],
        [progress, plot, dev, shared.timer],
        api_name="train_start",
        concurrency_limit=None,
    )
    cancel.click(on_cancel, None, progress, api_name="train_cancel", concurrency_limit=None)
    return progress, plot, dev
