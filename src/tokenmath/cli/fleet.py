"""`tokenmath fleet`: a fleet sized from requests under tail-latency SLOs, verified in simulation."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import ForceOpt, CatalogOpt, EngineOpt, JsonOpt, ModelOpt, Num, _catalog, _count, _finish, _names, _num, command, err, progress, CostOpt, _priced

EXPORT_ENGINES = ("vllm", "sglang", "trtllm")


@command("fleet")
def fleet_cmd(
    model: ModelOpt,
    request_rate: Annotated[Optional[str], typer.Option("--request-rate", help="Requests per second to serve.")] = None,
    input_tokens: Annotated[Optional[str], typer.Option("--input-tokens", help="Prompt tokens per request (mean).")] = None,
    output_tokens: Annotated[Optional[str], typer.Option("--output-tokens", help="Generated tokens per request (mean).")] = None,
    trace: Annotated[Optional[Path], typer.Option("--trace", help="A trace: Azure LLM CSV (TIMESTAMP,ContextTokens,GeneratedTokens) or JSON lines; gives the rate and lengths and drives the simulation.")] = None,
    ttft_p99: Annotated[Optional[float], Num("--ttft-p99-s", help="SLO: 99th percentile time to first token (s).")] = None,
    tpot_p99: Annotated[Optional[float], Num("--tpot-p99-s", help="SLO: 99th percentile time per output token (s).")] = None,
    ttft_p50: Annotated[Optional[float], Num("--ttft-p50-s", help="SLO: median time to first token (s).")] = None,
    tpot_p50: Annotated[Optional[float], Num("--tpot-p50-s", help="SLO: median time per output token (s).")] = None,
    systems: Annotated[Optional[str], typer.Option("--systems", help="Comma-separated systems (default: the whole catalog).")] = None,
    disaggregation: Annotated[str, typer.Option("--disaggregation", help="auto (the cheaper that meets the SLOs), on (prefill and decode pools), off.")] = "auto",
    prefix_tokens: Annotated[Optional[str], typer.Option("--prefix-tokens", help="Shared prompt prefix per request (tokens).")] = None,
    prefix_hit_rate: Annotated[Optional[float], Num("--prefix-hit-rate", help="Share of requests whose prefix is in the cache (0-1).")] = None,
    objective: Annotated[str, typer.Option("--objective", help="cost ($/h; chips where no price), chips, or energy (J per output token).")] = "cost",
    verify: Annotated[Optional[int], Num("--verify", help="The most candidate fleets verified (simulated at steady state and sized down; default 12); the search stops sooner once no unverified one can be cheaper.")] = None,
    weight_dtypes: Annotated[Optional[str], typer.Option("--weight-dtypes", help="Comma-separated weight dtypes to try on every system (default: the checkpoint's, FP8, and FP4 where the chip has it).")] = None,
    export: Annotated[Optional[str], typer.Option("--export", help="Launch commands for the chosen pools: vllm | sglang | trtllm.")] = None,
    hf_model: Annotated[Optional[str], typer.Option("--hf-model", help="Checkpoint (Hugging Face repo id or path) for --export, served as stored (default: the catalog's hf_repo, or its published checkpoint in the planned weight dtype).")] = None,
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="One price for every system (else the catalog's).")] = None,
    engine: EngineOpt = None, cost: CostOpt = "rental",
    rate_curve: Annotated[Optional[str], typer.Option("--rate-curve", help="A rate over a day: CSV `time_s,requests_per_s` or JSON lines (example:deepseek-v3-day is DeepSeek's published day, shipped); the fleet is verified at its peak and sized interval by interval (needs --input-tokens and --output-tokens).")] = None,
    load_gb_per_s: Annotated[Optional[str], typer.Option("--load-gb-per-s", help="With --rate-curve: GB/s per chip at which a started replica loads its weights (default: the system's scale-out NIC, a floor on the warm-up).")] = None,
    mtp_draft_tokens: Annotated[Optional[int], Num("--mtp-draft-tokens", help="MTP / speculative decoding in decode pools: tokens drafted per step (verified in one pass over 1 + k tokens).")] = None,
    mtp_acceptance: Annotated[Optional[float], Num("--mtp-acceptance", help="Acceptance rate of each drafted token (0-1); e.g. 0.85-0.9 for DeepSeek-V3's MTP (arXiv 2412.19437 §5.4.3).")] = None,
    prefix_cache_tier: Annotated[Optional[str], typer.Option("--prefix-cache-tier", help="Where the prefix cache lives: hbm | dram | ssd; its capacity limits the hit rate and its bandwidth adds the fetch to each prefill pass.")] = None,
    prefix_count: Annotated[Optional[int], Num("--prefix-count", help="With --prefix-cache-tier: distinct prefixes in use, equally popular (default: a trace's prefix ids, else 1 shared by every request).")] = None,
    prefix_cache_gb: Annotated[Optional[str], typer.Option("--prefix-cache-gb", help="The prefix cache's capacity in GB for the whole fleet (default: the tier's capacity on the fleet's chips).")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw cost vs tokens/s per user to this file (with --rate-curve: chips over the day beside the rate).")] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Which hardware, how many chips, what layout and what cost serve a request rate under p50/p99 TTFT and TPOT SLOs: aggregated or disaggregated prefill/decode, verified at steady state in simulation and sized down while the SLOs hold."""
    from .. import fleet as fl
    from .. import report as rp
    from ..errors import TokenmathError
    from ..units import check_dtype

    if export is not None and export not in EXPORT_ENGINES:
        raise TokenmathError(f"--export = {export!r}; expected one of {', '.join(EXPORT_ENGINES)}")
    cat = _catalog(catalog)
    m = cat.model(model)
    if export is not None:  # refuse a launch that cannot be written before the fleet is sized
        from ..export import check_model_ref

        if hf_model is not None:
            check_model_ref(hf_model, "--hf-model")
        elif not m.hf_repo:
            raise TokenmathError(f"--export needs the checkpoint to serve: model {m.name!r} has no Hugging Face repo "
                                 "id (hf_repo in the catalog, _name_or_path in its config.json); pass --hf-model")
    names = _names(systems, "--systems", "system name") or sorted(cat.systems)
    syss = [_priced(cat.system(n), cost, strict=False) for n in names]
    tr = None
    if trace is not None:
        from ..workload import read_trace

        tr = read_trace(trace)
    rate = None if request_rate is None else _num(request_rate, "--request-rate")
    I = None if input_tokens is None else _count(input_tokens, "--input-tokens")
    O = None if output_tokens is None else _count(output_tokens, "--output-tokens")
    P = 0.0 if prefix_tokens is None else _count(prefix_tokens, "--prefix-tokens", allow_zero=True)
    if P and prefix_hit_rate is None:
        raise TokenmathError("--prefix-tokens needs --prefix-hit-rate (the share of requests whose prefix is cached)")
    price = None if usd_per_chip_hour is None else _num(usd_per_chip_hour, "--usd-per-chip-hour")
    wds = [check_dtype(x) for x in _names(weight_dtypes, "--weight-dtypes", "dtype")] if weight_dtypes is not None else "deployable"
    if export is not None and hf_model is None and weight_dtypes is None:
        # plan only what the engine can launch: dtypes with a checkpoint (or load-time quantisation) for it
        from ..export import exportable_weight_dtypes

        wds = exportable_weight_dtypes(m, syss, export)
    slo = fl.Slo(ttft_p99_s=ttft_p99, tpot_p99_s=tpot_p99, ttft_p50_s=ttft_p50, tpot_p50_s=tpot_p50)
    extra = {}
    if mtp_draft_tokens is not None or mtp_acceptance is not None:
        if mtp_draft_tokens is None or mtp_acceptance is None:
            raise TokenmathError("--mtp-draft-tokens and --mtp-acceptance go together (tokens drafted per step and the"
                                 " share of each accepted)")
        extra.update(mtp_draft_tokens=int(mtp_draft_tokens), mtp_acceptance=float(mtp_acceptance))
    if prefix_count is not None and prefix_cache_tier is None:
        raise TokenmathError("--prefix-count needs --prefix-cache-tier (the cache whose capacity it fills)")
    if prefix_cache_tier is not None or prefix_cache_gb is not None:
        if prefix_cache_tier is None:
            raise TokenmathError("--prefix-cache-gb needs --prefix-cache-tier (hbm, dram or ssd)")
        extra.update(prefix_cache_tier=prefix_cache_tier, storage=cat.storage,
                     prefix_count=None if prefix_count is None else int(prefix_count),
                     prefix_cache_bytes=None if prefix_cache_gb is None else 1e9 * _num(prefix_cache_gb, "--prefix-cache-gb"))
    if rate_curve is not None:
        return _day(m, syss, rate_curve, I, O, slo, disaggregation, P, prefix_hit_rate, objective, price, engine, verify,
                    wds, load_gb_per_s, plot, json_, rate, tr, export, extra)
    if load_gb_per_s is not None:
        raise TokenmathError("--load-gb-per-s is the warm-up of replicas started over a day: it needs --rate-curve")
    with progress("screening fleets", max(verify or fl.VERIFY_DEFAULT, 1), json_) as update:
        result = fl.fleet(m, syss, request_rate=rate, input_tokens=I, output_tokens=O, slo=slo,
                          disaggregation=disaggregation, prefix_tokens=P, prefix_hit_rate=prefix_hit_rate or 0.0,
                          objective=objective, usd_per_chip_hour=price, engine=engine, trace=tr,
                          verify=fl.VERIFY_DEFAULT if verify is None else verify,
                          weight_dtypes=wds, **extra,
                          progress=lambda done, total, what: update(done, total=total, description=what))
    commands, refused = None, None
    if export is not None and result.best is not None:
        from ..export import fleet_launches

        try:
            commands = fleet_launches(result.best, export, model=m, hf_model=hf_model)
        except TokenmathError as e:  # show the fleet, then the one sentence (exit 2): no command that cannot start
            refused = e
    if plot is not None:
        from .. import plots

        plots.fleet_frontier(result, path=plot)
        err.print(f"wrote {plot}")
    _finish(json_, rp.fleet_record(result, commands), rp.render_fleet(result, commands))
    if refused is not None:
        raise TokenmathError(f"--export {export}: {refused}")


def _day(m, syss, path, I, O, slo, disaggregation, P, prefix_hit_rate, objective, price, engine, verify, wds,
         load_gb_per_s, plot, json_, rate, trace, export, extra) -> None:
    """`fleet --rate-curve FILE`: the fleet over a day (fleet.fleet_day)."""
    from .. import fleet as fl
    from ..errors import TokenmathError
    from ..ratecurve import read_rate_curve

    if rate is not None or trace is not None:
        raise TokenmathError("--rate-curve gives the rate over the day: leave out --request-rate and --trace")
    if I is None or O is None:
        raise TokenmathError("--rate-curve needs --input-tokens and --output-tokens (the mean request)")
    if export is not None:
        raise TokenmathError("--export writes the launch of one fleet: ask `fleet` at the rate you want launched,"
                             " without --rate-curve")
    curve = read_rate_curve(path)
    load = None if load_gb_per_s is None else 1e9 * _num(load_gb_per_s, "--load-gb-per-s")
    with progress("screening fleets at the peak rate", max(verify or fl.VERIFY_DEFAULT, 1), json_) as update:
        day = fl.fleet_day(m, syss, curve, input_tokens=I, output_tokens=O, slo=slo, load_bytes_per_s=load,
                           disaggregation=disaggregation, prefix_tokens=P, prefix_hit_rate=prefix_hit_rate or 0.0,
                           objective=objective, usd_per_chip_hour=price, engine=engine,
                           verify=fl.VERIFY_DEFAULT if verify is None else verify, weight_dtypes=wds, **extra,
                           progress=lambda done, total, what: update(done, total=total, description=what))
    if plot is not None:
        from .. import plots

        plots.fleet_over_day(day, path=plot)
        err.print(f"wrote {plot}")
    _finish(json_, day_record(day), render_day(day))


def day_record(d) -> dict:
    """The JSON of a fleet over a day: the issue's keys (hours, chips_average, chips_peak,
    nodes_average, nodes_peak, usd_per_day, warmup_usd_per_day) and the peak fleet it was sized from."""
    from .. import report as rp

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
            "pools": pools, "hours": hours, "notes": list(d.notes), "peak_fleet": rp.fleet_record(d.plan)}


def render_day(d) -> list[str]:
    """Plain words: the day's figures, the pools with their verified capacity, then the intervals
    where the fleet changes size."""
    usd = "" if d.usd_per_day is None else (f", ${d.usd_per_day:,.0f} per day (warm-up ${d.warmup_usd_per_day:,.2f})")
    lines = [f"{d.model} over the day ({d.curve or 'rate curve'}, {len(d.intervals)} intervals, {d.span_s / 3600:,.4g} h,"
             f" {d.requests_per_day:,.0f} requests per day)",
             f"  chips: {d.chips_average:,.1f} on average, {d.chips_peak:,.0f} at peak; nodes: {d.nodes_average:,.2f} on"
             f" average, {d.nodes_peak:,} at peak{usd}"]
    sim = d.plan.best.simulated
    if sim is not None:
        from ..units import seconds

        lines.append(f"  verified at the peak ({d.plan.request_rate:,.4g} requests/s, {d.plan.best.mode}): TTFT p99"
                     f" {seconds(sim.ttft_p99_s)}, TPOT p50 {seconds(sim.tpot_p50_s)}, p99 {seconds(sim.tpot_p99_s)};"
                     f" {'meets' if sim.meets_slo else 'misses'} the SLOs at steady state ({d.plan.estimate})")
    for p, c, t, tn in zip(d.pools, d.capacity_requests_per_s, d.load_s, d.tokens_per_s_per_node_at_peak):
        what = "input (hits included)" if p.role == "prefill" else "output"
        mtp = f", MTP {p.mtp_draft_tokens} draft(s)" if p.mtp_draft_tokens else ""
        lines.append(f"    {p.role:<9} {p.system:<12} TP{p.tp} EP{p.ep} PP{p.pp} = {p.chips_per_replica} chips each{mtp},"
                     f" {p.replicas} replicas at peak, verified {c:,.4g} requests/s per replica ({tn:,.0f} {what}"
                     f" tokens/s per node), weights load in {t:,.3g} s")
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
