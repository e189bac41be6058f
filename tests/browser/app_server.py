"""Run `python app.py` as a subprocess on a free port, with the small corpus and tiny models of `assets`, and
wait until it serves and its starting index is ready."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from . import assets

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_assets(folder: Path, tiny_model_dir: Path) -> dict[str, str]:
    """The environment that points the app at the test assets (all under `folder`)."""
    folder.mkdir(parents=True, exist_ok=True)
    gpt2 = folder / "tiny-gpt2"
    if not (gpt2 / "config.json").exists():
        assets.build_tiny_gpt2(gpt2)
    reader = folder / "tiny-reader"
    if not (reader / "reader.json").exists():
        assets.build_tiny_reader(reader, tiny_model_dir)
    return {
        "DPR_RAG_APP_CORPUS": str(assets.write_corpus_jsonl(folder / "toy.jsonl")),
        "DPR_RAG_APP_QA": str(assets.write_qa_jsonl(folder / "toy-qa.jsonl")),
        "DPR_RAG_APP_MODEL": str(tiny_model_dir),
        "DPR_RAG_APP_GENERATOR": str(gpt2),
        "DPR_RAG_APP_EXTRACTIVE_READER": str(reader),
        "DPR_RAG_APP_DATA": str(folder / "data"),
        "DPR_RAG_CACHE": str(folder / "cache"),
        "DPR_RAG_APP_MAX_UPLOAD_MB": "0.05",  # 50 KB: the toy files are ~3 KB; tests check the limit
    }


class AppServer:
    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        full_env = {
            **os.environ,
            **env,
            "GRADIO_SERVER_PORT": str(self.port),
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_serving(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"app did not serve within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@contextlib.contextmanager
def serving(folder: Path, tiny_model_dir: Path, **env_overrides: str) -> Iterator[AppServer]:
    """`python app.py` on the test assets in `folder` (env overrides on top), serving until the block ends."""
    server = AppServer({**make_assets(folder, tiny_model_dir), **env_overrides}, folder / "app.log")
    try:
        server.wait_serving()
        server.folder = folder
        yield server
    finally:
        server.stop()


def wait_status(client, predicate, timeout: float = 90, interval: float = 0.3) -> dict:
    """Poll the app's /status until predicate(status dict) holds; returns that status."""
    deadline = time.time() + timeout
    status = None
    while time.time() < deadline:
        status = client.predict(-1, api_name="/status")[0]
        if predicate(status):
            return status
        time.sleep(interval)
    raise TimeoutError(f"status never satisfied the condition; last: {status}")


def index_ready(model_id: str = "default"):
    return lambda s: (
        s["live"] is not None
        and model_id in s["live"]["ready_models"]
        and not (s["index_job"] and s["index_job"]["state"] == "running")
    )
