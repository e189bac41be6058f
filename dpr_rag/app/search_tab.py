"""Search tab: one question, BM25 / DPR / hybrid side by side with scores and latency, answers highlighted."""

from __future__ import annotations

import html
import time

import gradio as gr

from ..errors import ConfigError
from ..retrieval.base import MAX_K
from .common import Shared, index_note, model_dropdown, session, user_errors
from .examples import example_questions
from .render import hits_html, message_html, parse_answers
from .state import AppState

COLUMNS = (("bm25", "BM25"), ("dense", "DPR (dense)"), ("hybrid", "Hybrid (BM25 + λ·sim)"))
MAX_UI_K = 20


def run_search(state: AppState, question: str, expected: str, model_id: str, k, owner: str | None = None):
    """(bm25 html, dense html, hybrid html, summary markdown, whether an index job should be followed)."""
    question = (question or "").strip()
    if not question:
        raise ConfigError("type a question first")
    k = int(k or 5)
    if not 1 <= k <= min(MAX_K, MAX_UI_K):
        raise ConfigError(f"k must be between 1 and {MAX_UI_K}")
    live = state.require_live()
    model = state.model(model_id)
    answers = parse_answers(expected)
    out, follow = {}, False
    t0 = time.perf_counter()
    hits = live.bm25.search([question], k)[0]
    out["bm25"] = hits_html(COLUMNS[0][1], hits, time.perf_counter() - t0, answers)
    searcher = live.searcher(model.id)
    if searcher is None:
        note, follow = index_note(state, model, owner)
        for name, label in COLUMNS[1:]:
            out[name] = message_html(label, note + " BM25 results are ready meanwhile.")
    else:
        for name, label in COLUMNS[1:]:
            retriever = searcher.retriever(name)
            t0 = time.perf_counter()
            hits = retriever.search([question], k)[0]
            out[name] = hits_html(label, hits, time.perf_counter() - t0, answers)
    summary = (
        f"“{html.escape(question)}”: top {k} of {len(live.passages):,} passages in **{html.escape(live.name)}** · "
        f"dense model: **{html.escape(model.label)}**"
    )
    if answers:
        summary += f" · expected: {html.escape(' | '.join(answers))}"
    return out["bm25"], out["dense"], out["hybrid"], summary, follow


def build(shared: Shared) -> None:
    state = shared.state
    with gr.Row():
        question = gr.Textbox(label="Question", placeholder="who painted the mona lisa", scale=3, elem_id="search-question")
        expected = gr.Textbox(
            label="Expected answer (optional; several separated by |) — highlighted in the passages",
            scale=2,
            elem_id="search-expected",
        )
    with gr.Row():
        model = model_dropdown(state, "Dense model", "search-model")
        k = gr.Slider(1, MAX_UI_K, value=5, step=1, label="k (passages per retriever)", scale=2)
        button = gr.Button("Search", variant="primary", scale=1, elem_id="search-button")
    examples = gr.Examples(
        [[q, " | ".join(a)] for q, a in example_questions(state.config.qa)],
        [question, expected],
        label="Examples from the default question set (click one to search)",
        cache_examples=False,
    )
    summary = gr.Markdown(elem_id="search-summary")
    with gr.Row(equal_height=False):
        columns = [gr.HTML(message_html(label, "—"), elem_id=f"search-{name}") for name, label in COLUMNS]
    shared.model_dropdowns.append(model)

    @user_errors
    def search(question, expected, model_id, k, request: gr.Request):
        bm25, dense, hybrid, text, follow = run_search(state, question, expected, model_id, k, session(request))
        return bm25, dense, hybrid, text, gr.Timer(active=True) if follow else gr.skip()

    outputs = [*columns, summary, shared.timer]
    inputs = [question, expected, model, k]
    button.click(search, inputs, outputs, api_name="search", concurrency_limit=4, concurrency_id="search")
    question.submit(search, inputs, outputs, api_visibility="private", concurrency_limit=4, concurrency_id="search")
    examples.load_input_event.then(
        search, inputs, outputs, api_visibility="private", concurrency_limit=4, concurrency_id="search"
    )
