"""What a benchmark client reports at a fixed concurrency (`tokenmath client`).

vLLM's `vllm bench serve`, SGLang's `bench_serving` (both with --max-concurrency and request rate
inf), genai-perf / AIPerf at a fixed concurrency and trtllm-bench --concurrency hold c requests in
flight against a server and print TTFT, TPOT (= 1 / tokens per second per user) and output
tokens/s. This module answers the same numbers before the run: at each concurrency, the closed loop
of the calibrated step model (stepmodel.closed_loop, the accounting docs/client.md derives), its
80 % band, and the same loop under the roofline bound beside it. Beyond the sequences whose KV fits
at the mean context I + O/2 (in what a serving engine fills: 90 % of HBM less its runtime's
reserve, layout.serving_hbm_bytes, as validation reads a measured concurrency), the rest
queue: the engine runs the batch that fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .args import FLAGS
from .errors import TokenmathError
from .parallelism import Layout
from .profiles import Profile, model_class
from .specs import Dtypes, Model, System
from .stepmodel import ARRIVALS, ClosedLoop, closed_loop, max_batch

MAX_CONCURRENCY = FLAGS["--concurrency"].high  # requests in flight (bounds the arithmetic, not a physical limit)
MAX_POINTS = 256  # concurrencies in one sweep
MAX_DEFAULT = 4096.0  # the default sweep's last power of two


@dataclass(frozen=True)
class ClientSweep:
    """A benchmark client at each concurrency against one replica (arrays over `concurrency`).

    estimate        the closed loop of the calibrated step model (ClosedLoop: TTFT, TPOT, output
                    tokens/s of the replica, the running batch, the share of time spent prefilling)
    roofline        the same loop with every step at its roofline bound: a floor on TTFT and TPOT, a
                    ceiling on throughput
    kv_cap          sequences whose KV fits at the mean context I + O/2 (what a serving engine fills): beyond it the
                    rest queue
    kv_budget       how the engine sized that memory (layout.KV_BUDGETS: "total" HBM, or what the
                    weights leave "free", TensorRT-LLM's rule)
    *_range_80      (lo, hi) of the true value given the estimate, from the cross-validated residuals
                    of the model's class (Profile.range_80); None for the roofline profile
    billed_chips    chips of the replica a throughput per chip divides by
    """

    concurrency: np.ndarray
    estimate: ClosedLoop
    roofline: ClosedLoop
    kv_cap: float
    ttft_range_80: tuple | None
    tpot_range_80: tuple | None
    output_range_80: tuple | None
    billed_chips: float
    layout: Layout
    input_tokens: float
    output_tokens: float
    requests: float | None
    arrivals: str
    label: str
    kv_budget: str = "total"

    @property
    def output_tokens_per_s_per_chip(self) -> np.ndarray:
        return np.asarray(self.estimate.output_tokens_per_s, float) / self.billed_chips

    @property
    def tokens_per_s_per_user(self) -> np.ndarray:
        """What a client calls output speed or interactivity: 1 / TPOT."""
        return 1.0 / np.asarray(self.estimate.tpot_s, float)

    @property
    def roofline_output_tokens_per_s_per_chip(self) -> np.ndarray:
        return np.asarray(self.roofline.output_tokens_per_s, float) / self.billed_chips

    @property
    def roofline_tokens_per_s_per_user(self) -> np.ndarray:
        return 1.0 / np.asarray(self.roofline.tpot_s, float)


def check_count(n: int) -> None:
    """At most MAX_POINTS concurrencies in one sweep, at least one."""
    if not 1 <= n <= MAX_POINTS:
        raise TokenmathError(f"--concurrency lists {n} values; expected 1 to {MAX_POINTS}")


def check_output_tokens(output_tokens: float) -> None:
    """A client's TPOT is (E2E − TTFT)/(O − 1): it needs at least two output tokens."""
    if not output_tokens >= 2:
        raise TokenmathError(f"--output-tokens = {output_tokens:g}; a client's TPOT (and tokens/s per user) needs at "
                             "least 2 output tokens per request")


def check_concurrency(values) -> np.ndarray:
    """Concurrencies as a sorted array of distinct whole requests, each 1 … MAX_CONCURRENCY, at most
    MAX_POINTS of them; one clear sentence otherwise."""
    c = np.asarray(values, float).ravel()
    check_count(c.size)
    bad = c[~(np.isfinite(c) & (c >= 1) & (c <= MAX_CONCURRENCY) & (c == np.round(c)))]
    if bad.size:
        raise TokenmathError(f"concurrency = {bad[0]:g}; expected a whole number of requests from 1 to {MAX_CONCURRENCY:,}")
    return np.unique(c)


def default_concurrency(kv_cap: float, requests: float | None = None) -> np.ndarray:
    """Powers of two from 1 up to the first at or past the KV cap (at most MAX_DEFAULT), and the cap
    itself: the range where a client's numbers change. A run of N requests never holds more than N
    in flight, so nothing past N."""
    limit = min(kv_cap, MAX_CONCURRENCY) if requests is None else min(kv_cap, MAX_CONCURRENCY, float(requests))
    top = min(max(kv_cap, 1.0), MAX_DEFAULT)
    n = int(math.ceil(math.log2(top))) if top > 1 else 0
    c = np.unique(np.concatenate([2.0 ** np.arange(n + 1), [math.floor(limit)]]))
    return c if requests is None else c[c <= max(float(requests), 1.0)]


def serving_replica(model: Model, system: System, context: float, *, dtypes: Dtypes = Dtypes(),
                    chips: int | None = None):
    """The replica a client's runs go to: estimate.replica's for one request at `context` — grown
    (chips None) until its weights and that request's KV fit in what a serving engine may fill
    (layout.serving_hbm_bytes, the rule every row's batch follows: stepmodel.max_batch). With chips
    given, those chips; a sweep on them says so if nothing fits."""
    from .estimate import replica

    return replica(model, system, 1.0, context, chips=chips, dtypes=dtypes)


def client_sweep(model: Model, system: System, layout: Layout, concurrency, input_tokens: float,
                 output_tokens: float, *, profile: Profile, dtypes: Dtypes = Dtypes(), billed_chips: float,
                 requests: float | None = None, arrivals: str = "spread") -> ClientSweep:
    """The client's numbers at each concurrency (None: default_concurrency), the estimate under
    `profile` and the roofline beside it, on one replica laid out as `layout`."""
    if arrivals not in ARRIVALS:
        raise TokenmathError(f"arrivals = {arrivals!r}; expected one of {', '.join(ARRIVALS)}")
    I, O = float(input_tokens), float(output_tokens)
    check_output_tokens(O)
    cap = max_batch(model, system, layout, I + O / 2, dtypes=dtypes,  # a serving engine's memory, as validation reads a run
                    cap=None if profile.is_roofline else profile.engine.max_batch, kv_budget=profile.engine.kv_budget)
    c = default_concurrency(cap, requests) if concurrency is None else check_concurrency(concurrency)
    kw = dict(dtypes=dtypes, batch_cap=cap, arrivals=arrivals, requests=requests)
    est = closed_loop(model, system, layout, c, I, O, kernels=profile.kernels, engine=profile.engine, **kw)
    bound = closed_loop(model, system, layout, c, I, O, kernels=None, **kw)
    cls = model_class(model)

    def band(x, sensitivity, at_bound):  # never past the roofline's client at the same concurrency
        r = profile.range_80(np.asarray(x, float), model_class=cls, sensitivity=sensitivity,
                             bound=np.asarray(at_bound, float))
        return None if r is None else tuple(np.asarray(v, float) for v in r)

    return ClientSweep(
        concurrency=c, estimate=est, roofline=bound, kv_cap=float(cap),
        ttft_range_80=band(est.ttft_s, 1.0, bound.ttft_s), tpot_range_80=band(est.tpot_s, 1.0, bound.tpot_s),
        output_range_80=band(np.asarray(est.output_tokens_per_s, float) / billed_chips, -1.0,
                             np.asarray(bound.output_tokens_per_s, float) / billed_chips),
        billed_chips=float(billed_chips), layout=layout, input_tokens=I, output_tokens=O,
        requests=None if requests is None else float(requests), arrivals=arrivals, label=profile.label,
        kv_budget=profile.engine.kv_budget)
