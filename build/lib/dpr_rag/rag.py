"""Retrieval-augmented generation (Lewis et al., NeurIPS 2020): answer from the top-k retrieved passages z,
treated as a latent variable with prior p(z | x) = softmax(sim(x, z) / τ) over the retrieved passages.

Decoding, as in the paper:
- RAG-Token: at each step the next-token distribution is the mixture Σ_z p(z|x) p(y_t | x, z, y_<t); greedy or
  beam search over that mixture. Implemented as a logits processor inside `model.generate`: the K rows of a
  question (one per passage) all receive the mixture, so they choose the same tokens in lockstep and the
  key/value cache still works.
- RAG-Sequence ("thorough decoding"): beam search under each passage separately gives candidate answers;
  every candidate is then rescored by its marginal Σ_z p(z|x) p(y | x, z) over all passages.
- Closed-book: the generator alone, no passages (the baseline).

Every answer carries its passages with p(z|x) and the posterior p(z|x,y) (the passage it leaned on).
The index can be hot-swapped (`swap_corpus`): the query encoder and generator are kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from .dense import DenseRetriever
from .errors import ConfigError
from .generator import Generator, prompt
from .losses import passage_posterior, rag_sequence_logprob, rag_token_logprob
from .passages import Passage
from .retriever import SearchHit

MODES = ("sequence", "token", "closed-book")


@dataclass
class Provenance:
    passage: Passage
    retrieval_score: float
    prior: float  # p(z | x)
    posterior: float  # p(z | x, y)


@dataclass
class RagAnswer:
    question: str
    answer: str
    mode: str
    logprob: float  # log p(answer | question) under the mode's marginal
    passages: list[Provenance] = field(default_factory=list)


class _MixturePerQuestion(LogitsProcessor):
    """Replace each passage row's next-token scores by the question's mixture over its K passages."""

    def __init__(self, doc_logp: torch.Tensor, num_beams: int):
        self.doc_logp, self.num_beams = doc_logp, num_beams  # (B, K)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        B, K = self.doc_logp.shape
        logp = torch.log_softmax(scores.float(), dim=-1).view(B, K, self.num_beams, -1)
        mixed = torch.logsumexp(logp + self.doc_logp.to(logp.device)[:, :, None, None], dim=1, keepdim=True)
        return mixed.expand(-1, K, -1, -1).reshape(scores.shape)


class RagPipeline:
    def __init__(self, retriever: DenseRetriever, generator: Generator, k: int = 5, temperature: float | None = None,
                 max_new_tokens: int = 16):
        self.retriever, self.generator, self.k, self.max_new_tokens = retriever, generator, k, max_new_tokens
        # Cosines of L2-normalised encoders lie in [-1, 1]: without a temperature p(z|x) would be almost uniform.
        self.temperature = temperature or (0.05 if retriever.encoder.settings.normalize else 1.0)

    # ---- retrieval ------------------------------------------------------------------------------------
    def swap_corpus(self, retriever: DenseRetriever) -> None:
        """Hot-swap the corpus and its index; the query encoder and generator stay as they are."""
        self.retriever = retriever

    def retrieve(self, questions: list[str], with_grad: bool = False) -> tuple[list[list[SearchHit]], torch.Tensor]:
        """Top-k passages per question and log p(z|x) (B, K). With `with_grad`, the scores are recomputed from
        the query encoder with gradients (the passage vectors come from the frozen index)."""
        hits = self.retriever.search(questions, self.k)
        if any(len(h) < self.k for h in hits):
            raise ConfigError(f"the corpus has fewer than k={self.k} passages; lower k")
        if with_grad:
            enc = self.retriever.encoder
            batch = {k: v.to(next(enc.parameters()).device) for k, v in enc.tokenize_queries(questions).items()}
            q = enc.query_encoder(**batch)
            position = {p.id: i for i, p in enumerate(self.retriever.passages)}
            ids = torch.tensor([[position[h.passage.id] for h in row] for row in hits])
            p = torch.from_numpy(self.retriever.index.reconstruct(ids.flatten().numpy())).view(*ids.shape, -1).to(q.device)
            scores = torch.einsum("bd,bkd->bk", q, p)
        else:
            scores = torch.tensor([[h.score for h in row] for row in hits])
        return hits, torch.log_softmax(scores / self.temperature, dim=1)

    # ---- scoring ----------------------------------------------------------------------------------------
    def _token_logp(self, questions: list[str], hits: list[list[SearchHit]], answers: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced log p(y_t | x, z, y_<t), shape (B, K, T), and the target mask (B, T)."""
        inputs = [prompt(q, h.passage) for q, row in zip(questions, hits) for h in row]
        targets = [a for a, row in zip(answers, hits) for _ in row]
        logp, mask = self.generator.target_logprobs(inputs, targets)
        B, K = len(questions), len(hits[0])
        return logp.view(B, K, -1), mask.view(B, K, -1)[:, 0]

    def marginal_logprob(self, questions: list[str], answers: list[str], mode: str, with_grad: bool = False) -> torch.Tensor:
        """log p(answer | question) under RAG-Sequence or RAG-Token (the training objective's negative)."""
        check_mode(mode)
        hits, doc_logp = self.retrieve(questions, with_grad=with_grad)
        tok_logp, mask = self._token_logp(questions, hits, answers)
        doc_logp = doc_logp.to(tok_logp.device)
        return (rag_sequence_logprob if mode == "sequence" else rag_token_logprob)(doc_logp, tok_logp, mask)

    # ---- answering ---------------------------------------------------------------------------------------
    def answer(self, question: str, mode: str = "token", num_beams: int = 1) -> RagAnswer:
        return self.answer_batch([question], mode, num_beams)[0]

    def answer_batch(self, questions: list[str], mode: str = "token", num_beams: int = 1) -> list[RagAnswer]:
        check_mode(mode)
        if any(not q.strip() for q in questions):
            raise ConfigError("empty question")
        if mode == "closed-book":
            texts = [c[0] if c else "" for c in self.generator.generate([prompt(q, None) for q in questions], self.max_new_tokens,
                                                                         num_beams=max(num_beams, 1), num_return_sequences=1)]
            logp, mask = self.generator.target_logprobs([prompt(q, None) for q in questions], texts)
            with torch.no_grad():
                return [RagAnswer(q, t, mode, float((lp * m).sum())) for q, t, lp, m in zip(questions, texts, logp, mask)]
        with torch.no_grad():
            hits, doc_logp = self.retrieve(questions)
            if mode == "token":
                texts = self._decode_token(questions, hits, doc_logp, num_beams)
            else:
                texts = self._decode_sequence(questions, hits, doc_logp, max(num_beams, 4))
            tok_logp, mask = self._token_logp(questions, hits, texts)
            doc_logp = doc_logp.to(tok_logp.device)
            marginal = (rag_token_logprob if mode == "token" else rag_sequence_logprob)(doc_logp, tok_logp, mask)
            posterior = passage_posterior(doc_logp, tok_logp, mask)
        prior = doc_logp.exp()
        return [RagAnswer(q, t, mode, float(marginal[b]),
                          [Provenance(h.passage, h.score, float(prior[b, k]), float(posterior[b, k])) for k, h in enumerate(row)])
                for b, (q, t, row) in enumerate(zip(questions, texts, hits))]

    def _decode_token(self, questions, hits, doc_logp, num_beams: int) -> list[str]:
        inputs = [prompt(q, h.passage) for q, row in zip(questions, hits) for h in row]
        processor = LogitsProcessorList([_MixturePerQuestion(doc_logp, max(num_beams, 1))])
        outputs = self.generator.generate(inputs, self.max_new_tokens, num_beams=max(num_beams, 1), num_return_sequences=1,
                                          logits_processor=processor)
        K = len(hits[0])
        return [(outputs[b * K] or [""])[0] for b in range(len(questions))]  # the K rows agree; take the first

    def _decode_sequence(self, questions, hits, doc_logp, num_beams: int) -> list[str]:
        inputs = [prompt(q, h.passage) for q, row in zip(questions, hits) for h in row]
        candidates = self.generator.generate(inputs, self.max_new_tokens, num_beams=num_beams, num_return_sequences=num_beams)
        K, best = len(hits[0]), []
        for b, q in enumerate(questions):
            pool = list(dict.fromkeys(c for k in range(K) for c in candidates[b * K + k] if c))
            if not pool:
                best.append("")
                continue
            # Rescore every candidate under every passage: p(y|x) = Σ_z p(z|x) p(y|x,z).
            tok_logp, mask = self._token_logp([q] * len(pool), [hits[b]] * len(pool), pool)
            scores = rag_sequence_logprob(doc_logp[b : b + 1].expand(len(pool), -1).to(tok_logp.device), tok_logp, mask)
            best.append(pool[int(scores.argmax())])
        return best


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
