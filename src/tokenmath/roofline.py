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
from functools import cached_property, lru_cache

import numpy as np

from .errors import TokenmathError
from .kvcache import attention_flops_per_token, attention_terms, kv_cache, kv_terms
from .params import matmul_params_per_token, param_counts, routed_expert_bytes, weight_bytes, weights_read_bytes
from .specs import ROOFLINE, Dtypes, Efficiency, Model, System
from .units import COMPUTE_CLASS, dtype_bytes

BOUND_NAMES = ("compute", "memory", "network")
BOUNDS = np.array(BOUND_NAMES)


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
class _Rates:
    """What a StepTime's derived figures need: the call's setup and its per-sequence bytes."""

    setup: "_Setup"
    kv_bytes_per_seq: float | np.ndarray  # read by one sequence's step
    kv_stored_per_seq: float | np.ndarray
    weights_read_bytes: float | np.ndarray
    shape: tuple


@dataclass(frozen=True)
class StepTime:
    """One pass's time and its parts (seconds), with throughput, cost and utilisation.

    Every figure has the broadcast shape of (batch, context, new_tokens); a float when all three
    are numbers. The breakdown (compute_s, weights_s, kv_s, network_s, step_s) is computed by
    step_time; the rest (bound, tokens/s, $/Mtok, MFU, MBU, bytes, fit) on first access, so a
    sweep pays only for what it reads.
    """

    batch: float | np.ndarray
    context: float | np.ndarray
    new_tokens: float | np.ndarray
    compute_s: float | np.ndarray
    weights_s: float | np.ndarray
    kv_s: float | np.ndarray
    network_s: float | np.ndarray
    step_s: float | np.ndarray
    hbm_bytes: float  # capacity of the chips used
    assumptions: Assumptions = field(repr=False, default=None)
    _rates: _Rates = field(repr=False, default=None, compare=False)

    def _full(self, v):
        r = self._rates
        return v if not r.shape else np.broadcast_to(v, r.shape)

    @cached_property
    def bound_code(self):
        """0 = compute, 1 = memory, 2 = network (BOUNDS names them): small integers for sweeps."""
        mem = self.weights_s + self.kv_s
        if not self._rates.shape:
            return 2 if self.network_s > max(self.compute_s, mem) else (0 if self.compute_s >= mem else 1)
        code = np.where(self.compute_s >= mem, 0, 1).astype(np.int8)
        if np.any(self.network_s):
            code[np.broadcast_to(self.network_s > np.maximum(self.compute_s, mem), code.shape)] = 2
        return code

    @property
    def bound(self) -> str | np.ndarray:
        """"compute", "memory" or "network": what decided the step (an array of names for sweeps)."""
        c = self.bound_code
        return BOUND_NAMES[c] if isinstance(c, int) else BOUNDS[c]

    @cached_property
    def tokens_per_s(self):
        return self.batch * self.new_tokens / self.step_s

    @cached_property
    def usd_per_mtok(self):
        a = self.assumptions
        if a.usd_per_chip_hour is None:
            return None
        return self.step_s * (a.chips * a.usd_per_chip_hour / 3600.0 * 1e6) / (self.batch * self.new_tokens)

    @cached_property
    def flops(self):
        return self.compute_s * self._rates.setup.flops_per_s

    @cached_property
    def mfu(self):
        return self.flops / (self.step_s * self._rates.setup.peak_flops_per_s)

    @cached_property
    def weight_bytes_read(self):
        return self._full(self._rates.weights_read_bytes)

    @cached_property
    def kv_bytes_read(self):
        return self._full(self.batch * self._rates.kv_bytes_per_seq)

    @cached_property
    def mbu(self):
        return (self._rates.weights_read_bytes + self.kv_bytes_read) / (self.step_s * self._rates.setup.peak_hbm_bytes_per_s)

    @cached_property
    def memory_bytes(self):
        """Weights + KV held, all chips together."""
        return self._full(self._rates.setup.weights_stored_bytes + self.batch * self._rates.kv_stored_per_seq)

    @cached_property
    def fits(self):
        return self.memory_bytes <= self.hbm_bytes

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
    compute in the weight dtype; compute_class the FLOP/s line it runs at — its own, or the next
    wider one the chip publishes (compute_label says which)."""
    weight = dtypes.weight or model.weight_dtype
    kv = dtypes.kv
    compute = dtypes.compute or weight
    return weight, kv, compute, system.compute_class_for(compute)


def compute_label(compute: str, compute_class: str) -> str:
    """'fp8', or 'fp4 on the chip's fp8 FLOP/s line, having no fp4 one' where it has no line of its own."""
    own = COMPUTE_CLASS.get(compute, compute)
    return compute if own == compute_class else f"{compute} on the chip's {compute_class} FLOP/s line, having no {own} one"


def _check(name: str, x, *, minimum: float, integer: bool = False):
    """x as a float (a number) or a float array, checked finite and >= minimum (and whole)."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        v = float(x)
        if not math.isfinite(v):
            raise TokenmathError(f"{name} = {x!r} must be finite")
        if v < minimum:
            raise TokenmathError(f"{name} = {v:g} must be >= {minimum:g}")
        if integer and v != round(v):
            raise TokenmathError(f"{name} = {x!r} must be a whole number")
        return v
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
    if price is not None and (not math.isfinite(price) or price < 0):
        raise TokenmathError(f"usd_per_chip_hour = {price!r} must be >= 0")
    if not (overhead_s >= 0 and math.isfinite(overhead_s)):
        raise TokenmathError(f"overhead = {overhead_s!r} s must be >= 0")
    scalar = isinstance(B, float) and isinstance(L, float) and isinstance(S, float)
    if not scalar:  # arrays: one shape for every figure
        B, L, S = np.asarray(B), np.asarray(L), np.asarray(S)
        shape = np.broadcast_shapes(B.shape, L.shape, S.shape)
    else:
        shape = ()

    k = _setup(model, system, dtypes, n, efficiency, price, expert_fetch, attention_flops)
    c = (k.matmul_flops + k.attention.at(L)) / k.flops_per_s if attention_flops else k.matmul_flops / k.flops_per_s
    kv_read_per_seq = k.kv.read.at(L)
    tokens = B * S
    compute_s = tokens * c
    w_bytes = k.weights_read_bytes
    if expert_fetch == "expected" and model.moe:
        w_bytes = (w_bytes - k.routed_bytes) + k.routed_bytes * (1.0 - (1.0 - model.moe.k / model.moe.n_experts) ** tokens)
    weights_s = w_bytes / k.hbm_bytes_per_s
    kv_s = B * (kv_read_per_seq / k.hbm_bytes_per_s)
    step_s = (max(compute_s, weights_s + kv_s) if scalar else np.maximum(compute_s, weights_s + kv_s))
    if overhead_s:
        step_s = step_s + overhead_s
    if not scalar:
        full = lambda v: np.broadcast_to(v, shape)  # noqa: E731  (views: no memory)
        B, L, S, compute_s, weights_s, kv_s, step_s = (full(v) for v in (B, L, S, compute_s, weights_s, kv_s, step_s))
    rates = _Rates(k, kv_read_per_seq, k.kv.stored.at(L), w_bytes, shape)
    return StepTime(
        batch=B, context=L, new_tokens=S, compute_s=compute_s, weights_s=weights_s, kv_s=kv_s,
        network_s=0.0 if scalar else np.broadcast_to(0.0, shape), step_s=step_s, hbm_bytes=k.hbm_bytes,
        assumptions=k.assumptions,
        _rates=rates,
    )


@dataclass(frozen=True)
class _Setup:
    """What a step depends on besides (batch, context, new_tokens): computed once per combination."""

    matmul_flops: float  # 2·N_matmul per token
    attention: object  # kvcache.Terms: attention FLOPs per token at context L
    kv: object  # kvcache.KvTerms
    flops_per_s: float  # achieved, all chips
    hbm_bytes_per_s: float  # achieved, all chips
    peak_flops_per_s: float
    peak_hbm_bytes_per_s: float
    weights_read_bytes: float
    weights_stored_bytes: float
    routed_bytes: float
    hbm_bytes: float
    assumptions: Assumptions


@lru_cache(maxsize=512)
def _setup(model: Model, system: System, dtypes: Dtypes, n: int, efficiency: Efficiency, price, expert_fetch: str,
           attention_flops: bool) -> _Setup:
    weight, kv, compute, cls = resolve_dtypes(model, system, dtypes)
    per_chip = float(system.chip.flops_per_s(cls))
    peak_flops, peak_bw = per_chip * n, system.chip.hbm_bytes_per_s * n
    a = Assumptions(chips=n, weight_dtype=weight, kv_dtype=kv, compute_dtype=compute, compute_class=cls,
                    flops_per_s_per_chip=per_chip, hbm_bytes_per_s_per_chip=system.chip.hbm_bytes_per_s,
                    efficiency=efficiency, usd_per_chip_hour=price, expert_fetch=expert_fetch,
                    attention_flops=attention_flops)
    return _Setup(2.0 * matmul_params_per_token(model), attention_terms(model), kv_terms(model, kv),
                  peak_flops * efficiency.flops, peak_bw * efficiency.hbm, peak_flops, peak_bw,
                  weights_read_bytes(model, dtypes.weight), weight_bytes(model, dtypes.weight),
                  routed_expert_bytes(model, dtypes.weight) if model.moe else 0.0,
                  float(system.chip.hbm_bytes * n), a)


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
