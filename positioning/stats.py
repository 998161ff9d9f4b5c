"""Measured rates with their uncertainty: a share of ``n`` trials and its 95 % interval.

Sources:
- Wilson, E. B. (1927). "Probable inference, the law of succession, and statistical inference".
  Journal of the American Statistical Association 22 (158): 209-212. The score interval used for
  every single rate (it behaves at 0 and 1 and for small ``n``, unlike the normal "Wald" interval).
- Agresti, A. and Coull, B. A. (1998). "Approximate is better than 'exact' for interval estimation
  of binomial proportions". The American Statistician 52 (2): 119-126. The adjusted proportion
  ``(k + z²/2) / (n + z²)`` and variance ``p̃(1 - p̃) / (n + z²)`` used for a weighted mean of
  several independent rates (:func:`weighted_mean`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: The normal quantile of a two-sided 95 % interval.
Z95 = 1.959963984540054

NO_TRAFFIC = "no traffic"


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson (1927) score interval of ``successes / trials``, as ``(low, high)`` in [0, 1].

    Raises :class:`ValueError` when ``trials`` is not positive or ``successes`` is outside
    ``[0, trials]``.
    """
    if trials <= 0:
        raise ValueError(f"a rate needs at least one trial, got {trials}")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be between 0 and {trials}, got {successes}")
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z / (1 + z2 / trials) * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Rate:
    """``successes`` of ``trials``; with no trials there is no number (``value`` is None)."""

    successes: int
    trials: int

    @property
    def measured(self) -> bool:
        return self.trials > 0

    @property
    def value(self) -> float | None:
        return self.successes / self.trials if self.trials else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95 % Wilson interval, or None without trials."""
        return wilson_interval(self.successes, self.trials) if self.trials else None

    def text(self, digits: int = 2) -> str:
        """``"0.62 (31/50, 95 % CI 0.48-0.74)"``, or ``"no traffic"``."""
        if not self.trials:
            return NO_TRAFFIC
        low, high = wilson_interval(self.successes, self.trials)
        return (
            f"{self.successes / self.trials:.{digits}f} ({self.successes}/{self.trials}, "
            f"95 % CI {low:.{digits}f}-{high:.{digits}f})"
        )

    def to_dict(self) -> dict[str, object]:
        interval = self.interval
        return {
            "successes": self.successes,
            "trials": self.trials,
            "value": self.value,
            "low": interval[0] if interval else None,
            "high": interval[1] if interval else None,
        }


@dataclass(frozen=True)
class Estimate:
    """A derived figure with its approximate 95 % interval."""

    value: float
    low: float
    high: float

    def text(self, digits: int = 2) -> str:
        return f"{self.value:.{digits}f} (95 % CI {self.low:.{digits}f}-{self.high:.{digits}f})"


def weighted_mean(parts: Sequence[tuple[float, Rate]], z: float = Z95) -> Estimate | None:
    """``sum(w * rate) / sum(w)`` over the measured rates, with an approximate 95 % interval.

    ``parts`` are ``(weight, rate)`` pairs; unmeasured rates (no trials) and non-positive weights are
    left out; None when nothing is left. The rates are taken as independent binomial proportions;
    the interval is normal around the point value with the Agresti-Coull (1998) variance of each
    rate, ``p̃(1 - p̃)/(n + z²)``, combined as ``sum((w/W)² var)``, and clipped to [0, 1].
    """
    kept = [(w, r) for w, r in parts if w > 0 and r.trials > 0]
    if not kept:
        return None
    total = sum(w for w, _ in kept)
    value = sum(w * (r.successes / r.trials) for w, r in kept) / total
    variance = 0.0
    for w, r in kept:
        n_adj = r.trials + z * z
        p_adj = (r.successes + z * z / 2) / n_adj
        variance += (w / total) ** 2 * p_adj * (1 - p_adj) / n_adj
    half = z * math.sqrt(variance)
    return Estimate(value, max(0.0, value - half), min(1.0, value + half))
