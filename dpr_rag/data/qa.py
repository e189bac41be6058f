"""QA examples and their loaders: NQ-open JSONL, DPR's retriever JSON, DPR's CSV/TSV, and the default set.

Every loader returns `QAExample`s. Errors name the file and the line (JSONL, CSV) or entry (JSON).
"""

from __future__ import annotations

import ast
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataFormatError
from ..retrieval.base import MAX_QUERY_CHARS
from .passages import Passage
from .readers import iter_jsonl, iter_tsv, parse_json, read_text


@dataclass
class QAExample:
    question: str
    answers: list[str]
    id: str = ""
    gold_titles: list[str] = field(default_factory=list)
    positive_ctxs: list[Passage] = field(default_factory=list)
    negative_ctxs: list[Passage] = field(default_factory=list)
    hard_negative_ctxs: list[Passage] = field(default_factory=list)


def _check_example(question, answers, where: str) -> tuple[str, list[str]]:
    if not isinstance(question, str) or not question.strip():
        raise DataFormatError(f"{where}: field 'question' must be a non-empty string")
    if len(question) > MAX_QUERY_CHARS:
        raise DataFormatError(f"{where}: question longer than {MAX_QUERY_CHARS} characters")
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise DataFormatError(f"{where}: answers must be a list of strings")
    answers = [a.strip() for a in answers if a.strip()]
    if not answers:
        raise DataFormatError(f"{where}: no non-empty answer")
    return question.strip(), answers


def load_nq_open(path: str | os.PathLike) -> list[QAExample]:
    """NQ-open JSONL: `{"question": "...", "answer": ["...", ...]}` a line; an optional "gold_titles" (a list of
    article titles) is kept, other fields are ignored."""
    path = Path(path)
    examples = []
    for lineno, obj in iter_jsonl(path):
        if "question" not in obj:
            raise DataFormatError(f"{path}:{lineno}: missing field 'question'")
        key = "answer" if "answer" in obj else "answers"
        if key not in obj:
            raise DataFormatError(f"{path}:{lineno}: missing field 'answer'")
        q, answers = _check_example(obj["question"], obj[key], f"{path}:{lineno}")
        titles = obj.get("gold_titles", [])
        if not isinstance(titles, list) or not all(isinstance(t, str) for t in titles):
            raise DataFormatError(f"{path}:{lineno}: field 'gold_titles' must be a list of strings")
        examples.append(QAExample(q, answers, id=str(obj.get("id", lineno)), gold_titles=titles))
    return _nonempty(examples, path)


def _ctxs(raw, where: str) -> list[Passage]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise DataFormatError(f"{where}: expected a list of passages")
    out = []
    for j, c in enumerate(raw):
        if not isinstance(c, dict) or not isinstance(c.get("text"), str):
            raise DataFormatError(f"{where}[{j}]: a passage needs a string field 'text'")
        pid = c.get("passage_id", c.get("psg_id", c.get("id", "")))
        out.append(Passage(str(pid), str(c.get("title") or ""), c["text"]))
    return out


def load_dpr_json(path: str | os.PathLike, allow_empty: bool = False) -> list[QAExample]:
    """DPR's retriever training/dev JSON: a list of
    `{"question", "answers", "positive_ctxs", "negative_ctxs", "hard_negative_ctxs"}` (ctxs optional). An empty list
    is an error unless `allow_empty` (a training run's empty dev set)."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: expected a JSON list of questions")
    examples = []
    for i, obj in enumerate(data):
        where = f"{path}: entry {i + 1}"
        if not isinstance(obj, dict):
            raise DataFormatError(f"{where}: expected an object")
        if "answers" not in obj:
            raise DataFormatError(f"{where}: missing field 'answers'")
        q, answers = _check_example(obj.get("question"), obj["answers"], where)
        examples.append(
            QAExample(
                q,
                answers,
                id=str(obj.get("id", i)),
                positive_ctxs=_ctxs(obj.get("positive_ctxs"), f"{where} positive_ctxs"),
                negative_ctxs=_ctxs(obj.get("negative_ctxs"), f"{where} negative_ctxs"),
                hard_negative_ctxs=_ctxs(obj.get("hard_negative_ctxs"), f"{where} hard_negative_ctxs"),
            )
        )
    return examples if allow_empty and not data else _nonempty(examples, path)


def _parse_answer_list(raw: str, where: str) -> list | str:
    """DPR's CSV answer column is a Python or JSON list literal of strings; parse it as data, never execute it. Anything
    else (null, a dict, a set, a nested list, a number) is an error naming the line, not an answer "None"."""
    try:
        value = parse_json(raw, where)
    except DataFormatError:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as e:  # TypeError: {[1]: 2}
            raise DataFormatError(f"{where}: answers column is not a list literal: {raw[:80]!r}") from e
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise DataFormatError(f"{where}: answers must be a list of strings, got {type(value).__name__}: {raw[:80]!r}")
    try:
        "".join(value).encode("utf-8")
    except UnicodeEncodeError as e:
        raise DataFormatError(f"{where}: an answer holds a lone surrogate ({e.object[e.start : e.end]!a})") from e
    return value


def load_dpr_csv(path: str | os.PathLike) -> list[QAExample]:
    """DPR's QA CSV/TSV (nq-test.csv etc.): `question<TAB>["answer", ...]`, no header."""
    path = Path(path)
    examples = []
    for lineno, row in iter_tsv(path):
        if len(row) != 2:
            raise DataFormatError(f"{path}:{lineno}: expected 2 tab-separated fields (question, answers), got {len(row)}")
        where = f"{path}:{lineno}"
        q, answers = _check_example(row[0], _parse_answer_list(row[1], where), where)
        examples.append(QAExample(q, answers, id=str(lineno)))
    return _nonempty(examples, path)


def _read_json(path: Path):
    text = read_text(path)
    try:
        return json.loads(text) if "\\u" not in text else parse_json(text, str(path))
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from e
    except RecursionError as e:
        raise DataFormatError(f"{path}: JSON nested too deeply") from e
    except ValueError as e:  # an integer of more digits than Python converts
        raise DataFormatError(f"{path}: invalid JSON ({str(e).splitlines()[0][:120]})") from e


def _nonempty(examples: list[QAExample], path: Path) -> list[QAExample]:
    if not examples:
        raise DataFormatError(f"{path}: no questions found")
    return examples


def answer_strings(answer) -> list[str]:
    """Turn a fanoutqa answer into alternative answer strings (any one of them counts, as in DPR).

    - a string: itself;
    - a bool: "yes" / "no";
    - a number: its plain form ("1998", "3.5"; integral floats lose ".0"), plus the comma-grouped form for
      |n| >= 1000 ("12,500") since Wikipedia writes numbers that way;
    - a list: the strings of each element (an element counts as an answer on its own: lenient for
      "list all X" questions, where a passage rarely names every element);
    - a dict (entity -> value): the strings of each value;
    - None / NaN / anything else: no answer.
    Duplicates are dropped, order kept.
    """
    out: list[str] = []
    if isinstance(answer, bool):
        out = ["yes" if answer else "no"]
    elif isinstance(answer, str):
        out = [answer.strip()]
    elif isinstance(answer, (int, float)):
        if isinstance(answer, float) and not math.isfinite(answer):
            return []
        if isinstance(answer, float) and answer.is_integer():
            answer = int(answer)
        out = [str(answer)]
        if abs(answer) >= 1000:
            out.append(f"{answer:,}")
    elif isinstance(answer, list):
        out = [s for a in answer for s in answer_strings(a)]
    elif isinstance(answer, dict):
        out = [s for a in answer.values() for s in answer_strings(a)]
    return list(dict.fromkeys(s for s in out if s))


def _leaves(node: dict):
    subs = node.get("decomposition") or []
    if not subs:
        yield node
    for sub in subs:
        yield from _leaves(sub)


def load_fanoutqa(path: str | os.PathLike | None = None) -> list[QAExample]:
    """The embedded default: the single-hop sub-questions of FanOutQA's dev set.

    Each top-level question decomposes into sub-questions; the leaves (no further decomposition) are
    single-hop questions about one Wikipedia article, kept with their gold article title. Answers are
    converted by `answer_strings`; leaves with no usable answer are skipped. Repeated questions keep
    their first occurrence. `path`: FanOutQA's own dev JSON; None: the same questions as shipped with dpr-rag
    (`data/fanoutqa_single_hop.jsonl`, written by `write_fanoutqa_single_hop` from the `fanoutqa` package's file), so
    a Space without that package has them.
    """
    if path is None:
        return load_nq_open(FANOUTQA_SINGLE_HOP)
    path = Path(path)
    data = _read_json(path)
    examples: list[QAExample] = []
    seen: set[str] = set()
    for top in data:
        for leaf in _leaves(top):
            if leaf is top:
                continue  # a question with no decomposition is not a sub-question
            q = (leaf.get("question") or "").strip()
            answers = answer_strings(leaf.get("answer"))
            if not q or not answers or q.lower() in seen:
                continue
            seen.add(q.lower())
            title = (leaf.get("evidence") or {}).get("title")
            examples.append(QAExample(q, answers, id=str(leaf.get("id", len(examples))), gold_titles=[title] if title else []))
    return examples


FANOUTQA_SINGLE_HOP = Path(__file__).resolve().parent / "fanoutqa_single_hop.jsonl"  # licence: FANOUTQA_LICENSE.md


def write_fanoutqa_single_hop(out: str | os.PathLike = FANOUTQA_SINGLE_HOP) -> int:
    """Write the single-hop sub-questions of the `fanoutqa` package's dev file as JSONL (id, question, answer,
    gold_titles), the file `load_fanoutqa()` reads; returns how many."""
    from ..storage import atomic_file
    from .defaults import default_questions_path  # defaults builds on the data modules

    examples = load_fanoutqa(default_questions_path())
    with atomic_file(out) as f:
        for e in examples:
            row = {"id": e.id, "question": e.question, "answer": e.answers, "gold_titles": e.gold_titles}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(examples)


def load_qa(path: str | os.PathLike | None = None) -> list[QAExample]:
    """Load QA examples by extension: .jsonl (NQ-open), .json (DPR retriever JSON), .csv/.tsv (DPR CSV);
    None gives the embedded default (fanoutqa single-hop sub-questions)."""
    if path is None:
        return load_fanoutqa()
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return load_nq_open(path)
    if suffix == ".json":
        return load_dpr_json(path)
    if suffix in (".csv", ".tsv"):
        return load_dpr_csv(path)
    raise DataFormatError(f"{path}: unknown QA format {suffix!r}; use .jsonl (NQ-open), .json (DPR) or .csv/.tsv (DPR)")
