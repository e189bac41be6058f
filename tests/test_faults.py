"""Injected faults: SIGKILL in the middle of a training step, of a checkpoint write and of an index build; a full
disk and an unwritable cache folder. After each, the last good state is intact and work resumes from it."""

import errno
import json
import os
import subprocess
import sys
import textwrap

import faiss
import pytest
from test_trainer import config, dpr_json  # noqa: F401  (dpr_json is a fixture)

from dpr_rag import index as index_cli
from dpr_rag.cli_common import run_cli
from dpr_rag.data.passages import Passage, save_jsonl
from dpr_rag.retrieval.searcher import Searcher
from dpr_rag.storage import atomic_dir, recover
from dpr_rag.training.trainer import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


KILLER = """
import importlib, os, signal

def die_on_call(dotted, n):
    \"\"\"Replace the function at `dotted` so that its n-th call SIGKILLs this process.\"\"\"
    module, _, name = dotted.rpartition(".")
    try:
        owner = importlib.import_module(module)
    except ModuleNotFoundError:  # a class attribute: module.Class.method
        module, _, cls = module.rpartition(".")
        owner = getattr(importlib.import_module(module), cls)
    original, calls = getattr(owner, name), [0]

    def patched(*a, **k):
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*a, **k)
    setattr(owner, name, patched)
"""


def run_killed(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (with `die_on_call`); expect it to die by SIGKILL."""
    proc = subprocess.run(
        [sys.executable, "-c", KILLER + textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    return proc


def losses(result) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in result.history if "loss" in r}


@pytest.mark.parametrize("where", ["optimizer step", "checkpoint write"])
def test_training_killed_with_sigkill_resumes_from_the_last_checkpoint(tmp_path, dpr_json, tiny_model_dir, where):  # noqa: F811
    full = train(config(tmp_path / "full", dpr_json, tiny_model_dir, save_every=1))
    cfg = config(tmp_path / "run", dpr_json, tiny_model_dir, save_every=1)
    # "optimizer step": killed inside step 3 (after backward, before the update); checkpoints 1 and 2 are on disk.
    # "checkpoint write": killed while checkpoint 2 is half written (its optimizer.pt saved, scheduler.pt not).
    patch = ("torch.optim.AdamW.step", 3) if where == "optimizer step" else ("torch.save", 5)
    run_killed(f"""
        from dpr_rag.training.trainer import TrainConfig, train
        die_on_call({patch[0]!r}, {patch[1]})
        train(TrainConfig(**{cfg.__dict__!r}))
    """)
    last = json.loads((tmp_path / "run" / "last" / "trainer_state.json").read_text())
    assert last["step"] == (2 if where == "optimizer step" else 1)
    resumed = train(config(tmp_path / "run", dpr_json, tiny_model_dir, save_every=1, resume=True))
    assert min(losses(resumed)) == last["step"] + 1 and max(losses(resumed)) == max(losses(full))
    for step, loss in losses(resumed).items():  # the same numbers as a run that was never interrupted
        assert loss == pytest.approx(losses(full)[step], rel=1e-5)
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".last.")]  # no stale temporaries left


def corpus(tmp_path, name: str, n: int) -> str:
    path = tmp_path / name
    save_jsonl([Passage(str(i), f"{name} {i}", f"Passage {i} of {name} about topic {i % 7}.") for i in range(n)], path)
    return str(path)


@pytest.mark.parametrize("where", ["encoding", "index write"])
def test_index_build_killed_with_sigkill_leaves_the_previous_index_serving(tmp_path, tiny_model_dir, where):
    out, model = tmp_path / "index", str(tiny_model_dir)
    old = corpus(tmp_path, "old.jsonl", 12)
    assert index_cli.main(["--corpus", old, "--model", model, "--out", str(out)]) == 0
    before = Searcher.open(index=out, model=model, show_progress=False).search(["topic 3"], 3, retriever="hybrid")
    new = corpus(tmp_path, "new.jsonl", 20)
    patch = "dpr_rag.retrieval.encoder.DualEncoder.encode_passages" if where == "encoding" else "faiss.write_index"
    run_killed(f"""
        from dpr_rag import index
        die_on_call({patch!r}, 1)
        index.main(["--corpus", {new!r}, "--model", {model!r}, "--out", {str(out)!r}])
    """)
    after = Searcher.open(index=out, model=model, show_progress=False)
    assert len(after.passages) == 12 and after.search(["topic 3"], 3, retriever="hybrid") == before
    # The next build succeeds despite the killed one's leftovers, and replaces the index.
    assert index_cli.main(["--corpus", new, "--model", model, "--out", str(out)]) == 0
    assert len(Searcher.open(index=out, model=model).passages) == 20


def test_a_full_disk_is_reported_and_the_previous_index_kept(tmp_path, tiny_model_dir, monkeypatch, capsys):
    out, model = tmp_path / "index", str(tiny_model_dir)
    assert index_cli.main(["--corpus", corpus(tmp_path, "old.jsonl", 12), "--model", model, "--out", str(out)]) == 0

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(faiss, "write_index", no_space)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(index_cli.main, ["--corpus", corpus(tmp_path, "new.jsonl", 20), "--model", model, "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]  # the first write to fail is the index cache entry
    assert err.startswith("error: could not write ") and err.endswith("No space left on device")
    assert len(Searcher.open(index=out, model=model).passages) == 12
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".index")) == []


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A real 256 KB tmpfs (needs root and mount rights: skipped where the machine does not give them)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    try:
        command = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)]
        mounted = subprocess.run(command, capture_output=True).returncode == 0
    except OSError:  # no mount command at all
        mounted = False
    if not mounted:
        pytest.skip("cannot mount a tmpfs here (not root, no mount rights, or no mount command)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_really_full_disk_names_the_path_and_leaves_nothing_behind(
    tiny_filesystem, monkeypatch, capsys, toy_passages, tmp_path
):
    monkeypatch.setenv("DPR_RAG_CACHE", str(tiny_filesystem / "cache"))
    big = tmp_path / "big.jsonl"
    save_jsonl([Passage(str(i), f"T{i}", f"word{i} " * 60) for i in range(2000)], big)  # ~1 MB: does not fit
    with pytest.raises(SystemExit) as exit_info:
        run_cli(index_cli.main, ["--corpus", str(big), "--bm25-only"])
    err = capsys.readouterr().err.splitlines()[-1]
    assert exit_info.value.code == 2 and err.startswith(f"error: could not write {tiny_filesystem}/cache/bm25/")
    assert err.endswith("No space left on device") and ".tmp-" not in err  # the user's path, not a temporary
    assert [p for p in (tiny_filesystem / "cache" / "bm25").iterdir()] == []  # the partial index was removed


def test_an_unwritable_cache_folder_is_a_clear_error(tmp_path, tiny_model_dir, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DPR_RAG_CACHE", str(blocker / "cache"))
    with pytest.raises(SystemExit) as exit_info:
        run_cli(index_cli.main, ["--corpus", corpus(tmp_path, "c.jsonl", 5), "--model", str(tiny_model_dir)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: cannot create folder") and str(blocker) in err


def test_recover_puts_back_a_copy_orphaned_between_two_renames(tmp_path, monkeypatch):
    # Where the atomic swap (renameat2) is missing, a kill between the two renames leaves only ".name.old-PID".
    final = tmp_path / "last"
    with atomic_dir(final) as tmp:
        (tmp / "state").write_text("good")
    os.replace(final, tmp_path / ".last.old-4242")
    recover(final)
    assert (final / "state").read_text() == "good"
    monkeypatch.setattr("dpr_rag.storage._exchange", lambda a, b: False)  # the two-rename path still replaces
    with atomic_dir(final) as tmp:
        (tmp / "state").write_text("newer")
    assert (final / "state").read_text() == "newer" and [p.name for p in tmp_path.iterdir()] == ["last"]


def test_published_files_and_folders_get_normal_permissions(tmp_path):
    # Shards and indexes are read by other users and machines: not the 0600/0700 of a private temporary.
    from dpr_rag.storage import _UMASK, atomic_file

    with atomic_dir(tmp_path / "index") as tmp:
        (tmp / "x").write_text("1")
    with atomic_file(tmp_path / "meta.json") as f:
        f.write("{}")
    assert (tmp_path / "index").stat().st_mode & 0o777 == 0o777 & ~_UMASK
    assert (tmp_path / "meta.json").stat().st_mode & 0o777 == 0o666 & ~_UMASK
