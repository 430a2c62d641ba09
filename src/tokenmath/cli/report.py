"""`tokenmath report`: a model on a system in plain words."""

from typing import Annotated, Optional

import typer

from . import (
    ForceOpt, Num, _check_finite, JsonOpt, CatalogOpt, WeightOpt, KvOpt, ComputeOpt, command, _catalog, _emit_json, _dtypes,
    _count, out, TokenmathError, EfficiencyOpt, EngineOpt, _profile,
)


# ---- the main job ------------------------------------------------------------------------------


@command("report")
def report_cmd(
    model: Annotated[str, typer.Option("--model", help="Catalog name or config.json path.")] = "deepseek-v3",
    system: Annotated[str, typer.Option("--system", help="Catalog system name.")] = "gb200-nvl72",
    context: Annotated[str, typer.Option("--context", help="Context length L (tokens).")] = "4096",
    chips: Annotated[Optional[int], Num("--chips", help="Chips per replica; default the scale-up domain.")] = None,
    weight_dtype: WeightOpt = None,
    kv_dtype: KvOpt = "bf16",
    compute_dtype: ComputeOpt = None,
    plots_dir: Annotated[Optional[str], typer.Option("--plots", help="Write the blackboard charts (PNG) to this folder.")] = None,
    force: ForceOpt = False,
    efficiency: EfficiencyOpt = "calibrated",
    engine: EngineOpt = None,
    json_: JsonOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """Explain a model on a system in plain words (default: DeepSeek-V3 on a GB200 NVL72, the lecture's example):
    each lecture quantity on the roofline bound, the estimate's counterpart beside it."""
    from .. import report as rp

    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    L = _count(context, "--context", allow_zero=True)
    if chips is not None and chips < 1:
        raise TokenmathError(f"--chips = {chips} must be >= 1")
    prof = _profile(efficiency, engine, s)
    if m.is_totals_only and not prof.is_roofline:
        raise TokenmathError(f"model {m.name!r} is defined by totals only; the estimate needs its architecture"
                             " (a config.json) — use --efficiency roofline")
    r = rp.build_report(m, s, context=L, chips=chips, dtypes=_dtypes(weight_dtype, kv_dtype, compute_dtype),
                        profile=prof)
    rec = rp.report_record(r)
    _check_finite(rec)
    if plots_dir is not None:
        plots_dir.mkdir(exist_ok=True)  # its parent exists (checked before the work)
    written = rp.write_report_plots(r, plots_dir) if plots_dir is not None else []
    rec = rec | {"plots": [str(p) for p in written]}
    if json_:
        return _emit_json(rec)
    out.rule(f"[bold]tokenmath report: {m.name} on {r.chips} × {s.name}[/]")
    for heading, lines in rp.render_report(r):
        out.print(f"\n[bold cyan]{heading}[/]")
        for line in lines:
            out.print(line, highlight=False)
    if written:
        out.print("\n[bold cyan]Charts[/]")
        for p in written:
            out.print(f"  {p}", highlight=False)
