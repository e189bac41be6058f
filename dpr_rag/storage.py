"""Atomic writes: a file or folder appears complete under its final name, or not at all.

Everything the project persists (indexes, caches, checkpoints) goes through these helpers, so a crash,
a full disk or Ctrl-C mid-write leaves the previous good copy in place.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError, DataFormatError, DprRagError

RENAME_EXCHANGE = 2  # linux/fs.h
# mkdtemp/mkstemp create 0700/0600 entries; what we publish gets the permissions of a normal file or folder
# (other users or machines may read shards and indexes). Read once at import, when no other thread can race.
_UMASK = os.umask(0)
os.umask(_UMASK)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    ok = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), RENAME_EXCHANGE) == 0
    if not ok and ctypes.get_errno() not in (errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.ENOTSUP):
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(b))
    return ok


def _tmp_prefix(final: Path, pid: int | None = None) -> str:
    return f".{final.name}.tmp-{socket.gethostname()}-{os.getpid() if pid is None else pid}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep(final: Path) -> None:
    """Delete temporaries that killed writers on this host left beside `final` (their process is gone)."""
    host_prefix = f".{final.name}.tmp-{socket.gethostname()}-"
    for tmp in final.parent.glob(f"{glob.escape(host_prefix)}*"):
        pid = tmp.name[len(host_prefix) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)


def recover(final: str | os.PathLike) -> None:
    """Put back the previous copy of `final` if a writer was killed between its two renames (non-Linux fallback)."""
    final = Path(final)
    if final.exists() or not final.parent.is_dir():
        return
    olds = sorted(final.parent.glob(f".{final.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds:
        os.replace(olds[-1], final)


def check_writable(parent: Path) -> None:
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DprRagError(f"cannot create folder {parent}: {e.strerror}") from e
    if not os.access(parent, os.W_OK):
        raise DprRagError(f"folder {parent} is not writable")


def model_load_errors() -> tuple[type[BaseException], ...]:
    """What `from_pretrained` raises on a missing, damaged or foreign model folder (safetensors' own error included)."""
    from safetensors import SafetensorError

    return (OSError, ValueError, SafetensorError)


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file the project wrote (manifest, index.json, trainer state): damaged or missing, it is one clear error
    naming the file, not a traceback."""
    import json

    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DataFormatError(f"{path}: missing") from e
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: JSONDecodeError and huge ints
        raise DataFormatError(f"{path}: damaged, not valid JSON ({str(e).splitlines()[0][:120]}); rebuild or restore it") from e


def check_output_folder(path: str | os.PathLike, markers: tuple[str, ...], what: str) -> Path:
    """Refuse an `--out` that exists and is not this command's kind of output, before any work: a file, or a folder
    that is not empty and holds none of `markers` (what the command itself writes there). A folder written by the
    command may be replaced; a user's file or folder never is."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not {what}; give a new folder (nothing was written)")
    if out.is_dir() and any(out.iterdir()) and not any((out / m).exists() for m in markers):
        raise ConfigError(f"--out {out} is a folder that is not {what}; give a new or empty folder (nothing was written)")
    return out


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success it replaces `final` in one rename.

    On any exception the temporary folder is removed and `final` is untouched.
    """
    final = Path(final)
    check_writable(final.parent)
    recover(final)
    _sweep(final)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(final), dir=final.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        yield tmp
        if final.exists() and _exchange(tmp, final):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old copy
        elif final.exists():
            # Two renames: the old copy stays whole until the new one is in place; `recover` undoes a kill between them.
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise DprRagError(f"could not write {final}: {e.strerror or e}") from e
        if isinstance(e, DprRagError) and str(tmp) in str(e):  # a nested write failed: name the user's path
            raise DprRagError(str(e).replace(str(tmp), str(final))) from e
        raise


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside `final` for writing; it replaces `final` only if the block succeeds."""
    final = Path(final)
    check_writable(final.parent)
    _sweep(final)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(final), dir=final.parent)
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise DprRagError(f"could not write {final}: {e.strerror or e}") from e
        raise


def unique_folder(parent: str | os.PathLike, name: str, taken: Callable[[Path], bool] | None = None) -> Path:
    """`parent/name`, or `parent/name-2`, `-3`... : the first that does not exist (and that `taken` does not claim),
    so that a new run or report never lands on an earlier one. Nothing is created."""
    parent = Path(parent)
    folder, n = parent / name, 2
    while folder.exists() or (taken is not None and taken(folder)):
        folder, n = parent / f"{name}-{n}", n + 1
    return folder
