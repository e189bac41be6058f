"""Atomic writes: a file or folder appears complete under its final name, or not at all.

Everything the project persists (indexes, caches, checkpoints) goes through these helpers, so a crash,
a full disk or Ctrl-C mid-write leaves the previous good copy in place.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import DprRagError


def check_writable(parent: Path) -> None:
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DprRagError(f"cannot create folder {parent}: {e.strerror}") from e
    if not os.access(parent, os.W_OK):
        raise DprRagError(f"folder {parent} is not writable")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success it replaces `final` in one rename.

    On any exception the temporary folder is removed and `final` is untouched.
    """
    final = Path(final)
    check_writable(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            # Two renames: the old copy stays whole until the new one is in place.
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise DprRagError(f"could not write {final}: {e}") from e
        raise


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike, mode: str = "w") -> Iterator:
    """Open a temporary file beside `final` for writing; it replaces `final` only if the block succeeds."""
    final = Path(final)
    check_writable(final.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise DprRagError(f"could not write {final}: {e}") from e
        raise
