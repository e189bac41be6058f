"""Retrieval-augmented generation (Lewis et al., 2020).

- `prompting.py` — the text a generator reads (passages, question, demonstrations) and the answer line it writes;
- `demonstrations.py` — few-shot demonstrations from training data;
- `generator.py` — `Generator`: p(y | x, z) from a Hugging Face LM, scoring and beam search; the base class and factory;
- `causal_generator.py` — `CausalGenerator`: a decoder-only LM (Gemma, GPT-2), input and target in one context;
- `seq2seq_generator.py` — `Seq2SeqGenerator`: an encoder-decoder LM (BART, T5), the target in the decoder;
- `default_generator.py` — the embedded Gemma 3 270M, converted once from its GGUF, and the shipped reader (`reader/`);
- `lora.py` — LoRA adapters on the generator (peft), saved with a portable base name;
- `marginals.py` — RAG-Sequence and RAG-Token marginalisation over the retrieved passages (training and decoding);
- `pipeline.py` — `RagPipeline`: RAG-Token / RAG-Sequence / standard RAG / closed-book over any retriever, with
  provenance, corpus hot-swap;
- `priors.py` — p(z|x) over any retriever: a softmax at a temperature suited to its score scale;
- `fallback.py` — closed-book fallback: a RAG answer kept only where one of its passages holds it;
- `rag_folder.py` — the folders RAG training writes and `RagPipeline.open(rag=...)` loads;
- `reader_data.py` — reader training data by distant supervision;
- `trainer.py`, `checkpoints.py` — training the reader / RAG end to end: dev EM, best/ and last/ (exact resume).
"""
