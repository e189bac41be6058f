"""Driving the app's page with Playwright and Debian's Chromium: launch options, and one function per tab that
does the tab's main action and returns what the page shows. Used by tests/test_app_browser.py and by
tests/browser/screenshots.py (which runs them against a real app for the README's pictures)."""

from __future__ import annotations

import os
import re
from pathlib import Path

CHROMIUM = os.environ.get("DPR_RAG_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1360, "height": 900}


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def screenshot(page, name: str) -> Path | None:
    """Save a full-page screenshot as $DPR_RAG_SCREENSHOTS/<name>.png when that variable is set."""
    folder = os.environ.get("DPR_RAG_SCREENSHOTS")
    if not folder:
        return None
    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(300)  # let plots and transitions settle
    page.screenshot(path=str(path), full_page=True)
    return path


def open_app(page, url: str, timeout: float = 120_000) -> None:
    page.goto(url)
    page.wait_for_selector("#search-button", timeout=timeout)
    # The starting index is ready when the banner names the models with a dense index.
    page.wait_for_function(
        "() => { const b = document.querySelector('#dpr-banner'); return b &&"
        " b.textContent.includes('dense indexes ready for') && !b.textContent.includes('none yet'); }",
        timeout=timeout,
    )


def tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def fill(page, elem_id: str, text: str) -> None:
    box = page.locator(f"#{elem_id} textarea, #{elem_id} input").first
    box.fill(text)


def choose_model(page, elem_id: str, label_part: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=re.compile(re.escape(label_part))).first.click()


def search(page, question: str, expected: str = "", timeout: float = 60_000) -> dict[str, str]:
    """Search; returns each column's text (bm25, dense, hybrid) once all three show passages."""
    tab(page, "Search")
    fill(page, "search-question", question)
    fill(page, "search-expected", expected)
    page.locator("#search-button").click()
    wait_search(page, question, timeout)
    return {name: page.locator(f"#search-{name}").inner_text() for name in ("bm25", "dense", "hybrid")}


def wait_search(page, question: str, timeout: float = 60_000) -> None:
    """Until the results of `question` are shown (the summary quotes the question)."""
    page.wait_for_function(
        "(q) => { const s = document.querySelector('#search-summary'); return s &&"
        " s.innerText.includes('“' + q + '”') && document.querySelector('#search-bm25 .dpr-hit'); }",
        arg=question,
        timeout=timeout,
    )


def click_example(page, tab_name: str, question: str) -> None:
    tab(page, tab_name)
    # Gradio shows examples of several inputs as a grid, of one input as buttons.
    page.locator("[role=gridcell], button.gallery-item").filter(has_text=question).first.click()


def answer(page, question: str, mode: str, timeout: float = 120_000) -> dict:
    """Ask in the QA tab; returns the answer text, and each passage's p(z|x) and p(z|x,y) as shown."""
    tab(page, "QA")
    fill(page, "qa-question", question)
    page.locator("#qa-mode").get_by_label(mode, exact=True).check()
    page.locator("#qa-button").click()
    wait_answer(page, question, timeout)
    passages = page.locator("#qa-output .qa-passage")
    return {
        "answer": page.locator("#qa-output .qa-answer-text").inner_text(),
        "meta": page.locator("#qa-output #qa-answer").inner_text(),
        "prior": [float(passages.nth(i).get_attribute("data-prior")) for i in range(passages.count())],
        "posterior": [float(passages.nth(i).get_attribute("data-posterior")) for i in range(passages.count())],
    }


def wait_answer(page, question: str, timeout: float = 120_000) -> None:
    page.wait_for_function(
        "(q) => { const a = document.querySelector('#qa-output .qa-question'); return a && a.innerText === q; }",
        arg=question,
        timeout=timeout,
    )


def train(
    page, epochs: int, batch_size: int, max_examples: int, run_name: str, lr: str = "0.001", timeout: float = 180_000
) -> str:
    """Start a training run and wait for it to finish; returns the final progress line."""
    start_training(page, epochs, batch_size, max_examples, run_name, lr)
    page.wait_for_selector("#train-progress [data-state='done'], #train-progress [data-state='failed']", timeout=timeout)
    return page.locator("#train-progress").inner_text()


def loss_points(page) -> int:
    """How many points the loss curve has drawn: the vertices of the line Vega renders into the plot's SVG."""
    return page.evaluate(
        "() => { const line = document.querySelector('#train-loss g.mark-line path');"
        " const d = line ? line.getAttribute('d') || '' : '';"
        " return d ? (d.match(/L/g) || []).length + 1 : 0; }"
    )


def start_training(page, epochs: int, batch_size: int, max_examples: int, run_name: str, lr: str = "0.001") -> None:
    tab(page, "Train")
    fill(page, "train-epochs", str(epochs))
    fill(page, "train-batch", str(batch_size))
    fill(page, "train-lr", lr)
    fill(page, "train-max", str(max_examples))
    fill(page, "train-name", run_name)
    page.locator("#train-start").click()
    page.wait_for_selector("#train-progress [data-state='running']", timeout=30_000)


def evaluate(page, model_label: str | None = None, limit: int = 0, ks: str = "1,5,20", timeout: float = 180_000) -> dict:
    """Run the evaluation; returns the table's rows (lists of cell texts) and the report link's text."""
    tab(page, "Evaluate")
    if model_label:
        choose_model(page, "eval-model", model_label)
    fill(page, "eval-k", ks)
    fill(page, "eval-limit", str(limit))
    page.locator("#eval-run").click()
    # Gradio's dataframe is a grid of role=row / role=gridcell; row 1 is the header.
    body = "#eval-table [role=row]:not([aria-rowindex='1'])"
    page.wait_for_selector(body, timeout=timeout)
    page.wait_for_selector("#eval-plot img", timeout=30_000)
    page.wait_for_selector("#eval-report a", timeout=30_000)
    rows = page.locator(body)
    table = [[c.strip() for c in rows.nth(i).locator("[role=gridcell]").all_inner_texts()] for i in range(rows.count())]
    return {
        "rows": table,
        "report": page.locator("#eval-report").inner_text(),
        "summary": page.locator("#eval-summary").inner_text(),
    }


def swap_corpus(page, path: Path, timeout: float = 120_000) -> str:
    """Upload a corpus file, build its index and wait for it to be live; returns the live-corpus panel's text."""
    tab(page, "Corpus")
    page.locator("#corpus-file input[type=file]").set_input_files(str(path))
    # Gradio shows a long name as its stem and its extension in two elements: wait for the stem
    page.wait_for_selector(f"#corpus-file :text('{path.stem}')", timeout=30_000)
    page.locator("#corpus-build").click()
    page.wait_for_function(
        "(name) => { const i = document.querySelector('#corpus-info');"
        " return i && i.innerText.includes('Live corpus: ' + name); }",
        arg=path.name,
        timeout=timeout,
    )
    return page.locator("#corpus-info").inner_text()
