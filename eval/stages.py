"""Progress of an evaluation's stages: tqdm bars on the command line, the caller's callback in the app, and the
cancel event checked at every batch."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from dpr_rag.errors import DprRagError

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class EvalCancelled(DprRagError):
    """The caller set the cancel event; nothing was written."""


@dataclass
class Stages:
    """Progress bars (tqdm) that also report to the caller's callback and honour the cancel event."""

    show: bool
    progress: Progress | None
    cancel: threading.Event | None

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise EvalCancelled("evaluation cancelled")

    def run(self, name: str, total: int, unit: str = "q") -> Stage:
        return Stage(self, name, total, tqdm(total=total, desc=name, unit=unit, disable=not self.show, leave=self.show))


@dataclass
class Stage:
    stages: Stages
    name: str
    total: int
    bar: Any
    done: int = 0

    def __post_init__(self) -> None:
        self.update(0)

    def update(self, done: int) -> None:
        if self.stages.cancel is not None and self.stages.cancel.is_set():
            self.bar.close()
        self.stages.check_cancel()
        self.bar.update(done - self.done)
        self.done = done
        if self.stages.progress is not None:
            self.stages.progress(self.name, done, self.total)

    def close(self) -> None:
        self.bar.close()
