"""The DPR paper's extractive reader (Karpukhin et al., 2020, section 6.1): a cross-encoder over each retrieved passage
with a passage-selection score and start/end span scores; the answer is the best span of the selected passage.

- `spans.py`: where an answer occurs in a passage (by `has_answer`'s normalisation) and the best span under the
  start/end scores, with DPR's span-length limit.
- `model.py`: `ExtractiveReader`, the encoder with its two heads; safetensors folders (`save_pretrained`,
  `from_pretrained`), and `read`, which answers questions from their retrieved passages.
- `shipped/` (when one ships: none does yet): the reader a fresh install answers with, with its model card
  (`bench/ship_extractive_reader.py` writes it); otherwise `--reader DIR` names one.
Training lives with the other trainers: `training/reader_loss.py`, `training/reader_trainer.py`.
"""
