"""Paired bootstrap confidence intervals for the difference between two systems on the same questions.

Method (Efron & Tibshirani 1993; as used for MT/QA system comparison, Koehn 2004): given per-question scores
a_i and b_i of two systems on the same n questions (0/1 hits for top-k accuracy, or EM/F1 in [0, 1]), the
observed difference is mean(a) - mean(b). Draw B resamples of n question indices with replacement; the same
indices are used for both systems (that is what makes it *paired*: the question-to-question variation both
systems share cancels). The percentile interval of the B resampled differences, [q_(α/2), q_(1-α/2)], is the
(1-α) confidence interval. If it excludes 0, the difference is unlikely to be an accident of which questions
happened to be asked. The random generator is seeded, so a report is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from dpr_rag.errors import ConfigError

DEFAULT_SAMPLES = 1000
_CHUNK = 250  # resamples drawn at a time: bounds memory at _CHUNK * n indices


@dataclass(frozen=True)
class BootstrapCI:
    difference: float  # mean(a) - mean(b), observed
    low: float
    high: float
    confidence: float
    samples: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self, scale: float = 1.0, digits: int = 2) -> dict:
        d = asdict(self)
        for key in ("difference", "low", "high"):
            d[key] = round(d[key] * scale, digits)
        d["excludes_zero"] = self.excludes_zero
        return d


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], samples: int = DEFAULT_SAMPLES, confidence: float = 0.95, seed: int = 0
) -> BootstrapCI:
    """Percentile CI of mean(a) - mean(b) over `samples` paired resamples of the questions (see module doc)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ConfigError(f"paired bootstrap needs two score vectors of the same length, got {x.shape} and {y.shape}")
    if len(x) == 0:
        raise ConfigError("paired bootstrap needs at least one question")
    if not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"bootstrap samples must be a positive integer, got {samples!r}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    n, diff = len(x), x - y
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [diff[rng.integers(0, n, size=(min(_CHUNK, samples - s), n))].mean(axis=1) for s in range(0, samples, _CHUNK)]
    )
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return BootstrapCI(float(diff.mean()), float(low), float(high), confidence, samples)
