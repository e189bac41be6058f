"""Training objectives, one per file: DPR's NLL over in-batch and hard negatives and RAG's two marginalisations."""
from .dpr_nll import DprNllOutput, dpr_nll_loss, duplicate_positive_mask
from .rag import passage_posterior, rag_sequence_logprob, rag_sequence_loss, rag_token_logprob, rag_token_loss

__all__ = ["DprNllOutput", "dpr_nll_loss", "duplicate_positive_mask", "passage_posterior", "rag_sequence_logprob",
           "rag_sequence_loss", "rag_token_logprob", "rag_token_loss"]
