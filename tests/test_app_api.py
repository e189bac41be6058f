"""Every tab's API, called with gradio_client against `python app.py` running on a toy corpus with tiny models
(a random 2-layer BERT encoder and a random 2-layer GPT-2 generator), as a second process."""

from __future__ import annotations

import json
import re
import time
import zipfile

import pytest
from browser import assets
from browser.app_server import index_ready, serving, wait_status
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

DENSE = "DPR (dense)"
QUERY_SIDE, DPR = "Query-side (question adapter)", "DPR (both towers)"  # the Train tab's recipes


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_model_dir):
    limits = {"DPR_RAG_APP_MAX_UPLOAD_MB": "2", "DPR_RAG_APP_MAX_PASSAGES": "10000"}
    with serving(tmp_path_factory.mktemp("app-api"), tiny_model_dir, **limits) as server:
        yield server


@pytest.fixture(scope="module")
def client(app):
    c = Client(app.url, verbose=False)
    wait_status(c, index_ready())
    return c


def status(client) -> dict:
    return client.predict(api_name="/status")[0]


def test_starts_on_the_configured_corpus_and_model(client):
    s = status(client)
    assert s["live"]["corpus"] == "toy.jsonl" and s["live"]["passages"] == len(assets.FACTS)
    assert s["live"]["ready_models"] == ["default"] and s["models"] == ["default"]
    assert s["index_job"]["state"] == "done" and not s["generator_loaded"]  # the generator loads on first QA use


def test_search_shows_three_retrievers_with_scores_latency_and_highlights(client):
    bm25, dense, hybrid, summary, _ = client.predict(
        "who painted the mona lisa", "Leonardo da Vinci", "default", 3, api_name="/search"
    )
    for column, name in ((bm25, "BM25"), (dense, DENSE), (hybrid, "Hybrid")):
        assert name in column and column.count("class='dpr-hit") == 3
        assert re.search(r"3 passages in \d+\.\d ms", column)
        assert re.search(r"class='dpr-score'>-?\d+\.\d{3}<", column)
    assert "<mark>Leonardo da Vinci</mark>" in bm25 and "answer at rank 1" in bm25
    assert "“who painted the mona lisa”" in summary and "toy.jsonl" in summary


def test_search_rejects_bad_input_with_a_message(client):
    with pytest.raises(AppError, match="type a question first"):
        client.predict("   ", "", "default", 3, api_name="/search")
    with pytest.raises(AppError, match="greater than maximum value 20"):  # the slider checks its range
        client.predict("who wrote hamlet", "", "default", 50, api_name="/search")
    with pytest.raises(AppError, match="unknown model 'run:nope'"):
        client.predict("who wrote hamlet", "", "run:nope", 3, api_name="/search")
    with pytest.raises(AppError, match="2,001 characters long; the limit is 2,000"):
        client.predict("why " * 500 + "x", "", "default", 3, api_name="/search")
    with pytest.raises(AppError, match="2,001 characters long; the limit is 2,000"):
        client.predict("why " * 500 + "x", "RAG-Token", "default", 3, api_name="/answer")


def test_the_api_cannot_make_the_app_read_a_server_file(app, client, tmp_path):
    # A hand-made request naming a file on the server (a valid corpus outside Gradio's upload folder) instead of
    # uploading one: Gradio refuses the path, so the app never reads it and the live corpus stays.
    import httpx

    secret = assets.write_corpus_jsonl(tmp_path / "secret.jsonl")
    payload = {"data": [{"path": str(secret), "meta": {"_type": "gradio.FileData"}}, "flat (exact)"]}
    with httpx.Client(base_url=app.url, timeout=30) as http:
        event = http.post("gradio_api/call/corpus_build", json=payload)
        if event.status_code == 200:
            assert "event: error" in http.get(f"gradio_api/call/corpus_build/{event.json()['event_id']}").text
        else:
            assert event.status_code in (400, 403, 422)
    time.sleep(1)
    assert status(client)["live"]["corpus"] == "toy.jsonl" and "secret" not in status(client)["index_job"]["title"]
    assert not list((app.folder / "data").rglob("secret.jsonl"))


@pytest.mark.parametrize("mode, n_passages", [("RAG-Sequence", 3), ("RAG-Token", 3), ("Closed-book (no retrieval)", 0)])
def test_answer_gives_the_answer_with_passages_and_posteriors(client, mode, n_passages):
    html, _ = client.predict("who wrote hamlet", mode, "default", 3, api_name="/answer")
    assert "class='qa-answer-text'" in html and "log p(answer | question)" in html and mode in html
    posteriors = [float(x) for x in re.findall(r"data-posterior='([0-9.]+)'", html)]
    priors = [float(x) for x in re.findall(r"data-prior='([0-9.]+)'", html)]
    assert len(posteriors) == len(priors) == n_passages
    if n_passages:
        assert sum(posteriors) == pytest.approx(1, abs=1e-3) and sum(priors) == pytest.approx(1, abs=1e-3)
        assert html.count("class='dpr-title'") == n_passages
    else:
        assert "Closed-book: the generator answered from its parameters alone" in html
    assert status(client)["generator_loaded"]


@pytest.mark.parametrize("retriever", ["BM25", "Hybrid (BM25 + dense)"])
def test_answer_over_bm25_and_hybrid_and_standard_rag(client, retriever):
    html, _ = client.predict("who wrote hamlet", "RAG-Token", "default", 3, retriever, 1, api_name="/answer")
    assert f"retriever: {retriever} (" in html and html.count("class='dpr-title'") == 3
    priors = [float(x) for x in re.findall(r"data-prior='([0-9.]+)'", html)]
    assert sum(priors) == pytest.approx(1, abs=1e-3)
    html, _ = client.predict(
        "who wrote hamlet", "Standard RAG (top-k in one prompt)", "default", 2, retriever, 0, api_name="/answer"
    )
    assert "Standard RAG: all passages were read in one prompt" in html and html.count("class='dpr-title'") == 2
    with pytest.raises(AppError, match="shots must be between 0 and 8|greater than maximum value 8"):
        client.predict("who wrote hamlet", "RAG-Token", "default", 3, retriever, 9, api_name="/answer")


def test_one_training_at_a_time_and_only_its_session_cancels(client, app):
    other = Client(app.url, verbose=False)
    client.predict("Default questions", None, 50, 4, 1, 1e-3, 0, "long run", QUERY_SIDE, api_name="/train_start")
    with pytest.raises(AppError, match="^Your training run is already running: Training long_run"):
        client.predict("Default questions", None, 1, 4, 1, 1e-3, 0, "second", DPR, api_name="/train_start")
    with pytest.raises(AppError, match="^Another session's training run is already running"):
        other.predict("Default questions", None, 1, 4, 1, 1e-3, 0, "second", DPR, api_name="/train_start")
    with pytest.raises(AppError, match="started by another session"):
        other.predict(api_name="/train_cancel")
    search = client.predict("who wrote hamlet", "", "default", 2, api_name="/search")  # the app stays responsive
    assert "Hamlet" in search[0]
    client.predict(api_name="/train_cancel")
    s = wait_status(client, lambda s: s["train_job"]["state"] != "running")
    assert s["train_job"]["state"] == "cancelled" and "long_run: cancelled at step" in s["train_job"]["message"]


def test_training_rejects_bad_settings_and_files(client, tmp_path):
    with pytest.raises(AppError, match="less than minimum value 1"):  # the number box checks its range
        client.predict("Default questions", None, 0, 4, 1, 1e-3, 0, "", QUERY_SIDE, api_name="/train_start")
    with pytest.raises(AppError, match=r"max examples \(3\) must be at least the batch size \(4\)"):
        client.predict("Default questions", None, 1, 4, 1, 1e-3, 3, "", DPR, api_name="/train_start")
    with pytest.raises(AppError, match="learning rate must be between 0 and 1"):
        client.predict("Default questions", None, 1, 4, 1, 5, 0, "", QUERY_SIDE, api_name="/train_start")
    bad = tmp_path / "qa.jsonl"
    bad.write_text('{"question": "who wrote hamlet", "answer": ["Shakespeare"]}\nnot json\n')
    with pytest.raises(AppError, match="^qa.jsonl:2: invalid JSON"):
        client.predict("Upload a file", handle_file(str(bad)), 1, 4, 1, 1e-3, 0, "", QUERY_SIDE, api_name="/train_start")


def test_trained_model_has_a_loss_curve_and_is_selectable_everywhere(client, tmp_path):
    qa = assets.write_qa_jsonl(tmp_path / "my-questions.jsonl")
    progress, *_ = client.predict("Upload a file", handle_file(str(qa)), 2, 4, 1, 1e-3, 0, "tiny", DPR, api_name="/train_start")
    assert "Training tiny (DPR) on my-questions.jsonl" in progress
    s = wait_status(client, lambda s: s["train_job"]["state"] != "running")
    assert s["train_job"]["state"] == "done", s["train_job"]["message"]
    assert "Now selectable in Search, QA and Evaluate" in s["train_job"]["message"] and "run:tiny" in s["models"]
    full = client.predict(api_name="/status")
    curve, steps = full[3], int(re.search(r"finished after step (\d+)", s["train_job"]["message"]).group(1))
    assert curve["columns"] == ["step", "loss"] and [row[0] for row in curve["data"]] == list(range(1, steps + 1))
    assert steps == 2 * (len(assets.FACTS) * 9 // 10 // 4)  # 2 epochs of (questions minus the dev tenth) // batch 4
    assert "Dev accuracy" in full[4]
    # Its dense index is built on first use, in the background, while BM25 answers at once.
    bm25, dense, _, _, timer = client.predict("who wrote hamlet", "Shakespeare", "run:tiny", 3, api_name="/search")
    assert "<mark>Shakespeare</mark>" in bm25 and "dense index" in dense and timer["active"]
    wait_status(client, index_ready("run:tiny"))
    dense = client.predict("who wrote hamlet", "Shakespeare", "run:tiny", 3, api_name="/search")[1]
    assert dense.count("class='dpr-hit") == 3
    html, _ = client.predict("who wrote hamlet", "RAG-Token", "run:tiny", 2, api_name="/answer")
    assert "tiny (trained here" in html and len(re.findall("data-posterior", html)) == 2
    summary, table, plot, report, _ = client.predict(
        "Default questions", None, "run:tiny", ["bm25", "dense", "hybrid"], "1,5", 0, api_name="/evaluate"
    )
    assert [row[0] for row in table["data"]] == ["bm25", "dense", "hybrid"] * 2  # all questions, then the answerable
    assert "model: tiny (trained here" in summary


def test_query_side_training_gives_a_question_adapter_selectable_everywhere(client, app, tmp_path):
    qa = assets.write_qa_jsonl(tmp_path / "qs-questions.jsonl")
    progress, *_ = client.predict(
        "Upload a file", handle_file(str(qa)), 2, 4, 1, 1e-3, 0, "qs", QUERY_SIDE, api_name="/train_start"
    )
    assert "Training qs (a question adapter) on qs-questions.jsonl" in progress
    s = wait_status(client, lambda s: s["train_job"]["state"] != "running")
    assert s["train_job"]["state"] == "done", s["train_job"]["message"]
    assert "run:qs" in s["models"] and "best dev top-20" in s["train_job"]["message"]
    assert len(list(app.folder.rglob("qs/best/dpr_rag_query_adapter.json"))) == 1  # an adapter, not two towers
    full = client.predict(api_name="/status")
    steps = int(re.search(r"finished after step (\d+)", s["train_job"]["message"]).group(1))
    assert steps > 0 and [row[0] for row in full[3]["data"]] == list(range(1, steps + 1))
    assert "Dev accuracy (top-20): step 0:" in full[4]
    client.predict("who wrote hamlet", "Shakespeare", "run:qs", 3, api_name="/search")  # starts its dense index
    wait_status(client, index_ready("run:qs"))
    dense = client.predict("who wrote hamlet", "Shakespeare", "run:qs", 3, api_name="/search")[1]
    assert dense.count("class='dpr-hit") == 3
    html, _ = client.predict("who wrote hamlet", "RAG-Token", "run:qs", 2, api_name="/answer")
    assert "qs (trained here, dev top-20" in html


def test_evaluate_shows_the_table_plot_and_report(client, app):
    summary, table, plot, report, _ = client.predict(
        "Default questions", None, "default", ["bm25", "dense"], "1,5,20", 10, api_name="/evaluate"
    )
    assert table["headers"] == ["retriever", "questions", "top-1 %", "top-5 %", "top-20 %", "queries/s"]
    rows = {(r[0], r[1]): r for r in table["data"]}
    assert set(rows) == {("bm25", "all (10)"), ("dense", "all (10)"), ("bm25", "answerable (10)"), ("dense", "answerable (10)")}
    assert rows["bm25", "all (10)"][4] == 100.0 and rows["bm25", "all (10)"][5] > 0  # every toy answer is in BM25's top 20
    assert "**10 questions**" in summary and "python -m eval.run" in summary
    assert "/" not in summary.split("Reproduce:")[1]  # no server path (reports folder, uploads, corpus, model)
    assert open(plot, "rb").read(4) == b"\x89PNG"
    name = report.rsplit("/", 1)[-1].removesuffix(".zip")
    assert re.fullmatch(r"\d{8}-\d{6}-default-[A-Za-z0-9_-]{16}", name)  # a timestamp alone could be guessed
    with zipfile.ZipFile(report) as z:
        assert {"report.json", "report.md", "per_question.jsonl", "topk.png"} <= set(z.namelist())
        saved = json.loads(z.read("report.json"))
        assert saved["n_questions"] == 10 and "cwd" not in saved["settings"]
        assert str(app.folder) not in z.read("report.json").decode() + z.read("report.md").decode()
    with pytest.raises(AppError, match="choose at least one retriever"):
        client.predict("Default questions", None, "default", [], "1", 0, api_name="/evaluate")
    with pytest.raises(AppError, match="--k must be"):
        client.predict("Default questions", None, "default", ["bm25"], "0,x", 0, api_name="/evaluate")


def test_corpus_uploads_are_validated(client, tmp_path, app):
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\ttext\ttitle\n1\tfine\tA\n2\tonly two fields\n")
    with pytest.raises(AppError, match="^bad.tsv:3: expected 3 tab-separated fields"):
        client.predict(handle_file(str(bad)), "flat (exact)", api_name="/corpus_build")
    wrong = tmp_path / "corpus.txt"
    wrong.write_text("hello")
    with pytest.raises(AppError, match=r"Invalid file type.*\.tsv.*\.jsonl"):  # the file box checks the type
        client.predict(handle_file(str(wrong)), "flat (exact)", api_name="/corpus_build")
    big = tmp_path / "big.jsonl"
    big.write_text("x" * (2 * 1024 * 1024 + 10))
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # refused before it is sent
        client.predict(handle_file(str(big)), "flat (exact)", api_name="/corpus_build")
    over = assets.write_corpus_jsonl(tmp_path / "over.jsonl", [(f"T{i}", f"Passage {i}.", "", "") for i in range(10_001)])
    with pytest.raises(AppError, match="^over.jsonl has 10,001 passages; this app accepts at most 10,000"):
        client.predict(handle_file(str(over)), "flat (exact)", api_name="/corpus_build")
    assert status(client)["live"]["corpus"] == "toy.jsonl"
    uploads = app.folder / "data" / "uploads"
    assert all(p.resolve().is_relative_to(uploads.resolve()) for p in uploads.rglob("*"))


def test_one_index_build_at_a_time_and_failed_builds_keep_the_live_index(client, app, tmp_path):
    other = Client(app.url, verbose=False)
    # 10,000 passages: encoding takes long enough (seconds, even with the tiny encoder) to be caught running.
    many = [(f"Topic {i}", f"Passage {i} is about subject number {i} and nothing else.", "", "") for i in range(10_000)]
    path = assets.write_corpus_jsonl(tmp_path / "many.jsonl", many)
    client.predict(handle_file(str(path)), "flat (exact)", api_name="/corpus_build")
    with pytest.raises(AppError, match="^Your index build is already running: Index of many.jsonl"):
        client.predict(handle_file(str(path)), "flat (exact)", api_name="/corpus_build")
    with pytest.raises(AppError, match="^Another session's index build is already running"):
        other.predict(handle_file(str(path)), "flat (exact)", api_name="/corpus_build")
    with pytest.raises(AppError, match="started by another session"):
        other.predict(api_name="/corpus_cancel")
    client.predict(api_name="/corpus_cancel")
    s = wait_status(client, lambda s: s["index_job"]["state"] != "running")
    assert s["index_job"]["state"] == "cancelled" and s["live"]["corpus"] == "toy.jsonl"
    # IVF-PQ needs 256+ vectors to train: the build fails after encoding, and the toy corpus stays live.
    client.predict(handle_file(str(app.folder / "toy.jsonl")), "ivfpq (compressed; large corpora)", api_name="/corpus_build")
    s = wait_status(client, lambda s: s["index_job"]["state"] != "running")
    assert s["index_job"]["state"] == "failed" and "IVF-PQ index needs at least 256 vectors" in s["index_job"]["message"]
    assert s["live"]["corpus"] == "toy.jsonl" and s["live"]["index_kind"] == "flat"
    assert "<mark>Shakespeare</mark>" in client.predict("who wrote hamlet", "Shakespeare", "default", 3, api_name="/search")[2]


def test_corpus_swap_is_hot_and_reversible(client, tmp_path):
    path = assets.write_corpus_tsv(tmp_path / "small corpus.tsv", assets.FACTS[:12])
    progress, _ = client.predict(handle_file(str(path)), "hnsw (approximate, fast)", api_name="/corpus_build")
    assert "Index of small_corpus.tsv (hnsw)" in progress
    s = wait_status(client, lambda s: s["index_job"]["state"] != "running")
    assert s["index_job"]["state"] == "done" and s["live"]["corpus"] == "small_corpus.tsv"
    assert s["live"]["passages"] == 12 and s["live"]["index_kind"] == "hnsw" and s["live"]["ready_models"] == ["default"]
    info = client.predict(api_name="/status")[6]
    assert "Live corpus: small_corpus.tsv" in info and "**12 passages**" in info
    assert "/" not in info  # no server path (index cache, generator folder) shown to visitors
    bm25, dense, hybrid, summary, _ = client.predict("who wrote hamlet", "", "default", 12, api_name="/search")
    assert "[t9]" in bm25 and "[p9]" not in bm25 and "small_corpus.tsv" in summary
    # The RAG pipeline follows the swap (swap_corpus): its passages come from the new corpus.
    html, _ = client.predict("who wrote hamlet", "RAG-Sequence", "default", 2, api_name="/answer")
    assert re.search(r"\[t\d+\]", html)
    client.predict(api_name="/corpus_reset")
    s = wait_status(client, lambda s: s["index_job"]["state"] != "running")
    assert s["live"]["corpus"] == "toy.jsonl" and s["live"]["passages"] == len(assets.FACTS)


# ---- an app started with a reranker (DPR_RAG_APP_RERANKER) -------------------------------------------------------
@pytest.fixture(scope="module")
def rerank_client(tmp_path_factory, tiny_model_dir):
    from dpr_rag.retrieval.rerank import CrossEncoderReranker

    folder = tmp_path_factory.mktemp("app-rerank")
    CrossEncoderReranker.from_pretrained(tiny_model_dir).save_pretrained(folder / "reranker")
    with serving(folder, tiny_model_dir, DPR_RAG_APP_RERANKER=str(folder / "reranker")) as server:
        c = Client(server.url, verbose=False)
        wait_status(c, index_ready())
        yield c


def test_search_reranks_every_column_and_shows_both_stages(rerank_client):
    plain = rerank_client.predict("who painted the mona lisa", "", "default", 3, False, api_name="/search")
    reranked = rerank_client.predict("who painted the mona lisa", "", "default", 3, True, api_name="/search")
    for before, after in zip(plain[:3], reranked[:3], strict=True):
        assert "reranked" not in before and "→ reranked" in after and after.count("class='dpr-hit") == 3
        assert re.search(
            rf"first stage \d+\.\d ms, then the reranker rescored {len(assets.FACTS)} candidates in \d+\.\d ms", after
        )


def test_qa_offers_the_reranked_retriever_only_with_a_reranker(rerank_client, client):
    html, _ = rerank_client.predict("who wrote hamlet", "RAG-Token", "default", 3, "Dense + rerank", 0, api_name="/answer")
    assert "retriever: Dense + rerank (" in html and html.count("class='dpr-title'") == 3
    with pytest.raises(AppError):
        client.predict("who wrote hamlet", "RAG-Token", "default", 3, "Dense + rerank", 0, api_name="/answer")
    with pytest.raises(AppError, match="no reranker"):
        client.predict("who painted the mona lisa", "", "default", 3, True, api_name="/search")


def test_gradios_upload_copies_expire(tmp_path_factory, tiny_model_dir, tmp_path):
    folder = tmp_path_factory.mktemp("app-ttl")
    gradio_tmp = folder / "gradio-tmp"
    with serving(folder, tiny_model_dir, DPR_RAG_APP_UPLOAD_TTL="2", GRADIO_TEMP_DIR=str(gradio_tmp)) as server:
        c = Client(server.url, verbose=False)
        wait_status(c, index_ready())
        bad = tmp_path / "bad.jsonl"
        bad.write_text("not json\n")
        with pytest.raises(AppError):
            c.predict(handle_file(str(bad)), "flat (exact)", api_name="/corpus_build")
        copies = lambda: [p for p in gradio_tmp.rglob("bad.jsonl")]  # noqa: E731
        assert copies(), "Gradio keeps a copy of the upload"
        deadline = time.time() + 30
        while copies() and time.time() < deadline:
            time.sleep(0.5)
        assert not copies()  # removed once older than DPR_RAG_APP_UPLOAD_TTL
