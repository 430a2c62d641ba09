"""`tokenmath simulate`: discrete-event serving of one replica."""

from typing import Annotated, Optional

import typer

from . import (
    MAX_SIMULATED_REQUESTS, Num, _names, JsonOpt, CatalogOpt, WeightOpt, KvOpt, ChipsOpt, command, _finish, _count,
    _setup, EfficiencyOpt, EngineOpt, _profile, ModelOpt, SystemOpt, TokenmathError, seconds, progress, DashboardOpt,
    err,
)


@command("simulate")
def simulate_cmd(
    model: ModelOpt, system: SystemOpt,
    rate: Annotated[str, typer.Option("--rate", help="Requests per second (Poisson); comma-separate to sweep.")] = "10",
    duration_s: Annotated[float, Num("--duration-s", help="Simulated seconds.")] = 600.0,
    input_tokens: Annotated[str, typer.Option("--input-tokens", help="Prompt tokens per request.")] = "1000",
    output_tokens: Annotated[str, typer.Option("--output-tokens", help="Output tokens per request.")] = "200",
    max_batch: Annotated[Optional[int], Num("--max-batch", help="Batch cap (default: what fits in HBM).")] = None,
    prefill: Annotated[str, typer.Option("--prefill", help="'first' (own step) or 'chunked' (folded into decode steps).")] = "chunked",
    chunk_tokens: Annotated[int, Num("--chunk-tokens", help="Prefill tokens per step when chunked.")] = 2048,
    cadence_s: Annotated[Optional[float], Num("--cadence-s", help="Fixed step time: a train departs every T.")] = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    seed: Annotated[int, Num("--seed", help="Random seed of the arrivals.")] = 0,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="For sweeps: 'processes' (a pool of worker processes, one per core), 'local' (a Dask LocalCluster on 127.0.0.1) or a Dask scheduler address.")] = None,
    dashboard: DashboardOpt = False,
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Discrete-event simulation of one replica: TTFT, time per output token and throughput (p50/p90/p99)."""
    from .. import report as rp
    from ..specs import Efficiency

    from .. import simulate as simmod

    rates = [float(_count(r, "--rate")) for r in _names(rate, "--rate", "rate")]
    if len(rates) > 100:
        raise TokenmathError(f"--rate lists {len(rates)} rates; sweep at most 100 at once")
    n_req = max(rates) * duration_s
    if n_req > MAX_SIMULATED_REQUESTS:
        raise TokenmathError(
            f"--rate {max(rates):g} × --duration-s {duration_s:g} = {n_req:.3g} simulated requests, beyond the"
            f" {MAX_SIMULATED_REQUESTS:,} tokenmath simulates; lower --rate or shorten --duration-s")
    n_in, n_out = _count(input_tokens, "--input-tokens"), _count(output_tokens, "--output-tokens")
    m, s, L, dt, chips = _setup(catalog, model, system, input_tokens, weight_dtype, kv_dtype, None, chips)
    eff, overhead = Efficiency(), 0.0
    prof = _profile(efficiency, engine, s)
    if not prof.is_roofline:
        from ..estimate import linearised

        eff, overhead = linearised(m, s, chips=chips, dtypes=dt, profile=prof, input_tokens=n_in, output_tokens=n_out)
    runs = [dict(rate_per_s=r, duration_s=duration_s, input_tokens=int(n_in),
                 output_tokens=int(n_out), chips=chips, max_batch=max_batch,
                 prefill=prefill, chunk_tokens=chunk_tokens, cadence_s=cadence_s, dtypes=dt, efficiency=eff,
                 overhead_s=overhead, seed=seed, serving_memory=not prof.is_roofline) for r in rates]
    from ..parallel import options

    with progress("simulating", len(runs), json_) as update, options(dashboard=dashboard, notify=err.print):
        results = simmod.simulate_many(m, s, runs, scheduler=scheduler, progress=lambda i, n, lab: update(i))
    label = "roofline" if prof.is_roofline else eff.label
    recs = [rp.jsonable(r) | {"rate_per_s": run["rate_per_s"], "estimate": label} for r, run in zip(results, runs)]
    lines = [f"{m.name} on {chips} × {s.name}: {duration_s:g} s of Poisson arrivals, prefill {prefill}, batch cap"
             f" {results[0].max_batch}" + (f", fixed cadence {seconds(cadence_s)}" if cadence_s else "") + f"; step times: {label}"]
    for rec in recs:
        lines.append(f"  {rec['rate_per_s']:g} req/s: {rec['output_tokens_per_s']:,.0f} output tokens/s, mean batch"
                     f" {rec['mean_batch']:,.0f}; TTFT p50 {seconds(rec['ttft_s']['p50'])} p99 {seconds(rec['ttft_s']['p99'])};"
                     f" per token p50 {seconds(rec['tpot_s']['p50'])}; completed {rec['completed']:,} of {rec['requests']:,}"
                     " (the percentiles are over these, the queue served after the last arrival; tokens/s over what"
                     " completes inside the run after its warm-up)")
    _finish(json_, recs[0] if len(recs) == 1 else {"runs": recs, "estimate": label}, lines)
