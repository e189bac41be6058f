"""HTML for the page: ranked passages with answer strings highlighted, progress bars, the status banner.
Every piece of text from a corpus or a user is escaped; only the tags made here reach the page."""

from __future__ import annotations

import html
import time
import unicodedata

import regex

from ..errors import ConfigError
from ..matching import SimpleTokenizer, has_answer
from ..retrieval.base import SearchHit
from .jobs import Job

# DPR's SimpleTokenizer tokens, with their positions, so highlights mark what `has_answer` matches.
_TOKEN = regex.compile(f"({SimpleTokenizer.ALPHA_NUM})|({SimpleTokenizer.NON_WS})", flags=regex.IGNORECASE | regex.UNICODE)

CSS = """
.dpr-col h4 {margin: 0 0 4px 0;}
.dpr-meta {color: var(--body-text-color-subdued); font-size: 0.85em; margin-bottom: 6px;}
.dpr-hit {border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 6px 8px; margin-bottom: 6px;}
.dpr-hit.dpr-has-answer {border-left: 4px solid #2e9d4f;}
.dpr-title {font-weight: 600;}
.dpr-score {float: right; font-family: monospace; font-size: 0.85em; color: var(--body-text-color-subdued);}
.dpr-text {font-size: 0.88em; line-height: 1.35;}
.dpr-text mark {background: #ffe066; color: #000; padding: 0 1px; border-radius: 2px;}
.dpr-banner {font-size: 0.9em; padding: 4px 2px;}
.dpr-progress {margin: 4px 0;}
.dpr-progress progress {width: 100%; height: 12px;}
.dpr-bad {color: #c0392b;}
.dpr-ok {color: #2e9d4f;}
.dpr-badge {display: inline-block; font-size: 0.75em; padding: 0 6px; border-radius: 8px; color: #fff; background: #777;}
.dpr-badge.dpr-running {background: #4a7bd0;}
.dpr-badge.dpr-done {background: #2e9d4f;}
.dpr-badge.dpr-failed {background: #c0392b;}
.dpr-badge.dpr-cancelled {background: #b7791f;}
"""


MAX_EXPECTED_CHARS = 1000  # the expected-answer box: highlighting is linear in it, per passage shown
MAX_EXPECTED_ANSWERS = 20


def parse_answers(text: str | None) -> list[str]:
    """The expected-answer box: several answers separated by '|' (bounded, so a huge one cannot stall a search)."""
    text = text or ""
    if len(text) > MAX_EXPECTED_CHARS:
        raise ConfigError(f"the expected answer is {len(text):,} characters long; the limit is {MAX_EXPECTED_CHARS:,}")
    answers = [a.strip() for a in text.split("|") if a.strip()]
    if len(answers) > MAX_EXPECTED_ANSWERS:
        raise ConfigError(f"{len(answers)} expected answers; give at most {MAX_EXPECTED_ANSWERS}")
    return answers


def _tokens(text: str) -> list[tuple[str, int, int]]:
    return [(m.group().lower(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def answer_spans(text: str, answers: list[str]) -> list[tuple[int, int]]:
    """Character spans of `text` where an answer's token sequence occurs (merged, in order)."""
    words = _tokens(text)
    spans = []
    for answer in answers:
        target = [t for t, _, _ in _tokens(unicodedata.normalize("NFC", answer))]
        n = len(target)
        if not n:
            continue
        for i in range(len(words) - n + 1):
            if [w for w, _, _ in words[i : i + n]] == target:
                spans.append((words[i][1], words[i + n - 1][2]))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlight(text: str, answers: list[str]) -> str:
    text = unicodedata.normalize("NFC", text)
    out, pos = [], 0
    for start, end in answer_spans(text, answers):
        out += [html.escape(text[pos:start]), "<mark>", html.escape(text[start:end]), "</mark>"]
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out)


def highlight_range(text: str, start: int, end: int) -> str:
    """`text` as HTML with the characters [start, end) marked (an extractive answer where it was read)."""
    start, end = max(0, min(start, len(text))), max(0, min(end, len(text)))
    return "".join(
        [
            html.escape(text[:start]),
            "<mark class='qa-span' style='outline:2px solid #e8590c;font-weight:600'>",
            html.escape(text[start:end]),
            "</mark>",
            html.escape(text[end:]),
        ]
    )


def hits_html(name: str, hits: list[SearchHit], seconds: float, answers: list[str], note: str = "") -> str:
    """One retriever's column: header with latency (and where the answer first appears), then the passages."""
    first = next((h.rank for h in hits if answers and has_answer(answers, h.passage.text)), None)
    meta = f"{len(hits)} passages in {seconds * 1000:.1f} ms"
    if answers:
        meta += (
            f" · <span class='dpr-ok'>answer at rank {first}</span>"
            if first
            else f" · <span class='dpr-bad'>answer not in the top {len(hits)}</span>"
        )
    parts = [
        f"<div class='dpr-col' data-retriever='{html.escape(name)}'><h4>{html.escape(name)}</h4>",
        f"<div class='dpr-meta'>{meta}</div>",
    ]
    if note:
        parts.append(f"<div class='dpr-meta'>{html.escape(note)}</div>")
    for h in hits:
        cls = "dpr-hit dpr-has-answer" if answers and has_answer(answers, h.passage.text) else "dpr-hit"
        parts.append(
            f"<div class='{cls}' data-rank='{h.rank}'><span class='dpr-score'>{h.score:.3f}</span>"
            f"<div class='dpr-title'>{h.rank}. {html.escape(h.passage.title or '(untitled)')}"
            f" <small>[{html.escape(h.passage.id)}]</small></div>"
            f"<div class='dpr-text'>{highlight(h.passage.text, answers)}</div></div>"
        )
    parts.append("</div>")
    return "".join(parts)


def message_html(name: str, message: str) -> str:
    return (
        f"<div class='dpr-col' data-retriever='{html.escape(name)}'><h4>{html.escape(name)}</h4>"
        f"<div class='dpr-meta'>{html.escape(message)}</div></div>"
    )


def progress_html(job: Job | None) -> str:
    """A job's progress bar and line; its outcome once finished; empty when there was none."""
    if job is None:
        return ""
    if job.running:
        frac = job.fraction
        bar = f"<progress value='{frac:.3f}' max='1'></progress>" if frac is not None else "<progress></progress>"
        count = f" — {job.done:,} / {job.total:,} ({100 * frac:.0f}%)" if frac is not None else ""
        elapsed = time.time() - job.started
        return (
            f"<div class='dpr-progress' data-state='running'>{bar}<div><span class='dpr-badge dpr-running'>running</span> "
            f"{html.escape(job.title)}: {html.escape(job.stage)}{count} · {elapsed:.0f} s</div></div>"
        )
    return (
        f"<div class='dpr-progress' data-state='{job.state}'><span class='dpr-badge dpr-{job.state}'>{job.state}</span> "
        f"{html.escape(job.message)}</div>"
    )


def banner_html(status: dict, index_job: Job | None, train_job: Job | None) -> str:
    live = status["live"]
    if live is None:
        line = "Loading the corpus…"
    else:
        ready = ", ".join(status["ready_labels"]) or "none yet (BM25 only)"
        line = (
            f"<b>Live corpus:</b> {html.escape(live['corpus'])} · {live['passages']:,} passages · "
            f"{html.escape(live['index_kind'])} index · <b>dense indexes ready for:</b> {html.escape(ready)}"
        )
    parts = [f"<div class='dpr-banner' id='dpr-banner'>{line}</div>"]
    for job in (index_job, train_job):
        if job is not None and (job.running or (job.finished and time.time() - job.finished < 30)):
            parts.append(progress_html(job))
    return "".join(parts)
