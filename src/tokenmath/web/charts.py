"""The blackboard's charts. The lecture's roofline charts come from plots.py; here the calibrated
estimate is drawn over them as the main line (its 80 % band shaded) and the roofline's max is
relabelled "roofline bound" (dashed), so every line says which it is. The Energy page's two charts
are drawn here too. Drawing only: every value plotted is handed in, computed by the core.

Each function returns a matplotlib Figure; the app renders it under plots.LOCK (app.chart_png).
"""

from __future__ import annotations

import numpy as np

from .. import plots
from ..units import seconds

EST_COLOR = "#6a3d9a"  # the estimate: a colour no roofline term uses
BOUND = "roofline bound"


def _relabel(ax, prefixes: tuple[str, ...], label: str) -> None:
    """The line(s) whose label starts with one of `prefixes` become `label`, dashed (the bound)."""
    for ln in ax.lines:
        if ln.get_label().startswith(prefixes):
            ln.set_label(label)
            ln.set_linestyle("--")


def _rename(ax, prefix: str, suffix: str) -> None:
    """Append `suffix` to the label of every line whose label starts with `prefix` (e.g. B* is the roofline's)."""
    for ln in ax.lines:
        if ln.get_label().startswith(prefix) and not ln.get_label().endswith(suffix):
            ln.set_label(ln.get_label() + suffix)


def _overlay(ax, x, y, band, label: str, scale: float = 1.0) -> None:
    """The estimate as the main line over the roofline chart, with its 80 % band shaded."""
    x = np.atleast_1d(np.asarray(x, float))
    if band is not None:
        lo, hi = (np.broadcast_to(np.asarray(v, float), x.shape) * scale for v in band)
        ax.fill_between(x, lo, hi, color=EST_COLOR, alpha=0.16, lw=0, zorder=1, label="estimate's 80 % band")
    ax.plot(x, np.broadcast_to(np.asarray(y, float), x.shape) * scale, color=EST_COLOR, lw=2.6, zorder=7,
            label=f"estimate ({label})")


def _legend(fig, ax, *, fontsize: int = 7, loc: str = "best"):
    ax.legend(fontsize=fontsize, loc=loc)
    fig.tight_layout()
    return fig


def latency_vs_batch(curve, est: dict | None, *, title: str, balance_batch=None, drain_s=None, mark=None):
    """plots.latency_vs_batch (the roofline's compute, weight and KV lines, B*, the HBM drain, the
    overflow shaded) with the estimate's step time over the same batches; `mark` sits on the estimate."""
    fig = plots.latency_vs_batch(curve, title=title, balance_batch=balance_batch, drain_s=drain_s, mark=mark)
    ax = fig.axes[0]
    _relabel(ax, ("step =",), f"{BOUND} = max(compute, weights + KV)")
    _rename(ax, "balance batch B*", " (roofline)")
    if est is not None:
        _overlay(ax, curve.batch, est["step_s"], est.get("band"), est["label"], scale=1e3)
        _rename(ax, "chosen B", " (estimate)")
    return _legend(fig, ax, loc="lower right")


def cost_vs_batch(curve, est: dict | None, *, title: str, floor_usd_per_mtok=None, balance_batch=None, mark=None):
    """plots.cost_vs_batch with its line relabelled as the bound and the estimate's $/Mtok over it."""
    fig = plots.cost_vs_batch(curve, title=title, floor_usd_per_mtok=floor_usd_per_mtok, balance_batch=balance_batch,
                              mark=mark)
    ax = fig.axes[0]
    _relabel(ax, ("cost per million tokens",), f"{BOUND}: cost per million tokens")
    _rename(ax, "cost floor", " (roofline)")
    _rename(ax, "balance batch B*", " (roofline)")
    if est is not None and est.get("usd_per_mtok") is not None:
        _overlay(ax, curve.batch, est["usd_per_mtok"], est.get("band"), est["label"])
        _rename(ax, "chosen B", " (estimate)")
    return _legend(fig, ax)


def cost_vs_context(curve, est: dict | None, *, title: str, crossover=None):
    """plots.cost_vs_context (the roofline's compute and memory parts) with the estimate's cost, in
    the chart's own unit ($ or chip-seconds per million tokens), over it."""
    fig = plots.cost_vs_context(curve, title=title, crossover=crossover)
    ax = fig.axes[0]
    _relabel(ax, ("cost = max",), f"{BOUND} = max of the two")
    _rename(ax, "lines cross at L", " (roofline)")
    if est is not None:
        _overlay(ax, curve.context, est["cost"], est.get("band"), est["label"])
    return _legend(fig, ax)


def price_speed_frontier(fm, est: dict | None, *, title: str):
    """plots.price_speed_frontier (the roofline's frontier as the batch shrinks) with the estimate's
    frontier over the same batches: speed and price relative to the estimate at the reference batch."""
    fig = plots.price_speed_frontier(fm, title=title)
    ax = fig.axes[0]
    _relabel(ax, ("batch shrinking",), f"{BOUND}: batch shrinking")
    for ln in ax.lines:  # the latency-floor line and the chosen point are the roofline's
        if ln.get_label()[:1].isdigit() or ln.get_label().startswith("batch 1:"):
            ln.set_label(f"{BOUND}: {ln.get_label()}")
    if est is not None:
        ax.plot(est["speedup"], est["price_multiplier"], color=EST_COLOR, lw=2.6, zorder=7,
                label=f"estimate ({est['label']}): batch shrinking")
        if est.get("point") is not None:
            s, p, b = est["point"]
            ax.plot([s], [p], "D", color=EST_COLOR, ms=7, zorder=8,
                    label=f"estimate at B = {b:,.0f}: {s:.2f}× speed for {p:.2f}× price")
    return _legend(fig, ax)


CAUSES = ("idle", "compute", "memory", "host", "facility")
CAUSE_COLORS = {"idle": "#c7c7c7", "compute": plots.COLORS["compute"], "memory": plots.COLORS["kv"],
                "host": "#8c564b", "facility": "#ff7f0e"}


def watts_by_cause(bars: list[tuple[str, dict]], *, title: str):
    """Horizontal stacked bars: watts per chip by cause (idle, compute, memory, host, facility), one
    bar per (label, {cause: W per chip}); the total at the wall written at the end of each."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 1.6 + 0.8 * len(bars)))
    for i, (label, parts) in enumerate(bars):
        left = 0.0
        for c in CAUSES:
            w = float(parts.get(c, 0.0))
            ax.barh(i, w, left=left, color=CAUSE_COLORS[c], label=c if i == 0 else None, edgecolor="white", lw=0.5)
            left += w
        ax.annotate(f"{left:,.0f} W at the wall", (left, i), xytext=(4, 0), textcoords="offset points", va="center",
                    fontsize=8)
    ax.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(sum(float(v) for v in p.values()) for _, p in bars) * 1.3)
    ax.set(xlabel="watts per chip (board, host and facility share)", title=title)
    ax.grid(True, axis="x", alpha=0.25)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=len(CAUSES), frameon=False)
    fig.tight_layout()
    return fig


def own_vs_rent(u, owned_usd_per_h, *, rental_usd_per_h=None, api_usd_per_h=None, api_label: str = "",
                breakeven=None, utilisation=None, title: str):
    """$ per chip-hour against utilisation: owning (capital and facility fixed, electricity rising
    with the busy share), renting (flat), and — where an API price sheet is given — what buying the
    same chip's tokens from the API costs; owning beats the API right of `breakeven`."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(u * 100, owned_usd_per_h, color="black", lw=2.4, label="owning: capital + facility + electricity")
    if rental_usd_per_h is not None:
        ax.axhline(rental_usd_per_h, color=plots.COLORS["weights"], lw=1.6, ls="--",
                   label=f"renting: ${rental_usd_per_h:,.2f} per chip-hour (catalog)")
    if api_usd_per_h is not None:
        ax.plot(u * 100, api_usd_per_h, color=EST_COLOR, lw=2, label=api_label)
    if breakeven is not None:
        ax.axvline(breakeven * 100, color=plots.COLORS["floor"], ls="-.", lw=1,
                   label=f"owning beats the API above {breakeven:.1%} busy")
    if utilisation is not None:
        ax.axvline(utilisation * 100, color="#ff7f0e", lw=1.2, alpha=0.8, label=f"chosen utilisation {utilisation:.0%}")
    ax.set(xlabel="utilisation (% of hours busy)", ylabel="$ per chip-hour", title=title, xlim=(0, 100))
    top = max([float(np.max(owned_usd_per_h))] + [float(np.max(v)) for v in (rental_usd_per_h, api_usd_per_h) if v is not None])
    ax.set_ylim(0, top * 1.45)  # head room for the legend above the lines
    ax.grid(True, alpha=0.25)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def band_text(lo, hi, fmt=seconds) -> str:
    """'lo – hi' of an 80 % band, or '—' where there is none."""
    return "—" if lo is None or hi is None else f"{fmt(float(lo))} – {fmt(float(hi))}"
