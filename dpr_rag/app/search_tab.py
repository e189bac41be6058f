"""Search tab: one question, BM25 / DPR / hybrid side by side with scores and latency, answers highlighted."""

from __future__ import annotations

import html
import time

import gradio as gr

from ..errors import ConfigError
from ..retrieval.base import MAX_K
from ..retrieval.rerank import RerankedRetriever
from ..retrieval.searcher import reranked
from .common import Shared, index_note, model_dropdown, session, user_errors, whole_number
from .examples import example_questions
from .render import hits_html, message_html, parse_answers
from .state import AppState

COLUMNS = (("bm25", "BM25"), ("dense", "DPR (dense)"), ("hybrid", "Hybrid (BM25 + λ·sim)"))
MAX_UI_K = 20


def _search_column(retriever, label: str, question: str, k: int, answers: list[str]) -> str:
    """One column's html; a reranked retriever's latency is split into its two stages."""
    before = dict(retriever.seconds) if isinstance(retriever, RerankedRetriever) else None
    t0 = time.perf_counter()
    hits = retriever.search([question], k)[0]
    seconds, note = time.perf_counter() - t0, ""
    if before is not None:
        first, rerank = (1000 * (retriever.seconds[s] - before[s]) for s in ("first_stage", "rerank"))
        n = min(retriever.candidates, len(retriever.passages))
        note = f"first stage {first:.1f} ms, then the reranker rescored {n} candidates in {rerank:.1f} ms"
        label += " → reranked"
    return hits_html(label, hits, seconds, answers, note)


def run_search(state: AppState, question: str, expected: str, model_id: str, k, owner: str | None = None, rerank: bool = False):
    """(bm25 html, dense html, hybrid html, summary markdown, whether an index job should be followed). `rerank`: each
    retriever's top candidates reordered by the app's reranker (DPR_RAG_APP_RERANKER)."""
    question = (question or "").strip()
    if not question:
        raise ConfigError("type a question first")
    k = whole_number(k, "k", 5) or 5
    if not 1 <= k <= min(MAX_K, MAX_UI_K):
        raise ConfigError(f"k must be between 1 and {MAX_UI_K}")
    if rerank and not state.config.reranker:
        raise ConfigError("this app has no reranker (start it with DPR_RAG_APP_RERANKER=FOLDER)")
    live = state.require_live()
    model = state.model(model_id)
    answers = parse_answers(expected)
    out, follow = {}, False
    searcher = live.searcher(model.id)
    if searcher is None:
        out["bm25"] = _search_column(live.bm25, COLUMNS[0][1], question, k, answers)
        note, follow = index_note(state, model, owner)
        for name, label in COLUMNS[1:]:
            out[name] = message_html(label, note + " BM25 results are ready meanwhile.")
    else:
        for name, label in COLUMNS:
            out[name] = _search_column(searcher.retriever(reranked(name) if rerank else name), label, question, k, answers)
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
        rerank = gr.Checkbox(
            value=False,
            label="Rerank the top candidates (cross-encoder)",
            visible=bool(state.config.reranker),
            scale=1,
            elem_id="search-rerank",
        )
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
    def search(question, expected, model_id, k, use_rerank, request: gr.Request):
        bm25, dense, hybrid, text, follow = run_search(state, question, expected, model_id, k, session(request), bool(use_rerank))
        return bm25, dense, hybrid, text, gr.Timer(active=True) if follow else gr.skip()

    outputs = [*columns, summary, shared.timer]
    inputs = [question, expected, model, k, rerank]
    button.click(search, inputs, outputs, api_name="search", concurrency_limit=4, concurrency_id="search")
    question.submit(search, inputs, outputs, api_visibility="private", concurrency_limit=4, concurrency_id="search")
    examples.load_input_event.then(
        search, inputs, outputs, api_visibility="private", concurrency_limit=4, concurrency_id="search"
    )
