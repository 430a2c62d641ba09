"""A discrete-event simulation of one serving replica, to check the analytic answers.

Requests arrive (Poisson, or a given list of times) with input/output lengths drawn from the
workload; the replica runs continuous batching under a batch cap and a KV-memory cap, with
prefill either as its own step before decoding resumes ("first") or folded into decode steps up to
a token budget ("chunked"). Each step takes the roofline time of what it contains (optionally a
calibrated estimate):

    T = max( (decode seqs + prefill tokens) · c(L̄),  W + KV bytes read / BW ) + overhead

with c and the KV read linearised in context around the workload (exact for full attention).
`cadence_s` instead makes every step last exactly T and start on multiples of T: the lecture's
"a train departs every T" (wait ≤ T, first token within 2T).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .errors import TokenmathError
from .kvcache import kv_cache
from .params import weight_bytes
from .roofline import resolve_dtypes, slopes
from .specs import ROOFLINE, Dtypes, Efficiency, Model, System


@dataclass(frozen=True)
class SimResult:
    requests: int  # arrived
    completed: int
    duration_s: float
    ttft_s: dict[str, float]  # p50 / p90 / p99 / mean
    tpot_s: dict[str, float]  # time per output token after the first
    latency_s: dict[str, float]  # arrival to last token
    output_tokens_per_s: float  # completed output tokens per second of simulated time (after warm-up)
    mean_batch: float
    steps: int
    max_batch: int
    prefill: str
    cadence_s: float | None


def _pct(x: np.ndarray) -> dict[str, float]:
    if x.size == 0:
        return {"p50": math.nan, "p90": math.nan, "p99": math.nan, "mean": math.nan}
    return {"p50": float(np.percentile(x, 50)), "p90": float(np.percentile(x, 90)),
            "p99": float(np.percentile(x, 99)), "mean": float(x.mean())}


def _lengths(spec, n: int, rng: np.random.Generator) -> np.ndarray:
    if np.isscalar(spec):
        if not spec >= 1:
            raise TokenmathError(f"token count {spec!r} must be >= 1")
        return np.full(n, int(spec))
    arr = np.asarray(spec, dtype=int)
    if arr.size == 0 or np.any(arr < 1):
        raise TokenmathError("token-count samples must be a non-empty list of counts >= 1")
    return rng.choice(arr, size=n)


# Bounds on the work one simulation may do (each step is a Python loop iteration, a few µs).
MAX_DURATION_S = 1e6  # simulated seconds (11.6 days)
MAX_REQUESTS = 1_000_000  # arrivals in one run
MAX_TOKENS = 1e8  # input or output tokens of one request
MAX_BATCH = 10_000_000  # sequences in one step
MAX_STEPS = 5_000_000  # simulated steps in one run


def _finite_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)


def _check_inputs(*, rate_per_s, duration_s, input_tokens, output_tokens, max_batch, prefill, chunk_tokens,
                  cadence_s, overhead_s, arrivals) -> None:
    """Every argument of `simulate`, checked before any work: finite, in range, and bounded so that one
    call cannot run for hours or fill memory."""
    if arrivals is None and not (_finite_number(rate_per_s) and rate_per_s > 0):
        raise TokenmathError(f"arrival rate = {rate_per_s!r} must be a positive number of requests per second")
    if not (_finite_number(duration_s) and 0 < duration_s <= MAX_DURATION_S):
        raise TokenmathError(f"duration = {duration_s!r} s must be > 0 and at most {MAX_DURATION_S:g} s")
    if arrivals is None and rate_per_s * duration_s > MAX_REQUESTS:
        raise TokenmathError(f"arrival rate {rate_per_s:g}/s × duration {duration_s:g} s = {rate_per_s * duration_s:.3g}"
                             f" requests, beyond the {MAX_REQUESTS:,} one simulation runs; lower the rate or the duration")
    if arrivals is not None and np.size(arrivals) > MAX_REQUESTS:
        raise TokenmathError(f"{np.size(arrivals):,} arrival times, beyond the {MAX_REQUESTS:,} one simulation runs")
    for name, spec in (("input tokens", input_tokens), ("output tokens", output_tokens)):
        values = [spec] if np.isscalar(spec) else list(np.ravel(spec))
        if not values or not all(_finite_number(v) and v >= 1 and float(v).is_integer() and v <= MAX_TOKENS for v in values):
            raise TokenmathError(f"{name} = {spec!r} must be whole numbers between 1 and {MAX_TOKENS:g}")
    if prefill not in ("first", "chunked"):
        raise TokenmathError(f"prefill = {prefill!r}; expected 'first' or 'chunked'")
    if not (_finite_number(chunk_tokens) and float(chunk_tokens).is_integer() and 1 <= chunk_tokens <= MAX_TOKENS):
        raise TokenmathError(f"chunk tokens = {chunk_tokens!r} must be a whole number between 1 and {MAX_TOKENS:g}")
    if max_batch is not None and not (_finite_number(max_batch) and float(max_batch).is_integer()
                                      and 1 <= max_batch <= MAX_BATCH):
        raise TokenmathError(f"max batch = {max_batch!r} must be a whole number between 1 and {MAX_BATCH:,}")
    if cadence_s is not None and not (_finite_number(cadence_s) and cadence_s > 0):
        raise TokenmathError(f"cadence = {cadence_s!r} s must be a positive number")
    if not (_finite_number(overhead_s) and overhead_s >= 0):
        raise TokenmathError(f"overhead = {overhead_s!r} s must be a number >= 0")


def _check_steps(n, outs, cap) -> None:
    """Refuse up front a run that must take more than MAX_STEPS steps: each decode step emits at
    most `cap` tokens (the batch cap), so the outputs alone need sum(outs)/cap steps. The loop
    itself stops at MAX_STEPS with the same sentence, so no run does unbounded work."""
    if n == 0:
        return
    need = float(np.sum(outs.astype(float))) / cap
    if need > MAX_STEPS:
        raise TokenmathError(_too_many_steps(need, n, outs))


def _too_many_steps(steps, n, outs) -> str:
    return (f"this simulation needs at least {steps:.3g} steps ({n:,} requests of up to {int(outs.max()):,} output"
            f" tokens), beyond the {MAX_STEPS:,} tokenmath runs; lower the rate, the duration or the output tokens")


def simulate(model: Model, system: System, *, rate_per_s: float, duration_s: float, input_tokens=1000,
             output_tokens=200, chips: int | None = None, max_batch: int | None = None, prefill: str = "first",
             chunk_tokens: int = 2048, cadence_s: float | None = None, dtypes: Dtypes = Dtypes(),
             efficiency: Efficiency = ROOFLINE, overhead_s: float = 0.0, arrivals: np.ndarray | None = None,
             warmup_s: float | None = None, seed: int = 0) -> SimResult:
    _check_inputs(rate_per_s=rate_per_s, duration_s=duration_s, input_tokens=input_tokens,
                  output_tokens=output_tokens, max_batch=max_batch, prefill=prefill, chunk_tokens=chunk_tokens,
                  cadence_s=cadence_s, overhead_s=overhead_s, arrivals=arrivals)
    n_chips = system.scaleup_chips if chips is None else int(chips)
    rng = np.random.default_rng(seed)
    if arrivals is None:
        gaps = rng.exponential(1.0 / rate_per_s, size=int(rate_per_s * duration_s * 1.2) + 100)
        times = np.cumsum(gaps)
        times = times[times < duration_s]
    else:
        times = np.sort(np.asarray(arrivals, float))
        times = times[times < duration_s]
    n = times.size
    if n == 0:
        raise TokenmathError(f"no request arrives in the simulated {duration_s:g} s"
                             + (f" at {rate_per_s:g} requests per second" if arrivals is None else "")
                             + "; raise the rate or the duration")
    ins = _lengths(input_tokens, n, rng)
    outs = _lengths(output_tokens, n, rng)

    # linearised step-time coefficients around the workload's contexts
    L_ref = float(np.mean(ins) + np.mean(outs))
    s0 = slopes(model, system, 0.0, chips=n_chips, dtypes=dtypes, efficiency=efficiency)
    s1 = slopes(model, system, L_ref, chips=n_chips, dtypes=dtypes, efficiency=efficiency)
    W = s0.weights_s
    c0 = float(s0.compute_s_per_seq)
    c1 = (float(s1.compute_s_per_seq) - c0) / L_ref
    k1 = float(s1.kv_s_per_seq) / L_ref  # seconds of KV fetch per context token

    # KV-memory cap: sequences whose full context fits beside the weights
    weight, kv, *_ = resolve_dtypes(model, system, dtypes)
    free = system.chip.hbm_bytes * n_chips - weight_bytes(model, dtypes.weight)
    per_tok = float(kv_cache(model, L_ref, kv).stored_bytes) / L_ref
    if free <= 0:
        raise TokenmathError(f"{model.name} does not fit on {n_chips} × {system.name}")
    kv_cap_tokens = free / per_tok
    cap = int(max_batch) if max_batch else int(min(kv_cap_tokens // L_ref, MAX_BATCH))
    if cap < 1:
        raise TokenmathError("no sequence fits: raise chips or lower the context")
    _check_steps(n, outs, cap)

    ttft = np.full(n, np.nan)
    first = np.full(n, np.nan)
    done = np.full(n, np.nan)
    waiting: deque[int] = deque()
    running: list[tuple[int, int]] = []  # heap of (finish step, request)
    sum_ctx = 0.0
    kv_tokens = 0.0
    t = 0.0
    step = 0
    steps = 0
    batch_acc = 0.0
    nxt = 0
    pre_left = 0  # prefill tokens still to process for the head of `waiting` (chunked)

    def admit_until(now: float):
        nonlocal nxt
        while nxt < n and times[nxt] <= now:
            waiting.append(nxt)
            nxt += 1

    def step_time(decode: int, ptoks: float, pctx: float) -> float:
        if cadence_s is not None:
            return cadence_s
        Lbar = sum_ctx / decode if decode else 0.0
        comp = decode * (c0 + c1 * Lbar) + ptoks * (c0 + c1 * pctx)
        mem = W + k1 * (sum_ctx + (pctx * 2 if ptoks else 0.0))
        return max(comp, mem) + overhead_s

    def start_of_step(now: float) -> float:
        return math.ceil(now / cadence_s - 1e-12) * cadence_s if cadence_s is not None else now

    while True:
        admit_until(t)
        if not waiting and not running:
            if nxt >= n:
                break
            t = max(t, times[nxt])
            admit_until(t)
        t = start_of_step(t)
        admit_until(t)
        # which waiting requests can join (batch cap and KV cap)
        joiners = []
        budget = chunk_tokens if prefill == "chunked" else math.inf
        tokens_in = 0.0
        while waiting and len(running) + len(joiners) < cap:
            i = waiting[0]
            need = ins[i] + outs[i]
            if kv_tokens + need > kv_cap_tokens and (running or joiners):
                break
            remaining = pre_left if (pre_left and prefill == "chunked") else ins[i]
            if prefill == "chunked" and tokens_in + remaining > budget:
                if tokens_in < budget:  # start this one's prefill: a partial chunk
                    pre_left = int(remaining - (budget - tokens_in))
                    tokens_in = budget
                break
            tokens_in += remaining
            pre_left = 0
            joiners.append(waiting.popleft())
            kv_tokens += need
        decode = len(running) if (prefill == "chunked" or not joiners) else 0
        pctx = (tokens_in / max(len(joiners), 1)) / 2 if tokens_in else 0.0
        dt = step_time(decode, tokens_in, pctx)
        t += dt
        steps += 1
        if steps > MAX_STEPS:
            raise TokenmathError(_too_many_steps(steps, n, outs))
        batch_acc += decode + len(joiners)
        if decode:
            step += 1
            sum_ctx += decode
            while running and running[0][0] <= step:
                _, i = heapq.heappop(running)
                done[i] = t
                sum_ctx -= ins[i] + outs[i]
                kv_tokens -= ins[i] + outs[i]
        for i in joiners:
            first[i] = t
            ttft[i] = t - times[i]
            if outs[i] <= 1:
                done[i] = t
                kv_tokens -= ins[i] + outs[i]
            else:
                heapq.heappush(running, (step + outs[i] - 1, i))
                sum_ctx += ins[i] + 1
        if t > duration_s * 3 + 3600:
            break

    ok = ~np.isnan(done)
    warm = duration_s * 0.1 if warmup_s is None else warmup_s
    window = ok & (done >= warm) & (done <= duration_s)
    span = max(min(duration_s, np.nanmax(done) if ok.any() else duration_s) - warm, 1e-9)
    multi = ok & (outs > 1)
    tpot = (done[multi] - first[multi]) / (outs[multi] - 1)
    return SimResult(
        requests=int(n), completed=int(ok.sum()), duration_s=float(duration_s), ttft_s=_pct(ttft[~np.isnan(ttft)]),
        tpot_s=_pct(tpot), latency_s=_pct((done - times)[ok]),
        output_tokens_per_s=float(outs[window].sum() / span), mean_batch=batch_acc / max(steps, 1), steps=steps,
        max_batch=cap, prefill=prefill, cadence_s=cadence_s,
    )


def _simulate_one(kwargs: dict, model: Model, system: System) -> SimResult:
    return simulate(model, system, **kwargs)


def simulate_many(model: Model, system: System, runs: list[dict], *, scheduler: str | None = None,
                  progress=None) -> list[SimResult]:
    """A sweep of simulations (loads, caps, prefill policies), in-process or on Dask."""
    from .parallel import run_tasks

    return run_tasks(_simulate_one, runs, scheduler=scheduler, progress=progress,
                     label=lambda kw: ", ".join(f"{k}={v}" for k, v in kw.items()), model=model, system=system)
