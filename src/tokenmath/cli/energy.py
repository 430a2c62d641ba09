"""`tokenmath energy | tco`: watts and joules of a pass, and what owning a chip costs per hour."""

from typing import Annotated, Optional

import typer

from . import (
    Num, JsonOpt, CatalogOpt, WeightOpt, KvOpt, ComputeOpt, ChipsOpt, command, _finish, _count, _setup,
    EfficiencyOpt, EngineOpt, _profile, ModelOpt, SystemOpt, _catalog, _num, TokenmathError, seconds,
)

@command("energy")
def energy_cmd(
    model: ModelOpt, system: SystemOpt,
    batch: Annotated[str, typer.Option("--batch", help="Sequences in the pass (B).")] = "64",
    context: Annotated[str, typer.Option("--context", help="Context length (L, tokens).")] = "4096",
    new_tokens: Annotated[str, typer.Option("--new-tokens", help="New tokens per sequence (S): 1 = decode.")] = "1",
    input_tokens: Annotated[Optional[str], typer.Option("--input-tokens", help="With --output-tokens: the energy of one request (prefill + decode).")] = None,
    output_tokens: Annotated[Optional[str], typer.Option("--output-tokens", help="Output tokens of that request.")] = None,
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    pue: Annotated[Optional[float], Num("--pue", help="Power usage effectiveness of the facility (≥ 1).")] = None,
    idle_w: Annotated[Optional[float], Num("--idle-w", help="Idle power per chip (W), instead of the sourced figure.")] = None,
    host_w: Annotated[Optional[float], Num("--host-w", help="Host CPU/NIC/switch/fan power per chip (W).")] = None,
    board_w: Annotated[Optional[float], Num("--board-w", help="Board power limit per chip (W), where the catalog has none or to replace it.")] = None,
    expert_fetch: Annotated[str, typer.Option(help="Routed experts a step reads: 'expected' for its tokens (default) or 'all'; the estimate, the bound and the power alike.")] = "expected",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Power and energy of a pass: watts by cause (idle, compute, memory, host, facility), J/token, tokens/s per MW; with --input-tokens/--output-tokens, the energy of a request."""
    from .. import energy as en
    from .. import report as rp

    B, S = _count(batch, "--batch"), _count(new_tokens, "--new-tokens")
    given = chips
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips, batch=B)
    if expert_fetch not in ("expected", "all"):
        raise TokenmathError(f"--expert-fetch = {expert_fetch!r}; expected 'expected' or 'all'")
    prof = _profile(efficiency, engine, s)
    power = en.chip_power(s, overrides={"idle_w": idle_w, "host_w": host_w, "board_w": board_w})
    fac = en.facility(pue=pue)
    rep = None
    if m.is_totals_only:
        if not prof.is_roofline:
            raise TokenmathError(f"model {m.name!r} is defined by totals only; the per-operation estimate needs its "
                                 "architecture (a config.json) — use --efficiency roofline for the bound")
    else:
        from ..estimate import replica

        rep = replica(m, s, B, L, S, chips=given, dtypes=dt)

    def one(b, ctx, new):
        """The energy of one pass: the estimate's step time, busy shares from the bound of the same pass."""
        if rep is None:  # totals-only: the roofline on ideal sharding
            from ..roofline import step_time

            return en.energy_of(step_time(m, s, b, ctx, new, chips=chips, dtypes=dt, expert_fetch=expert_fetch), s,
                                power=power, fac=fac), None
        from ..estimate import estimate_pass

        est = estimate_pass(m, s, b, ctx, new, layout=rep.layout, dtypes=dt, profile=prof, expert_fetch=expert_fetch)
        return en.energy_of_pass(est, s, power=power, fac=fac), est

    e, est = one(B, L, S)
    rec = {"model": m.name, "system": s.name, "chips": chips if rep is None else rep.chips, "batch": B, "context": L,
           "new_tokens": S, "estimate": "roofline" if prof.is_roofline else prof.label, "step_s": e.step_s,
           "expert_fetch": expert_fetch} | rp.energy_record(e)
    if est is not None:
        from ..estimate import replica_record, roofline_record

        rec["billed_chips"] = est.op.billed_chips
        rec["layout"] = est.op.layout.describe()
        rec["roofline"] = roofline_record(est.roofline)
        rec["replica"] = replica_record(rep)
    rec["power"] = {"board_w": power.board_w, "idle_w": power.idle_w, "k_compute": power.k_compute,
                    "k_memory": power.k_memory, "host_w": power.host_w, "pue": fac.pue,
                    "sources": list(power.sources + fac.sources), "assumptions": list(power.assumptions + fac.assumptions)}
    where = f"{rec['chips']} × {s.name}" + ("" if est is None else f" ({est.op.layout.describe()}"
                                             + (f", {est.op.billed_chips:g} billed" if est.op.billed_chips != est.op.chips else "") + ")")
    lines = ([] if rep is None or not rep.note else [f"note: {rep.note}"]) + [
        f"{m.name} on {where}, B = {B:,.0f}, L = {L:,.0f}, S = {S:,.0f} ({rec['estimate']} step {seconds(e.step_s)};"
        f" busy shares from the roofline bound of the same pass, experts: {expert_fetch})",
        "  " + rp.energy_line(e)]
    lines.append("  watts by cause: " + ", ".join(f"{k} {v / 1e3:,.3g} kW" for k, v in e.parts_w.items()))
    if input_tokens is not None or output_tokens is not None:
        if input_tokens is None or output_tokens is None:
            raise TokenmathError("--input-tokens and --output-tokens go together (the energy of one request)")
        I, O = _count(input_tokens, "--input-tokens"), _count(output_tokens, "--output-tokens")
        pre = one(1.0, 0.0, I)[0]  # the prompt, alone: its last logits give the first output token
        dec = one(B, I + O / 2, 1.0)[0]  # a decode step at the batch, mean context: O − 1 of them
        dec_j = (O - 1) * dec.watts * dec.step_s / B
        j = pre.watts * pre.step_s + dec_j
        rec["request"] = {"input_tokens": I, "output_tokens": O, "joules": j, "prefill_joules": pre.watts * pre.step_s,
                          "decode_joules": dec_j, "wh": j / 3600.0}
        lines.append(f"  one request of {I:,.0f} in / {O:,.0f} out: {j:,.4g} J = {j / 3600:,.3g} Wh (prefill"
                     f" {pre.watts * pre.step_s:,.3g} J, decode {dec_j:,.3g} J at batch {B:,.0f})")
    for a in power.assumptions + fac.assumptions:
        lines.append(f"  assumption: {a}")
    _finish(json_, rec, lines)


@command("tco")
def tco_cmd(
    system: SystemOpt,
    capex: Annotated[Optional[str], typer.Option("--capex-usd-per-chip", help="Purchase price per chip with its share of the server ($).")] = None,
    years: Annotated[Optional[float], Num("--years", help="Years the capital is recovered over.")] = None,
    cost_of_capital: Annotated[Optional[float], Num("--cost-of-capital", help="Annual cost of capital (0.1 = 10 %).")] = None,
    usd_per_kwh: Annotated[Optional[float], Num("--usd-per-kwh", help="Electricity price ($ per kWh).")] = None,
    pue: Annotated[Optional[float], Num("--pue", help="Power usage effectiveness (≥ 1).")] = None,
    facility_cost: Annotated[Optional[float], Num("--facility-usd-per-kw-month", help="Facility (colocation) $ per kW of IT power per month.")] = None,
    utilisation: Annotated[float, Num("--utilisation", help="Share of hours the chip is busy (0–1).")] = 0.7,
    board_w: Annotated[Optional[float], Num("--board-w", help="Board power limit per chip (W), where the catalog has none or to replace it.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="With --price-sheet: owning vs buying this model's tokens.")] = None,
    price_sheet: Annotated[Optional[str], typer.Option("--price-sheet", help="An API price sheet (`tokenmath prices sheets`) to compare with.")] = None,
    batch: Annotated[str, typer.Option("--batch", help="With --model: sequences per replica.")] = "256",
    context: Annotated[str, typer.Option("--context", help="With --model: context (tokens).")] = "4096",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """What owning a chip costs per hour: capital (an annuity at the cost of capital), electricity at the utilisation, facility; the rental price beside it."""
    from .. import energy as en

    cat = _catalog(catalog)
    s = cat.system(system)
    fac = en.facility(pue=pue, usd_per_kwh=usd_per_kwh, facility_usd_per_kw_month=facility_cost,
                      cost_of_capital=cost_of_capital, years=years)
    power = en.chip_power(s, overrides={"board_w": board_w})
    t = en.tco(s, capex_usd=None if capex is None else _num(capex, "--capex-usd-per-chip"), utilisation=utilisation,
               fac=fac, power=power)
    rec = {k: getattr(t, k) for k in ("system", "capex_usd", "capex_usd_per_chip_hour", "power_usd_per_chip_hour",
                                      "facility_usd_per_chip_hour", "usd_per_chip_hour", "rental_usd_per_chip_hour",
                                      "utilisation", "average_chip_w", "capital_recovery_factor")}
    rec |= {"host_w": power.host_w, "usd_per_busy_chip_hour": en.busy_chip_hour_usd(t),
            "usd_per_busy_chip_hour_means": "the owning cost per hour ÷ utilisation: what `--cost tco` charges a busy "
                                             "chip-hour, since tokens are made only in the busy hours"}
    rec |= {"pue": fac.pue, "usd_per_kwh": fac.usd_per_kwh, "facility_usd_per_kw_month": fac.facility_usd_per_kw_month,
            "cost_of_capital": fac.cost_of_capital, "years": fac.years, "sources": list(t.sources),
            "assumptions": list(t.assumptions)}
    rent = "no rental price in the catalog" if t.rental_usd_per_chip_hour is None else \
        f"rented: ${t.rental_usd_per_chip_hour:,.2f}/chip-hour ({t.usd_per_chip_hour / t.rental_usd_per_chip_hour:.2f}× owned/rented)"
    busy = en.busy_chip_hour_usd(t)
    lines = [f"{s.name}: owning one chip costs ${t.usd_per_chip_hour:,.3f} per hour at {t.utilisation:.0%} utilisation"
             + ("" if busy is None else f" = ${busy:,.3f} per busy chip-hour (what --cost tco charges a token)") + f"; {rent}",
             f"  capital   ${t.capex_usd_per_chip_hour:,.3f}/h  (${t.capex_usd:,.0f} × CRF {t.capital_recovery_factor:.4f} at"
             f" {fac.cost_of_capital:.0%} over {fac.years:g} years / 8,766 h)",
             f"  power     ${t.power_usd_per_chip_hour:,.3f}/h  (({t.average_chip_w:,.0f} W average chip + {power.host_w:,.0f} W"
             f" host) × PUE {fac.pue:g} × ${fac.usd_per_kwh:g}/kWh)",
             f"  facility  ${t.facility_usd_per_chip_hour:,.3f}/h  (${fac.facility_usd_per_kw_month:g}/kW-month on the provisioned IT power)"]
    if (model is None) != (price_sheet is None):
        raise TokenmathError("--model and --price-sheet go together (owning vs buying that model's tokens)")
    if model is not None:
        from ..estimate import estimate_pass
        from ..profiles import choose
        m, sheet = cat.model(model), cat.price_sheet(price_sheet)
        B, L = _count(batch, "--batch"), _count(context, "--context", allow_zero=True)
        est = estimate_pass(m, s, B, L, profile=choose("calibrated", system=s))
        chips = est.op.chips
        tps = float(est.tokens_per_s_per_chip)
        owned = t.usd_per_chip_hour / (tps * t.utilisation * 3600 / 1e6) if t.utilisation > 0 else None
        u_star = en.breakeven_utilisation(t, tokens_per_s_per_chip=tps, api_usd_per_mtok=sheet.output_usd_per_mtok)
        rec["versus_api"] = {"model": m.name, "price_sheet": sheet.name, "api_output_usd_per_mtok": sheet.output_usd_per_mtok,
                             "tokens_per_s_per_chip": tps, "owned_usd_per_mtok": owned, "breakeven_utilisation": u_star,
                             "estimate": est.label, "batch": B, "context": L, "chips": chips}
        lines.append(f"  vs {sheet.name} (${sheet.output_usd_per_mtok:g}/Mtok output): {m.name} at B = {B:,.0f}, L = {L:,.0f}"
                     f" makes {tps:,.0f} tokens/s per chip ({est.label}); owned at {t.utilisation:.0%}: "
                     + ("-" if owned is None else f"${owned:,.4g}/Mtok")
                     + ("; owning never beats the API" if u_star is None else f"; owning wins above {u_star:.1%} utilisation"))
    lines += [f"  assumption: {x}" for x in t.assumptions]
    lines.append(f"  sources: {len(t.sources)} figures from energy.toml (--json lists each; docs/energy-sources.md)")
    _finish(json_, rec, lines)
