"""dpr-rag's Gradio app: Search, QA, Train, Evaluate and Corpus tabs over the library (`python app.py`).

| module | what |
|---|---|
| `config.py` | settings from the environment (corpus, models, data folder, upload limit, host and port) |
| `state.py` | the live corpus and its indexes, the models, the generator, the job slots |
| `jobs.py` | background jobs, one of each kind (training, index build) at a time |
| `uploads.py` | upload checks and storage inside the data folder |
| `render.py` | HTML: highlighted passages, progress bars, the status banner |
| `search_tab.py`, `qa_tab.py`, `train_tab.py`, `eval_tab.py`, `corpus_tab.py` | one tab each |
| `ui.py` | the page, the status timer, launching |
"""

from .config import AppConfig
from .state import AppState
from .ui import build_app, create_app, launch, main

__all__ = ["AppConfig", "AppState", "build_app", "create_app", "launch", "main"]
