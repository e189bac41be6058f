import json

import numpy as np
import pytest
import torch

from dpr_rag.data.passages import Passage
from dpr_rag.errors import ConfigError, DprRagError
from dpr_rag.retrieval.encoder import CONFIG_NAME, DualEncoder, default_encoder_path


def test_plain_model_defaults_to_dpr_cls_pooling(tiny_model_dir):
    enc = DualEncoder.from_pretrained(tiny_model_dir)
    assert (enc.settings.pooling, enc.settings.normalize, enc.settings.shared) == ("cls", False, True)
    assert enc.passage_encoder is enc.query_encoder and enc.dim == 32


def test_sentence_transformers_folder_gets_mean_pooling_and_normalisation():
    enc = DualEncoder.from_pretrained("all-MiniLM-L6-v2")  # the embedded copy, untrained
    assert (enc.settings.pooling, enc.settings.normalize, enc.dim) == ("mean", True, 384)
    assert enc.source == default_encoder_path()


def test_pooling_matches_hand_computation(tiny_model_dir):
    enc = DualEncoder.from_pretrained(tiny_model_dir, pooling="mean")
    batch = enc.tokenize_queries(["a short one", "a somewhat longer question here"])
    with torch.no_grad():
        hidden = enc.query_encoder.model(**batch).last_hidden_state
        pooled = enc.query_encoder(**batch)
    n0 = int(batch["attention_mask"][0].sum())
    torch.testing.assert_close(pooled[0], hidden[0, :n0].mean(0))  # padding excluded from the mean
    enc.query_encoder.pooling = "cls"
    with torch.no_grad():
        torch.testing.assert_close(enc.query_encoder(**batch), hidden[:, 0])


def test_encoding_is_order_preserving_batch_independent_and_normalised(tiny_model_dir):
    enc = DualEncoder.from_pretrained(tiny_model_dir, normalize=True)
    questions = [f"question number {i} " + "word " * (i % 7) for i in range(23)]
    all_at_once = enc.encode_queries(questions, batch_size=64)
    batched = enc.encode_queries(questions, batch_size=4)
    one_by_one = np.stack([enc.encode_queries([q])[0] for q in questions])
    np.testing.assert_allclose(batched, all_at_once, atol=1e-5)
    np.testing.assert_allclose(one_by_one, all_at_once, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(all_at_once, axis=1), 1.0, atol=1e-5)


def test_passages_are_encoded_as_title_text_pairs(tiny_model_dir):
    enc = DualEncoder.from_pretrained(tiny_model_dir)
    batch = enc.tokenize_passages([Passage("1", "Paris", "capital of france")])
    tokens = enc.tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    assert tokens == ["[CLS]", "paris", "[SEP]", "capital", "of", "france", "[SEP]"]
    assert batch["token_type_ids"][0].tolist() == [0, 0, 0, 1, 1, 1, 1]


def test_separate_towers_save_and_reload_identically(tiny_model_dir, tmp_path):
    enc = DualEncoder.from_pretrained(tiny_model_dir, shared=False)
    assert enc.passage_encoder is not enc.query_encoder and not enc.settings.shared
    with torch.no_grad():  # make the towers differ, as after training
        next(enc.passage_encoder.parameters()).add_(0.5)
    enc.save_pretrained(tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / CONFIG_NAME).read_text())["shared"] is False
    assert (tmp_path / "ckpt" / "query_encoder" / "model.safetensors").exists()
    again = DualEncoder.from_pretrained(tmp_path / "ckpt")
    passages = [Passage("1", "T", "some passage text")]
    np.testing.assert_allclose(
        again.encode_passages(passages, show_progress=False), enc.encode_passages(passages, show_progress=False), atol=1e-6
    )
    np.testing.assert_allclose(again.encode_queries(["q"]), enc.encode_queries(["q"]), atol=1e-6)
    assert not np.allclose(again.encode_queries(["some passage text"]), again.encode_passages(passages, show_progress=False))
    assert again.passage_fingerprint() == enc.passage_fingerprint()
    assert again.passage_fingerprint() != DualEncoder.from_pretrained(tiny_model_dir).passage_fingerprint()


def test_bad_model_paths_and_options(tmp_path, tiny_model_dir):
    with pytest.raises(DprRagError, match="not a model folder"):
        DualEncoder.from_pretrained(tmp_path)
    with pytest.raises(DprRagError, match="cannot load encoder"):
        DualEncoder.from_pretrained(str(tmp_path / "does-not-exist"))
    with pytest.raises(ConfigError, match="pooling must be one of"):
        DualEncoder.from_pretrained(tiny_model_dir, pooling="max")


def test_bf16_passage_encoding_is_close_and_leaves_the_model_in_fp32(tiny_model_dir, toy_passages):
    import warnings

    enc = DualEncoder.from_pretrained(str(tiny_model_dir), pooling="mean", normalize=True)
    full = enc.encode_passages(toy_passages, show_progress=False, precision="fp32")  # "auto" is bf16 on some CPUs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "emulated and slower" on CPUs without bf16 instructions
        fast = enc.encode_passages(toy_passages, show_progress=False, precision="bf16")
    assert fast.dtype == np.float32 and fast.shape == full.shape
    assert np.min(np.sum(full * fast, axis=1)) > 0.99  # cosine of unit vectors
    assert not np.array_equal(full, fast)  # it did run in another precision
    assert all(p.dtype == torch.float32 for p in enc.passage_encoder.parameters())
    with pytest.raises(ConfigError, match="unknown precision 'int4'"):
        enc.encode_passages(toy_passages, precision="int4")


def test_bf16_index_has_its_own_cache_entry(tiny_model_dir, toy_passages):
    import warnings

    from dpr_rag.paths import cache_dir
    from dpr_rag.retrieval.searcher import dense_index

    enc = DualEncoder.from_pretrained(str(tiny_model_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dense_index(toy_passages, enc, show_progress=False, precision="fp32")  # "auto" is bf16 on some CPUs
        dense_index(toy_passages, enc, show_progress=False, precision="bf16")
    names = sorted(p.name for p in (cache_dir() / "dense").iterdir())
    assert len(names) == 2 and names[1] == names[0] + "-bf16"
