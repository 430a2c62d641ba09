"""`tokenmath models | systems | model | system`: the catalog, listed and shown."""

from typing import Annotated

import typer

from . import (
    _check_finite, JsonOpt, CatalogOpt, EfficiencyOpt, KvOpt, command, _catalog, _emit_json, _count, out, check_dtype, count,
    seconds, si,
)
from ..units import sig


# ---- catalog listings ----------------------------------------------------------------------


@command("models")
def models_cmd(json_: JsonOpt = False, catalog: CatalogOpt = None) -> None:
    """List the catalog's models."""
    from ..kvcache import kv_cache
    from ..params import param_counts
    from rich.table import Table

    cat = _catalog(catalog)
    rows = []
    for name, m in sorted(cat.models.items()):
        pc = param_counts(m)
        kv = kv_cache(m, 1.0)
        rows.append({
            "name": name, "family": m.family, "total_params": pc.total, "active_params": pc.active,
            "sparsity": pc.sparsity, "kv_bytes_per_token": kv.stored_bytes_per_token,  # the first token's (L = 1)
            # per token of a 4,096-token context: sliding-window layers hold only their window
            "kv_bytes_per_token_at_4096": kv_cache(m, 4096.0).stored_bytes_per_token,
            "native_weight_dtype": m.weight_dtype, "source": m.source, "as_of": m.as_of,
        })
    if json_:
        return _emit_json({"models": rows})
    t = Table(title="tokenmath models", title_justify="left")
    for col in ("name", "family", "total", "active", "N_tot/N_act", "KV B/token (bf16, L = 4k)", "weights", "as of"):
        t.add_column(col, justify="right" if col not in ("name", "family") else "left")
    for r in rows:
        t.add_row(r["name"], r["family"], count(r["total_params"], 4), count(r["active_params"], 4), f"{r['sparsity']:.1f}",
                  f"{r['kv_bytes_per_token_at_4096']:,.0f}", r["native_weight_dtype"], r["as_of"])
    out.print(t)


@command("systems")
def systems_cmd(json_: JsonOpt = False, catalog: CatalogOpt = None) -> None:
    """List the catalog's systems (chips in scale-up domains)."""
    from .. import report as rp
    from rich.table import Table

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


@command("engines")
def engines_cmd(efficiency: EfficiencyOpt = "calibrated", json_: JsonOpt = False) -> None:
    """What --engine can name: each serving engine's documented features (KV budget, MoE dispatch, overlap) with sources, where the preset fitted it, and the feature sets a run adds with +."""
    from .. import api

    r = api.engines(efficiency=efficiency)
    if json_:
        return _emit_json(r.record)
    for x in r.lines:
        out.print(x)


# ---- one model / one system ------------------------------------------------------------------


@command("model")
def model_cmd(
    name: Annotated[str, typer.Argument(help="Catalog name or path to a Hugging Face config.json.")],
    context: Annotated[str, typer.Option("--context", help="Context length L (tokens; '128k' = 128,000: k/M are decimal).")] = "1",
    kv_dtype: KvOpt = "bf16",
    json_: JsonOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """Parameter counts (by part) and KV-cache bytes of one model."""
    from .. import report as rp
    from rich.table import Table

    cat = _catalog(catalog)
    m = cat.model(name)
    L = _count(context, "--context")
    rec = rp.model_record(m, L, check_dtype(kv_dtype))
    _check_finite(rec)
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
    from .. import report as rp
    from rich.table import Table

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
            text = si(v, unit) if unit else f"{sig(v, 4)}"
        else:
            text = str(v)
        t.add_row(k, text)
    for cls, r in rec["hardware_ratio"].items():
        t.add_row(f"hardware ratio ({cls})", f"{r:.0f}")
    out.print(t)
