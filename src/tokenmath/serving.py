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
from .estimate import Estimated, estimate_pass
from .kvcache import attention_flops_per_token, kv_cache
from .layout import layout_memory
from .parallelism import Layout
from .params import param_counts, routed_expert_bytes, weight_bytes
from .profiles import ROOFLINE_PROFILE, Profile
from .roofline import StepTime, hardware_ratio, hbm_drain_s, resolve_dtypes, slopes, step_time
from .specs import ROOFLINE, Dtypes, Efficiency, Model, System
from .speculative import expected_tokens_per_verify, verify_pass_s
from .units import dtype_bytes

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
                      dtypes: Dtypes = Dtypes(), layout: Layout | None = None):
    """Largest batch whose KV at context L fits beside the weights in HBM (0 if the weights alone
    do not fit): the definition of "HBM full" every serving command uses, the bound's (layout None,
    all of HBM) and the estimate's (layout given, what a serving engine fills).

    layout None — the bound's accounting: the chips' HBM pooled (chips·C), each weight stored
      once (weight_bytes in the weight dtype), each sequence's KV at L stored once (kv dtype):
      B = ⌊(chips·C − weight bytes) / KV bytes per sequence⌋. No real layout holds more.
    layout given — that layout's chips, as `tokenmath layout` counts them (layout.layout_memory):
      each chip's weight shard (experts over the stage's chips, the dense rest over TP; replicated
      over attention-DP ranks), its share of the KV at L + 1 (the token being written) and of the
      activations in flight; B is the batch at which a chip is full — in what a serving engine
      fills (layout.serving_hbm_bytes: 90 % of HBM less the runtime's reserve), the memory every
      estimate runs in. This is what the estimate's layout holds.
    Vectorised over context."""
    if layout is not None:
        m1 = layout_memory(model, system, layout, 1.0, context, dtypes=dtypes)
        per_seq = np.asarray(m1.total_bytes_per_chip, float) - m1.weights_bytes_per_chip
        free = m1.serving_bytes_per_chip - m1.weights_bytes_per_chip
        return _s(np.floor(np.maximum(free, 0) / per_seq))
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
    latency_floor_touched_experts_s: float | None = None  # MoE: a batch-1 step streaming only the k experts it uses


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
        latency_floor_touched_experts_s=None if model.moe is None else latency_floor_s(
            model, system, chips=n, expert_fetch="expected", **kw),
    )


# --------------------------------------------------------------------------------------------
# Curves (one broadcast call; each point keeps its parts)
# --------------------------------------------------------------------------------------------


def curve(model: Model, system: System, *, over: str = "batch", batch=None, context=4096, points: int = 60,
          chips: int | None = None, dtypes: Dtypes = Dtypes(), efficiency: Efficiency = ROOFLINE,
          usd_per_chip_hour: float | None = None, attention_flops: bool = True,
          layout: Layout | None = None) -> StepTime:
    """Step latency, tokens/s per chip and per user, and $/Mtok over batch (at `context`) or over
    context (at `batch`), on a log grid wide enough to show every regime: batch from 1 to 10× the
    larger of B* and the batch that fills HBM; context from 1 to 10× the model's max context.
    `layout`: the layout the curve's estimate runs (its HBM-full batch and the next one join the
    grid, so its `fits` flips exactly there); None: the bound's pooled accounting."""
    n = system.scaleup_chips if chips is None else int(chips)
    if points < 2 or points > 1_000_000:
        raise TokenmathError(f"points = {points} must be between 2 and 1,000,000")
    kw = dict(chips=n, dtypes=dtypes, efficiency=efficiency, usd_per_chip_hour=usd_per_chip_hour,
              attention_flops=attention_flops)
    if over == "batch":
        fill = batch_to_fill_hbm(model, system, context, chips=n, dtypes=dtypes, layout=layout)
        top = max(balance_batch(model, system, dtypes=dtypes, efficiency=efficiency), fill, 10.0)
        grid = np.round(np.geomspace(1, 10 * top, points))
        if fill >= 1:  # the last batch that fits and the first that does not: "fits" flips exactly there
            grid = np.concatenate([grid, [fill, fill + 1]])
        grid = np.unique(grid)
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
    expert_fetch: str = "all"  # "expected" for a MoE model: a step reads the experts its tokens touch
    # MoE: batch 1 against the lecture's floor, every expert streamed (None for a dense model)
    max_speedup_every_expert: float | None = None
    latency_floor_every_expert_s: float | None = None


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
    `chips_lever`: the speed-up at batch 1 for each power-of-two chip count up to the domain.

    A dense model's step is the lecture's T(B) = max(B·c, W + B·k), inverted exactly. A MoE
    model's step reads only the experts its B tokens touch (expert_fetch="expected": at batch 1
    the dense weights and k of E experts a layer, all of them by the cost-optimal batch), so the
    bound stays below what any engine achieves at small batch; its targets are inverted by
    bisection (the step rises and the cost per token falls with the batch)."""
    if speedup is not None and price_multiplier is not None:
        raise TokenmathError("give --speedup or --price-multiplier, not both")
    if speedup is not None and not (speedup > 0 and math.isfinite(speedup)):
        raise TokenmathError(f"speedup = {speedup!r} must be a positive number")
    if price_multiplier is not None and not (price_multiplier > 0 and math.isfinite(price_multiplier)):
        raise TokenmathError(f"price multiplier = {price_multiplier!r} must be a positive number")
    n = system.scaleup_chips if chips is None else int(chips)
    s = slopes(model, system, context, chips=n, dtypes=dtypes, efficiency=efficiency)
    ef = "all" if model.moe is None else "expected"
    kw = dict(chips=n, dtypes=dtypes, efficiency=efficiency, expert_fetch=ef)
    ref = reference if reference is not None else reference_batch(model, system, context, chips=n, dtypes=dtypes,
                                                                  efficiency=efficiency)
    if ref < 1:
        raise TokenmathError(f"reference batch = {ref!r} must be >= 1")
    ref_st = step_time(model, system, ref, context, **kw)
    T_ref, per_tok_ref = ref_st.step_s, ref_st.step_s / ref
    fill = batch_to_fill_hbm(model, system, context, chips=n, dtypes=dtypes)

    def step(B):
        if ef == "all":
            return np.maximum(B * s.compute_s_per_seq, s.weights_s + B * s.kv_s_per_seq)
        return step_time(model, system, B, context, **kw).step_s

    answer_b = answer_speed = answer_price = None
    hi = max(ref, fill, 1.0) * 1e6  # past HBM: a slow mode beyond it is refused below, by name
    if speedup is not None:
        if ef == "all":
            b = batch_for_step(s, T_ref / speedup)
        else:  # bisection on the expected-experts step, increasing in batch
            t_target = T_ref / speedup
            b = None if float(step(1.0)) > t_target or float(step(hi)) < t_target else \
                _bisect_batch(lambda x: float(step(x)), 1.0, hi, t_target, True)
        if b is not None and b >= 1:
            answer_b = b
    elif price_multiplier is not None:
        if ef == "all":
            b = batch_for_cost(s, per_tok_ref * price_multiplier)
        else:  # the cost per token falls with the batch
            c_target = per_tok_ref * price_multiplier
            b = 1.0 if float(step(1.0)) <= c_target else (
                None if float(step(hi)) / hi > c_target else
                _bisect_batch(lambda x: float(step(x)) / x, 1.0, hi, c_target, False))
        if b is None:  # at or below the cost floor: any batch >= B*_kv; report the reference
            b = ref if price_multiplier >= 1 else None
        if b is not None:
            answer_b = max(1.0, b)
    if answer_b is not None and answer_b > ref:
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
    pts = step_time(model, system, grid, context, **kw)
    frontier_speedup = T_ref / pts.step_s
    frontier_price = (pts.step_s / grid) / per_tok_ref

    floor_cost = max(float(s.compute_s_per_seq), float(s.kv_s_per_seq))
    lever = []
    c = 1
    while c <= system.scaleup_chips:
        if batch_to_fill_hbm(model, system, context, chips=c, dtypes=dtypes) >= 1:
            t1 = step_time(model, system, 1, context, **(kw | {"chips": c})).step_s
            lever.append((c, T_ref / t1))
        c = c * 2 if c * 2 <= system.scaleup_chips or c == system.scaleup_chips else system.scaleup_chips
    return FastMode(
        reference_batch=ref, reference_step_s=T_ref, reference_usd_per_mtok=ref_st.usd_per_mtok,
        batch=answer_b, speedup=answer_speed, price_multiplier=answer_price,
        max_speedup=float(T_ref / step(1.0)), max_saving=float(per_tok_ref / floor_cost),
        latency_floor_s=latency_floor_s(model, system, chips=n, dtypes=dtypes, efficiency=efficiency,
                                        expert_fetch=ef), points=pts, frontier_speedup=frontier_speedup,
        frontier_price_multiplier=frontier_price, chips=n, chips_lever=tuple(lever), expert_fetch=ef,
        max_speedup_every_expert=None if ef == "all" else float(T_ref / (s.weights_s + s.kv_s_per_seq)),
        latency_floor_every_expert_s=None if ef == "all" else float(s.weights_s),
    )


# --------------------------------------------------------------------------------------------
# Speculative decoding / multi-token prediction
# --------------------------------------------------------------------------------------------


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
    plain_step_s: float = 0.0  # one ordinary decode step at the same batch
    estimate: str = "roofline"  # which model timed the passes
    batch: float | None = None  # sequences per pass


def speculative_decode(model: Model, system: System, batch, context, draft_tokens: int, acceptance: float, *,
                       draft_model: Model | None = None, chips: int | None = None, dtypes: Dtypes = Dtypes(),
                       efficiency: Efficiency = ROOFLINE, profile: Profile | None = None,
                       layout: Layout | None = None) -> Speculative:
    """Decode with k drafted tokens verified in one wider pass (S = k + 1). The verify pass reads
    the weights and KV once but does k + 1 tokens of compute; the draft costs k steps of
    `draft_model` on the same chips (None: an MTP-style head whose cost is neglected).

    profile None (or the roofline's): every pass is the roofline bound. A calibrated profile: the
    plain step and the draft model's steps (on its own default layout of the same chips) are
    estimate_pass decode steps, and the verify pass is composed from the estimate, because the
    step model times a pass of S > 1 tokens per sequence as a prompt (flash-attention efficiency
    at length S, ~0.2 % at S = 2), not as a decode kernel with k + 1 queries:

        T_verify = T_dec(B, L) + [T_dec(B·(k+1), 0) − T_dec(B, 0)] + attention_s(B, L)·(ρ − 1)

    — the decode step, plus what k·B more tokens add to the GEMMs and the all-to-all (at no
    context), plus the decode attention scaled by the roofline's ratio for k + 1 queries on one KV
    read, ρ = max((k+1)·f/F, r/BW) / max(f/F, r/BW) (f attention FLOPs, r KV bytes per sequence,
    F the BF16 peak). An approximation, stated with the result."""
    n = system.scaleup_chips if chips is None else int(chips)
    e = expected_tokens_per_verify(draft_tokens, acceptance)
    if profile is not None and not profile.is_roofline:
        lay = layout or estimate_layout(model, system, n, context, dtypes=dtypes)
        kw = dict(dtypes=dtypes, profile=profile)
        B = float(np.max(batch))
        tv, tp = verify_pass_s(model, system, lay, B, context, draft_tokens, kernels=profile.kernels,
                               engine=profile.engine, dtypes=dtypes)  # speculative.py: the one composition
        t_plain, t_verify = float(tp[0]), float(tv[0])
        draft = 0.0
        if draft_model is not None:
            d = estimate_pass(draft_model, system, batch, context, 1.0, chips=n, **kw)
            draft = draft_tokens * float(d.step_s)
        label = profile.label
    else:
        kw = dict(chips=n, dtypes=dtypes, efficiency=efficiency)
        t_plain = step_time(model, system, batch, context, 1, **kw).step_s
        t_verify = step_time(model, system, batch, context, draft_tokens + 1, **kw).step_s
        draft = draft_tokens * step_time(draft_model, system, batch, context, 1, **kw).step_s if draft_model else 0.0
        label = "roofline"
    T = t_verify + draft
    per_user = e / T
    return Speculative(
        draft_tokens=int(draft_tokens), acceptance=float(acceptance), tokens_per_verify=e,
        verify_step_s=t_verify, draft_s=draft, step_s=T, tokens_per_s_per_user=per_user,
        speedup=per_user * t_plain, price_multiplier=(T / e) / t_plain, plain_step_s=t_plain, estimate=label,
        batch=float(np.max(batch)),
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
    estimate: str = "roofline"  # which model timed the step
    tokens_per_s_per_chip: float | None = None  # per billed chip
    chips_range_80: tuple[int, int] | None = None  # chips for the demand at the ends of the 80 % band
    batch_to_fill_hbm: float | None = None  # on the chips (bound) or the estimate's layout


def cadence_tokens_per_s(batch, step_s):
    """A replica that starts a step of `batch` sequences every `step_s` emits B/T tokens/s
    (the lecture: 2,000 sequences every 15.6 ms ≈ 128k tokens/s)."""
    return np.asarray(batch, float) / np.asarray(step_s, float)


def traffic(model: Model, system: System, tokens_per_s: float, *, batch: float | None = None, context=4096,
            chips: int | None = None, dtypes: Dtypes = Dtypes(), efficiency: Efficiency = ROOFLINE,
            usd_per_chip_hour: float | None = None, profile: Profile | None = None,
            layout: Layout | None = None) -> Traffic:
    """Replicas, chips and $/day to serve a global decode demand, with the queueing bounds of
    fixed-cadence batching (a step departs every T, full or not).

    profile None (or the roofline's): the bound — the step is the roofline's, the default batch
    the roofline's cost-optimal one (reference_batch). A calibrated profile: the estimate — the
    step is estimate_pass's on its layout (estimate_layout of the chips), the default batch the one
    with the lowest estimated cost per token among those that fit that layout
    (estimated_cost_optimal_batch), and chips_range_80 the chips at the ends of its 80 % band.
    A batch that does not fit in HBM (batch_to_fill_hbm) is refused."""
    if not (tokens_per_s > 0 and math.isfinite(tokens_per_s)):
        raise TokenmathError(f"tokens per second = {tokens_per_s!r} must be a positive number")
    n = system.scaleup_chips if chips is None else int(chips)
    price = system.usd_per_chip_hour if usd_per_chip_hour is None else float(usd_per_chip_hour)
    band = None
    if profile is not None and not profile.is_roofline:
        lay = layout or estimate_layout(model, system, n, context, dtypes=dtypes)
        fill = batch_to_fill_hbm(model, system, context, dtypes=dtypes, layout=lay)
        _check_fits(model, system, batch, fill, context, f"the estimate's layout {_describe(lay)} of {n} chips")
        b = estimated_cost_optimal_batch(model, system, context, layout=lay, dtypes=dtypes, profile=profile) \
            if batch is None else float(batch)
        e = estimate_pass(model, system, b, context, 1.0, layout=lay, dtypes=dtypes, profile=profile,
                          usd_per_chip_hour=price)
        step, billed, label = float(e.step_s), float(e.op.billed_chips), e.label
        if e.range_80:
            lo, hi = e.range_80["step_s"]  # a longer step: more replicas
            band = tuple(_replicas(tokens_per_s, b / t) * n for t in (lo, hi))
    else:
        fill = batch_to_fill_hbm(model, system, context, chips=n, dtypes=dtypes)
        _check_fits(model, system, batch, fill, context, f"{n} chips")
        b = reference_batch(model, system, context, chips=n, dtypes=dtypes, efficiency=efficiency) \
            if batch is None else batch
        st = step_time(model, system, b, context, chips=n, dtypes=dtypes, efficiency=efficiency,
                       usd_per_chip_hour=usd_per_chip_hour)
        step, billed, label = float(st.step_s), float(n), "roofline"
    per_replica = float(cadence_tokens_per_s(b, step))
    replicas = _replicas(tokens_per_s, per_replica)
    held = system.held_usd_per_chip_hour(usd_per_chip_hour)  # the chips are paid every hour, busy or not
    return Traffic(
        batch=float(b), context=float(context), step_s=step, tokens_per_s_per_replica=per_replica,
        demand_tokens_per_s=float(tokens_per_s), replicas=replicas, chips_per_replica=n, chips=replicas * n,
        usd_per_day=None if held is None else replicas * n * held * 24.0,
        max_queue_wait_s=step, mean_queue_wait_s=step / 2, max_latency_s=2 * step,
        share_of_replica_capacity=tokens_per_s / (replicas * per_replica), estimate=label,
        tokens_per_s_per_chip=per_replica / billed, chips_range_80=band, batch_to_fill_hbm=float(fill),
    )


def _replicas(demand: float, per_replica: float) -> int:
    return max(1, math.ceil(demand / per_replica * (1 - 1e-12)))


def _describe(layout: Layout) -> str:
    return f"TP{layout.tp} EP{layout.ep} PP{layout.pp}"


def _check_fits(model: Model, system: System, batch, fill: float, context, where: str, flag: str = "--batch") -> None:
    if fill < 1:
        raise TokenmathError(f"{model.name} does not fit on {where} of {system.name} with one sequence of "
                             f"{float(context):,.0f} tokens; use more chips or narrower dtypes")
    if batch is not None and batch > fill:
        raise TokenmathError(f"batch {float(batch):,.0f} does not fit in HBM on {where} of {system.name}: at "
                             f"context {float(context):,.0f} it holds {fill:,.0f} sequences; give {flag} up to "
                             f"{fill:,.0f}, or more chips")


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


# --------------------------------------------------------------------------------------------
# The estimate's counterparts
#
# The lecture's quantities (B*, L*, the latency and cost floors) are defined on the roofline and
# solved exactly above. A user acts on the calibrated estimate (estimate.estimate_pass: the
# per-operation step model on the layout the chips imply), which has no closed form: each
# counterpart below is defined so that, applied to the roofline, it gives back the lecture's
# quantity (or says how it differs), and is solved on a log grid of the estimate (one broadcast
# call) refined by bisection to a whole sequence (batches) or 0.01 % (contexts).
# --------------------------------------------------------------------------------------------

KNEE_TOLERANCE = 0.05  # "cost stops falling": within 5 % of the lowest cost among batches that fit
GRID_POINTS = 256


def estimate_layout(model: Model, system: System, chips: int, context=0.0, *, dtypes: Dtypes = Dtypes()) -> Layout:
    """The layout the estimate runs `chips` chips as: the one `estimate.replica` picks on those chips
    for one sequence of `context` tokens — estimate.default_layout (a MoE's experts over as many
    chips as divide them, attention data-parallel with the dense weights on every chip; dense models
    tensor-parallel), or, when that holds no sequence because the dense weights are replicated, the
    same EP group with attention tensor-parallel inside it. Printed with every answer."""
    from .estimate import replica

    return replica(model, system, 1.0, context, chips=int(chips), dtypes=dtypes).layout


def _grid(top: float, points: int = GRID_POINTS) -> np.ndarray:
    top = max(float(top), 1.0)
    return np.unique(np.concatenate([np.round(np.geomspace(1.0, top, points)), [1.0, top]]))


def _chip_s_per_token(e: Estimated):
    """Billed chip-seconds per new token: cost per token without a price (× $/chip-s = $/token)."""
    return e.op.billed_chips / np.asarray(e.tokens_per_s, float)


@dataclass(frozen=True)
class _Curve:
    """The estimate over a batch grid at one context, on one layout."""

    model: Model
    system: System
    context: float
    layout: Layout
    dtypes: Dtypes
    profile: Profile
    fill: float
    grid: np.ndarray
    est: Estimated
    chip_s_per_token: np.ndarray

    def at(self, batch) -> Estimated:
        return estimate_pass(self.model, self.system, batch, self.context, 1.0, layout=self.layout,
                             dtypes=self.dtypes, profile=self.profile)

    def cost(self, batch: float) -> float:
        return float(_chip_s_per_token(self.at(float(batch))))

    def lowest(self) -> tuple[float, float]:
        """(batch, chip-s per token) of the lowest estimated cost per token among batches that fit:
        the grid's minimum, refined over whole batches between its neighbours by ternary search."""
        i = int(np.argmin(self.chip_s_per_token))
        lo, hi = int(self.grid[max(i - 1, 0)]), int(self.grid[min(i + 1, len(self.grid) - 1)])
        while hi - lo > 2:
            a, b = lo + (hi - lo) // 3, hi - (hi - lo) // 3
            if self.cost(a) <= self.cost(b):
                hi = b
            else:
                lo = a
        best = min(range(lo, hi + 1), key=lambda x: (self.cost(x), x))
        return float(best), self.cost(best)

    def knee(self, tolerance: float) -> tuple[float, float, float]:
        """(knee batch, lowest batch, lowest chip-s per token): the smallest whole batch whose
        estimated cost per token is within `tolerance` of the lowest among batches that fit."""
        b_min, c_min = self.lowest()
        limit = (1.0 + tolerance) * c_min
        ok = self.chip_s_per_token <= limit * (1 + 1e-12)
        j = int(np.argmax(ok)) if ok.any() else int(np.argmin(self.chip_s_per_token))
        if j == 0 or self.chip_s_per_token[0] <= limit:
            return 1.0, b_min, c_min
        lo, hi = int(self.grid[j - 1]), int(self.grid[j])  # cost(lo) above the limit, cost(hi) within it
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.cost(mid) <= limit:
                hi = mid
            else:
                lo = mid
        return float(hi), b_min, c_min


def _curve(model: Model, system: System, context, *, layout: Layout, dtypes: Dtypes, profile: Profile,
           fill: float | None = None) -> _Curve:
    if profile.is_roofline:
        raise TokenmathError("the estimate's counterparts need a calibrated profile; the roofline's are the closed forms")
    if fill is None:
        fill = batch_to_fill_hbm(model, system, context, dtypes=dtypes, layout=layout)
    if fill < 1:
        raise TokenmathError(
            f"{model.name} does not fit on {layout.replica_chips} × {system.name} as {_describe(layout)} with one "
            f"sequence of {float(context):,.0f} tokens; use more chips or narrower dtypes")
    grid = _grid(fill)
    est = estimate_pass(model, system, grid, context, 1.0, layout=layout, dtypes=dtypes, profile=profile)
    return _Curve(model, system, float(context), layout, dtypes, profile, float(fill), grid, est,
                  np.asarray(_chip_s_per_token(est), float))


def estimated_cost_optimal_batch(model: Model, system: System, context, *, layout: Layout, dtypes: Dtypes = Dtypes(),
                                 profile: Profile) -> float:
    """The estimate's normal-mode batch: the whole batch with the lowest estimated cost per token
    among those that fit the layout's HBM (usually the one that fills it: the estimated cost keeps
    falling, if slowly, while weights are amortised). The roofline's is reference_batch."""
    return _curve(model, system, context, layout=layout, dtypes=dtypes, profile=profile).lowest()[0]


@dataclass(frozen=True)
class EstimatedBalance:
    """The estimate's counterparts of the lecture's floors and balance points (each roofline
    quantity's definition restated on the estimated step; see docs/serving.md)."""

    estimate: str  # the profile's label
    layout: Layout
    chips: int
    billed_chips: float
    context: float
    batch_to_fill_hbm: float  # on the estimate's layout (batch_to_fill_hbm(layout=...))
    knee_batch: float  # smallest batch whose estimated cost per token is within `knee_tolerance` of the lowest
    knee_tolerance: float
    lowest_cost_batch: float  # the batch of the lowest estimated cost per token among those that fit
    lowest_usd_per_mtok: float | None  # the estimate's cost floor (None: no price)
    lowest_usd_per_mtok_range_80: list | None
    lowest_tokens_per_s_per_chip: float
    latency_floor_s: float  # the estimated step at batch 1, context L
    latency_floor_range_80: list | None
    latency_floor_bound_s: float  # the roofline of that same pass on the estimate's layout
    balance_context: float | None  # attention time = weight-GEMM time at `balance_context_batch` (None: never)
    balance_context_batch: float
    method: str


def _attention_minus_gemms(model, system, L, batch, layout, dtypes, profile):
    e = estimate_pass(model, system, batch, L, 1.0, layout=layout, dtypes=dtypes, profile=profile)
    op = e.op
    return np.asarray(op.attention_s, float) - np.asarray(op.dense_gemm_s, float) - np.asarray(op.expert_gemm_s, float)


def estimated_balance_context(model: Model, system: System, batch: float, *, layout: Layout, dtypes: Dtypes = Dtypes(),
                              profile: Profile, top: float | None = None) -> float | None:
    """The estimate's L*: the context at which the estimated attention kernels (the KV read and its
    FLOPs) take as long as the weight GEMMs (dense + experts) in a decode step of `batch` sequences.
    The roofline's L* is the same balance with ideal kernels and B → ∞ (KV fetch = compute per
    sequence). 0 when attention already dominates at L = 1; None when it never does up to `top`
    (default 10 × the model's longest context). HBM capacity is ignored, as it is for L*.
    Solved on a 256-point log grid, refined by bisection to 0.01 %."""
    top = float(top or 10.0 * (model.max_context or 1_000_000))
    L = np.geomspace(1.0, top, GRID_POINTS)
    d = _attention_minus_gemms(model, system, L, batch, layout, dtypes, profile)
    if d[0] >= 0:
        return 0.0
    if not np.any(d >= 0):
        return None
    j = int(np.argmax(d >= 0))
    lo, hi = float(L[j - 1]), float(L[j])
    while hi - lo > 1e-4 * hi:
        mid = 0.5 * (lo + hi)
        if float(_attention_minus_gemms(model, system, mid, batch, layout, dtypes, profile)) >= 0:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def estimated_balance(model: Model, system: System, context=4096, *, chips: int | None = None,
                      dtypes: Dtypes = Dtypes(), profile: Profile, layout: Layout | None = None,
                      batch: float | None = None, tolerance: float = KNEE_TOLERANCE,
                      usd_per_chip_hour: float | None = None) -> EstimatedBalance:
    """The estimate's counterparts of `balance` on the layout `chips` imply (or `layout`):

    - knee batch (for B*): cost per token falls with batch while the weights are amortised, and
      stops falling where something per-sequence binds — the roofline's B* (or B* with KV). The
      estimate's cost flattens gradually, so its knee is the smallest whole batch whose estimated
      cost per token is within `tolerance` (5 %) of the lowest among batches that fit.
    - lowest cost (for the cost floor): the lowest estimated $/Mtok among batches that fit, and
      its batch. The roofline's floor is at B → ∞, beyond HBM.
    - latency floor: the estimated step at batch 1 and context L (the roofline's is the weight
      fetch alone).
    - balance context (for L*): estimated_balance_context at `batch` (default: the knee batch).
    - batch_to_fill_hbm on the estimate's layout."""
    if not (0 < tolerance < 1):
        raise TokenmathError(f"tolerance = {tolerance!r}; expected a fraction between 0 and 1")
    n = system.scaleup_chips if chips is None else int(chips)
    lay = layout or estimate_layout(model, system, n, context, dtypes=dtypes)
    cv = _curve(model, system, context, layout=lay, dtypes=dtypes, profile=profile)
    knee, b_min, _ = cv.knee(tolerance)
    price = system.usd_per_chip_hour if usd_per_chip_hour is None else float(usd_per_chip_hour)
    lowest = estimate_pass(model, system, b_min, context, 1.0, layout=lay, dtypes=dtypes, profile=profile,
                           usd_per_chip_hour=price)
    one = estimate_pass(model, system, 1.0, context, 1.0, layout=lay, dtypes=dtypes, profile=profile)
    at = knee if batch is None else float(batch)
    return EstimatedBalance(
        estimate=profile.label, layout=lay, chips=n, billed_chips=float(one.op.billed_chips), context=float(context),
        batch_to_fill_hbm=cv.fill, knee_batch=knee, knee_tolerance=tolerance, lowest_cost_batch=b_min,
        lowest_usd_per_mtok=None if lowest.usd_per_mtok is None else float(lowest.usd_per_mtok),
        lowest_usd_per_mtok_range_80=(lowest.range_80 or {}).get("usd_per_mtok"),
        lowest_tokens_per_s_per_chip=float(lowest.tokens_per_s_per_chip),
        latency_floor_s=float(one.step_s), latency_floor_range_80=(one.range_80 or {}).get("step_s"),
        latency_floor_bound_s=float(one.roofline_step_s),
        balance_context=estimated_balance_context(model, system, at, layout=lay, dtypes=dtypes, profile=profile),
        balance_context_batch=at,
        method=(f"estimate on a {GRID_POINTS}-point log grid of batches from 1 to the {cv.fill:,.0f} that fit, refined"
                " to a whole sequence (bisection for the knee, ternary search for the lowest cost); balance context"
                f" on a {GRID_POINTS}-point log grid of contexts refined by bisection to 0.01 %"),
    )


# ---- fast mode on the estimate -----------------------------------------------------------------


@dataclass(frozen=True)
class EstimatedFastMode:
    """FastMode's figures on the estimate's curve (batch → estimated step), on its layout."""

    estimate: str
    layout: Layout
    chips: int
    reference_batch: float  # the estimate's cost-optimal batch (or the one given)
    reference_step_s: float
    reference_usd_per_mtok: float | None
    reference_range_80: dict | None
    batch: float | None  # the answer for the requested speedup / price (None if unreachable)
    speedup: float | None
    price_multiplier: float | None
    max_speedup: float  # reference step ÷ the estimated step at batch 1
    max_saving: float  # reference cost ÷ the lowest estimated cost among batches that fit
    latency_floor_s: float  # the estimated step at batch 1
    batch_to_fill_hbm: float
    frontier_batch: np.ndarray
    frontier_step_s: np.ndarray
    frontier_speedup: np.ndarray
    frontier_price_multiplier: np.ndarray
    chips_lever: tuple[tuple[int, float], ...]  # (chips per replica, estimated batch-1 speed-up vs the reference)


def _bisect_batch(f, lo: float, hi: float, target: float, increasing: bool) -> float:
    """Continuous batch in [lo, hi] where f(batch) = target, f monotone (relative 1e-9)."""
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        above = f(mid) > target
        if above == increasing:
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-9 * hi:
            break
    return 0.5 * (lo + hi)


def estimated_fast_mode(model: Model, system: System, context=4096, *, speedup: float | None = None,
                        price_multiplier: float | None = None, reference: float | None = None,
                        chips: int | None = None, dtypes: Dtypes = Dtypes(), profile: Profile,
                        layout: Layout | None = None, usd_per_chip_hour: float | None = None,
                        points: int = 50) -> EstimatedFastMode:
    """fast_mode on the estimate: the reference is the estimate's cost-optimal batch on its layout;
    speedup(B) = T_est(B_ref)/T_est(B), price(B) = [T_est(B)/B]/[T_est(B_ref)/B_ref]. The answer
    for a target inverts the estimated curve by bisection (it is monotone in batch); a target out of
    reach gives batch None. More chips per replica (chips_lever): the estimated batch-1 step on the
    default layout of each power-of-two chip count that holds the weights."""
    n = system.scaleup_chips if chips is None else int(chips)
    lay = layout or estimate_layout(model, system, n, context, dtypes=dtypes)
    kw = dict(layout=lay, dtypes=dtypes, profile=profile)
    fill = batch_to_fill_hbm(model, system, context, dtypes=dtypes, layout=lay)
    cv = _curve(model, system, context, fill=fill, **kw)
    b_min, c_min = cv.lowest()
    ref = b_min if reference is None else float(reference)
    if ref < 1:
        raise TokenmathError(f"reference batch = {ref!r} must be >= 1")
    _check_fits(model, system, ref, fill, context, f"the estimate's layout {_describe(lay)} of {n} chips",
                "--reference-batch")
    price = system.usd_per_chip_hour if usd_per_chip_hour is None else float(usd_per_chip_hour)
    ref_e = estimate_pass(model, system, ref, context, 1.0, usd_per_chip_hour=price, **kw)
    T_ref = float(ref_e.step_s)
    per_tok_ref = T_ref / ref

    def T(b):
        return float(cv.at(float(b)).step_s)

    def per_tok(b):
        return T(b) / b

    answer = None
    if speedup is not None:
        target = T_ref / speedup
        if speedup >= 1:
            answer = None if T(1.0) > target else _bisect_batch(T, 1.0, ref, target, True)
        else:
            answer = None if T(fill) < target else _bisect_batch(T, ref, fill, target, True)
    elif price_multiplier is not None:
        target = per_tok_ref * price_multiplier
        if price_multiplier >= 1:
            answer = 1.0 if per_tok(1.0) <= target else _bisect_batch(per_tok, 1.0, ref, target, False)
        else:
            answer = None if per_tok(fill) > target else _bisect_batch(per_tok, ref, fill, target, False)
    ans_speed = ans_price = None
    if answer is not None:
        t = T(answer)
        ans_speed, ans_price = T_ref / t, (t / answer) / per_tok_ref
    grid = np.unique(np.concatenate([np.geomspace(1, ref, points), [ref]]))
    fr = estimate_pass(model, system, grid, context, 1.0, **kw)
    step = np.asarray(fr.step_s, float)
    lever = []
    c = 1
    while c <= system.scaleup_chips:
        try:
            lc = estimate_layout(model, system, c, context, dtypes=dtypes)
            if batch_to_fill_hbm(model, system, context, dtypes=dtypes, layout=lc) >= 1:
                t1 = float(estimate_pass(model, system, 1.0, context, 1.0, layout=lc, dtypes=dtypes,
                                         profile=profile).step_s)
                lever.append((c, T_ref / t1))
        except TokenmathError:
            pass
        c = c * 2 if c * 2 <= system.scaleup_chips or c == system.scaleup_chips else system.scaleup_chips
    t1 = T(1.0)
    return EstimatedFastMode(
        estimate=profile.label, layout=lay, chips=n, reference_batch=ref, reference_step_s=T_ref,
        reference_usd_per_mtok=None if ref_e.usd_per_mtok is None else float(ref_e.usd_per_mtok),
        reference_range_80=ref_e.range_80, batch=answer, speedup=ans_speed, price_multiplier=ans_price,
        max_speedup=T_ref / t1, max_saving=per_tok_ref * float(ref_e.op.billed_chips) / c_min,
        latency_floor_s=t1, batch_to_fill_hbm=fill, frontier_batch=grid, frontier_step_s=step,
        frontier_speedup=T_ref / step, frontier_price_multiplier=(step / grid) / per_tok_ref,
        chips_lever=tuple(lever),
    )


# ---- prefill vs decode on the estimate ----------------------------------------------------------


@dataclass(frozen=True)
class EstimatedPrefill:
    """PrefillDecode's figures on the estimate."""

    estimate: str
    layout: Layout
    prompt_tokens: float
    decode_batch: float
    decode_step_s: float
    prefill_step_s: float  # one prompt of P tokens, batch 1 (each token attends to (P − 1)/2 on average)
    decode_usd_per_mtok: float | None
    prefill_usd_per_mtok: float | None
    output_input_cost_ratio: float
    ttft_s: float
    ttft_range_80: list | None
    ttft_at_load_s: float  # the running decode step, then a pass mixing it with the prompt
    by_pass_length_new_tokens: np.ndarray
    by_pass_length_step_s: np.ndarray
    by_pass_length_s_per_token: np.ndarray
    by_pass_length_range_80: list | None  # [lo, hi] of s_per_token
    # prompts in the pass that sets prefill's cost (prefill_usd_per_mtok, the cost ratio, by pass
    # length): one per attention-DP rank, so every chip works; 1 on a layout without attention DP
    prefill_prompts: float = 1.0
    prefill_pass_s: float | None = None  # that pass's time (= prefill_step_s when prefill_prompts is 1)


def estimated_prefill_vs_decode(model: Model, system: System, prompt_tokens: float, *, batch: float | None = None,
                                context=4096, chips: int | None = None, dtypes: Dtypes = Dtypes(), profile: Profile,
                                layout: Layout | None = None,
                                usd_per_chip_hour: float | None = None) -> EstimatedPrefill:
    """prefill_vs_decode on the estimate: decode is estimate_pass(B, L, S = 1) at `batch` (default:
    the estimate's cost-optimal batch), prefill estimate_pass(n, 0, S = P) — whole prompts in one
    pass, each token attending to (P − 1)/2 earlier ones on average — and by pass length a pass of
    S tokens of those prompts at their mean context, estimate_pass(n, max(P/2 − (S − 1)/2, 0), S).
    The cost takes n = one prompt per attention-DP rank: attention DP keeps whole sequences on a
    rank, so a lone prompt leaves the other ranks idle, and its cost per token would be the idle
    ranks' too (up to ×ranks on a DP-attention layout). TTFT is a lone prompt's, n = 1; at load,
    the running decode step, then one step carrying the prompt as a chunk beside it."""
    if not (prompt_tokens >= 1 and math.isfinite(prompt_tokens)):
        raise TokenmathError(f"prompt tokens = {prompt_tokens!r} must be >= 1")
    n = system.scaleup_chips if chips is None else int(chips)
    lay = layout or estimate_layout(model, system, n, context, dtypes=dtypes)
    price = system.usd_per_chip_hour if usd_per_chip_hour is None else float(usd_per_chip_hour)
    kw = dict(layout=lay, dtypes=dtypes, profile=profile, usd_per_chip_hour=price)
    fill = batch_to_fill_hbm(model, system, context, dtypes=dtypes, layout=lay)
    _check_fits(model, system, batch, fill, context, f"the estimate's layout {_describe(lay)} of {n} chips")
    b = estimated_cost_optimal_batch(model, system, context, layout=lay, dtypes=dtypes, profile=profile) \
        if batch is None else float(batch)
    P = float(prompt_tokens)
    dec = estimate_pass(model, system, b, context, 1.0, **kw)
    n_pre = float(lay.attention_dp)  # prompts in the pass that sets prefill's cost
    pre = estimate_pass(model, system, 1.0, 0.0, P, **kw)  # a lone prompt: TTFT
    full = pre if n_pre == 1 else estimate_pass(model, system, n_pre, 0.0, P, **kw)
    mixed = estimate_pass(model, system, b, context, 1.0, prefill_tokens=P, prefill_context=P / 2, prefill_seqs=1.0,
                          **kw)
    S = np.unique(np.round(np.geomspace(1, max(P, 2), 40)))
    by = estimate_pass(model, system, n_pre, np.maximum(P / 2 - (S - 1) / 2, 0.0), S, **kw)
    by_step = np.asarray(by.step_s, float)
    band = None
    if by.range_80:
        lo, hi = (np.asarray(x, float) for x in by.range_80["step_s"])
        band = [lo / (n_pre * S), hi / (n_pre * S)]
    t_dec, t_pre, t_full = float(dec.step_s), float(pre.step_s), float(full.step_s)
    return EstimatedPrefill(
        estimate=profile.label, layout=lay, prompt_tokens=P, decode_batch=b, decode_step_s=t_dec, prefill_step_s=t_pre,
        decode_usd_per_mtok=None if dec.usd_per_mtok is None else float(dec.usd_per_mtok),
        prefill_usd_per_mtok=None if full.usd_per_mtok is None else float(full.usd_per_mtok),
        output_input_cost_ratio=(t_dec / b) / (t_full / (n_pre * P)), ttft_s=t_pre,
        ttft_range_80=(pre.range_80 or {}).get("step_s"),
        ttft_at_load_s=t_dec + float(mixed.step_s), by_pass_length_new_tokens=S, by_pass_length_step_s=by_step,
        by_pass_length_s_per_token=by_step / (n_pre * S), by_pass_length_range_80=band,
        prefill_prompts=n_pre, prefill_pass_s=t_full,
    )


# ---- two lecture answers in one figure each -------------------------------------------------------


@dataclass(frozen=True)
class LargestModel:
    """L29 (46:52) with L03/L36: the largest model a system can serve under a latency target."""

    latency_target_s: float
    chips: int
    weight_dtype: str
    bytes_per_weight: float
    hbm_bytes_per_s: float  # all chips
    total_params: float  # the bound: N_total·b_w / (chips·BW) = target, solved for N_total
    active_params: float | None  # total_params / sparsity
    sparsity: float | None
    capacity_total_params: float  # chips·C / b_w: what the chips' HBM holds at all (weights alone)
    servable_total_params: float  # the smaller of the two
    estimate: str = "roofline"
    estimated_total_params: float | None = None  # the estimate's counterpart (see largest_model_for_latency)
    estimated_active_params: float | None = None
    estimated_weight_stream_efficiency: float | None = None  # latency floor ÷ (estimated batch-1 step − overhead)
    estimated_overhead_s: float | None = None
    reference_model: str | None = None


def largest_model_for_latency(system: System, latency_target_s: float, *, chips: int | None = None,
                              weight_dtype: str = "fp8", sparsity: float | None = None,
                              reference: Model | None = None, profile: Profile | None = None,
                              dtypes: Dtypes = Dtypes(), context=0.0) -> LargestModel:
    """The largest model servable with a per-token step of `latency_target_s` on `chips` chips.

    Bound (the lecture's latency floor solved for N_total): a decode step streams every weight once,
    N_total·b_w / (chips·BW) ≤ target ⇒ N_total ≤ target·chips·BW / b_w; N_active = N_total /
    sparsity. The chips' HBM caps N_total at chips·C / b_w whatever the target.

    Estimate (with a `reference` model and a calibrated `profile`): the estimate runs the
    reference's batch-1 step (context `context`) at a weight-streaming efficiency
    η = latency floor / (estimated step − the profile's fixed per-step overhead); a model like it
    (the same mix of kernels) of N_total parameters meets the target when overhead +
    N_total·b_w/(chips·BW·η) ≤ target. That scaling is an assumption of this function, stated in
    the output; 0 when the overhead alone exceeds the target."""
    if not (latency_target_s > 0 and math.isfinite(latency_target_s)):
        raise TokenmathError(f"latency target = {latency_target_s!r} s must be a positive number")
    if sparsity is not None and not (sparsity >= 1 and math.isfinite(sparsity)):
        raise TokenmathError(f"sparsity = {sparsity!r} must be N_total/N_active >= 1")
    n = system.scaleup_chips if chips is None else int(chips)
    wd = dtypes.weight or (reference.weight_dtype if reference is not None else weight_dtype)
    b_w = dtype_bytes(wd)
    bw = system.chip.hbm_bytes_per_s * n
    total = latency_target_s * bw / b_w
    if sparsity is None and reference is not None:
        sparsity = param_counts(reference).sparsity
    cap = system.chip.hbm_bytes * n / b_w
    rec = dict(latency_target_s=float(latency_target_s), chips=n, weight_dtype=wd, bytes_per_weight=b_w,
               hbm_bytes_per_s=bw, total_params=total, active_params=None if sparsity is None else total / sparsity,
               sparsity=sparsity, capacity_total_params=cap, servable_total_params=min(total, cap))
    if reference is not None and profile is not None and not profile.is_roofline:
        e = estimate_pass(reference, system, 1.0, context, 1.0, dtypes=dtypes, profile=profile,
                          layout=estimate_layout(reference, system, n, context, dtypes=dtypes))
        floor = latency_floor_s(reference, system, chips=n, dtypes=dtypes)
        ov = profile.engine.overhead_s
        eta = floor / max(float(e.step_s) - ov, 1e-12)
        est = max(latency_target_s - ov, 0.0) * bw * eta / b_w
        rec |= dict(estimate=profile.label, estimated_total_params=est,
                    estimated_active_params=None if sparsity is None else est / sparsity,
                    estimated_weight_stream_efficiency=eta, estimated_overhead_s=ov, reference_model=reference.name)
    elif reference is not None:
        rec["reference_model"] = reference.name
    return LargestModel(**rec)


@dataclass(frozen=True)
class KvIntensity:
    """L51 (1:52): FLOPs per KV byte in decode against the chip's FLOP/byte."""

    context: float
    kv_dtype: str
    attention_kind: str  # "gqa" (incl. MHA/MQA) | "mla" | "none"
    query_heads_per_kv_head: float | None  # G for GQA
    flops_per_kv_byte: float  # decode attention FLOPs ÷ KV bytes read, at `context`
    formula: str
    chip_flops_per_byte: float | None  # BF16 FLOP/s ÷ HBM B/s (attention runs in BF16)
    memory_heaviness: float | None  # chip_flops_per_byte ÷ flops_per_kv_byte (> 1: memory bound)


def decode_flops_per_kv_byte(model: Model, system: System | None = None, *, context=4096,
                             kv_dtype: str = "bf16") -> KvIntensity:
    """FLOPs a decode step spends per byte of KV it reads: attention_flops_per_token(L) ÷ the KV
    bytes read for one new token at context L. For GQA each cached token's K and V (2·d·b_kv bytes
    per KV head) meet G query heads (4·G·d FLOPs): 2·G / b_kv — independent of L and d (Llama-3.1-70B
    BF16: G = 8 → 8 FLOP/byte). MLA (absorbed, as decode runs it) reads kv_lora + rope elements and
    spends 2·n_heads·(2·kv_lora + rope) FLOPs on them (DeepSeek-V3 BF16: 278,528/1,152 ≈ 242).
    Against the chip's BF16 FLOP/byte (H100: 989 T/3.35 T = 295) the ratio says how memory-heavy
    decode attention is; sliding windows and sparse attention change both sides with L."""
    a = model.attention
    kv = kv_cache(model, max(float(context), 1.0), kv_dtype)
    flops = float(attention_flops_per_token(model, max(float(context), 1.0)))
    read = float(kv.read_bytes)
    if a is None or read <= 0:
        raise TokenmathError(f"{model.name} has no attention shape (a totals-only model): FLOPs per KV byte needs its"
                             " config.json")
    ratio = flops / read
    if a.kind == "mla":
        kind, G, formula = "mla", None, "2·n_heads·(2·kv_lora_rank + rope_dim) / ((kv_lora_rank + rope_dim)·b_kv) (absorbed)"
    else:
        kind, G, formula = "gqa", a.n_heads / a.n_kv_heads, "2·G / b_kv (G = query heads per KV head)"
    chip = None
    if system is not None:
        f = system.chip.flops_per_s("bf16") or system.chip.flops_per_s(system.compute_class_for("fp8"))
        chip = float(f) / system.chip.hbm_bytes_per_s if f else None
    return KvIntensity(context=float(context), kv_dtype=kv_dtype, attention_kind=kind, query_heads_per_kv_head=G,
                       flops_per_kv_byte=ratio, formula=formula, chip_flops_per_byte=chip,
                       memory_heaviness=None if chip is None else chip / ratio)


def _s(x):
    a = np.asarray(x, dtype=float)
    return float(a) if a.ndim == 0 else a


__all__ = [
    "Balance", "balance", "latency_floor_s", "balance_batch", "balance_batch_with_kv", "cost_floor_usd_per_mtok", "batch_to_fill_hbm",
    "balance_context", "curve", "FastMode", "fast_mode", "reference_batch", "batch_for_step", "batch_for_cost",
    "expected_tokens_per_verify", "Speculative", "speculative_decode", "Traffic", "traffic", "cadence_tokens_per_s",
    "PrefillDecode", "prefill_vs_decode", "batch_for_cost_ratio", "hardware_ratio", "hbm_drain_s",
    "KNEE_TOLERANCE", "EstimatedBalance", "estimated_balance", "estimated_balance_context",
    "estimated_cost_optimal_batch", "EstimatedFastMode", "estimated_fast_mode", "EstimatedPrefill",
    "estimated_prefill_vs_decode", "LargestModel", "largest_model_for_latency", "KvIntensity",
    "decode_flops_per_kv_byte", "estimate_layout",
]
