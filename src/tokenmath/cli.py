"""`tokenmath ...`: parse the arguments, call the core, print with rich or as one JSON object.

No physics here. Bad input raises TokenmathError in the core; this layer prints its one sentence
to stderr and exits 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import report as rp
from .catalog import Catalog, load_catalog
from .errors import TokenmathError
from .kvcache import kv_cache
from .params import param_counts
from .roofline import chips_to_fit, step_time
from .specs import Dtypes, Efficiency
from .units import check_dtype, count, parse_positive, parse_quantity, seconds, si

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="How fast and how cheaply an LLM can be served, and why (the roofline math of Reiner Pope's lecture).",
)
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, soft_wrap=True)

# ---- shared options ------------------------------------------------------------------------

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
CatalogOpt = Annotated[
    Optional[list[Path]],
    typer.Option("--catalog", help="Extra catalog TOML ([systems.NAME], [chips.NAME], [models.NAME]); repeatable."),
]
WeightOpt = Annotated[Optional[str], typer.Option("--weight-dtype", help="Weight dtype (bf16, fp8, fp4, mxfp4, ...); default: the checkpoint's.")]
KvOpt = Annotated[str, typer.Option("--kv-dtype", help="KV-cache dtype.")]
ComputeOpt = Annotated[Optional[str], typer.Option("--compute-dtype", help="Matmul dtype; default: the weight dtype (or the next wider the chip supports).")]
ChipsOpt = Annotated[Optional[int], typer.Option("--chips", help="Chips serving one replica; default: fewest (power of two) that hold weights + KV.")]


def handles_errors(fn):
    """Turn TokenmathError into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TokenmathError as e:
            err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


def command(*a, **kw):
    def deco(fn):
        return app.command(*a, **kw)(handles_errors(fn))

    return deco


def _catalog(files: list[Path] | None) -> Catalog:
    return load_catalog(files or None)


def _emit_json(obj) -> None:
    print(rp.dumps(obj))


def _dtypes(weight: str | None, kv: str, compute: str | None) -> Dtypes:
    return Dtypes(weight=check_dtype(weight), kv=check_dtype(kv), compute=check_dtype(compute))


def _count(text: str, what: str, *, allow_zero: bool = False) -> float:
    return parse_positive(text, "count", what=what, allow_zero=allow_zero)


def _efficiency(flops: float, hbm: float) -> Efficiency:
    if flops == 1.0 and hbm == 1.0:
        return Efficiency()
    return Efficiency(flops=flops, hbm=hbm, label="user")


# ---- catalog listings ----------------------------------------------------------------------


@command("models")
def models_cmd(json_: JsonOpt = False, catalog: CatalogOpt = None) -> None:
    """List the catalog's models."""
    cat = _catalog(catalog)
    rows = []
    for name, m in sorted(cat.models.items()):
        pc = param_counts(m)
        kv = kv_cache(m, 1.0)
        rows.append({
            "name": name, "family": m.family, "total_params": pc.total, "active_params": pc.active,
            "sparsity": pc.sparsity, "kv_bytes_per_token": kv.stored_bytes_per_token,
            "native_weight_dtype": m.weight_dtype, "source": m.source, "as_of": m.as_of,
        })
    if json_:
        return _emit_json({"models": rows})
    t = Table(title="tokenmath models", title_justify="left")
    for col in ("name", "family", "total", "active", "N_tot/N_act", "KV B/token (bf16)", "weights", "as of"):
        t.add_column(col, justify="right" if col not in ("name", "family") else "left")
    for r in rows:
        t.add_row(r["name"], r["family"], count(r["total_params"], 4), count(r["active_params"], 4), f"{r['sparsity']:.1f}",
                  f"{r['kv_bytes_per_token']:,.0f}", r["native_weight_dtype"], r["as_of"])
    out.print(t)


@command("systems")
def systems_cmd(json_: JsonOpt = False, catalog: CatalogOpt = None) -> None:
    """List the catalog's systems (chips in scale-up domains)."""
    cat = _catalog(catalog)
    rows = [rp.system_record(s) for _, s in sorted(cat.systems.items())]
    if json_:
        return _emit_json({"systems": rows})
    t = Table(title="tokenmath systems (per chip; FLOP/s dense)", title_justify="left")
    for col in ("name", "domain", "bf16", "fp8", "fp4", "HBM", "HBM B/s", "drain", "$/chip-h", "as of"):
        t.add_column(col, justify="left" if col == "name" else "right")
    for r in rows:
        t.add_row(
            r["name"] + (" *" if r["preliminary"] else ""), str(r["scaleup_chips"]),
            si(r["bf16_flops_per_s"]) if r["bf16_flops_per_s"] else "-",
            si(r["fp8_flops_per_s"]) if r["fp8_flops_per_s"] else "-",
            si(r["fp4_flops_per_s"]) if r["fp4_flops_per_s"] else "-",
            si(r["hbm_bytes"], "B"), si(r["hbm_bytes_per_s"], "B/s"), seconds(r["hbm_drain_s"]),
            f"{r['usd_per_chip_hour']:.2f}" if r["usd_per_chip_hour"] is not None else "-", r["as_of"],
        )
    out.print(t)
    out.print("* preliminary figures. '-' = not published; give it in a --catalog TOML.")


# ---- one model / one system ------------------------------------------------------------------


@command("model")
def model_cmd(
    name: Annotated[str, typer.Argument(help="Catalog name or path to a Hugging Face config.json.")],
    context: Annotated[str, typer.Option("--context", help="Context length L (tokens; '128k' works).")] = "1",
    kv_dtype: KvOpt = "bf16",
    json_: JsonOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """Parameter counts (by part) and KV-cache bytes of one model."""
    cat = _catalog(catalog)
    m = cat.model(name)
    L = _count(context, "--context")
    rec = rp.model_record(m, L, check_dtype(kv_dtype))
    if json_:
        return _emit_json(rec)
    out.print(f"[bold]{m.name}[/] ({m.family}) — {m.source}")
    t = Table(show_header=True)
    t.add_column("part")
    t.add_column("parameters", justify="right")
    for part, n in rec["breakdown"].items():
        if n is not None:
            t.add_row(part, f"{n:,}")
    t.add_row("[bold]total[/] (N_total)", f"[bold]{rec['total_params']:,}[/]")
    t.add_row("[bold]active per token[/] (N_active)", f"[bold]{rec['active_params']:,}[/]")
    out.print(t)
    out.print(
        f"sparsity N_total/N_active = {rec['sparsity']:.2f}; layers = {rec['layers']}; "
        f"native weights {rec['native_weight_dtype']} = {si(rec['weight_bytes'], 'B')}"
    )
    out.print(
        f"KV cache ({kv_dtype}) at L = {L:,.0f}: stored {rec['kv_bytes_per_token']:,.1f} B/token "
        f"({si(rec['kv_bytes_per_sequence'], 'B')} per sequence); read per decode step "
        f"{rec['kv_read_bytes_per_token']:,.1f} B/token ({si(rec['kv_read_bytes_per_step'], 'B')})"
    )


@command("system")
def system_cmd(
    name: Annotated[str, typer.Argument(help="Catalog system name.")],
    json_: JsonOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """One system's specs, with its HBM drain time and hardware ratio."""
    s = _catalog(catalog).system(name)
    rec = rp.system_record(s)
    if json_:
        return _emit_json(rec)
    t = Table(title=f"{s.name} — {s.description}", title_justify="left", show_header=False)
    t.add_column("field")
    t.add_column("value", justify="right")
    units = {"flops_per_s": "FLOP/s", "bytes_per_s": "B/s", "bytes": "B"}
    for k, v in rec.items():
        if k in ("name", "description", "hardware_ratio") or v is None:
            continue
        if isinstance(v, float) and k.endswith("_s") and "per_s" not in k:
            text = seconds(v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            unit = next((u for suffix, u in units.items() if k.endswith(suffix)), "")
            text = si(v, unit) if unit else f"{v:,.4g}"
        else:
            text = str(v)
        t.add_row(k, text)
    for cls, r in rec["hardware_ratio"].items():
        t.add_row(f"hardware ratio ({cls})", f"{r:.0f}")
    out.print(t)


# ---- the roofline step -----------------------------------------------------------------------


@command("step")
def step_cmd(
    model: Annotated[str, typer.Option("--model", help="Catalog name or config.json path.")],
    system: Annotated[str, typer.Option("--system", help="Catalog system name.")],
    batch: Annotated[str, typer.Option("--batch", help="Sequences in the pass (B).")] = "1",
    context: Annotated[str, typer.Option("--context", help="Context length attended to (L, tokens).")] = "0",
    new_tokens: Annotated[str, typer.Option("--new-tokens", help="New tokens per sequence (S): 1 = decode.")] = "1",
    chips: ChipsOpt = None,
    weight_dtype: WeightOpt = None,
    kv_dtype: KvOpt = "bf16",
    compute_dtype: ComputeOpt = None,
    flops_efficiency: Annotated[float, typer.Option(help="Achieved fraction of peak FLOP/s.")] = 1.0,
    hbm_efficiency: Annotated[float, typer.Option(help="Achieved fraction of peak HBM bandwidth.")] = 1.0,
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="Override the catalog's rental price.")] = None,
    expert_fetch: Annotated[str, typer.Option(help="'all' experts streamed each step, or 'expected' for the batch.")] = "all",
    attention_flops: Annotated[bool, typer.Option("--attention-flops/--no-attention-flops", help="Count attention FLOPs at context L.")] = True,
    allow_overflow: Annotated[bool, typer.Option(help="Report a layout whose weights + KV exceed HBM instead of failing.")] = False,
    json_: JsonOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """Time, cost and bound of one forward pass (the roofline step)."""
    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    B = _count(batch, "--batch")
    L = _count(context, "--context", allow_zero=True)
    S = _count(new_tokens, "--new-tokens")
    dt = _dtypes(weight_dtype, kv_dtype, compute_dtype)
    price = None if usd_per_chip_hour is None else parse_quantity(usd_per_chip_hour, "usd", what="--usd-per-chip-hour")
    if chips is None:
        chips = chips_to_fit(m, s, B, L + S, weight_dtype=dt.weight, kv_dtype=dt.kv)
    elif chips < 1:
        raise TokenmathError(f"--chips = {chips} must be >= 1")
    st = step_time(m, s, B, L, S, chips=chips, dtypes=dt, efficiency=_efficiency(flops_efficiency, hbm_efficiency),
                   usd_per_chip_hour=price, expert_fetch=expert_fetch, attention_flops=attention_flops)
    if not st.fits and not allow_overflow:
        raise TokenmathError(
            f"{m.name} needs {si(st.memory_bytes, 'B')} (weights + KV of {B:,.0f} × {L:,.0f} tokens) but "
            f"{chips} × {s.name} hold {si(st.hbm_bytes, 'B')}; use more --chips, a smaller --batch or --context, "
            f"narrower dtypes, or --allow-overflow"
        )
    rec = rp.step_record(st)
    if json_:
        return _emit_json(rec)
    a = st.assumptions
    t = Table(title=f"{m.name} on {chips} × {s.name}: B = {B:,.0f}, L = {L:,.0f}, S = {S:,.0f}", title_justify="left")
    t.add_column("term")
    t.add_column("time", justify="right")
    t.add_column("formula")
    t.add_row("compute", seconds(st.compute_s), "B·S·(2·N_active + attn FLOPs(L)) / (chips·FLOP/s)")
    t.add_row("weight fetch", seconds(st.weights_s), "weight bytes / (chips·HBM B/s)")
    t.add_row("KV fetch", seconds(st.kv_s), "B·KV bytes read(L) / (chips·HBM B/s)")
    t.add_row("network", seconds(st.network_s), a.network)
    t.add_row("[bold]step[/]", f"[bold]{seconds(st.step_s)}[/]", f"max(compute, weights + KV) → [bold]{st.bound}[/] bound")
    out.print(t)
    cost = f"${st.usd_per_mtok:,.4g} per million tokens" if st.usd_per_mtok is not None else "no price (--usd-per-chip-hour)"
    out.print(f"{st.tokens_per_s:,.0f} tokens/s ({st.tokens_per_s_per_chip:,.0f} per chip); {cost}; "
              f"MFU {st.mfu:.1%}, MBU {st.mbu:.1%}; memory {si(st.memory_bytes, 'B')} of {si(st.hbm_bytes, 'B')}")
    out.print(f"[dim]{a.label}; weights {a.weight_dtype}, KV {a.kv_dtype}, compute {a.compute_dtype} "
              f"({si(a.flops_per_s_per_chip, 'FLOP/s')}/chip); {a.usd_per_chip_hour if a.usd_per_chip_hour is not None else 'no'} $/chip-h; "
              f"experts: {a.expert_fetch}; attention FLOPs {'on' if a.attention_flops else 'off'}[/]")


# ---- the main job ------------------------------------------------------------------------------


@command("report")
def report_cmd(
    model: Annotated[str, typer.Option("--model", help="Catalog name or config.json path.")] = "deepseek-v3",
    system: Annotated[str, typer.Option("--system", help="Catalog system name.")] = "gb200-nvl72",
    context: Annotated[str, typer.Option("--context", help="Context length L (tokens).")] = "4096",
    chips: Annotated[Optional[int], typer.Option("--chips", help="Chips per replica; default the scale-up domain.")] = None,
    weight_dtype: WeightOpt = None,
    kv_dtype: KvOpt = "bf16",
    compute_dtype: ComputeOpt = None,
    json_: JsonOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """Explain a model on a system in plain words (default: DeepSeek-V3 on a GB200 NVL72, the lecture's example)."""
    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    L = _count(context, "--context", allow_zero=True)
    if chips is not None and chips < 1:
        raise TokenmathError(f"--chips = {chips} must be >= 1")
    r = rp.build_report(m, s, context=L, chips=chips, dtypes=_dtypes(weight_dtype, kv_dtype, compute_dtype))
    if json_:
        return _emit_json(rp.report_record(r))
    out.rule(f"[bold]tokenmath report: {m.name} on {r.chips} × {s.name}[/]")
    for heading, lines in rp.render_report(r):
        out.print(f"\n[bold cyan]{heading}[/]")
        for line in lines:
            out.print(line, highlight=False)


def main() -> None:
    try:
        app()
    except TokenmathError as e:  # raised outside a command (e.g. while parsing)
        err.print(f"error: {escape(str(e))}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
