"""Results -> text, tables and JSON. Formatting only: every number comes from the core modules."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import params as _params
from .errors import TokenmathError
from .kvcache import kv_cache
from .roofline import StepTime, hardware_ratio, hbm_drain_s, step_time
from . import serving
from .serving import (
    balance_batch,
    balance_batch_with_kv,
    batch_to_fill_hbm,
    cost_floor_usd_per_mtok,
    latency_floor_s,
)
from .specs import ROOFLINE, Dtypes, Efficiency, Model, System
from .units import count as count_words
from .units import seconds, si

# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def jsonable(obj: Any) -> Any:
    """Dataclasses, numpy scalars/arrays -> plain JSON types; refuses NaN and inf."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return out
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):
        if math.isnan(obj):
            return None  # "no data" (e.g. a percentile of no completed requests)
        if not math.isfinite(obj):
            raise TokenmathError(f"a result came out as {obj!r}; the inputs are outside what tokenmath can compute")
        return obj
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(jsonable(obj), indent=2, allow_nan=False)


# --------------------------------------------------------------------------------------------
# Records (what the CLI's --json prints)
# --------------------------------------------------------------------------------------------


def model_record(model: Model, context: float = 1.0, kv_dtype: str = "bf16") -> dict[str, Any]:
    pc = _params.param_counts(model)
    kv = kv_cache(model, context, kv_dtype)
    a = model.attention
    rec: dict[str, Any] = {
        "name": model.name,
        "family": model.family,
        "total_params": pc.total,
        "active_params": pc.active,
        "sparsity": pc.sparsity,
        "mtp_params": pc.mtp,
        "layers": model.n_layers,
        "hidden": model.hidden,
        "vocab": model.vocab,
        "context": kv.context_tokens,
        "kv_dtype": kv_dtype,
        "kv_bytes_per_token": kv.stored_bytes_per_token,
        "kv_read_bytes_per_token": kv.read_bytes_per_token,
        "kv_bytes_per_sequence": kv.stored_bytes,
        "kv_read_bytes_per_step": kv.read_bytes,
        "kv_layers": {"full": kv.layers_full, "windowed": kv.layers_windowed, "shared": kv.layers_shared},
        "native_weight_dtype": model.weight_dtype,
        "weight_bytes": _params.weight_bytes(model),
        "breakdown": pc.parts() | {"routed_experts_active": pc.routed_experts_active, "mtp": pc.mtp},
        "source": model.source,
        "as_of": model.as_of,
    }
    if a is not None:
        rec["attention"] = {
            "kind": a.kind, "heads": a.n_heads, "kv_heads": a.n_kv_heads, "head_dim": a.head_dim,
            "v_head_dim": a.v_head_dim, "kv_lora_rank": a.kv_lora_rank, "qk_rope_head_dim": a.qk_rope_head_dim,
            "sliding_windows": sorted({w for w in model.layer_window if w is not None}),
            "sparse_topk": a.index_topk,
        }
    if model.moe is not None:
        rec["moe"] = {
            "experts": model.moe.n_experts, "experts_per_token": model.moe.k, "shared_experts": model.moe.n_shared,
            "moe_layers": int(sum(model.layer_moe)), "expert_intermediate": model.moe.expert.intermediate,
        }
    if model.notes:
        rec["notes"] = model.notes
    return rec


def system_record(system: System) -> dict[str, Any]:
    c = system.chip
    rec = {
        "name": system.name,
        "description": system.description,
        "chip": c.name,
        "bf16_flops_per_s": c.bf16_flops_per_s,
        "fp8_flops_per_s": c.fp8_flops_per_s,
        "int8_flops_per_s": c.int8_flops_per_s,
        "fp4_flops_per_s": c.fp4_flops_per_s,
        "hbm_bytes": c.hbm_bytes,
        "hbm_bytes_per_s": c.hbm_bytes_per_s,
        "hbm_drain_s": hbm_drain_s(system),
        "scaleup_bytes_per_s": system.scaleup_bytes_per_s,
        "scaleup_chips": system.scaleup_chips,
        "scaleout_bytes_per_s": system.scaleout_bytes_per_s,
        "scaleup_to_scaleout_ratio": system.scaleup_to_scaleout_ratio,
        "ddr_bytes": system.ddr.bytes if system.ddr else None,
        "ddr_bytes_per_s": system.ddr.bytes_per_s if system.ddr else None,
        "flash_bytes": system.flash.bytes if system.flash else None,
        "flash_bytes_per_s": system.flash.bytes_per_s if system.flash else None,
        "power_w": c.power_w,
        "usd_per_chip_hour": system.usd_per_chip_hour,
        "domain_hbm_bytes": c.hbm_bytes * system.scaleup_chips,
        "domain_hbm_bytes_per_s": c.hbm_bytes_per_s * system.scaleup_chips,
        "hardware_ratio": {
            cls: hardware_ratio(system, dt) for cls, dt in (("bf16", "bf16"), ("fp8", "fp8"), ("fp4", "fp4"))
            if c.flops_per_s(cls)
        },
        "preliminary": system.preliminary,
        "source": system.source,
        "price_source": system.price_source,
        "as_of": system.as_of,
    }
    if system.notes:
        rec["notes"] = system.notes
    return rec


def assumptions_record(st: StepTime) -> dict[str, Any]:
    a = st.assumptions
    return {
        "label": a.label,
        "chips": a.chips,
        "weight_dtype": a.weight_dtype,
        "kv_dtype": a.kv_dtype,
        "compute_dtype": a.compute_dtype,
        "flops_class": a.compute_class,
        "flops_per_s_per_chip": a.flops_per_s_per_chip,
        "hbm_bytes_per_s_per_chip": a.hbm_bytes_per_s_per_chip,
        "efficiency": {"flops": a.efficiency.flops, "hbm": a.efficiency.hbm, "network": a.efficiency.network,
                       "label": a.efficiency.label},
        "usd_per_chip_hour": a.usd_per_chip_hour,
        "expert_fetch": a.expert_fetch,
        "attention_flops": a.attention_flops,
        "network": a.network,
    }


STEP_KEYS = ("batch", "context", "new_tokens", "compute_s", "weights_s", "kv_s", "network_s", "step_s", "bound",
             "tokens_per_s", "usd_per_mtok", "mfu", "mbu", "flops", "weight_bytes_read", "kv_bytes_read",
             "memory_bytes", "hbm_bytes", "fits")


def step_record(st: StepTime) -> dict[str, Any]:
    rec = {k: getattr(st, k) for k in STEP_KEYS}
    rec["tokens_per_s_per_chip"] = st.tokens_per_s_per_chip
    rec["assumptions"] = assumptions_record(st)
    return rec


# --------------------------------------------------------------------------------------------
# The main report: a model on a system, in plain words with the formula behind each number
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    model: Model
    system: System
    context: float
    chips: int
    dtypes: Dtypes
    efficiency: Efficiency
    steps: list[StepTime]
    balance_batch: float
    balance_batch_with_kv: float | None
    latency_floor_s: float
    cost_floor_usd_per_mtok: float | None
    cost_floor_no_kv_usd_per_mtok: float | None
    hbm_drain_s: float
    batch_to_fill_hbm: float
    hardware_ratio: float
    balance_batch_lecture_fp4: float | None
    balance_context: float | None = None
    fast: object = None  # serving.FastMode at 2.5× (the lecture's fast-mode question)
    fast_100x: object = None  # what 100× the price buys
    traffic: object = None  # serving.Traffic for one replica's own capacity
    prefill: object = None  # serving.PrefillDecode for an 8k prompt


def build_report(model: Model, system: System, *, context: float = 4096, chips: int | None = None,
                 dtypes: Dtypes = Dtypes(), efficiency: Efficiency = ROOFLINE,
                 batches: tuple[float, ...] | None = None) -> Report:
    if chips is None:  # one replica, as every command chooses it: the domain, or more when it does not fit
        from .roofline import default_replica_chips

        chips = default_replica_chips(model, system, context, 1, weight_dtype=dtypes.weight, kv_dtype=dtypes.kv)
    n = chips
    bstar = balance_batch(model, system, dtypes=dtypes, efficiency=efficiency)
    bkv = balance_batch_with_kv(model, system, context, dtypes=dtypes, efficiency=efficiency)
    fill = batch_to_fill_hbm(model, system, context, chips=n, dtypes=dtypes)
    if batches is None:
        candidates = [1, 16, 128, 1024, round(bstar), 4 * round(bstar)]
        batches = tuple(sorted({b for b in candidates if b >= 1}))
    steps = [step_time(model, system, b, context, chips=n, dtypes=dtypes, efficiency=efficiency) for b in batches]
    weight_dtype = dtypes.weight or model.weight_dtype
    fast = fast_100 = tr = pd = None
    if fill >= 1:
        fast = serving.fast_mode(model, system, context, speedup=2.5, chips=n, dtypes=dtypes, efficiency=efficiency)
        fast_100 = serving.fast_mode(model, system, context, price_multiplier=100, chips=n, dtypes=dtypes,
                                     efficiency=efficiency)
        tr = serving.traffic(model, system, 1.0, context=context, chips=n, dtypes=dtypes, efficiency=efficiency)
        pd = serving.prefill_vs_decode(model, system, 8192, context=context, chips=n, dtypes=dtypes, efficiency=efficiency)
    lecture_fp4 = None
    if system.chip.fp4_flops_per_s and weight_dtype != "fp4":
        lecture_fp4 = balance_batch(model, system, dtypes=dataclasses.replace(dtypes, weight="fp4"), efficiency=efficiency)
    return Report(
        model=model, system=system, context=context, chips=n, dtypes=dtypes, efficiency=efficiency, steps=steps,
        balance_batch=bstar, balance_batch_with_kv=bkv,
        latency_floor_s=latency_floor_s(model, system, chips=n, dtypes=dtypes, efficiency=efficiency),
        cost_floor_usd_per_mtok=cost_floor_usd_per_mtok(model, system, context, dtypes=dtypes, efficiency=efficiency),
        cost_floor_no_kv_usd_per_mtok=cost_floor_usd_per_mtok(model, system, 0, dtypes=dtypes, efficiency=efficiency),
        hbm_drain_s=hbm_drain_s(system), batch_to_fill_hbm=fill,
        hardware_ratio=hardware_ratio(system, weight_dtype), balance_batch_lecture_fp4=lecture_fp4,
        balance_context=serving.balance_context(model, system, None, chips=n, dtypes=dtypes, efficiency=efficiency),
        fast=fast, fast_100x=fast_100, traffic=tr, prefill=pd,
    )


def report_record(r: Report) -> dict[str, Any]:
    return {
        "model": model_record(r.model, r.context, r.steps[0].assumptions.kv_dtype),
        "system": system_record(r.system),
        "context": r.context,
        "chips": r.chips,
        "steps": [step_record(s) for s in r.steps],
        "balance_batch": r.balance_batch,
        "balance_batch_with_kv": r.balance_batch_with_kv,
        "latency_floor_s": r.latency_floor_s,
        "cost_floor_usd_per_mtok": r.cost_floor_usd_per_mtok,
        "cost_floor_no_kv_usd_per_mtok": r.cost_floor_no_kv_usd_per_mtok,
        "hbm_drain_s": r.hbm_drain_s,
        "batch_to_fill_hbm": r.batch_to_fill_hbm,
        "hardware_ratio": r.hardware_ratio,
        "balance_context": r.balance_context,
        "fastmode": None if r.fast is None else {k: v for k, v in fastmode_record(r.fast).items() if k != "points"},
        "fastmode_100x_price": None if r.fast_100x is None else {
            "speedup": r.fast_100x.speedup, "batch": r.fast_100x.batch, "max_speedup": r.fast_100x.max_speedup},
        "traffic": None if r.traffic is None else traffic_record(r.traffic),
        "prefill": None if r.prefill is None else {k: v for k, v in prefill_record(r.prefill).items()
                                                   if k not in ("by_pass_length", "decode", "prefill")},
        "assumptions": assumptions_record(r.steps[0]),
    }


def usd(x: float | None) -> str:
    if x is None:
        return "n/a (no price: --usd-per-chip-hour)"
    return f"${x:,.3g}" if x < 100 else f"${x:,.0f}"


def count(x: float) -> str:
    return f"{x:,.0f}"


def render_report(r: Report) -> list[tuple[str, list[str]]]:
    """Sections of (heading, lines) in plain words; the CLI draws them with rich."""
    m, s, st0 = r.model, r.system, r.steps[0]
    a = st0.assumptions
    pc = _params.param_counts(m)
    kv = kv_cache(m, r.context, a.kv_dtype)
    wbytes = _params.weight_bytes(m, r.dtypes.weight)
    out: list[tuple[str, list[str]]] = []

    lines = [
        f"{m.name}: {count_words(pc.total)} parameters stored (N_total), {count_words(pc.active)} used per token"
        f" (N_active);"
        f" sparsity N_total/N_active = {pc.sparsity:.1f}.",
    ]
    if m.moe:
        lines.append(
            f"Each token is routed to {m.moe.k} of {m.moe.n_experts} experts"
            + (f" plus {m.moe.n_shared} shared" if m.moe.n_shared else "")
            + f" in {sum(m.layer_moe)} MoE layers; attention, dense layers and embeddings are always active,"
            f" so the parameter ratio ({pc.sparsity:.1f}) is below the expert ratio ({m.moe.n_experts / m.moe.k:.0f})."
        )
    lines.append(
        f"Weights in {a.weight_dtype}: {si(wbytes, 'B')}. KV cache ({a.kv_dtype}) at L = {count(r.context)} tokens:"
        f" {si(kv.stored_bytes_per_token, 'B')}/token, {si(kv.stored_bytes, 'B')} per sequence."
    )
    out.append(("The model", lines))

    lines = [
        f"{s.name} ({s.description}). One replica uses {r.chips} chips; per chip"
        f" {si(a.flops_per_s_per_chip, 'FLOP/s')} dense {a.compute_class}, {si(s.chip.hbm_bytes, 'B')} HBM at"
        f" {si(s.chip.hbm_bytes_per_s, 'B/s')}, {usd(a.usd_per_chip_hour)}/chip-hour.",
        f"Hardware ratio FLOP/s × bytes/weight ÷ (2 × HBM B/s) = {r.hardware_ratio:.0f} (the lecture's \"≈ 300\").",
        f"HBM drain time = capacity / bandwidth = {seconds(r.hbm_drain_s)}: the natural step time when HBM is full"
        f" and all of it is read each step.",
    ]
    out.append(("The system", lines))

    lines = [
        "T_step = max(compute, weight fetch + KV fetch); compute = 2·B·N_active/FLOP/s (+ attention),"
        " weight fetch = N_total·bytes/HBM B/s, KV fetch = B·L·KV bytes/HBM B/s — all over the replica's chips.",
        f"{'batch':>8} {'compute':>10} {'weights':>10} {'KV':>10} {'step':>10} {'bound':>8} {'tok/s':>11}"
        f" {'$/Mtok':>9} {'MFU':>6} fits",
    ]
    for st in r.steps:
        lines.append(
            f"{count(st.batch):>8} {seconds(st.compute_s):>10} {seconds(st.weights_s):>10} {seconds(st.kv_s):>10}"
            f" {seconds(st.step_s):>10} {st.bound:>8} {count(st.tokens_per_s):>11}"
            f" {('%.3g' % st.usd_per_mtok) if st.usd_per_mtok is not None else 'n/a':>9} {st.mfu:>6.1%}"
            f" {'yes' if st.fits else 'NO'}"
        )
    out.append((f"Decode steps at context L = {count(r.context)}", lines))

    lines = [
        f"Latency floor = weight bytes / ({r.chips} chips × HBM B/s) = {seconds(r.latency_floor_s)} per token:"
        " no batch size can beat it; only more chips or narrower weights can.",
        f"Balance batch B* (weight fetch = compute, KV ignored) = [FLOP/s·bytes/weight/(2·BW)] × N_total/N_active"
        f" ≈ {r.hardware_ratio:.0f} × {pc.sparsity:.1f} = {count(r.balance_batch)} sequences.",
    ]
    if m.moe:
        lines.append(
            f"  (The lecture multiplies 300 by a sparsity of 8 and gets 2,400; {m.name} is {pc.sparsity:.1f}×"
            f" sparse by parameters, hence ~{count(r.balance_batch)}.)"
        )
    if r.balance_batch_lecture_fp4:
        lines.append(f"  With FP4 weights as in the lecture's example: B* = {count(r.balance_batch_lecture_fp4)}.")
    if r.balance_batch_with_kv is None:
        lines.append(
            f"With KV fetches at L = {count(r.context)} there is no balance batch: each sequence's KV read takes"
            " longer than its compute, so decode is memory bound at every batch size."
        )
    else:
        lines.append(
            f"With KV fetches at L = {count(r.context)}: B* = W / (c − k) = {count(r.balance_batch_with_kv)} sequences."
        )
    lines.append(
        f"Cost floor (weights amortised over an unbounded batch) = max(compute, KV) per token × $/s ="
        f" {usd(r.cost_floor_usd_per_mtok)}/Mtok at L = {count(r.context)}"
        f" ({usd(r.cost_floor_no_kv_usd_per_mtok)}/Mtok with no context)."
    )
    fitting = [x for x in r.steps if x.fits]
    if not fitting:
        lines.append(f"No batch in the table fits: weights + KV exceed {r.chips} × {r.system.name}'s HBM; give --chips.")
    elif st0.fits and st0.usd_per_mtok is not None and fitting[-1].usd_per_mtok and fitting[-1] is not st0:
        lines.append(
            f"Batch 1 costs {st0.usd_per_mtok / fitting[-1].usd_per_mtok:,.0f}× more per token than batch"
            f" {count(fitting[-1].batch)}, the largest in the table that fits: not batching is ruinous (the lecture's \"~1000× worse\")."
        )
    if r.balance_context is not None:
        lines.append(
            f"Balance context L* (KV fetch per token = compute per token) = {count(r.balance_context)} tokens: beyond it"
            " decode is memory bound at any batch, and cost per token grows with context."
        )
    out.append(("Floors and balance points", lines))

    if r.fast is not None:
        f, f100 = r.fast, r.fast_100x
        lines = [
            f"Normal mode runs the cost-optimal batch {count(f.reference_batch)} (step {seconds(f.reference_step_s)}).",
            f"Fast mode: {f.speedup:.2f}× the speed costs {f.price_multiplier:.2f}× the price (batch"
            f" {count(f.batch)}); the lecture's 6×-price / 2.5×-speed pair fits a step ~2.8× the weight-fetch time.",
            f"100× the price buys {f100.speedup:.2f}× at most here: batch 1 hits the {seconds(f.latency_floor_s)}"
            f" latency floor ({f.max_speedup:.2f}× faster than normal). Only more chips per replica go further.",
            f"Slow mode saves at most {f.max_saving:.2f}×: the cost floor is already near.",
        ] if f.speedup is not None else [
            f"Normal mode runs batch {count(f.reference_batch)}; batch 1 is {f.max_speedup:.2f}× faster, so 2.5× is"
            " out of reach by batch size alone."
        ]
        out.append(("Fast mode and slow mode", lines))
    if r.traffic is not None:
        t = r.traffic
        out.append(("Batching cadence", [
            f"A step of {count(t.batch)} sequences departs every {seconds(t.step_s)}: one replica emits B/T ="
            f" {count(t.tokens_per_s_per_replica)} tokens/s (the lecture: 2,000 × 64/s ≈ 128k).",
            f"A request waits at most one step and has its token within 2·T = {seconds(t.max_latency_s)}.",
        ]))
    if r.prefill is not None:
        p = r.prefill
        out.append(("Prefill vs decode", [
            f"A {count(p.prompt_tokens)}-token prompt is prefilled {p.prefill.bound} bound in {seconds(p.ttft_s)} (time to"
            f" first token at batch 1; {seconds(p.ttft_at_load_s)} at load).",
            f"Per token, decode costs {p.output_input_cost_ratio:.2f}× prefill here; price sheets charge ~5× for output.",
        ]))

    lines = [
        f"Weights take {si(wbytes, 'B')} of {si(s.chip.hbm_bytes * r.chips, 'B')} HBM"
        f" ({wbytes / (s.chip.hbm_bytes * r.chips):.0%}); the rest holds KV for up to"
        f" {count(r.batch_to_fill_hbm)} sequences of {count(r.context)} tokens.",
        f"At B* = {count(r.balance_batch)} the KV cache needs {si(r.balance_batch * kv.stored_bytes, 'B')}"
        f" ({'fits' if r.balance_batch <= r.batch_to_fill_hbm else 'does NOT fit: capacity binds before compute'}).",
    ]
    out.append(("Memory", lines))
    out.append(("Assumptions", [
        f"{a.label}; weights {a.weight_dtype}, KV {a.kv_dtype}, compute {a.compute_dtype}"
        f" (FLOP/s line {a.compute_class}); network {a.network}.",
        "A roofline is a bound: measured serving runs 1.4–1.9× slower (see docs/roofline.md).",
    ]))
    return out


# --------------------------------------------------------------------------------------------
# Serving records (the JSON of curve / balance / fastmode / traffic / prefill)
# --------------------------------------------------------------------------------------------

CURVE_KEYS = ("batch", "context", "step_s", "compute_s", "weights_s", "kv_s", "tokens_per_s_per_chip",
              "tokens_per_s_per_user", "usd_per_mtok", "bound", "fits")


def points_record(st: StepTime) -> list[dict[str, Any]]:
    """A StepTime over a grid -> one dict per point with the curve keys."""
    cols = {k: np.atleast_1d(np.asarray(getattr(st, k) if getattr(st, k) is not None else np.nan, dtype=object))
            for k in CURVE_KEYS}
    n = max(len(v) for v in cols.values())
    cols = {k: np.broadcast_to(v, (n,)) for k, v in cols.items()}
    out = []
    for i in range(n):
        row = {}
        for k in CURVE_KEYS:
            v = cols[k][i]
            if isinstance(v, float) and math.isnan(v):
                v = None
            row[k] = v
        out.append(row)
    return out


def curve_record(st: StepTime, over: str, est=None) -> dict[str, Any]:
    """Curve points: the roofline's terms, and — when an estimate is given — its step, rates and
    band at each point (the roofline step kept as roofline_step_s)."""
    pts = points_record(st)
    label = "roofline"
    if est is not None:
        label = est.label
        n = len(pts)
        col = lambda v: np.broadcast_to(np.asarray(v, float), (n,))  # noqa: E731
        step, tpc, tpu = col(est.step_s), col(est.tokens_per_s_per_chip), col(est.tokens_per_s_per_user)
        usd = None if est.usd_per_mtok is None else col(est.usd_per_mtok)
        band = {k: (col(v[0]), col(v[1])) for k, v in (est.range_80 or {}).items()}
        for i, row in enumerate(pts):
            row["roofline_step_s"] = row["step_s"]
            row["step_s"], row["tokens_per_s_per_chip"], row["tokens_per_s_per_user"] = float(step[i]), float(tpc[i]), float(tpu[i])
            row["usd_per_mtok"] = None if usd is None else float(usd[i])
            row["range_80"] = {k: [float(lo[i]), float(hi[i])] for k, (lo, hi) in band.items()}
    return {"over": over, "estimate": label, "points": pts, "assumptions": assumptions_record(st)}


def fastmode_record(fm) -> dict[str, Any]:
    pts = points_record(fm.points)
    for row, s, p in zip(pts, fm.frontier_speedup, fm.frontier_price_multiplier):
        row["speedup"], row["price_multiplier"] = float(s), float(p)
    return {
        "batch": fm.batch, "speedup": fm.speedup, "price_multiplier": fm.price_multiplier,
        "max_speedup": fm.max_speedup, "max_saving": fm.max_saving,
        "reference_batch": fm.reference_batch, "reference_step_s": fm.reference_step_s,
        "reference_usd_per_mtok": fm.reference_usd_per_mtok, "latency_floor_s": fm.latency_floor_s,
        "chips": fm.chips,
        "chips_lever": [{"chips": c, "max_speedup": s} for c, s in fm.chips_lever],
        "points": pts,
        "assumptions": assumptions_record(fm.points),
    }


def traffic_record(t) -> dict[str, Any]:
    return jsonable(t)


def prefill_record(pd) -> dict[str, Any]:
    return {
        "prompt_tokens": pd.prompt_tokens,
        "output_input_cost_ratio": pd.output_input_cost_ratio,
        "decode_usd_per_mtok": pd.decode_usd_per_mtok,
        "prefill_usd_per_mtok": pd.prefill_usd_per_mtok,
        "ttft_s": pd.ttft_s,
        "ttft_at_load_s": pd.ttft_at_load_s,
        "decode": step_record(pd.decode),
        "prefill": step_record(pd.prefill),
        "by_pass_length": [
            {"new_tokens": float(s), "step_s": float(t), "s_per_token": float(t / s), "bound": str(b)}
            for s, t, b in zip(np.atleast_1d(pd.by_pass_length.new_tokens), np.atleast_1d(pd.by_pass_length.step_s),
                               np.atleast_1d(pd.by_pass_length.bound))
        ],
    }


def _n(x) -> str:
    return "none" if x is None else f"{x:,.0f}"


def render_balance(b, m: Model, s: System) -> list[str]:
    lines = [
        f"{m.name} on {b.chips} × {s.name} at L = {b.context:,.0f} (roofline bound)",
        f"  sparsity N_total/N_active = {b.sparsity:.2f}"
        + (f" (expert ratio E/k = {b.expert_ratio:.0f} is not the same thing)" if b.expert_ratio else ""),
        f"  FLOP/s ÷ HBM B/s = {b.flops_per_byte:,.0f} FLOP/byte; hardware ratio FLOP/s·b_w/(2·BW) = {b.hardware_ratio:.0f}",
        f"  balance batch B* = hardware ratio × sparsity = {_n(b.balance_batch)}: below it the weight fetch"
        " dominates, above it compute does (KV ignored)",
    ]
    if b.operating_batch:
        lines.append(f"  the lecture's operating batch, 2–3 × B* (real efficiency is below the roofline):"
                     f" {_n(b.operating_batch[0])} – {_n(b.operating_batch[1])} sequences")
    if b.balance_batch_with_kv is None:
        lines.append(f"  with KV at L = {b.context:,.0f}: no balance batch — the KV read per sequence outlasts its"
                     " compute, so decode is memory bound at every batch")
    else:
        lines.append(f"  with KV at L = {b.context:,.0f}: B* = W/(c − k) = {_n(b.balance_batch_with_kv)}")
    if b.balance_context is None:
        lines.append("  balance context: none — compute per token exceeds its KV fetch at every context")
    else:
        lines.append(f"  balance context L* (KV fetch = compute; the batch cancels) = {_n(b.balance_context)} tokens:"
                     " longer contexts make decode memory bound however large the batch")
    if b.batch is not None:
        lines.append(f"  at B = {b.batch:,.0f} the weights + KV fetch equal compute at L = {_n(b.balance_context_with_weights)}")
    lines += [
        f"  latency floor = weight bytes / ({b.chips} × HBM B/s) = {seconds(b.latency_floor_s)}",
        f"  cost floor = max(compute, KV) per token × $/chip-s = {usd(b.cost_floor_usd_per_mtok)}/Mtok",
        f"  HBM drain time C/BW = {seconds(b.hbm_drain_s)}; HBM fills at B = {_n(b.batch_to_fill_hbm)} sequences of"
        f" {b.context:,.0f} tokens",
    ]
    return lines


def render_fastmode(fm, m: Model, s: System, spec: dict | None = None) -> list[str]:
    lines = [
        f"{m.name} on {fm.chips} × {s.name}: normal mode at the cost-optimal batch {fm.reference_batch:,.0f}"
        f" (step {seconds(fm.reference_step_s)}, {usd(fm.reference_usd_per_mtok)}/Mtok)",
    ]
    if fm.batch is not None:
        lines.append(f"  batch {fm.batch:,.0f} gives {fm.speedup:.2f}× the speed for {fm.price_multiplier:.2f}× the price"
                     " (T(B) = max(B·c, W + B·k) inverted exactly)")
    elif fm.speedup is None and (fm.batch is None):
        lines.append("  (no target given: --speedup X or --price-multiplier P)")
    lines += [
        f"  the most a batch cut can buy: {fm.max_speedup:.2f}× (batch 1, against the {seconds(fm.latency_floor_s)}"
        " latency floor); more money buys nothing beyond it on these chips",
        f"  the most a slow mode can save: {fm.max_saving:.2f}× (the reference cost over the cost floor)",
        "  the other lever, more chips per replica (bandwidth adds up): "
        + ", ".join(f"{c} chips → {x:.2f}×" for c, x in fm.chips_lever),
    ]
    if spec:
        lines.append(
            f"  speculative decoding, {spec['draft_tokens']} drafted at acceptance {spec['acceptance']:.2f}:"
            f" {spec['tokens_per_verify']:.2f} tokens per verify pass → {spec['speedup']:.2f}× the speed at"
            f" {spec['price_multiplier']:.2f}× the price per token"
        )
    return lines


def render_traffic(t, m: Model, s: System) -> list[str]:
    return [
        f"{m.name} on {s.name}: a step of {t.batch:,.0f} sequences departs every {seconds(t.step_s)}",
        f"  one replica ({t.chips_per_replica} chips) emits B/T = {t.tokens_per_s_per_replica:,.0f} tokens/s",
        f"  {t.demand_tokens_per_s:,.0f} tokens/s needs {t.replicas:,} replicas = {t.chips:,} chips"
        f" ({t.share_of_replica_capacity:.0%} of their capacity), {usd(t.usd_per_day)} per day",
        f"  a request waits at most one step ({seconds(t.max_queue_wait_s)}, {seconds(t.mean_queue_wait_s)} on average)"
        f" and gets its token within 2·T = {seconds(t.max_latency_s)} (if no train is full)",
    ]


def render_prefill(pd, m: Model, s: System) -> list[str]:
    a = pd.decode.assumptions
    return [
        f"{m.name} on {a.chips} × {s.name}",
        f"  decode (S = 1, batch {pd.decode.batch:,.0f}, L = {pd.decode.context:,.0f}): {pd.decode.bound} bound,"
        f" {usd(pd.decode_usd_per_mtok)}/Mtok",
        f"  prefill (S = {pd.prompt_tokens:,.0f}, one prompt): {pd.prefill.bound} bound, {usd(pd.prefill_usd_per_mtok)}/Mtok",
        f"  output/input cost ratio = {pd.output_input_cost_ratio:.2f}× (price sheets charge ~5×: Anthropic $25/$5,"
        " GPT-5 $10/$1.25 = 8×)",
        f"  time to first token: {seconds(pd.ttft_s)} alone; {seconds(pd.ttft_at_load_s)} at load (wait for the"
        " running decode step, then a pass shared with it)",
    ]


def write_report_plots(r: Report, folder) -> list:
    """The lecture's blackboard charts for a report, as PNG files in `folder`; returns their paths."""
    from pathlib import Path

    from . import plots

    folder = Path(folder)
    m, s, n, dt = r.model, r.system, r.chips, r.dtypes
    title = f"{m.name} on {n} × {s.name}"
    by_batch = serving.curve(m, s, over="batch", context=r.context, chips=n, dtypes=dt, efficiency=r.efficiency,
                             points=120)
    paths = [plots.latency_vs_batch(by_batch, title=f"{title}, L = {r.context:,.0f}", balance_batch=r.balance_batch,
                                    drain_s=r.hbm_drain_s, path=folder / "latency_vs_batch.png")]
    if by_batch.usd_per_mtok is not None:
        paths.append(plots.cost_vs_batch(by_batch, title=f"{title}, L = {r.context:,.0f}",
                                         floor_usd_per_mtok=r.cost_floor_usd_per_mtok, balance_batch=r.balance_batch,
                                         path=folder / "cost_vs_batch.png"))
    ref = r.fast.reference_batch if r.fast is not None else r.balance_batch
    by_ctx = serving.curve(m, s, over="context", batch=ref, chips=n, dtypes=dt, efficiency=r.efficiency, points=120)
    paths.append(plots.cost_vs_context(by_ctx, title=f"{title}, B = {ref:,.0f}", crossover=r.balance_context,
                                       path=folder / "cost_vs_context.png"))
    if r.fast is not None:
        paths.append(plots.price_speed_frontier(r.fast, title=f"{title}, L = {r.context:,.0f}",
                                                path=folder / "price_speed_frontier.png"))
    if r.prefill is not None:
        paths.append(plots.prefill_vs_decode_cost(r.prefill, title=f"{title}, prompt {r.prefill.prompt_tokens:,.0f}",
                                                  path=folder / "prefill_vs_decode.png"))
    return paths


# --------------------------------------------------------------------------------------------
# Layout and planner records
# --------------------------------------------------------------------------------------------


def layout_record(st) -> dict[str, Any]:
    mem, net, lay = st.memory, st.network, st.layout
    return jsonable({
        "layout": {"tp": lay.tp, "ep": lay.ep, "pp": lay.pp, "dp": lay.dp, "microbatches": lay.m,
                   "stage_chips": lay.stage_chips, "attention_dp": lay.attention_dp},
        "chips": lay.chips, "replica_chips": st.chips, "billed_chips_per_replica": st.billed_chips,
        "idle_chips_per_replica": st.placement.idle_chips, "domains_per_replica": st.placement.domains,
        "weights_bytes_per_chip": mem.weights_bytes_per_chip, "expert_bytes_per_chip": mem.expert_bytes_per_chip,
        "dense_bytes_per_chip": mem.dense_bytes_per_chip, "kv_bytes_per_chip": mem.kv_bytes_per_chip,
        "activation_bytes_per_chip": mem.activation_bytes_per_chip, "total_bytes_per_chip": mem.total_bytes_per_chip,
        "hbm_bytes_per_chip": mem.hbm_bytes_per_chip, "fits": mem.fits,
        "step_s": st.step_s, "stage_s": st.stage_s, "compute_s": st.compute_s, "weights_s": st.weights_s,
        "kv_s": st.kv_s, "network_s": st.network_s, "all_to_all_s": st.all_to_all_s,
        "tp_allreduce_s": net.tp_allreduce_s, "pp_transfer_s": net.pp_transfer_s,
        "pipeline_hop_latency_s": st.pipeline_hop_latency_s, "scale_out_fraction": net.scale_out_fraction,
        "stage_boundaries_across_domains": net.stage_boundaries_across_domains,
        "pipeline_idle_fraction": st.pipeline_idle_fraction, "bound": st.bound,
        "tokens_per_s": st.tokens_per_s, "tokens_per_s_per_chip": st.tokens_per_s_per_chip,
        "tokens_per_s_per_user": st.tokens_per_s_per_user, "usd_per_mtok": st.usd_per_mtok,
        "assumptions": {"overlap": st.overlap, "hop_latency_s": st.hop_latency_s,
                        "activation_buffers": "estimate: 4 hidden vectors (+k for MoE) per token in flight",
                        "routing": "uniform over experts (no load imbalance)"},
    })


def render_estimate(est) -> list[str]:
    """The estimate's lines: each operation's time, the step with its 80 % band, the bound."""
    op = est.op
    names = {"dense_gemm_s": "dense GEMMs", "expert_gemm_s": "expert GEMMs", "attention_s": "attention",
             "tp_comm_s": "TP all-reduce", "ep_comm_s": "EP dispatch+combine", "pp_comm_s": "PP send/recv",
             "overhead_s": "overhead"}
    parts = ", ".join(f"{names[k]} {seconds(float(np.max(v)))}" for k, v in op.parts.items() if np.max(v) > 0)
    band = ""
    if est.range_80:
        lo, hi = est.range_80["step_s"]
        band = f" (80 % band {seconds(float(np.max(lo)))} – {seconds(float(np.max(hi)))})"
    cost = "" if est.usd_per_mtok is None else f", {usd(float(np.max(est.usd_per_mtok)))}/Mtok"
    return [f"  estimate ({est.label}): step {seconds(float(np.max(est.step_s)))}{band}; "
            f"{float(np.max(est.tokens_per_s_per_chip)):,.0f} tokens/s per billed chip, "
            f"{float(np.max(est.tokens_per_s_per_user)):,.1f} per user{cost}",
            f"    per operation: {parts}"]


def render_layout(st, m: Model, s: System) -> list[str]:
    mem, net, lay = st.memory, st.network, st.layout
    fit = "fits" if mem.fits else "does NOT fit"
    lines = [
        f"{m.name} on {s.name}: {lay.describe()}, {st.chips} chips per replica"
        + (f" in {st.placement.domains} domains" if st.placement.domains > 1 else "")
        + (f", {st.placement.idle_chips:g} more idle in its domains" if st.placement.idle_chips else ""),
        f"  per chip: weights {si(mem.weights_bytes_per_chip, 'B')} (experts {si(mem.expert_bytes_per_chip, 'B')},"
        f" rest {si(mem.dense_bytes_per_chip, 'B')}) + KV {si(mem.kv_bytes_per_chip, 'B')} + activations"
        f" {si(mem.activation_bytes_per_chip, 'B')} = {si(mem.total_bytes_per_chip, 'B')} of"
        f" {si(mem.hbm_bytes_per_chip, 'B')}: {fit}",
        f"  per token: compute {seconds(st.compute_s)}, weights {seconds(st.weights_s)}, KV {seconds(st.kv_s)},"
        f" network {seconds(st.network_s)} (all-to-all {seconds(st.all_to_all_s)}, TP all-reduce"
        f" {seconds(net.tp_allreduce_s)}, PP transfers {seconds(net.pp_transfer_s)}, hops"
        f" {seconds(st.pipeline_hop_latency_s)})",
        f"  step {seconds(st.step_s)} ({st.bound} bound, overlap {st.overlap}); {st.tokens_per_s:,.0f} tokens/s per"
        f" replica, {st.tokens_per_s_per_chip:,.0f} per billed chip, {st.tokens_per_s_per_user:,.1f} per user;"
        f" {usd(st.usd_per_mtok)}/Mtok",
    ]
    if net.scale_out_fraction:
        lines.append(f"  {net.scale_out_fraction:.0%} of the all-to-all leaves the {s.scaleup_chips}-chip domain over"
                     " the scale-out network")
    if st.pipeline_idle_fraction > 0.005:
        lines.append(f"  the pipeline idles {st.pipeline_idle_fraction:.0%} of the time: give it at least PP microbatches")
    return lines


PLAN_KEYS = ("system", "chips", "tp", "ep", "pp", "dp", "batch", "tokens_per_s_per_chip", "tokens_per_s_per_user",
             "usd_per_mtok", "billed_chips", "weight_dtype", "kv_dtype", "ttft_s", "step_s", "total_bytes_per_chip",
             "bound")


def plan_point_record(p) -> dict[str, Any] | None:
    if p is None:
        return None
    rec = {k: getattr(p, k) for k in PLAN_KEYS}
    rec |= {"watts": p.watts, "joules_per_token": p.joules_per_token, "tokens_per_s_per_mw": p.tokens_per_s_per_mw}
    if p.replicas is not None:
        rec["replicas"], rec["total_chips"] = p.replicas, p.total_chips
    return jsonable(rec)


def plan_record(p) -> dict[str, Any]:
    return {
        "model": p.model, "input_tokens": p.input_tokens, "output_tokens": p.output_tokens,
        "min_tokens_per_s_per_user": p.min_tokens_per_s_per_user, "max_ttft_s": p.max_ttft_s,
        "demand_tokens_per_s": p.demand_tokens_per_s, "objective": p.objective,
        "frontier": [plan_point_record(x) for x in p.frontier], "best": plan_point_record(p.best),
        "evaluated": p.evaluated, "feasible": p.feasible, "layouts": p.layouts, "rejected": p.rejected,
        "unpriced_systems": list(p.unpriced_systems), "estimate": p.estimate, "range_80": p.range_80,
    }


def _key(x):
    return (x.system, x.tp, x.ep, x.pp, x.batch, x.weight_dtype)


def render_user_fit(rec: dict, out=None) -> list[str]:
    f = rec["user_fit"]
    e = lambda x: f"median {x['median_abs_error']:.1%}, p90 {x['p90_abs_error']:.1%}"  # noqa: E731
    lines = [f"fitted {', '.join(f['params'])} on {f['n_cases']} cases ({f['why_these']}), starting from the shipped"
             f" preset of {f['base_fit_date']}:",
             "  factors: " + ", ".join(f"{k} × {v:.3g}" for k, v in f["factors"].items()),
             f"  shipped preset on these cases: {e(f['shipped_error'])}",
             f"  fitted, in sample:             {e(f['in_sample'])}"]
    if "cross_validated" in f:
        lines.append(f"  fitted, {f['cross_validated']['method']}:{' ' * max(1, 15 - len(f['cross_validated']['method']))}"
                     f"{e(f['cross_validated'])}  (what to expect on your next deployment)")
    else:
        lines.append("  no cross-validation (fewer than 3 cases, or --no-cv): the in-sample error flatters the fit")
    if out is not None:
        lines.append(f"  use it: --efficiency {out} (every result then says 'preset {getattr(out, 'name', out)}')")
    return lines


def energy_record(e) -> dict[str, Any]:
    """The energy keys every serving answer carries (None when the chip's power is unknown)."""
    if e is None:
        return {"watts": None, "joules_per_token": None, "tokens_per_s_per_mw": None}
    return {"watts": e.watts, "joules_per_token": e.joules_per_token, "tokens_per_s_per_mw": e.tokens_per_s_per_mw,
            "energy": {"chip_w": e.chip_w, "parts_w": e.parts_w, "u_compute": e.u_compute, "u_memory": e.u_memory,
                       "tokens_per_s_per_mw_provisioned": e.tokens_per_s_per_mw_provisioned,
                       "assumptions": list(e.assumptions)}}


def energy_line(e) -> str:
    if e is None:
        return "energy: no power figures for this chip (energy.toml, or the catalog's power_w)"
    return (f"energy: {e.watts / 1e3:,.3g} kW at the wall ({e.chip_w:,.0f} W per chip busy {e.u_compute:.0%} compute,"
            f" {e.u_memory:.0%} memory), {e.joules_per_token:,.3g} J/token, {e.tokens_per_s_per_mw:,.4g} tokens/s per MW")


POOL_KEYS = ("role", "system", "replicas", "chips_per_replica", "tp", "ep", "pp", "dp", "max_batch")


def _fleet_option_record(o) -> dict[str, Any]:
    sim = o.simulated
    ci = lambda x: list(x)  # noqa: E731  [low, high] of the 95 % interval
    return {
        "mode": o.mode,
        "pools": [{k: getattr(p, k) for k in POOL_KEYS} | {"weight_dtype": p.weight_dtype, "kv_dtype": p.kv_dtype,
                                                         "billed_chips_per_replica": p.billed_chips_per_replica,
                                                         "capacity_requests_per_s": p.capacity_requests_per_s,
                                                         "usd_per_hour": p.usd_per_hour} for p in o.pools],
        "total_chips": o.total_chips, "usd_per_hour": o.usd_per_hour,
        "usd_per_mtok_output": o.usd_per_mtok_output, "usd_per_mtok_all_tokens": o.usd_per_mtok_all_tokens,
        "watts": o.watts, "joules_per_token": o.joules_per_token,
        "goodput_requests_per_s": o.goodput_requests_per_s,
        "simulated": None if sim is None else {
            "ttft_p50_s": sim.ttft_p50_s, "ttft_p99_s": sim.ttft_p99_s, "tpot_p50_s": sim.tpot_p50_s,
            "tpot_p99_s": sim.tpot_p99_s, "ttft_p99_ci_s": ci(sim.ttft_p99_ci_s), "tpot_p99_ci_s": ci(sim.tpot_p99_ci_s),
            "ttft_p50_ci_s": ci(sim.ttft_p50_ci_s), "tpot_p50_ci_s": ci(sim.tpot_p50_ci_s),
            "slo_attainment": sim.slo_attainment, "meets_slo": sim.meets_slo,
            "requests_simulated": sim.requests, "warmup_requests_discarded": sim.warmup_requests_discarded,
            "converged": sim.converged,
            "pools": [{"role": r.role, "replicas": r.replicas, "requests_simulated": r.requests,
                       "warmup_requests_discarded": r.warmup, "settled": r.settled, "converged": r.converged,
                       "stopped": r.stop, "meets_slo": r.meets, "share_meeting_slo": r.share_meeting,
                       "sizing": [{"replicas": n, "meets_slo": ok} for n, ok in dict(sim.sizing).get(r.role, ())]}
                      for r in sim.runs]},
        "analytic": {"ttft_s": o.analytic_ttft_s, "tpot_s": o.analytic_tpot_s, "kv_transfer_s": o.kv_transfer_s},
    }


def fleet_record(f, commands=None) -> dict[str, Any]:
    rec = {
        "model": f.model, "request_rate": f.request_rate, "input_tokens": f.input_tokens,
        "output_tokens": f.output_tokens, "cached_input_tokens": f.cached_input_tokens,
        "slo": {"ttft_p99_s": f.slo.ttft_p99_s, "tpot_p99_s": f.slo.tpot_p99_s, "ttft_p50_s": f.slo.ttft_p50_s,
                "tpot_p50_s": f.slo.tpot_p50_s},
        "estimate": f.estimate, "best": None if f.best is None else _fleet_option_record(f.best),
        "candidates": [_fleet_option_record(o) for o in f.candidates], "frontier": f.frontier,
        "mode_reason": f.mode_reason, "flop_lower_bound_chips": f.flop_lower_bound_chips,
        "screen_error": f.screen_error, "weight_dtypes": f.weight_dtypes, "search": f.search,
        "steady_state": _steady_state_rule(),
    }
    if f.workload:
        rec["workload"] = f.workload
    if f.prefix_cache is not None:
        rec["prefix_cache"] = f.prefix_cache
    if commands is not None:
        rec["export"] = commands
    return rec


def _steady_state_rule() -> dict[str, Any]:
    """How every fleet simulation is run and read (fleet.py, steady.py): one dict for JSON and text."""
    from . import fleet as fl
    from . import steady

    return {"warmup_rule": f"MSER-{steady.MSER_BATCH}", "interval": f"sectioning, {steady.SECTIONS} sections, Student t",
            "confidence": steady.CONFIDENCE, "target_relative_half_width": fl.REL_HALF_WIDTH,
            "first_requests": fl.FIRST_REQUESTS, "request_cap": fl.REQUEST_CAP,
            "meets_slo": "the 95 % interval's upper end within every SLO, the run settled"}


def _ci(lo: float, hi: float) -> str:
    return f"95 % CI {seconds(lo)}–{seconds(hi)}"


def _fleet_sim_line(s) -> str:
    """The steady-state tails of a verified fleet, with their intervals and how they were measured."""
    how = ("each p99 within ±5 %" if s.converged else
           "p99 not within ±5 % at the request cap" if any(r.stop == "request cap" for r in s.runs) else
           "p99 not within ±5 %: stopped once an SLO was clearly missed")
    return (f"  simulated at steady state: TTFT p50 {seconds(s.ttft_p50_s)}, p99 {seconds(s.ttft_p99_s)}"
            f" ({_ci(*s.ttft_p99_ci_s)}); TPOT p50 {seconds(s.tpot_p50_s)}, p99 {seconds(s.tpot_p99_s)}"
            f" ({_ci(*s.tpot_p99_ci_s)}); {s.slo_attainment:.1%} of requests meet every SLO; goodput"
            f" {s.goodput_requests_per_s:,.4g} requests/s; {s.requests:,} requests per replica, the first"
            f" {s.warmup_requests_discarded:,} discarded as warm-up; {how}")


def render_fleet(f, commands=None) -> list[str]:
    slo = ", ".join(f"{k.replace('_s', '').replace('_', ' ')} ≤ {seconds(v)}" for k, v in
                    (("ttft_p99_s", f.slo.ttft_p99_s), ("tpot_p99_s", f.slo.tpot_p99_s),
                     ("ttft_p50_s", f.slo.ttft_p50_s), ("tpot_p50_s", f.slo.tpot_p50_s)) if v is not None) or "none"
    lines = [f"{f.model}: {f.request_rate:,.4g} requests/s, {f.input_tokens:,.0f} in / {f.output_tokens:,.0f} out"
             + (f" ({f.cached_input_tokens:,.0f} from the prefix cache)" if f.cached_input_tokens else "")
             + f"; SLOs: {slo}"]
    if f.workload:
        w = f.workload
        lines.append(f"  trace: {w.get('requests', 0):,} requests over {seconds(w.get('duration_s', 0.0))}"
                     + ("; replayed end to end to fill each run, so the simulation repeats it: the intervals"
                        " say how steady the replay is, not how well these requests stand for your traffic"
                        if w.get("replayed_to_fill_runs") else ""))
    lines.append(f"  estimate: {f.estimate}; {f.mode_reason}")
    wd = f.weight_dtypes
    if wd:
        tried = "; ".join(f"{k} {', '.join(v)}" for k, v in wd["tried"].items())
        lines.append(f"  weights tried: {tried} ("
                     + ("default: the checkpoint's, FP8, and FP4 where the chip has it; --weight-dtypes to choose)"
                        if wd["asked"] == "deployable" else "--weight-dtypes)"))
    b = f.best
    if b is None:
        lines.append("  no candidate met its SLOs in simulation; the closest are below")
    else:
        price = "" if b.usd_per_hour is None else (f", ${b.usd_per_hour:,.2f}/h, ${b.usd_per_mtok_output:,.3g} per million"
                                                   f" output tokens (${b.usd_per_mtok_all_tokens:,.3g} per million"
                                                   f" tokens in + out)")
        if b.watts is not None:
            price += f", {b.watts / 1e3:,.4g} kW at the wall, {b.joules_per_token:,.3g} J per output token"
        verified = "" if b.simulated is not None else "; not verified in simulation (--verify 0)"
        lines.append(f"  best: {b.mode}, {b.total_chips:,.0f} chips{price}"
                     f" (FLOP lower bound {f.flop_lower_bound_chips:,.1f} chips){verified}")
        for p in b.pools:
            lines.append(f"    {p.role:<7} {p.replicas:>4} × {p.system:<12} TP{p.tp} EP{p.ep} PP{p.pp} = {p.chips_per_replica}"
                         f" chips each, batch ≤ {p.max_batch:,}, weights {p.weight_dtype}, KV {p.kv_dtype}")
        if b.kv_transfer_s is not None:
            lines.append(f"    KV transfer per request: {seconds(b.kv_transfer_s)}")
        s = b.simulated
        if s is not None:
            lines.append(_fleet_sim_line(s))
            sizing = "; ".join(f"{role} {' → '.join(f'{n}{chr(10003) if ok else chr(10007)}' for n, ok in hist)}"
                               for role, hist in s.sizing)
            lines.append(f"  sized by simulation (replicas tried, ✓ meets / ✗ misses): {sizing}")
            lines.append(f"  analytic screen: TTFT {seconds(b.analytic_ttft_s)}, TPOT {seconds(b.analytic_tpot_s)}"
                         f" ({', '.join(f'{k} {v:+.0%}' for k, v in f.screen_error.items())} simulated vs analytic)")
    pc = f.prefix_cache
    if pc is not None:
        cost = "" if pc["usd_per_hour"] is None else f", ${pc['usd_per_hour']:,.4g}/h"
        lines.append(f"  prefix cache: {pc['prefixes']:,} × {pc['prefix_tokens']:,.0f}-token prefix = {si(pc['kv_bytes'], 'B')},"
                     f" reused every {seconds(pc['reuse_interval_s'])}: kept in {pc['tier']}{cost} ({pc['note']})")
    others = [o for o in f.candidates if o is not b and o != b]
    if others:
        lines.append("  also verified at steady state (each sized down the same way):")
        for o in others:
            s = o.simulated
            what = "no simulation" if s is None else (
                f"TTFT p99 {seconds(s.ttft_p99_s)} (95 % upper end {seconds(s.ttft_p99_ci_s[1])}), TPOT p99"
                f" {seconds(s.tpot_p99_s)} ({seconds(s.tpot_p99_ci_s[1])}), {'meets' if s.meets_slo else 'misses'} the SLOs")
            price = "" if o.usd_per_hour is None else f" ${o.usd_per_hour:,.2f}/h"
            pools = " + ".join(f"{p.replicas}×{p.system} TP{p.tp}EP{p.ep}PP{p.pp} {p.weight_dtype}" for p in o.pools)
            lines.append(f"    {o.mode:<13} {pools}: {o.total_chips:,.0f} chips{price}; {what}")
    if f.search:
        sr = f.search
        lines.append(f"  search: {sr['distinct']:,} distinct candidates screened, {sr['verified']:,} verified; stopped"
                     f" because {sr['stopped']}")
    if commands:
        lines.append("  launch commands (--json lists every one):")
        lines += [f"    {c}" for c in _one_per_pool(commands)]
    return lines


def _one_per_pool(commands: list[str]) -> list[str]:
    """Replicas' commands differ only in --port: show the first of each run and how many follow."""
    import re

    out, i = [], 0
    strip = lambda c: re.sub(r"--port \d+", "--port N", c)  # noqa: E731
    while i < len(commands):
        j = i + 1
        while j < len(commands) and strip(commands[j]) == strip(commands[i]) and "--port" in commands[i]:
            j += 1
        out.append(commands[i])
        if j - i > 1:
            ports = re.findall(r"--port (\d+)", commands[j - 1])
            out.append(f"  … and {j - i - 1} more like it, one per replica, up to port {ports[0] if ports else '?'}")
        i = j
    return out


def render_plan(p) -> list[str]:
    slo = []
    if p.min_tokens_per_s_per_user:
        slo.append(f"≥ {p.min_tokens_per_s_per_user:g} tokens/s per user")
    if p.max_ttft_s:
        slo.append(f"TTFT ≤ {p.max_ttft_s:g} s")
    lines = [
        f"{p.model}: {p.input_tokens:,.0f} in / {p.output_tokens:,.0f} out per request; SLOs: {', '.join(slo) or 'none'}",
        f"  searched {p.layouts:,} layouts, {p.evaluated:,} (layout, batch, dtype) points; {p.feasible:,} meet every SLO"
        f" ({p.estimate})",
    ]
    if p.unpriced_systems:
        lines.append(f"  left out of the cost comparison (no price): {', '.join(p.unpriced_systems)}")
    b = p.best
    if b is None:
        lines.append("  nothing meets the SLOs: relax them, or add systems or narrower dtypes")
        return lines
    best_word = "least energy" if p.objective == "energy" else "cheapest"
    lines.append(
        f"  {best_word}: {b.system}, TP{b.tp} EP{b.ep} PP{b.pp} on {b.chips} chips ({b.billed_chips:g} billed), batch"
        f" {b.batch:,.0f}, weights {b.weight_dtype}: {b.tokens_per_s_per_user:,.1f} tokens/s per user,"
        f" {b.tokens_per_s_per_chip:,.0f} per chip, {usd(b.usd_per_mtok)}/Mtok, TTFT {seconds(b.ttft_s)}"
        + ("" if b.joules_per_token is None else
           f"; {b.joules_per_token:,.3g} J/token, {b.tokens_per_s_per_mw:,.4g} tokens/s per MW")
    )
    if p.range_80:
        t = p.range_80["tokens_per_s_per_chip"]
        lines.append(f"  80 % band: {t[0]:,.0f} – {t[1]:,.0f} tokens/s per chip"
                     + (f", {usd(p.range_80['usd_per_mtok'][0])} – {usd(p.range_80['usd_per_mtok'][1])}/Mtok"
                        if "usd_per_mtok" in p.range_80 else ""))
    if b.replicas is not None:
        lines.append(f"  demand {p.demand_tokens_per_s:,.0f} tokens/s needs {b.replicas:,} replicas = {b.total_chips:,.0f} chips")
    lines.append(f"  frontier (faster per user -> {'less energy' if p.objective == 'energy' else 'cheaper'}; a stage is"
                 " max(TP, EP) chips, × PP stages):")
    step = max(1, len(p.frontier) // 12)
    shown = p.frontier[::step]
    if p.frontier and p.frontier[-1] not in shown:
        shown.append(p.frontier[-1])  # the cheapest end of the frontier is always printed
    for x in shown:
        lines.append(
            f"    {x.system:<14} TP{x.tp:<2} EP{x.ep:<4} PP{x.pp} = {x.chips:>4} chips B={x.batch:>7,.0f}"
            f"  {x.tokens_per_s_per_user:>8,.1f} tok/s/user  {x.tokens_per_s_per_chip:>8,.0f} tok/s/chip"
            f"  {usd(x.usd_per_mtok)}/Mtok" + ("" if x.joules_per_token is None else f"  {x.joules_per_token:>6,.3g} J/tok")
            + (f"  <- {best_word}" if _key(x) == _key(b) else "")
        )
    return lines


# --------------------------------------------------------------------------------------------
# Price-sheet records
# --------------------------------------------------------------------------------------------


def render_infer(inf, sheet) -> list[str]:
    lines = [f"{sheet.provider} {sheet.model} ({sheet.name}, {sheet.as_of}): ${sheet.input_usd_per_mtok:g} in /"
             f" ${sheet.output_usd_per_mtok:g} out per Mtok; assumed behind it: {inf.system},"
             f" N_active {count_words(inf.active_params, 3)} (an assumption: --active-params)"]
    if inf.kv_bytes_per_token is None:
        lines.append("  no long-context price tier: nothing to say about KV bytes per token")
    else:
        lines.append(f"  long-context tier at {sheet.long_context_threshold_tokens:,.0f} tokens -> ~{inf.kv_bytes_per_token:,.0f}"
                     " KV bytes per token, e.g.:")
        lines += [f"    {x.description}: {x.bytes_per_token:,.0f} B ({x.ratio:.2f}× the inferred {inf.kv_bytes_per_token:,.0f} B)"
                  for x in inf.candidate_layouts[:6]]
        real = [x for x in inf.candidate_layouts if x.description.startswith("catalog")]
        if real:
            lines.append(f"    (open models store far more: {', '.join(f'{x.description.split()[2]} {x.bytes_per_token:,.0f}' for x in real[:3])})")
    lines.append(f"  output/input = {inf.decode_prefill_cost_ratio:.2g}×: decode costs that many prefill tokens per token")
    if inf.batch_at_price_ratio is not None:
        lines.append(f"    with the stand-in model that is a decode batch of ~{inf.batch_at_price_ratio:,.0f}")
    if inf.ratio_at_cost_optimal_batch is not None:
        lines.append(f"    at the stand-in model's cost-optimal batch the ratio would be {inf.ratio_at_cost_optimal_batch:.2g}×")
    if inf.cache_tiers:
        lines.append("  cache TTLs -> tier with the nearest drain time: " + ", ".join(f"{k} -> {v}" for k, v in inf.cache_tiers.items()))
        if inf.cache_write_surcharge_per_minute:
            lines.append("  cache-write surcharge per minute held (× the input price): " + ", ".join(
                f"{k} {v:.3g}" for k, v in inf.cache_write_surcharge_per_minute.items()))
    if inf.fast_mode:
        f = inf.fast_mode
        if f["consistent"]:
            lines.append(f"  fast mode ({sheet.fast_price_multiplier:g}× price, {sheet.fast_speedup:g}× speed): a {f['batch_reduction']:.3g}×"
                         f" smaller batch; normal step ≈ {f['normal_step_over_weight_fetch']:.3g}× the weight fetch, fast"
                         f" {f['fast_step_over_weight_fetch']:.3g}× — at most {f['max_further_speedup']:.3g}× more on the same chips")
        else:
            lines.append(f"  fast mode: {f['reason']}")
    lines += [f"  assumption: {a}" for a in inf.assumptions]
    return lines


def cache_record(cc) -> dict[str, Any]:
    tiers_ = {k: {"hold_usd": t.hold_usd, "retrieve_usd": t.retrieve_usd, "rematerialize_usd": cc.rematerialize_usd,
                  "total_usd": t.total_usd, "drain_s": t.drain_s, "device": t.device, "fits": t.fits,
                  "break_even_hold_s": cc.break_even_hold_s.get(k)} for k, t in cc.tiers.items()}
    return jsonable({
        "best_tier": cc.best_tier, "prompt_tokens": cc.prompt_tokens, "hold_s": cc.hold_s, "reuse": cc.reuse,
        "kv_bytes": cc.kv_bytes, "rematerialize_usd": cc.rematerialize_usd, "tiers": tiers_,
        "implied_write_usd_per_mtok": cc.implied_write_usd_per_mtok,
        "implied_read_usd_per_mtok": cc.implied_read_usd_per_mtok,
    })


def render_cache(cc, m: Model, s: System) -> list[str]:
    lines = [f"{m.name} on {s.name}: a {cc.prompt_tokens:,.0f}-token prompt's KV is {si(cc.kv_bytes, 'B')}; held"
             f" {seconds(cc.hold_s)}, reused {cc.reuse:g}×",
             f"  recompute (prefill at $/chip-second): {usd(cc.rematerialize_total_usd)}"]
    for k, t in cc.tiers.items():
        if t.total_usd is None:
            lines.append(f"  {k:>5}: no price for {t.device}")
            continue
        lines.append(f"  {k:>5}: hold {usd(t.hold_usd)} + {cc.reuse:g} × retrieve {usd(t.retrieve_usd)} = {usd(t.total_usd)}"
                     f" (drain {seconds(t.drain_s)}; beats recompute below {seconds(cc.break_even_hold_s.get(k, float('inf')))})")
    lines.append(f"  cheapest: {cc.best_tier}")
    if cc.implied_write_usd_per_mtok is not None:
        lines.append(f"  implied prices at cost: write {usd(cc.implied_write_usd_per_mtok)}/Mtok, read {usd(cc.implied_read_usd_per_mtok)}/Mtok"
                     " (compare a sheet's cache prices: the rest is margin, or a costlier tier)")
    return lines


# --------------------------------------------------------------------------------------------
# Validation records
# --------------------------------------------------------------------------------------------


def validation_record(r, preset: dict | None) -> dict[str, Any]:
    return jsonable({
        "estimate": r.label, "efficiency": r.label,
        "rows": [{"id": x.id, "predicted": x.predicted, "measured": x.measured, "error": x.error, "metric": x.metric,
                  "system": x.system, "source": x.source, "model": x.model, "batch_used": x.batch_used,
                  "vendor": x.vendor, "engine": x.engine, "model_class": x.model_class, "note": x.note or None,
                  "outside_fitted_range": list(x.outside_fitted_range)} for x in r.rows],
        "n": len(r.rows), "median_abs_error": r.median_abs_error, "p90_abs_error": r.p90_abs_error,
        "by_metric": r.by_metric, "by_system": r.by_system, "by_source": r.by_source, "by_vendor": r.by_vendor,
        "by_engine": r.by_engine, "by_model_class": r.by_model_class,
        "beyond_estimate": [{"id": x.id, "note": x.note} for x in r.beyond],
        "failures": r.failures,
        "preset": None if preset is None else {k: preset.get(k) for k in (
            "fit_date", "n_cases", "generic", "engines", "vendors", "in_sample", "cross_validated",
            "leave_one_vendor_out", "bands", "systems")},
    })


def render_validation(r, preset: dict | None) -> list[str]:
    head = f"{len(r.rows)} cases, {r.label}"
    if preset and preset.get("cross_validated"):
        cv = preset["cross_validated"]
        head += (f" (fitted {preset['fit_date']} on {preset['n_cases']} cases; leave-one-source-out median |error|"
                 f" {cv['median_abs_error']:.0%}, p90 {cv['p90_abs_error']:.0%})")
    lines = [head, f"  median |error| {r.median_abs_error:.1%}, p90 {r.p90_abs_error:.1%}   (error = predicted/measured − 1)"]
    for title, group in (("metric", r.by_metric), ("vendor", r.by_vendor), ("engine", r.by_engine),
                         ("model class", r.by_model_class), ("system", r.by_system), ("source", r.by_source)):
        lines.append(f"  by {title}:")
        lines += [f"    {k:<42} n={v['n']:<3} median {v['median_abs_error']:6.1%}  p90 {v['p90_abs_error']:6.1%}"
                  for k, v in group.items()]
    lines.append("  worst cases:")
    for x in sorted(r.rows, key=lambda x: -abs(x.error))[:8]:
        flag = f"  [outside fit: {'; '.join(x.outside_fitted_range)}]" if x.outside_fitted_range else ""
        lines.append(f"    {x.id:<52} predicted {x.predicted:10.4g}  measured {x.measured:10.4g}  {x.error:+.0%}{flag}")
    for x in r.beyond:
        lines.append(f"  {x.id}: {x.note}")
    for k, v in r.failures.items():
        lines.append(f"  could not predict {k}: {v}")
    return lines


def render_calibration(rec: dict) -> list[str]:
    g = rec["generic"]
    lines = [f"fitted on {rec['n_cases']} cases ({', '.join(rec['systems'])}), {rec['fit_date']}:",
             "  generic (" + f"{g.get('n_cases', 0)} cases): " + ", ".join(
                 f"{k} = {v:.4g}" for k, v in g.items() if isinstance(v, float))]
    for e, v in rec.get("engines", {}).items():
        lines.append(f"  engine {e} ({v['n_cases']} cases): " + ", ".join(f"{k} = {x:.4g}" for k, x in v.items() if k != "n_cases"))
    for e, v in rec.get("vendors", {}).items():
        lines.append(f"  vendor {e} ({v['n_cases']} cases): " + ", ".join(f"{k} ×{x:.3g}" for k, x in v.items() if k != "n_cases"))
    lines.append(f"  in-sample median |error| {rec['in_sample']['median_abs_error']:.1%}, p90 {rec['in_sample']['p90_abs_error']:.1%}")
    if rec.get("cross_validated"):
        cv = rec["cross_validated"]
        lines.append(f"  leave-one-source-out median |error| {cv['median_abs_error']:.1%}, p90 {cv['p90_abs_error']:.1%} ({cv['n']} cases)")
        lv = rec["leave_one_vendor_out"]
        lines.append(f"  leave-one-vendor-out median |error| {lv['median_abs_error']:.1%}, p90 {lv['p90_abs_error']:.1%}")
        for k, v in lv["by_vendor"].items():
            lines.append(f"    {k:<10} n={v['n']:<3} median {v['median_abs_error']:6.1%}  p90 {v['p90_abs_error']:6.1%}")
    return lines
