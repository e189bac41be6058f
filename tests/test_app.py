"""The app's pieces without a server: settings, upload checks, highlighting, job slots, and the live-corpus swap
(a failed build leaves the live index serving)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from browser import assets

from dpr_rag.app.config import AppConfig
from dpr_rag.app.examples import DEFAULT_EXAMPLES
from dpr_rag.app.jobs import CANCELLED, DONE, FAILED, JobBusy, JobSlot
from dpr_rag.app.render import answer_spans, highlight, parse_answers
from dpr_rag.app.state import DEFAULT_MODEL, AppState
from dpr_rag.app.uploads import CORPUS_TYPES, QA_TYPES, inside, load_uploaded_corpus, load_uploaded_qa, safe_name, store_upload
from dpr_rag.data.passages import Passage, load_corpus
from dpr_rag.data.qa import load_qa
from dpr_rag.errors import ConfigError, DataFormatError, DprRagError


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


# ---- settings ------------------------------------------------------------------------------------------------
def test_config_reads_the_environment(tmp_path, monkeypatch):
    corpus = assets.write_corpus_jsonl(tmp_path / "c.jsonl")
    env = {
        "DPR_RAG_APP_CORPUS": str(corpus),
        "DPR_RAG_APP_MODEL": "some-org/some-model",
        "GRADIO_SERVER_PORT": "7999",
        "GRADIO_SERVER_NAME": "0.0.0.0",
        "DPR_RAG_APP_DATA": str(tmp_path / "d"),
        "DPR_RAG_APP_MAX_UPLOAD_MB": "2",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = AppConfig.from_env()
    assert (cfg.corpus, cfg.model, cfg.server_port, cfg.server_name) == (str(corpus), "some-org/some-model", 7999, "0.0.0.0")
    assert cfg.max_upload_bytes == 2 * 1024 * 1024 and cfg.uploads_dir == tmp_path / "d" / "uploads"


def test_config_defaults_and_bad_values(monkeypatch):
    for k in ("DPR_RAG_APP_CORPUS", "DPR_RAG_APP_MODEL", "GRADIO_SERVER_PORT", "GRADIO_SERVER_NAME", "DPR_RAG_APP_DATA"):
        monkeypatch.delenv(k, raising=False)
    cfg = AppConfig.from_env()
    assert (cfg.server_name, cfg.server_port, cfg.corpus, cfg.model) == ("127.0.0.1", 7860, None, None)
    assert cfg.data_dir == Path(os.environ["DPR_RAG_CACHE"]).resolve() / "app"
    monkeypatch.setenv("DPR_RAG_APP_CORPUS", "/no/such/corpus.tsv")
    with pytest.raises(ConfigError, match="no such file"):
        AppConfig.from_env()
    monkeypatch.delenv("DPR_RAG_APP_CORPUS")
    monkeypatch.setenv("DPR_RAG_APP_INDEX_TYPE", "annoy")
    with pytest.raises(ConfigError, match="flat"):
        AppConfig.from_env()
    monkeypatch.delenv("DPR_RAG_APP_INDEX_TYPE")
    assert (cfg.precision, cfg.max_passages, cfg.max_questions) == ("auto", 50_000, 20_000)
    for name, value, message in [
        ("DPR_RAG_APP_PRECISION", "int4", "choose one of auto, fp32, bf16, int8"),
        ("DPR_RAG_APP_MAX_PASSAGES", "lots", "must be numbers"),
        ("DPR_RAG_APP_MAX_QUESTIONS", "0", "must be positive"),
    ]:
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError, match=message):
            AppConfig.from_env()
        monkeypatch.delenv(name)
    monkeypatch.setenv("DPR_RAG_APP_PRECISION", "bf16")
    assert AppConfig.from_env().precision == "bf16"


def test_examples_are_real_questions_of_the_default_set():
    default = {ex.question: ex.answers for ex in load_qa(None)}
    for question, answers in DEFAULT_EXAMPLES:
        assert default.get(question) == answers


# ---- uploads -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, expected",
    [
        ("../../etc/passwd.tsv", "passwd.tsv"),
        ("..", "upload"),
        (".bashrc.tsv", "bashrc.tsv"),
        ("a\\..\\b c.jsonl", "b_c.jsonl"),
        ("/abs/x.tsv", "x.tsv"),
        ("ok-1.tsv", "ok-1.tsv"),
        ("q" * 200 + ".jsonl", "q" * 74 + ".jsonl"),  # cut to 80 characters, the extension kept
    ],
)
def test_safe_name_keeps_no_path(name, expected):
    assert safe_name(name) == expected


def test_store_upload_checks_type_size_and_stays_in_the_uploads_folder(tmp_path):
    uploads = tmp_path / "data" / "uploads"
    src = tmp_path / "in" / "my corpus.tsv"
    src.parent.mkdir()
    assets.write_corpus_tsv(src)
    stored, shown = store_upload(src, uploads, CORPUS_TYPES, 10_000)
    assert shown == "my_corpus.tsv" and stored.name == shown and inside(stored, uploads)
    assert stored.read_bytes() == src.read_bytes()
    with pytest.raises(DataFormatError, match="upload limit is 1.0 KB"):
        store_upload(src, uploads, CORPUS_TYPES, 1024)
    (tmp_path / "in" / "x.txt").write_text("hello")
    with pytest.raises(DataFormatError, match="unsupported corpus type '.txt'"):
        store_upload(tmp_path / "in" / "x.txt", uploads, CORPUS_TYPES, 10_000, "corpus")
    (tmp_path / "in" / "empty.jsonl").write_text("")
    with pytest.raises(DataFormatError, match="empty"):
        store_upload(tmp_path / "in" / "empty.jsonl", uploads, CORPUS_TYPES, 10_000)
    link = tmp_path / "in" / "link.tsv"
    link.symlink_to(src)
    with pytest.raises(DataFormatError, match="not a regular file"):
        store_upload(link, uploads, CORPUS_TYPES, 10_000)
    with pytest.raises(DataFormatError, match="choose a file"):
        store_upload(None, uploads, CORPUS_TYPES, 10_000)
    assert all(inside(p, uploads) for p in uploads.rglob("*"))


def test_upload_errors_name_the_users_file_and_line(tmp_path):
    uploads = tmp_path / "uploads"
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\ttext\ttitle\n1\tfine\tA\n2\tmissing a field\n")
    stored, shown = store_upload(bad, uploads, CORPUS_TYPES, 10_000)
    with pytest.raises(DataFormatError) as e:
        load_uploaded_corpus(stored, shown)
    assert str(e.value).startswith("bad.tsv:3: expected 3 tab-separated fields") and str(uploads) not in str(e.value)
    assert not stored.parent.exists()  # a rejected upload is not kept
    qa = tmp_path / "q.jsonl"
    qa.write_text('{"question": "q1", "answer": ["a"]}\n{"question": "q2"}\n')
    stored, shown = store_upload(qa, uploads, QA_TYPES, 10_000)
    with pytest.raises(DataFormatError, match=r"^q.jsonl:2: missing field 'answer'"):
        load_uploaded_qa(stored, shown)


# ---- highlighting --------------------------------------------------------------------------------------------
def test_highlight_marks_answer_tokens_and_escapes_html():
    text = "The <b>artist</b> Leonardo da Vinci painted it; leonardo DA vinci again. An art school."
    assert highlight(text, ["leonardo da vinci", "art"]) == (
        "The &lt;b&gt;artist&lt;/b&gt; <mark>Leonardo da Vinci</mark> painted it; <mark>leonardo DA vinci</mark> again. "
        "An <mark>art</mark> school."
    )
    assert answer_spans("1889 and 18 89", ["1889"]) == [(0, 4)]
    assert highlight("<script>x</script>", []) == "&lt;script&gt;x&lt;/script&gt;"
    assert parse_answers(" a | b c ||") == ["a", "b c"]


# ---- jobs ----------------------------------------------------------------------------------------------------
def test_job_slot_runs_one_job_at_a_time_with_clear_messages():
    slot = JobSlot("train", "training run")
    release = threading.Event()

    def work(job):
        while not release.is_set():
            job.progress("waiting", 1, 4)
            time.sleep(0.01)
        return 42

    job = slot.start("Training A", "alice", work)
    with pytest.raises(JobBusy, match="^Your training run is already running: Training A \\(waiting, 25%"):
        slot.start("Training B", "alice", work)
    with pytest.raises(JobBusy, match="^Another session's training run is already running"):
        slot.start("Training B", "bob", work)
    with pytest.raises(JobBusy, match="started by another session"):
        slot.cancel("bob")
    release.set()
    wait_for(lambda: not job.running)
    assert job.state == DONE and job.result == 42
    assert slot.start("Training C", "bob", lambda j: 1) is slot.last  # the slot is free again


def test_job_slot_cancel_and_failure():
    slot = JobSlot("index", "index build")

    def endless(job):
        while True:
            job.progress("encoding", 1, 10)
            time.sleep(0.01)

    job = slot.start("Index X", "alice", endless)
    assert "Cancelling Index X" in slot.cancel("alice")
    wait_for(lambda: not job.running)
    assert job.state == CANCELLED
    failed = slot.start("Index Y", "alice", lambda j: (_ for _ in ()).throw(DprRagError("disk full")))
    wait_for(lambda: not failed.running)
    assert failed.state == FAILED and failed.message == "Index Y failed: disk full"
    assert slot.cancel("alice") == "No index build is in progress."


# ---- state: the live corpus ---------------------------------------------------------------------------------
@pytest.fixture
def app_state(tmp_path, tiny_model_dir):
    cfg = AppConfig(
        corpus=str(assets.write_corpus_jsonl(tmp_path / "toy.jsonl")), model=str(tiny_model_dir), data_dir=tmp_path / "data"
    )
    state = AppState(cfg)
    job = state.start_initial_load()
    wait_for(lambda: not job.running, 120)
    assert job.state == DONE, job.message
    return state


def test_failed_or_cancelled_build_leaves_the_live_corpus(app_state, tmp_path):
    live = app_state.live
    assert DEFAULT_MODEL in live.ready and len(live.passages) == len(assets.FACTS)
    small = load_corpus(assets.write_corpus_tsv(tmp_path / "small.tsv", assets.FACTS[:5]))
    job = app_state.start_corpus_swap(small, "small.tsv", str(tmp_path / "small.tsv"), "ivfpq", "alice")
    wait_for(lambda: not job.running)
    assert job.state == FAILED and "IVF-PQ index needs at least" in job.message
    assert app_state.live is live  # still serving the old corpus
    top = app_state.live.searcher(DEFAULT_MODEL).search(["who painted the mona lisa"], 2, "hybrid")[0][0]
    assert top.passage.title == "Mona Lisa"
    job = app_state.start_corpus_swap(small, "small.tsv", str(tmp_path / "small.tsv"), "flat", "alice")
    wait_for(lambda: not job.running)
    assert job.state == DONE and app_state.live.name == "small.tsv" and len(app_state.live.passages) == 5


def test_trained_runs_are_found_again_and_unknown_models_refused(app_state, tmp_path):
    with pytest.raises(ConfigError, match="unknown model"):
        app_state.model("run:nope")
    run = app_state.config.runs_dir / "old-run"
    (run / "best").mkdir(parents=True)
    (run / "best" / "dpr_rag_encoder.json").write_text("{}")
    again = AppState(app_state.config)
    assert "run:old-run" in again.models and again.model("run:old-run").path == str(run)


def test_the_qa_tab_starts_in_the_mode_the_reader_was_trained_for(tmp_path, monkeypatch):
    import dpr_rag.rag.default_generator as default_generator
    from dpr_rag.rag.rag_folder import RAG_CONFIG, answer_mode

    assert [answer_mode({"mode": m}) for m in ("passage", "standard", "token", "sequence")] == [
        "token",
        "standard",
        "token",
        "sequence",
    ]
    assert answer_mode({}) == "token"  # an older folder without a mode
    reader = tmp_path / "reader"
    reader.mkdir()
    (reader / RAG_CONFIG).write_text('{"mode": "standard", "k": 5}')
    monkeypatch.setattr(default_generator, "shipped_reader", lambda: reader)
    assert AppState(AppConfig(data_dir=tmp_path / "d")).default_mode == "standard"
    assert AppState(AppConfig(data_dir=tmp_path / "d", base_generator=True)).default_mode == "token"
    assert AppState(AppConfig(data_dir=tmp_path / "d", generator="some/lm")).default_mode == "token"


def test_the_live_corpus_changes_without_encoding_it_again(app_state, monkeypatch):
    """Corpus tab: added passages are the only ones encoded; deleted ones leave every retriever."""
    from dpr_rag.retrieval.encoder import DualEncoder

    live = app_state.live
    first, n = live.passages[0], len(live.passages)
    new = [Passage("z1", "Quokka", "The quokka is a small marsupial that lives on Rottnest Island near Perth.")]
    encoded: list[int] = []
    encode = DualEncoder.encode_passages
    monkeypatch.setattr(DualEncoder, "encode_passages", lambda self, p, **kw: encoded.append(len(p)) or encode(self, p, **kw))
    with pytest.raises(ConfigError, match="no passage with id nope"):
        app_state.start_corpus_change([], ["nope"], "alice")
    with pytest.raises(ConfigError, match="ids already live"):
        app_state.start_corpus_change([Passage(first.id, "x", "y")], [], "alice")
    job = app_state.start_corpus_change(new, [first.id], "alice")
    wait_for(lambda: not job.running)
    assert job.state == DONE, job.message
    assert encoded == [1]  # the added passage only
    changed = app_state.live
    assert changed is not live and len(changed.passages) == n and changed.passages[-1].id == "z1"
    searcher = changed.searcher(DEFAULT_MODEL)
    for retriever in ("bm25", "dense", "hybrid"):
        found = [h.passage.id for h in searcher.search([first.text], n, retriever)[0]]
        assert first.id not in found and "z1" in found
    assert searcher.search(["quokka rottnest"], 1, "bm25")[0][0].passage.id == "z1"


def test_with_the_shipped_default_the_untrained_base_is_offered_beside_it_on_the_same_index(tmp_path):
    from dpr_rag.app.state import BASE_MODEL

    cfg = AppConfig(corpus=str(assets.write_corpus_jsonl(tmp_path / "toy.jsonl")), data_dir=tmp_path / "data")
    state = AppState(cfg)
    assert [m for _, m in state.model_choices()][:2] == [DEFAULT_MODEL, BASE_MODEL]
    job = state.start_initial_load()
    wait_for(lambda: not job.running, 120)
    assert job.state == DONE, job.message
    job = state.start_model_index(BASE_MODEL, "alice")
    wait_for(lambda: not job.running, 120)
    assert job.state == DONE, job.message
    trained, base = (state.live.searcher(m).encoder for m in (DEFAULT_MODEL, BASE_MODEL))
    assert trained.passage_fingerprint() == base.passage_fingerprint() and trained.source != base.source
    assert len(list((tmp_path / "cache" / "dense").iterdir())) == 1  # one index of the corpus serves both
    top = state.live.searcher(BASE_MODEL).search(["who painted the mona lisa"], 1, "dense")[0][0]
    assert top.passage.title == "Mona Lisa"


def test_the_evaluate_tabs_reproduce_command_runs_as_shown():
    """Defaults are left out, files are named by their file names, models by what `--model` takes."""
    from dpr_rag.app.eval_tab import model_argument, reproduce_command
    from dpr_rag.app.models import BASE_MODEL, ModelEntry
    from eval.run import build_parser

    assert model_argument(ModelEntry(DEFAULT_MODEL, "default", None)) is None
    assert model_argument(ModelEntry(BASE_MODEL, "untrained", "/srv/x/all-MiniLM-L6-v2")) == "all-MiniLM-L6-v2"
    assert model_argument(ModelEntry("run:qs", "qs (trained here)", "/srv/data/runs/qs")) == "qs"
    default = reproduce_command(None, None, None, ["bm25", "dense"], "1,5,20", 0)
    assert default == ["python", "-m", "eval.run", "--retrievers", "bm25,dense", "--k", "1,5,20"]
    mine = reproduce_command("my-qa.jsonl", "corpus.jsonl", "qs", ["dense"], "1,20", 200)
    args = build_parser().parse_args(mine[3:])
    assert (args.qa, args.corpus, args.model, args.retrievers, args.limit) == ("my-qa.jsonl", "corpus.jsonl", "qs", "dense", 200)
