"""The lecture's blackboard charts as PNG/SVG (matplotlib, optional extra `plots`).

Thin: every curve comes from tokenmath.serving / roofline; this module only draws. Headless
(Agg backend), so it works in CI and over SSH.
"""

from __future__ import annotations

import threading
from pathlib import Path

import math

import numpy as np

from .errors import TokenmathError
from .units import seconds, sig

try:  # optional dependency
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:  # pragma: no cover - exercised only without the extra
    plt = None

# matplotlib is not thread-safe (its mathtext parser breaks under concurrent use: a ParseException on a
# log-axis tick label); the web app serves every session from its own thread, so it draws under this lock.
LOCK = threading.RLock()

PLOT_FORMATS = (".png", ".svg", ".pdf")  # what --plot accepts (matplotlib writes each without extras)

COLORS = {"compute": "#1f77b4", "weights": "#d62728", "kv": "#2ca02c", "step": "black", "floor": "#7f7f7f"}


def _need_matplotlib():
    if plt is None:
        raise TokenmathError("plots need matplotlib: pip install 'tokenmath[plots]'")


def _finish(fig, ax, path, *, fontsize: int = 8, loc: str = "best"):
    """The common ending: a light log grid, the legend, then save (or return the figure)."""
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=fontsize, loc=loc)
    return _save(fig, path)


def _save(fig, path: Path | None):
    """Write the figure and return its path; with no path, return the figure (the web app draws it).
    Written atomically (tokenmath.paths.write_atomic): a chart replaces the file at its name (a
    symbolic link there is replaced, never written through), and a failure leaves the old file whole."""
    if path is None:
        fig.tight_layout()
        return fig
    import io

    from .paths import write_atomic

    path = Path(path)
    try:
        if path.suffix.lower() not in PLOT_FORMATS:
            raise TokenmathError(f"plot path '{path}': format {path.suffix or '(none)'!r} is not supported;"
                                 f" use one of {', '.join(PLOT_FORMATS)}")
        if not path.parent.is_dir():  # never create folders silently: a typo would scatter them
            raise TokenmathError(f"plot path '{path}': the folder '{path.parent}' does not exist; create it first")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format=path.suffix.lower().lstrip("."), dpi=130)
        write_atomic(path, buf.getvalue(), flag="plot path", replace=True)
    except OSError as e:
        raise TokenmathError(f"plot path '{path}' could not be written: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    return path


def _fit_title(ax, title: str):
    """Set the axes title, wrapped onto more lines until it lies inside the figure once laid out
    (a long label otherwise runs past both edges: tight_layout makes room above, never beside)."""
    import textwrap

    fig = ax.figure
    t = ax.set_title(title)
    renderer = fig.canvas.get_renderer()
    width = len(title)
    while True:
        fig.tight_layout()
        box, page = t.get_window_extent(renderer), fig.bbox
        if (box.x0 >= page.x0 and box.x1 <= page.x1 and box.y1 <= page.y1) or width <= 16:
            return t
        width = max(16, int(width * 0.85))
        t.set_text(textwrap.fill(title, width, break_long_words=False, break_on_hyphens=False))


def _shade_overflow(ax, st):
    """Shade the batches whose weights + KV do not fit in the chips' HBM (st.fits False)."""
    fits = np.atleast_1d(st.fits)
    B = np.atleast_1d(st.batch)
    if fits.shape == B.shape and B.size > 1 and not np.all(fits):
        first = float(B[~fits].min())
        ax.axvspan(first, float(B.max()), color=COLORS["weights"], alpha=0.07, zorder=0,
                   label=f"does not fit in HBM (B ≥ {first:,.0f})")


def _mark(ax, mark, color: str = "#ff7f0e", unit: str = ""):
    """The chosen point (x, y): a vertical line and a dot, so moving a slider moves something."""
    if mark is None:
        return
    x, y = mark
    ax.axvline(x, color=color, lw=1.2, alpha=0.8, zorder=4)
    ax.plot([x], [y], "o", color=color, ms=7, zorder=6, label=f"chosen B = {x:,.0f}: {unit}")


def _band(est):
    """(lo, hi) of the estimate's 80 % band of step time, or None."""
    if est is None or not est.range_80:
        return None
    lo, hi = est.range_80["step_s"]
    return np.asarray(lo, float), np.asarray(hi, float)


class _Fits:
    """What _shade_overflow reads: batches and whether each fits (the estimate's layout)."""

    def __init__(self, batch, fits):
        self.batch, self.fits = batch, fits


def latency_vs_batch(st, *, title: str, balance_batch: float | None = None, drain_s: float | None = None, path=None,
                     mark: tuple[float, float] | None = None, est=None, fits=None):
    """Step time vs batch. With `est` (estimate.estimate_pass over the batches): the estimate
    (solid, its 80 % band shaded) and the roofline bound of the same passes (dashed), with the
    bound's terms — compute, weight fetch, KV fetch — thin beneath. Without: the roofline `st`
    alone, its terms and their max. Batches that overflow HBM shaded; `mark` = (batch, step_s)
    marks the chosen point."""
    _need_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    B = st.batch
    if est is not None:
        bd = est.roofline
        B = np.asarray(est.op.batch)
        ax.plot(B, bd.compute_s * 1e3, color=COLORS["compute"], lw=1.2, zorder=2, label="bound's compute")
        ax.plot(B, (bd.weights_s + bd.activations_s) * 1e3, color=COLORS["weights"], lw=1.2, zorder=2,
                label="bound's weight fetch (experts: " + est.op.expert_fetch + ")")
        ax.plot(B, bd.kv_s * 1e3, color=COLORS["kv"], lw=1.2, zorder=2, label="bound's KV fetch")
        ax.plot(B, bd.step_s * 1e3, color=COLORS["floor"], lw=1.6, ls="--", zorder=4,
                label="roofline bound (same layout, peak rates)")
        band = _band(est)
        if band is not None:
            ax.fill_between(B, band[0] * 1e3, band[1] * 1e3, color=COLORS["step"], alpha=0.12, lw=0, zorder=1,
                            label="estimate's 80 % band")
        ax.plot(B, np.asarray(est.step_s) * 1e3, color=COLORS["step"], lw=2.2, zorder=5,
                label=f"estimate ({est.label})")
    else:
        ax.plot(B, st.compute_s * 1e3, color=COLORS["compute"], lw=2, zorder=2, label="compute  2·B·N_active / FLOP/s")
        ax.plot(B, st.weights_s * 1e3, color=COLORS["weights"], lw=2, zorder=2, label="weight fetch  N_total·b / BW")
        ax.plot(B, st.kv_s * 1e3, color=COLORS["kv"], lw=2, zorder=2, label="KV fetch  B·L·kv / BW")
        ax.plot(B, st.step_s * 1e3, color=COLORS["step"], lw=1.4, ls="--", zorder=5,
                label="step = max(compute, weights + KV): the roofline bound")
    if drain_s:
        ax.axhline(drain_s * 1e3, ls=":", color=COLORS["floor"], lw=1)
        ax.annotate(f"HBM drain {seconds(drain_s)}", (B[0], drain_s * 1e3), va="bottom", fontsize=8)
    if balance_batch:
        ax.set(xscale="log", yscale="log")  # before placing text at the bottom of the (log) axis
        ax.axvline(balance_batch, ls="-.", color=COLORS["floor"], lw=1,
                   label=f"balance batch B* = {balance_batch:,.0f} (roofline, ideal sharding)")
        ax.annotate(f"B* = {balance_batch:,.0f}", (balance_batch, ax.get_ylim()[0]), rotation=90, va="bottom",
                    ha="right", fontsize=8)
    _shade_overflow(ax, st if fits is None else _Fits(B, fits))
    if mark is not None:
        _mark(ax, (mark[0], mark[1] * 1e3), unit=f"step {seconds(mark[1])}")
    ax.set(xscale="log", yscale="log", xlabel="batch B (sequences)", ylabel="time per step (ms)", title=title)
    return _finish(fig, ax, path, fontsize=7, loc="lower right")  # the empty corner: lines rise to the right


ESTIMATE_COLOR = "#9467bd"


def overlay_estimate(ax, x, y, *, label: str, band=None, fill: float | None = None, knee: float | None = None,
                     knee_label: str = "estimate's knee"):
    """Draw the calibrated estimate on a chart of the bound: its curve, its 80 % band shaded, the
    batch that fills the estimate's layout (its HBM limit) and a marked knee. Draws only."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if band is not None:
        lo, hi = (np.asarray(v, float) for v in band)
        ax.fill_between(x, lo, hi, color=ESTIMATE_COLOR, alpha=0.15, lw=0, zorder=1, label="estimate's 80 % band")
    ax.plot(x, y, color=ESTIMATE_COLOR, lw=2.4, zorder=6, label=label)
    if fill:
        ax.axvline(fill, ls=":", color=ESTIMATE_COLOR, lw=1.2, label=f"estimate's layout full at B = {fill:,.0f}")
    if knee:
        ax.axvline(knee, ls="-.", color=ESTIMATE_COLOR, lw=1, label=f"{knee_label} B = {knee:,.0f}")


def label_as_bound(ax, prefix: str = "roofline bound: "):
    """Prefix every labelled line and span already on `ax` (a chart of the bound) with `prefix`, before
    the estimate is drawn beside it."""
    for artist in [*ax.get_lines(), *ax.patches, *ax.collections]:
        label = artist.get_label()
        if label and not label.startswith("_") and not label.startswith(prefix):
            artist.set_label(prefix + label)


def cost_vs_batch(st, *, title: str, floor_usd_per_mtok: float | None, balance_batch: float | None = None, path=None,
                  mark: tuple[float, float] | None = None, estimate: dict | None = None):
    """$/Mtok vs batch: falls as 1/B while weights dominate, then flattens on the compute/KV floor.
    Batches that overflow HBM shaded; `mark` = (batch, $/Mtok) marks the chosen point. `estimate`:
    {"label", "batch", "usd_per_mtok", "band" ([lo, hi] or None), "fill", "knee"} draws the
    calibrated estimate beside the bound (overlay_estimate)."""
    _need_matplotlib()
    if st.usd_per_mtok is None:
        raise TokenmathError("this system has no price: give --usd-per-chip-hour to plot cost")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bound = "roofline bound: " if estimate else ""
    ax.plot(st.batch, st.usd_per_mtok, color=COLORS["step"], lw=2, zorder=3, label=f"{bound}cost per million tokens")
    if floor_usd_per_mtok:
        ax.axhline(floor_usd_per_mtok, ls="--", color=COLORS["floor"],
                   label=f"{bound}cost floor ${floor_usd_per_mtok:.3g}/Mtok")
    if balance_batch:
        ax.axvline(balance_batch, ls="-.", color=COLORS["floor"], lw=1,
                   label=f"{bound}balance batch B* = {balance_batch:,.0f}")
    if estimate:
        overlay_estimate(ax, estimate["batch"], estimate["usd_per_mtok"], label=f"estimate ({estimate['label']})",
                         band=estimate.get("band"), fill=estimate.get("fill"), knee=estimate.get("knee"),
                         knee_label="estimated cost within 5 % of its lowest from")
    _shade_overflow(ax, st)
    if mark is not None:
        _mark(ax, mark, unit=f"${mark[1]:.3g}/Mtok")
    ax.set(xscale="log", yscale="log", xlabel="batch B (sequences)", ylabel="$ per million output tokens", title=title)
    return _finish(fig, ax, path)


def cost_vs_context(st, *, title: str, crossover: float | None, path=None, est=None):
    """Cost per million tokens vs context at a fixed batch. Without `est`: the roofline split into
    its compute and memory parts — flat while compute binds, rising with L once the KV fetch
    overtakes it (the crossover). With `est` (estimate.estimate_pass over the contexts): the
    estimate (solid, its 80 % band shaded) and the roofline bound of the same passes (dashed),
    with the bound's compute and memory parts beneath."""
    _need_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if est is not None:
        op, bd = est.op, est.roofline
        L = np.asarray(op.context)
        if est.usd_per_mtok is not None:
            scale, unit = np.asarray(est.usd_per_mtok) / np.asarray(est.step_s), "$ per million tokens"
        else:
            scale, unit = np.asarray(op.billed_chips) * 1e6 / np.asarray(op.tokens_per_s * op.step_s), \
                "chip-seconds per million tokens"
        ax.plot(L, bd.compute_s * scale, color=COLORS["compute"], lw=1.2, zorder=2, label="bound's compute")
        ax.plot(L, bd.memory_s * scale, color=COLORS["kv"], lw=1.2, zorder=2, label="bound's weight + KV fetch")
        ax.plot(L, bd.step_s * scale, color=COLORS["floor"], lw=1.6, ls="--", zorder=4,
                label="roofline bound (same layout, peak rates)")
        band = _band(est)
        if band is not None:
            ax.fill_between(L, band[0] * scale, band[1] * scale, color=COLORS["step"], alpha=0.12, lw=0, zorder=1,
                            label="estimate's 80 % band")
        ax.plot(L, np.asarray(est.step_s) * scale, color=COLORS["step"], lw=2.2, zorder=5, label=f"estimate ({est.label})")
        ax.set(xscale="log", yscale="log", xlabel="context L (tokens)", ylabel=unit, title=title)
        return _finish(fig, ax, path, fontsize=7)
    a = st.assumptions
    per_mtok = 1e6 / (st.batch * st.new_tokens)
    if a.usd_per_chip_hour is not None:
        scale, unit = a.chips * a.usd_per_chip_hour / 3600.0, "$ per million tokens"
    else:
        scale, unit = a.chips, "chip-seconds per million tokens"
    L = st.context
    compute = st.compute_s * per_mtok * scale
    memory = (st.weights_s + st.kv_s) * per_mtok * scale
    ax.plot(L, compute, color=COLORS["compute"], lw=2, zorder=2, label="compute")
    ax.plot(L, memory, color=COLORS["kv"], lw=2, zorder=2, label="weight + KV fetch")
    ax.plot(L, st.step_s * per_mtok * scale, color=COLORS["step"], lw=1.4, ls="--", zorder=5,
            label="cost = max of the two: the roofline bound")
    # L* only where the two drawn lines do cross, inside the drawn range (never a line where nothing crosses)
    d = np.atleast_1d(compute - memory)
    crosses = d.size > 1 and bool(np.any(d > 0)) and bool(np.any(d <= 0))
    if crossover and crosses and float(np.min(L)) <= crossover <= float(np.max(L)):
        ax.axvline(crossover, ls="-.", color=COLORS["floor"], label=f"lines cross at L = {crossover:,.0f} tokens")
    ax.set(xscale="log", yscale="log", xlabel="context L (tokens)", ylabel=unit, title=title)
    return _finish(fig, ax, path)


def price_speed_frontier(fm, *, title: str, path=None, estimate=None):
    """Fast mode: price multiplier vs speed multiplier as the batch shrinks from the cost optimum.
    `estimate` (serving.EstimatedFastMode) draws the estimate's frontier beside the bound's (each
    relative to its own normal mode; the ratios carry no band: a profile's error largely cancels)."""
    _need_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bound = "roofline bound: " if estimate is not None else ""
    ax.plot(fm.frontier_speedup, fm.frontier_price_multiplier, color=COLORS["step"], lw=2.5,
            label=f"{bound}batch shrinking from {fm.reference_batch:,.0f}")
    ax.axvline(fm.max_speedup, ls="--", color=COLORS["floor"],
               label=f"{bound}batch 1: {fm.max_speedup:.2f}× (latency floor)")
    if fm.speedup:
        ax.plot([fm.speedup], [fm.price_multiplier], "o", color=COLORS["weights"],
                label=f"{bound}{fm.speedup:.2f}× speed for {fm.price_multiplier:.2f}× price (B = {fm.batch:,.0f})")
    if estimate is not None:
        e = estimate
        ax.plot(e.frontier_speedup, e.frontier_price_multiplier, color=ESTIMATE_COLOR, lw=2.5, zorder=6,
                label=f"estimate ({e.estimate}): batch shrinking from {e.reference_batch:,.0f}")
        ax.axvline(e.max_speedup, ls="--", color=ESTIMATE_COLOR, label=f"estimate at batch 1: {e.max_speedup:.2f}×")
        if e.speedup:
            ax.plot([e.speedup], [e.price_multiplier], "s", color=ESTIMATE_COLOR, ms=7, zorder=7,
                    label=f"estimate: {e.speedup:.2f}× speed for {e.price_multiplier:.2f}× price (B = {e.batch:,.0f})")
    ax.set(xscale="log", yscale="log", xlabel="speed multiplier (tokens/s per user)", ylabel="price multiplier ($/token)",
           title=title)
    return _finish(fig, ax, path)


def prefill_vs_decode_cost(pd, *, title: str, path=None, estimate=None):
    """Cost per token vs tokens per pass S: memory-bound decode (S = 1) to compute-bound prefill.
    `estimate` (serving.EstimatedPrefill) draws the estimate's time per token with its band."""
    _need_matplotlib()
    st = pd.by_pass_length
    fig, ax = plt.subplots(figsize=(7, 4.5))
    per_tok = st.step_s / (st.batch * st.new_tokens)
    bound = "roofline bound: " if estimate is not None else ""
    ax.plot(st.new_tokens, per_tok * 1e6, color=COLORS["step"], lw=2.5, label=f"{bound}time per token, batch 1")
    ax.plot(st.new_tokens, st.compute_s / (st.batch * st.new_tokens) * 1e6, color=COLORS["compute"], ls="--",
            label=f"{bound}compute per token")
    if estimate is not None:
        e = estimate
        band = None if e.by_pass_length_range_80 is None else [np.asarray(v) * 1e6 for v in e.by_pass_length_range_80]
        overlay_estimate(ax, e.by_pass_length_new_tokens, np.asarray(e.by_pass_length_s_per_token) * 1e6,
                         label=f"estimate ({e.estimate}): time per token, batch 1", band=band)
    mem = st.bound == "memory"
    if np.any(mem):
        ax.axvspan(st.new_tokens[mem].min(), st.new_tokens[mem].max(), color=COLORS["kv"], alpha=0.08,
                   label=f"{bound}memory bound")
    ax.set(xscale="log", yscale="log", xlabel="tokens per sequence in the pass S (1 = decode)",
           ylabel="µs per token", title=title)
    return _finish(fig, ax, path)


def _pareto_steps(ax, x, y, *, what: str):
    """The Pareto front of a few achievable points as a step, not a line: at a required speed between
    two points the best option is the next faster one, so the value jumps there and nothing lies in
    between (a straight segment would draw options that do not exist). `where="pre"`: over
    (x[i-1], x[i]] the value is y[i]."""
    order = np.argsort(np.asarray(x, dtype=float), kind="stable")
    xs, ys = np.asarray(x, dtype=float)[order], np.asarray(y, dtype=float)[order]
    ax.step(xs, ys, where="pre", color=COLORS["floor"], lw=1.3, zorder=2,
            label=f"Pareto front: {what} at ≥ that speed per user (a step: no option lies between the markers)")


def _markers_legend(ax, path, *, what: str = "markers: deployments on the front (each one achievable)"):
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, title=what, title_fontsize=7)
    return _save(ax.figure, path)


PLAN_AXES = {"cost": ("usd_per_mtok", "$ per million output tokens", "the cheapest option"),
             "throughput": ("tokens_per_s_per_chip", "output tokens/s per chip", "the most tokens/s per chip"),
             "energy": ("joules_per_token", "joules per output token (at the wall)", "the least energy per token")}


def plan_frontier(p, *, title: str, path=None):
    """The planner's Pareto frontier: cost (tokens/s per chip, or J/token: what the plan minimised)
    against tokens/s per user. Each deployment on the front is a marker, one colour per system; the
    front itself is a step (the best option at at least that speed), not a line through the markers;
    the chosen deployment is a star."""
    _need_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    key, ylabel, what = PLAN_AXES.get(p.objective, PLAN_AXES["throughput"])
    pts = [pt for pt in p.frontier if getattr(pt, key) is not None]
    if pts:
        _pareto_steps(ax, [pt.tokens_per_s_per_user for pt in pts], [getattr(pt, key) for pt in pts], what=what)
    for name in sorted({pt.system for pt in pts}):
        sel = [pt for pt in pts if pt.system == name]
        ax.plot([pt.tokens_per_s_per_user for pt in sel], [getattr(pt, key) for pt in sel], "o", ms=4, ls="none",
                zorder=3, label=f"{name} ({p.estimate.split(' (')[0]})")
    if p.best is not None and getattr(p.best, key) is not None:
        ax.plot([p.best.tokens_per_s_per_user], [getattr(p.best, key)], "*", ms=14, color="black", zorder=4,
                label=f"best: {p.best.system} TP{p.best.tp} EP{p.best.ep} PP{p.best.pp}, B={p.best.batch:,.0f}")
    if p.min_tokens_per_s_per_user:
        ax.axvline(p.min_tokens_per_s_per_user, ls="--", color=COLORS["floor"], label="SLO: min tokens/s per user")
    ax.set(xscale="log", yscale="log", xlabel="tokens/s per user", ylabel=ylabel)
    _fit_title(ax, title)
    return _markers_legend(ax, path)


def cost_vs_energy(p, *, title: str, path=None):
    """$ per million output tokens against joules per output token over the planner's frontier,
    one colour per system, the chosen point marked: where the cheapest and the most frugal differ."""
    _need_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts = [x for x in p.frontier if x.joules_per_token is not None and x.usd_per_mtok is not None]
    for name in sorted({x.system for x in pts}):
        sel = [x for x in pts if x.system == name]
        ax.plot([x.joules_per_token for x in sel], [x.usd_per_mtok for x in sel], "o", ms=4, label=name)
    b = p.best
    if b is not None and b.joules_per_token is not None and b.usd_per_mtok is not None:
        ax.plot([b.joules_per_token], [b.usd_per_mtok], "*", ms=14, color="black",
                label=f"best ({p.objective}): {b.system} TP{b.tp} EP{b.ep} PP{b.pp}, B={b.batch:,.0f}")
    ax.set(xscale="log", yscale="log", xlabel="joules per output token (at the wall)",
           ylabel="$ per million output tokens", title=title)
    return _finish(fig, ax, path, fontsize=7)


def fleet_frontier(f, *, path=None):
    """Fleet cost against tokens/s per user over the aggregated candidates (analytic): each candidate
    on the front a marker, the front a step (the cheapest at at least that speed), the chosen fleet
    a star at its simulated speed."""
    _need_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if f.frontier:
        _pareto_steps(ax, [pt["tokens_per_s_per_user"] for pt in f.frontier], [pt["usd_per_mtok_output"] for pt in f.frontier],
                      what="the cheapest aggregated fleet (analytic)")
    for name in sorted({pt["system"] for pt in f.frontier}):
        pts = [pt for pt in f.frontier if pt["system"] == name]
        ax.plot([pt["tokens_per_s_per_user"] for pt in pts], [pt["usd_per_mtok_output"] for pt in pts], "o", ms=4, ls="none",
                zorder=3, label=f"{name} (aggregated, analytic)")
    b = f.best
    if b is not None and b.usd_per_mtok_output is not None:
        user = b.tokens_per_s_per_user if b.simulated is None else 1.0 / max(b.simulated.tpot_p50_s, 1e-12)
        ax.plot([user], [b.usd_per_mtok_output], "*", ms=14, color="black", zorder=4,
                label=f"best: {b.mode}, {b.total_chips:,.0f} chips ({'simulated' if b.simulated else 'analytic'} speed)")
    if f.slo.tpot_limit() < math.inf:
        ax.axvline(1.0 / f.slo.tpot_limit(), ls="--", color=COLORS["floor"], label="SLO: 1 / TPOT")
    ax.set(xscale="log", yscale="log", xlabel="tokens/s per user", ylabel="$ per million output tokens")
    _fit_title(ax, f"{f.model}: {sig(f.request_rate, 4)} requests/s, I = {f.input_tokens:,.0f}, O = {f.output_tokens:,.0f}")
    return _markers_legend(ax, path, what="markers: candidate fleets on the front")


def loss_frontier(ot, fit, *, title: str, path=None):
    """Left: loss vs training compute — the compute-optimal frontier, the lecture's model trained to
    Chinchilla's 20 tokens/param and to the equal-cost over-trained point. Right: the split of
    tokens and of cost between pre-training, RL and inference (costs equal by construction)."""
    from . import training as tr

    _need_matplotlib()
    N = ot.active_params
    C = np.geomspace(6 * N * N, 6 * N * ot.pretrain_tokens * 10, 200)
    frontier = [tr.compute_optimal(c, fit) for c in C]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    ax.plot(C, [f.loss for f in frontier], color=COLORS["step"], lw=2, label=f"compute-optimal ({fit})")
    D = C / (6 * N)
    ax.plot(C, tr.chinchilla_loss(N, D, fit), color=COLORS["compute"], label=f"N = {N:.3g} trained longer")
    for tokens, lab, col in ((ot.chinchilla_tokens, "Chinchilla 20 tokens/param", COLORS["kv"]),
                             (ot.pretrain_tokens, f"equal-cost: {ot.overtraining_factor:.0f}× over-trained", COLORS["weights"])):
        ax.plot([6 * N * tokens], [tr.chinchilla_loss(N, tokens, fit)], "o", color=col, ms=8, label=lab)
    ax.set(xscale="log", xlabel="training FLOPs", ylabel="predicted loss", title=title)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8)
    phases = ["pre-training", "RL", "inference"]
    tokens = [ot.pretrain_tokens, ot.rl_tokens, ot.inference_tokens]
    costs = [ot.pretrain_cost, ot.rl_cost, ot.inference_cost]
    x = np.arange(3)
    bx.bar(x - 0.2, np.array(tokens) / sum(tokens), 0.4, label="share of tokens", color=COLORS["compute"])
    bx.bar(x + 0.2, np.array(costs) / sum(costs), 0.4, label="share of cost (FLOPs / MFU)", color=COLORS["weights"])
    bx.set(xticks=x, xticklabels=phases, ylabel="share", title="where the tokens and the money go")
    bx.legend(fontsize=8)
    return _save(fig, path)


def memory_stack(mem, *, title: str, path=None):
    """Training memory per chip: weights, gradients, optimizer state, activations against HBM."""
    _need_matplotlib()
    parts = [("weights", mem.weights_bytes_per_chip, "#1f77b4"), ("gradients", mem.grads_bytes_per_chip, "#ff7f0e"),
             ("optimizer", mem.optimizer_bytes_per_chip, "#2ca02c"), ("activations", mem.activation_bytes_per_chip, "#d62728")]
    fig, ax = plt.subplots(figsize=(5, 4.5))
    bottom = 0.0
    for name, v, col in parts:
        ax.bar([0], [v / 1e9], bottom=[bottom / 1e9], color=col, label=f"{name} {v / 1e9:.1f} GB")
        bottom += v
    ax.axhline(mem.hbm_bytes_per_chip / 1e9, ls="--", color="black", label=f"HBM {mem.hbm_bytes_per_chip / 1e9:.0f} GB")
    ax.set(xticks=[], ylabel="GB per chip", title=title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def layout_memory_per_chip(bars, hbm_bytes_per_chip: float, *, title: str, path=None):
    """Memory per chip of one or more layouts side by side: weights, KV and activations stacked in
    GB, against the chip's HBM capacity (a line). `bars` is [(label, LayoutMemory), ...]."""
    _need_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    parts = (("weights", "weights_bytes_per_chip", COLORS["weights"]), ("KV cache", "kv_bytes_per_chip", COLORS["kv"]),
             ("activations", "activation_bytes_per_chip", COLORS["compute"]))
    x = np.arange(len(bars))
    bottom = np.zeros(len(bars))
    for name, attr, col in parts:
        v = np.array([float(getattr(m, attr)) for _, m in bars]) / 1e9
        ax.bar(x, v, 0.55, bottom=bottom, color=col, label=name)
        for xi, b, vi in zip(x, bottom, v):
            if vi > 0.04 * max(hbm_bytes_per_chip / 1e9, 1e-9):
                ax.annotate(f"{vi:,.1f} GB", (xi, b + vi / 2), ha="center", va="center", fontsize=8, color="white")
        bottom += v
    hbm = hbm_bytes_per_chip / 1e9
    ax.axhline(hbm, ls="--", color="black", lw=1.2, label=f"HBM capacity {hbm:,.0f} GB per chip")
    ax.set_xlim(-1.5, 1.5) if len(bars) == 1 else ax.set_xlim(-0.6, len(bars) - 0.4)  # a single bar stays a bar
    ax.set(xticks=x, xticklabels=[lab for lab, _ in bars], ylabel="GB per chip", title=title,
           ylim=(0, max(hbm, float(bottom.max())) * 1.3))
    ax.grid(True, axis="y", alpha=0.25)
    ax.legend(fontsize=8, loc="upper center", ncol=4)  # one row above the HBM line
    return _save(fig, path)


def cache_cost_vs_hold(model, system, prompt_tokens, storage, *, reuse: float = 1.0, title: str, path=None,
                       dtypes=None):
    """Cost of keeping a prompt's KV cache vs how long it is held, per tier, against recomputing."""
    from . import prices as pr
    from .roofline import Dtypes
    dtypes = Dtypes() if dtypes is None else dtypes
    _need_matplotlib()
    holds = np.geomspace(1e-2, 1e6, 120)
    rows = [pr.cache_costs(model, system, prompt_tokens, h, reuse=reuse, storage=storage, dtypes=dtypes) for h in holds]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in pr.TIER_ORDER:
        vals = [r.tiers[name].total_usd if name in r.tiers else None for r in rows]
        if any(v is not None for v in vals):
            t = rows[0].tiers[name]
            ax.plot(holds, [np.nan if v is None else v for v in vals],
                    label=f"{name} ({t.device}, drain {seconds(t.drain_s)})")
    ax.plot(holds, [r.rematerialize_total_usd for r in rows], "--", color="black", label="recompute (prefill)")
    ax.set(xscale="log", yscale="log")  # before placing text at the bottom of the (log) axis
    for lab, s in (("5 min", 300), ("1 h", 3600)):
        ax.axvline(s, ls=":", color=COLORS["floor"])
        ax.annotate(lab, (s, ax.get_ylim()[0]), rotation=90, va="bottom", fontsize=8)
    ax.set(xscale="log", yscale="log", xlabel="hold time (s)", ylabel=f"$ to keep and reuse {prompt_tokens:,.0f} tokens' KV",
           title=title)
    return _finish(fig, ax, path, fontsize=7)


def predicted_vs_measured(report, *, title: str, path=None):
    """Each validation case, predicted against measured, one marker per metric, with ±20 % bands."""
    _need_matplotlib()
    fig, ax = plt.subplots(figsize=(6, 6))
    for metric in sorted({r.metric for r in report.rows}):
        rows = [r for r in report.rows if r.metric == metric]
        ax.scatter([r.measured for r in rows], [r.predicted for r in rows], s=18, label=metric)
    lo = min(min(r.measured, r.predicted) for r in report.rows) / 2
    hi = max(max(r.measured, r.predicted) for r in report.rows) * 2
    xs = np.array([lo, hi])
    ax.plot(xs, xs, color="black", lw=1)
    ax.fill_between(xs, xs * 0.8, xs * 1.2, color=COLORS["floor"], alpha=0.15, label="±20 %")
    ax.set(xscale="log", yscale="log", xlabel="measured", ylabel="predicted")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7)
    _fit_title(ax, f"{title}: median |error| {report.median_abs_error:.0%}")  # after the legend: the layout is final
    return _save(fig, path)


def explore_heatmap(xs, ys, grid, *, x: str, y: str, title: str, path=None):
    """An exploration's $/Mtok (the estimate; the best over its other axes) over two chip axes: one
    cell per pair of values, blank where no deployment meets the SLO."""
    _need_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4.8))
    masked = np.ma.masked_invalid(np.asarray(grid, float))
    im = ax.imshow(masked, origin="lower", aspect="auto", cmap="viridis_r")
    fig.colorbar(im, ax=ax, label="$ per million output tokens (estimate)")
    for axis, vals, setter, labeler in ((x, xs, ax.set_xticks, ax.set_xticklabels), (y, ys, ax.set_yticks,
                                                                                    ax.set_yticklabels)):
        step = max(1, len(vals) // 8)
        ticks = list(range(0, len(vals), step))
        setter(ticks)
        labeler([f"{vals[i]:.3g}" for i in ticks], fontsize=7)
    if masked.size <= 100:
        for (i, j), v in np.ndenumerate(masked.filled(np.nan)):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7, color="white")
    ax.set(xlabel=x, ylabel=y)
    _fit_title(ax, title)
    return _save(fig, path)


def explore_frontier(r, *, title: str, path=None):
    """An exploration's Pareto front: $/Mtok (tokens/s per chip where unpriced) against tokens/s per
    user, a step per model, each point a chip variant's best deployment."""
    _need_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts = list(r.pareto)
    priced = any(p["usd_per_mtok"] is not None for p in pts)
    key, ylabel, what = PLAN_AXES["cost" if priced else "throughput"]
    pts = [p for p in pts if p.get(key) is not None]
    for name in sorted({p["model"] for p in pts}):
        sel = [p for p in pts if p["model"] == name]
        _pareto_steps(ax, [p["tokens_per_s_per_user"] for p in sel], [p[key] for p in sel], what=what)
        ax.plot([p["tokens_per_s_per_user"] for p in sel], [p[key] for p in sel], "o", ms=4, ls="none", zorder=3,
                label=f"{name} (estimate)")
    def scale(v):  # log only where the values span a decade: a narrow range reads better linear
        v = [x for x in v if x and x > 0]
        return "log" if v and max(v) > 10 * min(v) else "linear"

    ax.set(xscale=scale([p["tokens_per_s_per_user"] for p in pts]), yscale=scale([p[key] for p in pts]),
           xlabel="tokens/s per user", ylabel=ylabel)
    _fit_title(ax, title)
    return _markers_legend(ax, path, what="markers: chip variants on the front (each its best deployment)")


def fleet_over_day(d, *, path=None):
    """A fleet over a day (fleet.fleet_day): chips in service per interval (a step) beside the
    request rate (a second axis), both over the curve's hours."""
    _need_matplotlib()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    t = np.array([i.start_s for i in d.intervals] + [d.intervals[-1].start_s + d.intervals[-1].duration_s]) / 3600.0
    chips = [i.chips for i in d.intervals]
    rate = [i.requests_per_s for i in d.intervals]
    ax.step(t, chips + chips[-1:], where="post", color=COLORS["compute"], label=f"chips in service (average {d.chips_average:,.0f}, peak {d.chips_peak:,.0f})")
    ax.set(xlabel="hours from the curve's start", ylabel="chips", ylim=(0, 1.1 * max(chips)))
    ax2 = ax.twinx()
    ax2.step(t, rate + rate[-1:], where="post", color=COLORS["weights"], ls="--", label="requests/s")
    ax2.set(ylabel="requests/s", ylim=(0, 1.1 * max(rate)))
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower left")
    ax.grid(True, alpha=0.25)
    _fit_title(ax, f"{d.model}: the fleet over {sig(d.span_s / 3600, 4)} h ({d.nodes_average:,.1f} nodes on average,"
                   f" {d.nodes_peak:,} at peak)")
    return _save(fig, path)


def client_frontier(sw, *, title: str, path=None):
    """What a benchmark client sees as concurrency grows (client.ClientSweep): output tokens/s per chip
    against tokens/s per user, one marker per concurrency, the estimate with its 80 % band beside the
    roofline bound of the same runs."""
    _need_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    user_b, chip_b = sw.roofline_tokens_per_s_per_user, sw.roofline_output_tokens_per_s_per_chip
    ax.plot(user_b, chip_b, "--", color=COLORS["step"], lw=1.5, label="roofline bound of the same runs")
    user, chip = sw.tokens_per_s_per_user, sw.output_tokens_per_s_per_chip
    if sw.output_range_80 is not None:
        lo, hi = (np.asarray(v, float) for v in sw.output_range_80)
        ax.fill_between(user, lo, hi, color=ESTIMATE_COLOR, alpha=0.15, lw=0, label="estimate's 80 % band (throughput)")
    ax.plot(user, chip, "o-", color=ESTIMATE_COLOR, lw=2.2, ms=4, zorder=6, label=f"estimate ({sw.label})")
    for c, x, y in zip(sw.concurrency, user, chip):
        ax.annotate(f"{c:,.0f}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=ESTIMATE_COLOR)
    ax.set(xscale="log", yscale="log", xlabel="tokens/s per user (1 / TPOT)", ylabel="output tokens/s per chip")
    _fit_title(ax, title + " — labels: concurrency")
    return _finish(fig, ax, path)
