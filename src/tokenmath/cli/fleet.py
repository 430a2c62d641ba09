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
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw cost vs tokens/s per user to this file.")] = None,
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
    with progress("screening fleets", max(verify or fl.VERIFY_DEFAULT, 1), json_) as update:
        result = fl.fleet(m, syss, request_rate=rate, input_tokens=I, output_tokens=O, slo=slo,
                          disaggregation=disaggregation, prefix_tokens=P, prefix_hit_rate=prefix_hit_rate or 0.0,
                          objective=objective, usd_per_chip_hour=price, engine=engine, trace=tr,
                          verify=fl.VERIFY_DEFAULT if verify is None else verify,
                          weight_dtypes=wds,
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
