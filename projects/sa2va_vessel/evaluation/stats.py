"""Per-data-set summaries of per-image scores: mean, standard deviation and a seeded
percentile-bootstrap 95% interval of the mean."""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_N_BOOT: int = 2000


def mean_sd_ci(
    values: Sequence[float], n_boot: int = DEFAULT_N_BOOT, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """``n`` (finite values used), ``n_nan`` (undefined per-image values, skipped), ``mean``,
    ``sd`` (sample, ddof=1) and ``ci_low``/``ci_high``: the ``level`` percentile-bootstrap
    interval of the mean (``n_boot`` resamples of the images with replacement, seeded, so the
    same scores always give the same interval). NaN where fewer than 2 values are defined."""
    if not 0.0 < level < 1.0:
        raise ValueError(f'level must be in (0, 1), got {level}')
    v = np.asarray(values, dtype=np.float64).ravel()
    finite = v[np.isfinite(v)]
    n = int(finite.size)
    out = {
        'n': n,
        'n_nan': int(v.size - n),
        'mean': float('nan'),
        'sd': float('nan'),
        'ci_low': float('nan'),
        'ci_high': float('nan'),
    }
    if n == 0:
        return out
    out['mean'] = float(finite.mean())
    if n < 2:
        return out
    out['sd'] = float(finite.std(ddof=1))
    idx = np.random.default_rng(seed).integers(0, n, size=(int(n_boot), n))
    means = finite[idx].mean(axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    out['ci_low'], out['ci_high'] = (float(x) for x in np.percentile(means, [tail, 100.0 - tail]))
    return out
