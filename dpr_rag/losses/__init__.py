"""Training objectives, one per file: DPR's NLL over in-batch and hard negatives (RAG's marginals come later)."""
from .dpr_nll import DprNllOutput, dpr_nll_loss, duplicate_positive_mask

__all__ = ["DprNllOutput", "dpr_nll_loss", "duplicate_positive_mask"]
