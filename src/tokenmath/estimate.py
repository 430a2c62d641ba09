"""The answer a user gets: the calibrated estimate of a pass, its 80 % band, and the roofline
bound beside it.

    estimate_pass(model, system, batch, context, new_tokens, chips=8, profile=choose("calibrated"))

runs the per-operation step model (stepmodel.op_step) under a profile (profiles.choose) on the
layout the chips imply (or one given), and returns step time, tokens/s (per replica, chip, user)
and $/Mtok, each labelled, with `range_80` from the cross-validated residuals and the roofline
of the same pass as `roofline_step_s`. With the roofline profile every number is the bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import TokenmathError
from .layout import Layout, _largest_divisor_at_most
from .profiles import ROOFLINE_PROFILE, Profile, _f
from .specs import Dtypes, Model, System
from .stepmodel import OpStep, op_step


def default_layout(model: Model, system: System, chips: int) -> Layout:
    """The layout `chips` chips of one replica get when the user names none: MoE models spread
    experts over as many of them as divide the experts (EP, attention data-parallel: DeepSeek's
    256 experts on 64 of an NVL72's 72 GPUs, the rest idle and billed), dense models split by
    tensor parallelism as far as the heads divide, the rest as pipeline stages."""
    n = int(chips)
    if model.is_totals_only:
        raise TokenmathError(f"model {model.name!r} is defined by totals only; the per-operation estimate needs its "
                             "architecture (a config.json) — use --efficiency roofline")
    if model.moe is not None:
        ep = _largest_divisor_at_most(model.moe.n_experts, n)
        if ep > 1:
            return Layout(tp=1, ep=ep)
    tp = _largest_divisor_at_most(model.attention.n_heads, n)
    pp = n // tp if n % tp == 0 else 1
    return Layout(tp=tp, pp=max(1, min(pp, model.n_layers)))


@dataclass(frozen=True)
class Estimated:
    """A pass's estimate (or bound), labelled, with its band and the bound beside it."""

    label: str  # "calibrated 2026-12 generic" | "roofline"
    step_s: float | np.ndarray
    tokens_per_s: float | np.ndarray  # one replica
    tokens_per_s_per_chip: float | np.ndarray  # per billed chip
    tokens_per_s_per_user: float | np.ndarray  # new tokens each sequence gets per second
    usd_per_mtok: float | np.ndarray | None
    roofline_step_s: float | np.ndarray
    range_80: dict | None  # {"step_s": [lo, hi], "tokens_per_s_per_chip": [lo, hi], "usd_per_mtok": [lo, hi]}
    op: OpStep

    @property
    def is_roofline(self) -> bool:
        return self.label == "roofline"


def estimate_pass(model: Model, system: System, batch=1.0, context=0.0, new_tokens=1.0, *, chips: int | None = None,
                  layout: Layout | None = None, dtypes: Dtypes = Dtypes(), profile: Profile = ROOFLINE_PROFILE,
                  usd_per_chip_hour: float | None = None, prefill_tokens=0.0, prefill_context=0.0,
                  prefill_seqs=None) -> Estimated:
    """One pass of `batch` sequences × `new_tokens` at `context`, on `layout` (default: the layout
    `chips` chips imply; chips default to the system's scale-up domain)."""
    if layout is None:
        layout = default_layout(model, system, system.scaleup_chips if chips is None else chips)
    op = op_step(model, system, layout, batch, context, new_tokens, kernels=profile.kernels, engine=profile.engine,
                 prefill_tokens=prefill_tokens, prefill_context=prefill_context, prefill_seqs=prefill_seqs,
                 dtypes=dtypes)
    price = system.usd_per_chip_hour if usd_per_chip_hour is None else float(usd_per_chip_hour)
    step = np.asarray(op.step_s)
    tokens = np.asarray(op.tokens_per_s) * step
    usd = None if price is None else step * op.billed_chips * price / 3600.0 / tokens * 1e6
    band = None
    r80 = None if profile.is_roofline else profile.range_80(step)
    if r80 is not None:
        lo, hi = r80
        band = {"step_s": [lo, hi]}
        band["tokens_per_s_per_chip"] = [_f(tokens / np.asarray(hi) / op.billed_chips),
                                         _f(tokens / np.asarray(lo) / op.billed_chips)]
        if usd is not None:
            band["usd_per_mtok"] = [_f(usd * np.asarray(lo) / step), _f(usd * np.asarray(hi) / step)]
    S = np.asarray(new_tokens, float)
    return Estimated(
        label=profile.label, step_s=_f(step), tokens_per_s=_f(tokens / step),
        tokens_per_s_per_chip=_f(tokens / step / op.billed_chips), tokens_per_s_per_user=_f(S / step),
        usd_per_mtok=None if usd is None else _f(usd), roofline_step_s=op.bound_s, range_80=band, op=op,
    )


def estimate_record(e: Estimated) -> dict:
    """The estimate's JSON keys (merged into every serving command's record)."""
    op = e.op
    return {
        "estimate": e.label, "step_s": e.step_s, "tokens_per_s": e.tokens_per_s,
        "tokens_per_s_per_chip": e.tokens_per_s_per_chip, "tokens_per_s_per_user": e.tokens_per_s_per_user,
        "usd_per_mtok": e.usd_per_mtok, "range_80": e.range_80, "roofline_step_s": e.roofline_step_s,
        "parts": op.parts | {"expert_imbalance": op.expert_imbalance},
        "layout": {"tp": op.layout.tp, "ep": op.layout.ep, "pp": op.layout.pp, "dp": op.layout.dp},
    }


def linearised(model: Model, system: System, *, chips: int, dtypes: Dtypes, profile: Profile, input_tokens: float,
               output_tokens: float, batch: float = 64.0, layout: Layout | None = None):
    """(Efficiency, overhead_s) that make the simulator's affine step model
    T = max(tokens·c(L), W + KV/BW)/eff + overhead reproduce the estimate at the workload's
    operating point: the per-step overhead is the profile's; the HBM efficiency is the roofline's
    memory time over the estimate of a decode step at `batch` (mean context I + O/2); the FLOP/s
    efficiency is the roofline's compute time over the estimate of a prefill of one prompt.
    An approximation, labelled as such in the simulator's output. `layout`: the replica's layout
    (default: the one `chips` implies)."""
    from .roofline import step_time
    from .specs import Efficiency

    lay = layout or default_layout(model, system, chips)
    ov = profile.engine.overhead_s
    L = input_tokens + output_tokens / 2
    dec = op_step(model, system, lay, batch, L, 1.0, kernels=profile.kernels, engine=profile.engine, dtypes=dtypes)
    pre = op_step(model, system, lay, 1.0, 0.0, float(input_tokens), kernels=profile.kernels, engine=profile.engine,
                  dtypes=dtypes)
    r_dec = step_time(model, system, batch, L, 1, chips=chips, dtypes=dtypes, expert_fetch="all")
    r_pre = step_time(model, system, 1, input_tokens / 2, input_tokens, chips=chips, dtypes=dtypes)
    e_m = min(1.0, float(r_dec.memory_s) / max(float(dec.step_s) - ov, 1e-12))
    e_c = min(1.0, float(r_pre.compute_s) / max(float(pre.step_s) - ov, 1e-12))
    return Efficiency(flops=max(e_c, 1e-3), hbm=max(e_m, 1e-3), label=f"{profile.label}, linearised"), ov
