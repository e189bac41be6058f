"""Screenshots of every tab of a running app with the real defaults, for the README (the same page actions as
tests/test_app_browser.py, on real questions):

    DPR_RAG_CACHE=~/.cache/dpr_rag python app.py &
    python -m tests.browser.screenshots --url http://127.0.0.1:7860/ --out docs/screenshots

It searches and answers an example question, trains a question adapter on the default questions (the default
recipe, two epochs: a few minutes on a CPU), evaluates the default encoder on 200 questions, and swaps in a
300-passage corpus cut from the default one (then swaps the default back). Each tab's picture is <out>/<tab>.png.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from dpr_rag.app.qa_tab import mode_label
from dpr_rag.data.defaults import default_corpus
from dpr_rag.data.passages import save_jsonl
from dpr_rag.rag.default_generator import shipped_reader
from dpr_rag.rag.rag_folder import answer_mode, load_rag_config

from . import pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    parser.add_argument("--out", default="docs/screenshots")
    parser.add_argument("--skip-train", action="store_true", help="no training run (its screenshot is not taken)")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated shots (search,qa,qa-extractive,train,evaluate,corpus; default all)",
    )
    args = parser.parse_args()
    os.environ["DPR_RAG_SCREENSHOTS"] = args.out
    corpus = Path(args.out).resolve().parent / "wiki-sample.jsonl"
    with sync_playwright() as p:
        browser = pages.launch_browser(p)
        page = browser.new_page(viewport=pages.VIEWPORT)
        page.set_default_timeout(600_000)
        pages.open_app(page, args.url, timeout=600_000)
        t0 = time.time()
        wanted = set(filter(None, args.only.split(","))) or {"search", "qa", "qa-extractive", "train", "evaluate", "corpus"}
        if "search" in wanted:
            question = "What was the budget (in USD Millions) of Titanic?"
            pages.click_example(page, "Search", question)
            pages.wait_search(page, question)
            print("search", pages.screenshot(page, "search"), f"{time.time() - t0:.0f} s", flush=True)
        if "qa" in wanted:  # the shipped reader, in the tab's default mode (the one the reader was trained for)
            mode = mode_label(answer_mode(load_rag_config(shipped_reader())))
            shown = pages.answer(page, "What is the origin city of The Beatles?", mode, timeout=600_000)
            print("qa", shown["answer"], pages.screenshot(page, "qa"), f"{time.time() - t0:.0f} s", flush=True)
        if "qa-extractive" in wanted:  # DPR's extractive reader (the shipped one), its span marked in its passage
            shown = pages.answer(page, "who wrote hamlet", mode_label("extractive"), timeout=600_000)
            print("qa-extractive", shown["answer"], pages.screenshot(page, "qa-extractive"), flush=True)
        if "train" in wanted and not args.skip_train:
            final = pages.train(  # the default recipe (query-side) with its command line's batch size and rate
                page,
                epochs=2,
                batch_size=32,
                max_examples=0,
                run_name=f"fanoutqa-{time.strftime('%H%M')}",
                lr="5e-4",
                timeout=1_800_000,
            )
            print("train", final, pages.screenshot(page, "train"), f"{time.time() - t0:.0f} s", flush=True)
        if not wanted & {"evaluate", "corpus"}:
            browser.close()
            return
        shown = pages.evaluate(page, limit=200, ks="1,5,20,100", timeout=1_200_000)
        print("evaluate", shown["rows"], pages.screenshot(page, "evaluate"), f"{time.time() - t0:.0f} s", flush=True)
        passages = default_corpus()[:300]
        save_jsonl(passages, corpus)
        info = pages.swap_corpus(page, corpus, timeout=600_000)
        print("corpus", info.splitlines()[0], pages.screenshot(page, "corpus"), f"{time.time() - t0:.0f} s", flush=True)
        pages.tab(page, "Corpus")
        page.locator("#corpus-reset").click()
        page.wait_for_function(
            "() => document.querySelector('#corpus-info').innerText.includes('embedded default')", timeout=600_000
        )
        corpus.unlink()
        browser.close()


if __name__ == "__main__":
    main()
