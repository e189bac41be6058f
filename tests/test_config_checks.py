"""The shared setting checks (dpr_rag.config_checks) and the config dataclasses that validate themselves with them."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest

from dpr_rag.config_checks import MAX_SEED, check_bool, check_choice, check_float, check_int, check_text
from dpr_rag.errors import ConfigError
from dpr_rag.rag.trainer import RagTrainConfig
from dpr_rag.training.distant_supervision import split_train_dev
from dpr_rag.training.trainer import TrainConfig


# ---- the helpers ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: check_int("epochs", 0, 1), "epochs must be an integer >= 1, got 0"),
        (lambda: check_int("k", 1001, 1, 1000), "k must be an integer between 1 and 1000, got 1001"),
        (lambda: check_int("depth", 9, maximum=8), "depth must be an integer <= 8, got 9"),
        (lambda: check_int("seed", "7"), "seed must be an integer, got '7'"),
        (lambda: check_int("batch_size", True, 1), "batch_size must be an integer >= 1, got True"),
        (lambda: check_int("batch_size", 4.0, 1), "batch_size must be an integer >= 1, got 4.0"),
        (lambda: check_int("max_examples", 0, 1, optional=True), "max_examples must be None or an integer >= 1, got 0"),
        (lambda: check_int("epochs", None, 1), "epochs must be an integer >= 1, got None"),
        (lambda: check_float("lr", 0, gt=0), "lr must be a finite number > 0, got 0"),
        (lambda: check_float("weight_decay", -0.5, ge=0), "weight_decay must be a finite number >= 0, got -0.5"),
        (lambda: check_float("p", 1.5, le=1), "p must be a finite number <= 1, got 1.5"),
        (lambda: check_float("warmup_ratio", 1.0, ge=0, lt=1), "warmup_ratio must be a finite number in [0, 1), got 1.0"),
        (lambda: check_float("x", 0.0, gt=0, le=1), "x must be a finite number in (0, 1], got 0.0"),
        (lambda: check_float("lr", math.nan, gt=0), "lr must be a finite number > 0, got nan"),
        (lambda: check_float("lr", math.inf), "lr must be a finite number, got inf"),
        (lambda: check_float("lr", "1e-5", gt=0), "lr must be a finite number > 0, got '1e-5'"),
        (lambda: check_float("lr", False, gt=0), "lr must be a finite number > 0, got False"),
        (
            lambda: check_float("temperature", -1.0, gt=0, optional=True),
            "temperature must be None or a finite number > 0, got -1.0",
        ),
        (lambda: check_choice("mode", "tokens", ("token", "sequence")), "mode must be one of 'token', 'sequence', got 'tokens'"),
        (lambda: check_choice("flag", 1, (True, False)), "flag must be one of True, False, got 1"),
        (lambda: check_bool("resume", "no"), "resume must be True or False, got 'no'"),
        (lambda: check_text("out", "  "), "out must be a non-empty string, got '  '"),
        (lambda: check_text("out", None), "out must be a non-empty string, got None"),
    ],
)
def test_a_bad_value_is_reported_with_its_name_rule_and_value(call, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        call()


def test_good_values_come_back_unchanged():
    assert check_int("k", 5, 1, 1000) == 5 and check_int("k", 1, 1, 1) == 1 and check_int("seed", -3) == -3
    assert check_int("n", None, 1, optional=True) is None
    assert check_int("big", 10**30, 0) == 10**30
    lr = check_float("lr", 2, gt=0)
    assert lr == 2 and type(lr) is int  # ints are numbers too, and nothing is converted
    assert check_float("f", 0.0, ge=0, lt=1) == 0.0 and check_float("t", None, gt=0, optional=True) is None
    assert check_choice("mode", "token", ("token", "sequence")) == "token"
    assert check_choice("mode", None, ("token",), optional=True) is None
    assert check_bool("b", False) is False and check_text("out", "runs/a") == "runs/a"


def test_a_huge_value_is_refused_with_a_short_message():
    with pytest.raises(ConfigError) as error:
        check_float("lr", 10**400, le=1)  # too big for a float: refused, not an OverflowError
    assert len(str(error.value)) < 150 and str(error.value).endswith("...")


def test_check_float_refuses_two_bounds_on_one_side():
    with pytest.raises(ValueError, match="at most one lower bound"):
        check_float("x", 1.0, ge=0, gt=0)


# ---- the configs ---------------------------------------------------------------------------------------------
TRAIN_BAD = [  # (field, bad value) for TrainConfig
    ("out", ""),
    ("out", None),
    ("negative_margin", -0.1),
    ("negative_margin", 3.0),
    ("negatives", "random"),
    ("gold_title_positives", "yes"),
    ("synthetic", 3),
    ("epochs", 0),
    ("epochs", 1.5),
    ("epochs", True),
    ("epochs", "2"),
    ("batch_size", 0),
    ("batch_size", None),
    ("hard_negatives", -1),
    ("hard_negatives", 1.0),
    ("lr", 0),
    ("lr", -1e-5),
    ("lr", math.nan),
    ("lr", math.inf),
    ("lr", "2e-5"),
    ("warmup_ratio", -0.1),
    ("warmup_ratio", 1.0),
    ("warmup_ratio", None),
    ("weight_decay", -0.01),
    ("weight_decay", math.inf),
    ("max_grad_norm", 0.0),
    ("max_grad_norm", -1),
    ("temperature", 0.0),
    ("temperature", -0.05),
    ("temperature", math.nan),
    ("grad_cache_chunk", -1),
    ("grad_cache_chunk", 2.5),
    ("dev_fraction", -0.1),
    ("dev_fraction", 1.0),
    ("dev_fraction", "0.1"),
    ("eval_k", 0),
    ("eval_k", None),
    ("max_examples", 0),
    ("max_examples", -5),
    ("max_examples", 10.0),
    ("seed", -1),
    ("seed", MAX_SEED + 1),
    ("seed", 4.2),
    ("seed", None),
    ("save_every", -1),
    ("save_every", None),
    ("shared", "yes"),
    ("resume", 1),
    ("show_progress", None),
]
RAG_BAD = [  # (field, bad value) for RagTrainConfig
    ("out", ""),
    ("mode", "closed-book"),
    ("mode", "tokens"),
    ("mode", None),
    ("epochs", 0),
    ("epochs", 2.0),
    ("batch_size", 0),
    ("batch_size", False),
    ("lr", 0.0),
    ("lr", -1.0),
    ("lr", math.nan),
    ("max_grad_norm", 0),
    ("max_grad_norm", math.inf),
    ("seed", -1),
    ("seed", "0"),
    ("show_progress", "no"),
    ("max_examples", 0),
    ("max_examples", 3.0),
    ("grad_accum", 0),
    ("grad_accum", 1.5),
    ("lora_rank", -1),
    ("lora_rank", 4.0),
    ("lora_alpha", 0.0),
    ("lora_alpha", math.nan),
    ("dev_every", -1),
    ("dev_batch_size", 0),
    ("dev_every", None),
    ("dev_mode", "closed-book"),
    ("bf16", 1),
    ("train_query_encoder", "yes"),
    ("resume", None),
]


def _expect_refusal(config_class, field: str, value) -> None:
    with pytest.raises(ConfigError) as error:
        config_class(**{"out": "runs/x", field: value})
    message = str(error.value)
    assert message.startswith(f"{field} must be ") and message.endswith(f"got {value!r}"), message


@pytest.mark.parametrize("field, value", TRAIN_BAD)
def test_train_config_refuses_a_bad_value_naming_the_field(field, value):
    _expect_refusal(TrainConfig, field, value)


@pytest.mark.parametrize("field, value", RAG_BAD)
def test_rag_train_config_refuses_a_bad_value_naming_the_field(field, value):
    _expect_refusal(RagTrainConfig, field, value)


@pytest.mark.parametrize("config_class, bad", [(TrainConfig, TRAIN_BAD), (RagTrainConfig, RAG_BAD)])
def test_every_numeric_field_is_checked(config_class, bad):
    numeric = {f.name for f in dataclasses.fields(config_class) if any(t in str(f.type) for t in ("int", "float"))}
    assert numeric and numeric <= {field for field, _ in bad}


def test_the_defaults_and_edge_values_are_accepted():
    TrainConfig(out="runs/x")
    RagTrainConfig(out="runs/x")
    TrainConfig(
        out="runs/x",
        epochs=1,
        batch_size=1,
        hard_negatives=0,
        lr=1,
        warmup_ratio=0.0,
        weight_decay=0,
        temperature=0.05,
        grad_cache_chunk=0,
        dev_fraction=0.0,
        eval_k=1,
        max_examples=1,
        seed=0,
        save_every=0,
    )
    TrainConfig(out="runs/x", warmup_ratio=0.999, dev_fraction=0.999, seed=MAX_SEED, max_examples=None, temperature=None)
    RagTrainConfig(out="runs/x", mode="sequence", epochs=3, batch_size=1, lr=3e-3, max_examples=8, seed=MAX_SEED)
    RagTrainConfig(out="runs/x", mode="passage", grad_accum=4, lora_rank=16, lora_alpha=32, bf16=True, dev_every=50)


def test_a_checked_config_keeps_its_values_exactly():
    cfg = TrainConfig(out="runs/x", lr=1, epochs=3)
    assert cfg.lr == 1 and type(cfg.lr) is int and cfg.epochs == 3  # validation converts nothing (the checkpoint records it)


def test_split_train_dev_uses_the_shared_checks():
    with pytest.raises(ConfigError, match=r"^dev_fraction must be a finite number in \[0, 1\), got 1\.0$"):
        split_train_dev([], dev_fraction=1.0)
    with pytest.raises(ConfigError, match="^seed must be an integer, got 'a'$"):
        split_train_dev([], seed="a")
