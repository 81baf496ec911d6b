"""Summary statistics of timing samples and a bootstrap confidence interval for a speedup."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Summary:
    """Statistics of n samples (same unit as the samples). cv = std / mean (sample std, ddof=1; 0 for n=1);
    iqr = p75 - p25 with linear interpolation."""

    n: int
    median: float
    mean: float
    min: float
    max: float
    iqr: float
    std: float
    cv: float


def summarize(samples: Sequence[float]) -> Summary:
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no samples")
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    return Summary(n=int(x.size), median=float(q50), mean=mean, min=float(x.min()), max=float(x.max()),
                   iqr=float(q75 - q25), std=std, cv=std / mean if mean > 0 else float("inf"))


def cv(samples: Sequence[float]) -> float:
    return summarize(samples).cv


@dataclass(frozen=True)
class SpeedupCI:
    """speedup = median(baseline) / median(candidate); [low, high] a percentile bootstrap interval."""

    speedup: float
    low: float
    high: float
    confidence: float
    resamples: int


def bootstrap_speedup(baseline: Sequence[float], candidate: Sequence[float], *, confidence: float = 0.95,
                      resamples: int = 2000, seed: int = 0) -> SpeedupCI:
    """Percentile bootstrap of the ratio of medians, resampling each side's repetitions independently.

    The two sets are independent repetitions (not pairs), so each is drawn with replacement on its own;
    ``resamples`` ratios give the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles.
    """
    b = np.asarray(baseline, dtype=np.float64)
    c = np.asarray(candidate, dtype=np.float64)
    if b.size == 0 or c.size == 0:
        raise ValueError("bootstrap needs samples on both sides")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    med_b = np.median(b[rng.integers(0, b.size, size=(resamples, b.size))], axis=1)
    med_c = np.median(c[rng.integers(0, c.size, size=(resamples, c.size))], axis=1)
    ratios = med_b / med_c
    alpha = (1 - confidence) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    return SpeedupCI(speedup=float(np.median(b) / np.median(c)), low=float(low), high=float(high),
                     confidence=confidence, resamples=resamples)
