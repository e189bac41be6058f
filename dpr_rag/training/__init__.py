"""Training a retriever.

- `query_side.py` — the default recipe: a LoRA adapter on the question tower, trained against the frozen index of the
  corpus; `multi_positive_loss.py` — its full-corpus, multi-positive NLL;
- `distant_supervision.py` — training examples from question-answer pairs (BM25 positives and hard negatives),
  the leak-free train/dev split, DPR JSON output;
- `dpr_loss.py` — DPR's NLL over in-batch and hard negatives;
- `gradcache.py` — gradient caching (big batches in little memory); `distributed.py` — DDP helpers;
- `trainer.py` — the training loop and exact resume; `checkpoints.py` — writing and reading OUT/last;
  `dev_eval.py` — dev accuracy for model selection.
"""
