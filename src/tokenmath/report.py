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
from .layout import serving_hbm_bytes
from .parallelism import Layout
from .roofline import StepTime, compute_label, hardware_ratio, hbm_drain_s, step_time
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
from .units import seconds, si, sig

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
        return obj + 0.0  # -0.0 is 0.0: a signed zero is never printed
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
        # what a serving engine fills of it on each chip of a multi-chip replica (the estimate's memory)
        "serving_hbm_bytes": max(0.0, serving_hbm_bytes(system, Layout(tp=2))),
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
        "architecture": c.architecture or None,
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


def _attention_verdict(k) -> str:
    """What decode attention's FLOPs per KV byte against the chip's FLOP/byte say (the lecture's L51):
    below the chip's ratio long context costs bandwidth; above it (MLA's absorbed attention, many
    query heads per KV head) it costs FLOPs."""
    if k.memory_heaviness >= 1:
        return (f"long context costs bandwidth, not FLOPs ({k.memory_heaviness:.3g}× memory-heavier than the chip;"
                " the lecture's L51)")
    return (f"above the chip's ratio ({1 / k.memory_heaviness:.3g}× compute-heavier), so here long context costs"
            " FLOPs, not bandwidth: the lecture's L51 (bandwidth) holds for attention with few query heads per"
            " KV head, not this one")


def step_record_of(est, m: Model, s: System, dt: Dtypes, mem) -> dict[str, Any]:
    """`tokenmath step --json`: the estimate's figures under their plain names (estimate_record),
    the bound's terms on the same layout at the top level (compute_s, weights_s, kv_s,
    activations_s, network_s, bound; all of them under `roofline` too), the model's work in the
    step (flops, weight_bytes_read, kv_bytes_read), memory, and the assumptions."""
    from .estimate import estimate_record
    from .roofline import resolve_dtypes

    op, bd = est.op, est.roofline
    weight, kv, compute, cls = resolve_dtypes(m, s, dt)
    rec: dict[str, Any] = {"model": m.name, "system": s.name, "batch": float(op.batch), "context": float(op.context),
                           "new_tokens": float(op.new_tokens)}
    rec |= {k: getattr(bd, k) for k in ("compute_s", "weights_s", "kv_s", "activations_s", "network_s", "bound")}
    rec |= {"flops": op.flops, "weight_bytes_read": op.weight_bytes, "kv_bytes_read": op.kv_bytes,
            "memory_bytes": mem.total_bytes_per_chip * op.chips, "hbm_bytes": mem.hbm_bytes_per_chip * op.chips,
            "memory_bytes_per_chip": mem.total_bytes_per_chip, "hbm_bytes_per_chip": mem.hbm_bytes_per_chip,
            "fits": bool(mem.fits), "serving_bytes_per_chip": mem.serving_bytes_per_chip, "serves": bool(mem.serves)}
    rec |= estimate_record(est)
    rec["roofline"] |= {"layout": op.layout.describe(), "expert_fetch": op.expert_fetch}
    rec["assumptions"] = {
        "label": est.label, "chips": op.chips, "billed_chips": op.billed_chips, "weight_dtype": weight, "kv_dtype": kv,
        "compute_dtype": compute, "flops_class": cls, "flops_per_s_per_chip": op.peak_flops_per_s,
        "hbm_bytes_per_s_per_chip": op.peak_hbm_bytes_per_s, "usd_per_chip_hour": s.usd_per_chip_hour,
        "price_source": s.price_source or None, "expert_fetch": op.expert_fetch, "attention_flops": True,
        "efficiency": {"flops": 1.0, "hbm": 1.0, "network": 1.0, "label": "roofline"} if est.label == "roofline"
        else est.label,
        "mfu": "model FLOPs of the step / (step_s × chips × peak FLOP/s of the compute dtype); the bound's under roofline",
        "mbu": "weight bytes the step's tokens touch + KV read / (step_s × chips × peak HBM B/s); the bound's under roofline",
    }
    return jsonable(rec)


def render_step(est, m: Model, s: System, dt: Dtypes, mem, *, priced: bool) -> list:
    """`tokenmath step`: the bound's terms (a table), the estimate's operations (a table), one
    estimate line, one roofline-bound line, memory, and (last) the assumptions line."""
    from rich.table import Table

    from .roofline import resolve_dtypes

    op, bd, rep = est.op, est.roofline, est.replica
    lay = op.layout
    B, L, S = float(op.batch), float(op.context), float(op.new_tokens)
    where = f"{lay.replica_chips:,} × {s.name}" + (f" ({op.billed_chips:,.0f} billed)" if op.billed_chips != lay.replica_chips else "")
    out: list = []
    if rep is not None and rep.note:
        out.append(f"[yellow]note:[/] {rep.note}")
    fetch = ("experts its B·S tokens touch, E·(1 − (1 − k/E)^(B·S))" if op.expert_fetch == "expected"
             else "every expert, every step")
    t = Table(title=f"{m.name} on {where}, TP{lay.tp} EP{lay.ep} PP{lay.pp}: B = {B:,.0f}, L = {L:,.0f}, S = {S:,.0f}"
              "  —  roofline bound of this pass (per chip, peak rates, ideal links)", title_justify="left")
    t.add_column("term")
    t.add_column("time", justify="right")
    t.add_column("what it charges")
    t.add_row("compute", seconds(bd.compute_s), "each chip's share of B·S·(2·N_active + attention FLOPs) / FLOP/s")
    t.add_row("weight fetch", seconds(bd.weights_s), f"weight bytes each chip reads / HBM B/s (routed experts: {fetch})")
    t.add_row("KV fetch", seconds(bd.kv_s), "each chip's KV read / HBM B/s")
    t.add_row("activations", seconds(bd.activations_s), "GEMM inputs and outputs / HBM B/s")
    t.add_row("network", seconds(bd.network_s), "TP / EP / PP bytes / link B/s")
    t.add_row("[bold]roofline bound[/]", f"[bold]{seconds(bd.step_s)}[/]",
              f"max(compute, weights + KV + activations, network) → [bold]{bd.bound}[/] bound")
    out.append(t)
    if not est.is_roofline and not est.label.startswith("roofline"):
        t = Table(title=f"estimate ({est.label}): each operation, on the busiest chip", title_justify="left")
        t.add_column("operation")
        t.add_column("time", justify="right")
        names = {"dense_gemm_s": "dense GEMMs", "expert_gemm_s": "expert GEMMs (busiest rank)", "attention_s": "attention",
                 "tp_comm_s": "TP all-reduce", "ep_comm_s": "EP dispatch + combine", "pp_comm_s": "PP send/recv",
                 "overhead_s": "per-step overhead", "overlap_s": "hidden by two-batch overlap"}
        for k, v in op.parts.items():
            if k == "overlap_s" and not np.any(v):
                continue
            t.add_row(names[k], seconds(float(np.max(v))) if k != "overlap_s" else "−" + seconds(-float(np.min(v))))
        t.add_row("[bold]estimated step[/]", f"[bold]{seconds(est.step_s)}[/]")
        out.append(t)
        lo, hi = est.range_80["step_s"] if est.range_80 else (est.step_s, est.step_s)
        cost = f"; ${sig(est.usd_per_mtok, 4)}/Mtok" if priced and est.usd_per_mtok is not None else ""
        out.append(f"[bold]estimate[/]: {seconds(est.step_s)} per step (80 % band {seconds(lo)} – {seconds(hi)}), "
                   f"{est.tokens_per_s:,.0f} tokens/s ({est.tokens_per_s_per_chip:,.0f} per chip, "
                   f"{est.tokens_per_s_per_user:,.1f} per user){cost}; MFU {est.mfu:.1%}, MBU {est.mbu:.1%}")
    elif est.label.startswith("roofline ×"):
        cost = f"; ${sig(est.usd_per_mtok, 4)}/Mtok" if priced and est.usd_per_mtok is not None else ""
        out.append(f"[bold]{est.label}[/]: {seconds(est.step_s)} per step, {est.tokens_per_s:,.0f} tokens/s "
                   f"({est.tokens_per_s_per_chip:,.0f} per chip){cost}; MFU {est.mfu:.1%}, MBU {est.mbu:.1%} (a what-if, not an estimate)")
    cost = f"; ${sig(bd.usd_per_mtok, 4)}/Mtok" if priced and bd.usd_per_mtok is not None else ""
    ratio = "" if est.is_roofline else f" — the estimate is {est.step_s / bd.step_s:.2f}× it"
    out.append(f"[bold]roofline bound[/]: {seconds(bd.step_s)} per step, {bd.tokens_per_s:,.0f} tokens/s "
               f"({bd.tokens_per_s_per_chip:,.0f} per chip){cost}; MFU {bd.mfu:.1%}, MBU {bd.mbu:.1%}{ratio}")
    out.append(f"memory per chip: {si(mem.total_bytes_per_chip, 'B')} of {si(mem.hbm_bytes_per_chip, 'B')} (weights "
               f"{si(mem.weights_bytes_per_chip, 'B')}, KV {si(mem.kv_bytes_per_chip, 'B')}, activations "
               f"{si(mem.activation_bytes_per_chip, 'B')})" + (
                   " — does NOT fit" if not mem.fits else "" if mem.serves else
                   f" — fits HBM, but not the {si(max(float(np.min(mem.serving_bytes_per_chip)), 0.0), 'B')} a serving "
                   "engine fills (90 % less its runtime's reserve): an engine would not hold this batch"))
    from .specs import beyond_context_note

    beyond = beyond_context_note(m, float(np.max(np.asarray(op.context, float))))
    if beyond:
        out.append(f"[yellow]note:[/] {beyond}")
    weight, kv, compute, cls = resolve_dtypes(m, s, dt)
    price = "no price (--usd-per-chip-hour)" if s.usd_per_chip_hour is None else \
        f"${s.usd_per_chip_hour:.4g}/chip-h ({s.price_source or 'catalog'})"
    out.append(f"[dim]{est.label}; weights {weight}{_every_part(m, dt)}, KV {kv}, compute {compute_label(compute, cls)} "
               f"({si(op.peak_flops_per_s, 'FLOP/s')}/chip); "
               f"{price}; experts: {op.expert_fetch}; MFU = model FLOPs / (step × chips × peak), MBU = (weights touched "
               f"+ KV) bytes / (step × chips × peak B/s)[/]")
    return out


def _every_part(m, dt) -> str:
    """Said where a named weight dtype is the checkpoint's own but the checkpoint keeps some parts
    wider (gpt-oss: MXFP4 experts, BF16 attention): the pass then stores every part in it."""
    if dt.weight is None or dt.weight != m.weight_dtype or m.base_dtype == m.weight_dtype:
        return ""
    parts = ", ".join(p for p in m.unquantized_parts if p != "norms")
    if not parts:
        return ""
    return (f" (every part: the checkpoint keeps {parts} in {m.base_dtype}; leave --weight-dtype out for the "
            "checkpoint as published)")


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
    # the estimate's counterparts (None with the roofline profile)
    estimate: str = "roofline"
    profile: object = None
    est_steps: object = None  # estimate.Estimated over `batches`
    est_balance: object = None  # serving.EstimatedBalance
    est_fast: object = None  # serving.EstimatedFastMode at 2.5×
    est_fast_100x: object = None
    est_traffic: object = None  # serving.Traffic on the estimate
    est_prefill: object = None  # serving.EstimatedPrefill
    kv_intensity: object = None  # serving.KvIntensity (L51)
    estimate_unavailable: str | None = None  # why a calibrated report has no estimate


def build_report(model: Model, system: System, *, context: float = 4096, chips: int | None = None,
                 dtypes: Dtypes = Dtypes(), efficiency: Efficiency = ROOFLINE,
                 batches: tuple[float, ...] | None = None, profile=None) -> Report:
    """The lecture's running example as one record: each lecture quantity on the roofline bound (as
    the lecture defines it) and, with a calibrated `profile`, the estimate's counterpart beside it."""
    if chips is None:  # one replica, as every command chooses it (estimate.replica_chips)
        from .estimate import replica_chips

        chips = replica_chips(model, system, context, 1, dtypes=dtypes)
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
    est = {}
    if profile is not None and not profile.is_roofline:
        from .estimate import estimate_pass

        lay = serving.estimate_layout(model, system, n, context, dtypes=dtypes)
        est["estimate"], est["profile"] = profile.label, profile
        if serving.batch_to_fill_hbm(model, system, context, dtypes=dtypes, layout=lay) < 1:
            est["estimate_unavailable"] = (f"its layout TP{lay.tp} EP{lay.ep} PP{lay.pp} on {n} × {system.name} holds no"
                                           f" sequence of {context:,.0f} tokens; give more --chips")
        else:
            est["est_steps"] = estimate_pass(model, system, np.asarray(batches, float), context, 1.0, layout=lay,
                                             dtypes=dtypes, profile=profile)
            kw = dict(chips=n, dtypes=dtypes, profile=profile, layout=lay)
            est["est_balance"] = serving.estimated_balance(model, system, context, **kw)
            est["est_fast"] = serving.estimated_fast_mode(model, system, context, speedup=2.5, **kw)
            est["est_fast_100x"] = serving.estimated_fast_mode(model, system, context, price_multiplier=100, **kw)
            est["est_traffic"] = serving.traffic(model, system, 1.0, context=context, **kw)
            est["est_prefill"] = serving.estimated_prefill_vs_decode(model, system, 8192, context=context, **kw)
    kvi = None if model.is_totals_only else serving.decode_flops_per_kv_byte(model, system, context=max(context, 1),
                                                                              kv_dtype=dtypes.kv)
    return Report(
        model=model, system=system, context=context, chips=n, dtypes=dtypes, efficiency=efficiency, steps=steps,
        balance_batch=bstar, balance_batch_with_kv=bkv,
        latency_floor_s=latency_floor_s(model, system, chips=n, dtypes=dtypes, efficiency=efficiency),
        cost_floor_usd_per_mtok=cost_floor_usd_per_mtok(model, system, context, dtypes=dtypes, efficiency=efficiency),
        cost_floor_no_kv_usd_per_mtok=cost_floor_usd_per_mtok(model, system, 0, dtypes=dtypes, efficiency=efficiency),
        hbm_drain_s=hbm_drain_s(system), batch_to_fill_hbm=fill,
        hardware_ratio=hardware_ratio(system, weight_dtype), balance_batch_lecture_fp4=lecture_fp4,
        balance_context=serving.balance_context(model, system, None, chips=n, dtypes=dtypes, efficiency=efficiency),
        fast=fast, fast_100x=fast_100, traffic=tr, prefill=pd, kv_intensity=kvi, **est,
    )


def _est_steps_record(r: Report) -> list[dict[str, Any]] | None:
    e = r.est_steps
    if e is None:
        return None
    col = lambda v: np.atleast_1d(np.asarray(v, float))  # noqa: E731
    step, tpc, usd_ = col(e.step_s), col(e.tokens_per_s_per_chip), None if e.usd_per_mtok is None else col(e.usd_per_mtok)
    bound = col(e.roofline_step_s)
    band = {k: (col(v[0]), col(v[1])) for k, v in (e.range_80 or {}).items()}
    return [{"batch": float(b), "step_s": float(step[i]), "tokens_per_s_per_chip": float(tpc[i]),
             "usd_per_mtok": None if usd_ is None else float(usd_[i]), "roofline_step_s": float(bound[i]),
             "range_80": {k: [float(lo[i]), float(hi[i])] for k, (lo, hi) in band.items()}}
            for i, b in enumerate(col(e.op.batch))]


def report_record(r: Report) -> dict[str, Any]:
    """The report's JSON: the lecture's quantities on the roofline at the top level (and under
    `roofline`), `estimate` the label of the estimate's counterparts under `estimated`."""
    roof = {
        "balance_batch": r.balance_batch,
        "balance_batch_with_kv": r.balance_batch_with_kv,
        "latency_floor_s": r.latency_floor_s,
        "cost_floor_usd_per_mtok": r.cost_floor_usd_per_mtok,
        "cost_floor_no_kv_usd_per_mtok": r.cost_floor_no_kv_usd_per_mtok,
        "hbm_drain_s": r.hbm_drain_s,
        "batch_to_fill_hbm": r.batch_to_fill_hbm,
        "hardware_ratio": r.hardware_ratio,
        "balance_context": r.balance_context,
    }
    fm = None if r.fast is None else {k: v for k, v in fastmode_record(r.fast, r.est_fast).items() if k != "points"}
    if fm is not None:
        fm["roofline"] = {k: v for k, v in fm["roofline"].items() if k != "points"}
    return jsonable({
        "model": model_record(r.model, r.context, r.steps[0].assumptions.kv_dtype),
        "system": system_record(r.system),
        "context": r.context,
        "chips": r.chips,
        "estimate": r.estimate,
        "steps": [step_record(s) for s in r.steps],
        "estimated_steps": _est_steps_record(r),
        **roof,
        "roofline": dict(roof),
        "estimated": None if r.est_balance is None else jsonable(r.est_balance) | {
            "layout": _layout_rec(r.est_balance.layout)},
        "kv_intensity": None if r.kv_intensity is None else jsonable(r.kv_intensity),
        "fastmode": fm,
        "fastmode_100x_price": None if r.fast_100x is None else (
            {"estimate": r.estimate if r.est_fast_100x is not None else "roofline"}
            | _fast_brief(r.est_fast_100x or r.fast_100x) | {"roofline": _fast_brief(r.fast_100x)}),
        "traffic": None if r.traffic is None else traffic_record(r.est_traffic or r.traffic, r.traffic),
        "prefill": None if r.prefill is None else _strip_prefill(prefill_record(r.prefill, r.est_prefill)),
        "estimate_unavailable": r.estimate_unavailable,
        "assumptions": assumptions_record(r.steps[0]) | {"estimate": r.estimate},
    })


def _fast_brief(f) -> dict[str, Any]:
    return {"speedup": f.speedup, "batch": f.batch, "max_speedup": f.max_speedup}


def _strip_prefill(rec: dict) -> dict:
    out = {k: v for k, v in rec.items() if k not in ("by_pass_length", "decode", "prefill")}
    out["roofline"] = {k: v for k, v in rec["roofline"].items() if k not in ("by_pass_length", "decode", "prefill")}
    return out


def usd(x: float | None) -> str:
    if x is None:
        return "n/a (no price: --usd-per-chip-hour)"
    return f"${sig(x, 3)}" if x < 100 else f"${x:,.0f}"


def count(x: float) -> str:
    return f"{x:,.0f}"


def render_report(r: Report) -> list[tuple[str, list[str]]]:
    """Sections of (heading, lines) in plain words; the CLI draws them with rich. Each lecture
    quantity is stated on the roofline bound (as the lecture defines it), the estimate's
    counterpart beside it."""
    m, s, st0 = r.model, r.system, r.steps[0]
    a = st0.assumptions
    pc = _params.param_counts(m)
    kv = kv_cache(m, r.context, a.kv_dtype)
    wbytes = _params.weight_bytes(m, r.dtypes.weight)
    eb = r.est_balance
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
    if r.kv_intensity is not None:
        k = r.kv_intensity
        lines.append(f"Decode attention spends {sig(k.flops_per_kv_byte, 3)} FLOPs per KV byte it reads"
                     + ("" if k.chip_flops_per_byte is None else
                        f" against the chip's {k.chip_flops_per_byte:,.0f} FLOP/byte (BF16): {_attention_verdict(k)}."))
    out.append(("The model", lines))

    lines = [
        f"{s.name} ({s.description}). One replica uses {r.chips} chips; per chip"
        f" {si(a.flops_per_s_per_chip, 'FLOP/s')} dense {a.compute_class}, {si(s.chip.hbm_bytes, 'B')} HBM at"
        f" {si(s.chip.hbm_bytes_per_s, 'B/s')}, {usd(a.usd_per_chip_hour)}/chip-hour.",
        f"Hardware ratio FLOP/s × bytes/weight ÷ (2 × HBM B/s) = {r.hardware_ratio:.0f} (the lecture's \"≈ 300\").",
        f"HBM drain time = capacity / bandwidth = {seconds(r.hbm_drain_s)}: the natural step time when HBM is full"
        f" and all of it is read each step.",
    ]
    if eb is not None:
        lines.append(f"The estimate ({r.estimate}) runs the replica as TP{eb.layout.tp} EP{eb.layout.ep} PP{eb.layout.pp}"
                     f" ({eb.layout.replica_chips} chips hold weights, {eb.billed_chips:g} billed).")
    out.append(("The system", lines))

    lines = [
        "Roofline: T_step = max(compute, weight fetch + KV fetch); compute = 2·B·N_active/FLOP/s (+ attention),"
        " weight fetch = N_total·bytes/HBM B/s, KV fetch = B·L·KV bytes/HBM B/s — all over the replica's chips.",
    ]
    if r.est_steps is not None:
        lines.append(f"Estimate ({r.estimate}): the per-operation step model on its layout, with its 80 % band.")
    est_rows = _est_steps_record(r)
    head = (f"{'batch':>8} {'compute':>10} {'weights':>10} {'KV':>10} {'bound':>10} {'':>8}"
            + (f" {'estimate':>10} {'80 % band':>19} {'tok/s/chip':>11} {'$/Mtok':>9}" if est_rows else
               f" {'tok/s':>11} {'$/Mtok':>9} {'MFU':>6}") + " fits")
    lines.append(head)
    for i, st in enumerate(r.steps):
        row = (f"{count(st.batch):>8} {seconds(st.compute_s):>10} {seconds(st.weights_s):>10} {seconds(st.kv_s):>10}"
               f" {seconds(st.step_s):>10} {st.bound:>8}")
        if est_rows:
            e = est_rows[i]
            band = e["range_80"].get("step_s")
            bt = f"{seconds(band[0])} – {seconds(band[1])}" if band else "-"
            row += (f" {seconds(e['step_s']):>10} {bt:>19} {e['tokens_per_s_per_chip']:>11,.0f}"
                    f" {('%.3g' % e['usd_per_mtok']) if e['usd_per_mtok'] is not None else 'n/a':>9}")
            fits = st.fits and (eb is None or st.batch <= eb.batch_to_fill_hbm)
        else:
            row += (f" {count(st.tokens_per_s):>11}"
                    f" {('%.3g' % st.usd_per_mtok) if st.usd_per_mtok is not None else 'n/a':>9} {st.mfu:>6.1%}")
            fits = st.fits
        lines.append(row + f" {'yes' if fits else 'NO'}")
    out.append((f"Decode steps at context L = {count(r.context)}", lines))

    if m.moe is None:
        lines = [
            f"Latency floor (roofline) = weight bytes / ({r.chips} chips × HBM B/s) = {seconds(r.latency_floor_s)} per token:"
            " no batch size can beat it; only more chips or narrower weights can.",
        ]
    else:
        touched = latency_floor_s(m, s, chips=r.chips, dtypes=r.dtypes, efficiency=r.efficiency, expert_fetch="expected")
        lines = [
            f"Latency floor (roofline, every expert streamed as the lecture has it) = weight bytes / ({r.chips} chips ×"
            f" HBM B/s) = {seconds(r.latency_floor_s)} per token; {seconds(touched)} if a batch-1 step streams only the"
            f" {m.moe.k} experts per layer its token is routed to. No batch size beats that; only more chips or narrower"
            " weights can.",
        ]
    if eb is not None:
        lines.append(f"  Estimate: a batch-1 step at L = {count(r.context)} takes {seconds(eb.latency_floor_s)}"
                     f"{_band(eb.latency_floor_range_80, seconds)}; the bound of that same pass on the estimate's layout"
                     f"{' (which streams only the experts a step touches)' if m.moe else ''} is"
                     f" {seconds(eb.latency_floor_bound_s)}.")
    lines.append(
        f"Balance batch B* (roofline: weight fetch = compute, KV ignored) = [FLOP/s·bytes/weight/(2·BW)] × N_total/N_active"
        f" ≈ {r.hardware_ratio:.0f} × {pc.sparsity:.1f} = {count(r.balance_batch)} sequences.")
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
            " longer than its compute, so on the roofline decode is memory bound at every batch size."
        )
    else:
        lines.append(
            f"With KV fetches at L = {count(r.context)}: B* = W / (c − k) = {count(r.balance_batch_with_kv)} sequences."
        )
    if eb is not None:
        lines.append(f"  Estimate: cost per token stops falling (within {eb.knee_tolerance:.0%} of its lowest among batches"
                     f" that fit) at batch {count(eb.knee_batch)}; the lowest is at {count(eb.lowest_cost_batch)}.")
    lines.append(
        f"Cost floor (roofline: weights amortised over an unbounded batch) = max(compute, KV) per token × $/s ="
        f" {usd(r.cost_floor_usd_per_mtok)}/Mtok at L = {count(r.context)}"
        f" ({usd(r.cost_floor_no_kv_usd_per_mtok)}/Mtok with no context)."
    )
    if eb is not None:
        lines.append(f"  Estimate: the lowest cost among batches that fit is {usd(eb.lowest_usd_per_mtok)}/Mtok"
                     f"{_band(eb.lowest_usd_per_mtok_range_80, usd)} at batch {count(eb.lowest_cost_batch)}.")
    fitting = [x for x in r.steps if x.fits]
    if not fitting:
        lines.append(f"No batch in the table fits: weights + KV exceed {r.chips} × {r.system.name}'s HBM; give --chips.")
    elif est_rows and est_rows[0]["usd_per_mtok"] and len(est_rows) > 1:
        ok = [e for e, st in zip(est_rows, r.steps) if st.fits and e["batch"] <= eb.batch_to_fill_hbm] if eb else []
        if ok and ok[-1] is not est_rows[0]:
            lines.append(f"Batch 1 costs {est_rows[0]['usd_per_mtok'] / ok[-1]['usd_per_mtok']:,.0f}× more per token than batch"
                         f" {count(ok[-1]['batch'])} (estimate; {st0.usd_per_mtok / fitting[-1].usd_per_mtok:,.0f}× on the"
                         f" bound): not batching is ruinous (the lecture's \"~1000× worse\").")
    elif st0.fits and st0.usd_per_mtok is not None and fitting[-1].usd_per_mtok and fitting[-1] is not st0:
        lines.append(
            f"Batch 1 costs {st0.usd_per_mtok / fitting[-1].usd_per_mtok:,.0f}× more per token than batch"
            f" {count(fitting[-1].batch)}, the largest in the table that fits: not batching is ruinous (the lecture's \"~1000× worse\")."
        )
    if r.balance_context is not None:
        lines.append(
            f"Balance context L* (roofline: KV fetch per token = compute per token) = {count(r.balance_context)} tokens:"
            " beyond it decode is memory bound at any batch, and cost per token grows with context."
        )
    if eb is not None:
        lines.append("  Estimate: the attention kernels (the KV read) outlast the weight GEMMs at batch"
                     f" {count(eb.balance_context_batch)} "
                     + ("at no context up to 10× the longest" if eb.balance_context is None
                        else f"from L = {count(eb.balance_context)} tokens."))
    out.append(("Floors and balance points", lines))

    if r.fast is not None:
        f, f100 = r.fast, r.fast_100x
        lines = []
        ef, ef100 = r.est_fast, r.est_fast_100x
        if ef is not None:
            lines.append(f"Estimate: normal mode runs the estimated cost-optimal batch {count(ef.reference_batch)}"
                         f" (step {seconds(ef.reference_step_s)}).")
            if ef.speedup is not None:
                lines.append(f"  Fast mode: {ef.speedup:.2f}× the speed costs {ef.price_multiplier:.2f}× the price (batch"
                             f" {count(ef.batch)}).")
            else:
                lines.append(f"  2.5× is out of reach by batch size alone: batch 1 is {ef.max_speedup:.2f}× faster.")
            if ef100.speedup is not None:
                lines.append(f"  100× the price buys {ef100.speedup:.2f}× (batch {count(ef100.batch)}); batch 1 is"
                             f" {ef.max_speedup:.2f}× faster than normal (an estimated {seconds(ef.latency_floor_s)} step).")
            lines.append("Roofline bound:")
        ind = "  " if ef is not None else ""
        lines += [
            f"{ind}Normal mode runs the cost-optimal batch {count(f.reference_batch)} (step {seconds(f.reference_step_s)}).",
            f"{ind}Fast mode: {f.speedup:.2f}× the speed costs {f.price_multiplier:.2f}× the price (batch"
            f" {count(f.batch)}); the lecture's 6×-price / 2.5×-speed pair fits a step ~2.8× the weight-fetch time.",
            f"{ind}100× the price buys {f100.speedup:.2f}× at most here: batch 1 hits the {seconds(f.latency_floor_s)}"
            f" latency floor ({f.max_speedup:.2f}× faster than normal). Only more chips per replica go further."
            + ("" if f.max_speedup_every_expert is None else
               f" (The lecture's floor streams every expert, {seconds(f.latency_floor_every_expert_s)}: against it batch 1 would"
               f" be only {f.max_speedup_every_expert:.2f}× faster; a batch-1 step reads the experts its token is routed to.)"),
            f"{ind}Slow mode saves at most {f.max_saving:.2f}×: the cost floor is already near.",
        ] if f.speedup is not None else [
            f"{ind}Normal mode runs batch {count(f.reference_batch)}; batch 1 is {f.max_speedup:.2f}× faster, so 2.5× is"
            " out of reach by batch size alone."
        ]
        out.append(("Fast mode and slow mode", lines))
    if r.traffic is not None:
        t, et = r.traffic, r.est_traffic
        lines = []
        if et is not None:
            lines.append(f"Estimate: a step of {count(et.batch)} sequences departs every {seconds(et.step_s)}: one replica"
                         f" emits B/T = {count(et.tokens_per_s_per_replica)} tokens/s"
                         f" ({count(et.tokens_per_s_per_chip)} per chip); a token within 2·T = {seconds(et.max_latency_s)}.")
        lines += [
            f"{'Roofline: ' if et is not None else ''}A step of {count(t.batch)} sequences departs every {seconds(t.step_s)}:"
            f" one replica emits B/T = {count(t.tokens_per_s_per_replica)} tokens/s (the lecture: 2,000 × 64/s ≈ 128k).",
            f"A request waits at most one step and has its token within 2·T = {seconds(t.max_latency_s)}"
            f"{' on the bound' if et is not None else ''}.",
        ]
        out.append(("Batching cadence", lines))
    if r.prefill is not None:
        p, ep = r.prefill, r.est_prefill
        lines = []
        if ep is not None:
            lines.append(f"Estimate: a {count(ep.prompt_tokens)}-token prompt is prefilled in {seconds(ep.ttft_s)}"
                         f"{_band(ep.ttft_range_80, seconds)} (TTFT at batch 1; {seconds(ep.ttft_at_load_s)} at load);"
                         f" per token decode costs {ep.output_input_cost_ratio:.2f}× prefill at batch {count(ep.decode_batch)}.")
        lines += [
            f"{'Roofline: a' if ep is not None else 'A'} {count(p.prompt_tokens)}-token prompt is prefilled {p.prefill.bound}"
            f" bound in {seconds(p.ttft_s)} (time to first token at batch 1; {seconds(p.ttft_at_load_s)} at load).",
            f"Per token, decode costs {p.output_input_cost_ratio:.2f}× prefill {'on the bound' if ep else 'here'};"
            " price sheets charge ~5× for output.",
        ]
        out.append(("Prefill vs decode", lines))

    lines = [
        f"Weights take {si(wbytes, 'B')} of {si(s.chip.hbm_bytes * r.chips, 'B')} HBM"
        f" ({wbytes / (s.chip.hbm_bytes * r.chips):.0%}); the rest holds KV for up to"
        f" {count(r.batch_to_fill_hbm)} sequences of {count(r.context)} tokens (the bound: HBM pooled, each weight once).",
    ]
    if eb is not None:
        lines.append(f"On the estimate's layout (each chip holds its weight shard, its share of the KV and the"
                     f" activations) HBM is full at {count(eb.batch_to_fill_hbm)} sequences.")
    lines.append(
        f"At B* = {count(r.balance_batch)} the KV cache needs {si(r.balance_batch * kv.stored_bytes, 'B')}"
        f" ({'fits' if r.balance_batch <= r.batch_to_fill_hbm else 'does NOT fit: capacity binds before compute'}).")
    out.append(("Memory", lines))
    assumptions = [
        f"weights {a.weight_dtype}, KV {a.kv_dtype}, compute {compute_label(a.compute_dtype, a.compute_class)} (FLOP/s line {a.compute_class});"
        f" roofline network: {a.network}.",
    ]
    if r.est_steps is not None:
        prof = r.profile
        assumptions = [
            f"The answers are the estimate ({r.estimate}): the per-operation step model (docs/stepmodel.md) with"
            f" kernel curves fitted on measured kernels and engine parameters fitted on {getattr(prof, 'n_cases', 0)}"
            " published serving results; its 80 % band comes from the cross-validated residuals.",
            "Beside each is the roofline bound (the lecture's definitions: B*, L*, the floors); no real deployment"
            " beats it. The estimate's counterparts are defined in docs/serving.md.",
        ] + assumptions
    elif r.estimate_unavailable:
        assumptions = [f"The estimate ({r.estimate}) is unavailable: {r.estimate_unavailable}. Every number above is the"
                       " roofline bound; measured serving runs slower (see docs/roofline.md)."] + assumptions
    else:
        assumptions = [f"{a.label}: every number is the roofline bound (--efficiency roofline); measured serving runs"
                       " slower (see docs/roofline.md)."] + assumptions
    out.append(("Assumptions", assumptions))
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


def curve_record_of(est, over: str, fits) -> dict[str, Any]:
    """`tokenmath curve --json`: one dict per point with the estimate's step, rates, $/Mtok, 80 %
    band, MFU and MBU, and the bound of the same pass (roofline_step_s, its terms compute_s,
    weights_s, kv_s, activations_s, network_s, and bound); `estimate` (the label) and `roofline`
    (the bound's figures over the points, as lists) at the top."""
    from .estimate import estimate_record, roofline_record

    op, bd = est.op, est.roofline
    n = int(np.size(op.step_s))
    col = lambda v: np.broadcast_to(np.asarray(v, dtype=object if isinstance(v, str) else None), (n,))  # noqa: E731
    cols = {"batch": op.batch, "context": op.context, "step_s": est.step_s, "roofline_step_s": bd.step_s,
            "compute_s": bd.compute_s, "weights_s": bd.weights_s, "kv_s": bd.kv_s, "activations_s": bd.activations_s,
            "network_s": bd.network_s, "tokens_per_s_per_chip": est.tokens_per_s_per_chip,
            "tokens_per_s_per_user": est.tokens_per_s_per_user, "mfu": est.mfu, "mbu": est.mbu, "bound": bd.bound,
            "fits": fits}
    if est.usd_per_mtok is not None:
        cols["usd_per_mtok"] = est.usd_per_mtok
    cols = {k: col(v) for k, v in cols.items()}
    band = {k: (col(v[0]), col(v[1])) for k, v in (est.range_80 or {}).items()}
    pts = []
    for i in range(n):
        row = {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in cols.items()}
        row["bound"], row["fits"] = str(row["bound"]), bool(row["fits"])
        row.setdefault("usd_per_mtok", None)
        if band:
            row["range_80"] = {k: [float(lo[i]), float(hi[i])] for k, (lo, hi) in band.items()}
        pts.append(row)
    er = estimate_record(est)
    return jsonable({"over": over, "estimate": est.label, "points": pts, "roofline": roofline_record(bd),
                     "expert_fetch": op.expert_fetch, "layout": er["layout"], "chips": er["chips"],
                     "billed_chips": er["billed_chips"], "replica": er["replica"]})


def _layout_rec(lay) -> dict[str, Any] | None:
    return None if lay is None else {"tp": lay.tp, "ep": lay.ep, "pp": lay.pp, "dp": lay.dp}


def _fastmode_roofline_record(fm) -> dict[str, Any]:
    pts = points_record(fm.points)
    for row, s, p in zip(pts, fm.frontier_speedup, fm.frontier_price_multiplier):
        row["speedup"], row["price_multiplier"] = float(s), float(p)
    return {
        "batch": fm.batch, "speedup": fm.speedup, "price_multiplier": fm.price_multiplier,
        "max_speedup": fm.max_speedup, "max_saving": fm.max_saving,
        "reference_batch": fm.reference_batch, "reference_step_s": fm.reference_step_s,
        "reference_usd_per_mtok": fm.reference_usd_per_mtok, "latency_floor_s": fm.latency_floor_s,
        "expert_fetch": fm.expert_fetch, "max_speedup_every_expert": fm.max_speedup_every_expert,
        "latency_floor_every_expert_s": fm.latency_floor_every_expert_s,
        "chips": fm.chips,
        "chips_lever": [{"chips": c, "max_speedup": s} for c, s in fm.chips_lever],
        "points": pts,
        "assumptions": assumptions_record(fm.points),
    }


def fastmode_record(fm, est=None) -> dict[str, Any]:
    """fastmode's JSON: the answer's figures at the top (the estimate's when `est` is given, else the
    bound's), `estimate` its label, `roofline` the bound's figures."""
    roof = _fastmode_roofline_record(fm)
    if est is None:
        return roof | {"estimate": "roofline", "roofline": {k: v for k, v in roof.items() if k != "points"}}
    pts = [{"batch": float(b), "step_s": float(t), "speedup": float(s), "price_multiplier": float(p)}
           for b, t, s, p in zip(est.frontier_batch, est.frontier_step_s, est.frontier_speedup,
                                 est.frontier_price_multiplier)]
    return jsonable({
        "estimate": est.estimate, "batch": est.batch, "speedup": est.speedup, "price_multiplier": est.price_multiplier,
        "max_speedup": est.max_speedup, "max_saving": est.max_saving, "reference_batch": est.reference_batch,
        "reference_step_s": est.reference_step_s, "reference_usd_per_mtok": est.reference_usd_per_mtok,
        "range_80": est.reference_range_80, "latency_floor_s": est.latency_floor_s,
        "batch_to_fill_hbm": est.batch_to_fill_hbm, "chips": est.chips, "layout": _layout_rec(est.layout),
        "chips_lever": [{"chips": c, "max_speedup": s} for c, s in est.chips_lever],
        "points": pts, "roofline": roof,
    })


def traffic_record(t, roofline=None) -> dict[str, Any]:
    """traffic's JSON: the answer (the estimate's when it is one) at the top, the bound in `roofline`."""
    rec = jsonable(t)
    rec["roofline"] = jsonable(roofline if roofline is not None else t)
    return rec


def _prefill_roofline_record(pd) -> dict[str, Any]:
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


def prefill_record(pd, est=None) -> dict[str, Any]:
    """prefill's JSON: the answer at the top (the estimate's when given), the bound in `roofline`."""
    roof = _prefill_roofline_record(pd)
    if est is None:
        return roof | {"estimate": "roofline", "roofline": {k: v for k, v in roof.items() if k != "by_pass_length"}}
    band = est.by_pass_length_range_80
    return jsonable({
        "estimate": est.estimate, "prompt_tokens": est.prompt_tokens,
        "output_input_cost_ratio": est.output_input_cost_ratio,
        "decode_usd_per_mtok": est.decode_usd_per_mtok, "prefill_usd_per_mtok": est.prefill_usd_per_mtok,
        "ttft_s": est.ttft_s, "ttft_range_80": est.ttft_range_80, "ttft_at_load_s": est.ttft_at_load_s,
        "layout": _layout_rec(est.layout),
        "decode": {"batch": est.decode_batch, "context": pd.decode.context, "new_tokens": 1.0,
                   "step_s": est.decode_step_s, "usd_per_mtok": est.decode_usd_per_mtok},
        "prefill": {"batch": 1.0, "context": 0.0, "new_tokens": est.prompt_tokens, "step_s": est.prefill_step_s,
                    "usd_per_mtok": est.prefill_usd_per_mtok, "cost_prompts": est.prefill_prompts,
                    "cost_pass_s": est.prefill_pass_s},
        "by_pass_length": [
            {"new_tokens": float(s), "prompts": est.prefill_prompts, "step_s": float(t),
             "s_per_token": float(t / (s * est.prefill_prompts))}
            | ({} if band is None else {"s_per_token_range_80": [float(band[0][i]), float(band[1][i])]})
            for i, (s, t) in enumerate(zip(est.by_pass_length_new_tokens, est.by_pass_length_step_s))
        ],
        "roofline": roof,
    })


def balance_record(b, est=None, kv=None, largest=None) -> dict[str, Any]:
    """balance's JSON: the lecture's quantities as the roofline defines them (top level, and again
    under `roofline`), `estimate` the label of the counterparts in `estimated` (None with
    --efficiency roofline), `kv_intensity` (L51) and `largest_model` (L29, when a target is given)."""
    roof = jsonable(b)
    return roof | {
        "estimate": "roofline" if est is None else est.estimate, "roofline": dict(roof),
        "estimated": None if est is None else jsonable(est) | {"layout": _layout_rec(est.layout)},
        "kv_intensity": None if kv is None else jsonable(kv),
        "largest_model": None if largest is None else jsonable(largest),
    }


def _n(x) -> str:
    return "none" if x is None else f"{x:,.0f}"


def _band(r, fmt) -> str:
    if not r:
        return ""
    return f" (80 % band {fmt(r[0])} – {fmt(r[1])})"


def _params_words(x) -> str:
    return count_words(x, 3)


def render_balance(b, m: Model, s: System, est=None, kv=None, largest=None, *, roofline_only: bool | None = None) -> list[str]:
    lay = "" if est is None else (f"; the estimate ({est.estimate}) runs TP{est.layout.tp} EP{est.layout.ep}"
                                  f" PP{est.layout.pp}, {est.billed_chips:g} chips billed")
    roofline_only = est is None if roofline_only is None else roofline_only
    lines = [
        f"{m.name} on {b.chips} × {s.name} at L = {b.context:,.0f}: the lecture's quantities are defined on the roofline"
        f" bound{' (--efficiency roofline)' if roofline_only else ''}{lay}",
        f"  sparsity N_total/N_active = {b.sparsity:.2f}"
        + (f" (expert ratio E/k = {b.expert_ratio:.0f} is not the same thing)" if b.expert_ratio else ""),
        f"  FLOP/s ÷ HBM B/s = {b.flops_per_byte:,.0f} FLOP/byte; hardware ratio FLOP/s·b_w/(2·BW) = {b.hardware_ratio:.0f}",
    ]
    if kv is not None:
        chip = "" if kv.chip_flops_per_byte is None else (
            f" against the chip's {kv.chip_flops_per_byte:,.0f} FLOP/byte in BF16: {_attention_verdict(kv)}")
        lines.append(f"  decode attention (L51): {sig(kv.flops_per_kv_byte, 3)} FLOPs per KV byte read ({kv.formula})" + chip)
    lines += [
        "  balance batch",
        f"    roofline B* (weight fetch = compute, KV ignored) = hardware ratio × sparsity = {_n(b.balance_batch)}",
    ]
    if b.operating_batch:
        lines.append(f"    the lecture's operating batch, 2–3 × B* (real efficiency is below the roofline):"
                     f" {_n(b.operating_batch[0])} – {_n(b.operating_batch[1])} sequences")
    if b.balance_batch_with_kv is None:
        lines.append(f"    roofline with KV at L = {b.context:,.0f}: no balance batch — the KV read per sequence outlasts"
                     " its compute, so decode is memory bound at every batch")
    else:
        lines.append(f"    roofline with KV at L = {b.context:,.0f}: B* = W/(c − k) = {_n(b.balance_batch_with_kv)}")
    if est is not None:
        lines.append(f"    estimate: cost per token stops falling at batch {_n(est.knee_batch)} (the smallest batch within"
                     f" {est.knee_tolerance:.0%} of the lowest estimated cost among batches that fit; the lowest is at"
                     f" batch {_n(est.lowest_cost_batch)})")
    lines.append("  balance context")
    if b.balance_context is None:
        lines.append("    roofline: none — compute per token exceeds its KV fetch at every context")
    else:
        lines.append(f"    roofline L* (KV fetch = compute; the batch cancels) = {_n(b.balance_context)} tokens:"
                     " longer contexts make decode memory bound however large the batch")
    if b.batch is not None:
        lines.append(f"    roofline at B = {b.batch:,.0f}: weights + KV fetch equal compute at L = {_n(b.balance_context_with_weights)}")
    if est is not None:
        where = ("never, up to 10 × the model's longest context" if est.balance_context is None
                 else f"from L = {_n(est.balance_context)} tokens")
        lines.append(f"    estimate: attention (the KV read) outlasts the weight GEMMs at batch {_n(est.balance_context_batch)}"
                     f" {where}")
    lines += [
        "  latency floor",
        f"    roofline: weight bytes / ({b.chips} × HBM B/s) = {seconds(b.latency_floor_s)}"
        + ("" if b.latency_floor_touched_experts_s is None else
           f" with every expert streamed (the lecture's floor); {seconds(b.latency_floor_touched_experts_s)} if a"
           " batch-1 step streams only the experts its token is routed to"),
    ]
    if est is not None:
        lines.append(f"    estimate: the step at batch 1, L = {b.context:,.0f}: {seconds(est.latency_floor_s)}"
                     f"{_band(est.latency_floor_range_80, seconds)}; the bound of that pass on its layout is"
                     f" {seconds(est.latency_floor_bound_s)}")
    lines += [
        "  cost floor",
        f"    roofline: max(compute, KV) per token × $/chip-s = {usd(b.cost_floor_usd_per_mtok)}/Mtok (as B → ∞, past"
        " what HBM holds)",
    ]
    if est is not None:
        lines.append(f"    estimate: the lowest among batches that fit = {usd(est.lowest_usd_per_mtok)}/Mtok"
                     f"{_band(est.lowest_usd_per_mtok_range_80, lambda x: usd(x))} at batch {_n(est.lowest_cost_batch)}"
                     f" ({est.lowest_tokens_per_s_per_chip:,.0f} tokens/s per billed chip)")
    lines += [
        f"  HBM drain time C/BW = {seconds(b.hbm_drain_s)}",
        f"  HBM full (serving.batch_to_fill_hbm) at B = {_n(b.batch_to_fill_hbm)} sequences of {b.context:,.0f} tokens"
        f" on the bound ({b.chips} chips' HBM pooled, each weight stored once)"
        + ("" if est is None else f"; {_n(est.batch_to_fill_hbm)} on the estimate's layout (each chip's weight shard,"
                                  " KV share and activations)"),
    ]
    if largest is not None:
        g = largest
        act = "" if g.active_params is None else (f", N_active ≤ {_params_words(g.active_params)} at sparsity"
                                                  f" {g.sparsity:.3g}")
        lines += [
            f"  largest model for a {seconds(g.latency_target_s)} step (L29) on {g.chips} chips, {g.weight_dtype} weights:",
            f"    roofline: N_total·b_w/(chips·BW) ≤ target ⇒ N_total ≤ {_params_words(g.total_params)}{act}; HBM holds"
            f" {_params_words(g.capacity_total_params)} at most, so {_params_words(g.servable_total_params)} is servable",
        ]
        if g.estimated_total_params is not None:
            eact = "" if g.estimated_active_params is None else f", N_active ≤ {_params_words(g.estimated_active_params)}"
            lines.append(f"    estimate: N_total ≤ {_params_words(g.estimated_total_params)}{eact} (a model built like"
                         f" {g.reference_model}: the estimate streams its weights at {g.estimated_weight_stream_efficiency:.0%}"
                         f" of the bound at batch 1, after a {seconds(g.estimated_overhead_s)} fixed step overhead)")
    return lines


def render_fastmode(fm, m: Model, s: System, spec: dict | None = None, est=None, *,
                    reference_given: bool = False) -> list[str]:
    lines = []
    normal = "the reference batch (--reference-batch)" if reference_given else "the cost-optimal batch"
    if est is not None:
        e = est
        lines += [
            f"{m.name} on {e.chips} × {s.name}, estimate ({e.estimate}, TP{e.layout.tp} EP{e.layout.ep} PP{e.layout.pp}):"
            f" normal mode at {normal.replace('the cost', 'the estimated cost')} {e.reference_batch:,.0f} (step {seconds(e.reference_step_s)}"
            f"{_band((e.reference_range_80 or {}).get('step_s'), seconds)}, {usd(e.reference_usd_per_mtok)}/Mtok)",
        ]
        if e.batch is not None:
            lines.append(f"  batch {e.batch:,.0f} gives {e.speedup:.2f}× the speed for {e.price_multiplier:.2f}× the price"
                         " (the estimated curve T(B) inverted by bisection)")
        else:
            lines.append("  (no target given: --speedup X or --price-multiplier P)")
        lines += [
            f"  the most a batch cut can buy: {e.max_speedup:.2f}× (batch 1: an estimated {seconds(e.latency_floor_s)} step)",
            f"  the most a slow mode can save: {e.max_saving:.2f}× (the reference cost over the lowest estimated cost"
            " among batches that fit)",
            "  more chips per replica (estimated batch-1 speed-up): "
            + ", ".join(f"{c} chips → {x:.2f}×" for c, x in e.chips_lever),
        ]
        if spec:
            lines.append(_spec_line(spec, "  "))
        lines.append("  roofline bound beside it:")
    ind = "  " if est is not None else ""
    lines.append(f"{ind}{m.name} on {fm.chips} × {s.name}: normal mode at {normal} {fm.reference_batch:,.0f}"
                 f" (step {seconds(fm.reference_step_s)}, {usd(fm.reference_usd_per_mtok)}/Mtok)")
    if fm.batch is not None:
        lines.append(f"{ind}  batch {fm.batch:,.0f} gives {fm.speedup:.2f}× the speed for {fm.price_multiplier:.2f}× the price"
                     + (" (T(B) = max(B·c, W + B·k) inverted exactly)" if fm.expert_fetch == "all" else
                        " (the step reading the experts B tokens touch, inverted by bisection)"))
    elif est is None:
        lines.append("  (no target given: --speedup X or --price-multiplier P)")
    lines += [
        f"{ind}  the most a batch cut can buy: {fm.max_speedup:.2f}× (batch 1, against the {seconds(fm.latency_floor_s)}"
        " latency floor" + ("" if fm.expert_fetch == "all" or m.moe is None else
                             f": the dense weights and {m.moe.k} of {m.moe.n_experts} experts a layer, what one token reads;"
                             f" {fm.max_speedup_every_expert:.2f}× against the lecture's"
                             f" {seconds(fm.latency_floor_every_expert_s)}, every expert streamed")
        + "); more money buys nothing beyond it on these chips",
        f"{ind}  the most a slow mode can save: {fm.max_saving:.2f}× (the reference cost over the cost floor)",
        f"{ind}  the other lever, more chips per replica (bandwidth adds up): "
        + ", ".join(f"{c} chips → {x:.2f}×" for c, x in fm.chips_lever),
    ]
    roof_spec = (spec or {}).get("roofline") if est is not None else spec
    if roof_spec:
        lines.append(_spec_line(roof_spec, ind + "  "))
    return lines


def _spec_line(spec: dict, ind: str) -> str:
    return (f"{ind}speculative decoding, {spec['draft_tokens']} drafted at acceptance {spec['acceptance']:.2f}:"
            f" {spec['tokens_per_verify']:.2f} tokens per verify pass → {spec['speedup']:.2f}× the speed at"
            f" {spec['price_multiplier']:.2f}× the price per token (batch {spec['batch']:,.0f})")


def render_traffic(t, m: Model, s: System, roofline=None) -> list[str]:
    lines = [
        f"{m.name} on {s.name} ({t.estimate}): a step of {t.batch:,.0f} sequences departs every {seconds(t.step_s)}",
        f"  one replica ({t.chips_per_replica} chips) emits B/T = {t.tokens_per_s_per_replica:,.0f} tokens/s"
        f" ({t.tokens_per_s_per_chip:,.0f} per chip)",
        f"  {t.demand_tokens_per_s:,.0f} tokens/s needs {t.replicas:,} replicas = {t.chips:,} chips"
        f" ({t.share_of_replica_capacity:.0%} of their capacity), {usd(t.usd_per_day)} per day"
        + ("" if t.chips_range_80 is None else f"; 80 % band {t.chips_range_80[0]:,} – {t.chips_range_80[1]:,} chips"),
        f"  a request waits at most one step ({seconds(t.max_queue_wait_s)}, {seconds(t.mean_queue_wait_s)} on average)"
        f" and gets its token within 2·T = {seconds(t.max_latency_s)} (if no train is full)",
    ]
    if roofline is not None and roofline is not t:
        r = roofline
        lines.append(f"  roofline bound beside it: batch {r.batch:,.0f} every {seconds(r.step_s)}, {r.tokens_per_s_per_chip:,.0f}"
                     f" tokens/s per chip → {r.replicas:,} replicas = {r.chips:,} chips, {usd(r.usd_per_day)} per day"
                     f" ({t.chips / r.chips:.2g}× fewer chips than the estimate)")
    return lines


def render_prefill(pd, m: Model, s: System, est=None) -> list[str]:
    a = pd.decode.assumptions
    lines = [f"{m.name} on {a.chips} × {s.name}"]
    if est is not None:
        e = est
        lines += [
            f"  estimate ({e.estimate}, TP{e.layout.tp} EP{e.layout.ep} PP{e.layout.pp}):",
            f"    decode (S = 1, batch {e.decode_batch:,.0f}, L = {pd.decode.context:,.0f}): step {seconds(e.decode_step_s)},"
            f" {usd(e.decode_usd_per_mtok)}/Mtok",
            f"    prefill (S = {e.prompt_tokens:,.0f}, one prompt): {seconds(e.prefill_step_s)}, {usd(e.prefill_usd_per_mtok)}/Mtok"
            if e.prefill_prompts == 1 else
            f"    prefill (S = {e.prompt_tokens:,.0f}): one prompt {seconds(e.prefill_step_s)}; {e.prefill_prompts:,.0f} prompts,"
            f" one per attention-DP rank, {seconds(e.prefill_pass_s)}, {usd(e.prefill_usd_per_mtok)}/Mtok",
            f"    output/input cost ratio = {e.output_input_cost_ratio:.2f}× (price sheets charge ~5×: Anthropic $25/$5,"
            " GPT-5 $10/$1.25 = 8×)",
            f"    time to first token: {seconds(e.ttft_s)}{_band(e.ttft_range_80, seconds)} alone;"
            f" {seconds(e.ttft_at_load_s)} at load (wait for the running decode step, then a pass shared with it)",
            "  roofline bound beside it:",
        ]
    ind = "  " if est is not None else ""
    lines += [
        f"{ind}  decode (S = 1, batch {pd.decode.batch:,.0f}, L = {pd.decode.context:,.0f}): {pd.decode.bound} bound,"
        f" {usd(pd.decode_usd_per_mtok)}/Mtok",
        f"{ind}  prefill (S = {pd.prompt_tokens:,.0f}, one prompt): {pd.prefill.bound} bound, {usd(pd.prefill_usd_per_mtok)}/Mtok",
        f"{ind}  output/input cost ratio = {pd.output_input_cost_ratio:.2f}×"
        + (" (price sheets charge ~5×: Anthropic $25/$5, GPT-5 $10/$1.25 = 8×)" if est is None else ""),
        f"{ind}  time to first token: {seconds(pd.ttft_s)} alone; {seconds(pd.ttft_at_load_s)} at load"
        + (" (wait for the running decode step, then a pass shared with it)" if est is None else ""),
    ]
    return lines


# the charts `report --plots DIR` writes (at most these five names; the CLI checks each before the work)
REPORT_PLOT_FILES = ("latency_vs_batch.png", "cost_vs_batch.png", "cost_vs_context.png", "price_speed_frontier.png",
                     "prefill_vs_decode.png")


def write_report_plots(r: Report, folder) -> list:
    """The lecture's blackboard charts for a report, as PNG files in `folder`; returns their paths.
    Each draws the roofline bound and, with a calibrated profile, the estimate beside it (its 80 %
    band shaded where the estimate has one)."""
    from pathlib import Path

    from . import plots

    folder = Path(folder)
    m, s, n, dt = r.model, r.system, r.chips, r.dtypes
    title = f"{m.name} on {n} × {s.name}"
    eb = r.est_balance
    est_label = f"estimate ({r.estimate})"
    by_batch = serving.curve(m, s, over="batch", context=r.context, chips=n, dtypes=dt, efficiency=r.efficiency,
                             points=120)
    est_b = None
    if eb is not None:
        from .estimate import estimate_pass

        B = np.asarray(by_batch.batch, float)
        B = B[B <= eb.batch_to_fill_hbm]  # the estimate is drawn where its layout holds the batch
        est_b = estimate_pass(m, s, B, r.context, 1.0, layout=eb.layout, dtypes=dt, profile=r.profile)
    ttl = f"{title}, L = {r.context:,.0f}"
    if est_b is None:
        paths = [plots.latency_vs_batch(by_batch, title=ttl, balance_batch=r.balance_batch, drain_s=r.hbm_drain_s,
                                        path=folder / "latency_vs_batch.png")]
    else:
        fig = plots.latency_vs_batch(by_batch, title=ttl, balance_batch=r.balance_batch, drain_s=r.hbm_drain_s)
        ax = fig.axes[0]
        plots.label_as_bound(ax)
        band = (est_b.range_80 or {}).get("step_s")
        plots.overlay_estimate(ax, est_b.op.batch, np.asarray(est_b.step_s) * 1e3, label=f"{est_label} step",
                               band=None if band is None else [np.asarray(v) * 1e3 for v in band],
                               fill=eb.batch_to_fill_hbm)
        ax.legend(fontsize=6, loc="lower right")
        paths = [plots._save(fig, folder / "latency_vs_batch.png")]
    if by_batch.usd_per_mtok is not None:
        estimate = None
        if est_b is not None and est_b.usd_per_mtok is not None:
            estimate = {"label": r.estimate, "batch": est_b.op.batch, "usd_per_mtok": est_b.usd_per_mtok,
                        "band": (est_b.range_80 or {}).get("usd_per_mtok"), "fill": eb.batch_to_fill_hbm,
                        "knee": eb.knee_batch}
        paths.append(plots.cost_vs_batch(by_batch, title=ttl, floor_usd_per_mtok=r.cost_floor_usd_per_mtok,
                                         balance_batch=r.balance_batch, path=folder / "cost_vs_batch.png",
                                         estimate=estimate))
    ref = r.fast.reference_batch if r.fast is not None else r.balance_batch
    by_ctx = serving.curve(m, s, over="context", batch=ref, chips=n, dtypes=dt, efficiency=r.efficiency, points=120)
    ttl = f"{title}, B = {ref:,.0f}"
    if eb is None:
        paths.append(plots.cost_vs_context(by_ctx, title=ttl, crossover=r.balance_context,
                                           path=folder / "cost_vs_context.png"))
    else:
        from .estimate import estimate_pass

        fig = plots.cost_vs_context(by_ctx, title=ttl, crossover=r.balance_context)
        ax = fig.axes[0]
        plots.label_as_bound(ax)
        e = estimate_pass(m, s, ref, np.asarray(by_ctx.context, float), 1.0, layout=eb.layout, dtypes=dt,
                          profile=r.profile)
        a = by_ctx.assumptions
        # the same units as the bound's lines: $ (or chip-seconds) per million tokens at this batch
        scale = (e.op.billed_chips * a.usd_per_chip_hour / 3600.0) if a.usd_per_chip_hour is not None else e.op.billed_chips
        per = 1e6 / ref * scale
        band = (e.range_80 or {}).get("step_s")
        plots.overlay_estimate(ax, e.op.context, np.asarray(e.step_s) * per, label=f"{est_label} (same batch)",
                               band=None if band is None else [np.asarray(v) * per for v in band])
        if eb.balance_context:
            ax.axvline(eb.balance_context, ls="-.", color=plots.ESTIMATE_COLOR, lw=1,
                       label=f"estimate: attention = GEMMs at L = {eb.balance_context:,.0f} (B = {eb.balance_context_batch:,.0f})")
        ax.legend(fontsize=6, loc="best")
        paths.append(plots._save(fig, folder / "cost_vs_context.png"))
    if r.fast is not None:
        paths.append(plots.price_speed_frontier(r.fast, title=f"{title}, L = {r.context:,.0f}",
                                                path=folder / "price_speed_frontier.png", estimate=r.est_fast))
    if r.prefill is not None:
        paths.append(plots.prefill_vs_decode_cost(r.prefill, title=f"{title}, prompt {r.prefill.prompt_tokens:,.0f}",
                                                  path=folder / "prefill_vs_decode.png", estimate=r.est_prefill))
    return paths


# --------------------------------------------------------------------------------------------
# Layout and planner records
# --------------------------------------------------------------------------------------------


def layout_record(st, est) -> dict[str, Any]:
    """`tokenmath layout --json`: the layout's memory per chip and placement (layout.layout_step),
    the estimate's figures under their plain names (estimate_record), and the roofline bound of
    the same pass (`roofline`; its terms and link times at the top level, as before)."""
    from .estimate import estimate_record

    mem, net, lay = st.memory, st.network, st.layout
    bp, bd = est.op.bound_parts, est.roofline
    er = estimate_record(est)
    er.pop("layout")
    rec = {
        "layout": {"tp": lay.tp, "ep": lay.ep, "pp": lay.pp, "dp": lay.dp, "microbatches": lay.m,
                   "stage_chips": lay.stage_chips, "attention_dp": lay.attention_dp},
        "chips": lay.chips, "replica_chips": st.chips, "billed_chips_per_replica": st.billed_chips,
        "idle_chips_per_replica": st.placement.idle_chips, "domains_per_replica": st.placement.domains,
        "weights_bytes_per_chip": mem.weights_bytes_per_chip, "expert_bytes_per_chip": mem.expert_bytes_per_chip,
        "dense_bytes_per_chip": mem.dense_bytes_per_chip, "kv_bytes_per_chip": mem.kv_bytes_per_chip,
        "activation_bytes_per_chip": mem.activation_bytes_per_chip, "total_bytes_per_chip": mem.total_bytes_per_chip,
        "hbm_bytes_per_chip": mem.hbm_bytes_per_chip, "fits": mem.fits,
        "serving_bytes_per_chip": mem.serving_bytes_per_chip, "serves": mem.serves,
        # the roofline bound's terms (per chip over the step) and link times at full bandwidth
        "compute_s": bd.compute_s, "weights_s": bd.weights_s, "kv_s": bd.kv_s, "activations_s": bd.activations_s,
        "network_s": bp["network_s"] + bp["hops_s"], "all_to_all_s": bp["ep_comm_s"], "tp_allreduce_s": bp["tp_comm_s"],
        "pp_transfer_s": bp["pp_comm_s"], "pipeline_hop_latency_s": bp["hops_s"],
        "scale_out_fraction": net.scale_out_fraction,
        "stage_boundaries_across_domains": net.stage_boundaries_across_domains,
        "pipeline_idle_fraction": st.pipeline_idle_fraction, "bound": bd.bound,
    } | er
    rec["chips"] = lay.chips
    rec["roofline"] |= {"layout": lay.describe(), "overlap": st.overlap, "expert_fetch": est.op.expert_fetch}
    rec["assumptions"] = {"overlap": f"{st.overlap}: the bound {'takes the max of' if st.overlap == 'full' else 'adds'} "
                                     "network and compute/HBM; the estimate adds each collective",
                          "hop_latency_s": st.hop_latency_s, "expert_fetch": est.op.expert_fetch,
                          "activation_buffers": "estimate: 4 hidden vectors (+k for MoE) per token in flight",
                          "routing": "the bound: uniform over experts; the estimate: the busiest EP rank's expected load"}
    return jsonable(rec)


def render_estimate(est) -> list[str]:
    """The estimate's lines: each operation's time, the step with its 80 % band, MFU and MBU."""
    op = est.op
    names = {"dense_gemm_s": "dense GEMMs", "expert_gemm_s": "expert GEMMs", "attention_s": "attention",
             "tp_comm_s": "TP all-reduce", "ep_comm_s": "EP dispatch+combine", "pp_comm_s": "PP send/recv",
             "overhead_s": "overhead", "overlap_s": "hidden by overlap"}
    shown = [(k, v) for k, v in op.parts.items() if (np.min(v) < 0 if k == "overlap_s" else np.max(v) > 0)]
    parts = ", ".join(f"{names[k]} −{seconds(-float(np.min(v)))}" if k == "overlap_s" else
                      f"{names[k]} {seconds(float(np.max(v)))}" for k, v in shown)
    band = ""
    if est.range_80:
        lo, hi = est.range_80["step_s"]
        band = f" (80 % band {seconds(float(np.max(lo)))} – {seconds(float(np.max(hi)))})"
    cost = "" if est.usd_per_mtok is None else f", {usd(float(np.max(est.usd_per_mtok)))}/Mtok"
    return [f"  estimate ({est.label}): step {seconds(float(np.max(est.step_s)))}{band}; "
            f"{float(np.max(est.tokens_per_s_per_chip)):,.0f} tokens/s per billed chip, "
            f"{float(np.max(est.tokens_per_s_per_user)):,.1f} per user{cost}; MFU {float(np.max(est.mfu)):.1%},"
            f" MBU {float(np.max(est.mbu)):.1%}",
            f"    per operation: {parts}"]


def render_bound(est) -> str:
    """The one roofline-bound line of a pass (the same layout, chips and expert fetch as its estimate)."""
    bd = est.roofline
    cost = "" if bd.usd_per_mtok is None else f", {usd(float(bd.usd_per_mtok))}/Mtok"
    return (f"  roofline bound: step {seconds(bd.step_s)} ({bd.bound} bound: compute {seconds(bd.compute_s)}, weights"
            f" {seconds(bd.weights_s)}, KV {seconds(bd.kv_s)}, network {seconds(bd.network_s)}); {bd.tokens_per_s_per_chip:,.0f}"
            f" tokens/s per billed chip{cost}; MFU {bd.mfu:.1%}, MBU {bd.mbu:.1%}")


def render_layout(st, est, m: Model, s: System) -> list[str]:
    mem, lay = st.memory, st.layout
    bp = est.op.bound_parts
    fit = ("fits" if mem.fits else "does NOT fit") + (
        f" (a serving engine fills {si(max(float(np.min(mem.serving_bytes_per_chip)), 0.0), 'B')} of it: "
        + ("it serves)" if mem.serves else "too little to serve)") if mem.fits else "")
    lines = [
        f"{m.name} on {s.name}: {lay.describe()}, {st.chips} chips per replica"
        + (f" in {st.placement.domains} domains" if st.placement.domains > 1 else "")
        + (f", {st.placement.idle_chips:g} more idle in its domains" if st.placement.idle_chips else ""),
        f"  per chip: weights {si(mem.weights_bytes_per_chip, 'B')} (experts {si(mem.expert_bytes_per_chip, 'B')},"
        f" rest {si(mem.dense_bytes_per_chip, 'B')}) + KV {si(mem.kv_bytes_per_chip, 'B')} + activations"
        f" {si(mem.activation_bytes_per_chip, 'B')} = {si(mem.total_bytes_per_chip, 'B')} of"
        f" {si(mem.hbm_bytes_per_chip, 'B')}: {fit}",
        f"  links at full bandwidth, per step: all-to-all {seconds(bp['ep_comm_s'])}, TP all-reduce"
        f" {seconds(bp['tp_comm_s'])}, PP transfers {seconds(bp['pp_comm_s'])}, hops {seconds(bp['hops_s'])}",
    ]
    if not est.is_roofline:
        lines += render_estimate(est)
    lines.append(render_bound(est) + ("" if est.is_roofline else
                                      f" — the estimate is {float(est.step_s) / float(est.roofline.step_s):.2f}× it"))
    net = st.network
    if net.scale_out_fraction:
        lines.append(f"  {net.scale_out_fraction:.0%} of the all-to-all leaves the {s.scaleup_chips}-chip domain over"
                     " the scale-out network")
    if st.pipeline_idle_fraction > 0.005:
        lines.append(f"  the pipeline idles {st.pipeline_idle_fraction:.0%} of the time: give it at least PP microbatches")
    return lines


def render_expert_parallel(w) -> list[str]:
    """The wide-EP lines of `tokenmath layout` (wide_ep.ExpertParallel): the EP group across
    domains, the copies each token sends, node-limited routing, the named dispatch/combine term."""
    if w is None:
        return []
    red = f" ({w.redundant_experts} redundant)" if w.redundant_experts else ""
    mode = {"low_latency": "low-latency kernels (decode)", "normal": "normal kernels (prefill)",
            "allgather": "all-gather + reduce-scatter", "alltoall": "all-to-all", "none": "none: TP ≥ EP, every rank holds every token"}
    return [
        f"  expert parallelism: EP {w.ep} over {w.domains} × {w.chips_per_domain}-chip domains, attention DP {w.attention_dp}"
        f" × TP {w.attention_tp}; {w.expert_slots} expert slots{red} = {w.experts_per_chip:g} per chip;"
        f" {w.scale_out_share:.0%} of each token's experts sit outside its domain",
        f"    per token and MoE layer: low-latency kernels send {w.low_latency_copies_in_domain:.2f} copies in the domain +"
        f" {w.low_latency_copies_across:.2f} across; normal kernels {w.in_domain_ranks_per_token:.2f} in the domain +"
        f" {w.remote_domains_per_token:.2f} to remote domains; dispatch {si(w.dispatch_bytes_per_token, 'B')},"
        f" combine {si(w.combine_bytes_per_token, 'B')} a copy",
        f"    node-limited routing: {w.node_limit}",
        f"    dispatch + combine (estimate, {mode.get(w.mode, w.mode)}): {seconds(w.ep_comm_s)} a step"
        f" ({seconds(w.ep_comm_s_per_layer)} per MoE layer × {w.moe_layers})"
        + (f", {seconds(-w.overlap_s)} of it hidden under the other micro-batch" if w.overlap_s < 0 else ""),
        f"    HBM left for KV (in what a serving engine fills): {si(w.kv_room_bytes_per_chip, 'B')} per chip = {w.kv_tokens_per_chip:,.0f} tokens of KV",
    ]


PLAN_KEYS = ("system", "chips", "tp", "ep", "pp", "dp", "batch", "tokens_per_s_per_chip", "tokens_per_s_per_user",
             "usd_per_mtok", "billed_chips", "weight_dtype", "kv_dtype", "ttft_s", "step_s", "total_bytes_per_chip",
             "bound", "redundant_experts")


def plan_point_record(p) -> dict[str, Any] | None:
    if p is None:
        return None
    rec = {k: getattr(p, k) for k in PLAN_KEYS}
    rec |= {"watts": p.watts, "joules_per_token": p.joules_per_token, "tokens_per_s_per_mw": p.tokens_per_s_per_mw,
            "energy_level": None if p.watts is None else "node"}
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
        "roofline": p.roofline,
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
    """The energy keys every serving answer carries (None when the chip's power is unknown): `watts`,
    `joules_per_token` and `tokens_per_s_per_mw` at `energy_level` (node unless asked), and each level's
    watts and J/token by name (board, node at the wall, facility × PUE)."""
    keys = ("board_watts_per_chip", "board_watts", "node_watts", "node_watts_per_chip", "facility_watts",
            "board_joules_per_token", "node_joules_per_token", "facility_joules_per_token")
    if e is None:
        return {"watts": None, "joules_per_token": None, "tokens_per_s_per_mw": None, "energy_level": None} | dict.fromkeys(keys)
    return {"watts": e.watts, "joules_per_token": e.joules_per_token, "tokens_per_s_per_mw": e.tokens_per_s_per_mw,
            "energy_level": e.level} | {k: getattr(e, k) for k in keys} | {
            "energy": {"level": e.level, "chip_w": e.chip_w, "tokens_per_chip": e.tokens_per_chip, "activity": e.activity,
                       "host_watts": e.host_watts, "pue": e.pue, "parts_w": e.parts_w, "u_compute": e.u_compute,
                       "u_memory": e.u_memory, "power_cap_w": e.power_cap_w, "clock_ratio": e.clock_ratio,
                       "slowdown": e.slowdown, "tokens_per_s_per_mw_provisioned": e.tokens_per_s_per_mw_provisioned,
                       "assumptions": list(e.assumptions)}}


ENERGY_LEVEL_WORDS = {"board": "on the boards", "node": "at the wall (node: boards + host)", "facility": "at the facility (× PUE)"}


def energy_line(e) -> str:
    if e is None:
        return "energy: no power figures for this chip (energy.toml, or the catalog's power_w)"
    return (f"energy: {sig(e.watts / 1e3, 3)} kW {ENERGY_LEVEL_WORDS[e.level]} ({e.chip_w:,.0f} W per board at "
            f"{sig(e.tokens_per_chip, 3)} tokens per chip), {sig(e.joules_per_token, 3)} J/token, {sig(e.tokens_per_s_per_mw, 4)} "
            f"tokens/s per MW ({e.level})")


POOL_KEYS = ("role", "system", "replicas", "chips_per_replica", "tp", "ep", "pp", "dp", "max_batch")


def _fleet_option_record(o) -> dict[str, Any]:
    sim = o.simulated
    ci = lambda x: list(x)  # noqa: E731  [low, high] of the 95 % interval
    return {
        "mode": o.mode,
        "pools": [{k: getattr(p, k) for k in POOL_KEYS} | {"weight_dtype": p.weight_dtype, "kv_dtype": p.kv_dtype,
                                                         "billed_chips_per_replica": p.billed_chips_per_replica,
                                                         "capacity_requests_per_s": p.capacity_requests_per_s,
                                                         "usd_per_hour": p.usd_per_hour,
                                                         "redundant_experts": getattr(p, "redundant_experts", 0)}
                  | ({"mtp_draft_tokens": p.mtp_draft_tokens, "mtp_tokens_per_step": p.mtp_tokens_per_step,
                      "verify_step_s": p.verify_step_s} if getattr(p, "mtp_draft_tokens", 0) else {})
                  for p in o.pools],
        "total_chips": o.total_chips, "usd_per_hour": o.usd_per_hour,
        "usd_per_mtok_output": o.usd_per_mtok_output, "usd_per_mtok_all_tokens": o.usd_per_mtok_all_tokens,
        "watts": o.watts, "joules_per_token": o.joules_per_token, "energy_level": None if o.watts is None else "facility",
        "facility_watts": o.watts, "facility_joules_per_output_token": o.joules_per_token,
        "facility_joules_per_request": o.joules_per_request,
        "facility_mwh_per_day": None if o.watts is None else o.watts * 24.0 / 1e6,
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


def fleet_record(f, commands=None, export_layouts=None) -> dict[str, Any]:
    rec = {
        "model": f.model, "request_rate": f.request_rate, "input_tokens": f.input_tokens,
        "output_tokens": f.output_tokens, "cached_input_tokens": f.cached_input_tokens,
        "slo": {"ttft_p99_s": f.slo.ttft_p99_s, "tpot_p99_s": f.slo.tpot_p99_s, "ttft_p50_s": f.slo.ttft_p50_s,
                "tpot_p50_s": f.slo.tpot_p50_s},
        "estimate": f.estimate, "best": None if f.best is None else _fleet_option_record(f.best),
        "candidates": [_fleet_option_record(o) for o in f.candidates], "frontier": f.frontier,
        "mode_reason": f.mode_reason, "flop_lower_bound_chips": f.flop_lower_bound_chips,
        "screen_error": f.screen_error, "weight_dtypes": f.weight_dtypes, "search": f.search,
        "steady_state": _steady_state_rule(), "wide_ep_reason": getattr(f, "wide_ep_reason", ""),
    }
    if f.workload:
        rec["workload"] = f.workload
    if f.prefix_cache is not None:
        rec["prefix_cache"] = f.prefix_cache
    if getattr(f, "features", None):
        rec["features"] = f.features
    if export_layouts is not None:  # {system: layouts the export engine can express, searched}
        rec["export_layouts"] = export_layouts
    if commands is not None:  # export.PoolLaunch records: every line in `export`, each pool with its notes
        rec["export"] = [ln for c in commands for ln in (f"# {c.role} pool: {c.replicas} × {c.system}, {c.checkpoint}",
                                                           *c.lines)]
        rec["export_pools"] = [{"role": c.role, "system": c.system, "replicas": c.replicas, "engine": c.engine,
                                "checkpoint": c.checkpoint, "weight_dtype": c.weight_dtype,
                                "quantization": c.quantization, "commands": list(c.lines), "notes": list(c.notes)}
                               for c in commands]
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
            f" {sig(s.goodput_requests_per_s, 4)} requests/s; {_sim_requests(s)}; {how}")


def _sim_requests(s) -> str:
    """How many requests each pool's replica simulated (one pool: the fleet's), warm-up discarded."""
    if len(s.runs) <= 1:
        return f"{s.requests:,} requests per replica, the first {s.warmup_requests_discarded:,} discarded as warm-up"
    return "requests per replica " + ", ".join(f"{r.role} {r.requests:,} (the first {r.warmup:,} discarded as warm-up)"
                                               for r in s.runs)


def render_fleet(f, commands=None, export_layouts=None, export_engine=None) -> list[str]:
    slo = ", ".join(f"{k.replace('_s', '').replace('_', ' ')} ≤ {seconds(v)}" for k, v in
                    (("ttft_p99_s", f.slo.ttft_p99_s), ("tpot_p99_s", f.slo.tpot_p99_s),
                     ("ttft_p50_s", f.slo.ttft_p50_s), ("tpot_p50_s", f.slo.tpot_p50_s)) if v is not None) or "none"
    lines = [f"{f.model}: {sig(f.request_rate, 4)} requests/s, {f.input_tokens:,.0f} in / {f.output_tokens:,.0f} out"
             + (f" ({f.cached_input_tokens:,.0f} from the prefix cache)" if f.cached_input_tokens else "")
             + f"; SLOs: {slo}"]
    if f.workload:
        w = f.workload
        lines.append(f"  trace: {w.get('requests', 0):,} requests over {seconds(w.get('duration_s', 0.0))}"
                     + ("; replayed end to end to fill each run, so the simulation repeats it: the intervals"
                        " say how steady the replay is, not how well these requests stand for your traffic"
                        if w.get("replayed_to_fill_runs") else ""))
    lines.append(f"  estimate: {f.estimate}; {f.mode_reason}")
    if getattr(f, "wide_ep_reason", ""):
        lines.append(f"  {f.wide_ep_reason}")
    wd = f.weight_dtypes
    if wd:
        tried = "; ".join(f"{k} {', '.join(v)}" for k, v in wd["tried"].items())
        lines.append(f"  weights tried: {tried} ("
                     + ("default: the checkpoint's, FP8, and FP4 where the chip has it; --weight-dtypes to choose)"
                        if wd["asked"] == "deployable" else
                        "the deployable ones --export can launch: a checkpoint or load-time quantisation; "
                        "--weight-dtypes to choose)" if isinstance(wd["asked"], dict) else "--weight-dtypes)"))
    if export_layouts is not None:
        lines.append(f"  layouts tried: the ones {export_engine}'s flags can express ("
                     + "; ".join(f"{n} on {k}" for k, n in export_layouts.items()) + ")")
    b = f.best
    if b is None:
        lines.append("  no candidate met its SLOs in simulation; the closest are below")
    else:
        price = "" if b.usd_per_hour is None else (f", ${b.usd_per_hour:,.2f}/h, ${sig(b.usd_per_mtok_output, 3)} per million"
                                                   f" output tokens (${sig(b.usd_per_mtok_all_tokens, 3)} per million"
                                                   f" tokens in + out)")
        if b.watts is not None:
            price += (f", {sig(b.watts / 1e3, 4)} kW at the facility (× PUE), {sig(b.joules_per_token, 3)} J per output token,"
                      f" {sig(b.joules_per_request, 4)} J per request, {sig(b.watts * 24 / 1e6, 4)} MWh per day")
        verified = "" if b.simulated is not None else "; not verified in simulation (--verify 0)"
        lines.append(f"  best: {b.mode}, {b.total_chips:,.0f} chips{price}"
                     f" (FLOP lower bound {f.flop_lower_bound_chips:,.1f} chips){verified}")
        for p in b.pools:
            red = getattr(p, "redundant_experts", 0)
            lines.append(f"    {p.role:<7} {p.replicas:>4} × {p.system:<12} TP{p.tp} EP{p.ep} PP{p.pp}"
                         + (f" (+{red} redundant experts)" if red else "") + f" = {p.chips_per_replica}"
                         f" chips each, batch ≤ {p.max_batch:,}, weights {p.weight_dtype}, KV {p.kv_dtype}"
                         + (f", MTP {p.mtp_draft_tokens} draft(s): {p.mtp_tokens_per_step:.3g} tokens per"
                            f" {seconds(p.verify_step_s)} step" if getattr(p, "mtp_draft_tokens", 0) else ""))
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
        cost = "" if pc["usd_per_hour"] is None else f", ${sig(pc['usd_per_hour'], 4)}/h"
        lines.append(f"  prefix cache: {pc['prefixes']:,} × {pc['prefix_tokens']:,.0f}-token prefix = {si(pc['kv_bytes'], 'B')},"
                     f" reused every {seconds(pc['reuse_interval_s'])}: kept in {pc['tier']}{cost} ({pc['note']})")
        ct = pc.get("cache_tier")
        if ct is not None:  # --prefix-cache-tier: the cache's capacity limits the hit rate; hits are fetched
            fetch = "" if not ct["fetch_s_per_prompt_chip"] else (
                f"; a hit is read back at {si(ct['tier_bytes_per_s_per_chip'], 'B/s')} per chip before its prompt's pass")
            lines.append(f"  prefix cache in {ct['tier']}: {si(ct['capacity_bytes'], 'B')} holds"
                         f" {sig(ct['prefixes_held'], 4)} of {ct['prefixes']:,} prefixes: hit rate {ct['hit_rate']:.3g}"
                         f" of {ct['hit_rate_unlimited']:.3g}{fetch} ({ct['note']})")
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
        for c in commands:
            lines.append(f"    # {c.role} pool: {c.replicas} × {c.system}, checkpoint {c.checkpoint}")
            lines += [f"    {ln}" for ln in _one_per_pool(list(c.lines))]
            lines += [f"      note: {n}" for n in c.notes]
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
        f"  {best_word}: {b.system}, TP{b.tp} EP{b.ep} PP{b.pp}"
        + (f" (+{b.redundant_experts} redundant experts)" if getattr(b, "redundant_experts", 0) else "")
        + f" on {b.chips} chips ({b.billed_chips:g} billed), batch"
        f" {b.batch:,.0f}, weights {b.weight_dtype}: {b.tokens_per_s_per_user:,.1f} tokens/s per user,"
        f" {b.tokens_per_s_per_chip:,.0f} per chip, {usd(b.usd_per_mtok)}/Mtok, TTFT {seconds(b.ttft_s)}"
        " (one prompt on an idle replica: under load it also waits for steps; `fleet` simulates that)"
        + ("" if b.joules_per_token is None else
           f"; {sig(b.joules_per_token, 3)} J/token, {sig(b.tokens_per_s_per_mw, 4)} tokens/s per MW")
    )
    if p.range_80:
        t = p.range_80["tokens_per_s_per_chip"]
        lines.append(f"  80 % band: {t[0]:,.0f} – {t[1]:,.0f} tokens/s per chip"
                     + (f", {usd(p.range_80['usd_per_mtok'][0])} – {usd(p.range_80['usd_per_mtok'][1])}/Mtok"
                        if "usd_per_mtok" in p.range_80 else ""))
    if p.roofline and not p.estimate.startswith("roofline"):
        r = p.roofline
        lines.append(f"  roofline bound of that point (same layout and batch, peak rates): {r['tokens_per_s_per_chip']:,.0f}"
                     f" tokens/s per chip, {r['tokens_per_s_per_user']:,.1f} per user"
                     + ("" if r["usd_per_mtok"] is None else f", {usd(r['usd_per_mtok'])}/Mtok")
                     + f", TTFT {seconds(r['ttft_s'])}; {r['bound']} bound")
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
    who = f"{sheet.provider} {sheet.model} ({sheet.name}, {sheet.as_of})" if sheet.provider else "prices given as flags"
    lines = [f"{who}: ${sheet.input_usd_per_mtok:g} in / ${sheet.output_usd_per_mtok:g} out per Mtok; assumed behind it:"
             f" {inf.system}, N_active {count_words(inf.active_params, 3)} ({inf.active_params_source or 'an assumption'})"]
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
    rows = []
    for i, x in enumerate(r.rows):
        band = r.range_80(i)
        rows.append({"id": x.id, "predicted": x.predicted, "measured": x.measured, "error": x.error, "metric": x.metric,
                     "system": x.system, "source": x.source, "model": x.model, "batch_used": x.batch_used,
                     "vendor": x.vendor, "engine": x.engine, "model_class": x.model_class, "note": x.note or None,
                     "sensitivity": x.sensitivity, "prefill_share": x.prefill_share,
                     "outside_fitted_range": list(x.outside_fitted_range), "range_80": band,
                     "in_band_80": None if band is None else bool(band[0] <= x.measured <= band[1])})
    return jsonable({
        "estimate": r.label, "efficiency": r.label,
        "rows": rows,
        "n": len(r.rows), "median_abs_error": r.median_abs_error, "p90_abs_error": r.p90_abs_error,
        "by_metric": r.by_metric, "by_system": r.by_system, "by_source": r.by_source, "by_vendor": r.by_vendor,
        "by_engine": r.by_engine, "by_model_class": r.by_model_class, "class_table": r.class_table,
        "band_80_coverage": r.band_80_coverage or None,
        "beyond_estimate": [{"id": x.id, "note": x.note} for x in r.beyond],
        "failures": r.failures,
        "preset": None if preset is None else {k: preset.get(k) for k in (
            "fit_date", "n_cases", "generic", "engines", "vendors", "shrinkage", "in_sample", "cross_validated",
            "leave_one_vendor_out", "bands", "cv_band_80_coverage", "systems")},
    })


def _pct(x, digits: int = 1) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:.{digits}f} %"


def _class_table_lines(table: dict, coverage: bool) -> list[str]:
    """validate's class table: model class × engine and model class × vendor, median |error| (cases)
    and, with bands, the share inside the 80 % band."""
    lines = []
    for dim, t in table.items():
        keys = sorted({k for cells in t.values() for k in cells})
        lines.append(f"  model class × {dim}: median |error| (cases){' share inside the 80 % band' if coverage else ''}")
        lines.append("    " + f"{'':<6}" + "".join(f"{k:>17}" for k in keys))
        for mc, cells in t.items():
            row = ""
            for k in keys:
                c = cells.get(k)
                if c is None:
                    row += f"{'·':>17}"
                    continue
                cov = f" {c['band_80_coverage']:.0%}" if coverage and "band_80_coverage" in c else ""
                row += f"{format(c['median_abs_error'], '.0%') + ' (' + str(c['n']) + ')' + cov:>17}"
            lines.append(f"    {mc:<6}{row}")
    return lines


def band_coverage_lines(cov: dict, label: str) -> list[str]:
    if not cov:
        return []
    lines = [f"  80 % band holds the measurement: {cov['share']:.0%} of {cov['n']} cases ({label})"]
    for dim in ("model_class", "engine", "vendor", "range", "metric"):
        by = cov.get(f"by_{dim}") or {}
        if by:
            lines.append(f"    by {dim.replace('_', ' ')}: " + ", ".join(f"{k} {v['share']:.0%} ({v['n']})" for k, v in by.items()))
    return lines


def render_validation(r, preset: dict | None) -> list[str]:
    head = f"{len(r.rows)} cases, {r.label}"
    uf = (preset or {}).get("user_fit")
    if uf:  # a user's preset: its own fit on its cases, on top of the shipped one
        cv = uf.get("cross_validated") or {}
        head += (f" (your fit of {', '.join(uf.get('params', []))} on {uf.get('n_cases', '?')} cases, {uf.get('fit_date', '?')},"
                 f" over the shipped preset of {preset.get('fit_date', '?')}"
                 + (f"; leave-one-out median |error| {cv['median_abs_error']:.0%}" if "median_abs_error" in cv else "")
                 + ")")
    elif preset and preset.get("cross_validated"):
        cv = preset["cross_validated"]
        head += (f" (fitted {preset['fit_date']} on {preset['n_cases']} cases; leave-one-source-out median |error|"
                 f" {cv['median_abs_error']:.0%}, p90 {cv['p90_abs_error']:.0%})")
    lines = [head, f"  median |error| {r.median_abs_error:.1%}, p90 {r.p90_abs_error:.1%}   (error = predicted/measured − 1)"]
    for title, group in (("metric", r.by_metric), ("vendor", r.by_vendor), ("engine", r.by_engine),
                         ("model class", r.by_model_class), ("system", r.by_system), ("source", r.by_source)):
        lines.append(f"  by {title}:")
        lines += [f"    {k:<42} n={v['n']:<3} median {v['median_abs_error']:6.1%}  p90 {v['p90_abs_error']:6.1%}"
                  for k, v in group.items()]
    if r.class_table:
        lines += _class_table_lines(r.class_table, bool(r.band_80_coverage))
    lines += band_coverage_lines(r.band_80_coverage, "these cases; the bands come from the preset's cross-validated"
                                                     " residuals, so on cases it was fitted to this is not a test")
    cvc = (preset or {}).get("cv_band_80_coverage")
    if cvc:
        by_mc = ", ".join(f"{k} {v['share']:.0%} ({v['n']})" for k, v in (cvc.get("by_model_class") or {}).items())
        lines.append(f"  on sources never fitted (the preset's leave-one-source-out): {cvc['share']:.0%} of {cvc['n']}"
                     " (target 70–90 %)" + (f"; by model class: {by_mc}" if by_mc else ""))
    lines.append("  worst cases:")
    for x in sorted(r.rows, key=lambda x: -abs(x.error))[:8]:
        flag = f"  [outside fit: {'; '.join(x.outside_fitted_range)}]" if x.outside_fitted_range else ""
        lines.append(f"    {x.id:<52} predicted {x.predicted:10.4g}  measured {x.measured:10.4g}  {x.error:+.0%}{flag}")
    for x in r.beyond:
        lines.append(f"  {x.id}: {x.note}")
    for k, v in r.failures.items():
        lines.append(f"  could not predict {k}: {v}")
    return lines


def _band_rule_text(b: dict) -> str:
    """How a preset's band table gives a query its band (profiles.band_for), in words."""
    if b.get("rule") == "cell":
        cells = b.get("cells") or {}
        each = "; ".join(f"{lv.replace(',', ' × ').replace('_', ' ')} " + ", ".join(
            f"{k} ×{math.exp(-q[1]):.2f} … ×{math.exp(-q[0]):.2f} (n {q[2]})" for k, q in c.items())
            for lv, c in cells.items() if c)
        return (f"a query's: its cell's ({each or 'none'}; each the prediction interval for the next source of"
                f" ≥ {b.get('min_n', '?')} residuals from ≥ {b.get('min_sources', '?')} sources), else the pooled band")
    rule = {"widest": "the union", "mean": "the mean"}.get(b.get("rule"), "the pooled band")
    return f"a query's: {rule} of its classes' bands with ≥ {b.get('min_n', '?')} residuals"


def _factors(f: dict) -> str:
    w = f.get("own_weight") or {}
    lam = f"λ {_lam(f['lambda'])}, " if "lambda" in f else ""
    ow = (f" ({lam}own-data weight {w.get('overhead', 0):.2f} / {w.get('compute', 0):.2f} / {w.get('memory', 0):.2f})"
          if w else "")
    return (f"overhead {f.get('overhead_add_s', 0) * 1e3:+.2f} ms, compute ×{f.get('compute_factor', f.get('compute_scale', 1)):.3g},"
            f" memory ×{f.get('memory_factor', f.get('memory_scale', 1)):.3g}{ow}")


def _lam(x) -> str:
    return "∞ (factors off)" if x in ("inf", None) or (isinstance(x, float) and not math.isfinite(x)) else f"{x:g}"


def _num(k: str):
    try:
        return float(k)
    except ValueError:
        return k


def render_calibration(rec: dict) -> list[str]:
    g = rec["generic"]
    lines = [f"fitted on {rec['n_cases']} cases ({', '.join(rec['systems'])}), {rec['fit_date']}:",
             "  generic (" + f"{g.get('n_cases', 0)} cases): " + ", ".join(
                 f"{k} = {v:.4g}" for k, v in g.items() if isinstance(v, float))]
    eff = {k: v for k, v in (rec.get("source_effects_s") or {}).items() if abs(v) >= 1e-4}
    if rec.get("source_effects_s") is not None:
        lines.append("  source effects (each source's own per-step cost beside the generic profile's, its overhead"
                     " plus the effect kept >= 0; not shipped: a held-out source or a user's deployment gets none): "
                     + (", ".join(f"{k} {'+' if v > 0 else '−'}{seconds(abs(v))}"
                                  for k, v in sorted(eff.items(), key=lambda kv: -kv[1]))
                        or "none of 0.1 ms or more"))
    if int(rec.get("preset_format", 1)) >= 2:
        sh = rec.get("shrinkage", {})
        lines.append("  shrinkage: a vendor's factors multiply the generic profile, an engine × vendor's its vendor's;"
                     " each is pulled toward 1 by a penalty of λ pseudo-sources (every source's cases weigh 1),"
                     " λ chosen by leave-one-source-out inside the fit (∞: the level's factors did not help held-out"
                     " sources, so none are kept):")
        from .calibrate import OWN_LAMBDA_MIN_SOURCES as own

        for level, what in (("vendor", "vendor × chip generation"), ("engine", "engine × vendor × generation")):
            s = sh.get(level) or {}
            cost = s.get("cv_cost") or {}
            grid = [g for g in s.get("grid", []) if g != "inf"]
            edge = " — the smallest tried: the held-out sources want less shrinkage still" if (
                grid and s.get("lambda") == min(grid)) else ""
            lines.append(f"    {what} level: λ = {_lam(s.get('lambda'))}{edge}, for groups of fewer than {own} sources"
                         f" (a group of {own} or more chooses its own on its sources: λ per group below)"
                         + (" (held-out cost by λ: " + ", ".join(f"{_lam(_num(k))} {v:.3g}" for k, v in cost.items()) + ")"
                            if cost else ""))
        for v, f in rec.get("vendors", {}).items():
            lines.append(f"  {v} ({f['n_cases']} cases, {f.get('n_sources', '?')} sources): {_factors(f)}")
        for e, cells in rec.get("engines", {}).items():
            for v, f in cells.items():
                lines.append(f"  engine {e} × {v} ({f['n_cases']} cases, {f.get('n_sources', '?')} sources): {_factors(f)}")
    else:
        for e, v in rec.get("engines", {}).items():
            lines.append(f"  engine {e} ({v['n_cases']} cases): " + ", ".join(f"{k} = {x:.4g}" for k, x in v.items() if k != "n_cases"))
        for e, v in rec.get("vendors", {}).items():
            lines.append(f"  vendor {e} ({v['n_cases']} cases): " + ", ".join(f"{k} ×{x:.3g}" for k, x in v.items() if k != "n_cases"))
    lines.append(f"  in-sample median |error| {rec['in_sample']['median_abs_error']:.1%}, p90 {rec['in_sample']['p90_abs_error']:.1%}"
                 + (" (the CI gate's figures, per class below)" if rec.get("in_sample_by") else ""))
    for d, by in (rec.get("in_sample_by") or {}).items():
        lines.append(f"    by {d.replace('_', ' ')}: " + ", ".join(
            f"{k} {v['median_abs_error']:.1%}/{v['p90_abs_error']:.0%} ({v['n']})" for k, v in by.items()))
    if rec.get("roofline"):
        lines.append(f"  roofline (the bound) on the same cases: median |error| {rec['roofline']['median_abs_error']:.0%},"
                     f" p90 {rec['roofline']['p90_abs_error']:.0%}")
    if rec.get("cross_validated"):
        cv = rec["cross_validated"]
        lines.append(f"  leave-one-source-out median |error| {cv['median_abs_error']:.1%}, p90 {cv['p90_abs_error']:.1%}"
                     f" ({cv['n']} cases, {len(cv.get('sources', []))} sources; target ≤ 15 % / 40 %)")
        un = rec.get("cross_validated_untagged")
        if un:
            lines.append(f"    the same folds with no engine tag: median {un['median_abs_error']:.1%}, p90 {un['p90_abs_error']:.1%}")
        ev = rec.get("engine_vs_untagged_by_source") or {}
        if ev:
            from .calibrate import ENGINE_TAG_TOLERANCE as tol

            worse = [k for k, v in ev.items() if v["engine"] > v["untagged"] + tol]
            slight = [k for k, v in ev.items() if v["untagged"] + 1e-9 < v["engine"] <= v["untagged"] + tol]
            lines.append("    median by held-out source, engine-tagged / untagged: " + ", ".join(
                f"{k} {v['engine']:.1%}/{v['untagged']:.1%}" for k, v in ev.items()))
            lines.append(f"    engine tags cost more than {tol:.0%} of median |error| on "
                         + (f"{len(worse)} held-out source(s): {', '.join(worse)}" if worse else "no held-out source")
                         + (f" (less than that on {', '.join(slight)})" if slight else ""))
        for d in ("model_class", "vendor", "engine", "metric"):
            by = rec.get(f"cv_by_{d}") or {}
            if by:
                lines.append(f"    by {d.replace('_', ' ')}: " + ", ".join(
                    f"{k} {v['median_abs_error']:.1%}/{v['p90_abs_error']:.0%} ({v['n']})" for k, v in by.items()))
        lv = rec["leave_one_vendor_out"]
        lines.append(f"  leave-one-vendor-out median |error| {lv['median_abs_error']:.1%}, p90 {lv['p90_abs_error']:.1%}"
                     f" (target ≤ 25 % median: {'met' if lv['median_abs_error'] <= 0.25 else 'not met'})")
        for k, v in lv["by_vendor"].items():
            lines.append(f"    {k:<10} n={v['n']:<3} median {v['median_abs_error']:6.1%}  p90 {v['p90_abs_error']:6.1%}")
        b = rec.get("bands") or {}
        if "step" in b:
            lines.append(f"  80 % band (pooled): a step predicted as T is T / {math.exp(b['step'][1]):.3g} … T /"
                         f" {math.exp(b['step'][0]):.3g}; " + _band_rule_text(b))
        lines += band_coverage_lines(rec.get("cv_band_80_coverage") or {},
                                     "on sources never fitted, target 70–90 %")
    return lines


ACCURACY_CLASSES = (("model_class", "model class"), ("vendor", "vendor"), ("engine", "engine"), ("metric", "metric"))


def accuracy_table(rec: dict) -> list[str]:
    """The README's accuracy table, from a calibrated preset record alone (tests/test_validate.py
    checks that the README's equals it; scripts/accuracy_table.py writes it)."""
    cv = rec.get("cross_validated") or {}
    cov = rec.get("cv_band_80_coverage") or {}
    srcs = len(cv.get("sources", [])) or "?"

    def row(name, s, band=None, bold=False):
        s = s or {}
        cells = [_pct(s.get("median_abs_error")), _pct(s.get("p90_abs_error")), _pct(band, 0) if band is not None else ""]
        if bold:
            name, cells = f"**{name}**", [f"**{c}**" if c not in ("", "—") else c for c in cells]
        return f"| {name} | " + " | ".join(cells) + " |"

    lines = [f"| estimate, on the {rec.get('n_cases', '?')} visible cases (preset fitted {rec.get('fit_date', '?')}) |"
             " median \\|error\\| | p90 \\|error\\| | inside the 80 % band |",
             "|---|---|---|---|",
             row("roofline bound (`--efficiency roofline`)", rec.get("roofline")),
             row("calibrated, in sample", rec.get("in_sample")),
             row(f"calibrated, leave-one-source-out cross-validated ({srcs} sources)", cv, cov.get("share"), bold=True),
             row("calibrated, leave-one-source-out, no engine tag", rec.get("cross_validated_untagged")),
             row("calibrated, leave-one-vendor-out", rec.get("leave_one_vendor_out"))]
    by_any = any(rec.get(f"cv_by_{d}") for d, _ in ACCURACY_CLASSES)
    if by_any:
        lines += ["", "| class, leave-one-source-out | cases | median \\|error\\| | p90 \\|error\\| | inside the 80 % band |",
                  "|---|---|---|---|---|"]
        for d, title in ACCURACY_CLASSES:
            covd = cov.get(f"by_{d}") or {}
            for k, s in (rec.get(f"cv_by_{d}") or {}).items():
                c = covd.get(k, {}).get("share")
                lines.append(f"| {title} {k} | {s['n']} | {_pct(s['median_abs_error'])} | {_pct(s['p90_abs_error'])} |"
                             f" {_pct(c, 0) if c is not None else ''} |")
    return lines


def fleet_day_record(d) -> dict:
    """The JSON of a fleet over a day: the issue's keys (hours, chips_average, chips_peak,
    nodes_average, nodes_peak, usd_per_day, warmup_usd_per_day) and the peak fleet it was sized from."""
    pools = [{"role": p.role, "system": p.system, "chips_per_replica": p.chips_per_replica, "tp": p.tp, "ep": p.ep,
              "pp": p.pp, "weight_dtype": p.weight_dtype, "replicas_at_peak": p.replicas,
              "verified_capacity_requests_per_s_per_replica": c, "load_gb_per_s_per_chip": b / 1e9,
              "weight_load_s": t, "chips_per_node": nc, "tokens_per_s_per_node_at_peak": tn,
              "tokens_counted": "input (cache hits included)" if p.role == "prefill" else "output"}
             for p, c, b, t, nc, tn in zip(d.pools, d.capacity_requests_per_s, d.load_bytes_per_s, d.load_s,
                                           d.node_chips, d.tokens_per_s_per_node_at_peak)]
    hours = [{"start_s": i.start_s, "duration_s": i.duration_s, "requests_per_s": i.requests_per_s,
              "replicas": {f"{p.role}": r for p, r in zip(d.pools, i.replicas)}, "chips": i.chips, "nodes": i.nodes,
              "started": {f"{p.role}": s for p, s in zip(d.pools, i.started)}, "warmup_chip_s": i.warmup_chip_s,
              "usd": i.usd} for i in d.intervals]
    return {"model": d.model, "rate_curve": d.curve, "span_s": d.span_s, "requests_per_day": d.requests_per_day,
            "chips_average": d.chips_average, "chips_peak": d.chips_peak, "nodes_average": d.nodes_average,
            "nodes_peak": d.nodes_peak, "serving_chips_average": d.serving_chips_average, "usd_per_day": d.usd_per_day,
            "warmup_usd_per_day": d.warmup_usd_per_day, "warmup_chip_s_per_day": d.warmup_chip_s_per_day,
            "pools": pools, "hours": hours, "notes": list(d.notes), "peak_fleet": fleet_record(d.plan)}


def render_fleet_day(d) -> list[str]:
    """Plain words: the day's figures, the pools with their verified capacity, then the intervals
    where the fleet changes size."""
    usd = "" if d.usd_per_day is None else (f", ${d.usd_per_day:,.0f} per day (warm-up ${d.warmup_usd_per_day:,.2f})")
    lines = [f"{d.model} over the day ({d.curve or 'rate curve'}, {len(d.intervals)} intervals, {sig(d.span_s / 3600, 4)} h,"
             f" {d.requests_per_day:,.0f} requests per day)",
             f"  chips: {d.chips_average:,.1f} on average, {d.chips_peak:,.0f} at peak; nodes: {d.nodes_average:,.2f} on"
             f" average, {d.nodes_peak:,} at peak{usd}"]
    sim = d.plan.best.simulated
    if sim is not None:
        from .units import seconds

        lines.append(f"  verified at the peak ({sig(d.plan.request_rate, 4)} requests/s, {d.plan.best.mode}): TTFT p99"
                     f" {seconds(sim.ttft_p99_s)}, TPOT p50 {seconds(sim.tpot_p50_s)}, p99 {seconds(sim.tpot_p99_s)};"
                     f" {'meets' if sim.meets_slo else 'misses'} the SLOs at steady state ({d.plan.estimate})")
    for p, c, t, tn in zip(d.pools, d.capacity_requests_per_s, d.load_s, d.tokens_per_s_per_node_at_peak):
        what = "input (hits included)" if p.role == "prefill" else "output"
        mtp = f", MTP {p.mtp_draft_tokens} draft(s)" if p.mtp_draft_tokens else ""
        lines.append(f"    {p.role:<9} {p.system:<12} TP{p.tp} EP{p.ep} PP{p.pp} = {p.chips_per_replica} chips each{mtp},"
                     f" {p.replicas} replicas at peak, verified {sig(c, 4)} requests/s per replica ({tn:,.0f} {what}"
                     f" tokens/s per node), weights load in {sig(t, 3)} s")
    if getattr(d.plan, "wide_ep_reason", ""):
        lines.append(f"  {d.plan.wide_ep_reason}")
    lines.append("  intervals where the fleet changes size (start, requests/s, replicas per pool, chips, nodes):")
    prev = None
    for i in d.intervals:
        if i.replicas != prev:
            reps = " + ".join(f"{r} {p.role}" for p, r in zip(d.pools, i.replicas))
            lines.append(f"    {i.start_s / 3600:6.2f} h  {i.requests_per_s:>10,.4g}  {reps:<28} {i.chips:>8,.0f} chips"
                         f" {i.nodes:>6,} nodes")
            prev = i.replicas
    lines += [f"  {n}" for n in d.notes]
    return lines


def at_bound_lines(items: list[dict], *, factors: bool = False) -> list[str]:
    """Say which fitted parameters ended at a bound of their fit (calibrate.at_bounds), or that none did."""
    if not items:
        return ["  no fitted parameter is at a bound of its fit"]
    lines = [f"  {len(items)} fitted parameter{'s' if len(items) > 1 else ''} at a bound of the fit: the fit wanted to go"
             " further, so the value is the bound's, not a measurement (docs/own-numbers.md, 'At a bound'):"]
    for x in items:
        who = f"{x['profile']} " if x.get("profile") else ""
        lo, hi = x["range"]
        why = "; a physical limit: the data want none of it" if x.get("physical") else ""
        if factors:
            lines.append(f"    {who}{x['parameter']} × {x['value']:.3g} ({x['side']} bound × {x['bound']:g}; allowed"
                         f" × {lo:g} to × {hi:g}{why})")
        else:
            lines.append(f"    {who}{x['parameter']} = {x['value']:.4g} ({x['side']} bound {x['bound']:.4g}; allowed {lo:.4g}"
                         f" to {hi:.4g}{why})")
    return lines
