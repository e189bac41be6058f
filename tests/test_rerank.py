"""The reranking stage: the listwise loss, the cross-encoder (save/load, LoRA), the reranked retriever, its training
data and its trainer (learning, exact resume, a refused resume without its data)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dpr_rag.data.passages import Passage
from dpr_rag.data.qa import QAExample
from dpr_rag.errors import ConfigError, DprRagError
from dpr_rag.retrieval.base import SearchHit
from dpr_rag.retrieval.bm25 import BM25Retriever
from dpr_rag.retrieval.rerank import CrossEncoderReranker, RerankedRetriever, passage_text
from dpr_rag.training.rerank_loss import group_softmax_loss
from dpr_rag.training.reranker_data import reranker_examples
from dpr_rag.training.reranker_trainer import RerankerTrainConfig, group, train_reranker


def test_group_softmax_loss_matches_hand_computed_value():
    logits = torch.tensor([2.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    result = group_softmax_loss(logits, 3)
    expected = (-math.log(math.exp(2) / (math.exp(2) + 2)) - math.log(1 / 3)) / 2
    assert result.loss.item() == pytest.approx(expected, rel=1e-6)
    assert result.correct == 1  # the second group is a tie: not a win


def test_group_softmax_loss_is_shift_invariant_and_checks_shape():
    logits = torch.tensor([0.3, -1.0, 2.0, 0.5])
    assert group_softmax_loss(logits, 2).loss.item() == pytest.approx(group_softmax_loss(logits + 7, 2).loss.item())
    with pytest.raises(ValueError):
        group_softmax_loss(torch.zeros(5), 2)


def _passage(i: int, title: str, text: str) -> Passage:
    return Passage(str(i), title, text)


@pytest.fixture
def reranker(tiny_model_dir) -> CrossEncoderReranker:
    torch.manual_seed(0)
    return CrossEncoderReranker.from_pretrained(tiny_model_dir, max_length=64)


def test_cross_encoder_scores_and_round_trip(reranker, tmp_path, toy_passages):
    scores = reranker.score("who painted the mona lisa", toy_passages)
    assert scores.shape == (len(toy_passages),) and np.isfinite(scores).all()
    # batching does not change a score
    reranker.batch_size = 3
    np.testing.assert_allclose(reranker.score("who painted the mona lisa", toy_passages), scores, atol=1e-5)
    reranker.save_pretrained(tmp_path / "r")
    assert (tmp_path / "r" / "model.safetensors").is_file() and not list((tmp_path / "r").glob("*.bin"))
    again = CrossEncoderReranker.from_pretrained(tmp_path / "r", max_length=64)
    np.testing.assert_allclose(again.score("who painted the mona lisa", toy_passages), scores, atol=1e-5)


def test_passage_text_reads_title_then_text():
    assert passage_text(_passage(0, "Mona Lisa", "A painting.")) == "Mona Lisa: A painting."
    assert passage_text(_passage(0, "", "A painting.")) == "A painting."


class _WordOverlap:
    """A stand-in reranker whose score is known: the number of question words in the passage text."""

    def score(self, question, passages):
        words = set(question.lower().split())
        return np.array([len(words & set(p.text.lower().split())) for p in passages], dtype=np.float32)


class _Reversed:
    """A first stage that ranks the corpus in reverse order, so reranking has work to do."""

    name = "toy"

    def __init__(self, passages):
        self.passages = passages

    def search(self, queries, k=10):
        ranked = list(reversed(self.passages))[:k]
        return [[SearchHit(p, float(-r), r) for r, p in enumerate(ranked, start=1)] for _ in queries]


def test_reranked_retriever_reorders_only_the_first_stage_candidates(toy_passages):
    first = _Reversed(toy_passages)
    reranked = RerankedRetriever(first, _WordOverlap(), candidates=4)  # type: ignore[arg-type]
    assert reranked.name == "toy+rerank"
    (hits,) = reranked.search(["the mona lisa painting by leonardo"], k=3)
    candidates = {p.id for p in list(reversed(toy_passages))[:4]}
    assert {h.passage.id for h in hits} <= candidates  # the Mona Lisa (id 0) is not among the 4 candidates
    assert [h.rank for h in hits] == [1, 2, 3]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # with every passage as a candidate, the best-overlapping one comes first
    (hits,) = RerankedRetriever(first, _WordOverlap(), candidates=8).search(["the mona lisa painting by leonardo"], k=1)  # type: ignore[arg-type]
    assert hits[0].passage.title == "Mona Lisa"
    with pytest.raises(ConfigError):
        RerankedRetriever(first, _WordOverlap(), candidates=0)  # type: ignore[arg-type]


def test_reranker_examples_split_positives_and_negatives(toy_passages):
    passages = [*toy_passages, _passage(8, "Leonardo da Vinci", "An Italian polymath of the Renaissance.")]
    bm25 = BM25Retriever(passages)
    qa = [
        QAExample("who painted the mona lisa portrait", ["Leonardo da Vinci"]),
        QAExample("what is the tallest mountain", ["no such answer anywhere"]),
    ]
    examples, stats = reranker_examples(qa, bm25, candidates=9, show_progress=False)
    assert (stats.n_questions, stats.n_kept, stats.n_no_positive) == (2, 1, 1)
    (ex,) = examples
    assert [p.title for p in ex.positive_ctxs] == ["Mona Lisa"]
    # the passage whose title alone names the answer is neither a positive nor a negative (a likely false negative)
    assert "Leonardo da Vinci" not in {p.title for p in ex.hard_negative_ctxs}
    assert len(ex.hard_negative_ctxs) == 7


def test_group_is_deterministic_and_fills_from_the_pool(toy_passages):
    ex = QAExample("q", ["a"], positive_ctxs=toy_passages[:2], hard_negative_ctxs=toy_passages[2:4])
    g = group(ex, epoch=1, step_seed=5, size=5, pool=toy_passages[4:])
    assert g == group(ex, epoch=1, step_seed=5, size=5, pool=toy_passages[4:])
    assert g[0] == toy_passages[1]  # epoch 1: the second positive
    assert set(p.id for p in g[1:3]) == {"2", "3"} and all(p in toy_passages[4:] for p in g[3:])


def _toy_qa() -> list[QAExample]:
    """Eight questions whose answers all lie in two passages (Mona Lisa, Eiffel Tower): a tiny random model can learn
    to put those first, so the loss must fall."""
    questions = [
        "who painted it",
        "which artist",
        "the painter",
        "by whom",
        "what year",
        "when completed",
        "which date",
        "the year",
    ]
    return [QAExample(q, ["Leonardo da Vinci"] if i < 4 else ["1889"]) for i, q in enumerate(questions)]


def _config(tmp_path, tiny_model_dir, toy_corpus, **kw) -> RerankerTrainConfig:
    settings = dict(
        out=str(tmp_path / "run"),
        corpus=str(toy_corpus),
        retriever_model=str(tiny_model_dir),
        model=str(tiny_model_dir),
        first_stage="bm25",
        candidates=8,
        group_size=4,
        batch_size=2,
        epochs=2,
        lr=5e-4,
        max_length=64,
        dev_fraction=0.25,
        show_progress=False,
    )
    return RerankerTrainConfig(**{**settings, **kw})


def test_training_lowers_the_loss_and_writes_its_folders(tmp_path, tiny_model_dir, toy_corpus):
    cfg = _config(tmp_path, tiny_model_dir, toy_corpus, epochs=10, lr=3e-3, warmup_ratio=0.0)
    result = train_reranker(cfg, _toy_qa())
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert result.steps == len(losses) == 10 * 3  # 6 training questions, 2 per step
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    out = tmp_path / "run"
    for name in (
        "best/model.safetensors",
        "last/model/model.safetensors",
        "last/trainer_state.json",
        "loss.png",
        "data/dev.json",
    ):
        assert (out / name).is_file(), name
    assert result.first_stage_dev is not None and result.best_dev is not None
    evals = [r for r in result.history if "dev_top5" in r]
    assert evals and all(r["dev_top1"] <= r["dev_mrr"] and r["dev_top1"] <= r["dev_top5"] for r in evals)
    CrossEncoderReranker.from_pretrained(out / "best")  # loads as a reranker


def test_resume_continues_exactly(tmp_path, tiny_model_dir, toy_corpus):
    straight = train_reranker(_config(tmp_path / "a", tiny_model_dir, toy_corpus), _toy_qa())
    cancel_after_two = _CancelAfter(2)
    half = train_reranker(
        _config(tmp_path / "b", tiny_model_dir, toy_corpus), _toy_qa(), callback=cancel_after_two, cancel=cancel_after_two.event
    )
    assert half.cancelled and half.steps == 2
    resumed = train_reranker(_config(tmp_path / "b", tiny_model_dir, toy_corpus, resume=True))
    assert resumed.steps == straight.steps
    a = CrossEncoderReranker.from_pretrained(tmp_path / "a" / "run" / "last" / "model").model.state_dict()
    b = CrossEncoderReranker.from_pretrained(tmp_path / "b" / "run" / "last" / "model").model.state_dict()
    for name, tensor in a.items():
        torch.testing.assert_close(b[name], tensor, msg=name)
    assert [r["loss"] for r in resumed.history if "loss" in r] == [r["loss"] for r in straight.history if "loss" in r]


class _CancelAfter:
    def __init__(self, steps: int):
        import threading

        self.event, self.steps = threading.Event(), steps

    def __call__(self, record: dict) -> None:
        if record.get("step", 0) >= self.steps and "loss" in record:
            self.event.set()


def test_resume_without_its_dev_data_is_refused(tmp_path, tiny_model_dir, toy_corpus):
    cancel = _CancelAfter(1)
    train_reranker(_config(tmp_path, tiny_model_dir, toy_corpus), _toy_qa(), callback=cancel, cancel=cancel.event)
    (tmp_path / "run" / "data" / "dev.json").unlink()
    with pytest.raises(ConfigError, match="dev.json"):
        train_reranker(_config(tmp_path, tiny_model_dir, toy_corpus, resume=True))


def test_lora_reranker_saves_a_small_adapter_that_loads(tmp_path, tiny_model_dir, toy_corpus):
    cfg = _config(tmp_path, tiny_model_dir, toy_corpus, lora_rank=4, epochs=1, lr=1e-3)
    train_reranker(cfg, _toy_qa())
    best = tmp_path / "run" / "best"
    assert (best / "adapter_config.json").is_file() and (best / "adapter_model.safetensors").is_file()
    loaded = CrossEncoderReranker.from_pretrained(best, max_length=64)
    assert np.isfinite(loaded.score("who painted the mona lisa", [Passage("0", "Mona Lisa", "A painting.")])).all()


def test_config_rejects_bad_settings(tmp_path):
    for bad in (dict(candidates=1), dict(group_size=1), dict(lr=0.0), dict(first_stage="sparse"), dict(batch_size=0)):
        with pytest.raises(ConfigError):
            RerankerTrainConfig(out=str(tmp_path), **bad)  # type: ignore[arg-type]


# ---- the "+rerank" retrievers in the searcher, the search CLI and eval ----------------------------------------
@pytest.fixture
def saved_reranker(tiny_model_dir, tmp_path):
    torch.manual_seed(1)
    folder = tmp_path / "reranker"
    CrossEncoderReranker.from_pretrained(tiny_model_dir, max_length=64).save_pretrained(folder)
    return folder


def test_searcher_reranks_each_first_stage_with_its_cross_encoder(toy_corpus, tiny_model_dir, saved_reranker):
    from dpr_rag.retrieval.searcher import Searcher

    searcher = Searcher.open(
        toy_corpus, model=str(tiny_model_dir), show_progress=False, reranker=str(saved_reranker), rerank_candidates=6
    )
    question = "who painted the mona lisa"
    from dpr_rag.retrieval.encoder import cpu_has_fast_bf16

    expected = CrossEncoderReranker.from_pretrained(saved_reranker, bf16=cpu_has_fast_bf16())  # as the searcher loads it
    for name in ("bm25", "dense", "hybrid"):
        retriever = searcher.retriever(f"{name}+rerank")
        assert isinstance(retriever, RerankedRetriever) and retriever.name == f"{name}+rerank"
        (hits,) = retriever.search([question], 3)
        candidates = searcher.retriever(name).search([question], 6)[0]
        scores = expected.score(question, [h.passage for h in candidates])
        best = [candidates[i].passage.id for i in np.argsort(-scores, kind="stable")[:3]]
        assert [h.passage.id for h in hits] == best


def test_a_reranked_retriever_without_a_reranker_is_a_clear_error(toy_corpus, tiny_model_dir):
    from dpr_rag.retrieval.searcher import Searcher, check_retriever_names

    assert check_retriever_names("dense+rerank,bm25") == ["dense+rerank", "bm25"]
    with pytest.raises(ConfigError, match="unknown retriever"):
        check_retriever_names("dense+rank")
    with pytest.raises(ConfigError, match="--rerank"):
        Searcher.open(toy_corpus, model=str(tiny_model_dir), show_progress=False).retriever("dense+rerank")


def test_search_cli_reranks_and_reports_both_stages(toy_corpus, tiny_model_dir, saved_reranker, capsys):
    from dpr_rag import search as search_cli

    argv = ["mona lisa painter", "--corpus", str(toy_corpus), "--model", str(tiny_model_dir), "--retriever", "dense"]
    assert search_cli.main([*argv, "--k", "2", "--rerank", str(saved_reranker), "--rerank-candidates", "5", "--json"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    row = json.loads(line)
    assert row["retriever"] == "dense+rerank" and len(row["hits"]) == 2 and row["rerank_ms"] > 0
    assert search_cli.main([*argv, "--rerank", str(saved_reranker)]) == 0
    assert "first stage" in capsys.readouterr().out


def test_eval_adds_a_reranked_row_per_retriever(toy_corpus, tiny_model_dir, saved_reranker, tmp_path):
    from eval.config import EvalConfig
    from eval.harness import run_evaluation

    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": e.question, "answer": e.answers}) + "\n" for e in _toy_qa()))
    config = EvalConfig(
        qa=str(qa),
        corpus=str(toy_corpus),
        model=str(tiny_model_dir),
        baseline=False,
        retrievers=["bm25", "dense"],
        k=[1, 3],
        rerank=str(saved_reranker),
        rerank_candidates=4,
        out=str(tmp_path / "report"),
        show_progress=False,
    )
    assert config.retrievers == ["bm25", "bm25+rerank", "dense", "dense+rerank"]
    report, _ = run_evaluation(config)
    assert set(report["retrieval"]) == {"bm25", "bm25+rerank", "dense", "dense+rerank"}
    assert report["settings"]["rerank"] == str(saved_reranker) and "--rerank" in report["settings"]["command"]
    with pytest.raises(ConfigError, match="--rerank"):
        EvalConfig(retrievers=["dense+rerank"])


def test_upr_scores_the_mean_question_log_likelihood_after_each_passage(gpt2_dir, toy_passages):
    from dpr_rag.rag.upr import UPR_PROMPT, UPRReranker
    from dpr_rag.retrieval.rerank import load_reranker

    upr = load_reranker(f"upr:{gpt2_dir}")
    assert isinstance(upr, UPRReranker)
    question = "who painted the mona lisa"
    scores = upr.score(question, toy_passages[:5])
    for p, s in zip(toy_passages[:5], scores, strict=True):
        logp, mask = upr.generator.target_logprobs([UPR_PROMPT.format(passage=passage_text(p))], [question])
        assert s == pytest.approx(float(logp.sum() / mask.sum()), abs=1e-4)
    upr.batch_size = 2  # batching (and its padding) changes no score
    np.testing.assert_allclose(upr.score(question, toy_passages[:5]), scores, atol=1e-4)


def test_compact_save_keeps_the_scores_without_the_frozen_embeddings(tmp_path, tiny_model_dir, toy_corpus, toy_passages):
    train_reranker(_config(tmp_path, tiny_model_dir, toy_corpus, epochs=1), _toy_qa())  # freeze_embeddings: the default
    trained = CrossEncoderReranker.from_pretrained(tmp_path / "run" / "best")
    trained.save_compact(tmp_path / "compact", base=str(tiny_model_dir))
    loaded = CrossEncoderReranker.from_pretrained(tmp_path / "compact")
    question = "who painted the mona lisa"
    np.testing.assert_allclose(loaded.score(question, toy_passages), trained.score(question, toy_passages), atol=2e-2)
    full = (tmp_path / "run" / "best" / "model.safetensors").stat().st_size
    assert (tmp_path / "compact" / "reranker.safetensors").stat().st_size < full / 2  # no embeddings, fp16
    unfrozen = tmp_path / "unfrozen"
    train_reranker(_config(unfrozen, tiny_model_dir, toy_corpus, epochs=1, freeze_embeddings=False), _toy_qa())
    with pytest.raises(DprRagError, match="word embeddings were trained"):
        CrossEncoderReranker.from_pretrained(unfrozen / "run" / "last" / "model").save_compact(
            tmp_path / "c2", base=str(tiny_model_dir)
        )


def test_sum_fusion_adds_the_first_stage_score_over_its_temperature(toy_passages):
    from dpr_rag.retrieval.score_scale import score_temperature

    first = _Reversed(toy_passages)
    question = "the mona lisa painting by leonardo"
    (fused,) = RerankedRetriever(first, _WordOverlap(), candidates=8, fusion="sum").search([question], k=8)  # type: ignore[arg-type]
    first_scores = {h.passage.id: h.score for h in first.search([question], 8)[0]}
    overlap = dict(zip((p.id for p in toy_passages), _WordOverlap().score(question, toy_passages), strict=True))
    tau = score_temperature(first)
    for h in fused:
        assert h.score == pytest.approx(first_scores[h.passage.id] / tau + overlap[h.passage.id])
    assert [h.score for h in fused] == sorted((h.score for h in fused), reverse=True)
    with pytest.raises(ConfigError):
        RerankedRetriever(first, _WordOverlap(), fusion="product")  # type: ignore[arg-type]


def test_the_cli_trains_a_reranker_with_frozen_embeddings_unless_asked(tmp_path, tiny_model_dir, toy_corpus, capsys):
    from dpr_rag.train_reranker import main as train_reranker_main

    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": e.question, "answer": e.answers}) + "\n" for e in _toy_qa()))
    common = [
        "--qa",
        str(qa),
        "--corpus",
        str(toy_corpus),
        "--retriever-model",
        str(tiny_model_dir),
        "--model",
        str(tiny_model_dir),
    ]
    common += ["--first-stage", "bm25", "--candidates", "8", "--group-size", "4", "--batch-size", "2", "--epochs", "1"]
    common += ["--max-length", "64", "--dev-fraction", "0.25"]
    for name, extra in (("frozen", []), ("trained", ["--train-embeddings"])):
        assert train_reranker_main(["--out", str(tmp_path / name), *common, *extra]) == 0
        assert "use it with --rerank" in capsys.readouterr().out
    base = CrossEncoderReranker.from_pretrained(tiny_model_dir).model.state_dict()
    key = next(k for k in base if k.endswith("word_embeddings.weight"))
    frozen = CrossEncoderReranker.from_pretrained(tmp_path / "frozen" / "best").model.state_dict()
    trained = CrossEncoderReranker.from_pretrained(tmp_path / "trained" / "last" / "model").model.state_dict()
    torch.testing.assert_close(frozen[key], base[key])
    assert not torch.equal(trained[key], base[key])
