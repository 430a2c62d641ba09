"""`tokenmath layout | plan | bubble`: cluster layouts, the planner, pipeline bubbles."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import (
    ForceOpt, DashboardOpt, Num, JsonOpt, CatalogOpt, WeightOpt, KvOpt, ComputeOpt, command, _catalog, _catalog_checked, _finish,
    _dtypes, _count, progress, EfficiencyOpt, EngineOpt, _profile, ModelOpt, SystemOpt, ContextOpt, err, _num,
    TokenmathError, CostOpt, _priced, _drawn,
)


# ---- cluster layouts and the planner ---------------------------------------------------------


@command("layout")
def layout_cmd(
    model: ModelOpt, system: SystemOpt,
    chips: Annotated[int, Num("--chips", help="Chips the layout uses: TP·EP·PP·DP with max(TP, EP) per stage.")],
    ep: Annotated[int, Num("--ep", help="Expert-parallel degree (chips per stage for MoE).")] = 1,
    pp: Annotated[int, Num("--pp", help="Pipeline stages.")] = 1,
    tp: Annotated[int, Num("--tp", help="Tensor-parallel degree.")] = 1,
    dp: Annotated[int, Num("--dp", help="Data-parallel replicas.")] = 1,
    batch: Annotated[str, typer.Option("--batch", help="Sequences per replica (all microbatches).")] = "1",
    context: ContextOpt = "4096",
    new_tokens: Annotated[str, typer.Option("--new-tokens", help="New tokens per sequence in the pass: 1 (default) is a decode step; a prompt's length (with --context 0) is a prefill pass.")] = "1",
    microbatches: Annotated[Optional[int], Num("--microbatches", help="Microbatches in flight (default PP).")] = None,
    redundant_experts: Annotated[str, typer.Option("--redundant-experts", help="Redundant expert copies spread over the EP ranks with the routed experts (DeepSeek's EPLB): a count, or 'auto' (default): the fewest that make the expert slots divide over EP (0 where EP divides the experts; 32 for DeepSeek-V3's 256 on EP144).")] = "auto",
    overlap: Annotated[str, typer.Option("--overlap", help="How the roofline bound combines the network with compute and HBM: 'full' (the max: the true floor; default) or 'none' (added: the estimate never overlaps them, so it is a floor of it too).")] = "full",
    expert_fetch: Annotated[str, typer.Option(help="Routed experts a step reads: 'expected' for its tokens (default) or 'all'; the estimate, the bound and the energy alike.")] = "expected",
    hop_latency: Annotated[Optional[str], typer.Option("--hop-latency", help="Latency of one hop between domains ('10us').")] = None,
    weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None, cost: CostOpt = "rental",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Memory per chip, network terms and the step of one layout (EP × PP × TP × DP): the estimate, with the roofline beside it."""
    from .. import report as rp

    from .. import layout as lay

    cat = _catalog(catalog)
    m, s = cat.model(model), _priced(cat.system(system), cost)
    B = _count(batch, "--batch")
    L = _count(context, "--context", allow_zero=True)
    S = _count(new_tokens, "--new-tokens")
    dt = _dtypes(weight_dtype, kv_dtype, compute_dtype)
    hop = lay.HOP_LATENCY_S_DEFAULT if hop_latency is None else _num(hop_latency, "--hop-latency")
    if expert_fetch not in ("expected", "all"):
        raise TokenmathError(f"--expert-fetch = {expert_fetch!r}; expected 'expected' or 'all'")
    layout = lay.Layout(tp=tp, ep=ep, pp=pp, dp=dp, microbatches=microbatches,
                        redundant_experts=_redundant(redundant_experts, m, ep))
    lay.check_layout(m, s, layout, chips=chips)
    # memory per chip, placement and the links' share (the layout's own arithmetic)
    st = lay.layout_step(m, s, layout, B, L, new_tokens=S, dtypes=dt, overlap=overlap, hop_latency_s=hop)
    from ..estimate import estimate_pass

    prof = _profile(efficiency, engine, s)
    est = estimate_pass(m, s, B, L, S, layout=layout, dtypes=dt, profile=prof, expert_fetch=expert_fetch,
                        overlap=overlap, hop_latency_s=hop)
    from ..energy import maybe_energy_of_pass

    en = maybe_energy_of_pass(est, s)
    from ..wide_ep import expert_parallel

    wep = expert_parallel(m, s, layout, est, engine=None if prof.kernels is None else prof.engine, dtypes=dt, context=L)
    rec = rp.layout_record(st, est) | rp.energy_record(en) | {"expert_parallel": rp.jsonable(wep)}
    lines = rp.render_layout(st, est, m, s) + rp.render_expert_parallel(wep) + ["  " + rp.energy_line(en)]
    _finish(json_, rec, lines)


def _redundant(value: str, model, ep: int) -> int:
    """--redundant-experts: 'auto' (the fewest that make the slots divide over EP) or a count."""
    from ..parallelism import redundant_experts_for

    if value.strip().lower() == "auto":
        return redundant_experts_for(model.moe.n_experts, ep) if model.moe is not None and ep > 1 else 0
    return int(_count(value, "--redundant-experts", allow_zero=True))


@command("plan")
def plan_cmd(
    model: ModelOpt,
    systems: Annotated[Optional[str], typer.Option("--systems", help="Comma-separated systems (default: the whole catalog).")] = None,
    input_tokens: Annotated[str, typer.Option("--input-tokens", help="Prompt tokens per request (I).")] = "2000",
    output_tokens: Annotated[str, typer.Option("--output-tokens", help="Generated tokens per request (O).")] = "500",
    min_user: Annotated[Optional[float], Num("--min-tokens-per-s-per-user", help="SLO: decode speed each user sees.")] = None,
    max_ttft: Annotated[Optional[float], Num("--max-ttft-s", help="SLO: time to first token (s) of one prompt on an idle replica, a lower end (`fleet` checks TTFT under load).")] = None,
    demand: Annotated[Optional[str], typer.Option("--demand-tokens-per-s", help="Total output tokens/s to serve.")] = None,
    weight_dtypes: Annotated[Optional[str], typer.Option("--weight-dtypes", help="Comma-separated weight dtypes to try (default: the checkpoint's, FP8, and FP4 where the chip has it).")] = None,
    kv_dtype: KvOpt = "bf16",
    overlap: Annotated[str, typer.Option("--overlap", help="How the roofline bound combines the network with compute and HBM: full (max; default) | none (added).")] = "full",
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="One price for every system (else the catalog's).")] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="'processes' (a pool of worker processes, one per core), 'local' (a Dask LocalCluster on 127.0.0.1) or a Dask scheduler address (default: in-process).")] = None,
    dashboard: DashboardOpt = False,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    objective: Annotated[str, typer.Option("--objective", help="cost ($/Mtok; tokens/s per chip where unpriced) or energy (J per output token).")] = "cost",
    pool: Annotated[str, typer.Option("--pool", help="colocated (default: prompts chunked into the decode steps) or decode (the decode pool of a prefill/decode-disaggregated deployment: no prompt chunks in its steps).")] = "colocated",
    cost: CostOpt = "rental",
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw the frontier to this file.")] = None,
    plot_energy: Annotated[Optional[Path], typer.Option("--plot-energy", help="Draw $/Mtok against J/token over the frontier to this file.")] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Cheapest way to serve a model under SLOs, searched over layouts × batch × dtypes on the catalog (the estimate; --efficiency roofline for the bound)."""
    from .. import api
    from ..parallel import options

    with progress("planning", 1, json_) as update, options(dashboard=dashboard, notify=err.print):
        r = api.plan(model, systems=systems, input_tokens=input_tokens, output_tokens=output_tokens,
                     min_tokens_per_s_per_user=min_user, max_ttft_s=max_ttft, demand_tokens_per_s=demand,
                     weight_dtypes=weight_dtypes, kv_dtype=kv_dtype, overlap=overlap,
                     usd_per_chip_hour=usd_per_chip_hour, scheduler=scheduler, efficiency=efficiency, engine=engine,
                     objective=objective, cost=cost, catalog=catalog, pool=pool,
                     progress=lambda done, total, name: update(done, total=total, description=f"planning: {name}"))
    _drawn(r, plot)
    if plot_energy is not None:
        api.plot_plan_energy(r, plot_energy)
        err.print(f"wrote {plot_energy}")
    _finish(json_, r.record, r.lines)


@command("bubble")
def bubble_cmd(
    schedule: Annotated[str, typer.Option("--schedule", help="gpipe | 1f1b | interleaved | zb-h1 | zero-bubble")],
    pp: Annotated[int, Num("--pp", help="Pipeline stages.")],
    microbatches: Annotated[int, Num("--microbatches", help="Microbatches per step (m).")],
    virtual_stages: Annotated[int, Num("--virtual-stages", help="Model chunks per device (interleaved).")] = 1,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Training pipeline bubble and activation memory of a schedule, with a timeline."""
    from .. import report as rp

    from .. import layout as lay

    _catalog_checked(catalog)

    b = lay.bubble(schedule, pp, microbatches, virtual_stages)
    drawn = lay.timeline(schedule, pp, microbatches) if schedule in ("gpipe", "1f1b") and pp * microbatches <= 400 else []
    rec = rp.jsonable(b) | {"timeline": drawn}
    lines = [
        f"{schedule}: PP {pp}, {microbatches} microbatches" + (f", {virtual_stages} virtual stages" if virtual_stages > 1 else ""),
        f"  bubble fraction = {b.bubble_fraction:.1%} of each device's step; activations of"
        f" {b.peak_activation_microbatches:g} microbatches held at once",
        f"  source: {b.source}",
    ] + [f"  {row}" for row in drawn]
    if drawn:
        lines.append("  one column per forward-pass time; digit n = forward of microbatch n (mod 10), letter = its"
                     " backward (a = 0, b = 1, …; two columns: backward costs 2 forwards), '.' = idle (the bubble)")
    _finish(json_, rec, lines)
