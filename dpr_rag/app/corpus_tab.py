"""Corpus tab: what is live (corpus, size, models with a dense index, index type), and uploading a TSV/JSONL
corpus whose indexes are built in the background, then swapped in. The old corpus serves until the swap, and
stays live if the build fails or is cancelled."""

from __future__ import annotations

import html
import time
from pathlib import Path

import gradio as gr

from ..errors import ConfigError
from ..retrieval.faiss_index import KINDS
from .common import Shared, session, user_errors
from .jobs import Job
from .render import progress_html
from .state import DEFAULT_CORPUS_NAME, AppState
from .uploads import CORPUS_TYPES, load_uploaded_corpus, store_upload

KIND_LABELS = {
    "flat": "flat (exact)",
    "fp16": "fp16 (exact, half the memory)",
    "hnsw": "hnsw (approximate, fast)",
    "ivfpq": "ivfpq (compressed; large corpora)",
    "ivfpq-exact": "ivfpq-exact (compressed in memory, rescored exactly from disk)",
}


def live_markdown(state: AppState) -> str:
    live = state.live
    if live is None:
        return "The starting corpus is loading…"
    ready = [state.models[m].label for m in state.models if m in live.ready]
    pending = [m.label for m in state.models.values() if m.id not in live.ready]
    lines = [
        f"### Live corpus: {html.escape(live.name)}",
        f"- **{len(live.passages):,} passages**, fingerprint `{live.fingerprint}`, live since "
        f"{time.strftime('%H:%M:%S', time.localtime(live.since))}",
        f"- FAISS index: **{live.index_kind}**; BM25: Lucene (k1=0.9, b=0.4); hybrid: BM25 + λ·sim",
        f"- Dense index ready for: **{html.escape(', '.join(ready) or 'none yet')}**",
    ]
    if pending:
        lines.append(f"- Not indexed yet (built when selected in a tab): {html.escape(', '.join(pending))}")
    lines.append(
        f"- Generator: {'loaded' if state.generator_loaded else 'loads on first QA use'} "
        f"({html.escape(Path(state.config.generator).name if state.config.generator else 'Gemma 3 270M, embedded')})"
    )
    # Where the server keeps its files is not the visitors' business (the log names the folder).
    lines.append("- Indexes are cached on the server by content (`DPR_RAG_CACHE`): a corpus seen before loads at once")
    return "\n".join(lines)


def start_upload_build(state: AppState, file, kind: str, owner: str | None) -> Job:
    cfg = state.config
    kind = (kind or "flat").split(" ")[0]
    if kind not in KINDS:
        raise ConfigError(f"unknown index type {kind!r}; choose one of {', '.join(KINDS)}")
    state.index_jobs.ensure_free(owner)
    stored, shown = store_upload(file, cfg.uploads_dir, CORPUS_TYPES, cfg.max_upload_bytes, "corpus")
    passages = load_uploaded_corpus(stored, shown, cfg.max_passages)  # errors name the file and line
    return state.start_corpus_swap(passages, shown, str(stored), kind, owner)


def start_change(state: AppState, file, delete_ids: str, owner: str | None) -> Job:
    """Add an uploaded passage file to the live corpus and/or delete passages by id (comma-separated)."""
    cfg = state.config
    state.index_jobs.ensure_free(owner)
    added = []
    if file:
        stored, shown = store_upload(file, cfg.uploads_dir, CORPUS_TYPES, cfg.max_upload_bytes, "passages")
        added = load_uploaded_corpus(stored, shown, cfg.max_passages)
    deleted = [i.strip() for i in (delete_ids or "").split(",") if i.strip()]
    return state.start_corpus_change(added, deleted, owner)


def start_reset(state: AppState, owner: str | None) -> Job:
    from ..data.passages import load_corpus

    cfg = state.config
    state.index_jobs.ensure_free(owner)
    name = DEFAULT_CORPUS_NAME if cfg.corpus is None else cfg.corpus.rsplit("/", 1)[-1]
    return state.start_corpus_swap(load_corpus(cfg.corpus), name, cfg.corpus, cfg.index_kind, owner)


def build(shared: Shared) -> tuple:
    state = shared.state
    info = gr.Markdown(live_markdown(state), elem_id="corpus-info")
    gr.Markdown(
        "Upload a corpus: DPR's passage TSV (`id<TAB>text<TAB>title` with a header row) or JSONL "
        f'(`{{"id", "title", "text"}}` a line), up to {state.config.max_upload_mb:g} MB and '
        f"{state.config.max_passages:,} passages. "
        "Its BM25 and dense indexes are built (cached by content, so a second upload of the same corpus is "
        "instant) and it replaces the live corpus for every tab; the query encoder and generator stay."
    )
    with gr.Row():
        file = gr.File(
            label="Corpus file (.tsv or .jsonl)", file_types=list(CORPUS_TYPES), type="filepath", scale=3, elem_id="corpus-file"
        )
        kind = gr.Radio(
            list(KIND_LABELS.values()), value=KIND_LABELS["flat"], label="Dense index type", scale=2, elem_id="corpus-kind"
        )
    with gr.Row():
        build_button = gr.Button("Build index and swap in", variant="primary", elem_id="corpus-build")
        cancel = gr.Button("Cancel build", variant="stop", elem_id="corpus-cancel")
        reset = gr.Button("Back to the starting corpus", elem_id="corpus-reset")
    gr.Markdown(
        "Or change the live corpus without rebuilding it: add passages (a TSV/JSONL file with new ids; only they are "
        "encoded) and/or delete passages by id. No retriever returns a deleted passage afterwards."
    )
    with gr.Row():
        add_file = gr.File(
            label="Passages to add (.tsv or .jsonl)",
            file_types=list(CORPUS_TYPES),
            type="filepath",
            scale=3,
            elem_id="corpus-add",
        )
        delete_ids = gr.Textbox(label="Passage ids to delete (comma-separated)", scale=2, elem_id="corpus-delete")
        change_button = gr.Button("Apply to the live corpus", elem_id="corpus-change")
    progress = gr.HTML(elem_id="corpus-progress")

    @user_errors
    def on_build(file, kind, request: gr.Request):
        start_upload_build(state, file, kind, session(request))
        return progress_html(state.index_jobs.last), gr.Timer(active=True)

    @user_errors
    def on_change(add_file, delete_ids, request: gr.Request):
        start_change(state, add_file, delete_ids, session(request))
        return progress_html(state.index_jobs.last), gr.Timer(active=True)

    @user_errors
    def on_reset(request: gr.Request):
        start_reset(state, session(request))
        return progress_html(state.index_jobs.last), gr.Timer(active=True)

    @user_errors
    def on_cancel(request: gr.Request):
        gr.Info(html.escape(state.index_jobs.cancel(session(request)), quote=False))
        return progress_html(state.index_jobs.last)

    build_button.click(on_build, [file, kind], [progress, shared.timer], api_name="corpus_build", concurrency_limit=None)
    reset.click(on_reset, None, [progress, shared.timer], api_name="corpus_reset", concurrency_limit=None)
    change_button.click(
        on_change, [add_file, delete_ids], [progress, shared.timer], api_name="corpus_change", concurrency_limit=None
    )
    cancel.click(on_cancel, None, progress, api_name="corpus_cancel", concurrency_limit=None)
    return info, progress
