"""`tokenmath ...`: parse the arguments, call the core, print with rich or as one JSON object.

No physics here. Bad input raises TokenmathError in the core; this layer prints its one sentence
to stderr and exits 2.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import report as rp
from .catalog import Catalog, load_catalog
from .errors import TokenmathError
from .kvcache import kv_cache
from .params import param_counts
from . import serving as sv
from .roofline import default_replica_chips, step_time
from .specs import Dtypes, Efficiency
from .units import check_dtype, count, parse_positive, parse_quantity, seconds, si

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="How fast and how cheaply an LLM can be served, and why (the roofline math of Reiner Pope's lecture).",
)
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, soft_wrap=True)

# ---- shared options ------------------------------------------------------------------------

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
CatalogOpt = Annotated[
    Optional[list[Path]],
    typer.Option("--catalog", help="Extra catalog TOML ([systems.NAME], [chips.NAME], [models.NAME]); repeatable."),
]
WeightOpt = Annotated[Optional[str], typer.Option("--weight-dtype", help="Weight dtype (bf16, fp8, fp4, mxfp4, ...); default: the checkpoint's.")]
KvOpt = Annotated[str, typer.Option("--kv-dtype", help="KV-cache dtype.")]
ComputeOpt = Annotated[Optional[str], typer.Option("--compute-dtype", help="Matmul dtype; default: the weight dtype (or the next wider the chip supports).")]
ChipsOpt = Annotated[Optional[int], typer.Option("--chips", help="Chips in one replica; default: the scale-up domain (box or rack), or for TPU pods the fewest that hold weights + KV.")]


def handles_errors(fn):
    """Turn TokenmathError into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TokenmathError as e:
            err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
            raise typer.Exit(2) from None
        except (typer.Exit, KeyboardInterrupt):
            raise
        except Exception as e:  # a bug of ours, not bad input: one line, the traceback on request
            if os.environ.get("TOKENMATH_DEBUG"):
                raise
            err.print(f"[bold red]internal error:[/] {type(e).__name__}: {escape(str(e))} — please report it;"
                      " set TOKENMATH_DEBUG=1 for the traceback", highlight=False)
            raise typer.Exit(1) from None

    return wrapper


def command(*a, **kw):
    def deco(fn):
        return app.command(*a, **kw)(handles_errors(fn))

    return deco


def _catalog(files: list[Path] | None) -> Catalog:
    return load_catalog(files or None)


def _emit_json(obj) -> None:
    print(rp.dumps(obj))


def _finish(json_: bool, record, lines) -> None:
    """Print one JSON object, or the plain-words lines."""
    if json_:
        return _emit_json(record)
    for line in lines:
        out.print(line, highlight=False)


def _dtypes(weight: str | None, kv: str, compute: str | None) -> Dtypes:
    return Dtypes(weight=check_dtype(weight), kv=check_dtype(kv), compute=check_dtype(compute))


def _count(text: str, what: str, *, allow_zero: bool = False) -> float:
    return parse_positive(text, "count", what=what, allow_zero=allow_zero)


SparseOpt = Annotated[Optional[int], typer.Option("--sparse-topk", help="What-if: sparse attention reading only K cached tokens per layer.")]
SparseModeOpt = Annotated[str, typer.Option("--sparse-mode", help="'topk' (DeepSeek DSA: min(L, K)) or 'sqrt' (the lecture's sketch: √(K·L)).")]


def _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips, *, batch=1.0,
           sparse_topk=None, sparse_mode="topk"):
    """Resolve the pieces every serving command shares; chips default to one replica."""
    from .kvcache import with_sparse_attention

    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    if sparse_topk is not None:
        m = with_sparse_attention(m, sparse_topk, mode=sparse_mode)
    L = _count(context, "--context", allow_zero=True)
    dt = _dtypes(weight_dtype, kv_dtype, compute_dtype)
    if chips is None:
        chips = default_replica_chips(m, s, L, batch, weight_dtype=dt.weight, kv_dtype=dt.kv)
    elif chips < 1:
        raise TokenmathError(f"--chips = {chips} must be >= 1")
    return m, s, L, dt, chips


EfficiencyOpt = Annotated[str, typer.Option("--efficiency", help="'calibrated' (the estimate, default), 'roofline' (the bound), or a preset .json from `tokenmath calibrate`.")]
EngineOpt = Annotated[Optional[str], typer.Option("--engine", help="Engine profile: trtllm, vllm or sglang (default: the generic fit).")]


def _profile(efficiency: str, engine: str | None, system):
    from . import profiles as pf

    return pf.choose(efficiency, engine=engine, system=system)


def _efficiency(flops: float, hbm: float) -> Efficiency:
    if flops == 1.0 and hbm == 1.0:
        return Efficiency()
    return Efficiency(flops=flops, hbm=hbm, label="user")


# ---- catalog listings ----------------------------------------------------------------------


@command("models")
def models_cmd(json_: JsonOpt = False, catalog: CatalogOpt = None) -> None:
    """List the catalog's models."""
    cat = _catalog(catalog)
    rows = []
    for name, m in sorted(cat.models.items()):
        pc = param_counts(m)
        kv = kv_cache(m, 1.0)
        rows.append({
            "name": name, "family": m.family, "total_params": pc.total, "active_params": pc.active,
            "sparsity": pc.sparsity, "kv_bytes_per_token": kv.stored_bytes_per_token,
            "native_weight_dtype": m.weight_dtype, "source": m.source, "as_of": m.as_of,
        })
    if json_:
        return _emit_json({"models": rows})
    t = Table(title="tokenmath models", title_justify="left")
    for col in ("name", "family", "total", "active", "N_tot/N_act", "KV B/token (bf16)", "weights", "as of"):
        t.add_column(col, justify="right" if col not in ("name", "family") else "left")
    for r in rows:
        t.add_row(r["name"], r["family"], count(r["total_params"], 4), count(r["active_params"], 4), f"{r['sparsity']:.1f}",
                  f"{r['kv_bytes_per_token']:,.0f}", r["native_weight_dtype"], r["as_of"])
    out.print(t)


@command("systems")
def systems_cmd(json_: JsonOpt = False, catalog: CatalogOpt = None) -> None:
    """List the catalog's systems (chips in scale-up domains)."""
    cat = _catalog(catalog)
    rows = [rp.system_record(s) for _, s in sorted(cat.systems.items())]
    if json_:
        return _emit_json({"systems": rows})
    t = Table(title="tokenmath systems (per chip; FLOP/s dense)", title_justify="left")
    for col in ("name", "domain", "bf16", "fp8", "fp4", "HBM", "HBM B/s", "drain", "$/chip-h", "as of"):
        t.add_column(col, justify="left" if col == "name" else "right")
    for r in rows:
        t.add_row(
            r["name"] + (" *" if r["preliminary"] else ""), str(r["scaleup_chips"]),
            si(r["bf16_flops_per_s"]) if r["bf16_flops_per_s"] else "-",
            si(r["fp8_flops_per_s"]) if r["fp8_flops_per_s"] else "-",
            si(r["fp4_flops_per_s"]) if r["fp4_flops_per_s"] else "-",
            si(r["hbm_bytes"], "B"), si(r["hbm_bytes_per_s"], "B/s"), seconds(r["hbm_drain_s"]),
            f"{r['usd_per_chip_hour']:.2f}" if r["usd_per_chip_hour"] is not None else "-", r["as_of"],
        )
    out.print(t)
    out.print("* preliminary figures. '-' = not published; give it in a --catalog TOML.")


# ---- one model / one system ------------------------------------------------------------------


@command("model")
def model_cmd(
    name: Annotated[str, typer.Argument(help="Catalog name or path to a Hugging Face config.json.")],
    context: Annotated[str, typer.Option("--context", help="Context length L (tokens; '128k' works).")] = "1",
    kv_dtype: KvOpt = "bf16",
    json_: JsonOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """Parameter counts (by part) and KV-cache bytes of one model."""
    cat = _catalog(catalog)
    m = cat.model(name)
    L = _count(context, "--context")
    rec = rp.model_record(m, L, check_dtype(kv_dtype))
    if json_:
        return _emit_json(rec)
    out.print(f"[bold]{m.name}[/] ({m.family}) — {m.source}")
    t = Table(show_header=True)
    t.add_column("part")
    t.add_column("parameters", justify="right")
    for part, n in rec["breakdown"].items():
        if n is not None:
            t.add_row(part, f"{n:,}")
    t.add_row("[bold]total[/] (N_total)", f"[bold]{rec['total_params']:,}[/]")
    t.add_row("[bold]active per token[/] (N_active)", f"[bold]{rec['active_params']:,}[/]")
    out.print(t)
    out.print(
        f"sparsity N_total/N_active = {rec['sparsity']:.2f}; layers = {rec['layers']}; "
        f"native weights {rec['native_weight_dtype']} = {si(rec['weight_bytes'], 'B')}"
    )
    out.print(
        f"KV cache ({kv_dtype}) at L = {L:,.0f}: stored {rec['kv_bytes_per_token']:,.1f} B/token "
        f"({si(rec['kv_bytes_per_sequence'], 'B')} per sequence); read per decode step "
        f"{rec['kv_read_bytes_per_token']:,.1f} B/token ({si(rec['kv_read_bytes_per_step'], 'B')})"
    )


@command("system")
def system_cmd(
    name: Annotated[str, typer.Argument(help="Catalog system name.")],
    json_: JsonOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """One system's specs, with its HBM drain time and hardware ratio."""
    s = _catalog(catalog).system(name)
    rec = rp.system_record(s)
    if json_:
        return _emit_json(rec)
    t = Table(title=f"{s.name} — {s.description}", title_justify="left", show_header=False)
    t.add_column("field")
    t.add_column("value", justify="right")
    units = {"flops_per_s": "FLOP/s", "bytes_per_s": "B/s", "bytes": "B"}
    for k, v in rec.items():
        if k in ("name", "description", "hardware_ratio") or v is None:
            continue
        if isinstance(v, float) and k.endswith("_s") and "per_s" not in k:
            text = seconds(v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            unit = next((u for suffix, u in units.items() if k.endswith(suffix)), "")
            text = si(v, unit) if unit else f"{v:,.4g}"
        else:
            text = str(v)
        t.add_row(k, text)
    for cls, r in rec["hardware_ratio"].items():
        t.add_row(f"hardware ratio ({cls})", f"{r:.0f}")
    out.print(t)


# ---- the roofline step -----------------------------------------------------------------------


@command("step")
def step_cmd(
    model: Annotated[str, typer.Option("--model", help="Catalog name or config.json path.")],
    system: Annotated[str, typer.Option("--system", help="Catalog system name.")],
    batch: Annotated[str, typer.Option("--batch", help="Sequences in the pass (B).")] = "1",
    context: Annotated[str, typer.Option("--context", help="Context length attended to (L, tokens).")] = "0",
    new_tokens: Annotated[str, typer.Option("--new-tokens", help="New tokens per sequence (S): 1 = decode.")] = "1",
    chips: ChipsOpt = None,
    weight_dtype: WeightOpt = None,
    kv_dtype: KvOpt = "bf16",
    compute_dtype: ComputeOpt = None,
    flops_efficiency: Annotated[float, typer.Option(help="Achieved fraction of peak FLOP/s.")] = 1.0,
    hbm_efficiency: Annotated[float, typer.Option(help="Achieved fraction of peak HBM bandwidth.")] = 1.0,
    efficiency: EfficiencyOpt = "calibrated",
    engine: EngineOpt = None,
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="Override the catalog's rental price.")] = None,
    expert_fetch: Annotated[str, typer.Option(help="Roofline: 'all' experts streamed each step, or 'expected' for the batch.")] = "all",
    attention_flops: Annotated[bool, typer.Option("--attention-flops/--no-attention-flops", help="Count attention FLOPs at context L.")] = True,
    allow_overflow: Annotated[bool, typer.Option(help="Report a layout whose weights + KV exceed HBM instead of failing.")] = False,
    json_: JsonOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """Time, cost and bound of one forward pass: the calibrated estimate (default) and the roofline bound beside it."""
    B = _count(batch, "--batch")
    S = _count(new_tokens, "--new-tokens")
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips, batch=B)
    price = None if usd_per_chip_hour is None else parse_quantity(usd_per_chip_hour, "usd", what="--usd-per-chip-hour")
    eff = _efficiency(flops_efficiency, hbm_efficiency)
    prof = _profile(efficiency, engine, s)
    if eff.label == "user" and not prof.is_roofline:
        raise TokenmathError("--flops-efficiency / --hbm-efficiency scale the roofline; give them with --efficiency roofline")
    st = step_time(m, s, B, L, S, chips=chips, dtypes=dt, efficiency=eff, usd_per_chip_hour=price,
                   expert_fetch=expert_fetch, attention_flops=attention_flops)
    if not st.fits and not allow_overflow:
        raise TokenmathError(
            f"{m.name} needs {si(st.memory_bytes, 'B')} (weights + KV of {B:,.0f} × {L:,.0f} tokens) but "
            f"{chips} × {s.name} hold {si(st.hbm_bytes, 'B')}; use more --chips, a smaller --batch or --context, "
            f"narrower dtypes, or --allow-overflow"
        )
    rec = rp.step_record(st)
    est = None
    if prof.is_roofline:
        rec["estimate"] = "roofline" if eff.label == "roofline" else f"roofline × user efficiencies (flops {eff.flops:g}, hbm {eff.hbm:g})"
    else:
        from .estimate import estimate_pass, estimate_record

        est = estimate_pass(m, s, B, L, S, chips=chips, dtypes=dt, profile=prof, usd_per_chip_hour=price)
        rec["roofline"] = {k: rec[k] for k in ("step_s", "tokens_per_s", "tokens_per_s_per_chip", "usd_per_mtok", "bound")}
        rec.update(estimate_record(est))
        rec["mfu"] = float(st.flops / (est.step_s * st.assumptions.flops_per_s_per_chip * chips))
    if json_:
        return _emit_json(rec)
    a = st.assumptions
    t = Table(title=f"{m.name} on {chips} × {s.name}: B = {B:,.0f}, L = {L:,.0f}, S = {S:,.0f}  —  roofline terms",
              title_justify="left")
    t.add_column("term")
    t.add_column("time", justify="right")
    t.add_column("formula")
    t.add_row("compute", seconds(st.compute_s), "B·S·(2·N_active + attn FLOPs(L)) / (chips·FLOP/s)")
    t.add_row("weight fetch", seconds(st.weights_s), "weight bytes / (chips·HBM B/s)")
    t.add_row("KV fetch", seconds(st.kv_s), "B·KV bytes read(L) / (chips·HBM B/s)")
    t.add_row("network", seconds(st.network_s), a.network)
    t.add_row("[bold]roofline step[/]", f"[bold]{seconds(st.step_s)}[/]", f"max(compute, weights + KV) → [bold]{st.bound}[/] bound")
    out.print(t)
    if est is not None:
        _print_estimate(est, price is not None or s.usd_per_chip_hour is not None)
    cost = f"${st.usd_per_mtok:,.4g} per million tokens" if st.usd_per_mtok is not None else "no price (--usd-per-chip-hour)"
    out.print(f"{'bound' if est is not None else 'roofline'}: {st.tokens_per_s:,.0f} tokens/s ({st.tokens_per_s_per_chip:,.0f} per chip); {cost}; "
              f"MFU {st.mfu:.1%}, MBU {st.mbu:.1%}; memory {si(st.memory_bytes, 'B')} of {si(st.hbm_bytes, 'B')}")
    out.print(f"[dim]{a.label if est is None else est.label}; weights {a.weight_dtype}, KV {a.kv_dtype}, compute {a.compute_dtype} "
              f"({si(a.flops_per_s_per_chip, 'FLOP/s')}/chip); {a.usd_per_chip_hour if a.usd_per_chip_hour is not None else 'no'} $/chip-h; "
              f"experts: {a.expert_fetch}; attention FLOPs {'on' if a.attention_flops else 'off'}[/]")


def _print_estimate(est, priced: bool) -> None:
    """The estimate's table: each operation's time, then the step with its 80 % band."""
    op = est.op
    t = Table(title=f"estimate ({est.label}), layout TP{op.layout.tp} EP{op.layout.ep} PP{op.layout.pp}",
              title_justify="left")
    t.add_column("operation")
    t.add_column("time", justify="right")
    names = {"dense_gemm_s": "dense GEMMs", "expert_gemm_s": "expert GEMMs (busiest rank)", "attention_s": "attention",
             "tp_comm_s": "TP all-reduce", "ep_comm_s": "EP dispatch + combine", "pp_comm_s": "PP send/recv",
             "overhead_s": "per-step overhead"}
    for k, v in op.parts.items():
        t.add_row(names[k], seconds(float(np.max(v))))
    lo, hi = est.range_80["step_s"] if est.range_80 else (est.step_s, est.step_s)
    t.add_row("[bold]estimated step[/]", f"[bold]{seconds(est.step_s)}[/]")
    out.print(t)
    cost = f"; ${est.usd_per_mtok:,.4g}/Mtok" if priced and est.usd_per_mtok is not None else ""
    out.print(f"[bold]estimate[/]: {seconds(est.step_s)} per step (80 % band {seconds(lo)} – {seconds(hi)}), "
              f"{est.tokens_per_s_per_chip:,.0f} tokens/s per chip, {est.tokens_per_s_per_user:,.1f} per user{cost}; "
              f"the roofline bound of the same pass is {seconds(est.roofline_step_s)}")


# ---- serving economics ----------------------------------------------------------------------

ModelOpt = Annotated[str, typer.Option("--model", help="Catalog name or config.json path.")]
SystemOpt = Annotated[str, typer.Option("--system", help="Catalog system name.")]
ContextOpt = Annotated[str, typer.Option("--context", help="Context length L (tokens; '128k' works).")]


@command("curve")
def curve_cmd(
    model: ModelOpt, system: SystemOpt,
    over: Annotated[str, typer.Option("--over", help="Sweep 'batch' (at --context) or 'context' (at --batch).")] = "batch",
    batch: Annotated[Optional[str], typer.Option("--batch", help="Batch for --over context (default: the balance batch).")] = None,
    context: ContextOpt = "4096",
    points: Annotated[int, typer.Option("--points", help="Grid points (log spaced).")] = 60,
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    sparse_topk: SparseOpt = None, sparse_mode: SparseModeOpt = "topk",
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw the curve to this PNG/SVG file.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Step latency, tokens/s per chip and per user, and $/Mtok over batch or context (the estimate; the roofline beside it)."""
    B = None if batch is None else _count(batch, "--batch")
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips,
                                sparse_topk=sparse_topk, sparse_mode=sparse_mode)
    st = sv.curve(m, s, over=over, batch=B, context=L, points=points, chips=chips, dtypes=dt)
    prof = _profile(efficiency, engine, s)
    est = None
    if not prof.is_roofline:
        from .estimate import estimate_pass

        est = estimate_pass(m, s, st.batch, st.context, 1.0, chips=chips, dtypes=dt, profile=prof)
    if plot is not None:
        from . import plots

        title = f"{m.name} on {chips} × {s.name}"
        if over == "batch":
            plots.latency_vs_batch(st, title=f"{title}, L = {L:,.0f}", path=plot,
                                   balance_batch=sv.balance_batch(m, s, dtypes=dt), drain_s=sv.hbm_drain_s(s))
        else:
            plots.cost_vs_context(st, title=f"{title}, B = {float(np.atleast_1d(st.batch)[0]):,.0f}", path=plot,
                                  crossover=sv.balance_context(m, s, None, chips=chips, dtypes=dt))
        err.print(f"wrote {plot}")
    rec = rp.curve_record(st, over, est)
    if json_:
        return _emit_json(rec)
    t = Table(title=f"{m.name} on {chips} × {s.name}: over {over} — {rec['estimate']}"
              + ("" if est is None else "; compute/weights/KV are the roofline's terms"), title_justify="left")
    for col in ("batch", "context", "step", "roofline", "compute", "weights", "KV", "tok/s/chip", "tok/s/user", "$/Mtok", "bound"):
        t.add_column(col, justify="right")
    for p in rec["points"]:
        t.add_row(f"{p['batch']:,.0f}", f"{p['context']:,.0f}", seconds(p["step_s"]), seconds(p.get("roofline_step_s", p["step_s"])), seconds(p["compute_s"]),
                  seconds(p["weights_s"]), seconds(p["kv_s"]), f"{p['tokens_per_s_per_chip']:,.0f}",
                  f"{p['tokens_per_s_per_user']:,.1f}", "-" if p["usd_per_mtok"] is None else f"{p['usd_per_mtok']:.4g}",
                  p["bound"] + ("" if p["fits"] else " (overflows HBM)"))
    out.print(t)


@command("balance")
def balance_cmd(
    model: ModelOpt, system: SystemOpt, context: ContextOpt = "4096",
    batch: Annotated[Optional[str], typer.Option("--batch", help="Solve the balance context with weights at this batch.")] = None,
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    sparse_topk: SparseOpt = None, sparse_mode: SparseModeOpt = "topk",
    attention_flops: Annotated[bool, typer.Option("--attention-flops/--no-attention-flops", help="Count attention FLOPs at context L.")] = True,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Floors and balance points, solved exactly: B*, B* with KV, L*, latency and cost floors."""
    B = None if batch is None else _count(batch, "--batch")
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips,
                                sparse_topk=sparse_topk, sparse_mode=sparse_mode)
    b = sv.balance(m, s, L, batch=B, chips=chips, dtypes=dt, attention_flops=attention_flops)
    _finish(json_, rp.jsonable(b), rp.render_balance(b, m, s))


@command("fastmode")
def fastmode_cmd(
    model: ModelOpt, system: SystemOpt, context: ContextOpt = "4096",
    speedup: Annotated[Optional[float], typer.Option("--speedup", help="Target speed multiplier (tokens/s per user).")] = None,
    price_multiplier: Annotated[Optional[float], typer.Option("--price-multiplier", help="Target price multiplier.")] = None,
    reference_batch: Annotated[Optional[str], typer.Option("--reference-batch", help="The normal-mode batch (default: cost-optimal).")] = None,
    draft_tokens: Annotated[int, typer.Option("--draft-tokens", help="Speculative decoding: tokens drafted per verify pass.")] = 0,
    acceptance: Annotated[float, typer.Option("--acceptance", help="Speculative decoding: acceptance rate per drafted token.")] = 0.8,
    draft_model: Annotated[Optional[str], typer.Option("--draft-model", help="Draft model (default: an MTP head, cost neglected).")] = None,
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw the price/speed frontier to this file.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Fast mode / slow mode: what a smaller batch buys in speed and costs in price."""
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips)
    ref = None if reference_batch is None else _count(reference_batch, "--reference-batch")
    fm = sv.fast_mode(m, s, L, speedup=speedup, price_multiplier=price_multiplier, reference=ref, chips=chips, dtypes=dt)
    rec = rp.fastmode_record(fm)
    if draft_tokens:
        dm = _catalog(catalog).model(draft_model) if draft_model else None
        spec = sv.speculative_decode(m, s, fm.batch or fm.reference_batch, L, draft_tokens, acceptance,
                                     draft_model=dm, chips=chips, dtypes=dt)
        rec["speculative"] = rp.jsonable(spec)
    if plot is not None:
        from . import plots

        plots.price_speed_frontier(fm, title=f"{m.name} on {chips} × {s.name}, L = {L:,.0f}", path=plot)
        err.print(f"wrote {plot}")
    _finish(json_, rec, rp.render_fastmode(fm, m, s, rec.get("speculative")))


@command("traffic")
def traffic_cmd(
    model: ModelOpt, system: SystemOpt,
    tokens_per_s: Annotated[str, typer.Option("--tokens-per-s", help="Global decode demand (tokens/s; '128k', '200M').")],
    batch: Annotated[Optional[str], typer.Option("--batch", help="Sequences per step (default: cost-optimal).")] = None,
    context: ContextOpt = "4096",
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="Override the catalog's rental price.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Batching cadence: replicas, chips and $/day for a demand; queueing bounds of 'a train every T'."""
    D = _count(tokens_per_s, "--tokens-per-s")
    B = None if batch is None else _count(batch, "--batch")
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips,
                                batch=B or 1)
    price = None if usd_per_chip_hour is None else parse_quantity(usd_per_chip_hour, "usd", what="--usd-per-chip-hour")
    tr = sv.traffic(m, s, D, batch=B, context=L, chips=chips, dtypes=dt, usd_per_chip_hour=price)
    _finish(json_, rp.traffic_record(tr), rp.render_traffic(tr, m, s))


@command("prefill")
def prefill_cmd(
    model: ModelOpt, system: SystemOpt,
    prompt_tokens: Annotated[str, typer.Option("--prompt-tokens", help="Prompt length P (tokens).")] = "8192",
    batch: Annotated[Optional[str], typer.Option("--batch", help="Decode batch (default: cost-optimal).")] = None,
    context: ContextOpt = "4096",
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw cost per token vs pass length to this file.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Prefill vs decode: cost per token by pass length, the output/input cost ratio, time to first token."""
    P = _count(prompt_tokens, "--prompt-tokens")
    B = None if batch is None else _count(batch, "--batch")
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips)
    pd = sv.prefill_vs_decode(m, s, P, batch=B, context=L, chips=chips, dtypes=dt)
    if plot is not None:
        from . import plots

        plots.prefill_vs_decode_cost(pd, title=f"{m.name} on {chips} × {s.name}, P = {P:,.0f}", path=plot)
        err.print(f"wrote {plot}")
    _finish(json_, rp.prefill_record(pd), rp.render_prefill(pd, m, s))


# ---- cluster layouts and the planner ---------------------------------------------------------


@command("layout")
def layout_cmd(
    model: ModelOpt, system: SystemOpt,
    chips: Annotated[int, typer.Option("--chips", help="Chips the layout uses: TP·EP·PP·DP with max(TP, EP) per stage.")],
    ep: Annotated[int, typer.Option("--ep", help="Expert-parallel degree (chips per stage for MoE).")] = 1,
    pp: Annotated[int, typer.Option("--pp", help="Pipeline stages.")] = 1,
    tp: Annotated[int, typer.Option("--tp", help="Tensor-parallel degree.")] = 1,
    dp: Annotated[int, typer.Option("--dp", help="Data-parallel replicas.")] = 1,
    batch: Annotated[str, typer.Option("--batch", help="Sequences per replica (all microbatches).")] = "1",
    context: ContextOpt = "4096",
    microbatches: Annotated[Optional[int], typer.Option("--microbatches", help="Microbatches in flight (default PP).")] = None,
    overlap: Annotated[str, typer.Option("--overlap", help="Network overlap with compute: 'none' (adds) or 'full' (max).")] = "none",
    hop_latency: Annotated[Optional[str], typer.Option("--hop-latency", help="Latency of one hop between domains ('10us').")] = None,
    weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Memory per chip, network terms and the step of one layout (EP × PP × TP × DP): the estimate, with the roofline beside it."""
    from . import layout as lay

    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    B = _count(batch, "--batch")
    L = _count(context, "--context", allow_zero=True)
    dt = _dtypes(weight_dtype, kv_dtype, compute_dtype)
    hop = lay.HOP_LATENCY_S_DEFAULT if hop_latency is None else parse_quantity(hop_latency, "seconds", what="--hop-latency")
    layout = lay.Layout(tp=tp, ep=ep, pp=pp, dp=dp, microbatches=microbatches)
    lay.check_layout(m, s, layout, chips=chips)
    st = lay.layout_step(m, s, layout, B, L, dtypes=dt, overlap=overlap, hop_latency_s=hop)
    rec = rp.layout_record(st)
    lines = rp.render_layout(st, m, s)
    prof = _profile(efficiency, engine, s)
    if prof.is_roofline:
        rec["estimate"] = "roofline"
    else:
        from .estimate import estimate_pass, estimate_record

        est = estimate_pass(m, s, B, L, 1.0, layout=layout, dtypes=dt, profile=prof)
        rec["roofline"] = {k: rec[k] for k in ("step_s", "tokens_per_s", "tokens_per_s_per_chip", "tokens_per_s_per_user",
                                               "usd_per_mtok", "bound")}
        er = estimate_record(est)
        er.pop("layout")
        rec.update(rp.jsonable(er))
        lines = [("  roofline bound: " + x[2:]) if x.startswith("  step ") else x for x in lines]
        lines += rp.render_estimate(est)
    _finish(json_, rec, lines)


@command("plan")
def plan_cmd(
    model: ModelOpt,
    systems: Annotated[Optional[str], typer.Option("--systems", help="Comma-separated systems (default: the whole catalog).")] = None,
    input_tokens: Annotated[str, typer.Option("--input-tokens", help="Prompt tokens per request (I).")] = "2000",
    output_tokens: Annotated[str, typer.Option("--output-tokens", help="Generated tokens per request (O).")] = "500",
    min_user: Annotated[Optional[float], typer.Option("--min-tokens-per-s-per-user", help="SLO: decode speed each user sees.")] = None,
    max_ttft: Annotated[Optional[float], typer.Option("--max-ttft-s", help="SLO: time to first token (s).")] = None,
    demand: Annotated[Optional[str], typer.Option("--demand-tokens-per-s", help="Total output tokens/s to serve.")] = None,
    weight_dtypes: Annotated[Optional[str], typer.Option("--weight-dtypes", help="Comma-separated weight dtypes to try (default: native).")] = None,
    kv_dtype: KvOpt = "bf16",
    overlap: Annotated[str, typer.Option("--overlap", help="Network overlap with compute: none|full.")] = "none",
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="One price for every system (else the catalog's).")] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Dask scheduler address, or 'local' (default: in-process).")] = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw the frontier to this file.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Cheapest way to serve a model under SLOs, searched over layouts × batch × dtypes on the catalog (the estimate; --efficiency roofline for the bound)."""
    from rich.progress import Progress

    from . import plan as pl

    cat = _catalog(catalog)
    m = cat.model(model)
    names = [x.strip() for x in systems.split(",") if x.strip()] if systems else sorted(cat.systems)
    syss = [cat.system(n) for n in names]
    wds = [None] if not weight_dtypes else [check_dtype(x.strip()) for x in weight_dtypes.split(",") if x.strip()]
    price = None if usd_per_chip_hour is None else parse_quantity(usd_per_chip_hour, "usd", what="--usd-per-chip-hour")
    D = None if demand is None else _count(demand, "--demand-tokens-per-s")
    kw = dict(input_tokens=_count(input_tokens, "--input-tokens"), output_tokens=_count(output_tokens, "--output-tokens"),
              min_tokens_per_s_per_user=min_user, max_ttft_s=max_ttft, demand_tokens_per_s=D, weight_dtypes=wds,
              kv_dtype=check_dtype(kv_dtype), overlap=overlap, usd_per_chip_hour=price, scheduler=scheduler,
              estimate=efficiency, engine=engine)
    with Progress(console=err, transient=True, disable=json_ or not sys.stderr.isatty()) as bar:
        task = bar.add_task("planning", total=len(syss))
        result = pl.plan(m, syss, progress=lambda done, total, name: bar.update(task, completed=done,
                                                                                description=f"planning: {name}"), **kw)
    if plot is not None:
        from . import plots

        plots.plan_frontier(result, title=f"{m.name}: I = {kw['input_tokens']:,.0f}, O = {kw['output_tokens']:,.0f}",
                            path=plot)
        err.print(f"wrote {plot}")
    _finish(json_, rp.plan_record(result), rp.render_plan(result))


@command("bubble")
def bubble_cmd(
    schedule: Annotated[str, typer.Option("--schedule", help="gpipe | 1f1b | interleaved | zb-h1 | zero-bubble")],
    pp: Annotated[int, typer.Option("--pp", help="Pipeline stages.")],
    microbatches: Annotated[int, typer.Option("--microbatches", help="Microbatches per step (m).")],
    virtual_stages: Annotated[int, typer.Option("--virtual-stages", help="Model chunks per device (interleaved).")] = 1,
    json_: JsonOpt = False,
) -> None:
    """Training pipeline bubble and activation memory of a schedule, with a timeline."""
    from . import layout as lay

    b = lay.bubble(schedule, pp, microbatches, virtual_stages)
    drawn = lay.timeline(schedule, pp, microbatches) if schedule in ("gpipe", "1f1b") and pp * microbatches <= 400 else []
    rec = rp.jsonable(b) | {"timeline": drawn}
    lines = [
        f"{schedule}: PP {pp}, {microbatches} microbatches" + (f", {virtual_stages} virtual stages" if virtual_stages > 1 else ""),
        f"  bubble fraction = {b.bubble_fraction:.1%} of each device's step; activations of"
        f" {b.peak_activation_microbatches:g} microbatches held at once",
        f"  source: {b.source}",
    ] + [f"  {row}" for row in drawn]
    _finish(json_, rec, lines)


# ---- training ---------------------------------------------------------------------------------

train_app = typer.Typer(no_args_is_help=True, help="Training economics: time and cost, over-training, Chinchilla, memory.")
app.add_typer(train_app, name="train")


def train_command(name):
    def deco(fn):
        return train_app.command(name)(handles_errors(fn))

    return deco


@train_command("time")
def train_time_cmd(
    model: ModelOpt, system: SystemOpt,
    chips: Annotated[int, typer.Option("--chips", help="Chips training together.")],
    tokens: Annotated[str, typer.Option("--tokens", help="Training tokens D ('15.6T').")],
    mfu: Annotated[float, typer.Option("--mfu", help="Achieved fraction of peak (Llama 3 405B: 0.38–0.43).")] = 0.4,
    dtype: Annotated[str, typer.Option("--dtype", help="Matmul dtype whose peak MFU is measured against.")] = "bf16",
    recompute: Annotated[bool, typer.Option("--recompute/--no-recompute", help="Full recompute / reversible: 8·N·D instead of 6·N·D.")] = False,
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="Override the catalog's rental price.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """How long, and what it costs, to train on D tokens: FLOPs = 6·N_active·D at an MFU."""
    from . import training as tr

    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    price = None if usd_per_chip_hour is None else parse_quantity(usd_per_chip_hour, "usd", what="--usd-per-chip-hour")
    t = tr.train_time(m, s, chips, _count(tokens, "--tokens"), mfu=mfu, dtype=check_dtype(dtype),
                      flops_per_param_token=8.0 if recompute else 6.0, usd_per_chip_hour=price)
    lines = [
        f"{m.name} on {chips:,} × {s.name}, {t.tokens:,.4g} tokens at {t.mfu:.0%} MFU ({dtype} peak {si(t.flops_per_s_per_chip, 'FLOP/s')})",
        f"  FLOPs = {t.flops_per_param_token:g}·N_active·D = {t.flops_per_param_token:g} × {t.active_params:,.4g} × {t.tokens:,.4g} = {t.flops:.3g}",
        f"  time = FLOPs / (chips · peak · MFU) = {t.days:,.1f} days ({t.chip_hours:,.0f} chip-hours), {rp.usd(t.usd)}",
    ]
    _finish(json_, rp.jsonable(t), lines)


@train_command("mfu")
def train_mfu_cmd(
    model: ModelOpt, system: SystemOpt,
    tokens: Annotated[str, typer.Option("--tokens", help="Training tokens of the published run.")],
    chip_hours: Annotated[str, typer.Option("--chip-hours", help="Published chip-hours ('2.664M').")],
    dtype: Annotated[str, typer.Option("--dtype", help="Peak to measure against.")] = "bf16",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """The MFU a published run implies: 6·N_active·D / (chip-hours · 3600 · peak)."""
    from . import training as tr

    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    D, H = _count(tokens, "--tokens"), _count(chip_hours, "--chip-hours")
    u = tr.implied_mfu(m, s, D, H, dtype=check_dtype(dtype))
    _finish(json_, {"mfu": u, "dtype": dtype, "tokens": D, "chip_hours": H},
            [f"{m.name}: {D:,.4g} tokens in {H:,.4g} {s.name}-hours imply {u:.1%} of the {dtype} peak"])


@train_command("overtrain")
def train_overtrain_cmd(
    active_params: Annotated[str, typer.Option("--active-params", help="N_active ('100G').")],
    tokens_per_s: Annotated[str, typer.Option("--tokens-per-s", help="Serving demand ('50M').")],
    lifetime_days: Annotated[float, typer.Option("--lifetime-days", help="How long the model serves.")],
    rl_factor: Annotated[float, typer.Option("--rl-factor", help="RL FLOPs per parameter-token, 2 (forward only) to 6.")] = 4.0,
    rl_efficiency: Annotated[float, typer.Option("--rl-efficiency", help="RL rollouts' MFU relative to pre-training.")] = 0.3,
    inference_efficiency: Annotated[float, typer.Option("--inference-efficiency", help="Decode MFU relative to pre-training.")] = 0.3,
    fit: Annotated[str, typer.Option("--fit", help="hoffmann | besiroglu (for the exact optimum).")] = "hoffmann",
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw the loss/compute picture to this file.")] = None,
    json_: JsonOpt = False,
) -> None:
    """How much to over-train given serving demand: equal pre-training, RL and inference costs."""
    from . import training as tr

    N = _count(active_params, "--active-params")
    o = tr.overtrain(N, _count(tokens_per_s, "--tokens-per-s"), lifetime_days, rl_factor=rl_factor,
                     rl_efficiency=rl_efficiency, inference_efficiency=inference_efficiency, fit=fit)
    if plot is not None:
        from . import plots

        plots.loss_frontier(o, fit, title=f"N_active = {N:.3g}, {o.inference_tokens:.3g} inference tokens", path=plot)
        err.print(f"wrote {plot}")
    e = o.exact
    lines = [
        f"inference: {o.inference_tokens:.3g} tokens over {lifetime_days:g} days; costs equalised (FLOPs / relative MFU):",
        f"  pre-training {o.pretrain_tokens:.3g} tokens (6·N per token), RL {o.rl_tokens:.3g} tokens ({o.rl_flops_per_param_token:g}·N"
        f" at {o.rl_efficiency:g} efficiency), inference at {o.inference_efficiency:g} efficiency",
        f"  Chinchilla: 20 × {N:.3g} = {o.chinchilla_tokens:.3g} tokens -> over-trained {o.overtraining_factor:,.0f}×"
        f" ({o.pretrain_tokens / N:,.0f} tokens per active parameter)",
        f"  the exact optimum ({fit} fit, same quality as a Chinchilla-trained {N:.3g}): {e.params:.3g} params on {e.tokens:.3g}"
        f" tokens ({e.tokens_per_param:,.0f} per param), {e.saving_fraction:.0%} less total compute — a loss fit far outside"
        " its data, so read it as a direction",
    ]
    _finish(json_, rp.jsonable(o), lines)


@train_command("chinchilla")
def train_chinchilla_cmd(
    flops: Annotated[str, typer.Option("--flops", help="Training compute C (FLOPs, e.g. 5.76e23).")],
    fit: Annotated[str, typer.Option("--fit", help="hoffmann | besiroglu")] = "hoffmann",
    json_: JsonOpt = False,
) -> None:
    """Compute-optimal model size and tokens for a budget, and the loss the fit predicts."""
    from . import training as tr

    C = parse_positive(flops, "count", what="--flops")
    co = tr.compute_optimal(C, fit)
    n20 = (C / (6 * 20)) ** 0.5
    rec = rp.jsonable(co) | {"rule_of_20": {"params": n20, "tokens": 20 * n20,
                                          "loss": tr.chinchilla_loss(n20, 20 * n20, fit)},
                           "fit_source": tr.get_fit(fit).source}
    lines = [
        f"C = {C:.3g} FLOPs ({fit}: {tr.get_fit(fit).source})",
        f"  compute-optimal: N = {co.params:.3g} params, D = {co.tokens:.3g} tokens ({co.tokens_per_param:.1f} per param),"
        f" loss {co.loss:.4f}",
        f"  20-tokens-per-param rule: N = {n20:.3g}, D = {20 * n20:.3g}, loss {rec['rule_of_20']['loss']:.4f}",
    ]
    _finish(json_, rec, lines)


@train_command("memory")
def train_memory_cmd(
    model: ModelOpt, system: SystemOpt,
    chips: Annotated[int, typer.Option("--chips", help="DP × TP × PP.")],
    dp: Annotated[int, typer.Option("--dp")], tp: Annotated[int, typer.Option("--tp")] = 1,
    pp: Annotated[int, typer.Option("--pp")] = 1, ep: Annotated[int, typer.Option("--ep", help="Expert parallelism (inside DP × TP).")] = 1,
    micro_batch: Annotated[int, typer.Option("--micro-batch", help="Sequences per microbatch (b).")] = 1,
    seq_len: Annotated[str, typer.Option("--seq-len", help="Sequence length (tokens).")] = "4096",
    zero: Annotated[int, typer.Option("--zero", help="ZeRO stage 0|1|2|3 (3 = FSDP).")] = 1,
    recompute: Annotated[str, typer.Option("--recompute", help="none | selective | full | reversible")] = "selective",
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw the memory stack to this file.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Training memory per chip: weights, gradients, Adam state, activations; does it fit?"""
    from . import training as tr

    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    S = _count(seq_len, "--seq-len")
    mem = tr.train_memory(m, s, dp=dp, tp=tp, pp=pp, ep=ep, micro_batch=micro_batch, seq_len=int(S), zero=zero,
                          recompute=recompute, chips=chips)
    if plot is not None:
        from . import plots

        plots.memory_stack(mem, title=f"{m.name}: DP{dp} TP{tp} PP{pp}, ZeRO-{zero}, {recompute}", path=plot)
        err.print(f"wrote {plot}")
    lines = [
        f"{m.name} on {chips} × {s.name} (DP {dp}, TP {tp}, PP {pp}, EP {ep}), micro-batch {micro_batch} × {S:,.0f} tokens",
        f"  weights {si(mem.weights_bytes_per_chip, 'B')} + gradients {si(mem.grads_bytes_per_chip, 'B')} + optimizer"
        f" {si(mem.optimizer_bytes_per_chip, 'B')} (ZeRO-{zero}) + activations {si(mem.activation_bytes_per_chip, 'B')}"
        f" ({recompute}) = {si(mem.total_bytes_per_chip, 'B')} of {si(mem.hbm_bytes_per_chip, 'B')}:"
        f" {'fits' if mem.fits else 'does NOT fit'}",
        f"  compute per token: {mem.flops_per_param_token:g}·N ({'one extra forward' if mem.flops_per_param_token > 6 else 'no recompute of whole layers'})",
    ]
    _finish(json_, rp.jsonable(mem), lines)


# ---- reading prices ---------------------------------------------------------------------------

prices_app = typer.Typer(no_args_is_help=True, help="What API price sheets reveal; KV-cache memory tiers.")
app.add_typer(prices_app, name="prices")


def prices_command(name):
    def deco(fn):
        return prices_app.command(name)(handles_errors(fn))

    return deco


@prices_command("sheets")
def prices_sheets_cmd(json_: JsonOpt = False, catalog: CatalogOpt = None) -> None:
    """List the catalog's price sheets ($ per million tokens)."""
    cat = _catalog(catalog)
    rows = [rp.jsonable(p) for _, p in sorted(cat.prices.items())]
    if json_:
        return _emit_json({"sheets": rows})
    t = Table(title="API price sheets ($ per million tokens)", title_justify="left")
    for col in ("name", "provider", "input", "output", "out/in", "cache read", "cache write", ">ctx tier", "fast", "as of"):
        t.add_column(col, justify="left" if col in ("name", "provider") else "right")
    for p in rows:
        writes = ", ".join(f"{w[1]:g}@{w[0] / 60:g}m" for w in p["cache_write_usd_per_mtok"]) or "-"
        tier = (f"{p['long_context_threshold_tokens']:,.0f}: {p['long_context_input_usd_per_mtok'] or '-'}/"
                f"{p['long_context_output_usd_per_mtok'] or '-'}") if p["long_context_threshold_tokens"] else "-"
        fast = f"{p['fast_price_multiplier']:g}× price" + (f", {p['fast_speedup']:g}× speed" if p["fast_speedup"] else "") \
            if p["fast_price_multiplier"] else "-"
        t.add_row(p["name"], p["provider"], f"{p['input_usd_per_mtok']:g}", f"{p['output_usd_per_mtok']:g}",
                  f"{p['output_usd_per_mtok'] / p['input_usd_per_mtok']:.1f}",
                  "-" if p["cache_read_usd_per_mtok"] is None else f"{p['cache_read_usd_per_mtok']:g}", writes, tier, fast,
                  p["as_of"])
    out.print(t)


@prices_command("infer")
def prices_infer_cmd(
    sheet: Annotated[str, typer.Argument(help="A price sheet name (tokenmath prices sheets).")],
    system: Annotated[str, typer.Option("--system", help="Hardware assumed behind the API.")] = "gb200-nvl72",
    active_params: Annotated[str, typer.Option("--active-params", help="Assumed N_active (the lecture's 100B).")] = "100G",
    model: Annotated[Optional[str], typer.Option("--model", help="A stand-in model for the batch/ratio analysis.")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="Compute dtype for the KV crossover.")] = "fp8",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """What a price sheet implies: KV bytes/token, candidate attention layouts, how memory bound decode is, cache tiers, fast mode."""
    from . import prices as pr

    cat = _catalog(catalog)
    sh, s = cat.price_sheet(sheet), cat.system(system)
    m = cat.model(model) if model else None
    inf = pr.infer(sh, s, active_params=_count(active_params, "--active-params"), model=m, storage=cat.storage,
                   models=cat.models, dtype=check_dtype(dtype))
    _finish(json_, rp.jsonable(inf), rp.render_infer(inf, sh))


@prices_command("kv-from-tier")
def prices_kv_cmd(
    active_params: Annotated[str, typer.Option("--active-params", help="N_active.")],
    crossover_context: Annotated[str, typer.Option("--crossover-context", help="Context of the price step ('200k').")],
    system: SystemOpt,
    dtype: Annotated[str, typer.Option("--dtype", help="Compute dtype.")] = "fp8",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """KV bytes per token implied by a long-context price step: 2·N_active·BW / (FLOP/s · L*)."""
    from . import prices as pr

    cat = _catalog(catalog)
    s = cat.system(system)
    N, L = _count(active_params, "--active-params"), _count(crossover_context, "--crossover-context")
    kv = pr.kv_from_tier(N, L, s, dtype=check_dtype(dtype))
    layouts = pr.candidate_layouts(kv, models=cat.models)
    lines = [f"kv = 2 × {N:.3g} × {si(s.chip.hbm_bytes_per_s, 'B/s')} / ({si(s.flops_per_s(dtype), 'FLOP/s')} × {L:,.0f})"
             f" = {kv:,.0f} bytes per token"] + [f"  {x.description}: {x.bytes_per_token:,.0f} B ({x.ratio:.2f}×)" for x in layouts]
    _finish(json_, {"kv_bytes_per_token": kv, "candidate_layouts": rp.jsonable(layouts)}, lines)


@prices_command("tiers")
def prices_tiers_cmd(system: SystemOpt, json_: JsonOpt = False, catalog: CatalogOpt = None) -> None:
    """Memory tiers of a system: capacity, bandwidth and drain time (capacity / bandwidth)."""
    from . import prices as pr

    cat = _catalog(catalog)
    ts = pr.tiers(cat.system(system), cat.storage)
    rec = {k: {"capacity_bytes": t.bytes, "bytes_per_s": t.bytes_per_s, "drain_s": t.drain_s, "device": t.name,
               "usd_per_byte_s": t.usd_per_byte_s, "source": t.source} for k, t in ts.items()}
    lines = [f"{k:>5}: {si(t.bytes, 'B')} at {si(t.bytes_per_s, 'B/s')} -> drain {seconds(t.drain_s)} ({t.name})"
             for k, t in ts.items()]
    _finish(json_, rec, lines)


@prices_command("cache")
def prices_cache_cmd(
    model: ModelOpt, system: SystemOpt,
    prompt_tokens: Annotated[str, typer.Option("--prompt-tokens", help="Cached prompt length P.")],
    hold_s: Annotated[str, typer.Option("--hold-s", help="How long the cache is kept ('300', '1h').")],
    reuse: Annotated[float, typer.Option("--reuse", help="Expected reuses while held (hit rate × requests).")] = 1.0,
    weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16",
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="Override the catalog's rental price.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw cost vs hold time per tier to this file.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Where to keep a prompt's KV cache for a hold time: recompute, HBM, DDR, flash or disk."""
    from . import prices as pr

    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    hs = parse_quantity(hold_s, "seconds", what="--hold-s")
    price = None if usd_per_chip_hour is None else parse_quantity(usd_per_chip_hour, "usd", what="--usd-per-chip-hour")
    cc = pr.cache_costs(m, s, _count(prompt_tokens, "--prompt-tokens"), hs, reuse=reuse, storage=cat.storage,
                        dtypes=_dtypes(weight_dtype, kv_dtype, None), usd_per_chip_hour=price)
    if plot is not None:
        from . import plots

        plots.cache_cost_vs_hold(m, s, cc.prompt_tokens, cat.storage, reuse=reuse,
                                 title=f"{m.name} on {s.name}: {cc.prompt_tokens:,.0f}-token prompt", path=plot)
        err.print(f"wrote {plot}")
    _finish(json_, rp.cache_record(cc), rp.render_cache(cc, m, s))


@prices_command("long-context")
def prices_long_context_cmd(
    system: SystemOpt = "gb200-nvl72",
    models: Annotated[Optional[str], typer.Option("--models", help="Comma-separated models (default: the catalog's).")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Why contexts stall near 100k–1M: each model's KV crossover and where attention FLOPs matter."""
    from . import prices as pr

    cat = _catalog(catalog)
    s = cat.system(system)
    names = [x.strip() for x in models.split(",")] if models else sorted(n for n, m in cat.models.items() if not m.is_totals_only)
    rows = [pr.long_context(cat.model(n), s) for n in names]
    lines = [f"{s.name}: L* = context where KV fetch per token = compute per token (weights amortised); L_eq = where"
             " attention FLOPs = weight FLOPs"]
    for r in rows:
        lines.append(f"  {r.model:<18} KV {r.kv_bytes_per_token:>9,.0f} B/token   L* {('none' if r.balance_context is None else f'{r.balance_context:,.0f}'):>9}"
                     f"   L_eq {r.attention_equals_weights_context:>11,.0f}   cost 1M/8k {('-' if r.cost_ratio_1m_vs_8k is None else f'{r.cost_ratio_1m_vs_8k:,.1f}×'):>8}")
    _finish(json_, {"system": s.name, "models": rp.jsonable(rows)}, lines)


# ---- accuracy -----------------------------------------------------------------------------------


@command("validate")
def validate_cmd(
    files: Annotated[Optional[list[Path]], typer.Argument(help="Case files (JSON lines); default: the shipped cases.")] = None,
    efficiency: Annotated[str, typer.Option("--efficiency", help="'calibrated' (each case: its engine and vendor profile), 'roofline' (the bound), or a preset .json.")] = "calibrated",
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw predicted vs measured to this file.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Predicted vs measured on validation cases: per-case error and median / p90 by metric, system, source, vendor, engine, model class."""
    from . import profiles as pf
    from . import validate as vd

    cases = []
    for f in files or [None]:
        cases += vd.load_cases(f)
    preset = None
    if efficiency == "roofline":
        prof, fitted = pf.ROOFLINE_PROFILE, None
    else:
        if efficiency not in ("calibrated", "estimate") and not efficiency.endswith(".json"):
            raise TokenmathError(f"--efficiency = {efficiency!r}; expected 'calibrated', 'roofline' or a preset .json file")
        preset = pf.preset_record(None if efficiency in ("calibrated", "estimate") else efficiency)
        prof, fitted = "calibrated", set(preset.get("systems", []))
    r = vd.validate(cases, prof, _catalog(catalog), fitted_systems=fitted, preset=preset)
    if plot is not None:
        from . import plots

        plots.predicted_vs_measured(r, title=f"{len(r.rows)} cases, {r.label}", path=plot)
        err.print(f"wrote {plot}")
    rec = rp.validation_record(r, preset)
    _finish(json_, rec, rp.render_validation(r, preset))


@command("calibrate")
def calibrate_cmd(
    files: Annotated[Optional[list[Path]], typer.Argument(help="Case files to fit on (default: the shipped cases).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write the preset (default: print only).")] = None,
    no_cv: Annotated[bool, typer.Option("--no-cv", help="Skip cross-validation (fit only; no bands).")] = False,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Fit the calibrated profiles (generic, per engine, per vendor; scipy) and report their cross-validated error."""
    from . import validate as vd

    cases = []
    for f in files or [None]:
        cases += vd.load_cases(f)
    try:
        import scipy  # noqa: F401
    except ImportError:
        raise TokenmathError("calibration needs scipy: pip install 'tokenmath[fit]'") from None
    rec = vd.calibrate(cases, _catalog(catalog), progress=lambda i, n, g: err.print(f"  fold {i}/{n}: {g}"),
                       cross_validate=not no_cv)
    if out is not None:
        out.write_text(json.dumps(rp.jsonable(rec), indent=2))
        err.print(f"wrote {out}")
    _finish(json_, rp.jsonable(rec), rp.render_calibration(rec))


@command("simulate")
def simulate_cmd(
    model: ModelOpt, system: SystemOpt,
    rate: Annotated[str, typer.Option("--rate", help="Requests per second (Poisson); comma-separate to sweep.")] = "10",
    duration_s: Annotated[float, typer.Option("--duration-s", help="Simulated seconds.")] = 600.0,
    input_tokens: Annotated[str, typer.Option("--input-tokens", help="Prompt tokens per request.")] = "1000",
    output_tokens: Annotated[str, typer.Option("--output-tokens", help="Output tokens per request.")] = "200",
    max_batch: Annotated[Optional[int], typer.Option("--max-batch", help="Batch cap (default: what fits in HBM).")] = None,
    prefill: Annotated[str, typer.Option("--prefill", help="'first' (own step) or 'chunked' (folded into decode steps).")] = "chunked",
    chunk_tokens: Annotated[int, typer.Option("--chunk-tokens", help="Prefill tokens per step when chunked.")] = 2048,
    cadence_s: Annotated[Optional[float], typer.Option("--cadence-s", help="Fixed step time: a train departs every T.")] = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Dask scheduler for sweeps ('local' or an address).")] = None,
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Discrete-event simulation of one replica: TTFT, time per output token and throughput (p50/p90/p99)."""
    from rich.progress import Progress

    from . import simulate as simmod

    rates = [float(_count(r.strip(), "--rate")) for r in rate.split(",") if r.strip()]
    m, s, L, dt, chips = _setup(catalog, model, system, input_tokens, weight_dtype, kv_dtype, None, chips)
    eff, overhead = Efficiency(), 0.0
    prof = _profile(efficiency, engine, s)
    if not prof.is_roofline:
        from .estimate import linearised

        eff, overhead = linearised(m, s, chips=chips, dtypes=dt, profile=prof, input_tokens=_count(input_tokens, "--input-tokens"),
                                   output_tokens=_count(output_tokens, "--output-tokens"))
    runs = [dict(rate_per_s=r, duration_s=duration_s, input_tokens=int(_count(input_tokens, "--input-tokens")),
                 output_tokens=int(_count(output_tokens, "--output-tokens")), chips=chips, max_batch=max_batch,
                 prefill=prefill, chunk_tokens=chunk_tokens, cadence_s=cadence_s, dtypes=dt, efficiency=eff,
                 overhead_s=overhead, seed=seed) for r in rates]
    with Progress(console=err, transient=True, disable=json_ or not sys.stderr.isatty()) as bar:
        task = bar.add_task("simulating", total=len(runs))
        results = simmod.simulate_many(m, s, runs, scheduler=scheduler,
                                       progress=lambda i, n, lab: bar.update(task, completed=i))
    label = "roofline" if prof.is_roofline else eff.label
    recs = [rp.jsonable(r) | {"rate_per_s": run["rate_per_s"], "estimate": label} for r, run in zip(results, runs)]
    lines = [f"{m.name} on {chips} × {s.name}: {duration_s:g} s of Poisson arrivals, prefill {prefill}, batch cap"
             f" {results[0].max_batch}" + (f", fixed cadence {seconds(cadence_s)}" if cadence_s else "") + f"; step times: {label}"]
    for rec in recs:
        lines.append(f"  {rec['rate_per_s']:g} req/s: {rec['output_tokens_per_s']:,.0f} output tokens/s, mean batch"
                     f" {rec['mean_batch']:,.0f}; TTFT p50 {seconds(rec['ttft_s']['p50'])} p99 {seconds(rec['ttft_s']['p99'])};"
                     f" per token p50 {seconds(rec['tpot_s']['p50'])}; completed {rec['completed']:,} of {rec['requests']:,}")
    _finish(json_, recs[0] if len(recs) == 1 else {"runs": recs, "estimate": label}, lines)


@command("serve")
def serve_cmd(
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8501,
    host: Annotated[str, typer.Option("--host", help="Address to bind (default: this machine only).")] = "127.0.0.1",
) -> None:
    """Start the interactive blackboard (Streamlit; optional extra `web`) on http://HOST:PORT."""
    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise TokenmathError("the blackboard needs Streamlit: pip install 'tokenmath[web]'") from None
    if not 1 <= port <= 65535:
        raise TokenmathError(f"--port = {port} must be between 1 and 65535")
    from .web import APP

    args = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", host, "--server.port", str(port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.maxUploadSize", "1",
            "--server.fileWatcherType", "none", "--global.developmentMode", "false",
            "--client.toolbarMode", "viewer"]
    err.print(f"tokenmath blackboard on http://{host}:{port} (Ctrl-C to stop)")
    os.execv(sys.executable, args)


# ---- the main job ------------------------------------------------------------------------------


@command("report")
def report_cmd(
    model: Annotated[str, typer.Option("--model", help="Catalog name or config.json path.")] = "deepseek-v3",
    system: Annotated[str, typer.Option("--system", help="Catalog system name.")] = "gb200-nvl72",
    context: Annotated[str, typer.Option("--context", help="Context length L (tokens).")] = "4096",
    chips: Annotated[Optional[int], typer.Option("--chips", help="Chips per replica; default the scale-up domain.")] = None,
    weight_dtype: WeightOpt = None,
    kv_dtype: KvOpt = "bf16",
    compute_dtype: ComputeOpt = None,
    plots_dir: Annotated[Optional[Path], typer.Option("--plots", help="Write the blackboard charts (PNG) to this folder.")] = None,
    json_: JsonOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """Explain a model on a system in plain words (default: DeepSeek-V3 on a GB200 NVL72, the lecture's example)."""
    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    L = _count(context, "--context", allow_zero=True)
    if chips is not None and chips < 1:
        raise TokenmathError(f"--chips = {chips} must be >= 1")
    r = rp.build_report(m, s, context=L, chips=chips, dtypes=_dtypes(weight_dtype, kv_dtype, compute_dtype))
    written = rp.write_report_plots(r, plots_dir) if plots_dir is not None else []
    if json_:
        return _emit_json(rp.report_record(r) | {"plots": [str(p) for p in written]})
    out.rule(f"[bold]tokenmath report: {m.name} on {r.chips} × {s.name}[/]")
    for heading, lines in rp.render_report(r):
        out.print(f"\n[bold cyan]{heading}[/]")
        for line in lines:
            out.print(line, highlight=False)
    if written:
        out.print("\n[bold cyan]Charts[/]")
        for p in written:
            out.print(f"  {p}", highlight=False)


def main() -> None:
    try:
        app()
    except TokenmathError as e:  # raised outside a command (e.g. while parsing)
        err.print(f"error: {escape(str(e))}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
