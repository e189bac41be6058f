"""Query-side fine-tuning: the full-corpus multi-positive loss, the answer lookup it labels with, the trainer (a LoRA
adapter on the question tower of a tiny random encoder, on toy passages), the adapter folder it writes, and the CLI."""

from __future__ import annotations

import json
import shutil
import threading

import pytest
import torch
import torch.nn.functional as F

from dpr_rag.data.passages import load_corpus
from dpr_rag.errors import ConfigError
from dpr_rag.matching import CorpusAnswerIndex, has_answer
from dpr_rag.retrieval.encoder import DualEncoder, default_encoder_path
from dpr_rag.retrieval.query_adapter import QUERY_ADAPTER_CONFIG, is_query_adapter_folder
from dpr_rag.retrieval.searcher import Searcher
from dpr_rag.train import main as train_main
from dpr_rag.training.multi_positive_loss import multi_positive_nll, positive_mask
from dpr_rag.training.query_side import QuerySideConfig, train_query_side

# Two questions per toy passage, each answered by a word of that passage's text.
QUESTIONS = [
    ("who painted the famous portrait", "Leonardo da Vinci"),
    ("which artist made the Mona Lisa", "Leonardo da Vinci"),
    ("when was the lattice tower completed", "1889"),
    ("in which city is the Eiffel Tower", "Paris"),
    ("who created the Python language", "Guido van Rossum"),
    ("when was Python released", "1991"),
    ("in which mountains is Everest", "Himalayas"),
    ("what is the highest mountain above sea level", "Mount Everest"),
    ("which continent does the Amazon flow through", "South America"),
    ("largest river by discharge", "Amazon River"),
    ("fortifications across northern China", "Great Wall"),
    ("what did Marie Curie research", "radioactivity"),
    ("what was Marie Curie besides a chemist", "physicist"),
    ("which planet is the largest in the Solar System", "Jupiter"),
    ("which planet is fifth from the Sun", "Jupiter"),
    ("what kind of painting is the Mona Lisa", "portrait"),
]


@pytest.fixture(scope="module")
def tiny_st_dir(tmp_path_factory, tiny_model_dir):
    """The tiny random BERT as a sentence-transformers folder (mean pooling, normalised, like MiniLM): a random model's
    [CLS] vectors hardly differ between passages, its mean-pooled ones do, so a question tower can learn to tell them
    apart while the passages stay frozen."""
    folder = tmp_path_factory.mktemp("tiny-st")
    shutil.copytree(tiny_model_dir, folder, dirs_exist_ok=True)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return folder


def write_questions(path) -> str:
    path.write_text("".join(json.dumps({"question": q, "answer": [a]}) + "\n" for q, a in QUESTIONS))
    return str(path)


def top1_accuracy(model: str | None, corpus) -> float:
    searcher = Searcher.open(corpus, model=model, show_progress=False)
    hits = searcher.search([q for q, _ in QUESTIONS], k=1)
    return sum(has_answer([a], h[0].passage.text) for (_, a), h in zip(QUESTIONS, hits, strict=True)) / len(QUESTIONS)


def test_one_positive_is_dprs_nll_over_the_corpus_and_several_are_their_marginal():
    torch.manual_seed(0)
    q, corpus = F.normalize(torch.randn(3, 8), dim=-1), F.normalize(torch.randn(20, 8), dim=-1)
    one = multi_positive_nll(q, corpus, positive_mask([[4], [0], [19]], 20), temperature=0.1)
    assert one.item() == pytest.approx(F.cross_entropy(q @ corpus.T / 0.1, torch.tensor([4, 0, 19])).item(), rel=1e-5)
    several = multi_positive_nll(q, corpus, positive_mask([[4, 7], [0], [1, 2, 3]], 20), temperature=0.1)
    p = torch.softmax(q @ corpus.T / 0.1, dim=1)
    expected = -(torch.log(p[0, [4, 7]].sum()) + torch.log(p[1, 0]) + torch.log(p[2, [1, 2, 3]].sum())) / 3
    assert several.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="question 1 of the batch has no positive"):
        positive_mask([[1], []], 20)


def test_passages_with_an_answer_agree_with_has_answer(toy_passages):
    texts = [p.text for p in toy_passages] + ["Leonardo da Vinci's notebooks", "1889 1889", ""]
    index = CorpusAnswerIndex(texts)
    for answers in (["Leonardo da Vinci"], ["1889", "Paris"], ["largest"], ["nowhere"], ["da"], ["LEONARDO DA VINCI"]):
        assert index.passages_with(answers) == [i for i, t in enumerate(texts) if has_answer(answers, t)]
    years = [i for i, t in enumerate(texts) if has_answer([r"\d{4}"], t, "regex")]
    assert index.passages_with([r"\d{4}"], match="regex") == years


def test_training_the_question_tower_learns_the_questions_and_keeps_the_passage_index(tmp_path, tiny_st_dir, toy_corpus):
    qa = write_questions(tmp_path / "qa.jsonl")
    before = top1_accuracy(str(tiny_st_dir), toy_corpus)
    config = QuerySideConfig(
        out=str(tmp_path / "run"),
        qa=qa,
        corpus=str(toy_corpus),
        model=str(tiny_st_dir),
        epochs=30,
        batch_size=8,
        lr=3e-2,
        lora_rank=4,
        positives_top_k=8,  # the whole toy corpus: every question keeps its answer-bearing passage
        dev_fraction=0.0,
        show_progress=False,
    )
    result = train_query_side(config)
    assert result.steps == 60 and not result.cancelled
    best = tmp_path / "run" / "best"
    assert is_query_adapter_folder(best) and (tmp_path / "run" / "loss.png").stat().st_size > 0
    assert json.loads((best / QUERY_ADAPTER_CONFIG).read_text())["base"] == str(tiny_st_dir)
    examples = json.loads((tmp_path / "run" / "data" / "examples.json").read_text())["train"]
    assert len(examples) == len(QUESTIONS) and all(e["positives"] for e in examples)
    after = top1_accuracy(str(tmp_path / "run"), toy_corpus)
    assert after >= before + 0.25 and after >= 0.75, (before, after)
    trained, base = DualEncoder.from_pretrained(tmp_path / "run"), DualEncoder.from_pretrained(tiny_st_dir)
    assert trained.passage_fingerprint() == base.passage_fingerprint()  # the base's index serves it
    assert len(list((tmp_path / "cache" / "dense").iterdir())) == 1  # ... and it did: one index for both
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert sum(losses[-8:]) < sum(losses[:8])


def test_cancel_stops_after_a_step_and_keeps_an_adapter(tmp_path, tiny_model_dir, toy_corpus):
    cancel = threading.Event()
    cancel.set()
    config = QuerySideConfig(
        out=str(tmp_path / "run"),
        qa=write_questions(tmp_path / "qa.jsonl"),
        corpus=str(toy_corpus),
        model=str(tiny_model_dir),
        batch_size=4,
        positives_top_k=8,
        dev_fraction=0.25,
        show_progress=False,
    )
    result = train_query_side(config, cancel=cancel)
    assert result.cancelled and result.steps == 1
    assert is_query_adapter_folder(tmp_path / "run" / "best")
    assert [r["dev_top20"] for r in result.history if "dev_top20" in r] == [100.0, 100.0]  # 8 passages: all in the top 20


def test_the_cli_trains_the_query_side_recipe_by_default_and_refuses_the_other_recipes_options(
    tmp_path, tiny_model_dir, toy_corpus, capsys
):
    qa = write_questions(tmp_path / "qa.jsonl")
    common = ["--qa", qa, "--corpus", str(toy_corpus), "--model", str(tiny_model_dir), "--batch-size", "8", "--dev-fraction", "0"]
    assert train_main(["--out", str(tmp_path / "run"), *common, "--positives-top-k", "8"]) == 0
    assert is_query_adapter_folder(tmp_path / "run" / "best")
    assert "dev top-20 accuracy" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="--hard-negatives, --resume: not an option of --recipe query-side"):
        train_main(["--out", str(tmp_path / "x"), *common, "--resume", "--hard-negatives", "2"])
    with pytest.raises(ConfigError, match="--lora-rank: not an option of --recipe dpr"):
        train_main(["--recipe", "dpr", "--out", str(tmp_path / "y"), *common, "--lora-rank", "4"])
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_the_base_encoders_names_load_the_embedded_copy_without_a_download():
    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        assert DualEncoder.from_pretrained(name).source == default_encoder_path()


def test_a_corpus_passage_file_loads(toy_corpus):  # the toy corpus the trainer reads is a plain JSONL corpus
    assert len(load_corpus(toy_corpus)) == 8


def test_the_shipped_question_adapter_is_the_default_dense_model_over_the_bases_index():
    from dpr_rag.retrieval.query_adapter import SHIPPED_QUERY_ADAPTER

    default, base = DualEncoder.from_pretrained(None), DualEncoder.from_pretrained("all-MiniLM-L6-v2")
    assert default.source == str(SHIPPED_QUERY_ADAPTER) and (SHIPPED_QUERY_ADAPTER / "README.md").is_file()
    assert default.passage_fingerprint() == base.passage_fingerprint()  # the shipped embeddings still apply
    question = ["who painted the mona lisa"]
    q_default, q_base = default.encode_queries(question)[0], base.encode_queries(question)[0]
    assert 0.5 < float(q_default @ q_base) < 0.9999  # trained, but near its base
    hits = Searcher.open(None, show_progress=False).search(question, k=1)[0]  # the default corpus, no encoding
    assert has_answer(["Leonardo da Vinci"], hits[0].passage.text)


def test_gold_title_positives_take_the_named_articles_passage(tmp_path, tiny_model_dir, toy_corpus):
    """A question naming its gold article trains on that article: its answer-bearing passage even when other passages
    hold the answer too, else its first passage; without the flag, distant supervision alone (the answerless one is
    dropped)."""
    rows = [
        {"question": "what did the painter of the Mona Lisa come from", "answer": ["Italian"], "gold_titles": ["Mona Lisa"]},
        {"question": "how tall is the lattice tower", "answer": ["330 metres"], "gold_titles": ["Eiffel Tower"]},
        {"question": "which is the largest", "answer": ["largest"], "gold_titles": ["Jupiter"]},  # also in Amazon River
        {"question": "when was Python released", "answer": ["1991"]},  # no gold article: distant supervision
    ]
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def positives(run: str, **kw) -> dict[str, list[int]]:
        common = dict(qa=str(qa), corpus=str(toy_corpus), model=str(tiny_model_dir), batch_size=2, epochs=1)
        train_query_side(
            QuerySideConfig(out=str(tmp_path / run), positives_top_k=8, dev_fraction=0, show_progress=False, **common, **kw)
        )
        examples = json.loads((tmp_path / run / "data" / "examples.json").read_text())["train"]
        return {e["question"]: e["positives"] for e in examples}

    gold = positives("gold", gold_title_positives=True)
    assert gold == {
        "what did the painter of the Mona Lisa come from": [0],
        "how tall is the lattice tower": [1],  # no passage says 330 metres: the article's first passage
        "which is the largest": [7],  # not the Amazon River's, which holds "largest" too
        "when was Python released": [2],
    }
    plain = positives("plain")
    assert sorted(plain["which is the largest"]) == [4, 7] and "how tall is the lattice tower" not in plain
