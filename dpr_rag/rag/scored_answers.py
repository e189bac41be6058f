"""One answer per prompt and its log-likelihood log p(answer | prompt), the score standard RAG and closed-book report.

Two ways to the same answers and scores (bench/answer_scoring.py, side by side on the same prompts):
- `answer_on_prompt_cache`: each prompt runs through the generator once; decoding and scoring share its key/value cache,
  so scoring only runs the answer's own tokens. 1.41x faster for standard RAG's long prompt (k passages);
- `answer_from_scratch`: decode, then score by a second pass over the whole prompt. Faster (1/0.88x) for closed-book's
  prompt of a few tokens, which costs less to run twice than the extra call and cache copies of the first way.
"""

from __future__ import annotations

from .generator import Generator


def answer_on_prompt_cache(
    generator: Generator, inputs: list[str], max_new_tokens: int, num_beams: int
) -> tuple[list[str], list[float]]:
    """Greedy or beam answers and their scores, each prompt run once."""
    # The room generation alone leaves (so long prompts are cut as before); an answer that re-encodes longer than
    # that is scored from scratch by cross_target_logprobs.
    prompts = generator.encode_prompts(inputs, reserve=max_new_tokens)
    outputs = generator.generate(inputs, max_new_tokens, num_beams=num_beams, num_return_sequences=1, prompts=prompts)
    texts = [c[0] for c in outputs]
    scores = []
    for i, text in enumerate(texts):  # answer i under prompt i only (cross_target_logprobs would score every pair)
        logp, _ = generator.cross_target_logprobs([inputs[i]], [text], prompts=prompts, rows=[i])
        scores.append(float(logp.sum()))
    return texts, scores


def answer_from_scratch(
    generator: Generator, inputs: list[str], max_new_tokens: int, num_beams: int
) -> tuple[list[str], list[float]]:
    """The same answers and scores, each prompt run twice (decoding, then scoring)."""
    outputs = generator.generate(inputs, max_new_tokens, num_beams=num_beams, num_return_sequences=1)
    texts = [c[0] for c in outputs]
    logp, _ = generator.target_logprobs(inputs, texts)
    return texts, [float(lp.sum()) for lp in logp]
