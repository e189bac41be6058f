import json

import pytest

from dpr_rag.data.defaults import default_corpus
from dpr_rag.data.passages import Passage, corpus_fingerprint, load_corpus, load_jsonl, load_tsv, save_jsonl, split_document
from dpr_rag.errors import DataFormatError


def write(path, text, mode="w"):
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_tsv_reads_dpr_column_order(tmp_path):
    f = write(tmp_path / "c.tsv", 'id\ttext\ttitle\n1\tAaron is a prophet.\tAaron\n2\t"Quoted, with\ttab"\tB\n')
    assert load_tsv(f) == [Passage("1", "Aaron", "Aaron is a prophet."), Passage("2", "B", "Quoted, with\ttab")]


def test_jsonl_reads_and_defaults_title(tmp_path):
    f = write(tmp_path / "c.jsonl", '{"id": 7, "text": "x y"}\n\n{"id": "b", "title": "T", "text": "z"}\n')
    assert load_jsonl(f) == [Passage("7", "", "x y"), Passage("b", "T", "z")]


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("c.tsv", "id\ttext\ttitle\n1\tok\tT\n2\tonly two\n", "c.tsv:3: expected 3 tab-separated fields"),
        ("c.tsv", "id\ttitle\ttext\n1\tT\tok\n", "c.tsv:1: expected the header"),
        ("c.tsv", "id\ttext\ttitle\n1\t\tT\n", "c.tsv:2: empty text"),
        ("c.jsonl", '{"id": 1, "text": "a"}\n{"id": 2, "text": \n', "c.jsonl:2: invalid JSON"),
        ("c.jsonl", '{"id": 1, "text": "a"}\n{"id": 2}\n', "c.jsonl:2: missing field 'text'"),
        ("c.jsonl", "[1, 2]\n", "c.jsonl:1: expected a JSON object"),
        ("c.jsonl", '{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n', "duplicate passage id '1'"),
        ("c.jsonl", "\n\n", "no passages found"),
        ("c.jsonl", "", "file is empty"),
        ("c.xml", "<x/>", "unknown corpus format"),
    ],
)
def test_bad_corpus_files_name_file_and_line(tmp_path, name, content, message):
    f = write(tmp_path / name, content)
    with pytest.raises(DataFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_corpus(f)


def test_missing_file_and_bad_utf8(tmp_path):
    with pytest.raises(DataFormatError, match="file not found"):
        load_corpus(tmp_path / "nope.jsonl")
    f = write(tmp_path / "c.jsonl", b'{"id": 1, "text": "a"}\n{"id": 2, "text": "\xff"}\n', "wb")
    with pytest.raises(DataFormatError, match=r"c.jsonl:2: not valid UTF-8"):
        load_jsonl(f)


def test_split_document_about_100_words_keeps_title():
    assert split_document("T", "") == []
    assert split_document("T", " ".join(["w"] * 130)) == [("T", " ".join(["w"] * 130))]
    blocks = split_document("T", " ".join(str(i) for i in range(260)))
    assert [len(text.split()) for _, text in blocks] == [87, 87, 86]
    assert all(title == "T" for title, _ in blocks)
    assert " ".join(text for _, text in blocks).split() == [str(i) for i in range(260)]  # nothing lost or repeated


def test_default_corpus_is_the_wikipedia_summaries():
    corpus = default_corpus()
    assert len({p.title for p in corpus}) == 10033  # every article, each split into >=1 passage
    assert len({p.id for p in corpus}) == len(corpus)
    mona = [p for p in corpus if p.title == "Mona Lisa"]
    assert mona and "Leonardo da Vinci" in mona[0].text
    assert max(len(p.text.split()) for p in corpus) < 200


def test_save_jsonl_roundtrip_and_fingerprint(tmp_path, toy_passages):
    save_jsonl(toy_passages, tmp_path / "c.jsonl")
    assert load_jsonl(tmp_path / "c.jsonl") == toy_passages
    assert corpus_fingerprint(toy_passages) == corpus_fingerprint(list(toy_passages))
    changed = toy_passages[:-1] + [Passage(toy_passages[-1].id, toy_passages[-1].title, "different")]
    assert corpus_fingerprint(changed) != corpus_fingerprint(toy_passages)
    assert [json.loads(line)["id"] for line in (tmp_path / "c.jsonl").read_text().splitlines()] == [p.id for p in toy_passages]
