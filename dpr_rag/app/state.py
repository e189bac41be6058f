"""What the app holds for all sessions: the live corpus and its indexes, the models, the generator, the jobs.

- Models (`models.ModelRegistry`): the starting encoder ("default"), its untrained base, every model trained in the app.
- The live corpus (`LiveCorpus`): its passages and one `Searcher` per model whose dense index is ready. BM25
  is ready as soon as the corpus is loaded. The live corpus object is replaced whole (hot swap) only after
  the new corpus's indexes are built, so a failed or cancelled build leaves the old one serving.
- Index builds and training run in `JobSlot`s: one of each at a time, in a background thread.
- The generator (the shipped reader unless configured otherwise) is loaded on first use (QA); one `RagPipeline`
  per (model, retriever), rebuilt over the live corpus's retriever whenever the corpus changes.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.passages import Passage, corpus_fingerprint, load_corpus
from ..errors import ConfigError, DprRagError
from ..retrieval.searcher import Searcher
from .config import AppConfig
from .jobs import Job, JobSlot
from .models import BASE_MODEL, DEFAULT_MODEL, ModelEntry, ModelRegistry

__all__ = ["BASE_MODEL", "DEFAULT_CORPUS_NAME", "DEFAULT_MODEL", "AppState", "LiveCorpus", "ModelEntry"]

if TYPE_CHECKING:  # the generator and RAG load torch models: imported when first used
    from ..extractive.model import ExtractiveReader
    from ..rag.generator import Generator
    from ..rag.pipeline import RagPipeline

log = logging.getLogger("dpr_rag.app")

DEFAULT_CORPUS_NAME = "embedded default: 10,033 Wikipedia summaries"


@dataclass
class LiveCorpus:
    name: str
    path: str | None  # None: the embedded default corpus
    passages: list[Passage]
    index_kind: str
    fingerprint: str
    searchers: dict[str, Searcher] = field(default_factory=dict)  # model id -> searcher (BM25 always built)
    ready: set[str] = field(default_factory=set)  # model ids whose dense index is built
    since: float = field(default_factory=time.time)

    def add(self, model_id: str, searcher: Searcher, ready: bool = True) -> None:
        """Attach a model's searcher (copy on write: the page's threads read these without a lock)."""
        self.searchers = {**self.searchers, model_id: searcher}
        if ready:
            self.ready = self.ready | {model_id}

    def searcher(self, model_id: str) -> Searcher | None:
        return self.searchers.get(model_id) if model_id in self.ready else None

    @property
    def bm25(self):
        return next(iter(self.searchers.values())).retriever("bm25")


class AppState:
    def __init__(self, config: AppConfig):
        self.config = config
        config.make_dirs()
        self._lock = threading.RLock()
        self.registry = ModelRegistry(config.model, config.runs_dir)
        self.live: LiveCorpus | None = None
        self.index_jobs = JobSlot("index", "index build")
        self.train_jobs = JobSlot("train", "training run")
        self._generator: Generator | None = None
        self._generator_lock = threading.Lock()
        self._extractive: ExtractiveReader | None = None
        self._pipelines: dict[str, RagPipeline] = {}
        self.eval_cancels: dict[str, threading.Event] = {}

    # ---- models ------------------------------------------------------------------------------------------
    @property
    def models(self) -> dict[str, ModelEntry]:
        return self.registry.entries

    @property
    def models_version(self) -> int:
        return self.registry.version

    def register_run(self, run_dir: Path) -> ModelEntry | None:
        return self.registry.register_run(run_dir)

    def model(self, model_id: str | None) -> ModelEntry:
        return self.registry.get(model_id)

    def model_choices(self) -> list[tuple[str, str]]:
        return self.registry.choices()

    # ---- the live corpus and its indexes -----------------------------------------------------------------
    def require_live(self) -> LiveCorpus:
        live = self.live
        if live is None:
            job = self.index_jobs.current
            raise DprRagError("the corpus is still loading" + (f": {job.describe()}" if job else "") + "; try again in a moment")
        return live

    def index_progress(self, job: Job, what: str):
        """A progress callback for encoding: updates the job (which the page shows) and logs every 10%."""
        logged = [-1]

        def progress(done: int, total: int) -> None:
            tenth = 10 * done // max(total, 1)
            if tenth > logged[0]:
                logged[0] = tenth
                log.info("%s: %s, %d/%d (%d%%)", job.title, what, done, total, 100 * done // max(total, 1))
            job.progress(what, done, total)

        return progress

    def _build_searcher(
        self, job: Job, passages: list[Passage], model: ModelEntry, kind: str, live: LiveCorpus | None = None
    ) -> Searcher:
        """A searcher over `passages` with BM25, dense and hybrid built (dense from the cache, or encoded now with
        progress). If `live` is given, BM25 becomes usable there as soon as it is built."""
        what = f"encoding {len(passages):,} passages"
        searcher = Searcher(
            passages,
            model=model.path,
            index_kind=kind,
            show_progress=False,
            precision=self.config.precision,
            progress=self.index_progress(job, what),
            reranker=self.config.reranker,
        )
        job.progress("building the BM25 index")
        searcher.retriever("bm25")
        if live is not None and not live.searchers:
            live.add(model.id, searcher, ready=False)
            self.live = live  # BM25 search works while the dense index is built
        job.progress(f"loading the encoder {model.label}")
        _ = searcher.encoder  # loaded here, so that the page says what takes the time
        job.progress(what, 0, len(passages))
        searcher.retriever("dense")  # from the cache, or encoded now with progress (and cached)
        searcher.retriever("hybrid")
        return searcher

    def start_initial_load(self) -> Job:
        """Load the starting corpus and build (or load from the cache) its indexes for the starting model."""
        cfg = self.config
        name = DEFAULT_CORPUS_NAME if cfg.corpus is None else Path(cfg.corpus).name

        def work(job: Job) -> LiveCorpus:
            job.progress("reading the corpus")
            passages = load_corpus(cfg.corpus)
            live = LiveCorpus(name, cfg.corpus, passages, cfg.index_kind, corpus_fingerprint(passages))
            searcher = self._build_searcher(job, passages, self.model(DEFAULT_MODEL), cfg.index_kind, live=live)
            with self._lock:
                live.add(DEFAULT_MODEL, searcher)
                self.live = live
            return live

        return self.index_jobs.start(
            f"Index of {name}",
            None,
            work,
            lambda job: f"Ready: {job.result.name}, {len(job.result.passages):,} passages",
            tag=f"model:{DEFAULT_MODEL}",
        )

    def start_model_index(self, model_id: str, owner: str | None) -> Job | None:
        """Build the live corpus's dense index for a model (None if it is ready already)."""
        live, model = self.require_live(), self.model(model_id)
        if model.id in live.ready:
            return None

        def work(job: Job) -> Searcher:
            searcher = self._build_searcher(job, live.passages, model, live.index_kind)
            with self._lock:
                live.add(model.id, searcher)
            return searcher

        return self.index_jobs.start(
            f"Dense index of {live.name} for {model.label}",
            owner,
            work,
            lambda job: f"Ready: {model.label} on {live.name}",
            tag=f"model:{model.id}",
        )

    def start_corpus_swap(self, passages: list[Passage], name: str, path: str | None, kind: str, owner: str | None) -> Job:
        """Build a corpus's indexes for the starting model, then make it the live corpus (the old one serves until then)."""
        model = self.model(DEFAULT_MODEL)

        def work(job: Job) -> LiveCorpus:
            new = LiveCorpus(name, path, passages, kind, corpus_fingerprint(passages))
            new.add(DEFAULT_MODEL, self._build_searcher(job, passages, model, kind))
            job.progress("swapping the corpus in")
            with self._lock:
                self.live = new
            return new

        return self.index_jobs.start(
            f"Index of {name} ({kind})",
            owner,
            work,
            lambda job: f"Swapped in: {name}, {len(passages):,} passages, {kind} index",
            tag="corpus",
        )

    def start_corpus_change(self, added: list[Passage], deleted: list[str], owner: str | None) -> Job:
        """Add passages to the live corpus or delete some by id: only added passages are encoded (the starting model's
        dense index is copied and changed, `index_update.cache_changed_corpus`); BM25 is rebuilt; the old corpus
        serves until the changed one is swapped in."""
        from ..retrieval.index_update import cache_changed_corpus

        live, model = self.require_live(), self.model(DEFAULT_MODEL)
        old = live.searcher(DEFAULT_MODEL)
        if old is None:
            raise ConfigError("the live corpus is still being indexed; change it when it is ready")
        position = {p.id: i for i, p in enumerate(live.passages)}
        unknown = [i for i in deleted if i not in position]
        clash = [p.id for p in added if p.id in position]
        if unknown or clash or not (added or deleted):
            problem = f"no passage with id {', '.join(unknown[:10])}" if unknown else f"ids already live: {', '.join(clash[:10])}"
            raise ConfigError(problem if unknown or clash else "give passages to add or ids to delete")
        gone = {position[i] for i in deleted}
        keep = [i for i in range(len(live.passages)) if i not in gone]
        passages = [live.passages[i] for i in keep] + list(added)
        name = f"{live.name.split(' (changed')[0]} (changed: +{len(added):,} -{len(gone):,})"

        def work(job: Job) -> LiveCorpus:
            job.progress(f"changing the dense index (+{len(added):,} -{len(gone):,} passages)")
            if deleted:
                kept = [live.passages[i] for i in keep]
                cache_changed_corpus(old, kept, keep=keep)
                old_for_add = Searcher(kept, model=model.path, index_kind=live.index_kind, precision=self.config.precision)
            else:
                old_for_add = old
            if added:
                cache_changed_corpus(old_for_add, passages, added=list(added))
            new = LiveCorpus(name, live.path, passages, live.index_kind, corpus_fingerprint(passages))
            new.add(DEFAULT_MODEL, self._build_searcher(job, passages, model, live.index_kind))
            job.progress("swapping the changed corpus in")
            with self._lock:
                self.live = new
            return new

        return self.index_jobs.start(
            f"Change of {live.name}", owner, work, lambda job: f"Swapped in: {name}, {len(passages):,} passages", tag="corpus"
        )

    # ---- RAG ----------------------------------------------------------------------------------------------
    def generator(self):
        """The generator LM, loaded on first use (the default Gemma is converted once, then cached)."""
        with self._generator_lock:
            if self._generator is None:
                from ..rag.default_generator import shipped_reader
                from ..rag.generator import Generator

                path = self.config.generator
                reader = None if path or self.config.base_generator else shipped_reader()
                path = str(reader / "generator") if reader else path
                log.info("loading the generator %s", path or "(embedded base model)")
                self._generator = Generator.from_pretrained(path)
            return self._generator

    @property
    def has_extractive_reader(self) -> bool:
        """Whether the QA tab can offer the extractive mode: a configured reader, or the shipped one."""
        from ..extractive.model import shipped_extractive_reader

        return bool(self.config.extractive_reader) or shipped_extractive_reader() is not None

    def extractive_reader(self) -> ExtractiveReader:
        """DPR's extractive reader (DPR_RAG_APP_EXTRACTIVE_READER, else the shipped one), loaded on first use."""
        with self._generator_lock:
            if self._extractive is None:
                from ..rag.extractive_mode import load_extractive_reader

                self._extractive = load_extractive_reader(self.config.extractive_reader)
            return self._extractive

    @property
    def default_mode(self) -> str:
        """The QA tab's first mode: the shipped reader's own (`rag_folder.answer_mode`), else RAG-Token."""
        from ..rag.default_generator import shipped_reader
        from ..rag.rag_folder import answer_mode, load_rag_config

        reader = None if self.config.generator or self.config.base_generator else shipped_reader()
        return answer_mode(load_rag_config(reader)) if reader else "token"

    @property
    def default_fallback(self) -> bool:
        """Whether the QA tab starts with the closed-book fallback on: as the shipped reader's rag_config.json says."""
        from ..rag.default_generator import shipped_reader
        from ..rag.rag_folder import load_rag_config

        reader = None if self.config.generator or self.config.base_generator else shipped_reader()
        return bool(load_rag_config(reader).get("fallback", False)) if reader else False

    @property
    def generator_loaded(self) -> bool:
        return self._generator is not None

    def pipeline(
        self,
        model_id: str,
        k: int,
        retriever: str = "dense",
        shots: int | None = None,
        fallback: bool | None = None,
        extractive: bool = False,
    ):
        """The RAG pipeline of a model and retriever (dense, bm25 or hybrid), over the live corpus. A pipeline is kept
        per (model, retriever) and follows a corpus swap; `shots` demonstrations (default: the app's setting);
        `fallback`: the closed-book fallback (default: as the shipped reader says). `extractive`: for the extractive
        mode, which reads with DPR's reader and needs no generator (none is loaded for it)."""
        from ..rag.demonstrations import few_shot_template
        from ..rag.pipeline import RagPipeline

        live = self.require_live()
        searcher = live.searcher(model_id)
        if searcher is None:
            raise DprRagError("the dense index for this model is not built yet")
        found = searcher.retriever(retriever)  # BM25 is built on first use (seconds), from its cache after that
        # Outside the lock: the first load takes seconds.
        generator = None if extractive else self.generator()
        reader = self.extractive_reader() if extractive else None
        template = few_shot_template(self.config.shots if shots is None else shots)
        with self._lock:
            key = f"{model_id}\t{retriever}"
            pipe = self._pipelines.get(key)
            if pipe is None or pipe.retriever is not found:
                pipe = RagPipeline(found, generator, k=k)
                self._pipelines[key] = pipe
            if generator is not None and not pipe.has_generator:
                pipe.generator = generator
            if reader is not None:
                pipe.extractive_reader = reader
            pipe.k, pipe.template = k, template
            pipe.fallback = self.default_fallback if fallback is None else fallback
            return pipe

    # ---- status for the page -----------------------------------------------------------------------------
    def status(self) -> dict:
        live = self.live
        out: dict[str, Any] = {
            "live": None,
            "index_job": None,
            "train_job": None,
            "models": [m.id for m in self.models.values()],
            "models_version": self.models_version,
            "generator_loaded": self.generator_loaded,
        }
        if live is not None:
            out["live"] = {
                "corpus": live.name,
                "passages": len(live.passages),
                "fingerprint": live.fingerprint,
                "index_kind": live.index_kind,
                "ready_models": sorted(live.ready),
                "since": live.since,
            }
        for key, slot in (("index_job", self.index_jobs), ("train_job", self.train_jobs)):
            if slot.last is not None:
                out[key] = slot.last.to_dict()
        return out
