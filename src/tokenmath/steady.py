"""Steady-state output analysis of one simulated latency series: how much of its start to discard,
and how well its percentiles are known.

A replica simulated from an empty start sees short queues at first, so its early latencies are
optimistic. Two textbook rules turn a run into a steady-state estimate:

* **Warm-up (MSER-5).** Average the series in batches of 5; discard the first d batches, d chosen
  in the first half of the run to minimise the marginal standard error of what remains,
      MSER(d) = Σ_{i>d} (z_i − z̄_d)² / (k − d)²
  (White 1997, "An effective truncation heuristic for bias reduction in simulation output",
  Simulation 69(6); the batch-of-5 form, MSER-5: White, Cobb & Spratt, Winter Simulation
  Conference 2000; the best of 42 warm-up rules tested by Hoad, Robinson & Davies 2010,
  "Automating warm-up length estimation", J. Oper. Res. Soc. 61(9)). A minimum on the edge of the
  first half means the run has not settled yet: too short, or a queue that keeps growing.
* **Interval (sectioning).** Cut what remains into S = 20 contiguous sections. The percentile of the
  whole is the estimate; the spread of the sections' percentiles around it gives its standard
  error, and the 95 % interval is estimate ± t(0.975, S − 1) · s / √S (sectioning: Asmussen &
  Glynn 2007, "Stochastic Simulation", ch. III §5, sectioning; for quantiles, Dong & Nakayama 2020, "A
  tutorial on quantile estimation via Monte Carlo", MCQMC 2018). Contiguous sections, each
  hundreds of requests long, are nearly independent even though neighbouring requests share a
  queue: that is why batching, not an i.i.d. bootstrap (scipy.stats.bootstrap resamples single
  requests and so understates the error of a correlated series), and it needs only numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MSER_BATCH = 5  # observations averaged per MSER batch (MSER-5)
SECTIONS = 20  # contiguous sections for the interval
CONFIDENCE = 0.95  # two-sided
T_QUANTILE = 2.093  # Student's t, 0.975 quantile, SECTIONS − 1 = 19 degrees of freedom (tables: 2.0930)


@dataclass(frozen=True)
class Warmup:
    discard: int  # leading observations to drop (a multiple of MSER_BATCH)
    settled: bool  # the MSER minimum lies inside the first half of the run


def mser5(x: np.ndarray) -> Warmup:
    """MSER-5 truncation of a series in time order: the leading observations to discard, searched
    over the first half of the run. A series of fewer than 2 batches is kept whole."""
    x = np.asarray(x, float)
    k = x.size // MSER_BATCH
    if k < 2:
        return Warmup(0, True)
    z = x[: k * MSER_BATCH].reshape(k, MSER_BATCH).mean(axis=1)
    z = z - z.mean()  # centred: the running sums below then cancel less
    tail_sum = np.cumsum(z[::-1])[::-1]  # Σ_{i ≥ d} z_i
    tail_sq = np.cumsum((z * z)[::-1])[::-1]
    left = k - np.arange(k, dtype=float)  # k − d batches kept
    ss = np.maximum(tail_sq - tail_sum * tail_sum / left, 0.0)
    half = k // 2
    stat = ss[: half + 1] / left[: half + 1] ** 2
    d = int(np.argmin(stat))  # the first minimum
    return Warmup(d * MSER_BATCH, d < half)


@dataclass(frozen=True)
class Interval:
    estimate: float  # the percentile of the whole series
    half_width: float  # of the 95 % interval (inf when unknown)

    @property
    def low(self) -> float:
        return max(self.estimate - self.half_width, 0.0)  # latencies are never negative

    @property
    def high(self) -> float:
        return self.estimate + self.half_width

    @property
    def relative_half_width(self) -> float:
        """half-width / estimate (0 for a series that never varies; inf when unknown)."""
        if self.half_width == 0.0:
            return 0.0
        return self.half_width / self.estimate if self.estimate > 0 else math.inf


def percentile_interval(x: np.ndarray, q: float) -> Interval:
    """The q-th percentile of a steady series and its 95 % sectioning interval (module docstring).
    Fewer observations than sections: the interval is unknown (0 to inf)."""
    x = np.asarray(x, float)
    est = float(np.percentile(x, q)) if x.size else math.nan
    m = x.size // SECTIONS
    if m < 1:
        return Interval(est, math.inf)
    sec = np.percentile(x[x.size - m * SECTIONS:].reshape(SECTIONS, m), q, axis=1)
    s = math.sqrt(float(np.sum((sec - est) ** 2)) / (SECTIONS - 1))
    return Interval(est, T_QUANTILE * s / math.sqrt(SECTIONS))


__all__ = ["mser5", "percentile_interval", "Warmup", "Interval", "SECTIONS", "CONFIDENCE", "T_QUANTILE", "MSER_BATCH"]
