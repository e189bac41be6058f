"""Checks for configuration values, shared by the config dataclasses and the library functions that take settings,
so that every bad setting is reported the same way: ConfigError("<name> must be <rule>, got <value!r>"), e.g.

    epochs must be an integer >= 1, got 0
    k must be an integer between 1 and 1000, got 0
    warmup_ratio must be a finite number in [0, 1), got 1.0
    temperature must be None or a finite number > 0, got -1.0
    mode must be one of 'token', 'sequence', got 'tokens'

Each check returns the value unchanged when it passes (no coercion: a config keeps exactly what it was given), so it
can be used inline: `self.k = check_int("k", k, 1, MAX_K)`. `optional=True` also accepts None.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")

MAX_SEED = 2**32 - 1  # seeds that every RNG here (torch, random, numpy) takes: check_int("seed", seed, 0, MAX_SEED)


def _fail(name: str, rule: str, value: Any, optional: bool) -> ConfigError:
    shown = repr(value)
    if len(shown) > 80:  # a pasted blob or a huge number: enough to recognise it
        shown = shown[:77] + "..."
    return ConfigError(f"{name} must be {'None or ' if optional else ''}{rule}, got {shown}")


def check_int(name: str, value: T, minimum: int | None = None, maximum: int | None = None, *, optional: bool = False) -> T:
    """`value` must be an int (not a bool, not a float such as 2.0) with minimum <= value <= maximum (bounds that are
    None are not checked)."""
    if value is None and optional:
        return value
    if minimum is not None and maximum is not None:
        rule = f"an integer between {minimum} and {maximum}"
    elif minimum is not None:
        rule = f"an integer >= {minimum}"
    elif maximum is not None:
        rule = f"an integer <= {maximum}"
    else:
        rule = "an integer"
    v: Any = value
    ok = isinstance(v, int) and not isinstance(v, bool)
    if not ok or (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        raise _fail(name, rule, value, optional)
    return value


def _float_rule(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    lower = (">=", ge) if ge is not None else (">", gt) if gt is not None else None
    upper = ("<=", le) if le is not None else ("<", lt) if lt is not None else None
    if lower is not None and upper is not None:
        opening, closing = "[" if lower[0] == ">=" else "(", "]" if upper[0] == "<=" else ")"
        return f"a finite number in {opening}{lower[1]:g}, {upper[1]:g}{closing}"
    bound = lower or upper
    return "a finite number" if bound is None else f"a finite number {bound[0]} {bound[1]:g}"


def check_float(
    name: str,
    value: T,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    optional: bool = False,
) -> T:
    """`value` must be a finite int or float (not a bool, not a string) within the given bounds: ge (>=), gt (>),
    le (<=), lt (<); give at most one lower and one upper bound."""
    if ge is not None and gt is not None or le is not None and lt is not None:
        raise ValueError("check_float: give at most one lower bound (ge or gt) and one upper bound (le or lt)")
    if value is None and optional:
        return value
    v: Any = value
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (isinstance(v, int) or math.isfinite(v))
    if ok:
        ok = (ge is None or v >= ge) and (gt is None or v > gt) and (le is None or v <= le) and (lt is None or v < lt)
    if not ok:
        raise _fail(name, _float_rule(ge, gt, le, lt), value, optional)
    return value


def check_choice(name: str, value: T, choices: Iterable[Any], *, optional: bool = False) -> T:
    """`value` must be one of `choices`: equal to one and of its type (so True is not 1; strings are case-sensitive)."""
    allowed = list(choices)
    if value is None and optional:
        return value
    if not any(type(value) is type(c) and value == c for c in allowed):
        raise _fail(name, "one of " + ", ".join(map(repr, allowed)), value, optional)
    return value


def check_bool(name: str, value: T) -> T:
    """`value` must be True or False (not 0/1, not a string such as "no", which would be true)."""
    if not isinstance(value, bool):
        raise _fail(name, "True or False", value, False)
    return value


def check_text(name: str, value: T, *, optional: bool = False) -> T:
    """`value` must be a string that is not empty or blank (a name, a path)."""
    if value is None and optional:
        return value
    if not isinstance(value, str) or not value.strip():
        raise _fail(name, "a non-empty string", value, optional)
    return value
