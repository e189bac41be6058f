"""Long jobs (training, index builds) run in a background thread, one of each kind at a time.

A `JobSlot` holds at most one running `Job`. Starting a second one while the first runs raises `JobBusy`
with a message for whoever asked (their own run, or another session's). The job's progress (stage,
done/total, log records) is read by the page's status timer, so progress survives a page reload and every
open page sees that the slot is taken. Cancelling sets the job's event; the work checks it between steps.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import DprRagError

log = logging.getLogger("dpr_rag.app")

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"


class JobBusy(DprRagError):
    """Another job of the same kind is running."""


class JobCancelled(DprRagError):
    """Raised inside a job's work when its cancel event is set."""


@dataclass
class Job:
    kind: str  # "train" or "index"
    title: str  # what it does, in words ("Training run-3", "Index of corpus.tsv for all-MiniLM-L6-v2")
    owner: str | None  # the Gradio session that started it
    tag: str = ""  # what it works on, for callers to recognise it (e.g. "model:<id>")
    id: int = 0
    started: float = field(default_factory=time.time)
    finished: float | None = None
    state: str = RUNNING
    stage: str = "starting"
    done: int = 0
    total: int = 0
    message: str = ""  # the outcome, once finished
    records: list[dict] = field(default_factory=list)  # training log records, in order
    result: Any = None
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.done / self.total) if self.total else None

    def update(self, stage: str, done: int = 0, total: int = 0) -> None:
        """Report progress (for work that checks the cancel event itself, like training)."""
        self.stage, self.done, self.total = stage, done, total

    def progress(self, stage: str, done: int = 0, total: int = 0) -> None:
        """Report progress; raises JobCancelled if the job was cancelled (so any loop that reports stops)."""
        self.update(stage, done, total)
        if self.cancel.is_set():
            raise JobCancelled(f"{self.title}: cancelled")

    def describe(self) -> str:
        pct = f", {100 * self.fraction:.0f}%" if self.fraction is not None else ""
        return f"{self.title} ({self.stage}{pct}; started {time.strftime('%H:%M:%S', time.localtime(self.started))})"

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "tag": self.tag,
            "state": self.state,
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "fraction": self.fraction,
            "message": self.message,
            "started": self.started,
            "finished": self.finished,
        }


class JobSlot:
    """One job of a kind at a time; `last` keeps the most recent one (running or finished) for display."""

    def __init__(self, kind: str, noun: str):
        self.kind, self.noun = kind, noun  # noun: "training run", "index build"
        self._lock = threading.Lock()
        self._counter = 0
        self.last: Job | None = None

    @property
    def current(self) -> Job | None:
        job = self.last
        return job if job is not None and job.running else None

    def start(
        self,
        title: str,
        owner: str | None,
        work: Callable[[Job], Any],
        on_success: Callable[[Job], str] | None = None,
        tag: str = "",
    ) -> Job:
        """Run `work(job)` in a thread. Its return value becomes `job.result`; `on_success(job)` (run in the
        thread, also after a clean cancel) gives the final message. A DprRagError's message is shown as it is;
        other errors are logged with their traceback."""
        with self._lock:
            self.ensure_free(owner)
            self._counter += 1
            job = Job(self.kind, title, owner, tag=tag, id=self._counter)
            self.last = job
        thread = threading.Thread(
            target=self._run, args=(job, work, on_success), name=f"dpr-rag-{self.kind}-{job.id}", daemon=True
        )
        thread.start()
        return job

    def ensure_free(self, owner: str | None) -> None:
        """Raise JobBusy, with a message for `owner`, if a job is running."""
        running = self.current
        if running is not None:
            whose = "Your" if owner is not None and running.owner == owner else "Another session's"
            raise JobBusy(
                f"{whose} {self.noun} is already running: {running.describe()}. "
                f"Only one runs at a time; wait for it to finish (or cancel it), then try again."
            )

    def _run(self, job: Job, work: Callable[[Job], Any], on_success: Callable[[Job], str] | None) -> None:
        log.info("%s started: %s", self.kind, job.title)
        try:
            job.result = work(job)
            # Work that stops cleanly on cancel (training) returns a result with `cancelled`; on_success words it.
            cancelled = bool(getattr(job.result, "cancelled", False))
            job.message = on_success(job) if on_success else f"{job.title}: {'cancelled' if cancelled else 'done'}"
            job.state = CANCELLED if cancelled else DONE
        except JobCancelled as e:
            job.message, job.state = str(e), CANCELLED
        except DprRagError as e:
            job.message, job.state = f"{job.title} failed: {e}", FAILED
        except Exception as e:  # noqa: BLE001 - a bug must not kill the slot; it is logged with its traceback
            log.error("%s failed:\n%s", job.title, traceback.format_exc())
            job.message, job.state = f"{job.title} failed: {type(e).__name__}: {e}", FAILED
        finally:
            job.finished = time.time()
            log.info("%s %s: %s", self.kind, job.state, job.message)

    def cancel(self, owner: str | None) -> str:
        job = self.current
        if job is None:
            return f"No {self.noun} is in progress."
        if job.owner is not None and owner != job.owner:
            raise JobBusy(f"The running {self.noun} was started by another session; only that session can cancel it.")
        job.cancel.set()
        return f"Cancelling {job.title}: it stops after the current step."
