"""Serving economics, solved in closed form from the roofline step (the lecture's first half).

For one replica on `chips` chips, a decode step of B sequences at context L takes
    T(B) = max( B·c(L),  W + B·k(L) )
with  W    = weight bytes read / (chips · BW)                      (weight fetch, shared by the batch)
      c(L) = (2·N_matmul + attention FLOPs(L)) / (chips · FLOP/s)   (compute per sequence)
      k(L) = KV bytes read(L) / (chips · BW)                        (KV fetch per sequence)
and costs T(B)/B × chips × $/s per token. Each answer below solves this for one variable exactly;
none is read off a grid (the tests check them against grids).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import TokenmathError
from .kvcache import kv_cache
from .params import param_counts, routed_expert_bytes, weight_bytes
from .roofline import StepTime, hardware_ratio, hbm_drain_s, resolve_dtypes, slopes, step_time
from .specs import ROOFLINE, Dtypes, Efficiency, Model, System

# --------------------------------------------------------------------------------------------
# Floors and balance points
# --------------------------------------------------------------------------------------------


def latency_floor_s(model: Model, system: System, *, chips: int | None = None, dtypes: Dtypes = Dtypes(),
                    efficiency: Efficiency = ROOFLINE, expert_fetch: str = "all") -> float:
    """The fastest a decode step can be: all weights streamed once over the chips' aggregate HBM
    bandwidth, N_total·b_w / (chips·BW). Batch size cannot beat it; only more chips (a larger
    scale-up domain) or narrower weights can. With expert_fetch="expected" (a step streams only
    the experts its tokens touch) the floor is a single token's step: the dense weights and k of
    the E routed experts — the floor of that mode, below which no batch goes."""
    p = slopes(model, system, 0, chips=chips, dtypes=dtypes, efficiency=efficiency)
    if expert_fetch == "all" or model.moe is None:
        return p.weights_s
    if expert_fetch != "expected":
        raise TokenmathError(f"expert_fetch = {expert_fetch!r}; expected 'all' or 'expected'")
    routed = routed_expert_bytes(model, dtypes.weight)
    return p.weights_s * (p.weights_bytes - routed * (1 - model.moe.k / model.moe.n_experts)) / p.weights_bytes


def balance_batch(model: Model, system: System, *, dtypes: Dtypes = Dtypes(), efficiency: Efficiency = ROOFLINE) -> float:
    """B* where weight-fetch time equals compute time, KV ignored:
    B* = W / c(0) = [FLOPs·b_w / (2·BW)] × N_total/N_active (exactly, with N counted as read and
    multiplied). Independent of the chip count."""
    p = slopes(model, system, 0, chips=1, dtypes=dtypes, efficiency=efficiency)
    return float(p.weights_s / p.compute_s_per_seq)


def balance_batch_with_kv(model: Model, system: System, context, *, dtypes: Dtypes = Dtypes(),
                          efficiency: Efficiency = ROOFLINE, attention_flops: bool = True):
    """B* with KV traffic at context L: B·c = W + B·k  =>  B* = W / (c − k). None (NaN in arrays)
    when k ≥ c: past that context decode is memory bound at every batch."""
    p = slopes(model, system, context, chips=1, dtypes=dtypes, efficiency=efficiency, attention_flops=attention_flops)
    gap = np.asarray(p.compute_s_per_seq - p.kv_s_per_seq, dtype=float)
    with np.errstate(divide="ignore"):
        out = np.where(gap > 0, p.weights_s / np.where(gap > 0, gap, 1.0), np.nan)
    if out.ndim == 0:
        return None if np.isnan(out) else float(out)
    return out


def cost_floor_usd_per_mtok(model: Model, system: System, context=0, *, dtypes: Dtypes = Dtypes(),
                            efficiency: Efficiency = ROOFLINE, usd_per_chip_hour: float | None = None,
                            attention_flops: bool = True):
    """$/Mtok once the weights are amortised over an unbounded batch: max(c, k) per sequence-token
    times the chips' $/s. Independent of the chip count. None if the system has no price."""
    price = system.usd_per_chip_hour if usd_per_chip_hour is None else usd_per_chip_hour
    if price is None:
        return None
    p = slopes(model, system, context, chips=1, dtypes=dtypes, efficiency=efficiency, attention_flops=attention_flops)
    return _s(np.maximum(p.compute_s_per_seq, p.kv_s_per_seq) * price / 3600.0 * 1e6)


def batch_to_fill_hbm(model: Model, system: System, context, *, chips: int | None = None,
                      dtypes: Dtypes = Dtypes()):
    """Largest batch whose KV at context L fits beside the weights in the chips' HBM (0 if the
    weights alone do not fit)."""
    n = system.scaleup_chips if chips is None else int(chips)
    weight, kv, *_ = resolve_dtypes(model, system, dtypes)
    free = system.chip.hbm_bytes * n - weight_bytes(model, dtypes.weight)
    per_seq = np.asarray(kv_cache(model, np.maximum(context, 1), kv).stored_bytes)
    return _s(np.floor(np.maximum(free, 0) / per_seq))


def balance_context(model: Model, system: System, batch: float | None = None, *, chips: int | None = None,
                    dtypes: Dtypes = Dtypes(), efficiency: Efficiency = ROOFLINE,
                    attention_flops: bool = True) -> float | None:
    """The context L at which memory time (weights + KV) equals compute time for `batch` sequences:
    B·c(L) = W + B·k(L). With batch None the weights are amortised (B → ∞): c(L) = k(L), the
    lecture's crossover L* = 2·N_active·BW / (FLOPs · kv bytes/token) when attention FLOPs are
    dropped. Returns 0 when memory already binds at L = 0 and None when compute binds at every L.

    The difference is piecewise linear in L (breakpoints at sliding windows and the sparse top-k),
    so the root is found exactly by linear interpolation inside the segment where it changes sign
    (by bisection to machine precision for the lecture's √L sparse sketch)."""
    n = system.scaleup_chips if chips is None else int(chips)

    def f(L):
        p = slopes(model, system, L, chips=n, dtypes=dtypes, efficiency=efficiency, attention_flops=attention_flops)
        if batch is None:
            return np.asarray(p.compute_s_per_seq - p.kv_s_per_seq, dtype=float)
        return np.asarray(batch * p.compute_s_per_seq - p.weights_s - batch * p.kv_s_per_seq, dtype=float)

    if batch is not None and not (batch >= 1 and math.isfinite(batch)):
        raise TokenmathError(f"batch = {batch!r} must be a finite number >= 1")
    points = sorted({0.0, 1e15, *[float(w) for w in _breakpoints(model)]})
    values = f(np.array(points))
    if values[0] <= 0:
        return 0.0
    if values[-1] > 0:
        return None
    i = int(np.argmax(values <= 0))
    lo, hi, flo, fhi = points[i - 1], points[i], values[i - 1], values[i]
    if model.sparse_mode == "sqrt" and _has_sparse(model):
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if float(f(mid)) > 0:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-9 * hi:
                break
        return float(0.5 * (lo + hi))
    return float(lo + (hi - lo) * flo / (flo - fhi))


def _breakpoints(model: Model) -> list[float]:
    if model.is_totals_only:
        return [model.sparse_topk_given] if model.sparse_topk_given else []
    pts = [w for w in model.layer_window if w is not None]
    if model.attention.index_topk:
        pts.append(model.attention.index_topk)
        pts += [min(w, model.attention.index_topk) for w in model.layer_window if w is not None]
    return pts


def _has_sparse(model: Model) -> bool:
    return bool(model.sparse_topk_given if model.is_totals_only else model.attention.index_topk)


@dataclass(frozen=True)
class Balance:
    """Every floor and balance point of a model on a system, in one record."""

    chips: int
    context: float
    batch: float | None  # the batch balance_context_with_weights was solved at (None: not asked)
    balance_batch: float
    balance_batch_with_kv: float | None
    balance_context: float | None  # KV fetch = compute (the batch cancels); None: compute binds at every L
    balance_context_with_weights: float | None  # weights + KV fetch = compute at `batch`
    latency_floor_s: float
    cost_floor_usd_per_mtok: float | None
    hbm_drain_s: float
    batch_to_fill_hbm: float
    sparsity: float  # N_total / N_active
    expert_ratio: float | None  # E / k, which the lecture's "sparsity 8" confused with the above
    flops_per_byte: float  # FLOP/s ÷ HBM B/s of the compute dtype
    hardware_ratio: float  # FLOP/s × b_w ÷ (2·BW)
    operating_batch: tuple[float, float] = ()  # the lecture's "serve 2–3× above the balance point" (19:31)


def operating_batch(model: Model, system: System, *, dtypes: Dtypes = Dtypes(),
                    efficiency: Efficiency = ROOFLINE) -> tuple[float, float]:
    """The lecture's operating batch (19:31–19:47): serve 2–3× above the balance batch B*, since
    real efficiency falls short of the roofline — (2·B*, 3·B*). The lecture's own "2–3k tokens per
    batch" is 2–3 × its 2,400 read as thousands; with B* counted exactly it is 2–3 × B* sequences."""
    b = balance_batch(model, system, dtypes=dtypes, efficiency=efficiency)
    return (2.0 * b, 3.0 * b)


def balance(model: Model, system: System, context=4096, *, batch: float | None = None, chips: int | None = None,
            dtypes: Dtypes = Dtypes(), efficiency: Efficiency = ROOFLINE, attention_flops: bool = True) -> Balance:
    """All the closed forms at once (what `tokenmath balance` prints)."""
    n = system.scaleup_chips if chips is None else int(chips)
    weight, kv, compute, cls = resolve_dtypes(model, system, dtypes)
    kw = dict(dtypes=dtypes, efficiency=efficiency)
    pc = param_counts(model)
    return Balance(
        chips=n, context=float(context), batch=None if batch is None else float(batch),
        balance_batch=balance_batch(model, system, **kw),
        balance_batch_with_kv=balance_batch_with_kv(model, system, context, attention_flops=attention_flops, **kw),
        balance_context=balance_context(model, system, None, chips=n, attention_flops=attention_flops, **kw),
        balance_context_with_weights=None if batch is None else balance_context(
            model, system, batch, chips=n, attention_flops=attention_flops, **kw),
        latency_floor_s=latency_floor_s(model, system, chips=n, **kw),
        cost_floor_usd_per_mtok=cost_floor_usd_per_mtok(model, system, context, attention_flops=attention_flops, **kw),
        hbm_drain_s=hbm_drain_s(system),
        batch_to_fill_hbm=batch_to_fill_hbm(model, system, context, chips=n, dtypes=dtypes),
        sparsity=pc.sparsity,
        expert_ratio=(model.moe.n_experts / model.moe.k) if model.moe else None,
        flops_per_byte=float(system.chip.flops_per_s(cls)) / system.chip.hbm_bytes_per_s,
        hardware_ratio=hardware_ratio(system, weight, compute),
        operating_batch=operating_batch(model, system, dtypes=dtypes, efficiency=efficiency),
    )


# --------------------------------------------------------------------------------------------
# Curves (one broadcast call; each point keeps its parts)
# --------------------------------------------------------------------------------------------


def curve(model: Model, system: System, *, over: str = "batch", batch=None, context=4096, points: int = 60,
          chips: int | None = None, dtypes: Dtypes = Dtypes(), efficiency: Efficiency = ROOFLINE,
          usd_per_chip_hour: float | None = None, attention_flops: bool = True) -> StepTime:
    """Step latency, tokens/s per chip and per user, and $/Mtok over batch (at `context`) or over
    context (at `batch`), on a log grid wide enough to show every regime: batch from 1 to 10× the
    larger of B* and the batch that fills HBM; context from 1 to 10× the model's max context."""
    n = system.scaleup_chips if chips is None else int(chips)
    if points < 2 or points > 1_000_000:
        raise TokenmathError(f"points = {points} must be between 2 and 1,000,000")
    kw = dict(chips=n, dtypes=dtypes, efficiency=efficiency, usd_per_chip_hour=usd_per_chip_hour,
              attention_flops=attention_flops)
    if over == "batch":
        top = max(balance_batch(model, system, dtypes=dtypes, efficiency=efficiency),
                  batch_to_fill_hbm(model, system, context, chips=n, dtypes=dtypes), 10.0)
        grid = np.unique(np.round(np.geomspace(1, 10 * top, points)))
        return step_time(model, system, grid, context, **kw)
    if over == "context":
        b = balance_batch(model, system, dtypes=dtypes, efficiency=efficiency) if batch is None else batch
        top = 10.0 * (model.max_context or 1_000_000)
        grid = np.unique(np.round(np.geomspace(1, top, points)))
        return step_time(model, system, b, grid, **kw)
    raise TokenmathError(f"over = {over!r}; expected 'batch' or 'context'")


# --------------------------------------------------------------------------------------------
# Fast mode and slow mode
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FastMode:
    """Price and speed relative to the cost-optimal operating point, as batch shrinks.

    speedup = tokens/s per user ÷ the reference's; price_multiplier = $/token ÷ the reference's.
    """

    reference_batch: float
    reference_step_s: float
    reference_usd_per_mtok: float | None
    batch: float | None  # the answer for the requested speedup / price (None if unreachable)
    speedup: float | None
    price_multiplier: float | None
    max_speedup: float  # batch 1: the best a batch cut can do on these chips
    max_saving: float  # reference cost ÷ cost floor: the most a slow mode can save
    latency_floor_s: float
    points: StepTime  # the frontier, batch 1 .. reference
    frontier_speedup: np.ndarray
    frontier_price_multiplier: np.ndarray
    chips: int
    chips_lever: tuple[tuple[int, float], ...]  # (chips per replica, max speedup vs the reference)


def reference_batch(model: Model, system: System, context, *, chips: int | None = None, dtypes: Dtypes = Dtypes(),
                    efficiency: Efficiency = ROOFLINE) -> float:
    """The cost-optimal decode batch: cost per token falls with B until the balance batch with KV
    (then it is flat) or until HBM is full, whichever comes first."""
    fill = batch_to_fill_hbm(model, system, context, chips=chips, dtypes=dtypes)
    if fill < 1:
        raise TokenmathError(
            f"{model.name} does not fit on {chips or system.scaleup_chips} × {system.name} with one sequence of "
            f"{context:,.0f} tokens; use more chips or narrower dtypes"
        )
    bkv = balance_batch_with_kv(model, system, context, dtypes=dtypes, efficiency=efficiency)
    return float(fill if bkv is None else min(math.ceil(bkv), fill))


def batch_for_step(s: "object", step_s: float) -> float | None:
    """Invert T(B) = max(B·c, W + B·k) exactly: T is increasing and piecewise linear, so the
    inverse of a max is the min of the inverses: B = min(T/c, (T − W)/k). None if T < W."""
    W, c, k = s.weights_s, float(s.compute_s_per_seq), float(s.kv_s_per_seq)
    if step_s < W:
        return None
    by_compute = step_s / c
    by_memory = (step_s - W) / k if k > 0 else math.inf
    return min(by_compute, by_memory)


def batch_for_cost(s: "object", cost_s_per_token: float) -> float | None:
    """Invert per-token time T(B)/B = max(c, W/B + k) exactly: B = W / (t − k), valid when the
    target t exceeds both c and k (the cost floor); None below the floor."""
    W, c, k = s.weights_s, float(s.compute_s_per_seq), float(s.kv_s_per_seq)
    if cost_s_per_token <= max(c, k):
        return None
    return W / (cost_s_per_token - k)


def fast_mode(model: Model, system: System, context=4096, *, speedup: float | None = None,
              price_multiplier: float | None = None, reference: float | None = None, chips: int | None = None,
              dtypes: Dtypes = Dtypes(), efficiency: Efficiency = ROOFLINE, points: int = 50) -> FastMode:
    """The price/speed frontier of shrinking the batch below the cost-optimal point (fast mode),
    the answer for a target `speedup` or `price_multiplier`, and the limits: the largest speed-up
    a batch cut can buy (at batch 1, against the latency floor) and the most a slow mode can save
    (the reference cost against the cost floor). The second lever, more chips per replica, is in
    `chips_lever`: the speed-up at batch 1 for each power-of-two chip count up to the domain."""
    if speedup is not None and price_multiplier is not None:
        raise TokenmathError("give --speedup or --price-multiplier, not both")
    if speedup is not None and not (speedup > 0 and math.isfinite(speedup)):
        raise TokenmathError(f"speedup = {speedup!r} must be a positive number")
    if price_multiplier is not None and not (price_multiplier > 0 and math.isfinite(price_multiplier)):
        raise TokenmathError(f"price multiplier = {price_multiplier!r} must be a positive number")
    n = system.scaleup_chips if chips is None else int(chips)
    s = slopes(model, system, context, chips=n, dtypes=dtypes, efficiency=efficiency)
    ref = reference if reference is not None else reference_batch(model, system, context, chips=n, dtypes=dtypes,
                                                                  efficiency=efficiency)
    if ref < 1:
        raise TokenmathError(f"reference batch = {ref!r} must be >= 1")
    ref_st = step_time(model, system, ref, context, chips=n, dtypes=dtypes, efficiency=efficiency)
    T_ref, per_tok_ref = ref_st.step_s, ref_st.step_s / ref

    def step(B):
        return np.maximum(B * s.compute_s_per_seq, s.weights_s + B * s.kv_s_per_seq)

    answer_b = answer_speed = answer_price = None
    if speedup is not None:
        b = batch_for_step(s, T_ref / speedup)
        if b is not None and b >= 1:
            answer_b = b
    elif price_multiplier is not None:
        b = batch_for_cost(s, per_tok_ref * price_multiplier)
        if b is None:  # at or below the cost floor: any batch >= B*_kv; report the reference
            b = ref if price_multiplier >= 1 else None
        if b is not None:
            answer_b = max(1.0, b)
    if answer_b is not None and answer_b > ref:
        fill = batch_to_fill_hbm(model, system, context, chips=n, dtypes=dtypes)
        if answer_b > fill:  # a slow mode cannot hold more sequences than HBM does
            t_fill = float(step(max(fill, 1.0)))
            what = f"speedup {speedup:g}" if speedup is not None else f"price multiplier {price_multiplier:g}"
            raise TokenmathError(
                f"{what} needs a batch of {answer_b:,.0f}, more than the {fill:,.0f} sequences that fit in "
                f"{n} × {system.name}'s HBM at context {context:,.0f}; the slowest reachable is "
                f"{T_ref / t_fill:.3g}× the speed (batch {fill:,.0f})")
    if answer_b is not None:
        T = float(step(answer_b))
        answer_speed, answer_price = T_ref / T, (T / answer_b) / per_tok_ref

    grid = np.unique(np.concatenate([np.geomspace(1, ref, points), [ref]]))
    pts = step_time(model, system, grid, context, chips=n, dtypes=dtypes, efficiency=efficiency)
    frontier_speedup = T_ref / pts.step_s
    frontier_price = (pts.step_s / grid) / per_tok_ref

    floor_cost = max(float(s.compute_s_per_seq), float(s.kv_s_per_seq))
    lever = []
    c = 1
    while c <= system.scaleup_chips:
        if batch_to_fill_hbm(model, system, context, chips=c, dtypes=dtypes) >= 1:
            t1 = step_time(model, system, 1, context, chips=c, dtypes=dtypes, efficiency=efficiency).step_s
            lever.append((c, T_ref / t1))
        c = c * 2 if c * 2 <= system.scaleup_chips or c == system.scaleup_chips else system.scaleup_chips
    return FastMode(
        reference_batch=ref, reference_step_s=T_ref, reference_usd_per_mtok=ref_st.usd_per_mtok,
        batch=answer_b, speedup=answer_speed, price_multiplier=answer_price,
        max_speedup=float(T_ref / step(1.0)), max_saving=float(per_tok_ref / floor_cost),
        latency_floor_s=s.weights_s, points=pts, frontier_speedup=frontier_speedup,
        frontier_price_multiplier=frontier_price, chips=n, chips_lever=tuple(lever),
    )


# --------------------------------------------------------------------------------------------
# Speculative decoding / multi-token prediction
# --------------------------------------------------------------------------------------------


def expected_tokens_per_verify(draft_tokens: int, acceptance: float) -> float:
    """Tokens produced by one verify pass with k drafted tokens each accepted with probability a
    (Leviathan et al. 2023, eq. 1): (1 − a^(k+1)) / (1 − a); k + 1 when a = 1."""
    if draft_tokens < 0 or int(draft_tokens) != draft_tokens:
        raise TokenmathError(f"draft tokens = {draft_tokens!r} must be a whole number >= 0")
    if not (0 <= acceptance <= 1):
        raise TokenmathError(f"acceptance rate = {acceptance!r} must be between 0 and 1")
    if acceptance == 1:
        return draft_tokens + 1.0
    return (1 - acceptance ** (draft_tokens + 1)) / (1 - acceptance)


@dataclass(frozen=True)
class Speculative:
    draft_tokens: int
    acceptance: float
    tokens_per_verify: float
    verify_step_s: float  # the target model's pass over k + 1 tokens per sequence
    draft_s: float  # k steps of the draft model (0 for an MTP head treated as free)
    step_s: float
    tokens_per_s_per_user: float
    speedup: float  # vs plain decode at the same batch
    price_multiplier: float  # $/token vs plain decode at the same batch


def speculative_decode(model: Model, system: System, batch, context, draft_tokens: int, acceptance: float, *,
                       draft_model: Model | None = None, chips: int | None = None, dtypes: Dtypes = Dtypes(),
                       efficiency: Efficiency = ROOFLINE) -> Speculative:
    """Decode with k drafted tokens verified in one wider pass (S = k + 1). The verify pass reads
    the weights and KV once but does k + 1 tokens of compute; the draft costs k steps of
    `draft_model` on the same chips (None: an MTP-style head whose cost is neglected)."""
    n = system.scaleup_chips if chips is None else int(chips)
    e = expected_tokens_per_verify(draft_tokens, acceptance)
    kw = dict(chips=n, dtypes=dtypes, efficiency=efficiency)
    plain = step_time(model, system, batch, context, 1, **kw)
    verify = step_time(model, system, batch, context, draft_tokens + 1, **kw)
    draft = draft_tokens * step_time(draft_model, system, batch, context, 1, **kw).step_s if draft_model else 0.0
    T = verify.step_s + draft
    per_user = e / T
    return Speculative(
        draft_tokens=int(draft_tokens), acceptance=float(acceptance), tokens_per_verify=e,
        verify_step_s=verify.step_s, draft_s=draft, step_s=T, tokens_per_s_per_user=per_user,
        speedup=per_user * plain.step_s, price_multiplier=(T / e) / plain.step_s,
    )


# --------------------------------------------------------------------------------------------
# Batching cadence: "a train departs every T"
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    batch: float
    context: float
    step_s: float
    tokens_per_s_per_replica: float
    demand_tokens_per_s: float
    replicas: int
    chips_per_replica: int
    chips: int
    usd_per_day: float | None
    max_queue_wait_s: float  # a request that just missed a departure waits a whole step
    mean_queue_wait_s: float  # uniform arrivals, trains never full
    max_latency_s: float  # wait for the next step, then ride it: 2·T
    share_of_replica_capacity: float  # demand ÷ (replicas × per-replica throughput)


def cadence_tokens_per_s(batch, step_s):
    """A replica that starts a step of `batch` sequences every `step_s` emits B/T tokens/s
    (the lecture: 2,000 sequences every 15.6 ms ≈ 128k tokens/s)."""
    return np.asarray(batch, float) / np.asarray(step_s, float)


def traffic(model: Model, system: System, tokens_per_s: float, *, batch: float | None = None, context=4096,
            chips: int | None = None, dtypes: Dtypes = Dtypes(), efficiency: Efficiency = ROOFLINE,
            usd_per_chip_hour: float | None = None) -> Traffic:
    """Replicas, chips and $/day to serve a global decode demand, with the queueing bounds of
    fixed-cadence batching (a step departs every T, full or not)."""
    if not (tokens_per_s > 0 and math.isfinite(tokens_per_s)):
        raise TokenmathError(f"tokens per second = {tokens_per_s!r} must be a positive number")
    n = system.scaleup_chips if chips is None else int(chips)
    b = reference_batch(model, system, context, chips=n, dtypes=dtypes, efficiency=efficiency) if batch is None else batch
    st = step_time(model, system, b, context, chips=n, dtypes=dtypes, efficiency=efficiency,
                   usd_per_chip_hour=usd_per_chip_hour)
    per_replica = float(cadence_tokens_per_s(b, st.step_s))
    replicas = max(1, math.ceil(tokens_per_s / per_replica * (1 - 1e-12)))
    price = st.assumptions.usd_per_chip_hour
    return Traffic(
        batch=float(b), context=float(context), step_s=st.step_s, tokens_per_s_per_replica=per_replica,
        demand_tokens_per_s=float(tokens_per_s), replicas=replicas, chips_per_replica=n, chips=replicas * n,
        usd_per_day=None if price is None else replicas * n * price * 24.0,
        max_queue_wait_s=st.step_s, mean_queue_wait_s=st.step_s / 2, max_latency_s=2 * st.step_s,
        share_of_replica_capacity=tokens_per_s / (replicas * per_replica),
    )


# --------------------------------------------------------------------------------------------
# Prefill vs decode
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrefillDecode:
    prompt_tokens: float
    decode: StepTime  # one decode step at `batch`, context L
    prefill: StepTime  # one prompt of P tokens (attending on average to P/2), batch 1
    decode_usd_per_mtok: float | None
    prefill_usd_per_mtok: float | None
    output_input_cost_ratio: float  # decode $/token ÷ prefill $/token (price sheets: ~5×)
    ttft_s: float  # batch 1: the prompt's prefill pass alone
    ttft_at_load_s: float  # wait for the running decode step, then a pass that mixes it with the prompt
    by_pass_length: StepTime  # $/token and bound as S grows from 1 (decode) to P (prefill)


def prefill_vs_decode(model: Model, system: System, prompt_tokens: float, *, batch: float | None = None,
                      context=4096, chips: int | None = None, dtypes: Dtypes = Dtypes(),
                      efficiency: Efficiency = ROOFLINE) -> PrefillDecode:
    """Why output tokens cost more than input tokens: a decode pass (S = 1) pays the weight and KV
    fetch for one token per sequence, a prefill pass (S = P) amortises them over P tokens and is
    compute bound. The ratio of their per-token costs is what price sheets' output/input ratio
    (5× for Anthropic, 8× for GPT-5) reveals."""
    if not (prompt_tokens >= 1 and math.isfinite(prompt_tokens)):
        raise TokenmathError(f"prompt tokens = {prompt_tokens!r} must be >= 1")
    n = system.scaleup_chips if chips is None else int(chips)
    kw = dict(chips=n, dtypes=dtypes, efficiency=efficiency)
    b = reference_batch(model, system, context, chips=n, dtypes=dtypes, efficiency=efficiency) if batch is None else batch
    dec = step_time(model, system, b, context, 1, **kw)
    pre = step_time(model, system, 1, prompt_tokens / 2, prompt_tokens, **kw)
    per_dec = dec.step_s / b
    per_pre = pre.step_s / prompt_tokens
    # mixed pass (chunked prefill): the decode batch and the prompt share one step
    mixed = max(dec.compute_s + pre.compute_s, dec.weights_s + dec.kv_s + pre.kv_s)
    S = np.unique(np.round(np.geomspace(1, max(prompt_tokens, 2), 40)))
    by_s = step_time(model, system, 1, prompt_tokens / 2, S, **kw)
    return PrefillDecode(
        prompt_tokens=float(prompt_tokens), decode=dec, prefill=pre,
        decode_usd_per_mtok=dec.usd_per_mtok, prefill_usd_per_mtok=pre.usd_per_mtok,
        output_input_cost_ratio=per_dec / per_pre, ttft_s=pre.step_s, ttft_at_load_s=dec.step_s + mixed,
        by_pass_length=by_s,
    )


def batch_for_cost_ratio(model: Model, system: System, ratio: float, *, context=4096, prompt_tokens: float = 8192,
                         chips: int | None = None, dtypes: Dtypes = Dtypes(),
                         efficiency: Efficiency = ROOFLINE) -> float | None:
    """The decode batch at which an output token costs `ratio` × an input token (prefill of
    `prompt_tokens`): solve max(c, W/B + k) = ratio · t_prefill for B exactly. None when even an
    unbounded batch costs more than that (the ratio is below decode's floor over prefill)."""
    if not (ratio > 0 and math.isfinite(ratio)):
        raise TokenmathError(f"cost ratio = {ratio!r} must be a positive number")
    n = system.scaleup_chips if chips is None else int(chips)
    s = slopes(model, system, context, chips=n, dtypes=dtypes, efficiency=efficiency)
    pre = step_time(model, system, 1, prompt_tokens / 2, prompt_tokens, chips=n, dtypes=dtypes, efficiency=efficiency)
    return batch_for_cost(s, ratio * pre.step_s / prompt_tokens)


def _s(x):
    a = np.asarray(x, dtype=float)
    return float(a) if a.ndim == 0 else a


__all__ = [
    "Balance", "balance", "latency_floor_s", "balance_batch", "balance_batch_with_kv", "cost_floor_usd_per_mtok", "batch_to_fill_hbm",
    "balance_context", "curve", "FastMode", "fast_mode", "reference_batch", "batch_for_step", "batch_for_cost",
    "expected_tokens_per_verify", "Speculative", "speculative_decode", "Traffic", "traffic", "cadence_tokens_per_s",
    "PrefillDecode", "prefill_vs_decode", "batch_for_cost_ratio", "hardware_ratio", "hbm_drain_s",
]
