"""`tokenmath explore`: the planner's best estimate over hypothetical chips, models and workloads."""

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from . import (
    JsonOpt, CatalogOpt, Num, PLOT_FORMATS, command, _catalog, _finish, _count, progress, TokenmathError, err, si, DashboardOpt,
)
from ..units import sig

MAX_FRONT_LINES = 20


@command("explore")
def explore_cmd(
    model: Annotated[str, typer.Option("--model", help="Catalog names or config.json paths, comma-separated.")],
    base_chip: Annotated[str, typer.Option("--base-chip", help="The catalog system every variant starts from (comma-separate several: an axis; hypothetical ones from a --catalog TOML).")],
    parquet: Annotated[Path, typer.Option("--out", help="Where the rows go: a folder of Parquet parts (a Parquet dataset, e.g. out.parquet/); a stopped run given the same arguments resumes there.")],
    vary: Annotated[Optional[List[str]], typer.Option("--vary", help="FIELD=START:STOP:N or FIELD=v1,v2,... (repeatable); FIELD as the catalog spells it: hbm_bytes_per_s, bf16_flops_per_s, hbm_bytes, scaleup_chips, scaleup_bytes_per_s, ... (the workload's input_tokens, output_tokens, min_tokens_per_s_per_user too; tp, ep, pp search only the layouts with that degree).")] = None,
    input_tokens: Annotated[str, typer.Option("--input-tokens", help="Prompt tokens per request (I).")] = "2000",
    output_tokens: Annotated[str, typer.Option("--output-tokens", help="Generated tokens per request (O).")] = "500",
    min_user: Annotated[Optional[float], Num("--min-tokens-per-s-per-user", help="SLO: decode speed each user sees.")] = None,
    objective: Annotated[str, typer.Option("--objective", help="What each point answers with: cost (the cheapest deployment meeting the SLO; default) or speed (the fastest per user: the latency floor).")] = "cost",
    memory_gb: Annotated[Optional[str], typer.Option("--memory-gb", help="Memory budget in GB (decimal) for the run and its workers; sets the chunk size (default: a quarter of this machine's memory, at most 2).")] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="'processes' (a pool of worker processes, one per core), 'local' (a Dask LocalCluster on 127.0.0.1) or a Dask scheduler address tcp://HOST:PORT (default: in-process).")] = None,
    dashboard: DashboardOpt = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an exploration already in --out (default: resume it when its space is the same).")] = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw a heat map of $/Mtok over the first two chip axes to this file.")] = None,
    plot_frontier: Annotated[Optional[Path], typer.Option("--plot-frontier", help="Draw the Pareto front ($/Mtok against tokens/s per user) to this file.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Explore hypothetical chips (a catalog system with fields varied) × models × workloads: each point the planner's cheapest deployment under the estimate, with the roofline bound beside it; rows to Parquet, the Pareto front printed."""
    from .. import exploration as ex
    from ..paths import output_path

    if plot_frontier is not None:
        plot_frontier = output_path(plot_frontier, "--plot-frontier", replaces=True, suffixes=PLOT_FORMATS)
    if dashboard and scheduler != "local":
        raise TokenmathError("--dashboard shows the local cluster's Dask dashboard: it needs --scheduler local")
    ex.need_pyarrow()
    cat = _catalog(catalog)
    mem = None
    if memory_gb is not None:
        mem = ex.parse_bounded(memory_gb, "count", what="--memory-gb", low=0, high=1e4, meaning="GB of memory")
    axes = [ex.parse_axis(v) for v in (vary or [])]
    I, O = _count(input_tokens, "--input-tokens"), _count(output_tokens, "--output-tokens")
    chip_axes = [a.field for a in axes if ex.FIELDS[a.field].where != "workload"]
    if plot is not None and len(chip_axes) < 2:
        raise TokenmathError("--plot draws a heat map over two chip axes: give two --vary chip, system or layout fields")
    from ..parallel import options

    total = len([x for x in model.split(",") if x.strip()]) * len([x for x in base_chip.split(",") if x.strip()])
    for a in axes:
        total *= len(a.values)
    with progress("exploring", total, json_) as update, options(dashboard=dashboard, notify=err.print):
        r = ex.explore(model=[x.strip() for x in model.split(",") if x.strip()],
                       base_chip=[x.strip() for x in base_chip.split(",") if x.strip()], vary=axes,
                       input_tokens=I, output_tokens=O, min_tokens_per_s_per_user=min_user, objective=objective, out=parquet,
                       memory_gb=mem, scheduler=scheduler, force=force, catalog=cat,
                       progress=lambda done, n: update(done, total=n, description=f"exploring: {done:,} of {n:,} points"))
    if plot is not None:
        from .. import plots

        xs, ys, grid = ex.read_grid(r.out, chip_axes[0], chip_axes[1])
        plots.explore_heatmap(xs, ys, grid, x=chip_axes[0], y=chip_axes[1],
                              title=f"{r.space['models'][0]} from {r.space['base_chips'][0]}: $/Mtok (estimate)",
                              path=plot)
        err.print(f"wrote {plot}")
    if plot_frontier is not None:
        from .. import plots

        plots.explore_frontier(r, title=f"from {base_chip}: Pareto front (estimate)", path=plot_frontier)
        err.print(f"wrote {plot_frontier}")
    _finish(json_, r.to_dict(), render(r))


def _shown(field: str, v: float) -> str:
    from ..exploration import FIELDS

    unit = FIELDS[field].unit
    if unit == "USD/chip-hour":
        return f"${sig(v, 4)}/chip-hour"
    if FIELDS[field].where in ("workload", "layout") or unit == "chips":
        return f"{sig(v, 6)}"
    return si(v, unit)


def _axes_text(rec: dict, fields) -> str:
    return ", ".join(f"{f} {_shown(f, rec[f])}" for f in fields if rec.get(f) is not None)


def render(r) -> list[str]:
    fields = [a["field"] for a in r.space["axes"]]
    many = len(r.space["base_chips"]) > 1
    lines = [f"explored {r.points:,} points ({r.feasible:,} meet the SLO) in {r.seconds:,.1f} s "
             f"({r.scheduler}; {r.chunks:,} chunk(s) of up to {r.chunk_points:,}"
             + (f", {r.chunks_skipped:,} read back" if r.chunks_skipped else "") + f") -> {r.out}",
             f"  every number: {r.estimate}"]
    for s in r.summary:
        b = s["best"]
        head = f"  {s['model']}, I = {s['input_tokens']:,.0f}, O = {s['output_tokens']:,.0f}: {s['feasible']:,} of {s['points']:,} feasible"
        if b is None:
            lines.append(head + "; none meets the SLO")
            continue
        cost = (f"${sig(b['usd_per_mtok'], 3)}/Mtok (80 %: {sig(b['usd_per_mtok_lo'], 3)}–{sig(b['usd_per_mtok_hi'], 3)}; "
                f"roofline bound ${sig(b['roofline_usd_per_mtok'], 3)})" if b["usd_per_mtok"] is not None
                else f"{b['tokens_per_s_per_chip']:,.0f} tokens/s per chip")
        at = ", ".join(x for x in ((b["base_chip"] if many or not fields else ""), _axes_text(b, fields)) if x)
        best = "fastest" if r.space.get("objective") == "speed" else "best"
        lines.append(head + f"; {best} {cost}, {b['tokens_per_s_per_user']:,.0f} tok/s/user, at {at}")
    lines.append(f"  Pareto front ($/Mtok or tokens/s per chip against tokens/s per user), {len(r.pareto)} point(s):")
    for p in r.pareto[:MAX_FRONT_LINES]:
        value = (f"${sig(p['usd_per_mtok'], 3)}/Mtok" if p["usd_per_mtok"] is not None
                 else f"{p['tokens_per_s_per_chip']:,.0f} tok/s/chip")
        j = "" if p.get("joules_per_token") is None else f", {sig(p['joules_per_token'], 2)} J/token"
        lines.append(f"    {p['model']}: {value}, {p['tokens_per_s_per_user']:,.0f} tok/s/user, "
                     f"{p['tokens_per_s_per_chip']:,.0f} tok/s/chip{j}; TP{p['tp']} EP{p['ep']} PP{p['pp']} "
                     f"B={p['batch']:,.0f} {p['weight_dtype']}, binding {p['binding']}"
                     + (f"; {p['base_chip']}" if many else "") + (f"; {_axes_text(p, fields)}" if fields else ""))
    if len(r.pareto) > MAX_FRONT_LINES:
        lines.append(f"    … {len(r.pareto) - MAX_FRONT_LINES} more in --json")
    lines += [f"  note: {n}" for n in r.notes]
    return lines
