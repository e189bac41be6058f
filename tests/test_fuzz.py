"""Property tests (hypothesis): every input parser, fed random bytes, wrong encodings, huge lines and records with
missing or mistyped fields, either returns records or raises the project's own DataFormatError naming the file.
And the answer-matching rules hold their algebraic properties on arbitrary text."""

import json
import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dpr_rag.data.passages import Passage, load_corpus, load_jsonl, load_tsv
from dpr_rag.data.qa import QAExample, load_dpr_csv, load_dpr_json, load_nq_open, load_qa
from dpr_rag.errors import DataFormatError
from dpr_rag.matching import CorpusAnswerIndex, exact_match, has_answer, normalize_answer, token_f1

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

PARSERS = {  # file suffix -> parser; load_corpus / load_qa dispatch to the same by suffix
    "passages.tsv": load_tsv,
    "passages.jsonl": load_jsonl,
    "qa.jsonl": load_nq_open,
    "qa.json": load_dpr_json,
    "qa.csv": load_dpr_csv,
    "corpus.tsv": load_corpus,
    "corpus.jsonl": load_corpus,
    "any.json": load_qa,
    "any.csv": load_qa,
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["id", "title", "text", "question", "answer", "answers", "positive_ctxs", "hard_negative_ctxs", "x"]
)
records = st.dictionaries(field_names, json_values, max_size=6)
tsv_cells = st.lists(st.sampled_from(list("ab \t\"'[],\\\n\ré\x00") + ["id", "text", "title"]), max_size=12).map("".join)


def parse(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    try:
        out = PARSERS[name](path)
    except DataFormatError as e:
        assert str(path) in str(e)  # the message names the file (and the line where there is one)
        return None
    assert out and all(isinstance(x, (Passage, QAExample)) for x in out)
    return out


@pytest.mark.parametrize("name", sorted(PARSERS))
@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes(tmp_path, name, data):
    parse(tmp_path, name, data)


@pytest.mark.parametrize("name", ["passages.jsonl", "qa.jsonl", "qa.json"])
@FUZZ
@given(rows=st.lists(records, min_size=1, max_size=5), encoding=st.sampled_from(["utf-8", "utf-16", "latin-1", "utf-8-sig"]))
def test_json_records_with_missing_and_mistyped_fields(tmp_path, name, rows, encoding):
    text = json.dumps(rows) if name.endswith(".json") else "\n".join(json.dumps(r) for r in rows)
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    parse(tmp_path, name, data)


@pytest.mark.parametrize("name", ["passages.tsv", "qa.csv"])
@FUZZ
@given(rows=st.lists(st.lists(tsv_cells, min_size=1, max_size=4), min_size=1, max_size=5), header=st.booleans())
def test_tsv_rows_with_quotes_tabs_and_nul_bytes(tmp_path, name, rows, header):
    lines = (["id\ttext\ttitle"] if header else []) + ["\t".join(r) for r in rows]
    parse(tmp_path, name, "\n".join(lines).encode("utf-8"))


@FUZZ
@given(literal=st.text(alphabet="[]{}()':,\"1a .\\-", max_size=40))
def test_dpr_csv_answer_column_is_parsed_as_data_whatever_it_holds(tmp_path, literal):
    # DPR's answers column is a Python list literal: anything else (sets of lists, calls, dicts) is a clear error.
    parse(tmp_path, "qa.csv", f"a question\t{literal}\n".encode())
    parse(tmp_path, "qa.csv", b"a question\t{[1]: 2}\n")


@pytest.mark.parametrize("name", ["passages.tsv", "passages.jsonl", "qa.jsonl", "qa.csv"])
def test_a_huge_line_is_read_or_refused_cleanly(tmp_path, name):
    big = "word " * 400_000  # a 2 MB line
    content = {
        "passages.tsv": f"id\ttext\ttitle\n1\t{big}\tBig\n",
        "passages.jsonl": json.dumps({"id": 1, "title": "Big", "text": big}) + "\n",
        "qa.jsonl": json.dumps({"question": big, "answer": ["x"]}) + "\n",
        "qa.csv": f'{big}\t["x"]\n',
    }[name]
    out = parse(tmp_path, name, content.encode())
    if name.startswith("passages"):
        assert out[0].text == big.strip()
    else:
        assert out is None  # a question over MAX_QUERY_CHARS is refused with a message


def test_valid_files_survive_the_round_trip(tmp_path):
    # The positive case the random inputs rarely hit: a well-formed file of each kind parses to the records written.
    (tmp_path / "qa.csv").write_text('who wrote hamlet?\t["William Shakespeare", "Shakespeare"]\n')
    assert load_dpr_csv(tmp_path / "qa.csv")[0].answers == ["William Shakespeare", "Shakespeare"]
    (tmp_path / "p.tsv").write_text('id\ttext\ttitle\n1\t"quoted\ttab" text\tT\n')
    assert load_tsv(tmp_path / "p.tsv")[0].text == "quoted\ttab text"


# ---- answer matching ------------------------------------------------------------------------------------------
words = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=8)
phrases = st.lists(words, min_size=1, max_size=4).map(" ".join)
any_text = st.text(max_size=200)


@settings(max_examples=300, deadline=None)
@given(answer=phrases, before=any_text, after=any_text)
def test_an_answer_is_found_inside_any_text_between_word_boundaries(answer, before, after):
    text = f"{before} {answer.upper()} {after}"
    assert has_answer([answer], text)
    assert CorpusAnswerIndex(["unrelated passage", text]).contains([answer])


@settings(max_examples=300, deadline=None)
@given(answers=st.lists(any_text, max_size=3), text=any_text, match=st.sampled_from(["string", "regex"]))
def test_has_answer_never_crashes_and_agrees_with_the_corpus_index(answers, text, match):
    result = has_answer(answers, text, match=match)
    assert isinstance(result, bool)
    assert CorpusAnswerIndex([text]).contains(answers, match=match) == result


@settings(max_examples=300, deadline=None)
@given(word=words, text=any_text)
def test_a_word_never_matches_inside_a_longer_word(word, text):
    assume(word.lower() not in text.lower())
    assert not has_answer([word], f"x{word}x {text}")


@settings(max_examples=500, deadline=None)
@given(s=any_text, answers=st.lists(any_text, min_size=1, max_size=3))
def test_em_and_f1_normalisation_properties(s, answers):
    n = normalize_answer(s)
    assert normalize_answer(n) == n  # idempotent
    assert n == n.strip() and "  " not in n and n == n.lower()
    assert exact_match(s, [s]) == 1.0 and token_f1(s, [s]) == 1.0
    assert exact_match(s.upper() + " .", [s]) == exact_match(s.upper(), [s])  # punctuation and spacing do not count
    em, f1 = exact_match(s, answers), token_f1(s, answers)
    assert em in (0.0, 1.0) and 0.0 <= f1 <= 1.0 and (em == 0.0 or f1 == 1.0)
