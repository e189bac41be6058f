"""End to end in a real browser: Playwright drives Debian's Chromium (headless) through every tab of
`python app.py` (toy corpus, tiny random models); each tab does its main action and the test reads the result
from the page. With DPR_RAG_SCREENSHOTS=<folder>, each tab's screenshot is saved there as <tab>.png."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser import assets, pages
from browser.app_server import serving
from playwright.sync_api import expect, sync_playwright

pytestmark = pytest.mark.skipif(
    not Path(pages.CHROMIUM).exists(), reason=f"{pages.CHROMIUM} not found: apt-get install chromium (as .ci/run does)"
)


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_model_dir):
    with serving(tmp_path_factory.mktemp("app-browser"), tiny_model_dir) as server:
        yield server


@pytest.fixture(scope="module")
def page(app):
    with sync_playwright() as p:
        browser = pages.launch_browser(p)
        page = browser.new_page(viewport=pages.VIEWPORT)
        page.set_default_timeout(60_000)
        pages.open_app(page, app.url)
        yield page
        browser.close()


def test_search_tab_shows_three_rankings_with_the_answer_highlighted(page):
    columns = pages.search(page, "who painted the mona lisa", "Leonardo da Vinci")
    assert "BM25" in columns["bm25"] and "DPR (dense)" in columns["dense"] and "Hybrid" in columns["hybrid"]
    assert "1. Mona Lisa" in columns["bm25"] and "answer at rank 1" in columns["bm25"]
    assert re.search(r"5 passages in \d+\.\d ms", columns["dense"])
    expect(page.locator("#search-bm25 mark").first).to_have_text("Leonardo da Vinci")
    pages.screenshot(page, "search")
    # An example fills the question and its answer, and runs the search.
    question, answer = assets.FACTS[1][2], assets.FACTS[1][3]
    pages.click_example(page, "Search", question)
    pages.wait_search(page, question)
    expect(page.locator("#search-bm25 mark").first).to_have_text(answer)


def test_qa_tab_answers_with_passages_and_posteriors(page):
    shown = pages.answer(page, "who wrote hamlet", "RAG-Token")
    assert "RAG-Token" in shown["meta"] and "log p(answer | question)" in shown["meta"]
    assert len(shown["posterior"]) == 5 and sum(shown["posterior"]) == pytest.approx(1, abs=0.01)
    assert sum(shown["prior"]) == pytest.approx(1, abs=0.01)
    pages.screenshot(page, "qa")
    shown = pages.answer(page, "who discovered penicillin", "Closed-book (no retrieval)")
    assert shown["posterior"] == [] and "Closed-book" in shown["meta"]


def test_qa_tab_answers_extractively_with_the_span_highlighted(page):
    shown = pages.answer(page, "who painted the mona lisa", "Extractive (DPR reader: a span of a passage)")
    assert "Extractive" in shown["meta"] and len(shown["posterior"]) == 5
    assert sum(shown["posterior"]) == pytest.approx(1, abs=0.01)  # the reader's passage selection
    span = page.locator("#qa-output mark.qa-span")
    expect(span).to_have_count(1)
    assert span.inner_text().strip() == shown["answer"].strip()
    # The passage holding the span is the one framed as the answer's.
    expect(page.locator("#qa-output .qa-passage.dpr-has-answer mark.qa-span")).to_have_count(1)
    pages.screenshot(page, "qa-extractive")


def test_train_tab_shows_a_live_loss_curve_and_cancels(page):
    pages.start_training(page, epochs=100, batch_size=4, max_examples=0, run_name="long-run")
    page.wait_for_function("() => document.querySelector('#train-progress').innerText.includes('loss')")
    page.wait_for_function(
        "() => { const l = document.querySelector('#train-loss g.mark-line path');"
        " return l && (l.getAttribute('d').match(/L/g) || []).length >= 2; }"
    )
    assert page.locator("#train-progress [data-state='running']").count() == 1  # the curve is drawn while it trains
    page.locator("#train-cancel").click()
    expect(page.locator("#train-progress [data-state='cancelled']")).to_contain_text("long-run: cancelled at step")


def test_train_tab_trains_and_the_model_becomes_selectable(page):
    final = pages.train(page, epochs=3, batch_size=4, max_examples=0, run_name="browser-run")
    assert "browser-run: finished after step 15" in final and "Now selectable in Search, QA and Evaluate" in final
    expect(page.locator("#train-dev")).to_contain_text("Dev accuracy")
    assert pages.loss_points(page) == 15
    pages.screenshot(page, "train")
    pages.tab(page, "Search")
    page.locator("#search-model input").click()
    expect(page.get_by_role("option", name=re.compile("browser-run"))).to_be_visible()
    page.keyboard.press("Escape")


def test_evaluate_tab_shows_table_plot_and_report(page):
    shown = pages.evaluate(page, limit=0, ks="1,5,20")
    expected = [[r, f"{subset} (24)"] for subset in ("all", "answerable") for r in ("bm25", "dense", "hybrid")]
    assert [row[:2] for row in shown["rows"]] == expected
    assert shown["rows"][0][4] == "100"  # BM25's top-20 over 24 toy passages
    assert re.search(r"\d{8}-\d{6}-default-[A-Za-z0-9_-]{16}\s*\.zip", shown["report"]) and "24 questions" in shown["summary"]
    expect(page.locator("#eval-plot img")).to_have_attribute("src", re.compile(r"topk\.png"))
    pages.screenshot(page, "evaluate")


def test_corpus_tab_swaps_the_corpus_in(page, tmp_path):
    corpus = assets.write_corpus_tsv(tmp_path / "small.tsv", assets.FACTS[:12])
    info = pages.swap_corpus(page, corpus)
    assert "12 passages" in info and "Dense index ready for: tiny-bert" in info
    expect(page.locator("#corpus-progress")).to_contain_text("Swapped in: small.tsv, 12 passages")
    pages.screenshot(page, "corpus")
    columns = pages.search(page, "who wrote hamlet", "Shakespeare")
    assert "[t9]" in columns["bm25"] and "small.tsv" in page.locator("#search-summary").inner_text()
