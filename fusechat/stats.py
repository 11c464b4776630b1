"""Paired and unpaired statistics for evaluation tables and studies: 95% intervals (Wilson, bootstrap,
paired and seed-resampled bootstrap), McNemar's exact test, the difference a sample size detects.
The ground floor: it knows no stage."""

from __future__ import annotations

import math
import random
from statistics import NormalDist


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion: sane at 0/n and n/n, unlike the normal approximation."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean(values: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap of the mean (for win rates with ties, which are not 0/1)."""
    if not values:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choice(values) for _ in range(n)) / n for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def paired_bootstrap(a: list[float], b: list[float], resamples: int = 2000, seed: int = 0,
                     weights: list[float] | None = None) -> tuple[float, float, float]:
    """mean(a) - mean(b) over paired items, with a percentile bootstrap 95% interval.

    Items are resampled jointly (one index draws both scores), so what the two models share (an easy
    item, a hard one) cancels: the interval is that of the per-item differences. `weights`: a weighted
    mean instead (a benchmark whose score weighs its categories alike), resampled the same way."""
    if weights is not None:
        return _weighted_paired_bootstrap(a, b, weights, resamples, seed)
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same items: {len(a)} vs {len(b)}")
    n = len(a)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    diffs = [x - y for x, y in zip(a, b)]
    rng = random.Random(seed)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return sum(diffs) / n, means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def seeded_bootstrap(a: list[list[float]], b: list[list[float]], resamples: int = 2000, seed: int = 0,
                     pair_seeds: bool = False) -> tuple[float, float, float]:
    """mean(a) - mean(b) where each model was trained at several seeds: a[s][i] is its score on item i
    when trained with seed s. The point estimate averages over seeds, then items.

    Each resample draws the items (jointly for both models, as in paired_bootstrap) and the seeds with
    replacement, so the interval covers which seed training happened to get as well as which items were
    drawn. `pair_seeds`: a[s] and b[s] share seed s (one draw picks both, as items are paired). With one
    run on each side it is paired_bootstrap."""
    if len(a) == len(b) == 1:
        return paired_bootstrap(a[0], b[0], resamples, seed)
    import numpy as np

    A, B = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1] or (pair_seeds and len(A) != len(B)):
        raise ValueError(f"paired scores need the same items (and seeds, if paired): {A.shape} vs {B.shape}")
    n = A.shape[1]
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for r in range(resamples):
        sa = rng.integers(len(A), size=len(A))
        per_item = A[sa].mean(0) - B[sa if pair_seeds else rng.integers(len(B), size=len(B))].mean(0)
        means[r] = per_item[rng.integers(n, size=n)].mean()
    means.sort()
    return float(A.mean() - B.mean()), float(means[int(0.025 * resamples)]), float(means[int(0.975 * resamples) - 1])


def detectable_difference(diffs: list[float], power: float = 0.8, effect: float = 0.05) -> tuple[float, int]:
    """Sizing from observed per-item differences: (the smallest mean difference n items detect with
    `power` at the 5% level, two-sided; the items needed to detect `effect`). Normal approximation:
    (z_0.975 + z_power) * sd / sqrt(n)."""
    n = len(diffs)
    if n < 2:
        return float("nan"), 0
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(power)
    return z * sd / math.sqrt(n), math.ceil((z * sd / effect) ** 2)


def mcnemar(a: list[float], b: list[float]) -> tuple[int, int, float]:
    """McNemar's exact test for paired pass/fail scores: (a-only passes, b-only passes, two-sided p).

    Only the discordant items carry information; under "no difference" each is a fair coin."""
    only_a = sum(1 for x, y in zip(a, b) if x == 1 and y == 0)
    only_b = sum(1 for x, y in zip(a, b) if x == 0 and y == 1)
    n = only_a + only_b
    if n == 0:
        return 0, 0, 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return only_a, only_b, min(1.0, 2 * tail)


def _weighted_paired_bootstrap(a: list[float], b: list[float], weights: list[float], resamples: int,
                               seed: int) -> tuple[float, float, float]:
    if not len(a) == len(b) == len(weights):
        raise ValueError(f"paired scores need the same items: {len(a)} vs {len(b)} ({len(weights)} weights)")
    n = len(a)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    diffs = [x - y for x, y in zip(a, b)]
    rng = random.Random(seed)
    draws = []
    for _ in range(resamples):
        picked = [rng.randrange(n) for _ in range(n)]
        total = sum(weights[i] for i in picked)
        draws.append(sum(weights[i] * diffs[i] for i in picked) / total)
    draws.sort()
    return (sum(w * d for w, d in zip(weights, diffs)) / sum(weights), draws[int(0.025 * resamples)],
            draws[int(0.975 * resamples) - 1])


def grouped_bootstrap(rows: list[dict], statistic, resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """(statistic(rows), 95% interval low, high): a percentile bootstrap that resamples rows within each
    `group` (a benchmark scored as a mean over its categories keeps every category in every draw)."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["group"], []).append(r)
    rng = random.Random(seed)
    draws = sorted(statistic([rng.choice(group) for group in by.values() for _ in group]) for _ in range(resamples))
    return statistic(rows), draws[int(0.025 * resamples)], draws[int(0.975 * resamples) - 1]
