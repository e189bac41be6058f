"""The page: a status banner, five tabs, and one status timer that follows the background jobs.

The timer ticks (once a second) only while a job this page cares about is running; each tick redraws the
banner, the Train and Corpus progress, the loss curve and the live-corpus panel, and refreshes the model
lists when a model was added. It stops itself once no job runs. `/status` (its API name) also returns a
JSON summary, which is what API clients poll.
"""

from __future__ import annotations

import html
import logging
import os

import gradio as gr

from ..paths import cache_dir
from . import corpus_tab, eval_tab, qa_tab, search_tab, train_tab
from .common import Shared, index_note, session
from .config import AppConfig
from .render import CSS, banner_html, progress_html
from .state import AppState

log = logging.getLogger("dpr_rag.app")

# System fonts: the page needs nothing from the internet, and renders the same offline.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
INTRO = (
    "**dpr-rag**: BM25, DPR and hybrid retrieval, retrieval-augmented generation, DPR training and evaluation, "
    "all on the same library the command line uses."
)


def status_payload(state: AppState) -> dict:
    status = state.status()
    live = state.live
    status["ready_labels"] = [state.models[m].label for m in state.models if live is not None and m in live.ready]
    return status


def build_app(state: AppState) -> gr.Blocks:
    # Gradio keeps its own copy of every upload: delete_cache removes those older than the TTL (default a day).
    ttl = state.config.upload_ttl
    with gr.Blocks(title="dpr-rag", delete_cache=(min(3600, ttl), ttl)) as demo:
        gr.Markdown(INTRO)
        banner = gr.HTML(elem_id="status-banner")
        status_json = gr.JSON(visible=False)
        seen_models = gr.State(-1)
        timer = gr.Timer(1.0, active=False)
        shared = Shared(state, timer)
        with gr.Tabs():
            with gr.Tab("Search", id="search", elem_id="tab-search") as t_search:
                search_tab.build(shared)
            with gr.Tab("QA", id="qa", elem_id="tab-qa") as t_qa:
                qa_tab.build(shared)
            with gr.Tab("Train", id="train", elem_id="tab-train"):
                train_progress, loss_plot, train_dev = train_tab.build(shared)
            with gr.Tab("Evaluate", id="evaluate", elem_id="tab-evaluate") as t_eval:
                eval_tab.build(shared)
            with gr.Tab("Corpus", id="corpus", elem_id="tab-corpus") as t_corpus:
                corpus_info, corpus_progress = corpus_tab.build(shared)

        def refresh(seen: int):
            status = status_payload(state)
            index_job, train_job = state.index_jobs.last, state.train_jobs.last
            busy = state.index_jobs.current is not None or state.train_jobs.current is not None
            changed = status["models_version"] != seen
            dropdowns = [gr.Dropdown(choices=state.model_choices()) if changed else gr.skip() for _ in shared.model_dropdowns]
            t_progress, t_plot, t_dev = train_tab.train_outputs(state)
            return (
                status,
                banner_html(status, index_job, train_job),
                t_progress,
                t_plot,
                t_dev,
                progress_html(index_job),
                corpus_tab.live_markdown(state),
                *dropdowns,
                status["models_version"],
                gr.Timer(active=busy),
            )

        outputs = [
            status_json,
            banner,
            train_progress,
            loss_plot,
            train_dev,
            corpus_progress,
            corpus_info,
            *shared.model_dropdowns,
            seen_models,
            timer,
        ]
        timer.tick(refresh, seen_models, outputs, api_name="status", concurrency_limit=None, show_progress="hidden")
        demo.load(refresh, seen_models, outputs, api_visibility="private", concurrency_limit=None, show_progress="hidden")
        for tab in (t_search, t_qa, t_eval, t_corpus):  # another session may have trained a model or swapped the corpus
            tab.select(refresh, seen_models, outputs, api_visibility="private", concurrency_limit=None, show_progress="hidden")

        def prepare(model_id: str, request: gr.Request):
            return _prepare_model(state, model_id, request)

        for dropdown in shared.model_dropdowns:
            dropdown.change(prepare, dropdown, timer, api_visibility="private", concurrency_limit=None, show_progress="hidden")
    return demo


def _prepare_model(state: AppState, model_id: str, request: gr.Request):
    """A model was chosen in a list: start building its dense index for the live corpus if it has none."""
    live = state.live
    if live is None or not model_id or model_id not in state.models or model_id in live.ready:
        return gr.skip()
    note, follow = index_note(state, state.model(model_id), session(request))
    gr.Info(html.escape(note, quote=False))
    return gr.Timer(active=True) if follow else gr.skip()


def create_app(config: AppConfig | None = None) -> tuple[gr.Blocks, AppState]:
    """The app and its state; starts loading the starting corpus and its index in the background."""
    state = AppState(config or AppConfig.from_env())
    state.start_initial_load()
    return build_app(state), state


def launch(demo: gr.Blocks, state: AppState, **kwargs):
    cfg = state.config
    demo.queue(default_concurrency_limit=2)
    log.info(
        "serving on http://%s:%d (data folder %s, index cache %s)", cfg.server_name, cfg.server_port, cfg.data_dir, cache_dir()
    )
    return demo.launch(
        server_name=cfg.server_name,
        server_port=cfg.server_port,
        max_file_size=cfg.max_upload_bytes,
        allowed_paths=[str(cfg.reports_dir)],
        css=CSS,
        theme=THEME,
        ssr_mode=False,
        show_error=True,
        footer_links=["api", "gradio"],
        **kwargs,
    )


def main() -> None:
    logging.basicConfig(level=os.environ.get("DPR_RAG_APP_LOG", "INFO"), format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    demo, state = create_app()
    launch(demo, state)
