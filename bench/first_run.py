"""A new user's first minutes, timed: `python -m dpr_rag.prepare` (what `bin/setup` adds after installing) with an
empty cache, then `python app.py`: when the page answers, when a dense search through the app's API returns dense
hits, and when the first RAG answer (the QA tab's default mode, dense retriever, k=5) arrives. Times count from the
app's start. Each run starts from an empty cache folder (DPR_RAG_CACHE), so nothing is reused between runs.

    python bench/first_run.py --runs 3          # writes bench/results/first_run.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "who painted the mona lisa"


def wait_for_page(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer")


def one_run(port: int, timeout: float) -> dict:
    from gradio_client import Client

    from dpr_rag.app.qa_tab import mode_label
    from dpr_rag.app.state import DEFAULT_MODEL
    from dpr_rag.rag.default_generator import shipped_reader
    from dpr_rag.rag.rag_folder import answer_mode, load_rag_config

    mode = mode_label(answer_mode(load_rag_config(shipped_reader())) if shipped_reader() else "token")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "DPR_RAG_CACHE": cache, "GRADIO_SERVER_PORT": str(port)}
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "dpr_rag.prepare"], env=env, check=True, capture_output=True, cwd=ROOT)
        times = {"prepare_s": time.monotonic() - t0}
        url = f"http://127.0.0.1:{port}/"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        app = subprocess.Popen([sys.executable, "app.py"], env=env, cwd=ROOT, **quiet)
        start = time.monotonic()
        try:
            wait_for_page(url, start + timeout)
            times["page_s"] = time.monotonic() - start
            client = Client(url, verbose=False)
            while time.monotonic() < start + timeout:
                _, dense, *_ = client.predict(QUESTION, "", DEFAULT_MODEL, 5, False, api_name="/search")
                if "Leonardo" in dense:  # dense hits, not the "index is being built" note
                    times["dense_search_s"] = time.monotonic() - start
                    break
                time.sleep(0.3)
            while time.monotonic() < start + timeout:
                html, _ = client.predict(QUESTION, mode, DEFAULT_MODEL, 5, "Dense", 0, True, api_name="/answer")
                if "Ask again" not in html:
                    times["first_answer_s"] = time.monotonic() - start
                    times["answered_leonardo"] = "Leonardo" in html
                    break
                time.sleep(0.3)
        finally:
            app.terminate()
            app.wait(30)
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--port", type=int, default=7871)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    runs = []
    for i in range(args.runs):
        runs.append(one_run(args.port, args.timeout))
        print(f"run {i + 1}: {runs[-1]}", flush=True)
    write_result("first_run", {"machine": machine(), "question": QUESTION, "runs": runs})


if __name__ == "__main__":
    main()
