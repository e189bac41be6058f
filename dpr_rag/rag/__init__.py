"""Retrieval-augmented generation (Lewis et al., 2020).

- `prompting.py` — the text a generator reads (passage, question) and the answer line it writes;
- `generator.py` — `Generator`: p(y | x, z) from a Hugging Face LM, scoring and beam search; the base class and factory;
- `causal_generator.py` — `CausalGenerator`: a decoder-only LM (Gemma, GPT-2), input and target in one context;
- `seq2seq_generator.py` — `Seq2SeqGenerator`: an encoder-decoder LM (BART, T5), the target in the decoder;
- `default_generator.py` — the embedded Gemma 3 270M, converted once from its GGUF;
- `marginals.py` — RAG-Sequence and RAG-Token marginalisation over the retrieved passages (training and decoding);
- `pipeline.py` — `RagPipeline`: answers with provenance, corpus hot-swap;
- `trainer.py` — end-to-end training of the query encoder and the generator.
"""
