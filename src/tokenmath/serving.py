"""Serving economics solved in closed form from the roofline step (the lecture's first half).

Per sequence and per chip-second, the step of B sequences at context L is
    T(B) = max( B·c(L),  W + B·k(L) )
with  W    = weight bytes read / (chips · BW)            (weight fetch, shared by the batch)
      c(L) = (2·N_matmul + attn_FLOPs(L)) / (chips · FLOPs)   (compute per sequence)
      k(L) = KV bytes read(L) / (chips · BW)              (KV fetch per sequence)
Solving for one variable gives each answer below; none is read off a grid.
"""

from __future__ import annotations

import numpy as np

from .kvcache import kv_cache
from .roofline import hardware_ratio, hbm_drain_s, resolve_dtypes, slopes
from .specs import ROOFLINE, Dtypes, Efficiency, Model, System


def latency_floor_s(model: Model, system: System, *, chips: int | None = None, dtypes: Dtypes = Dtypes(),
                    efficiency: Efficiency = ROOFLINE) -> float:
    """The fastest a decode step can be: all weights streamed once over the chips' aggregate HBM
    bandwidth, N_total·b_w / (chips·BW). Batch size cannot beat it; only more chips (a larger
    scale-up domain) or narrower weights can."""
    return slopes(model, system, 0, chips=chips, dtypes=dtypes, efficiency=efficiency).weights_s


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
    from .params import weight_bytes

    n = system.scaleup_chips if chips is None else int(chips)
    weight, kv, *_ = resolve_dtypes(model, system, dtypes)
    free = system.chip.hbm_bytes * n - weight_bytes(model, dtypes.weight)
    per_seq = np.asarray(kv_cache(model, np.maximum(context, 1), kv).stored_bytes)
    return _s(np.floor(np.maximum(free, 0) / per_seq))


def _s(x):
    a = np.asarray(x, dtype=float)
    return float(a) if a.ndim == 0 else a


__all__ = [
    "slopes", "latency_floor_s", "balance_batch", "balance_batch_with_kv", "cost_floor_usd_per_mtok",
    "batch_to_fill_hbm", "hardware_ratio", "hbm_drain_s",
]
