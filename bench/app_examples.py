"""Write the app's example questions as an NQ-open question file, for `train_rag --exclude`:

    python bench/app_examples.py --out runs/app_examples.jsonl
    python -m dpr_rag.train_rag ... --fanoutqa --exclude runs/app_examples.jsonl

The six examples are FanOutQA questions; a reader shipped as the default should not have trained on the questions
the app shows a new user, so that their answers say how it reads, not what it memorised.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dpr_rag.app.examples import DEFAULT_EXAMPLES  # noqa: E402
from dpr_rag.storage import atomic_file  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the .jsonl file to write (never over an existing one)")
    out = Path(parser.parse_args().out)
    if out.exists():
        sys.exit(f"error: {out}: exists; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as f:
        f.writelines(json.dumps({"question": q, "answer": a}) + "\n" for q, a in DEFAULT_EXAMPLES)
    print(f"{out}: {len(DEFAULT_EXAMPLES)} questions")


if __name__ == "__main__":
    main()
