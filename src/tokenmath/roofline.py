"""The roofline step: a pass of B sequences × S new tokens, attending to L tokens, on `chips` chips.

    compute_s = B·S·(2·N_matmul + attention_FLOPs(L)) / (chips · FLOP/s · eff.flops)
    weights_s = weight bytes read / (chips · HBM B/s · eff.hbm)
    kv_s      = B · KV bytes read(L) / (chips · HBM B/s · eff.hbm)
    network_s = 0 here (filled by the layout module)
    step_s    = max(compute_s, weights_s + kv_s, network_s)       (the memory terms share HBM)

N_matmul is the active parameter count less the input-embedding table (a lookup, not a matmul).
Every input broadcasts: `step_time(m, s, batch=np.arange(1, 4097), context=[[1e3], [1e5]])`
sweeps batch × context in one call. Each result carries its breakdown, the bound that decided it
and the assumptions (dtypes, efficiencies, price) it was computed under.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import TokenmathError
from .kvcache import attention_flops_per_token, kv_cache
from .params import matmul_params_per_token, param_counts, routed_expert_bytes, weight_bytes, weights_read_bytes
from .specs import ROOFLINE, Dtypes, Efficiency, Model, System
from .units import dtype_bytes

BOUNDS = np.array(["compute", "memory", "network"])


@dataclass(frozen=True)
class Assumptions:
    """What a StepTime was computed under; printed with every result."""

    chips: int
    weight_dtype: str
    kv_dtype: str
    compute_dtype: str
    compute_class: str
    flops_per_s_per_chip: float
    hbm_bytes_per_s_per_chip: float
    efficiency: Efficiency
    usd_per_chip_hour: float | None
    expert_fetch: str
    attention_flops: bool = True
    network: str = "0 s here (ideal sharding); `tokenmath layout` / layout_step adds all-to-all, TP and PP terms"

    @property
    def label(self) -> str:
        e = self.efficiency
        if e.label == "roofline" and e.flops == e.hbm == e.network == 1.0:
            return "roofline bound (efficiencies 1.0)"
        return f"estimate '{e.label}' (flops {e.flops:g}, hbm {e.hbm:g}, network {e.network:g})"


@dataclass(frozen=True)
class StepTime:
    """One pass's time and its parts (seconds), with throughput, cost and utilisation."""

    batch: float | np.ndarray
    context: float | np.ndarray
    new_tokens: float | np.ndarray
    compute_s: float | np.ndarray
    weights_s: float | np.ndarray
    kv_s: float | np.ndarray
    network_s: float | np.ndarray
    step_s: float | np.ndarray
    bound: str | np.ndarray
    tokens_per_s: float | np.ndarray
    usd_per_mtok: float | np.ndarray | None
    mfu: float | np.ndarray
    mbu: float | np.ndarray
    flops: float | np.ndarray
    weight_bytes_read: float | np.ndarray
    kv_bytes_read: float | np.ndarray
    memory_bytes: float | np.ndarray  # weights + KV held, all chips together
    hbm_bytes: float  # capacity of the chips used
    fits: bool | np.ndarray
    assumptions: Assumptions = field(repr=False, default=None)

    @property
    def memory_s(self):
        return self.weights_s + self.kv_s

    @property
    def tokens_per_s_per_chip(self):
        return self.tokens_per_s / self.assumptions.chips

    @property
    def tokens_per_s_per_user(self):
        """New tokens each sequence gets per second (S per step)."""
        return self.new_tokens / self.step_s


def resolve_dtypes(model: Model, system: System, dtypes: Dtypes) -> tuple[str, str, str, str]:
    """(weight, kv, compute, compute_class) with defaults filled: the model's native weight dtype;
    compute in the weight dtype, or the next wider dtype the chip publishes FLOP/s for."""
    weight = dtypes.weight or model.weight_dtype
    kv = dtypes.kv
    compute = dtypes.compute or weight
    return weight, kv, compute, system.compute_class_for(compute)


def _check(name: str, x, *, minimum: float, integer: bool = False):
    a = np.asarray(x, dtype=float)
    if a.size == 0:
        raise TokenmathError(f"{name} is empty; expected a number or a non-empty array")
    if not np.all(np.isfinite(a)):
        raise TokenmathError(f"{name} = {x!r} must be finite")
    if np.any(a < minimum):
        bad = a[a < minimum].flat[0]
        raise TokenmathError(f"{name} = {bad:g} must be >= {minimum:g}")
    if integer and np.any(a != np.round(a)):
        raise TokenmathError(f"{name} = {x!r} must be a whole number")
    return a


def memory_required_bytes(model: Model, batch, context, *, weight_dtype: str | None = None, kv_dtype: str = "bf16"):
    """Weights + the KV cache of `batch` sequences of `context` tokens (all chips together)."""
    return weight_bytes(model, weight_dtype) + np.asarray(batch, float) * kv_cache(model, context, kv_dtype).stored_bytes


def chips_to_fit(model: Model, system: System, batch=1, context=0, *, weight_dtype: str | None = None,
                 kv_dtype: str = "bf16", headroom: float = 1.0) -> int:
    """Fewest chips whose HBM holds weights + KV: a power of two inside one scale-up domain (or
    the whole domain), then whole domains. `headroom` < 1 reserves HBM for activations etc."""
    need = float(np.max(memory_required_bytes(model, batch, context, weight_dtype=weight_dtype, kv_dtype=kv_dtype)))
    per_chip = system.chip.hbm_bytes * headroom
    n = 1
    while n < system.scaleup_chips:
        if n * per_chip >= need:
            return n
        n *= 2
    domains = int(np.ceil(need / (system.scaleup_chips * per_chip)))
    return max(1, domains) * system.scaleup_chips


@dataclass(frozen=True)
class Slopes:
    """The terms of T(B) = max(B·c, W + B·k) for `chips` chips, with the rates that made them."""

    weights_s: float  # W: the weight fetch, paid once per step whatever the batch
    compute_s_per_seq: float | np.ndarray  # c(L): one sequence's FLOPs for one new token
    kv_s_per_seq: float | np.ndarray  # k(L): one sequence's KV read
    weights_bytes: float
    kv_bytes_per_seq: float | np.ndarray
    flops_per_s: float  # achieved, all chips
    hbm_bytes_per_s: float  # achieved, all chips
    chips: int
    weight_dtype: str
    kv_dtype: str
    compute_dtype: str
    compute_class: str


def slopes(model: Model, system: System, context=0, *, chips: int | None = None, dtypes: Dtypes = Dtypes(),
           efficiency: Efficiency = ROOFLINE, attention_flops: bool = True) -> Slopes:
    """Per-step and per-sequence times on `chips` chips: every closed form is built on these."""
    n = system.scaleup_chips if chips is None else int(chips)
    weight, kv, compute, cls = resolve_dtypes(model, system, dtypes)
    F = float(system.chip.flops_per_s(cls)) * n * efficiency.flops
    BW = system.chip.hbm_bytes_per_s * n * efficiency.hbm
    w_bytes = weights_read_bytes(model, dtypes.weight)
    attn = attention_flops_per_token(model, context) if attention_flops else 0.0
    c = (2.0 * matmul_params_per_token(model) + attn) / F
    kv_bytes = np.asarray(kv_cache(model, context, kv).read_bytes)
    return Slopes(w_bytes / BW, _squeeze(c), _squeeze(kv_bytes / BW), w_bytes, _squeeze(kv_bytes), F, BW, n,
                  weight, kv, compute, cls)


def default_replica_chips(model: Model, system: System, context=0, batch=1, *, weight_dtype: str | None = None,
                          kv_dtype: str = "bf16") -> int:
    """Chips in one serving replica when the user names none: the whole scale-up domain when it is
    a box or a rack (<= 72 chips, the lecture's serving unit), else (TPU pods) the fewest
    power-of-two chips that hold the weights and the batch's KV; never fewer than fit."""
    fit = chips_to_fit(model, system, batch, context, weight_dtype=weight_dtype, kv_dtype=kv_dtype)
    if system.scaleup_chips <= 72:
        return max(fit, system.scaleup_chips)
    return fit


def step_time(
    model: Model,
    system: System,
    batch=1,
    context=0,
    new_tokens=1,
    *,
    chips: int | None = None,
    dtypes: Dtypes = Dtypes(),
    efficiency: Efficiency = ROOFLINE,
    usd_per_chip_hour: float | None = None,
    expert_fetch: str = "all",
    attention_flops: bool = True,
    overhead_s: float = 0.0,
) -> StepTime:
    """Roofline time of one forward pass (decode when new_tokens == 1, a prefill chunk otherwise).

    chips: chips serving one model replica (default: the system's scale-up domain).
    expert_fetch: "all" streams every routed expert each step (the lecture's model; exact once
      the batch is large); "expected" streams only the experts a batch of B·S tokens is expected
      to touch under uniform routing, E·(1 − (1 − k/E)^(B·S)), tighter at small batch.
    attention_flops: count attention's score/value FLOPs at context L (True), or drop them as the
      lecture does (False; fine for GQA at short context, large for MLA: see docs/roofline.md).
    overhead_s: a fixed time added to every pass (launches, scheduling; a calibrated estimate's
      term, 0 for the roofline bound).
    """
    B = _check("batch", batch, minimum=1)
    L = _check("context", context, minimum=0)
    S = _check("new_tokens", new_tokens, minimum=1)
    n = system.scaleup_chips if chips is None else int(_check("chips", chips, minimum=1, integer=True))
    if expert_fetch not in ("all", "expected"):
        raise TokenmathError(f"expert_fetch = {expert_fetch!r}; expected 'all' or 'expected'")
    price = system.usd_per_chip_hour if usd_per_chip_hour is None else float(usd_per_chip_hour)
    if price is not None and (not np.isfinite(price) or price < 0):
        raise TokenmathError(f"usd_per_chip_hour = {price!r} must be >= 0")

    p = slopes(model, system, L, chips=n, dtypes=dtypes, efficiency=efficiency, attention_flops=attention_flops)
    weight, kv, compute, cls = p.weight_dtype, p.kv_dtype, p.compute_dtype, p.compute_class
    tokens = B * S
    compute_s = tokens * np.asarray(p.compute_s_per_seq)
    flops = compute_s * p.flops_per_s

    w_bytes = p.weights_bytes
    if expert_fetch == "expected" and model.moe:
        routed = routed_expert_bytes(model, dtypes.weight)
        frac = 1.0 - (1.0 - model.moe.k / model.moe.n_experts) ** tokens
        w_bytes = (w_bytes - routed) + routed * frac
    weights_s = w_bytes / p.hbm_bytes_per_s

    kv_read = B * np.asarray(p.kv_bytes_per_seq)
    kv_s = B * np.asarray(p.kv_s_per_seq)
    network_s = np.zeros_like(compute_s)
    stored = np.asarray(kv_cache(model, L, kv).stored_bytes)

    memory_s = weights_s + kv_s
    if not (overhead_s >= 0 and math.isfinite(overhead_s)):
        raise TokenmathError(f"overhead = {overhead_s!r} s must be >= 0")
    step_s = np.maximum(np.maximum(compute_s, memory_s), network_s) + overhead_s
    bound_idx = np.where(network_s > np.maximum(compute_s, memory_s), 2, np.where(compute_s >= memory_s, 0, 1))
    tokens_per_s = tokens / step_s
    usd = None
    if price is not None:
        usd = step_s * n * price / 3600.0 / tokens * 1e6
    peak_flops = float(system.chip.flops_per_s(cls)) * n
    peak_bw = system.chip.hbm_bytes_per_s * n
    mfu = flops / (step_s * peak_flops)
    mbu = (w_bytes + kv_read) / (step_s * peak_bw)
    mem = weight_bytes(model, dtypes.weight) + B * stored
    hbm = system.chip.hbm_bytes * n

    shape = np.shape(step_s)
    out = dict(
        batch=B, context=L, new_tokens=S, compute_s=compute_s, weights_s=weights_s, kv_s=kv_s,
        network_s=network_s, step_s=step_s, bound=BOUNDS[bound_idx], tokens_per_s=tokens_per_s,
        usd_per_mtok=usd, mfu=mfu, mbu=mbu, flops=flops, kv_bytes_read=kv_read, memory_bytes=mem,
        fits=mem <= hbm, weight_bytes_read=w_bytes,
    )
    out = {k: None if v is None else _squeeze(np.broadcast_to(v, shape)) for k, v in out.items()}
    return StepTime(
        **out,
        hbm_bytes=float(hbm),
        assumptions=Assumptions(
            chips=n, weight_dtype=weight, kv_dtype=kv, compute_dtype=compute, compute_class=cls,
            flops_per_s_per_chip=float(system.chip.flops_per_s(cls)),
            hbm_bytes_per_s_per_chip=system.chip.hbm_bytes_per_s, efficiency=efficiency,
            usd_per_chip_hour=price, expert_fetch=expert_fetch, attention_flops=attention_flops,
        ),
    )


def _squeeze(v):
    if v is None:
        return None
    a = np.asarray(v)
    if a.ndim == 0:
        item = a.item()
        return item
    return a


def hardware_ratio(system: System, weight_dtype: str = "bf16", compute_dtype: str | None = None) -> float:
    """FLOP/s × bytes per weight ÷ (2 × HBM B/s): the batch at which a dense model's weight fetch
    and its multiplies take equal time (the lecture's "≈ 300"; the scaling book's B_crit)."""
    flops = system.flops_per_s(compute_dtype or weight_dtype)
    return flops * dtype_bytes(weight_dtype) / (2.0 * system.chip.hbm_bytes_per_s)


def hbm_drain_s(system: System) -> float:
    """HBM capacity / HBM bandwidth: the time to read all of memory once (per chip = per system)."""
    return system.chip.hbm_bytes / system.chip.hbm_bytes_per_s


def sparsity(model: Model) -> float:
    """N_total / N_active."""
    return param_counts(model).sparsity
