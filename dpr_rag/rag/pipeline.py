"""Retrieval-augmented generation (Lewis et al., NeurIPS 2020): answer from the top-k retrieved passages z,
treated as a latent variable with prior p(z | x) = softmax(sim(x, z) / τ) over the retrieved passages.

Decoding, as in the paper:
- RAG-Token: at each step the next-token distribution is the mixture Σ_z p(z|x) p(y_t | x, z, y_<t); greedy or
  beam search over that mixture. Implemented as a logits processor inside `model.generate`: the K rows of a
  question (one per passage) all receive the mixture, so they choose the same tokens in lockstep and the
  key/value cache still works.
- RAG-Sequence ("thorough decoding"): beam search under each passage separately gives candidate answers;
  every candidate is then rescored by its marginal Σ_z p(z|x) p(y | x, z) over all passages.
- Standard RAG: the top-k passages concatenated into one prompt, one greedy answer, no marginalisation (the baseline
  most RAG toolkits report); its passages carry p(z|x) only (the posterior shown is the prior).
- Closed-book: the generator alone, no passages (the baseline).
- Extractive: DPR's reader (`dpr_rag.extractive`) picks a passage and a span of it; no generator is needed.
Each (question, passage) prompt runs through the generator once (`Generator.encode_prompts`): decoding, every beam,
and the scoring of the answers all reuse it. Generation stops at eos or at the end of the answer's first line.

Every answer carries its passages with p(z|x) and the posterior p(z|x,y) (the passage it leaned on).
The index can be hot-swapped (`swap_corpus`): the query encoder and generator are kept.
"""

from __future__ import annotations

import copy
import os
from typing import TYPE_CHECKING

import torch
from transformers import LogitsProcessorList

from ..config_checks import check_int
from ..data.passages import Passage, load_corpus
from ..errors import ConfigError
from ..retrieval.base import MAX_K, Retriever, SearchHit
from ..retrieval.dense import DenseRetriever
from ..retrieval.rerank import DEFAULT_CANDIDATES
from ..retrieval.searcher import Searcher, dense_index, reranked
from .answers import MODES, AnswerSpan, Provenance, RagAnswer, check_mode, check_questions  # noqa: F401 (re-exported)
from .default_generator import shipped_reader
from .demonstrations import few_shot_template
from .extractive_mode import extractive_answers, load_extractive_reader
from .fallback import is_grounded, with_fallback
from .generator import Generator
from .marginals import MixturePerQuestion, passage_posterior, rag_sequence_logprob, rag_token_logprob
from .priors import TEMPERATURES, default_temperature  # noqa: F401 (TEMPERATURES: re-exported)
from .prompting import ZERO_SHOT, PromptTemplate
from .rag_folder import RAG_CONFIG, load_rag_config, rag_folder  # noqa: F401 (RAG_CONFIG: re-exported)
from .scored_answers import answer_from_scratch, answer_on_prompt_cache

if TYPE_CHECKING:
    from ..extractive.model import ExtractiveReader

DEFAULT_SEQUENCE_BEAMS = 4
SCORING_SLACK = 8  # context kept free beyond max_new_tokens: a decoded answer re-encoded (+ eos) may take a few more tokens


class RagPipeline:
    def __init__(
        self,
        retriever: Retriever,
        generator: Generator | None,
        k: int = 5,
        temperature: float | None = None,
        max_new_tokens: int = 16,
        template: PromptTemplate = ZERO_SHOT,
    ):
        self.retriever, self.k, self.max_new_tokens = retriever, k, max_new_tokens
        self._generator = generator  # None: opened for extractive answers only
        # The extractive mode's reader: loaded on first use from `extractive_source` (None: the shipped one).
        self.extractive_reader: ExtractiveReader | None = None
        self.extractive_source: str | None = None
        self.template = template  # the prompt: zero-shot, or few-shot demonstrations before each question
        # Cosines of L2-normalised encoders lie in [-1, 1]: without a temperature p(z|x) would be almost uniform.
        self.temperature = temperature or default_temperature(retriever)
        # bfloat16 autocast while answering: ~1.9x faster on CPUs with AVX512-BF16 (bench/bf16_speed.py); answers may differ.
        self.bf16 = False
        # Closed-book fallback (`fallback.py`): a RAG answer found in none of its passages is replaced by the closed-book one.
        self.fallback = False

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            raise ConfigError("this pipeline was opened without a generator (extractive answers only)")
        return self._generator

    @generator.setter
    def generator(self, generator: Generator) -> None:
        self._generator = generator

    @property
    def has_generator(self) -> bool:
        return self._generator is not None

    def with_generator(self, generator: Generator) -> RagPipeline:
        """The same retrieval (retriever, k, temperature, prompt) answered by another generator: to compare readers."""
        other = copy.copy(self)
        other.generator = generator
        return other

    @property
    def dense(self) -> DenseRetriever:
        """The dense retriever (training and hot-swapping need its query encoder)."""
        if not isinstance(self.retriever, DenseRetriever):
            raise ConfigError(
                f"this needs the dense retriever (its query encoder); the pipeline retrieves with {self.retriever.name}"
            )
        return self.retriever

    @classmethod
    def open(
        cls,
        corpus: str | os.PathLike | None = None,
        index: str | os.PathLike | None = None,
        model: str | None = None,
        generator: str | None = None,
        rag: str | os.PathLike | None = None,
        k: int = 5,
        index_kind: str = "flat",
        use_cache: bool = True,
        max_new_tokens: int = 16,
        searcher: Searcher | None = None,
        shots: int = 0,
        base_generator: bool = False,
        retriever: str = "dense",
        fallback: bool | None = None,
        reranker: str | None = None,
        rerank_candidates: int = DEFAULT_CANDIDATES,
        rerank_fusion: str = "replace",
        extractive_reader: str | os.PathLike | None = None,
        load_generator: bool = True,
    ) -> RagPipeline:
        """A RAG pipeline over a corpus (default: the embedded one), or over the dense retriever of a `searcher` that
        is already open (then `corpus`, `index` and `model` are its own). `rag` is a folder written by RAG training:
        its retriever/ and generator/ take the place of `model` and `generator`, with the temperature it was trained
        with. Any corpus works with it: its index is built (or taken from the cache) with the frozen passage tower.
        `shots`: demonstrations put before each question (`demonstrations.py`; 0 = zero-shot).
        With neither `generator` nor `rag`, the shipped reader answers (`default_generator.shipped_reader`: Gemma 3
        270M with trained LoRA adapters); `base_generator=True` gives the bare base model instead. `retriever`: dense,
        bm25 or hybrid gives the passages and p(z|x) (a softmax of its scores at a temperature suited to them); with
        `reranker` (a cross-encoder folder), its top `rerank_candidates` are reranked ("dense+rerank" and so on).
        `fallback`: the closed-book fallback (`fallback.py`); None = as the RAG folder's rag_config.json says (off).
        `extractive_reader`: the folder of the extractive mode's reader (None: the shipped one), loaded on first use;
        `load_generator=False` opens the pipeline for extractive answers alone (no generator is loaded; the reader is).
        A reader that is asked for but missing or broken is an error here, before the index is loaded."""
        check_int("k", k, 1, MAX_K)
        reader_source = None if extractive_reader is None else str(extractive_reader)
        reader = load_extractive_reader(reader_source) if extractive_reader is not None or not load_generator else None
        if base_generator and (generator is not None or rag is not None):
            raise ConfigError("base_generator means the bare default generator: give no generator or RAG folder with it")
        if rag is None and generator is None and not base_generator:
            rag = shipped_reader()
        template = few_shot_template(shots)
        temperature, rag_config = None, {}
        if rag is not None:
            folder = rag_folder(rag)
            if generator is not None:
                raise ConfigError("give either a RAG folder or a generator, not both")
            generator = str(folder / "generator")
            if (folder / "retriever").is_dir():  # its query encoder was trained: it comes with the folder
                if model is not None or searcher is not None:
                    raise ConfigError(f"{folder} has its own trained retriever: give no retriever model or searcher with it")
                model = str(folder / "retriever")
            rag_config = load_rag_config(folder)
            temperature = rag_config.get("temperature")
        if searcher is None:
            searcher = Searcher.open(
                corpus,
                model=model,
                index=index,
                index_kind=index_kind,
                use_cache=use_cache,
                reranker=reranker,
                rerank_candidates=rerank_candidates,
                rerank_fusion=rerank_fusion,
            )
        elif corpus is not None or index is not None or model is not None or reranker is not None:
            raise ConfigError("give either an open searcher or a corpus / index / model / reranker, not both")
        if reranker is not None:
            retriever = reranked(retriever)
        generator_model = Generator.from_pretrained(generator) if load_generator else None
        if retriever != "dense":
            temperature = None  # the trained temperature belongs to the dense scores
        pipeline = cls(searcher.retriever(retriever), generator_model, k, temperature, max_new_tokens, template)
        pipeline.fallback = bool(rag_config.get("fallback", False)) if fallback is None else fallback
        pipeline.extractive_source, pipeline.extractive_reader = reader_source, reader
        return pipeline

    # ---- retrieval ------------------------------------------------------------------------------------
    def swap_corpus(
        self,
        corpus: DenseRetriever | list[Passage] | str | os.PathLike,
        index_kind: str = "flat",
        use_cache: bool = True,
        show_progress: bool = False,
    ) -> None:
        """Hot-swap the corpus and its index without retraining: the query encoder (trained or not) and the generator
        stay as they are. `corpus`: passages or a corpus file, indexed with this pipeline's passage tower (from the
        index cache when it has them); or a `DenseRetriever` over the new corpus, used as it is when its query tower
        has this pipeline's weights, else given this pipeline's query encoder (its index must come from the same
        passage tower)."""
        enc = self.dense.encoder
        if isinstance(corpus, DenseRetriever):
            if corpus.encoder is enc or _same_weights(corpus.encoder.query_encoder, enc.query_encoder):
                self.retriever = corpus
            elif corpus.encoder.passage_fingerprint() == enc.passage_fingerprint():
                self.retriever = DenseRetriever(enc, corpus.index, corpus.passages)  # keep the (trained) query encoder
            else:
                raise ConfigError(
                    "the new index was built by a different passage encoder than this pipeline's, so its vectors "
                    "do not match the query encoder; pass the passages instead and they are encoded with it"
                )
            return
        passages = load_corpus(corpus) if isinstance(corpus, (str, os.PathLike)) else list(corpus)
        index = dense_index(passages, enc, index_kind, use_cache=use_cache, show_progress=show_progress)
        self.retriever = DenseRetriever(enc, index, passages)

    def retrieve(self, questions: list[str], with_grad: bool = False) -> tuple[list[list[SearchHit]], torch.Tensor]:
        """Top-k passages per question and log p(z|x) (B, K). With `with_grad`, the scores are recomputed from
        the query encoder with gradients (the passage vectors come from the frozen index)."""
        check_questions(questions)
        if not self.retriever.passages:
            raise ConfigError("no passages retrieved: the corpus is empty")
        enc = self.dense.encoder if with_grad or isinstance(self.retriever, DenseRetriever) else None
        training = enc.query_encoder.training if enc else False
        hits = self.retriever.search(questions, self.k)  # encodes under inference mode and switches the tower to eval
        if enc:
            enc.query_encoder.train(training)
        n_passages = len(self.retriever.passages)
        for q, row in zip(questions, hits, strict=True):
            if len(row) < self.k:
                raise ConfigError(
                    f"only {len(row)} passages retrieved for {q!r} but k={self.k}: the corpus has "
                    f"{n_passages} passages; lower k to at most {n_passages}"
                )
        if with_grad and enc:
            batch = {k: v.to(next(enc.parameters()).device) for k, v in enc.tokenize_queries(questions).items()}
            q = enc.query_encoder(**batch)
            position = {id(p): i for i, p in enumerate(self.retriever.passages)}
            ids = torch.tensor([[position[id(h.passage)] for h in row] for row in hits])
            p = torch.from_numpy(self.dense.index.reconstruct(ids.flatten().numpy())).view(*ids.shape, -1).to(q.device)
            scores = torch.einsum("bd,bkd->bk", q, p.to(q.dtype))
        else:
            scores = torch.tensor([[h.score for h in row] for row in hits])
        return hits, torch.log_softmax(scores.float() / self.temperature, dim=1)

    # ---- scoring ----------------------------------------------------------------------------------------
    def _token_logp(
        self, questions: list[str], hits: list[list[SearchHit]], answers: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced log p(y_t | x, z, y_<t), shape (B, K, T), and the target mask (B, T)."""
        inputs = self._inputs(questions, hits)
        targets = [a for a, row in zip(answers, hits, strict=True) for _ in row]
        logp, mask = self.generator.target_logprobs(inputs, targets)
        B, K = len(questions), len(hits[0])
        return logp.view(B, K, -1), mask.view(B, K, -1)[:, 0]

    def marginal_logprob(self, questions: list[str], answers: list[str], mode: str, with_grad: bool = False) -> torch.Tensor:
        """log p(answer | question) (B,) under RAG-Sequence, RAG-Token (the training objective's negative) or the
        closed-book generator. Keeps the generator's gradients (wrap in `torch.no_grad()` to score only); `with_grad`
        also lets them reach the query encoder through p(z|x)."""
        check_mode(mode)
        check_questions(questions)
        if len(answers) != len(questions):
            raise ConfigError(f"{len(questions)} questions but {len(answers)} answers")
        if mode == "closed-book":
            logp, _ = self.generator.target_logprobs([self.template.render(q) for q in questions], answers)
            return logp.sum(-1)
        hits, doc_logp = self.retrieve(questions, with_grad=with_grad)
        if mode == "standard":
            logp, _ = self.generator.target_logprobs(self._joined_inputs(questions, hits), answers)
            return logp.sum(-1)
        tok_logp, mask = self._token_logp(questions, hits, answers)
        doc_logp = doc_logp.to(tok_logp.device)
        return (rag_sequence_logprob if mode == "sequence" else rag_token_logprob)(doc_logp, tok_logp, mask)

    # ---- answering ---------------------------------------------------------------------------------------
    def answer(self, question: str, mode: str = "token", num_beams: int | None = None) -> RagAnswer:
        return self.answer_batch([question], mode, num_beams)[0]

    def answer_batch(self, questions: list[str], mode: str = "token", num_beams: int | None = None) -> list[RagAnswer]:
        """Answer each question. `num_beams`: RAG-Token, standard RAG and closed-book default to 1 (greedy); RAG-Sequence to
        4 beams per passage (the candidates that are then rescored), 1 = the greedy answer of each passage. With
        `self.fallback`, a RAG answer that none of its passages holds is replaced by the closed-book answer (greedy)."""
        answers = self._answer_batch(questions, mode, num_beams)
        if not self.fallback or mode in ("closed-book", "extractive"):
            return answers
        missing = [i for i, a in enumerate(answers) if not is_grounded(a)]
        if missing:
            closed_book = self._answer_batch([questions[i] for i in missing], "closed-book", None)
            for i, a in zip(missing, with_fallback([answers[i] for i in missing], closed_book), strict=True):
                answers[i] = a
        return answers

    def _answer_batch(self, questions: list[str], mode: str, num_beams: int | None) -> list[RagAnswer]:
        check_mode(mode)
        check_questions(questions)
        if num_beams is None:
            num_beams = DEFAULT_SEQUENCE_BEAMS if mode == "sequence" else 1
        if not isinstance(num_beams, int) or num_beams < 1:
            raise ConfigError(f"num_beams must be a positive integer, got {num_beams!r}")
        if mode == "extractive":
            reader = self.extractive_reader = self.extractive_reader or load_extractive_reader(self.extractive_source)
            reader.bf16 = self.bf16
            return extractive_answers(reader, questions, *self.retrieve(questions))
        device = self.generator.device.type
        with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=self.bf16):
            if mode == "closed-book":  # a prompt of a few tokens: running it twice is cheaper than sharing its cache
                inputs = [self.template.render(q) for q in questions]
                texts, logps = answer_from_scratch(self.generator, inputs, self.max_new_tokens, num_beams)
                return [RagAnswer(q, t, mode, lp) for q, t, lp in zip(questions, texts, logps, strict=True)]
            hits, doc_logp = self.retrieve(questions)
            if mode == "standard":
                return self._standard_answers(questions, hits, doc_logp, num_beams)
            K = len(hits[0])
            inputs = self._inputs(questions, hits)
            # Each (question, passage) prompt runs through the generator once, for decoding and for scoring the answers.
            prompts = self.generator.encode_prompts(inputs, reserve=self.max_new_tokens + SCORING_SLACK)
            if mode == "token":
                processor = LogitsProcessorList([MixturePerQuestion(doc_logp, num_beams)])
                outputs = self.generator.generate(
                    inputs,
                    self.max_new_tokens,
                    num_beams=num_beams,
                    num_return_sequences=1,
                    logits_processor=processor,
                    prompts=prompts,
                )
                pools = [[outputs[b * K][0]] for b in range(len(questions))]  # the K rows agree; take the first
            else:
                pools = self._candidates(questions, inputs, K, num_beams, prompts)
            texts, marginal, posterior = [], [], []
            for b, pool in enumerate(pools):
                rows = range(b * K, (b + 1) * K)
                tok_logp, mask = self.generator.cross_target_logprobs([inputs[r] for r in rows], pool, prompts=prompts, rows=rows)
                tok_logp = tok_logp.transpose(0, 1)  # (C, K, T): every candidate under every passage
                prior = doc_logp[b : b + 1].to(tok_logp.device).expand(len(pool), -1)
                # RAG-Sequence rescores every candidate by its marginal ("thorough decoding"); RAG-Token has one.
                scores = (rag_token_logprob if mode == "token" else rag_sequence_logprob)(prior, tok_logp, mask)
                i = int(scores.argmax())
                texts.append(pool[i])
                marginal.append(float(scores[i]))
                posterior.append(passage_posterior(prior[:1], tok_logp[i : i + 1], mask[i : i + 1])[0].tolist())
        prior = doc_logp.exp()
        return [
            RagAnswer(
                q,
                t,
                mode,
                marginal[b],
                [Provenance(h.passage, h.score, float(prior[b, k]), posterior[b][k]) for k, h in enumerate(row)],
            )
            for b, (q, t, row) in enumerate(zip(questions, texts, hits, strict=True))
        ]

    def _standard_answers(
        self, questions: list[str], hits: list[list[SearchHit]], doc_logp: torch.Tensor, num_beams: int
    ) -> list[RagAnswer]:
        """Standard RAG: one answer from one prompt holding all top-k passages."""
        inputs = self._joined_inputs(questions, hits)
        texts, scores = answer_on_prompt_cache(self.generator, inputs, self.max_new_tokens, num_beams)
        prior = doc_logp.exp()
        return [
            RagAnswer(
                q,
                t,
                "standard",
                score,
                [Provenance(h.passage, h.score, float(prior[b, k]), float(prior[b, k])) for k, h in enumerate(row)],
            )
            for b, (q, t, score, row) in enumerate(zip(questions, texts, scores, hits, strict=True))
        ]

    def _joined_inputs(self, questions, hits) -> list[str]:
        return [self.template.render_passages(q, [h.passage for h in row]) for q, row in zip(questions, hits, strict=True)]

    def _inputs(self, questions, hits) -> list[str]:
        return [self.template.render(q, h.passage) for q, row in zip(questions, hits, strict=True) for h in row]

    def _candidates(self, questions, inputs, K: int, num_beams: int, prompts=None) -> list[list[str]]:
        """RAG-Sequence's candidates per question: the union of each passage's `num_beams` beam hypotheses."""
        candidates = self.generator.generate(
            inputs, self.max_new_tokens, num_beams=num_beams, num_return_sequences=num_beams, prompts=prompts
        )
        pools = [list(dict.fromkeys(c for k in range(K) for c in candidates[b * K + k] if c)) for b in range(len(questions))]
        return [pool or [""] for pool in pools]

    def sequence_candidates(self, questions: list[str], num_beams: int = DEFAULT_SEQUENCE_BEAMS) -> list[list[str]]:
        """The candidate answers RAG-Sequence chooses from for each question (before rescoring)."""
        hits, _ = self.retrieve(questions)
        return self._candidates(questions, self._inputs(questions, hits), len(hits[0]), num_beams)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    if a is b:
        return True
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa)
