"""QA tab: RAG-Token, RAG-Sequence, standard RAG, closed-book or DPR's extractive reader over the dense, BM25 or hybrid
retriever; the answer with its passages, p(z|x) and p(z|x,y) (for the extractive reader: its passage selection, and
the answer highlighted where it was read)."""

from __future__ import annotations

import html
import math
import time

import gradio as gr

from ..errors import ConfigError
from ..rag.demonstrations import MAX_SHOTS
from ..retrieval.searcher import RERANKED
from .common import Shared, index_note, model_dropdown, session, user_errors, whole_number
from .examples import example_questions
from .render import highlight, highlight_range
from .state import AppState

MODES = {
    "RAG-Token": "token",
    "RAG-Sequence": "sequence",
    "Standard RAG (top-k in one prompt)": "standard",
    "Closed-book (no retrieval)": "closed-book",
    "Extractive (DPR reader: a span of a passage)": "extractive",
}


def mode_label(mode: str) -> str:
    """The Mode radio's label of a pipeline mode ("standard" -> "Standard RAG (top-k in one prompt)")."""
    return next(label for label, m in MODES.items() if m == mode)


RETRIEVERS = {
    "Dense": "dense",
    "BM25": "bm25",
    "Hybrid (BM25 + dense)": "hybrid",
    "Dense + rerank": "dense+rerank",
    "Hybrid + rerank": "hybrid+rerank",
}


def mode_choices(state: AppState) -> list[str]:
    """The modes this app offers: the extractive one only when it has a reader (shipped, or DPR_RAG_APP_EXTRACTIVE_READER)."""
    return [label for label, mode in MODES.items() if mode != "extractive" or state.has_extractive_reader]


def retriever_choices(state: AppState) -> list[str]:
    """The retrievers this app offers: the reranked ones only when it has a reranker (DPR_RAG_APP_RERANKER)."""
    return [label for label, name in RETRIEVERS.items() if state.config.reranker or not name.endswith(RERANKED)]


MAX_RAG_K = 10


def _bar(value: float) -> str:
    return f"<span class='dpr-bar' style='display:inline-block;width:{100 * value:.0f}px;height:8px;background:#4a7bd0'></span>"


def answer_html(a, mode_label: str, seconds: float, model_label: str) -> str:
    """The answer, then each passage with its prior and posterior (bars), the answer highlighted in it."""
    answer = a.answer.strip()
    p = math.exp(a.logprob) if a.logprob > -700 else 0.0
    parts = [
        f"<div id='qa-answer' data-mode='{html.escape(a.mode)}'>"
        f"<div class='dpr-meta qa-question'>{html.escape(a.question)}</div>"
        f"<h3 class='qa-answer-text'>{html.escape(answer) or '(empty answer)'}</h3>",
        f"<div class='dpr-meta'>{html.escape(mode_label)} · log p(answer | question) = {a.logprob:.2f} (p = {p:.3g}) · "
        f"{seconds:.1f} s · retriever: {html.escape(model_label)}</div></div>",
    ]
    if a.fallback:
        parts.append(
            "<div class='dpr-meta qa-fallback'>Closed-book fallback: the RAG answer was in none of these passages, so "
            "this is the generator's answer without them.</div>"
        )
    if not a.passages:
        parts.append("<div class='dpr-meta'>Closed-book: the generator answered from its parameters alone, no passages.</div>")
        return "".join(parts)
    parts.append(f"<div class='dpr-meta'>{_passages_note(a.mode)}</div>")
    best = a.span.passage if a.span else max(range(len(a.passages)), key=lambda i: a.passages[i].posterior)
    for i, prov in enumerate(a.passages):
        title, text = html.escape(prov.passage.title or "(untitled)"), highlight(prov.passage.text, [answer] if answer else [])
        if a.span is not None and a.span.passage == i:  # the extractive reader's own span, exactly where it read it
            if a.span.field == "title":
                title = highlight_range(prov.passage.title, a.span.start, a.span.end)
            else:
                text = highlight_range(prov.passage.text, a.span.start, a.span.end)
        cls = "dpr-hit dpr-has-answer" if i == best else "dpr-hit"
        parts.append(
            f"<div class='{cls} qa-passage' data-prior='{prov.prior:.4f}' data-posterior='{prov.posterior:.4f}'>"
            f"<span class='dpr-score'>score {prov.retrieval_score:.3f}</span>"
            f"<div class='dpr-title'>{i + 1}. {title} <small>[{html.escape(prov.passage.id)}]</small></div>"
            f"<div class='dpr-meta'>p(z|x) = {prov.prior:.3f} {_bar(prov.prior)} &nbsp; "
            f"{'P_sel(z|x)' if a.mode == 'extractive' else 'p(z|x,y)'} = {prov.posterior:.3f} {_bar(prov.posterior)}</div>"
            f"<div class='dpr-text'>{text}</div></div>"
        )
    return "".join(parts)


def _passages_note(mode: str) -> str:
    if mode == "standard":
        return (
            "Standard RAG: all passages were read in one prompt, so no passage has a posterior of its own; p(z|x,y) "
            "repeats the retriever's prior p(z|x)."
        )
    if mode == "extractive":
        return (
            "Extractive reader (DPR): it read every passage and answered with a span of one of them, marked where it "
            "stands; P_sel(z|x) is the reader's passage-selection probability."
        )
    return (
        "Passages, in retrieval order: p(z|x) is the retriever's prior, p(z|x,y) the posterior given the answer (the "
        "passage the answer leaned on)."
    )


def run_answer(
    state: AppState,
    question: str,
    mode_label: str,
    model_id: str,
    k,
    owner: str | None = None,
    progress=None,
    retriever_label: str = "Dense",
    shots=None,
    fallback: bool | None = None,
):
    """(answer html, whether an index job should be followed)."""
    question = (question or "").strip()
    if not question:
        raise ConfigError("type a question first")
    if mode_label not in mode_choices(state):
        raise ConfigError(f"unknown mode {mode_label!r}; choose one of {', '.join(mode_choices(state))}")
    if retriever_label not in retriever_choices(state):
        raise ConfigError(f"unknown retriever {retriever_label!r}; choose one of {', '.join(retriever_choices(state))}")
    mode = MODES[mode_label]
    k = whole_number(k, "k", 5) or 5
    if not 1 <= k <= MAX_RAG_K:
        raise ConfigError(f"k must be between 1 and {MAX_RAG_K}")
    shots = whole_number(shots, "shots", state.config.shots)
    if not 0 <= shots <= MAX_SHOTS:
        raise ConfigError(f"shots must be between 0 and {MAX_SHOTS}")
    live = state.require_live()
    model = state.model(model_id)
    if mode == "closed-book" and model.id not in live.ready:
        # The generator alone: any model with a ready index gives the pipeline (its retriever is not used).
        model = state.model(next(iter(live.ready))) if live.ready else model
    if model.id not in live.ready:
        note, follow = index_note(state, model, owner)
        return f"<div id='qa-answer' class='dpr-meta'>{html.escape(note)} Ask again when it is ready.</div>", follow
    if progress is not None and not state.generator_loaded and mode != "extractive":
        progress(0.1, desc="loading the generator (first use; the default one takes a few seconds)")
    pipe = state.pipeline(
        model.id, k, RETRIEVERS[retriever_label], shots, None if fallback is None else bool(fallback), mode == "extractive"
    )
    if progress is not None:
        progress(0.5, desc=f"reading the passages ({mode_label})" if mode == "extractive" else f"generating ({mode_label})")
    t0 = time.perf_counter()
    a = pipe.answer(question, mode)
    label = model.label if RETRIEVERS[retriever_label] == "dense" else f"{retriever_label} ({model.label})"
    return answer_html(a, mode_label, time.perf_counter() - t0, label), False


def build(shared: Shared) -> None:
    state = shared.state
    with gr.Row():
        question = gr.Textbox(label="Question", placeholder="who painted the mona lisa", scale=3, elem_id="qa-question")
        mode = gr.Radio(mode_choices(state), value=mode_label(state.default_mode), label="Mode", scale=2, elem_id="qa-mode")
    with gr.Row():
        retriever = gr.Radio(retriever_choices(state), value="Dense", label="Retriever", scale=2, elem_id="qa-retriever")
        model = model_dropdown(state, "Dense model", "qa-model")
        k = gr.Slider(1, MAX_RAG_K, value=5, step=1, label="k (passages read per question)", scale=2)
        shots = gr.Slider(
            0, MAX_SHOTS, value=state.config.shots, step=1, label="Demonstrations (few-shot)", scale=1, elem_id="qa-shots"
        )
        fallback = gr.Checkbox(
            value=state.default_fallback,
            label="Closed-book fallback (when the answer is in no passage)",
            scale=1,
            elem_id="qa-fallback",
        )
        button = gr.Button("Answer", variant="primary", scale=1, elem_id="qa-button")
    examples = gr.Examples(
        [[q] for q, _ in example_questions(state.config.qa)],
        [question],
        label="Examples from the default question set (click one to answer it)",
        cache_examples=False,
    )
    output = gr.HTML(
        "<div class='dpr-meta'>The answer and its passages appear here. The generator loads on first use.</div>",
        elem_id="qa-output",
    )
    shared.model_dropdowns.append(model)

    @user_errors
    def answer(question, mode, model_id, k, retriever_label, n_shots, use_fallback, request: gr.Request, progress=gr.Progress()):
        text, follow = run_answer(
            state, question, mode, model_id, k, session(request), progress, retriever_label, n_shots, use_fallback
        )
        return text, gr.Timer(active=True) if follow else gr.skip()

    inputs, outputs = [question, mode, model, k, retriever, shots, fallback], [output, shared.timer]
    # Generation is CPU-bound: one answer at a time; other users wait in the queue (Gradio shows their position).
    button.click(answer, inputs, outputs, api_name="answer", concurrency_limit=1, concurrency_id="generate")
    question.submit(answer, inputs, outputs, api_visibility="private", concurrency_limit=1, concurrency_id="generate")
    examples.load_input_event.then(
        answer, inputs, outputs, api_visibility="private", concurrency_limit=1, concurrency_id="generate"
    )
