"""`tokenmath prices ...`: what API price sheets reveal; KV-cache memory tiers."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import (
    ForceOpt, Num, _names, JsonOpt, CatalogOpt, WeightOpt, KvOpt, handles_errors, _catalog, _emit_json, _finish,
    _dtypes, _count, ModelOpt, SystemOpt, app, out, err, _num, check_dtype, seconds, si, TokenmathError,
)


# ---- reading prices ---------------------------------------------------------------------------

prices_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True, help="What API price sheets reveal; KV-cache memory tiers.")
app.add_typer(prices_app, name="prices")


def prices_command(name):
    def deco(fn):
        return prices_app.command(name)(handles_errors(fn))

    return deco


@prices_command("sheets")
def prices_sheets_cmd(json_: JsonOpt = False, catalog: CatalogOpt = None) -> None:
    """List the catalog's price sheets ($ per million tokens)."""
    from .. import report as rp
    from rich.table import Table

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


UsdOpt = Optional[float]


@prices_command("infer")
def prices_infer_cmd(
    sheet: Annotated[Optional[str], typer.Argument(help="A price sheet name (tokenmath prices sheets); or leave it out and give the prices as flags.")] = None,
    input_usd_per_mtok: Annotated[UsdOpt, Num("--input-usd-per-mtok", help="$ per million input tokens, as published (with no SHEET: required).")] = None,
    output_usd_per_mtok: Annotated[UsdOpt, Num("--output-usd-per-mtok", help="$ per million output tokens (with no SHEET: required).")] = None,
    cache_read_usd_per_mtok: Annotated[UsdOpt, Num("--cache-read-usd-per-mtok", help="$ per million cached input tokens (a cache hit).")] = None,
    cache_write: Annotated[Optional[list[str]], typer.Option("--cache-write-usd-per-mtok", help="A cache write as TTL=PRICE, e.g. 5m=6.25 or 1h=10; repeatable.")] = None,
    long_context_threshold_tokens: Annotated[Optional[int], Num("--long-context-threshold-tokens", help="Prompt length where a long-context price tier starts ('200k').")] = None,
    long_context_input_usd_per_mtok: Annotated[UsdOpt, Num("--long-context-input-usd-per-mtok", help="$ per million input tokens past the threshold.")] = None,
    long_context_output_usd_per_mtok: Annotated[UsdOpt, Num("--long-context-output-usd-per-mtok", help="$ per million output tokens past the threshold.")] = None,
    fast_price_multiplier: Annotated[UsdOpt, Num("--fast-price-multiplier", help="Fast (priority) mode's price over the standard one, e.g. 6.")] = None,
    fast_speedup: Annotated[UsdOpt, Num("--fast-speedup", help="Fast mode's advertised output speed-up, e.g. 2.5.")] = None,
    system: Annotated[str, typer.Option("--system", help="Hardware assumed behind the API.")] = "gb200-nvl72",
    active_params: Annotated[Optional[str], typer.Option("--active-params", help="N_active behind the API; default: --model's, else the lecture's 100B (an assumption).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="A stand-in model for the batch/ratio analysis; its N_active is the one used.")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="Compute dtype for the KV crossover.")] = "fp8",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """What a price sheet implies: KV bytes/token, candidate attention layouts, how memory bound decode is, cache tiers, fast mode. The prices come from a catalog sheet, from flags (read off a pricing page), or a sheet with flags changing some of its figures."""
    from .. import report as rp

    from .. import prices as pr
    from ..catalog import parse_ttl

    cat = _catalog(catalog)
    if sheet is None and input_usd_per_mtok is None and output_usd_per_mtok is None:
        raise TokenmathError("give a price sheet name (tokenmath prices sheets) or the prices you read:"
                             " --input-usd-per-mtok X --output-usd-per-mtok Y")
    if model is not None and active_params is not None:
        raise TokenmathError(f"give --active-params or --model, not both: --model {model} fixes N_active"
                             f" (its own), --active-params {active_params} would contradict it")
    writes = {}
    for w in cache_write or []:
        ttl, sep, price = w.partition("=")
        if not sep:
            raise TokenmathError(f"--cache-write-usd-per-mtok = {w!r} is not TTL=PRICE, e.g. 5m=6.25")
        try:
            t = parse_ttl(ttl)
        except TokenmathError as e:
            raise TokenmathError(f"--cache-write-usd-per-mtok = {w!r}: {e}") from None
        if t in writes:
            raise TokenmathError(f"--cache-write-usd-per-mtok gives the TTL {ttl.strip()!r} twice")
        writes[t] = _num(price.strip(), "--cache-write-usd-per-mtok", shown=repr(w))
    base = None if sheet is None else cat.price_sheet(sheet)
    sh = pr.sheet_from_prices(base, cache_write_usd_per_mtok=writes, input_usd_per_mtok=input_usd_per_mtok,
                              output_usd_per_mtok=output_usd_per_mtok, cache_read_usd_per_mtok=cache_read_usd_per_mtok,
                              long_context_threshold_tokens=long_context_threshold_tokens,
                              long_context_input_usd_per_mtok=long_context_input_usd_per_mtok,
                              long_context_output_usd_per_mtok=long_context_output_usd_per_mtok,
                              fast_price_multiplier=fast_price_multiplier, fast_speedup=fast_speedup)
    s = cat.system(system)
    m = cat.model(model) if model else None
    n = None if active_params is None else _count(active_params, "--active-params")
    inf = pr.infer(sh, s, active_params=n, model=m, storage=cat.storage, models=cat.models, dtype=check_dtype(dtype))
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
    from .. import report as rp

    from .. import prices as pr

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
    from .. import prices as pr

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
    reuse: Annotated[float, Num("--reuse", help="Expected reuses while held (hit rate × requests).")] = 1.0,
    weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16",
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="Override the catalog's rental price.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw cost vs hold time per tier to this file.")] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Where to keep a prompt's KV cache for a hold time: recompute, HBM, DDR, flash or disk."""
    from .. import report as rp

    from .. import prices as pr

    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    hs = _num(hold_s, "--hold-s")
    price = None if usd_per_chip_hour is None else _num(usd_per_chip_hour, "--usd-per-chip-hour")
    cc = pr.cache_costs(m, s, _count(prompt_tokens, "--prompt-tokens"), hs, reuse=reuse, storage=cat.storage,
                        dtypes=_dtypes(weight_dtype, kv_dtype, None), usd_per_chip_hour=price)
    if plot is not None:
        from .. import plots

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
    from .. import report as rp

    from .. import prices as pr

    cat = _catalog(catalog)
    s = cat.system(system)
    names = _names(models, "--models", "model name") or sorted(n for n, m in cat.models.items() if not m.is_totals_only)
    rows = [pr.long_context(cat.model(n), s) for n in names]
    lines = [f"{s.name}: L* = context where KV fetch per token = compute per token (weights amortised); L_eq = where"
             " attention FLOPs = weight FLOPs"]
    for r in rows:
        lines.append(f"  {r.model:<18} KV {r.kv_bytes_per_token:>9,.0f} B/token   L* {('none' if r.balance_context is None else f'{r.balance_context:,.0f}'):>9}"
                     f"   L_eq {r.attention_equals_weights_context:>11,.0f}   cost 1M/8k {('-' if r.cost_ratio_1m_vs_8k is None else f'{r.cost_ratio_1m_vs_8k:,.1f}×'):>8}")
    lines.append("  cost 1M/8k: $/token at 1M tokens of context over $/token at 8k (weights amortised). Where L* < 8k the"
                 " KV read sets the cost at both lengths, so the ratio is the context ratio, 1,000,000/8,192 ≈ 122×,"
                 " whatever the model; windows, sparse attention (DSA) or an L* above 8k make it differ.")
    sold = pr.longest_sold_context(cat.prices.values())
    if sold.tokens:
        lines.append(f"  sold today: prompts up to {sold.tokens:,.0f} tokens ({', '.join(sold.sheets)}; the sheets' published"
                     " input limits), past the lecture's 100-200k plateau, at the long-context tier's price")
    _finish(json_, {"system": s.name, "models": rp.jsonable(rows), "longest_sold_context": rp.jsonable(sold)}, lines)
