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

Between events the batch is fixed and T is affine in the step index, so the default
`method="events"` advances whole runs of decode steps in closed form (`_event_loop`, issue 13);
`method="steps"` is the reference loop, one pass per step (`_step_loop`). Both give the same
per-request times to float rounding; MAX_STEPS counts simulated steps in both.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .errors import TokenmathError
from .kvcache import kv_cache
from .layout import serving_hbm_bytes
from .parallelism import Layout
from .params import weight_bytes
from .roofline import resolve_dtypes, slopes
from .specs import ROOFLINE, Dtypes, Efficiency, Model, System


PERCENTILES_OVER = ("the requests completed, arrivals stopping at the run's duration and the queue then served (up"
                    " to 3 × the duration + 1 h): TTFT, latency; TPOT over those with more than one output token."
                    " output_tokens_per_s counts only what completes between the warm-up (10 % of the duration)"
                    " and the duration")


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
    ttft_each_s: np.ndarray | None = field(default=None, repr=False, compare=False)  # per request (per_request=True)
    tpot_each_s: np.ndarray | None = field(default=None, repr=False, compare=False)  # NaN for 1-token outputs
    # the one set of requests ttft_s, tpot_s and latency_s are percentiles of: the completed ones, so each
    # request's TTFT <= its latency, and so is every percentile (TPOT: those with more than one output token)
    percentile_requests: int = 0
    percentiles_over: str = PERCENTILES_OVER


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


# Bounds on the work one simulation may do (a step of the step loop is a Python loop pass, a few µs;
# the event loop spends that per event, and counts the steps it stands for against MAX_STEPS).
MAX_DURATION_S = 1e6  # simulated seconds (11.6 days) of generated arrivals (the work is rate × duration)
# Given arrival times, the work is bounded by their number and MAX_STEPS, not by the time they span;
# the window may then reach this far (317 years: float64 still resolves 2 µs at its end).
MAX_ARRIVALS_SPAN_S = 1e10
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
    most = MAX_DURATION_S if arrivals is None else MAX_ARRIVALS_SPAN_S
    if not (_finite_number(duration_s) and 0 < duration_s <= most):
        raise TokenmathError(f"duration = {duration_s!r} s must be > 0 and at most {most:g} s")
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


@dataclass(frozen=True)
class _Replica:
    """What a loop needs to know about the replica: caps, prefill policy and the affine step model."""
    cap: int  # sequences in one step
    kv_cap_tokens: float  # context tokens that fit beside the weights
    prefill: str
    chunk_tokens: int
    cadence_s: float | None
    overhead_s: float
    W: float  # weight-read seconds per step
    c0: float  # compute seconds per token at zero context
    c1: float  # ... per token per context token
    k1: float  # KV-read seconds per context token
    limit_s: float  # the loop stops after the step that passes this simulated time


@dataclass(frozen=True)
class _Trace:
    """Per-request times (NaN where never reached) and loop counters."""
    ttft: np.ndarray
    first: np.ndarray
    done: np.ndarray
    steps: int
    batch_acc: float


def _departure(t: float, cadence_s: float) -> float:
    """The first departure at or after t (steps start on multiples of the cadence). A step that ends
    on a departure to within rounding takes it: the tolerance is relative (~45 ulps of t/T), since an
    absolute 1e-12 periods is below one ulp once t/T passes ~4,500 and then a fifth of the departures
    were missed (issue 13: found comparing the closed form with the step loop)."""
    q = t / cadence_s
    return math.ceil(q - 1e-12 - 1e-14 * q) * cadence_s


def _step_loop(times: np.ndarray, ins: np.ndarray, outs: np.ndarray, r: _Replica) -> _Trace:
    """The reference: one loop pass per simulated step (`simulate(..., method="steps")`)."""
    n = times.size
    cap, kv_cap_tokens, prefill, chunk_tokens, cadence_s = r.cap, r.kv_cap_tokens, r.prefill, r.chunk_tokens, r.cadence_s
    overhead_s, W, c0, c1, k1, limit_s = r.overhead_s, r.W, r.c0, r.c1, r.k1, r.limit_s
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
        return _departure(now, cadence_s) if cadence_s is not None else now

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
        if t > limit_s:
            break

    return _Trace(ttft=ttft, first=first, done=done, steps=steps, batch_acc=batch_acc)


def _steps_until(a: float, b: float, x: float, strict: bool = False) -> int:
    """Smallest k >= 1 with a·k + b·k(k−1)/2 >= x (> x when `strict`): how many steps of a run
    whose j-th step lasts a + b·(j−1) it takes to reach x seconds (a > b/2 >= 0). The positive root
    of the quadratic, in the form that does not cancel, then a nudge for rounding."""
    q = a - 0.5 * b
    k = math.ceil(2.0 * x / (q + math.sqrt(q * q + 2.0 * b * x))) if x > 0 else 1
    if k < 1:
        k = 1
    if strict:
        while k > 1 and (k - 1) * a + b * ((k - 1) * (k - 2) // 2) > x:
            k -= 1
        while k * a + b * (k * (k - 1) // 2) <= x:
            k += 1
    else:
        while k > 1 and (k - 1) * a + b * ((k - 1) * (k - 2) // 2) >= x:
            k -= 1
        while k * a + b * (k * (k - 1) // 2) < x:
            k += 1
    return k


def _event_loop(times: np.ndarray, ins: np.ndarray, outs: np.ndarray, r: _Replica) -> _Trace:
    """The step loop, advancing whole runs of decode-only steps in closed form.

    Between events (an arrival that may join, a completion, a prefill chunk, the max() changing
    sides, the end of the run) no sequence joins or leaves, so the batch is fixed at R sequences
    whose summed context grows by R per step: both sides of max(compute, memory) are affine in the
    step index and, on one side of their crossing, the j-th step lasts T_j = a + b·(j−1). A run of
    k steps then lasts a·k + b·k(k−1)/2, and the steps to the next arrival solve a quadratic
    (`_steps_until`). Steps that prefill are taken one at a time, exactly as the step loop does.
    The work grows with requests and events, not with steps. (Written for speed: Python numbers,
    locals, `_steps_until` inline for arrivals; otherwise the step loop's logic, line for line.)"""
    n = times.size
    cap, kv_cap_tokens, chunked, cadence_s = r.cap, r.kv_cap_tokens, r.prefill == "chunked", r.cadence_s
    budget = r.chunk_tokens if chunked else math.inf
    overhead_s, W, c0, c1, k1, limit_s = r.overhead_s, r.W, r.c0, r.c1, r.k1, r.limit_s
    max_steps = MAX_STEPS
    at = times.tolist() + [math.inf]  # Python numbers: numpy scalars are slow one at a time
    I, O = ins.tolist(), outs.tolist()
    NEED = (ins + outs).astype(float).tolist()  # float + float is the interpreter's fast path
    CTX1 = (ins + 1).astype(float).tolist()
    first, done = [math.nan] * n, [math.nan] * n
    waiting: deque[int] = deque()
    running: list[tuple[int, int]] = []  # heap of (finish step, request)
    push, pop, ceil, sqrt = heapq.heappush, heapq.heappop, math.ceil, math.sqrt
    sum_ctx = kv_tokens = t = batch_acc = 0.0
    step = steps = nxt = pre_left = 0
    never = 1 << 62
    nobody: tuple[int, ...] = ()
    while True:
        while at[nxt] <= t:
            waiting.append(nxt)
            nxt += 1
        R = len(running)
        tokens_in = 0.0
        nj = 0  # len(joiners), counted: the loop below asks it once per admitted request
        if not waiting and R and cadence_s is None:  # the common case: a run, nobody to admit
            joiners = nobody
        else:
            if not waiting and not running:
                if nxt >= n:
                    break
                t = at[nxt]
                while at[nxt] <= t:
                    waiting.append(nxt)
                    nxt += 1
            if cadence_s is not None:
                t = _departure(t, cadence_s)
                while at[nxt] <= t:
                    waiting.append(nxt)
                    nxt += 1
            joiners = []  # which waiting requests can join (batch cap and KV cap)
        while waiting and R + nj < cap:
            i = waiting[0]
            need = NEED[i]
            if kv_tokens + need > kv_cap_tokens and (running or joiners):
                break
            remaining = pre_left if (pre_left and chunked) else I[i]
            if chunked and tokens_in + remaining > budget:
                if tokens_in < budget:  # start this one's prefill: a partial chunk
                    pre_left = int(remaining - (budget - tokens_in))
                    tokens_in = budget
                break
            tokens_in += remaining
            pre_left = 0
            joiners.append(waiting.popleft())
            nj += 1
            kv_tokens += need
        if tokens_in:  # a step that prefills (every joiner brings prompt tokens): one step
            decode = R if (chunked or not nj) else 0
            k = 1
            if cadence_s is not None:
                dt = cadence_s
            else:
                pctx = (tokens_in / (nj or 1)) / 2
                comp = (decode * (c0 + c1 * (sum_ctx / decode)) if decode else 0.0) + tokens_in * (c0 + c1 * pctx)
                mem = W + k1 * (sum_ctx + pctx * 2)
                dt = (comp if comp > mem else mem) + overhead_s
        else:  # R > 0 sequences decode, nobody joins: a run of steps T_j = a + b·(j−1)
            decode = R
            if cadence_s is not None:
                a, b, piece = cadence_s, 0.0, never
            else:
                comp = R * (c0 + c1 * (sum_ctx / R))
                mem = W + k1 * sum_ctx
                if comp >= mem:  # compute bound; memory catches up if its slope is steeper
                    a = comp + overhead_s
                    b = c1 * R
                    gap = comp - mem
                    slope = (k1 - c1) * R
                else:
                    a = mem + overhead_s
                    b = k1 * R
                    gap = mem - comp
                    slope = (c1 - k1) * R
                piece = int(gap / slope) + 1 if slope > 0 and gap < slope * never else never
            k = running[0][0] - step  # steps to the next completion ...
            if piece < k:  # ... or to where the other side of max() takes over
                k = piece
            dt = k * a + b * (k * (k - 1) // 2)
            x = at[nxt] - t
            if x <= dt and not waiting:  # an arrival during the run may join after it: _steps_until, inline
                q = a - 0.5 * b
                k = ceil(2.0 * x / (q + sqrt(q * q + 2.0 * b * x))) if x > 0 else 1
                if k < 1:
                    k = 1
                while k > 1 and (k - 1) * a + b * ((k - 1) * (k - 2) // 2) >= x:
                    k -= 1
                dt = k * a + b * (k * (k - 1) // 2)
                while dt < x:
                    k += 1
                    dt = k * a + b * (k * (k - 1) // 2)
            if t + dt > limit_s:
                k = min(k, _steps_until(a, b, limit_s - t, strict=True))
                dt = k * a + b * (k * (k - 1) // 2)
        t += dt
        steps += k
        if steps > max_steps:
            raise TokenmathError(_too_many_steps(max_steps + 1, n, outs))
        if decode:
            batch_acc += (decode + nj) * k
            step += k
            sum_ctx += decode * k
            while running and running[0][0] <= step:
                i = pop(running)[1]
                done[i] = t
                sum_ctx -= NEED[i]
                kv_tokens -= NEED[i]
        else:
            batch_acc += nj
        for i in joiners:
            first[i] = t
            if O[i] <= 1:
                done[i] = t
                kv_tokens -= NEED[i]
            else:
                push(running, (step + O[i] - 1, i))
                sum_ctx += CTX1[i]
        if t > limit_s:
            break
    first_a = np.array(first)
    return _Trace(ttft=first_a - times, first=first_a, done=np.array(done), steps=steps, batch_acc=batch_acc)


def simulate(model: Model, system: System, *, rate_per_s: float, duration_s: float, input_tokens=1000,
             output_tokens=200, chips: int | None = None, max_batch: int | None = None, prefill: str = "first",
             chunk_tokens: int = 2048, cadence_s: float | None = None, dtypes: Dtypes = Dtypes(),
             efficiency: Efficiency = ROOFLINE, overhead_s: float = 0.0, arrivals: np.ndarray | None = None,
             warmup_s: float | None = None, seed: int = 0, method: str = "events",
             lengths: tuple | None = None, per_request: bool = False, serving_memory: bool = True) -> SimResult:
    """Serve the arrivals on one replica; `method="events"` advances runs of decode steps in closed
    form (`_event_loop`), `method="steps"` runs the reference loop, one pass per step (`_step_loop`):
    the same answer to float rounding, the first in time that grows with requests, not steps.
    `lengths` = (input tokens, output tokens) per request, aligned with `arrivals` (a trace); else
    lengths are drawn from input_tokens / output_tokens. per_request=True keeps each request's TTFT
    and TPOT (ttft_each_s, tpot_each_s) for SLO attainment. serving_memory: the batch cap (when
    `max_batch` is None) from what a serving engine fills of each chip (layout.serving_hbm_bytes, the
    estimate's memory); False: all of HBM (the roofline's)."""
    if method not in ("events", "steps"):
        raise TokenmathError(f"method = {method!r}; expected 'events' or 'steps'")
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
        raw = np.asarray(arrivals, float)
        order = np.argsort(raw, kind="stable")
        times = raw[order]
        keep = times < duration_s
        times = times[keep]
    if lengths is not None:
        if arrivals is None:
            raise TokenmathError("per-request lengths need the arrival times they belong to (arrivals=)")
        li, lo = (np.asarray(x) for x in lengths)
        if li.shape != raw.shape or lo.shape != raw.shape:
            raise TokenmathError(f"per-request lengths: {li.size:,} inputs and {lo.size:,} outputs for {raw.size:,} arrivals; "
                                 "expected one of each per arrival")
        li, lo = li[order][keep], lo[order][keep]
        for what, x in (("input", li), ("output", lo)):
            if x.size and (not np.all(np.isfinite(x)) or x.min() < 1 or x.max() > MAX_TOKENS):
                raise TokenmathError(f"per-request {what} tokens must be whole numbers from 1 to {MAX_TOKENS:g}")
    n = times.size
    if n == 0:
        raise TokenmathError(f"no request arrives in the simulated {duration_s:g} s"
                             + (f" at {rate_per_s:g} requests per second" if arrivals is None else "")
                             + "; raise the rate or the duration")
    if lengths is not None:
        ins, outs = li.astype(int), lo.astype(int)
    else:
        ins = _lengths(input_tokens, n, rng)
        outs = _lengths(output_tokens, n, rng)

    # linearised step-time coefficients around the workload's contexts
    L_ref = float(np.mean(ins) + np.mean(outs))
    s0 = slopes(model, system, 0.0, chips=n_chips, dtypes=dtypes, efficiency=efficiency)
    s1 = slopes(model, system, L_ref, chips=n_chips, dtypes=dtypes, efficiency=efficiency)
    W = s0.weights_s
    floor = float(W) + float(overhead_s)
    if cadence_s is not None and cadence_s < floor * (1 - 1e-9):
        raise TokenmathError(f"cadence = {cadence_s:g} s is shorter than any step can be: reading the weights once takes"
                             f" {floor:.3g} s on {n_chips} × {system.name} (with the per-step overhead); give a cadence"
                             " of at least that")
    c0 = float(s0.compute_s_per_seq)
    c1 = (float(s1.compute_s_per_seq) - c0) / L_ref
    k1 = float(s1.kv_s_per_seq) / L_ref  # seconds of KV fetch per context token

    # KV-memory cap: sequences whose full context fits beside the weights in what a serving engine
    # fills on each chip (layout.serving_hbm_bytes: 90 % of HBM less the runtime's reserve), or in all
    # of HBM for the roofline
    weight, kv, *_ = resolve_dtypes(model, system, dtypes)
    per_chip = serving_hbm_bytes(system, Layout(tp=n_chips)) if serving_memory else system.chip.hbm_bytes
    free = per_chip * n_chips - weight_bytes(model, dtypes.weight)
    per_tok = float(kv_cache(model, L_ref, kv).stored_bytes) / L_ref
    if free <= 0:
        raise TokenmathError(f"{model.name} does not fit on {n_chips} × {system.name}")
    kv_cap_tokens = free / per_tok
    cap = int(max_batch) if max_batch else int(min(kv_cap_tokens // L_ref, MAX_BATCH))
    if cap < 1:
        raise TokenmathError("no sequence fits: raise chips or lower the context")
    _check_steps(n, outs, cap)

    replica = _Replica(cap=cap, kv_cap_tokens=kv_cap_tokens, prefill=prefill, chunk_tokens=int(chunk_tokens),
                       cadence_s=cadence_s, overhead_s=float(overhead_s), W=float(W), c0=c0, c1=c1, k1=k1,
                       limit_s=duration_s * 3 + 3600)
    trace = (_event_loop if method == "events" else _step_loop)(times, ins, outs, replica)
    ttft, first, done, steps, batch_acc = trace.ttft, trace.first, trace.done, trace.steps, trace.batch_acc

    ok = ~np.isnan(done)
    warm = duration_s * 0.1 if warmup_s is None else warmup_s
    window = ok & (done >= warm) & (done <= duration_s)
    span = max(min(duration_s, np.nanmax(done) if ok.any() else duration_s) - warm, 1e-9)
    multi = ok & (outs > 1)
    tpot = (done[multi] - first[multi]) / (outs[multi] - 1)
    return SimResult(
        requests=int(n), completed=int(ok.sum()), duration_s=float(duration_s), ttft_s=_pct(ttft[ok]),
        tpot_s=_pct(tpot), latency_s=_pct((done - times)[ok]),
        output_tokens_per_s=float(outs[window].sum() / span), mean_batch=batch_acc / max(steps, 1), steps=steps,
        max_batch=cap, prefill=prefill, cadence_s=cadence_s,
        ttft_each_s=ttft.copy() if per_request else None,
        tpot_each_s=np.where(ok & (outs > 1), (done - first) / np.maximum(outs - 1, 1), np.nan) if per_request else None,
        percentile_requests=int(ok.sum()),
    )


def _simulate_one(kwargs: dict, model: Model, system: System) -> SimResult:
    return simulate(model, system, **kwargs)


def simulate_many(model: Model, system: System, runs: list[dict], *, scheduler: str | None = None,
                  progress=None) -> list[SimResult]:
    """A sweep of simulations (loads, caps, prefill policies), in-process or on Dask. Every run's
    arguments are checked here first, so a bad one is refused before any scheduler is reached."""
    import inspect

    from .parallel import run_tasks

    sig = inspect.signature(simulate)
    checked = inspect.signature(_check_inputs).parameters
    for run in runs:
        args = sig.bind(model, system, **run)
        args.apply_defaults()
        _check_inputs(**{k: args.arguments[k] for k in checked})

    return run_tasks(_simulate_one, runs, scheduler=scheduler, progress=progress,
                     label=lambda kw: ", ".join(f"{k}={v}" for k, v in kw.items()), model=model, system=system)
