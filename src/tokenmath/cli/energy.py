"""`tokenmath energy | tco`: watts and joules of a pass at three levels (board, node, facility), the
energy of a request, and what owning a chip costs per hour."""

from typing import Annotated, Optional

import typer

from . import (
    Num, JsonOpt, CatalogOpt, WeightOpt, KvOpt, ComputeOpt, ChipsOpt, command, _finish, _count, _setup,
    EfficiencyOpt, EngineOpt, _profile, ModelOpt, SystemOpt, _catalog, _num, TokenmathError, seconds,
)

LevelOpt = Annotated[Optional[str], typer.Option("--level", help="Which power the headline watts and J/token are: board (the accelerators), node (boards + host: at the server's wall; the default here), facility (node × PUE).")]
FacilityOpt = Annotated[Optional[str], typer.Option("--facility", help="Facility class for the PUE: hyperscale, colo (the default) or average; --pue replaces it.")]
CapOpt = Annotated[Optional[float], Num("--power-cap-w", help="A board power cap (W per chip, as nvidia-smi -pl sets): the board draws at most this; compute-bound work slows.")]


def _w(x) -> str:
    return f"{x / 1e3:,.3g} kW" if x >= 1e3 else f"{x:,.0f} W"


@command("energy")
def energy_cmd(
    model: ModelOpt, system: SystemOpt,
    batch: Annotated[str, typer.Option("--batch", help="Sequences in the pass (B).")] = "64",
    context: Annotated[str, typer.Option("--context", help="Context length (L, tokens).")] = "4096",
    new_tokens: Annotated[str, typer.Option("--new-tokens", help="New tokens per sequence (S): 1 = decode.")] = "1",
    input_tokens: Annotated[Optional[str], typer.Option("--input-tokens", help="With --output-tokens: the energy of the work, per request and per output token (prefill included, continuous batching at --batch).")] = None,
    output_tokens: Annotated[Optional[str], typer.Option("--output-tokens", help="Output tokens of that request.")] = None,
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    level: LevelOpt = None, facility: FacilityOpt = None,
    pue: Annotated[Optional[float], Num("--pue", help="Power usage effectiveness of the facility (≥ 1), instead of its class's.")] = None,
    power_cap_w: CapOpt = None,
    idle_w: Annotated[Optional[float], Num("--idle-w", help="Idle power per chip (W), instead of the sourced figure.")] = None,
    host_w: Annotated[Optional[float], Num("--host-w", help="Host CPU/NIC/switch/fan power per chip (W), instead of the measured figure.")] = None,
    board_w: Annotated[Optional[float], Num("--board-w", help="Board power limit per chip (W), where the catalog has none or to replace it.")] = None,
    expert_fetch: Annotated[str, typer.Option(help="Routed experts a step reads: 'expected' for its tokens (default) or 'all'; the estimate, the bound and the power alike.")] = "expected",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Power and energy of a pass at three levels — board (the accelerators), node (boards + host, at the server's wall; the default), facility (× PUE) — watts by cause, J/token, tokens/s per MW; with --input-tokens/--output-tokens, the energy of a request and per output token, prefill included."""
    from .. import energy as en
    from .. import report as rp

    B, S = _count(batch, "--batch"), _count(new_tokens, "--new-tokens")
    given = chips
    lvl = en.check_level(level or en.SERVER_LEVEL)
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips, batch=B)
    if expert_fetch not in ("expected", "all"):
        raise TokenmathError(f"--expert-fetch = {expert_fetch!r}; expected 'expected' or 'all'")
    prof = _profile(efficiency, engine, s)
    power = en.chip_power(s, overrides={"idle_w": idle_w, "host_w": host_w, "board_w": board_w, "cap_w": power_cap_w})
    fac = en.facility(pue=pue, facility_class=facility)
    rep = None
    if m.is_totals_only:
        if not prof.is_roofline:
            raise TokenmathError(f"model {m.name!r} is defined by totals only; the per-operation estimate needs its "
                                 "architecture (a config.json) — use --efficiency roofline for the bound")
        if input_tokens is not None or output_tokens is not None:
            raise TokenmathError(f"model {m.name!r} is defined by totals only; the energy of a request needs its "
                                 "architecture (a config.json)")
    else:
        from ..estimate import replica

        rep = replica(m, s, B, L, S, chips=given, dtypes=dt)

    def one(b, ctx, new):
        """The energy of one pass: the estimate's step time, τ its new tokens per chip."""
        if rep is None:  # totals-only: the roofline on ideal sharding
            from ..roofline import step_time

            return en.energy_of(step_time(m, s, b, ctx, new, chips=chips, dtypes=dt, expert_fetch=expert_fetch), s,
                                power=power, fac=fac, level=lvl), None
        from ..estimate import estimate_pass

        est = estimate_pass(m, s, b, ctx, new, layout=rep.layout, dtypes=dt, profile=prof, expert_fetch=expert_fetch)
        return en.energy_of_pass(est, s, power=power, fac=fac, level=lvl), est

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
    rec["power"] = {"board_w": power.board_w, "idle_w": power.idle_w, "host_w": power.host_w,
                    "host_max_w": power.host_max_w, "power_cap_w": power.cap_w, "a0": power.a0, "a1": power.a1,
                    "pue": fac.pue, "facility_class": fac.facility_class,
                    "sources": list(power.sources + fac.sources), "assumptions": list(power.assumptions + fac.assumptions)}
    where = f"{rec['chips']} × {s.name}" + ("" if est is None else f" ({est.op.layout.describe()}"
                                             + (f", {est.op.billed_chips:g} billed" if est.op.billed_chips != est.op.chips else "") + ")")
    lines = ([] if rep is None or not rep.note else [f"note: {rep.note}"]) + [
        f"{m.name} on {where}, B = {B:,.0f}, L = {L:,.0f}, S = {S:,.0f} ({rec['estimate']} step {seconds(e.step_s)};"
        f" {e.tokens_per_chip:,.4g} new tokens per chip)",
        "  " + rp.energy_line(e),
        f"  levels: board {_w(e.board_watts)} ({e.board_watts_per_chip:,.0f} W per working chip), node {_w(e.node_watts)}"
        f" (+ host {_w(e.host_watts)}), facility {_w(e.facility_watts)} (× PUE {fac.pue:g}"
        + ("" if fac.facility_class is None else f", {fac.facility_class}") + ")",
        "  watts by cause: " + ", ".join(f"{k} {v / 1e3:,.3g} kW" for k, v in e.parts_w.items())
        + " (compute and memory: the activity above idle split by the bound's time shares)"]
    if power.cap_w is not None:
        lines.append(f"  power cap {power.cap_w:g} W: " + (f"binds; clocks at {e.clock_ratio:.0%}, the step {e.slowdown:.3f}× "
                                                          "slower (its compute-bound share at 1/clock)" if e.slowdown > 1
                                                          else "does not bind at this load"))
    if input_tokens is not None or output_tokens is not None:
        if input_tokens is None or output_tokens is None:
            raise TokenmathError("--input-tokens and --output-tokens go together (the energy of one request)")
        I, O = _count(input_tokens, "--input-tokens"), _count(output_tokens, "--output-tokens")
        r = en.request_energy(m, s, rep.layout, B, I, O, profile=prof, dtypes=dt, power=power, fac=fac, level=lvl,
                              idle_chips=float(rep.billed_chips - rep.chips))
        rec["request"] = {"input_tokens": I, "output_tokens": O, "batch": B, "level": lvl,
                          "time_per_output_token_s": r.time_per_output_token_s, "joules": r.joules, "wh": r.wh,
                          "joules_per_output_token": r.joules_per_output_token,
                          "board_joules": r.board_joules, "node_joules": r.node_joules, "facility_joules": r.facility_joules,
                          "board_joules_per_output_token": r.board_joules_per_output_token,
                          "node_joules_per_output_token": r.node_joules_per_output_token,
                          "facility_joules_per_output_token": r.facility_joules_per_output_token,
                          "prefill_share": r.prefill_share,
                          "counted": "all the replica's energy, prefill included, shared among the requests it serves "
                                     "at once (as ML.ENERGY counts: energy ÷ output tokens)"}
        lines.append(f"  one request of {I:,.0f} in / {O:,.0f} out at {B:,.0f} at once ({seconds(r.time_per_output_token_s)}"
                     f" per output token, prefill chunked in): {r.joules:,.4g} J = {r.wh:,.3g} Wh at the {lvl} level,"
                     f" {r.joules_per_output_token:,.3g} J per output token (board {r.board_joules_per_output_token:,.3g},"
                     f" node {r.node_joules_per_output_token:,.3g}, facility {r.facility_joules_per_output_token:,.3g});"
                     f" prefill {r.prefill_share:.0%} of it")
    for a in power.assumptions + fac.assumptions:
        lines.append(f"  assumption: {a}")
    _finish(json_, rec, lines)


@command("tco")
def tco_cmd(
    system: SystemOpt,
    capex: Annotated[Optional[str], typer.Option("--capex-usd-per-chip", help="Purchase price per chip with its share of the server or rack ($), before the cluster network.")] = None,
    years: Annotated[Optional[float], Num("--years", help="Years the capital is recovered over.")] = None,
    cost_of_capital: Annotated[Optional[float], Num("--cost-of-capital", help="Annual cost of capital (0.1 = 10 %).")] = None,
    usd_per_kwh: Annotated[Optional[float], Num("--usd-per-kwh", help="Electricity price ($ per kWh).")] = None,
    facility: FacilityOpt = None,
    pue: Annotated[Optional[float], Num("--pue", help="Power usage effectiveness (≥ 1), instead of the facility class's.")] = None,
    facility_cost: Annotated[Optional[float], Num("--facility-usd-per-kw-month", help="Facility (colocation) $ per kW of provisioned power per month.")] = None,
    utilisation: Annotated[float, Num("--utilisation", help="Share of hours the chip is busy (0–1).")] = 0.7,
    board_w: Annotated[Optional[float], Num("--board-w", help="Board power limit per chip (W), where the catalog has none or to replace it.")] = None,
    host_w: Annotated[Optional[float], Num("--host-w", help="Host power per chip (W), instead of the measured figure.")] = None,
    power_cap_w: CapOpt = None,
    no_network: Annotated[bool, typer.Option("--no-network", help="Leave the cluster network out of the capital (a single server).")] = False,
    other_capex_share: Annotated[Optional[float], Num("--other-capex-share", help="Storage, installation and other capital as a share of the server's capex (no sourced default: 0).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="With --price-sheet: owning vs buying this model's tokens.")] = None,
    price_sheet: Annotated[Optional[str], typer.Option("--price-sheet", help="An API price sheet (`tokenmath prices sheets`) to compare with.")] = None,
    batch: Annotated[str, typer.Option("--batch", help="With --model: sequences per replica.")] = "256",
    context: Annotated[str, typer.Option("--context", help="With --model: context (tokens).")] = "4096",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """What owning a chip costs per hour: capital (server + cluster network, an annuity at the cost of capital), electricity (board + measured host, × PUE) at the utilisation, facility rent on the provisioned power; the rental price beside it."""
    from .. import energy as en

    cat = _catalog(catalog)
    s = cat.system(system)
    fac = en.facility(pue=pue, facility_class=facility, usd_per_kwh=usd_per_kwh, facility_usd_per_kw_month=facility_cost,
                      cost_of_capital=cost_of_capital, years=years)
    power = en.chip_power(s, overrides={"board_w": board_w, "host_w": host_w, "cap_w": power_cap_w})
    est = None
    if (model is None) != (price_sheet is None):
        raise TokenmathError("--model and --price-sheet go together (owning vs buying that model's tokens)")
    if model is not None:
        from ..estimate import estimate_pass
        from ..profiles import choose
        m, sheet = cat.model(model), cat.price_sheet(price_sheet)
        B, L = _count(batch, "--batch"), _count(context, "--context", allow_zero=True)
        est = estimate_pass(m, s, B, L, profile=choose("calibrated", system=s))
    t = en.tco(s, capex_usd=None if capex is None else _num(capex, "--capex-usd-per-chip"), utilisation=utilisation,
               fac=fac, power=power, network=not no_network,
               other_capex_share=other_capex_share or 0.0)
    rec = {k: getattr(t, k) for k in ("system", "capex_usd", "server_capex_usd", "network_capex_usd", "other_capex_usd",
                                      "capex_usd_per_chip_hour", "power_usd_per_chip_hour", "facility_usd_per_chip_hour",
                                      "usd_per_chip_hour", "rental_usd_per_chip_hour", "utilisation", "average_chip_w",
                                      "busy_chip_w", "capital_recovery_factor", "provisioned_w")}
    rec |= {"host_w": power.host_w, "host_max_w": power.host_max_w, "usd_per_busy_chip_hour": en.busy_chip_hour_usd(t),
            "usd_per_busy_chip_hour_means": "the owning cost per hour ÷ utilisation: what `--cost tco` charges a busy "
                                             "chip-hour, since tokens are made only in the busy hours",
            "board_watts_per_chip_average": t.average_chip_w, "node_watts_per_chip_average": t.node_average_w,
            "facility_watts_per_chip_average": t.facility_average_w}
    rec |= {"pue": fac.pue, "facility_class": fac.facility_class, "usd_per_kwh": fac.usd_per_kwh,
            "facility_usd_per_kw_month": fac.facility_usd_per_kw_month, "cost_of_capital": fac.cost_of_capital,
            "years": fac.years, "sources": list(t.sources), "assumptions": list(t.assumptions)}
    rent = "no rental price in the catalog" if t.rental_usd_per_chip_hour is None else \
        f"rented: ${t.rental_usd_per_chip_hour:,.2f}/chip-hour ({t.usd_per_chip_hour / t.rental_usd_per_chip_hour:.2f}× owned/rented)"
    busy = en.busy_chip_hour_usd(t)
    cap = (f"${t.server_capex_usd:,.0f}" + (f" + network ${t.network_capex_usd:,.0f}" if t.network_capex_usd else "")
           + (f" + other ${t.other_capex_usd:,.0f}" if t.other_capex_usd else ""))
    lines = [f"{s.name}: owning one chip costs ${t.usd_per_chip_hour:,.3f} per hour at {t.utilisation:.0%} utilisation"
             + ("" if busy is None else f" = ${busy:,.3f} per busy chip-hour (what --cost tco charges a token)") + f"; {rent}",
             f"  capital   ${t.capex_usd_per_chip_hour:,.3f}/h  ({cap} × CRF {t.capital_recovery_factor:.4f} at"
             f" {fac.cost_of_capital:.0%} over {fac.years:g} years / 8,766 h)",
             f"  power     ${t.power_usd_per_chip_hour:,.3f}/h  (({t.average_chip_w:,.0f} W average board + {power.host_w:,.0f} W"
             f" host) × PUE {fac.pue:g} × ${fac.usd_per_kwh:g}/kWh: {t.facility_average_w:,.0f} W at the facility's meter)",
             f"  facility  ${t.facility_usd_per_chip_hour:,.3f}/h  (${fac.facility_usd_per_kw_month:g}/kW-month on the"
             f" provisioned {t.provisioned_w:,.0f} W: board limit + host rating)"]
    if model is not None:
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
