"""`tokenmath step | curve | balance | fastmode | traffic | prefill`: one pass and serving economics."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import (
    ForceOpt, Num, _check_finite, JsonOpt, CatalogOpt, WeightOpt, KvOpt, ComputeOpt, ChipsOpt, command, _catalog, _emit_json,
    _finish, _count, _setup, SparseOpt, SparseModeOpt, EfficiencyOpt, EngineOpt, _profile, _efficiency, ModelOpt,
    SystemOpt, ContextOpt, out, err, _num, TokenmathError, seconds, si, CostOpt, _priced,
)


# ---- the roofline step -----------------------------------------------------------------------


@command("step")
def step_cmd(
    model: Annotated[str, typer.Option("--model", help="Catalog name or config.json path.")],
    system: Annotated[str, typer.Option("--system", help="Catalog system name.")],
    batch: Annotated[str, typer.Option("--batch", help="Sequences in the pass (B).")] = "1",
    context: Annotated[str, typer.Option("--context", help="Context length attended to (L, tokens; '8k' = 8,000: k/M are decimal).")] = "0",
    new_tokens: Annotated[str, typer.Option("--new-tokens", help="New tokens per sequence (S): 1 = decode.")] = "1",
    chips: Annotated[Optional[int], Num("--chips", help="Chips in one replica. Default: the scale-up domain (box or rack; for TPU pods the fewest that hold weights + KV), grown by powers of two and then whole domains until weights + KV fit — the output says when it grew. Chips the default layout cannot use (e.g. past the experts' divisors) are said, and neither used nor billed.")] = None,
    weight_dtype: WeightOpt = None,
    kv_dtype: KvOpt = "bf16",
    compute_dtype: ComputeOpt = None,
    flops_efficiency: Annotated[float, Num("--flops-efficiency", help="With --efficiency roofline: achieved fraction of peak FLOP/s (a what-if).")] = 1.0,
    hbm_efficiency: Annotated[float, Num("--hbm-efficiency", help="With --efficiency roofline: achieved fraction of peak HBM bandwidth (a what-if).")] = 1.0,
    efficiency: EfficiencyOpt = "calibrated",
    engine: EngineOpt = None,
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="Override the catalog's rental price.")] = None,
    cost: CostOpt = "rental",
    expert_fetch: Annotated[str, typer.Option(help="Routed experts a step reads, for the estimate, the bound and the energy alike: 'expected' (those its B·S tokens touch, E·(1 − (1 − k/E)^(B·S)); the default) or 'all' (every expert, every step: the lecture's model).")] = "expected",
    attention_flops: Annotated[bool, typer.Option("--attention-flops/--no-attention-flops", help="Count attention FLOPs at context L (--no-attention-flops: the lecture's closed form; totals-only models with --efficiency roofline).")] = True,
    allow_overflow: Annotated[bool, typer.Option(help="Report a layout whose weights + KV exceed HBM instead of failing.")] = False,
    json_: JsonOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """One forward pass: the calibrated estimate (the answer), with the roofline bound of the same pass (same layout, chips and expert fetch) beside it."""
    from .. import report as rp

    B = _count(batch, "--batch")
    S = _count(new_tokens, "--new-tokens")
    given = chips
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips, batch=B)
    price = None if usd_per_chip_hour is None else _num(usd_per_chip_hour, "--usd-per-chip-hour")
    if cost == "tco" and price is not None:
        raise TokenmathError("--cost tco and --usd-per-chip-hour both set the price; give one")
    if expert_fetch not in ("expected", "all"):
        raise TokenmathError(f"--expert-fetch = {expert_fetch!r}; expected 'expected' or 'all'")
    s = _priced(s, cost)
    eff = _efficiency(flops_efficiency, hbm_efficiency)
    prof = _profile(efficiency, engine, s)
    if eff.label == "user" and not prof.is_roofline:
        raise TokenmathError("--flops-efficiency / --hbm-efficiency scale the roofline; give them with --efficiency roofline")
    if m.is_totals_only:
        return _step_totals_only(m, s, B, L, S, chips, dt, eff, prof, price, expert_fetch, attention_flops,
                                 allow_overflow, json_)
    if not attention_flops:
        raise TokenmathError("--no-attention-flops drops attention FLOPs from the lecture's closed form (`balance`, or a "
                             "totals-only model); a pass of a model with its architecture always counts them")
    from ..estimate import estimate_pass, estimate_record
    from ..layout import layout_memory

    est = estimate_pass(m, s, B, L, S, chips=given, dtypes=dt, profile=prof, usd_per_chip_hour=price,
                        expert_fetch=expert_fetch, efficiency=eff)
    op, bd, rep = est.op, est.roofline, est.replica
    mem = layout_memory(m, s, op.layout, B, L, dtypes=dt, new_tokens=S)
    if not mem.fits and not allow_overflow:
        raise TokenmathError(
            f"{m.name} needs {si(mem.total_bytes_per_chip, 'B')} per chip (weights + KV of {B:,.0f} × {L:,.0f} tokens "
            f"+ activations) on {op.chips} × {s.name} as {op.layout.describe()}, but a chip holds "
            f"{si(mem.hbm_bytes_per_chip, 'B')}; use more --chips, a smaller --batch or --context, narrower dtypes, "
            f"or --allow-overflow")
    rec = rp.step_record_of(est, m, s, dt, mem)
    from ..energy import maybe_energy_of_pass

    en = maybe_energy_of_pass(est, s)
    rec.update(rp.energy_record(en))
    _check_finite(rec)
    if json_:
        return _emit_json(rec)
    lines = rp.render_step(est, m, s, dt, mem, priced=est.usd_per_mtok is not None)
    for x in lines[:-1]:
        out.print(x) if not isinstance(x, str) else out.print(x, highlight=False)
    out.print(rp.energy_line(en), highlight=False)
    out.print(lines[-1])


def _step_totals_only(m, s, B, L, S, chips, dt, eff, prof, price, expert_fetch, attention_flops, allow_overflow, json_):
    """A model defined by totals only has no layout: the roofline on ideal sharding over `chips`."""
    from .. import report as rp
    from ..estimate import roofline_record
    from ..roofline import step_time

    if not prof.is_roofline:
        raise TokenmathError(f"model {m.name!r} is defined by totals only; the per-operation estimate needs its "
                             "architecture (a config.json) — use --efficiency roofline for the bound")
    st = step_time(m, s, B, L, S, chips=chips, dtypes=dt, efficiency=eff, usd_per_chip_hour=price,
                   expert_fetch=expert_fetch, attention_flops=attention_flops)
    if not st.fits and not allow_overflow:
        raise TokenmathError(
            f"{m.name} needs {si(st.memory_bytes, 'B')} (weights + KV of {B:,.0f} × {L:,.0f} tokens) but "
            f"{chips} × {s.name} hold {si(st.hbm_bytes, 'B')}; use more --chips, a smaller --batch or --context, "
            f"narrower dtypes, or --allow-overflow")
    rec = rp.step_record(st)
    label = "roofline" if eff.label == "roofline" else f"roofline × user efficiencies (flops {eff.flops:g}, hbm {eff.hbm:g})"
    rec["estimate"] = label
    rec["roofline"] = roofline_record(step_time(m, s, B, L, S, chips=chips, dtypes=dt, usd_per_chip_hour=price,
                                                expert_fetch=expert_fetch, attention_flops=attention_flops),
                                      layout="ideal sharding over every chip (a totals-only model has no layout)")
    from ..energy import maybe_energy_of

    en = maybe_energy_of(st, s)
    rec.update(rp.energy_record(en))
    _check_finite(rec)
    if json_:
        return _emit_json(rec)
    a = st.assumptions
    cost = f"${st.usd_per_mtok:,.4g} per million tokens" if st.usd_per_mtok is not None else "no price (--usd-per-chip-hour)"
    lines = [f"{m.name} on {chips} × {s.name}: B = {B:,.0f}, L = {L:,.0f}, S = {S:,.0f} — a totals-only model: the "
             "roofline on ideal sharding (no layout, no estimate)",
             f"  compute {seconds(st.compute_s)} · weight fetch {seconds(st.weights_s)} · KV fetch {seconds(st.kv_s)} "
             f"· step {seconds(st.step_s)} → {st.bound} bound",
             f"{label}: {st.tokens_per_s:,.0f} tokens/s ({st.tokens_per_s_per_chip:,.0f} per chip); {cost}; "
             f"MFU {st.mfu:.1%}, MBU {st.mbu:.1%}; memory {si(st.memory_bytes, 'B')} of {si(st.hbm_bytes, 'B')}",
             rp.energy_line(en),
             f"[dim]{a.label}; weights {a.weight_dtype}, KV {a.kv_dtype}, compute {a.compute_dtype}; experts: "
             f"{a.expert_fetch}; attention FLOPs {'on' if a.attention_flops else 'off'}[/]"]
    for x in lines:
        out.print(x, highlight=False)


# ---- serving economics ----------------------------------------------------------------------


@command("curve")
def curve_cmd(
    model: ModelOpt, system: SystemOpt,
    over: Annotated[str, typer.Option("--over", help="Sweep 'batch' (at --context) or 'context' (at --batch).")] = "batch",
    batch: Annotated[Optional[str], typer.Option("--batch", help="Batch for --over context (default: the balance batch).")] = None,
    context: ContextOpt = "4096",
    points: Annotated[int, Num("--points", help="Grid points (log spaced).")] = 60,
    chips: Annotated[Optional[int], Num("--chips", help="Chips in one replica (default: the scale-up domain, grown until the first point's weights + KV fit; said in the output).")] = None,
    weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    sparse_topk: SparseOpt = None, sparse_mode: SparseModeOpt = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    expert_fetch: Annotated[str, typer.Option(help="Routed experts a step reads: 'expected' for its tokens (default) or 'all' (the lecture's model); the estimate and the bound alike.")] = "expected",
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw the curve to this PNG/SVG file: the estimate with its 80 % band, the roofline bound beside it.")] = None,
    force: ForceOpt = False,
    cost: CostOpt = "rental",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Step latency, tokens/s per chip and per user, and $/Mtok over batch or context: the estimate, with the roofline bound of the same passes beside it."""
    from .. import report as rp
    from .. import serving as sv
    from rich.table import Table
    import numpy as np

    B = None if batch is None else _count(batch, "--batch")
    given = chips
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips,
                                sparse_topk=sparse_topk, sparse_mode=sparse_mode)
    if expert_fetch not in ("expected", "all"):
        raise TokenmathError(f"--expert-fetch = {expert_fetch!r}; expected 'expected' or 'all'")
    if over not in ("batch", "context"):
        raise TokenmathError(f"over = {over!r}; expected 'batch' or 'context'")
    s = _priced(s, cost)
    prof = _profile(efficiency, engine, s)
    est = rep = None
    if m.is_totals_only:
        if not prof.is_roofline:
            raise TokenmathError(f"model {m.name!r} is defined by totals only; the per-operation estimate needs its "
                                 "architecture (a config.json) — use --efficiency roofline for the bound")
    else:
        from ..estimate import replica

        b0 = 1.0 if over == "batch" else (B or sv.balance_batch(m, s, dtypes=dt))
        rep = replica(m, s, b0, L if over == "batch" else 1.0, chips=given, dtypes=dt)
        chips = rep.chips
    st = sv.curve(m, s, over=over, batch=B, context=L, points=points, chips=chips, dtypes=dt,
                  layout=None if rep is None else rep.layout)
    fits = st.fits
    if rep is not None:
        import dataclasses

        from ..estimate import estimate_pass
        from ..layout import layout_memory

        est = estimate_pass(m, s, st.batch, st.context, 1.0, layout=rep.layout, dtypes=dt, profile=prof,
                            expert_fetch=expert_fetch)
        est = dataclasses.replace(est, replica=rep)
        fits = np.asarray(layout_memory(m, s, rep.layout, st.batch, st.context, dtypes=dt).fits)
    if plot is not None:
        from .. import plots

        title = f"{m.name} on {chips} × {s.name}" + ("" if est is None else f" (TP{est.op.layout.tp} EP{est.op.layout.ep})")
        if over == "batch":
            plots.latency_vs_batch(st, title=f"{title}, L = {L:,.0f}", path=plot, est=est, fits=fits,
                                   balance_batch=sv.balance_batch(m, s, dtypes=dt), drain_s=sv.hbm_drain_s(s))
        else:
            plots.cost_vs_context(st, title=f"{title}, B = {float(np.atleast_1d(st.batch)[0]):,.0f}", path=plot, est=est,
                                  crossover=None if est is not None else sv.balance_context(m, s, None, chips=chips, dtypes=dt))
        err.print(f"wrote {plot}")
    if est is not None:
        rec = rp.curve_record_of(est, over, fits)
        from ..energy import maybe_energy_of_pass

        en = maybe_energy_of_pass(est, s)
    else:
        rec = rp.curve_record(st, over, None)
        from ..estimate import roofline_record
        from ..energy import maybe_energy_of

        rec["roofline"] = roofline_record(st, layout="ideal sharding over every chip (a totals-only model has no layout)")
        en = maybe_energy_of(st, s)
    e = rp.energy_record(en)
    for i, row in enumerate(rec["points"]):  # the energy keys at every point
        row.update({k: (v if v is None or isinstance(v, str) else float(np.atleast_1d(v)[min(i, np.size(v) - 1)]))
                    for k, v in e.items() if k != "energy"})
    _check_finite(rec)
    if json_:
        return _emit_json(rec)
    if rep is not None and rep.note:
        out.print(f"[yellow]note:[/] {rep.note}", highlight=False)
    where = f"{chips} × {s.name}" + ("" if est is None else
                                     (f" ({rep.billed_chips:,.0f} billed)" if rep.billed_chips != chips else "")
                                     + f", TP{est.op.layout.tp} EP{est.op.layout.ep} PP{est.op.layout.pp}")
    t = Table(title=f"{m.name} on {where}: over {over} — estimate: {rec['estimate']}; roofline bound of the same pass "
              "beside it, with its terms (compute, weights, KV) and what decides it", title_justify="left")
    for col in ("batch", "context", "estimate", "roofline bound", "compute", "weights", "KV", "tok/s/chip", "tok/s/user",
                "$/Mtok", "bound"):
        t.add_column(col, justify="right")
    for p in rec["points"]:
        t.add_row(f"{p['batch']:,.0f}", f"{p['context']:,.0f}", seconds(p["step_s"]),
                  seconds(p.get("roofline_step_s", p["step_s"])), seconds(p["compute_s"]),
                  seconds(p["weights_s"]), seconds(p["kv_s"]), f"{p['tokens_per_s_per_chip']:,.0f}",
                  f"{p['tokens_per_s_per_user']:,.1f}", "-" if p["usd_per_mtok"] is None else f"{p['usd_per_mtok']:.4g}",
                  p["bound"] + ("" if p["fits"] else " (overflows HBM)"))
    out.print(t)
    out.print("[dim]estimate, tok/s and $/Mtok: the answer (its 80 % band in --json); roofline bound, compute, weights, KV "
              "and bound: the roofline of the same pass on the same layout; experts: " + (est.op.expert_fetch if est is not None else "all") + "[/]")


@command("balance")
def balance_cmd(
    model: ModelOpt, system: SystemOpt, context: ContextOpt = "4096",
    batch: Annotated[Optional[str], typer.Option("--batch", help="Solve the balance context with weights at this batch.")] = None,
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    sparse_topk: SparseOpt = None, sparse_mode: SparseModeOpt = None,
    attention_flops: Annotated[bool, typer.Option("--attention-flops/--no-attention-flops", help="Count attention FLOPs at context L.")] = True,
    latency_target_s: Annotated[Optional[float], Num("--latency-target-s", help="Also: the largest model whose decode step meets this latency on these chips (L29).")] = None,
    sparsity: Annotated[Optional[float], Num("--sparsity", help="With --latency-target-s: N_total/N_active for the largest model's N_active (default: the model's).")] = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Floors and balance points: B*, B* with KV, L*, latency and cost floors on the roofline (exact), each beside the estimate's counterpart."""
    from .. import report as rp
    from .. import serving as sv

    B = None if batch is None else _count(batch, "--batch")
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips,
                                sparse_topk=sparse_topk, sparse_mode=sparse_mode)
    if sparsity is not None and latency_target_s is None:
        raise TokenmathError("--sparsity sets the largest model's N_active for --latency-target-s; give --latency-target-s too")
    prof = _profile(efficiency, engine, s)
    b = sv.balance(m, s, L, batch=B, chips=chips, dtypes=dt, attention_flops=attention_flops)
    est = unavailable = None
    if not prof.is_roofline:
        if m.is_totals_only:
            raise TokenmathError(f"model {m.name!r} is defined by totals only; the estimate needs its architecture (a"
                                 " config.json) — use --efficiency roofline for the bound alone")
        try:
            est = sv.estimated_balance(m, s, L, chips=chips, dtypes=dt, profile=prof, batch=B)
        except TokenmathError as e:  # the lecture's quantities on the bound still stand; say why the estimate is missing
            unavailable = str(e)
    kv = None if m.is_totals_only else sv.decode_flops_per_kv_byte(m, s, context=max(L, 1), kv_dtype=dt.kv)
    largest = None
    if latency_target_s is not None:
        largest = sv.largest_model_for_latency(s, latency_target_s, chips=chips, sparsity=sparsity, reference=m,
                                               profile=None if est is None else prof, dtypes=dt, context=L)
    rec = rp.balance_record(b, est, kv, largest)
    lines = rp.render_balance(b, m, s, est, kv, largest, roofline_only=prof.is_roofline)
    if unavailable:
        rec |= {"estimate": prof.label, "estimate_unavailable": unavailable}
        lines.insert(1, f"  estimate ({prof.label}): unavailable — {unavailable}")
    _finish(json_, rec, lines)


@command("fastmode")
def fastmode_cmd(
    model: ModelOpt, system: SystemOpt, context: ContextOpt = "4096",
    speedup: Annotated[Optional[float], Num("--speedup", help="Target speed multiplier (tokens/s per user).")] = None,
    price_multiplier: Annotated[Optional[float], Num("--price-multiplier", help="Target price multiplier.")] = None,
    reference_batch: Annotated[Optional[str], typer.Option("--reference-batch", help="The normal-mode batch (default: cost-optimal).")] = None,
    draft_tokens: Annotated[int, Num("--draft-tokens", help="Speculative decoding: tokens drafted per verify pass.")] = 0,
    acceptance: Annotated[float, Num("--acceptance", help="Speculative decoding: acceptance rate per drafted token.")] = 0.8,
    draft_model: Annotated[Optional[str], typer.Option("--draft-model", help="Draft model (default: an MTP head, cost neglected).")] = None,
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw the price/speed frontier to this file.")] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Fast mode / slow mode: what a smaller batch buys in speed and costs in price (the estimate; the roofline beside it)."""
    from .. import report as rp
    from .. import serving as sv

    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips)
    ref = None if reference_batch is None else _count(reference_batch, "--reference-batch")
    if speedup is not None and price_multiplier is not None:
        raise TokenmathError("give --speedup or --price-multiplier, not both")
    prof = _profile(efficiency, engine, s)
    est = None
    if not prof.is_roofline:
        est = sv.estimated_fast_mode(m, s, L, speedup=speedup, price_multiplier=price_multiplier, reference=ref,
                                     chips=chips, dtypes=dt, profile=prof)
    answer = est
    try:
        fm = sv.fast_mode(m, s, L, speedup=speedup, price_multiplier=price_multiplier, reference=ref, chips=chips, dtypes=dt)
    except TokenmathError:
        if est is None:
            raise
        # a slow mode past the bound's HBM: the bound has no answer for the target; show its frontier alone
        fm = sv.fast_mode(m, s, L, reference=ref, chips=chips, dtypes=dt)
    if answer is None:
        answer = fm
    where = f"{m.name} on {chips} × {s.name} at L = {L:,.0f}"
    which = "" if est is None else f" (the estimate, {est.estimate}; the roofline bound allows {fm.max_speedup:.2f}×)"
    if speedup is not None and answer.batch is None:
        if speedup < 1:
            raise TokenmathError(
                f"--speedup = {speedup:g} is out of reach for {where}: a slower mode needs more sequences than the "
                f"{answer.batch_to_fill_hbm if est is not None else sv.batch_to_fill_hbm(m, s, L, chips=chips, dtypes=dt):,.0f}"
                " that fit in HBM; give --speedup closer to 1")
        raise TokenmathError(
            f"--speedup = {speedup:g} is out of reach for {where}: a batch cut buys at most {answer.max_speedup:.2f}×"
            f" (batch 1, a {seconds(answer.latency_floor_s)} step){which}; give --speedup up to"
            f" {answer.max_speedup:.2f}, or more --chips")
    if price_multiplier is not None and answer.batch is None:
        lowest = 1.0 / answer.max_saving if answer.max_saving > 0 else 1.0
        floor = "the lowest estimated cost among batches that fit" if est is not None else "the cost floor"
        raise TokenmathError(
            f"--price-multiplier = {price_multiplier:g} is out of reach for {where}: the cheapest point ({floor})"
            f" is {lowest:.3g}× the reference price; give --price-multiplier >= {lowest:.3g}")
    rec = rp.fastmode_record(fm, est)
    if draft_tokens:
        dm = _catalog(catalog).model(draft_model) if draft_model else None
        roof_spec = sv.speculative_decode(m, s, fm.batch or fm.reference_batch, L, draft_tokens, acceptance,
                                          draft_model=dm, chips=chips, dtypes=dt)
        if est is None:
            rec["speculative"] = rp.jsonable(roof_spec)
        else:
            spec = sv.speculative_decode(m, s, est.batch or est.reference_batch, L, draft_tokens, acceptance,
                                         draft_model=dm, chips=chips, dtypes=dt, profile=prof, layout=est.layout)
            rec["speculative"] = rp.jsonable(spec) | {"roofline": rp.jsonable(roof_spec)}
            rec["roofline"]["speculative"] = rp.jsonable(roof_spec)
    if plot is not None:
        from .. import plots

        plots.price_speed_frontier(fm, title=f"{m.name} on {chips} × {s.name}, L = {L:,.0f}", path=plot, estimate=est)
        err.print(f"wrote {plot}")
    _finish(json_, rec, rp.render_fastmode(fm, m, s, rec.get("speculative"), est, reference_given=ref is not None))


@command("traffic")
def traffic_cmd(
    model: ModelOpt, system: SystemOpt,
    tokens_per_s: Annotated[str, typer.Option("--tokens-per-s", help="Global decode demand (tokens/s; '128k', '200M').")],
    batch: Annotated[Optional[str], typer.Option("--batch", help="Sequences per step (default: cost-optimal).")] = None,
    context: ContextOpt = "4096",
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="Override the catalog's rental price.")] = None,
    cost: CostOpt = "rental",
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Batching cadence: replicas, chips and $/day for a demand (the estimate; the roofline beside it); queueing bounds of 'a train every T'."""
    from .. import report as rp
    from .. import serving as sv

    D = _count(tokens_per_s, "--tokens-per-s")
    B = None if batch is None else _count(batch, "--batch")
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips,
                                batch=B or 1)
    price = None if usd_per_chip_hour is None else _num(usd_per_chip_hour, "--usd-per-chip-hour")
    if cost == "tco" and price is not None:
        raise TokenmathError("--cost tco and --usd-per-chip-hour both set the price; give one")
    s = _priced(s, cost)
    prof = _profile(efficiency, engine, s)
    kw = dict(batch=B, context=L, chips=chips, dtypes=dt, usd_per_chip_hour=price)
    # the estimate first: its layout holds no more than the bound's pooled HBM, so a batch it takes the bound takes
    tr = None if prof.is_roofline else sv.traffic(m, s, D, profile=prof, **kw)
    roof = sv.traffic(m, s, D, **kw)
    tr = tr or roof
    _finish(json_, rp.traffic_record(tr, roof), rp.render_traffic(tr, m, s, roof))


@command("prefill")
def prefill_cmd(
    model: ModelOpt, system: SystemOpt,
    prompt_tokens: Annotated[str, typer.Option("--prompt-tokens", help="Prompt length P (tokens).")] = "8192",
    batch: Annotated[Optional[str], typer.Option("--batch", help="Decode batch (default: cost-optimal).")] = None,
    context: ContextOpt = "4096",
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw cost per token vs pass length to this file.")] = None,
    force: ForceOpt = False,
    cost: CostOpt = "rental",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Prefill vs decode: cost per token by pass length, the output/input cost ratio, time to first token (the estimate; the roofline beside it)."""
    from .. import report as rp
    from .. import serving as sv

    P = _count(prompt_tokens, "--prompt-tokens")
    B = None if batch is None else _count(batch, "--batch")
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips)
    s = _priced(s, cost)
    prof = _profile(efficiency, engine, s)
    pd = sv.prefill_vs_decode(m, s, P, batch=B, context=L, chips=chips, dtypes=dt)
    est = None if prof.is_roofline else sv.estimated_prefill_vs_decode(m, s, P, batch=B, context=L, chips=chips,
                                                                       dtypes=dt, profile=prof)
    if plot is not None:
        from .. import plots

        plots.prefill_vs_decode_cost(pd, title=f"{m.name} on {chips} × {s.name}, P = {P:,.0f}", path=plot, estimate=est)
        err.print(f"wrote {plot}")
    _finish(json_, rp.prefill_record(pd, est), rp.render_prefill(pd, m, s, est))
