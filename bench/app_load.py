"""Load on the running app: N concurrent gradio_client sessions searching for S seconds; latency percentiles.

    python app.py &                                   # the real defaults (wait until its dense index is ready)
    python bench/app_load.py --url http://127.0.0.1:7860/ --clients 20 --seconds 60 [--qa FILE]

Each client is its own `gradio_client.Client` (its own session) in its own thread and calls the Search tab's
API (`/search`: BM25, dense and hybrid for one question, k=5) back to back with questions from the QA file. Latency
is per request as the user sees it: queueing in the app (search runs at most 4 at a time), the three searches and
rendering. Errors are counted, never retried. Writes bench/results/app_load.json.

`run_load` is also what tests/test_app_load.py runs (20 clients, a few seconds, with a corpus hot-swap midway).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import SHARED_NQ  # noqa: E402

DEFAULT_QA = SHARED_NQ


@dataclass
class LoadResult:
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    responses: list[tuple[float, float, tuple]] = field(default_factory=list)  # (sent, finished, outputs)
    seconds: float = 0.0

    def summary(self) -> dict:
        ms = np.asarray(self.latencies_s) * 1000 if self.latencies_s else np.zeros(1)
        return {
            "requests": len(self.latencies_s),
            "errors": len(self.errors),
            "seconds": round(self.seconds, 1),
            "requests_per_s": round(len(self.latencies_s) / max(self.seconds, 1e-9), 2),
            **{f"p{p}_ms": round(float(np.percentile(ms, p)), 1) for p in (50, 90, 95, 99)},
            "max_ms": round(float(ms.max()), 1),
        }


def run_load(
    url: str,
    questions: list[str],
    clients: int = 20,
    seconds: float = 60.0,
    k: int = 5,
    keep_responses: bool = False,
    result: LoadResult | None = None,
    keep_going: Callable[[], bool] | None = None,
) -> LoadResult:
    """`clients` sessions search back to back for `seconds` (and on while `keep_going()` says so); every latency and
    error is recorded into `result` (a new one unless given, so that a caller can watch it fill)."""
    from gradio_client import Client

    result, lock = result or LoadResult(), threading.Lock()
    sessions = [Client(url, verbose=False) for _ in range(clients)]  # connected before the clock starts
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(i: int, client) -> None:
        start.wait()
        for q in itertools.islice(itertools.cycle(questions), i, None, clients):
            if time.perf_counter() >= stop_at[0] and not (keep_going and keep_going()):
                return
            t = time.perf_counter()
            try:
                out = client.predict(q, "", "default", k, api_name="/search")
            except Exception as e:  # noqa: BLE001 - every failure counts as an error, whatever its type
                with lock:
                    result.errors.append(f"{type(e).__name__}: {e}")
                continue
            done = time.perf_counter()
            with lock:
                result.latencies_s.append(done - t)
                if keep_responses:
                    result.responses.append((t, done, out))

    threads = [threading.Thread(target=worker, args=(i, c), daemon=True) for i, c in enumerate(sessions)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    start.wait()
    for t in threads:
        t.join()
    result.seconds = time.perf_counter() - t0
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:7860/")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--qa", type=Path, default=DEFAULT_QA)
    args = ap.parse_args()
    if args.qa.is_file():
        questions = [json.loads(line)["question"] for line in args.qa.open(encoding="utf-8") if line.strip()]
    else:
        questions = ["who painted the mona lisa", "when was the eiffel tower built", "who wrote hamlet", "what is python"]
    from bench.common import machine, write_result

    result = run_load(args.url, questions, args.clients, args.seconds)
    summary = {
        "url": args.url,
        "clients": args.clients,
        "machine": machine(),
        **result.summary(),
        "first_errors": result.errors[:5],
    }
    print(json.dumps(summary, indent=2))
    write_result("app_load", summary)


if __name__ == "__main__":
    main()
