"""The Python facade: one call per CLI command, by name, with the CLI's defaults and errors.

    >>> import tokenmath as tm
    >>> r = tm.step(model="deepseek-v3", system="gb200-nvl72", batch=2048, context="4k")
    >>> r["estimate"].startswith("calibrated"), r["roofline"]["bound"]
    (True, 'memory')

Each function here is what a `tokenmath` command runs: the CLI parses its flags, calls the function
and prints the result (`--json` is `result.to_dict()`, the text is `result.lines`), so the two cannot
diverge. Arguments take what the flags take: catalog names, config.json paths or spec objects
(`tm.get_model(...)`, `tm.Model(...)`) for models and systems, and numbers as numbers or as the CLI
writes them ("4k" = 4,000, "1.5M", "10ms": k/M/G are decimal). Bad input raises `TokenmathError` with
the CLI's one sentence (naming the flag, e.g. "--batch = 0 must be > 0"); a result that is not finite
is an error too, never a NaN or inf.

A result (`Result`) holds the record the CLI prints with `--json` (`to_dict()`, also item access
`r["step_s"]`), the text it prints (`lines`, `str(r)`), an HTML table in a notebook, and where the
command has rows (curve points, plan frontier, fleet candidates, validation cases) `to_frame()`: a
pandas DataFrame (`pip install 'tokenmath[notebook]'`) whose column names carry their units. Where the
command has `--plot`, `plot(path=None)` draws the same chart (matplotlib; without a path it returns
the figure).

This module sits with the surfaces (it formats through report.py and parses through the CLI's flag
table, `tokenmath.cli.FLAGS`); the core never imports it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import html
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from .errors import TokenmathError
from .units import sig

if TYPE_CHECKING:
    from .catalog import Catalog
    from .specs import Model, System

    ModelArg = str | Path | Model  # a catalog name, a config.json path or a Model
    SystemArg = str | System  # a catalog name or a System
    CatalogArg = Catalog | str | Path | Sequence[str | Path] | None  # a Catalog, or TOML files added to the built-in one

__all__ = ["Result", "CurveResult", "PlanResult", "FleetResult", "ValidationResult", "step", "curve", "plan", "fleet",
           "energy", "tco", "validate"]

EXPERT_FETCH = ("expected", "all")


# ---- results ----------------------------------------------------------------------------------


def _unit_name(key: str) -> str:
    """A column name with its unit: keys that carry one already (`step_s`, `usd_per_mtok`) stay."""
    return _UNITS.get(key, key)


# JSON keys whose unit is not in the name: the data frame's column names add it
_UNITS = {
    "batch": "batch_sequences", "context": "context_tokens", "chips": "chips", "mfu": "mfu_fraction",
    "mbu": "mbu_fraction", "error": "error_fraction", "batch_used": "batch_used_sequences",
    "prefill_share": "prefill_share_fraction", "utilisation": "utilisation_fraction",
    "input_tokens": "input_tokens", "output_tokens": "output_tokens", "replicas": "replicas",
}


def _flatten(row: dict, prefix: str = "") -> dict:
    """One flat row: nested dicts joined by '.', a [lo, hi] band as two columns (`_lo`, `_hi`)."""
    out: dict = {}
    for k, v in row.items():
        name = f"{prefix}{_unit_name(k) if not prefix else k}"
        if isinstance(v, dict):
            out |= _flatten(v, f"{name}.")
        elif isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v) and \
                (prefix.startswith("range_80") or k == "range_80"):
            out[f"{name}_lo"], out[f"{name}_hi"] = v
        elif isinstance(v, list):
            out[name] = ", ".join(map(str, v)) if all(not isinstance(x, (dict, list)) for x in v) else json.dumps(v)
        else:
            out[name] = v
    return out


@dataclass(frozen=True, repr=False, eq=False)
class Result:
    """What one command answers: its `--json` record, its text, and (where it has them) rows and a chart.

    `to_dict()` is exactly the CLI's `--json` object; `r[key]` reads one key of it; `str(r)` is the
    text the CLI prints; in a notebook the result shows as that text over an HTML table.
    """

    command: str
    record: dict = field(repr=False)
    lines: tuple = field(repr=False)
    parts: dict = field(default_factory=dict, repr=False)  # the core results behind the record
    draw: Callable | None = field(default=None, repr=False)  # draw(path) -> path, or the figure when path is None

    def to_dict(self) -> dict:
        """The CLI's `--json` object, exactly (the same encoding: NaN as null, numpy as lists)."""
        from . import report as rp

        return json.loads(rp.dumps(self.record))

    def __getitem__(self, key: str):
        return self.to_dict()[key]

    def keys(self):
        return self.record.keys()

    def text(self) -> str:
        """The text the CLI prints (tables drawn, markup removed)."""
        import io

        from rich.console import Console

        buf = io.StringIO()
        # force_jupyter=False: inside a notebook rich would display each line instead of writing to buf
        con = Console(file=buf, width=150, color_system=None, soft_wrap=True, highlight=False, force_jupyter=False,
                      force_terminal=False)
        for x in self.lines:
            con.print(x)
        return buf.getvalue().rstrip("\n")

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        head = self.text().splitlines()
        return f"<tokenmath {self.command}: {head[0] if head else ''}>"

    # rows: overridden by the results that have them
    def rows(self) -> list[dict]:
        """The result's rows as flat dicts (column names with units); empty for a single answer."""
        return []

    def to_frame(self):
        """The rows as a pandas DataFrame, one column per key with its unit in the name (`step_s`,
        `batch_sequences`, `range_80.step_s_lo`). Needs pandas: `pip install 'tokenmath[notebook]'`."""
        rows = self.rows()
        if not rows:
            raise TokenmathError(f"{self.command} answers one point, not rows; use to_dict() (rows come from curve,"
                                 " plan, fleet and validate)")
        try:
            import pandas as pd
        except ImportError:
            raise TokenmathError("to_frame() needs pandas: pip install 'tokenmath[notebook]'") from None
        return pd.DataFrame(rows)

    def _repr_html_(self) -> str:
        text = f"<pre style='white-space: pre-wrap'>{html.escape(self.text())}</pre>"
        rows = self.rows()
        if not rows:
            scalars = {k: v for k, v in self.to_dict().items() if not isinstance(v, (dict, list))}
            body = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{_cell(v)}</td></tr>"
                           for k, v in scalars.items())
            return text + f"<table>{body}</table>"
        cols = list(dict.fromkeys(k for r in rows for k in r))
        shown = rows if len(rows) <= 60 else rows[:30] + rows[-30:]
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in shown)
        more = "" if len(rows) <= 60 else f"<p>{len(rows):,} rows; the first and last 30 shown (to_frame() has all)</p>"
        return text + f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"

    def plot(self, path: str | Path | None = None):
        """Draw the command's chart (what `--plot` writes): to `path` (PNG, SVG or PDF; returns the
        path) or, with no path, return the matplotlib figure."""
        if self.draw is None:
            raise TokenmathError(f"{self.command} has no chart (the CLI has no --plot for it)")
        if path is not None:
            from . import paths
            from .plots import PLOT_FORMATS

            path = paths.output_path(Path(path), "--plot", inputs=[], force=True, replaces=True, suffixes=PLOT_FORMATS)
            return self.draw(path)
        fig = self.draw(None)
        _show_in_notebook(type(fig))
        return fig


def _show_in_notebook(figure_type) -> None:
    """In IPython, show a returned figure as a PNG: plots.py draws with the headless Agg backend, so
    the notebook's own matplotlib display hook is never installed."""
    import sys

    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return

    def png(fig) -> bytes:
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        return buf.getvalue()

    shell.display_formatter.formatters["image/png"].for_type(figure_type, png)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape("" if v is None else str(v))


class CurveResult(Result):
    """`tm.curve`: one row per point (batch, context, the estimate's step and rates, the bound's terms)."""

    def rows(self) -> list[dict]:
        return [_flatten(p) for p in self.to_dict()["points"]]


class PlanResult(Result):
    """`tm.plan`: one row per deployment on the Pareto frontier ($/Mtok against tokens/s per user)."""

    def rows(self) -> list[dict]:
        return [_flatten(p) for p in self.to_dict()["frontier"]]

    def plot_energy(self, path: str | Path | None = None):
        """`plan --plot-energy`: $/Mtok against J per output token over the frontier (to `path`, or the figure)."""
        if path is None:
            fig = plot_plan_energy(self)
            _show_in_notebook(type(fig))
            return fig
        from . import paths
        from .plots import PLOT_FORMATS

        return plot_plan_energy(self, paths.output_path(Path(path), "--plot-energy", inputs=[], force=True,
                                                        replaces=True, suffixes=PLOT_FORMATS))


class FleetResult(Result):
    """`tm.fleet`: one row per candidate fleet that was verified (the best first)."""

    def rows(self) -> list[dict]:
        return [_flatten(p) for p in self.to_dict()["candidates"]]


class FleetDayResult(Result):
    """`tm.fleet(..., rate_curve=...)`: one row per interval of the day (replicas per pool, chips,
    nodes, warm-up chip-seconds, dollars)."""

    def rows(self) -> list[dict]:
        return [_flatten(h) for h in self.to_dict()["hours"]]


class ValidationResult(Result):
    """`tm.validate`: one row per validation case (predicted, measured, error, the 80 % band)."""

    def rows(self) -> list[dict]:
        d = self.to_dict()
        return [_flatten(p) for p in d.get("rows") or d.get("energy", {}).get("rows", [])]


# ---- the shared pieces (the CLI's, so the parsing and the messages are one) --------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """numpy's RuntimeWarnings (overflow, invalid value) stay silent: a non-finite result is an error."""
    import numpy as np

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _facade(fn):
    """Run quietly and check that the record is finite (the CLI's last guard), for every call."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .args import check_finite

        with _quiet():
            result = fn(*args, **kwargs)
        check_finite(result.record)
        return result

    return wrapper


def _num(value, flag: str, *, allow_zero: bool = False, integer: bool = False):
    """A number given as a number or as the CLI writes it ('4k'), bounded as the flag is; None stays None.
    A float, as the CLI's text flags give it; an int with `integer` (the CLI's typed whole-number flags)."""
    if value is None:
        return None
    from .args import FLAGS, parse_number as parse

    if isinstance(value, bool):
        raise TokenmathError(f"{flag} = {value!r}; expected a number ({FLAGS[flag].meaning})")
    x = parse(value, flag, allow_zero=allow_zero)
    return int(x) if integer and FLAGS[flag].whole else x


def _catalog(catalog):
    """A Catalog object as it is, or the built-in catalog plus TOML files (the CLI's --catalog)."""
    from .catalog import Catalog, load_catalog

    if isinstance(catalog, Catalog):
        return catalog
    if isinstance(catalog, (str, Path)):
        catalog = [catalog]
    return load_catalog([Path(x) for x in catalog] if catalog else None)


def _model(cat, model):
    from .specs import Model

    if isinstance(model, Model):
        return model
    if isinstance(model, Path):
        model = str(model)
    if not isinstance(model, str):
        raise TokenmathError(f"model = {model!r}; expected a catalog name, a config.json path or a tokenmath Model")
    return cat.model(model)


def _system(cat, system):
    from .specs import System

    if isinstance(system, System):
        return system
    if not isinstance(system, str):
        raise TokenmathError(f"system = {system!r}; expected a catalog name or a tokenmath System")
    return cat.system(system)


def _systems(cat, systems) -> list:
    """The systems a search runs on: a comma-separated string or a list of names / System objects;
    default the whole catalog."""
    from .args import names_of

    if systems is None:
        return [cat.system(n) for n in sorted(cat.systems)]
    if isinstance(systems, str):
        return [cat.system(n) for n in names_of(systems, "--systems", "system name")]
    items = list(systems)
    if not items:
        raise TokenmathError("--systems = [] lists no system name; give a comma-separated list, or leave --systems out")
    return [_system(cat, x) for x in items]


def _dtype_list(dtypes, flag: str = "--weight-dtypes"):
    from .args import names_of
    from .units import check_dtype

    if dtypes is None:
        return None
    names = names_of(dtypes, flag, "dtype") if isinstance(dtypes, str) else list(dtypes)
    if not names:
        raise TokenmathError(f"{flag} = [] lists no dtype; give a comma-separated list, or leave {flag} out")
    return [check_dtype(x) for x in names]


def _price(usd_per_chip_hour):
    return _num(usd_per_chip_hour, "--usd-per-chip-hour")


def _expert_fetch(expert_fetch: str) -> None:
    if expert_fetch not in EXPERT_FETCH:
        raise TokenmathError(f"--expert-fetch = {expert_fetch!r}; expected 'expected' or 'all'")


def resolve_serving(cat, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips, *, batch=1.0,
                    sparse_topk=None, sparse_mode=None):
    """The pieces every serving command resolves from its arguments: (model, system, context in tokens,
    dtypes, chips — one replica's by default), a model or system given by name or as a spec object, a
    sparse-attention what-if applied. The CLI's serving commands resolve theirs here too."""
    from .args import SPARSE_MODES, dtypes_of
    from .estimate import replica_chips
    from .kvcache import with_sparse_attention

    if sparse_mode is not None:
        if sparse_mode not in SPARSE_MODES:
            raise TokenmathError(f"--sparse-mode = {sparse_mode!r}; expected one of {', '.join(SPARSE_MODES)}")
        if sparse_topk is None:
            raise TokenmathError(f"--sparse-mode = {sparse_mode!r} needs --sparse-topk K (the cached tokens read per layer)")
    m, s = _model(cat, model), _system(cat, system)
    if sparse_topk is not None:
        m = with_sparse_attention(m, sparse_topk, mode=sparse_mode or "topk")
    L = _num(context, "--context", allow_zero=True)
    dt = dtypes_of(weight_dtype, kv_dtype, compute_dtype)
    if chips is None:
        chips = replica_chips(m, s, L, batch, dtypes=dt)
    return m, s, float(L), dt, chips


def _totals_only_refused(m) -> TokenmathError:
    return TokenmathError(f"model {m.name!r} is defined by totals only; the per-operation estimate needs its "
                          "architecture (a config.json) — use --efficiency roofline for the bound")


# ---- step ---------------------------------------------------------------------------------------


@_facade
def step(model: ModelArg, system: SystemArg, *, batch: float | str = "1", context: float | str = "0", new_tokens: float | str = "1",
         chips: int | None = None, weight_dtype: str | None = None, kv_dtype: str = "bf16",
         compute_dtype: str | None = None, flops_efficiency: float = 1.0, hbm_efficiency: float = 1.0,
         efficiency: str = "calibrated", engine: str | None = None, usd_per_chip_hour: float | str | None = None,
         cost: str = "rental", expert_fetch: str = "expected", attention_flops: bool = True,
         allow_overflow: bool = False, catalog: CatalogArg = None) -> Result:
    """One forward pass: the calibrated estimate (the answer, with its 80 % band) and the roofline bound
    of the same pass beside it (`tokenmath step`).

    Args:
        model: catalog name, config.json path or `tokenmath.Model`.
        system: catalog name or `tokenmath.System`.
        batch: sequences in the pass, B (default 1).
        context: tokens attended to, L ("4k" = 4,000; default 0).
        new_tokens: new tokens per sequence, S (1 = decode).
        chips: chips in one replica (default: the scale-up domain, grown until weights + KV fit).
        efficiency: "calibrated" (the estimate), "roofline" (the bound) or a preset .json path.
        usd_per_chip_hour: a rental price instead of the catalog's ($ per chip-hour).
        cost: "rental" or "tco" (what owning the chips costs).

    Returns:
        A `Result` whose record has `step_s` (seconds per step, the estimate), `tokens_per_s`,
        `tokens_per_s_per_chip`, `usd_per_mtok` ($ per million tokens), `range_80` (the 80 % band) and
        `roofline` (the bound of the same pass, with its terms in seconds).

    Examples:
        >>> import tokenmath as tm
        >>> r = tm.step(model="deepseek-v3", system="gb200-nvl72", batch=2048, context="4k")
        >>> r["roofline"]["bound"], r["step_s"] > r["roofline"]["step_s"]
        ('memory', True)
    """
    from . import report as rp
    from .args import efficiency_of, priced, profile_of
    from .units import si

    cat = _catalog(catalog)
    B, S = _num(batch, "--batch"), _num(new_tokens, "--new-tokens")
    given = chips = _num(chips, "--chips", integer=True)
    m, s, L, dt, chips = resolve_serving(cat, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips, batch=B)
    price = _price(usd_per_chip_hour)
    if cost == "tco" and price is not None:
        raise TokenmathError("--cost tco and --usd-per-chip-hour both set the price; give one")
    _expert_fetch(expert_fetch)
    s = priced(s, cost, usd_per_chip_hour=price)
    eff = efficiency_of(_num(flops_efficiency, "--flops-efficiency"), _num(hbm_efficiency, "--hbm-efficiency"))
    prof = profile_of(efficiency, engine, s)
    if eff.label == "user" and not prof.is_roofline:
        raise TokenmathError("--flops-efficiency / --hbm-efficiency scale the roofline; give them with --efficiency roofline")
    if m.is_totals_only:
        return _step_totals_only(m, s, B, L, S, chips, dt, eff, prof, price, expert_fetch, attention_flops,
                                 allow_overflow)
    if not attention_flops:
        raise TokenmathError("--no-attention-flops drops attention FLOPs from the lecture's closed form (`balance`, or a "
                             "totals-only model); a pass of a model with its architecture always counts them")
    from .energy import maybe_energy_of_pass
    from .estimate import estimate_pass
    from .layout import layout_memory

    est = estimate_pass(m, s, B, L, S, chips=given, dtypes=dt, profile=prof, usd_per_chip_hour=price,
                        expert_fetch=expert_fetch, efficiency=eff)
    op = est.op
    mem = layout_memory(m, s, op.layout, B, L, dtypes=dt, new_tokens=S)
    if not mem.fits and not allow_overflow:
        raise TokenmathError(
            f"{m.name} needs {si(mem.total_bytes_per_chip, 'B')} per chip (weights + KV of {B:,.0f} × {L:,.0f} tokens "
            f"+ activations) on {op.chips} × {s.name} as {op.layout.describe()}, but a chip holds "
            f"{si(mem.hbm_bytes_per_chip, 'B')}; use more --chips, a smaller --batch or --context, narrower dtypes, "
            f"or --allow-overflow")
    rec = rp.step_record_of(est, m, s, dt, mem)
    en = maybe_energy_of_pass(est, s)
    rec.update(rp.energy_record(en))
    lines = rp.render_step(est, m, s, dt, mem, priced=est.usd_per_mtok is not None)
    lines = (*lines[:-1], rp.energy_line(en), lines[-1])  # the energy line before the assumptions
    return Result("step", rec, lines, {"estimate": est, "memory": mem, "energy": en, "model": m, "system": s})


def _step_totals_only(m, s, B, L, S, chips, dt, eff, prof, price, expert_fetch, attention_flops, allow_overflow):
    """A model defined by totals only has no layout: the roofline on ideal sharding over `chips`."""
    from . import report as rp
    from .energy import maybe_energy_of
    from .estimate import roofline_record
    from .roofline import step_time
    from .units import seconds, si

    if not prof.is_roofline:
        raise _totals_only_refused(m)
    st = step_time(m, s, B, L, S, chips=chips, dtypes=dt, efficiency=eff, usd_per_chip_hour=price,
                   expert_fetch=expert_fetch, attention_flops=attention_flops)
    if not st.fits and not allow_overflow:
        raise TokenmathError(
            f"{m.name} needs {si(st.memory_bytes, 'B')} (weights + KV of {B:,.0f} × {L:,.0f} tokens) but "
            f"{chips} × {s.name} hold {si(st.hbm_bytes, 'B')}; use more --chips, a smaller --batch or --context, "
            f"narrower dtypes, or --allow-overflow")
    rec = rp.step_record(st)
    label = "roofline" if eff.label == "roofline" else f"roofline × user efficiencies (flops {eff.flops:g}, hbm {eff.hbm:g})"
    rec["estimate"] = label
    rec["roofline"] = roofline_record(step_time(m, s, B, L, S, chips=chips, dtypes=dt, usd_per_chip_hour=price,
                                                expert_fetch=expert_fetch, attention_flops=attention_flops),
                                      layout="ideal sharding over every chip (a totals-only model has no layout)")
    en = maybe_energy_of(st, s)
    rec.update(rp.energy_record(en))
    a = st.assumptions
    cost = f"${sig(st.usd_per_mtok, 4)} per million tokens" if st.usd_per_mtok is not None else "no price (--usd-per-chip-hour)"
    lines = (f"{m.name} on {chips} × {s.name}: B = {B:,.0f}, L = {L:,.0f}, S = {S:,.0f} — a totals-only model: the "
             "roofline on ideal sharding (no layout, no estimate)",
             f"  compute {seconds(st.compute_s)} · weight fetch {seconds(st.weights_s)} · KV fetch {seconds(st.kv_s)} "
             f"· step {seconds(st.step_s)} → {st.bound} bound",
             f"{label}: {st.tokens_per_s:,.0f} tokens/s ({st.tokens_per_s_per_chip:,.0f} per chip); {cost}; "
             f"MFU {st.mfu:.1%}, MBU {st.mbu:.1%}; memory {si(st.memory_bytes, 'B')} of {si(st.hbm_bytes, 'B')}",
             rp.energy_line(en),
             f"[dim]{a.label}; weights {a.weight_dtype}, KV {a.kv_dtype}, compute {a.compute_dtype}; experts: "
             f"{a.expert_fetch}; attention FLOPs {'on' if a.attention_flops else 'off'}[/]")
    return Result("step", rec, lines, {"roofline": st, "energy": en, "model": m, "system": s})


# ---- curve --------------------------------------------------------------------------------------


@_facade
def curve(model: ModelArg, system: SystemArg, *, over: str = "batch", batch: float | str | None = None, context: float | str = "4096",
          points: int = 60, chips: int | None = None, weight_dtype: str | None = None, kv_dtype: str = "bf16",
          compute_dtype: str | None = None, sparse_topk: int | None = None, sparse_mode: str | None = None,
          efficiency: str = "calibrated", engine: str | None = None, expert_fetch: str = "expected",
          cost: str = "rental", catalog: CatalogArg = None) -> CurveResult:
    """Step latency, tokens/s per chip and per user, and $/Mtok over batch or context: the estimate at
    each point, the roofline bound of the same pass beside it (`tokenmath curve`).

    Args:
        over: "batch" (swept at `context`) or "context" (swept at `batch`, default the balance batch).
        context: tokens attended to, L (default 4,096).
        points: grid points, log spaced (2 to 10,000; default 60).

    Returns:
        A `CurveResult`: `to_frame()` has one row per point with `batch_sequences`, `context_tokens`,
        `step_s` (the estimate, seconds), `roofline_step_s` and its terms (`compute_s`, `weights_s`,
        `kv_s`), `tokens_per_s_per_chip`, `tokens_per_s_per_user`, `usd_per_mtok` and the 80 % band
        (`range_80.step_s_lo`, `_hi`); `plot()` draws latency against batch (or cost against context).

    Examples:
        >>> import tokenmath as tm
        >>> c = tm.curve(model="deepseek-v3", system="gb200-nvl72", points=5)
        >>> c["over"], c["points"][0]["batch"], len(c["points"]) >= 5   # (+ the knees where HBM fills)
        ('batch', 1.0, True)
    """
    import dataclasses

    import numpy as np

    from . import report as rp
    from . import serving as sv
    from .args import priced, profile_of

    cat = _catalog(catalog)
    B = _num(batch, "--batch")
    points = _num(points, "--points", integer=True)
    given = chips = _num(chips, "--chips", integer=True)
    sparse_topk = _num(sparse_topk, "--sparse-topk", integer=True)
    m, s, L, dt, chips = resolve_serving(cat, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips,
                                sparse_topk=sparse_topk, sparse_mode=sparse_mode)
    _expert_fetch(expert_fetch)
    if over not in ("batch", "context"):
        raise TokenmathError(f"over = {over!r}; expected 'batch' or 'context'")
    s = priced(s, cost)
    prof = profile_of(efficiency, engine, s)
    est = rep = None
    if m.is_totals_only:
        if not prof.is_roofline:
            raise _totals_only_refused(m)
    else:
        from .estimate import replica

        b0 = 1.0 if over == "batch" else (B or sv.balance_batch(m, s, dtypes=dt))
        rep = replica(m, s, b0, L if over == "batch" else 1.0, chips=given, dtypes=dt)
        chips = rep.chips
    st = sv.curve(m, s, over=over, batch=B, context=L, points=points, chips=chips, dtypes=dt,
                  layout=None if rep is None else rep.layout)
    fits = st.fits
    if rep is not None:
        from .estimate import estimate_pass
        from .layout import layout_memory

        est = estimate_pass(m, s, st.batch, st.context, 1.0, layout=rep.layout, dtypes=dt, profile=prof,
                            expert_fetch=expert_fetch)
        est = dataclasses.replace(est, replica=rep)
        # on the estimate's layout, in what a serving engine fills (layout.serving_hbm_bytes); the
        # roofline's own curve, in all of HBM
        mem = layout_memory(m, s, rep.layout, st.batch, st.context, dtypes=dt, kv_budget=prof.engine.kv_budget)
        fits = np.asarray(mem.fits if prof.is_roofline else mem.serves)
    if est is not None:
        from .energy import maybe_energy_of_pass

        rec = rp.curve_record_of(est, over, fits)
        en = maybe_energy_of_pass(est, s)
    else:
        from .energy import maybe_energy_of
        from .estimate import roofline_record

        rec = rp.curve_record(st, over, None)
        rec["roofline"] = roofline_record(st, layout="ideal sharding over every chip (a totals-only model has no layout)")
        en = maybe_energy_of(st, s)
    e = rp.energy_record(en)
    for i, row in enumerate(rec["points"]):  # the energy keys at every point
        row.update({k: (v if v is None or isinstance(v, str) else float(np.atleast_1d(v)[min(i, np.size(v) - 1)]))
                    for k, v in e.items() if k != "energy"})
    lines = _curve_lines(rec, m, s, chips, over, est, rep)

    def draw(path):
        from . import plots

        title = f"{m.name} on {chips} × {s.name}" + ("" if est is None else f" (TP{est.op.layout.tp} EP{est.op.layout.ep})")
        if over == "batch":
            return plots.latency_vs_batch(st, title=f"{title}, L = {L:,.0f}", path=path, est=est, fits=fits,
                                          balance_batch=sv.balance_batch(m, s, dtypes=dt), drain_s=sv.hbm_drain_s(s))
        return plots.cost_vs_context(st, title=f"{title}, B = {float(np.atleast_1d(st.batch)[0]):,.0f}", path=path,
                                     est=est, crossover=None if est is not None else
                                     sv.balance_context(m, s, None, chips=chips, dtypes=dt))

    return CurveResult("curve", rec, lines, {"estimate": est, "roofline": st, "replica": rep, "model": m, "system": s},
                       draw)


def _curve_lines(rec, m, s, chips, over, est, rep) -> tuple:
    from rich.table import Table

    from .units import seconds

    lines: list = []
    if rep is not None and rep.note:
        lines.append(f"[yellow]note:[/] {rep.note}")
    where = f"{chips} × {s.name}" + ("" if est is None else
                                     (f" ({rep.billed_chips:,.0f} billed)" if rep.billed_chips != chips else "")
                                     + f", TP{est.op.layout.tp} EP{est.op.layout.ep} PP{est.op.layout.pp}")
    t = Table(title=f"{m.name} on {where}: over {over} — estimate: {rec['estimate']}; roofline bound of the same pass "
              "beside it, with its terms (compute, weights, KV) and what decides it", title_justify="left")
    for col in ("batch", "context", "estimate", "roofline bound", "compute", "weights", "KV", "tok/s/chip", "tok/s/user",
                "$/Mtok", "bound"):
        t.add_column(col, justify="right")
    for p in rec["points"]:
        t.add_row(f"{p['batch']:,.0f}", f"{p['context']:,.0f}", seconds(p["step_s"]),
                  seconds(p.get("roofline_step_s", p["step_s"])), seconds(p["compute_s"]),
                  seconds(p["weights_s"]), seconds(p["kv_s"]), f"{p['tokens_per_s_per_chip']:,.0f}",
                  f"{p['tokens_per_s_per_user']:,.1f}", "-" if p["usd_per_mtok"] is None else f"{p['usd_per_mtok']:.4g}",
                  p["bound"] + ("" if p["fits"] else " (overflows HBM)"))
    lines.append(t)
    lines.append("[dim]estimate, tok/s and $/Mtok: the answer (its 80 % band in --json); roofline bound, compute, weights, "
                 "KV and bound: the roofline of the same pass on the same layout; experts: "
                 + (est.op.expert_fetch if est is not None else "all") + "[/]")
    from .specs import beyond_context_note

    beyond = beyond_context_note(m, max(float(p["context"]) for p in rec["points"]))
    if beyond:
        lines.append(f"[yellow]note:[/] {beyond}")
    return tuple(lines)



# ---- client ---------------------------------------------------------------------------------------


@_facade
def client(model: ModelArg, system: SystemArg, *, concurrency: str | float | Sequence | None = None,
           input_tokens: float | str = "1000", output_tokens: float | str = "1000", requests: float | str | None = None,
           arrivals: str = "spread", chips: int | None = None, weight_dtype: str | None = None, kv_dtype: str = "bf16",
           compute_dtype: str | None = None, efficiency: str = "calibrated", engine: str | None = None,
           catalog: CatalogArg = None) -> CurveResult:
    """What a benchmark client holding c requests in flight reports — vLLM's `vllm bench serve` or
    SGLang's `bench_serving` with --max-concurrency c, genai-perf at concurrency c: TTFT, TPOT, tokens/s
    per user and output tokens/s per chip, the estimate with its 80 % band and the roofline bound of
    the same runs beside it (`tokenmath client`; docs/client.md).

    Args:
        concurrency: requests in flight — a number, a sequence or array of them, or "1,8,64" (default:
            powers of two up to the first at or past the sequences whose KV fits at the mean context, at
            most 4,096, and that count; none past `requests`).
        input_tokens: prompt tokens per request (default 1,000).
        output_tokens: output tokens per request (default 1,000; at least 2, since TPOT = (E2E − TTFT)/(O − 1)).
        requests: the run's request count (`--num-prompts`); none: the steady state.
        arrivals: "spread" (random lengths: prompts arrive through the run) or "waves" (fixed lengths,
            as `--random-range-ratio 1` or `--ignore-eos`: a wave of c prompts starts and ends together).
        chips: chips in one replica (default: the scale-up domain, grown until weights + KV fit).
        engine: trtllm, vllm or sglang (default: the generic fit), with features after + .

    Returns:
        A `CurveResult` whose record has `points` (one per concurrency: `concurrency` — at most
        `requests` — and `concurrency_requested`, `running_batch`, `queued`,
        `ttft_s`, `tpot_s`, `tokens_per_s_per_user`, `output_tokens_per_s_per_chip`, `prefill_share`,
        the engine's two times `decode_step_s` and `prefill_s` (what one prompt adds), `prompt_wait_s`
        (a prompt's wait behind others), `cycle_s`, `e2e_s`,
        `range_80` and `roofline`), `kv_cap_sequences` and the replica; `to_frame()` one row per point.

    Examples:
        >>> import tokenmath as tm
        >>> r = tm.client(model="llama-3.1-8b", system="h100-sxm", concurrency="1,64", input_tokens=1000,
        ...               output_tokens=1000, weight_dtype="fp8", kv_dtype="fp8")
        >>> [p["concurrency"] for p in r["points"]], r["points"][1]["tpot_s"] > r["points"][0]["tpot_s"]
        ([1.0, 64.0], True)
    """
    from . import client as cl
    from .args import profile_of
    from .estimate import replica_record

    cat = _catalog(catalog)
    I, O = _num(input_tokens, "--input-tokens"), _num(output_tokens, "--output-tokens")
    cl.check_output_tokens(O)
    N = _num(requests, "--requests")
    c = None if concurrency is None else [_num(x, "--concurrency") for x in _concurrencies(concurrency)]
    given = _num(chips, "--chips", integer=True)
    # the replica holds the weights and one request's KV (client.serving_replica); past the KV that
    # fits the rest queue, so the concurrencies asked for never resize it (every row is the same deployment)
    m, s, _, dt, _ = resolve_serving(cat, model, system, I + O, weight_dtype, kv_dtype, compute_dtype, given)
    if m.is_totals_only:
        raise _totals_only_refused(m)
    prof = profile_of(efficiency, engine, s)
    rep = cl.serving_replica(m, s, I + O / 2, dtypes=dt, chips=given)
    sw = cl.client_sweep(m, s, rep.layout, c, I, O, profile=prof, dtypes=dt, billed_chips=rep.billed_chips,
                         requests=N, arrivals=arrivals)
    rec = _client_record(sw, m, s, dt, rep)
    rec["replica"] = replica_record(rep)

    def draw(path):
        from . import plots

        return plots.client_frontier(sw, title=f"{m.name} on {rep.chips} × {s.name} ({rep.layout.describe()}), "
                                     f"I = {I:,.0f}, O = {O:,.0f}", path=path)

    return CurveResult("client", rec, _client_lines(rec, sw, m, s, rep), {"sweep": sw, "model": m, "system": s,
                                                                          "replica": rep}, draw)


def _concurrencies(concurrency) -> list:
    """--concurrency as its items: "1,8,64", one number, or any sequence or array of them (at most
    client.MAX_POINTS, counted before any is parsed)."""
    import numpy as np

    from . import client as cl

    if isinstance(concurrency, str):
        items = [x.strip() for x in concurrency.split(",") if x.strip()]
        if not items:
            raise TokenmathError(f"--concurrency = {concurrency!r} lists no concurrency; give e.g. 1,8,64")
    elif isinstance(concurrency, np.ndarray):
        items = concurrency.ravel()[: cl.MAX_POINTS + 1].tolist()
    elif hasattr(concurrency, "__iter__") and not isinstance(concurrency, bytes):
        items = list(itertools.islice(concurrency, cl.MAX_POINTS + 1))
    else:
        items = [concurrency]
    cl.check_count(len(items))
    return items


def _client_record(sw, m, s, dt, rep) -> dict:
    import numpy as np

    e, b = sw.estimate, sw.roofline
    n = len(sw.concurrency)

    def at(x, i):
        return float(np.broadcast_to(np.asarray(x, float), (n,))[i])

    def band(r, i):
        return None if r is None else [at(r[0], i), at(r[1], i)]

    points = []
    for i, asked in enumerate(sw.concurrency):
        c, run = at(e.concurrency, i), at(e.decode_batch, i)
        points.append({
            "concurrency": c, "concurrency_requested": float(asked), "running_batch": run, "queued": c - run,
            "ttft_s": at(e.ttft_s, i), "tpot_s": at(e.tpot_s, i), "tokens_per_s_per_user": at(sw.tokens_per_s_per_user, i),
            "e2e_s": at(e.e2e_s, i), "output_tokens_per_s": at(e.output_tokens_per_s, i),
            "output_tokens_per_s_per_chip": at(sw.output_tokens_per_s_per_chip, i),
            "prefill_share": at(e.prefill_share, i), "decode_step_s": at(e.decode_step_s, i),
            "prefill_s": at(e.prefill_s, i), "prompt_wait_s": at(e.prompt_wait_s, i), "cycle_s": at(e.cycle_s, i),
            "range_80": {"ttft_s": band(sw.ttft_range_80, i), "tpot_s": band(sw.tpot_range_80, i),
                         "output_tokens_per_s_per_chip": band(sw.output_range_80, i)},
            "roofline": {"ttft_s": at(b.ttft_s, i), "tpot_s": at(b.tpot_s, i),
                         "tokens_per_s_per_user": at(sw.roofline_tokens_per_s_per_user, i),
                         "output_tokens_per_s_per_chip": at(sw.roofline_output_tokens_per_s_per_chip, i)},
        })
    return {"model": m.name, "system": s.name, "chips": rep.chips, "billed_chips": sw.billed_chips,
            "layout": sw.layout.describe(), "input_tokens": sw.input_tokens, "output_tokens": sw.output_tokens,
            "requests": sw.requests, "arrivals": sw.arrivals, "weight_dtype": dt.weight or m.weight_dtype,
            "kv_dtype": dt.kv, "estimate": sw.label, "kv_cap_sequences": sw.kv_cap, "kv_budget": sw.kv_budget,
            "points": points}


def client_cells(p: dict) -> list[str]:
    """One point of `tokenmath client` as its table's cells (the CLI's table and the blackboard's):
    concurrency, running, TTFT, TPOT, its band, tokens/s per user, per chip, its band, prefill share,
    and the bound's TPOT and tokens/s per chip."""
    from .units import seconds

    r = p["range_80"]
    tb = "-" if r["tpot_s"] is None else f"{seconds(r['tpot_s'][0])}–{seconds(r['tpot_s'][1])}"
    ob = "-" if r["output_tokens_per_s_per_chip"] is None else (
        f"{r['output_tokens_per_s_per_chip'][0]:,.0f}–{r['output_tokens_per_s_per_chip'][1]:,.0f}")
    return [f"{p['concurrency']:,.0f}", f"{p['running_batch']:,.0f}", seconds(p["ttft_s"]), seconds(p["tpot_s"]), tb,
            f"{p['tokens_per_s_per_user']:,.1f}", f"{p['output_tokens_per_s_per_chip']:,.0f}", ob,
            f"{p['prefill_share']:.0%}", seconds(p["roofline"]["tpot_s"]),
            f"{p['roofline']['output_tokens_per_s_per_chip']:,.0f}"]


CLIENT_COLUMNS = ("concurrency", "running", "TTFT", "TPOT", "TPOT 80 %", "tok/s/user", "tok/s/chip", "tok/s/chip 80 %",
                  "prefill", "bound: TPOT", "tok/s/chip")


def _client_lines(rec, sw, m, s, rep) -> tuple:
    from rich.table import Table

    from .layout import kv_budget_words

    lines: list = []
    if rep.note:
        lines.append(f"[yellow]note:[/] {rep.note}")
    n = rec["requests"]
    t = Table(title=f"{m.name} on {rep.chips} × {s.name} ({rec['layout']}), I = {rec['input_tokens']:,.0f}, "
              f"O = {rec['output_tokens']:,.0f}, {rec['arrivals']} arrivals"
              + ("" if n is None else f", {n:,.0f} request{'s' if n != 1 else ''}")
              + f" — what a benchmark client reports; estimate: {rec['estimate']}, roofline bound beside it",
              title_justify="left")
    for col in CLIENT_COLUMNS:
        t.add_column(col, justify="right")
    for p in rec["points"]:
        t.add_row(*client_cells(p))
    lines.append(t)
    capped = [p for p in rec["points"] if p["concurrency"] < p["concurrency_requested"]]
    if capped:
        lines.append(f"a run of {n:,.0f} request{'s' if n != 1 else ''} never has more in flight: concurrency "
                     + ", ".join(f"{p['concurrency_requested']:,.0f}" for p in capped) + f" run{'s' if len(capped) == 1 else ''} as {n:,.0f}")
    budget = kv_budget_words(rec.get("kv_budget", "total"))
    lines.append(f"beyond {rec['kv_cap_sequences']:,.0f} sequences (the KV that fits at the mean context "
                 f"I + O/2 in {budget}) the rest queue: TTFT grows, throughput stays")
    banded = sw.tpot_range_80 is not None
    lines.append(f"[dim]estimate ({rec['estimate']}): the answer"
                 + (", with the 80 % band of its model class" if banded else " (the roofline profile: no band)")
                 + f"; bound: the same runs with every step at its roofline bound; prefill: the share of the engine's "
                 f"time spent on prompts; weights {rec['weight_dtype']}, KV {rec['kv_dtype']}; TPOT = (E2E − TTFT)/(O − 1) "
                 "per request and output tokens/s = total output / run time, as vLLM's and SGLang's benchmark clients "
                 "count them[/]")
    return tuple(lines)


# ---- plan ---------------------------------------------------------------------------------------


@_facade
def plan(model: ModelArg, *, systems: str | Sequence | None = None, input_tokens: float | str = "2000",
         output_tokens: float | str = "500", min_tokens_per_s_per_user: float | None = None,
         max_ttft_s: float | None = None, demand_tokens_per_s: float | str | None = None,
         weight_dtypes: str | Sequence[str] | None = None, kv_dtype: str = "bf16", overlap: str = "full",
         usd_per_chip_hour: float | str | None = None, scheduler: str | None = None, efficiency: str = "calibrated",
         engine: str | None = None, objective: str = "cost", cost: str = "rental", catalog: CatalogArg = None,
         pool: str = "colocated", progress: Callable[[int, int, str], None] | None = None) -> PlanResult:
    """The cheapest way to serve a model under SLOs, searched over layouts × batch × weight dtypes on the
    catalog's systems: the Pareto frontier of $/Mtok against tokens/s per user (`tokenmath plan`).

    Args:
        systems: names ("b200,h200-sxm" or a list) or System objects; default the whole catalog.
        input_tokens: prompt tokens per request (default 2,000).
        output_tokens: generated tokens per request (default 500).
        min_tokens_per_s_per_user: SLO, decode tokens per second each user sees.
        max_ttft_s: SLO, time to first token (seconds).
        demand_tokens_per_s: total output tokens per second to serve ("1M"): replicas and chips.
        objective: "cost" ($/Mtok) or "energy" (J per output token).
        pool: "colocated" (prefill and decode on the same chips) or "decode" (the decode pool of a
            prefill/decode split: wide-EP decode layouts, docs/cluster.md).
        progress: called as progress(done, total, system_name) while the search runs.

    Returns:
        A `PlanResult`: record keys `best` and `frontier` (each a deployment: `system`, `tp`, `ep`,
        `batch`, `usd_per_mtok`, `tokens_per_s_per_user`, ...); `to_frame()` is the frontier, `plot()`
        the frontier chart.

    Examples:
        >>> import tokenmath as tm
        >>> p = tm.plan(model="llama-3.1-8b", systems="h100-sxm", min_tokens_per_s_per_user=50)
        >>> p["best"]["system"]
        'h100-sxm'
    """
    from . import plan as pl
    from . import report as rp
    from .args import priced
    from .units import check_dtype

    cat = _catalog(catalog)
    m = _model(cat, model)
    syss = [priced(x, cost, strict=False) for x in _systems(cat, systems)]
    wds = _dtype_list(weight_dtypes) or "deployable"
    kw = dict(input_tokens=_num(input_tokens, "--input-tokens"), output_tokens=_num(output_tokens, "--output-tokens"),
              min_tokens_per_s_per_user=_num(min_tokens_per_s_per_user, "--min-tokens-per-s-per-user"),
              max_ttft_s=_num(max_ttft_s, "--max-ttft-s"),
              demand_tokens_per_s=_num(demand_tokens_per_s, "--demand-tokens-per-s"), weight_dtypes=wds,
              kv_dtype=check_dtype(kv_dtype), overlap=overlap, usd_per_chip_hour=_price(usd_per_chip_hour),
              scheduler=scheduler, estimate=efficiency, engine=engine, goal=objective)
    if pool not in ("colocated", "decode"):
        raise TokenmathError(f"--pool = {pool!r}; expected 'colocated' or 'decode'")
    result = pl.plan(m, syss, progress=progress, decode_only=pool == "decode", **kw)

    def draw(path):
        from . import plots

        return plots.plan_frontier(result, title=f"{m.name}: I = {kw['input_tokens']:,.0f}, O = {kw['output_tokens']:,.0f}",
                                   path=path)

    r = PlanResult("plan", rp.plan_record(result), tuple(rp.render_plan(result)), {"plan": result, "model": m}, draw)
    return r


def plot_plan_energy(result: PlanResult, path: str | Path | None = None):
    """`plan --plot-energy`: $/Mtok against J per output token over a plan's frontier (to `path`, or the
    figure); the CLI's `plan --plot-energy`. In Python: `tm.plan(model="llama-3.1-8b").plot_energy("energy.png")`."""
    from . import plots

    p = result.parts["plan"]
    return plots.cost_vs_energy(p, title=f"{result.parts['model'].name}: cost and energy per output token over the"
                                " frontier", path=path)


# ---- fleet --------------------------------------------------------------------------------------

EXPORT_ENGINES = ("vllm", "sglang", "trtllm")


def fleet(model: ModelArg, *, request_rate: float | str | None = None, input_tokens: float | str | None = None,
          output_tokens: float | str | None = None, trace: str | Path | None = None, ttft_p99_s: float | None = None,
          tpot_p99_s: float | None = None, ttft_p50_s: float | None = None, tpot_p50_s: float | None = None,
          systems: str | Sequence | None = None, disaggregation: str = "auto", prefix_tokens: float | str | None = None,
          prefix_hit_rate: float | None = None, objective: str = "cost", verify: int | None = None,
          weight_dtypes: str | Sequence[str] | None = None, export: str | None = None, hf_model: str | None = None,
          usd_per_chip_hour: float | str | None = None, engine: str | None = None, cost: str = "rental",
          catalog: CatalogArg = None, rate_curve: str | Path | None = None, load_gb_per_s: float | str | None = None,
          mtp_draft_tokens: int | None = None, mtp_acceptance: float | None = None,
          prefix_cache_tier: str | None = None, prefix_cache_gb: float | str | None = None,
          prefix_count: int | None = None, prefill_tokens_per_rank: int | str | None = None,
          progress: Callable[[int, int, str], None] | None = None) -> FleetResult:
    """Which hardware, how many chips, what layout and what cost serve a request rate under p50/p99 TTFT
    and TPOT SLOs: aggregated or disaggregated, verified at steady state in simulation and sized down
    while the SLOs hold (`tokenmath fleet`).

    Args:
        request_rate: requests per second (or a `trace` that gives the rate and the lengths).
        input_tokens: mean prompt tokens per request.
        output_tokens: mean generated tokens per request.
        ttft_p99_s: SLO, 99th percentile time to first token (seconds).
        tpot_p99_s: SLO, 99th percentile time per output token (seconds).
        ttft_p50_s: SLO, median time to first token (seconds).
        tpot_p50_s: SLO, median time per output token (seconds).
        systems: names ("h200-sxm,b200" or a list) or System objects; default the whole catalog.
        disaggregation: "auto" (the cheaper that meets the SLOs), "on" or "off".
        objective: "cost" ($/h), "chips" or "energy" (J per output token).
        export: "vllm", "sglang" or "trtllm": launch commands for the chosen pools.
        rate_curve: a rate over a day (CSV `time_s,requests_per_s` or JSON lines; `example:deepseek-v3-day`
            is shipped): the fleet is verified at the peak and sized interval by interval; the record then
            has `hours`, `chips_average`, `chips_peak`, `nodes_average`, `nodes_peak`, `usd_per_day`,
            `warmup_usd_per_day` (docs/fleet.md). load_gb_per_s: GB/s per chip a started replica loads
            its weights at (default the scale-out NIC: a floor on the warm-up).
        mtp_draft_tokens: MTP / speculative decoding in the decode pools: tokens drafted per step.
        mtp_acceptance: the share of each drafted token accepted (0-1).
        prefix_cache_tier: "hbm", "dram" or "ssd": the prefix cache's tier, whose capacity (prefix_cache_gb,
            default the tier's on the fleet's chips) limits the hit rate over prefix_count prefixes.
        prefill_tokens_per_rank: a prefill pass's new tokens per attention-DP rank (default 8,192).

    Returns:
        A `FleetResult`: record key `best` (`mode`, `total_chips`, `usd_per_hour`,
        `usd_per_mtok_output`, the pools and the simulated tails in seconds) and `candidates`
        (`to_frame()`, one row each); `plot()` draws cost against tokens/s per user.

    Examples:
        >>> import tokenmath as tm
        >>> f = tm.fleet(model="llama-3.1-8b", request_rate=20, input_tokens=500, output_tokens=200,
        ...              ttft_p99_s=1, tpot_p99_s=0.05, systems="h100-sxm")
        >>> f["best"]["total_chips"] >= 1
        True
    """
    r = _fleet(**locals())
    if r.parts.get("export_refused") is not None:
        raise r.parts["export_refused"]
    return r


@_facade
def _fleet(model, *, request_rate=None, input_tokens=None, output_tokens=None, trace=None, ttft_p99_s=None,
           tpot_p99_s=None, ttft_p50_s=None, tpot_p50_s=None, systems=None, disaggregation="auto", prefix_tokens=None,
           prefix_hit_rate=None, objective="cost", verify=None, weight_dtypes=None, export=None, hf_model=None,
           usd_per_chip_hour=None, engine=None, cost="rental", catalog=None, rate_curve=None, load_gb_per_s=None,
           mtp_draft_tokens=None, mtp_acceptance=None, prefix_cache_tier=None, prefix_cache_gb=None, prefix_count=None,
           prefill_tokens_per_rank=None, progress=None) -> FleetResult:
    """`fleet` that keeps a refused --export in the result (the CLI prints the fleet, then the sentence)."""
    from . import fleet as fl
    from . import report as rp
    from .args import priced

    if export is not None and export not in EXPORT_ENGINES:
        raise TokenmathError(f"--export = {export!r}; expected one of {', '.join(EXPORT_ENGINES)}")
    cat = _catalog(catalog)
    m = _model(cat, model)
    if export is not None:  # refuse a launch that cannot be written before the fleet is sized
        from .export import check_model_ref

        if hf_model is not None:
            check_model_ref(hf_model, "--hf-model")
        elif not m.hf_repo:
            raise TokenmathError(f"--export needs the checkpoint to serve: model {m.name!r} has no Hugging Face repo "
                                 "id (hf_repo in the catalog, _name_or_path in its config.json); pass --hf-model")
    syss = [priced(x, cost, strict=False) for x in _systems(cat, systems)]
    tr = None
    if trace is not None:
        from .workload import read_trace

        tr = read_trace(Path(trace))
    rate = _num(request_rate, "--request-rate")
    I, O = _num(input_tokens, "--input-tokens"), _num(output_tokens, "--output-tokens")
    P = 0.0 if prefix_tokens is None else _num(prefix_tokens, "--prefix-tokens", allow_zero=True)
    prefix_hit_rate = _num(prefix_hit_rate, "--prefix-hit-rate")
    if P and prefix_hit_rate is None:
        raise TokenmathError("--prefix-tokens needs --prefix-hit-rate (the share of requests whose prefix is cached)")
    price = _price(usd_per_chip_hour)
    wds = _dtype_list(weight_dtypes) or "deployable"
    if export is not None and hf_model is None and weight_dtypes is None:
        # plan only what the engine can launch: dtypes with a checkpoint (or load-time quantisation) for it
        from .export import exportable_weight_dtypes

        wds = exportable_weight_dtypes(m, syss, export)
    slo = fl.Slo(ttft_p99_s=_num(ttft_p99_s, "--ttft-p99-s"), tpot_p99_s=_num(tpot_p99_s, "--tpot-p99-s"),
                 ttft_p50_s=_num(ttft_p50_s, "--ttft-p50-s"), tpot_p50_s=_num(tpot_p50_s, "--tpot-p50-s"))
    verify = _num(verify, "--verify", integer=True)
    extra = {}
    if mtp_draft_tokens is not None or mtp_acceptance is not None:
        if mtp_draft_tokens is None or mtp_acceptance is None:
            raise TokenmathError("--mtp-draft-tokens and --mtp-acceptance go together (tokens drafted per step and the"
                                 " share of each accepted)")
        extra.update(mtp_draft_tokens=_num(mtp_draft_tokens, "--mtp-draft-tokens", integer=True),
                     mtp_acceptance=_num(mtp_acceptance, "--mtp-acceptance"))
    if prefix_count is not None and prefix_cache_tier is None:
        raise TokenmathError("--prefix-count needs --prefix-cache-tier (the cache whose capacity it fills)")
    if prefix_cache_tier is not None or prefix_cache_gb is not None:
        if prefix_cache_tier is None:
            raise TokenmathError("--prefix-cache-gb needs --prefix-cache-tier (hbm, dram or ssd)")
        gb = _num(prefix_cache_gb, "--prefix-cache-gb")
        extra.update(prefix_cache_tier=prefix_cache_tier, storage=cat.storage,
                     prefix_count=_num(prefix_count, "--prefix-count", integer=True),
                     prefix_cache_bytes=None if gb is None else 1e9 * gb)
    ptr = _num(prefill_tokens_per_rank, "--prefill-tokens-per-rank", integer=True)
    if ptr is not None:
        extra["prefill_tokens_per_rank"] = ptr
    if rate_curve is not None:
        return _fleet_day(m, syss, rate_curve, I, O, slo, disaggregation, P, prefix_hit_rate, objective, price, engine,
                          verify, wds, load_gb_per_s, rate, tr, export, extra, progress)
    if load_gb_per_s is not None:
        raise TokenmathError("--load-gb-per-s is the warm-up of replicas started over a day: it needs --rate-curve")
    if export is not None:  # plan only layouts the engine's flags can express
        from .export import exportable_layouts

        extra["layouts"] = exportable_layouts(m, syss, export, wide_ep=fl.WIDE_EP)
    n_lays = None if export is None else {k: len(v) for k, v in extra["layouts"].items()}
    result = fl.fleet(m, syss, request_rate=rate, input_tokens=I, output_tokens=O, slo=slo,
                      disaggregation=disaggregation, prefix_tokens=P, prefix_hit_rate=prefix_hit_rate or 0.0,
                      objective=objective, usd_per_chip_hour=price, engine=engine, trace=tr,
                      verify=fl.VERIFY_DEFAULT if verify is None else verify, weight_dtypes=wds, **extra,
                      progress=progress)
    commands, refused = None, None
    if export is not None and result.best is not None:
        from .export import fleet_launches

        try:
            commands = fleet_launches(result.best, export, model=m, hf_model=hf_model)
        except TokenmathError as e:  # the fleet stands; no command that cannot start
            refused = TokenmathError(f"--export {export}: {e}")

    def draw(path):
        from . import plots

        return plots.fleet_frontier(result, path=path)

    return FleetResult("fleet", rp.fleet_record(result, commands, n_lays),
                       tuple(rp.render_fleet(result, commands, n_lays, export)),
                       {"fleet": result, "model": m, "export_refused": refused}, draw)


def _fleet_day(m, syss, path, I, O, slo, disaggregation, P, prefix_hit_rate, objective, price, engine, verify, wds,
               load_gb_per_s, rate, trace, export, extra, progress) -> FleetDayResult:
    """`fleet --rate-curve FILE`: the fleet over a day (fleet.fleet_day)."""
    from . import fleet as fl
    from . import report as rp
    from .ratecurve import read_rate_curve

    if rate is not None or trace is not None:
        raise TokenmathError("--rate-curve gives the rate over the day: leave out --request-rate and --trace")
    if I is None or O is None:
        raise TokenmathError("--rate-curve needs --input-tokens and --output-tokens (the mean request)")
    if export is not None:
        raise TokenmathError("--export writes the launch of one fleet: ask `fleet` at the rate you want launched,"
                             " without --rate-curve")
    curve = read_rate_curve(path)
    load = _num(load_gb_per_s, "--load-gb-per-s")
    day = fl.fleet_day(m, syss, curve, input_tokens=I, output_tokens=O, slo=slo,
                       load_bytes_per_s=None if load is None else 1e9 * load, disaggregation=disaggregation,
                       prefix_tokens=P, prefix_hit_rate=prefix_hit_rate or 0.0, objective=objective,
                       usd_per_chip_hour=price, engine=engine, verify=fl.VERIFY_DEFAULT if verify is None else verify,
                       weight_dtypes=wds, **extra, progress=progress)

    def draw(path):
        from . import plots

        return plots.fleet_over_day(day, path=path)

    return FleetDayResult("fleet", rp.fleet_day_record(day), tuple(rp.render_fleet_day(day)),
                  {"fleet_day": day, "model": m, "export_refused": None}, draw)


# ---- energy and tco -----------------------------------------------------------------------------


def _w(x) -> str:
    return f"{sig(x / 1e3, 3)} kW" if x >= 1e3 else f"{x:,.0f} W"


@_facade
def energy(model: ModelArg, system: SystemArg, *, batch: float | str = "64", context: float | str = "4096", new_tokens: float | str = "1",
           input_tokens: float | str | None = None, output_tokens: float | str | None = None, chips: int | None = None,
           weight_dtype: str | None = None, kv_dtype: str = "bf16", compute_dtype: str | None = None,
           efficiency: str = "calibrated", engine: str | None = None, level: str | None = None,
           facility: str | None = None, pue: float | None = None, power_cap_w: float | None = None,
           idle_w: float | None = None, host_w: float | None = None, board_w: float | None = None,
           expert_fetch: str = "expected", catalog: CatalogArg = None) -> Result:
    """Power and energy of a pass at three levels: board (the accelerators), node (boards + host, at the
    server's wall; the default) and facility (× PUE): watts by cause, joules per token, tokens/s per MW;
    with `input_tokens` and `output_tokens`, the energy of a request, prefill included (`tokenmath energy`).

    Args:
        batch: sequences in the pass (default 64).
        context: tokens attended to (default 4,096).
        input_tokens: with `output_tokens`, the energy of one request of these prompt tokens.
        output_tokens: the output tokens of that request.
        level: "board", "node" (default) or "facility": which power the headline watts and J/token are.
        pue: power usage effectiveness (≥ 1) instead of the facility class's.
        power_cap_w: a board power cap (W per chip).

    Returns:
        A `Result` with `watts` (W at the level), `joules_per_token` (J), `tokens_per_s_per_mw`, the
        power model under `power`, and with a request, `request.joules_per_output_token` (J).

    Examples:
        >>> import tokenmath as tm
        >>> e = tm.energy(model="deepseek-v3", system="gb200-nvl72", batch=2048)
        >>> e["energy_level"], e["joules_per_token"] > 0
        ('node', True)
    """
    from . import energy as en
    from . import report as rp
    from .args import profile_of
    from .units import seconds

    cat = _catalog(catalog)
    B, S = _num(batch, "--batch"), _num(new_tokens, "--new-tokens")
    given = chips = _num(chips, "--chips", integer=True)
    lvl = en.check_level(level or en.SERVER_LEVEL)
    m, s, L, dt, chips = resolve_serving(cat, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips, batch=B)
    _expert_fetch(expert_fetch)
    prof = profile_of(efficiency, engine, s)
    power = en.chip_power(s, overrides={"idle_w": _num(idle_w, "--idle-w"), "host_w": _num(host_w, "--host-w"),
                                        "board_w": _num(board_w, "--board-w"),
                                        "cap_w": _num(power_cap_w, "--power-cap-w")})
    fac = en.facility(pue=_num(pue, "--pue"), facility_class=facility)
    rep = None
    if m.is_totals_only:
        if not prof.is_roofline:
            raise _totals_only_refused(m)
        if input_tokens is not None or output_tokens is not None:
            raise TokenmathError(f"model {m.name!r} is defined by totals only; the energy of a request needs its "
                                 "architecture (a config.json)")
    else:
        from .estimate import replica

        rep = replica(m, s, B, L, S, chips=given, dtypes=dt)

    def one(b, ctx, new):
        """The energy of one pass: the estimate's step time, τ its new tokens per chip."""
        if rep is None:  # totals-only: the roofline on ideal sharding
            from .roofline import step_time

            return en.energy_of(step_time(m, s, b, ctx, new, chips=chips, dtypes=dt, expert_fetch=expert_fetch), s,
                                power=power, fac=fac, level=lvl), None
        from .estimate import estimate_pass

        est = estimate_pass(m, s, b, ctx, new, layout=rep.layout, dtypes=dt, profile=prof, expert_fetch=expert_fetch)
        return en.energy_of_pass(est, s, power=power, fac=fac, level=lvl), est

    e, est = one(B, L, S)
    rec = {"model": m.name, "system": s.name, "chips": chips if rep is None else rep.chips, "batch": B, "context": L,
           "new_tokens": S, "estimate": "roofline" if prof.is_roofline else prof.label, "step_s": e.step_s,
           "expert_fetch": expert_fetch} | rp.energy_record(e)
    if est is not None:
        from .estimate import replica_record, roofline_record

        rec["billed_chips"] = est.op.billed_chips
        rec["layout"] = est.op.layout.describe()
        rec["roofline"] = roofline_record(est.roofline)
        rec["replica"] = replica_record(rep)
    rec["power"] = {"board_w": power.board_w, "idle_w": power.idle_w, "host_w": power.host_w,
                    "host_max_w": power.host_max_w, "power_cap_w": power.cap_w, "a0": power.a0, "a1": power.a1,
                    "pue": fac.pue, "facility_class": fac.facility_class,
                    "sources": list(power.sources + fac.sources), "assumptions": list(power.assumptions + fac.assumptions)}
    where = f"{rec['chips']} × {s.name}" + ("" if est is None else f" ({est.op.layout.describe()}"
                                             + (f", {est.op.billed_chips:g} billed" if est.op.billed_chips != est.op.chips else "") + ")")
    lines = ([] if rep is None or not rep.note else [f"note: {rep.note}"]) + [
        f"{m.name} on {where}, B = {B:,.0f}, L = {L:,.0f}, S = {S:,.0f} ({rec['estimate']} step {seconds(e.step_s)};"
        f" {sig(e.tokens_per_chip, 4)} new tokens per chip)",
        "  " + rp.energy_line(e),
        f"  levels: board {_w(e.board_watts)} ({e.board_watts_per_chip:,.0f} W per working chip), node {_w(e.node_watts)}"
        f" (+ host {_w(e.host_watts)}), facility {_w(e.facility_watts)} (× PUE {fac.pue:g}"
        + ("" if fac.facility_class is None else f", {fac.facility_class}") + ")",
        "  watts by cause: " + ", ".join(f"{k} {sig(v / 1e3, 3)} kW" for k, v in e.parts_w.items())
        + " (compute and memory: the activity above idle split by the bound's time shares)"]
    if power.cap_w is not None:
        lines.append(f"  power cap {power.cap_w:g} W: " + (f"binds; clocks at {e.clock_ratio:.0%}, the step {e.slowdown:.3f}× "
                                                          "slower (its compute-bound share at 1/clock)" if e.slowdown > 1
                                                          else "does not bind at this load"))
    if input_tokens is not None or output_tokens is not None:
        if input_tokens is None or output_tokens is None:
            raise TokenmathError("--input-tokens and --output-tokens go together (the energy of one request)")
        I, O = _num(input_tokens, "--input-tokens"), _num(output_tokens, "--output-tokens")
        r = en.request_energy(m, s, rep.layout, B, I, O, profile=prof, dtypes=dt, power=power, fac=fac, level=lvl,
                              idle_chips=float(rep.billed_chips - rep.chips))
        rec["request"] = {"input_tokens": I, "output_tokens": O, "batch": B, "level": lvl,
                          "time_per_output_token_s": r.time_per_output_token_s, "joules": r.joules, "wh": r.wh,
                          "joules_per_output_token": r.joules_per_output_token,
                          "board_joules": r.board_joules, "node_joules": r.node_joules, "facility_joules": r.facility_joules,
                          "board_joules_per_output_token": r.board_joules_per_output_token,
                          "node_joules_per_output_token": r.node_joules_per_output_token,
                          "facility_joules_per_output_token": r.facility_joules_per_output_token,
                          "prefill_share": r.prefill_share,
                          "counted": "all the replica's energy, prefill included, shared among the requests it serves "
                                     "at once (as ML.ENERGY counts: energy ÷ output tokens)"}
        lines.append(f"  one request of {I:,.0f} in / {O:,.0f} out at {B:,.0f} at once ({seconds(r.time_per_output_token_s)}"
                     f" per output token, prefill chunked in): {sig(r.joules, 4)} J = {sig(r.wh, 3)} Wh at the {lvl} level,"
                     f" {sig(r.joules_per_output_token, 3)} J per output token (board {sig(r.board_joules_per_output_token, 3)},"
                     f" node {sig(r.node_joules_per_output_token, 3)}, facility {sig(r.facility_joules_per_output_token, 3)});"
                     f" prefill {r.prefill_share:.0%} of it")
    for a in power.assumptions + fac.assumptions:
        lines.append(f"  assumption: {a}")
    return Result("energy", rec, tuple(lines), {"energy": e, "estimate": est, "power": power, "facility": fac})


@_facade
def tco(system: SystemArg, *, capex_usd_per_chip: float | str | None = None, years: float | None = None,
        cost_of_capital: float | None = None, usd_per_kwh: float | None = None, facility: str | None = None,
        pue: float | None = None, facility_usd_per_kw_month: float | None = None, utilisation: float = 0.7,
        board_w: float | None = None, host_w: float | None = None, power_cap_w: float | None = None,
        no_network: bool = False, other_capex_share: float | None = None, model: ModelArg | None = None, price_sheet: str | None = None,
        batch: float | str = "256", context: float | str = "4096", catalog: CatalogArg = None) -> Result:
    """What owning a chip costs per hour ($/chip-hour): capital (server + cluster network as an annuity at
    the cost of capital), electricity (board + host, × PUE) at the utilisation, and facility rent on the
    provisioned power, with the rental price beside it (`tokenmath tco`). With `model` and `price_sheet`:
    owning against buying that model's tokens, and the break-even utilisation.

    Args:
        capex_usd_per_chip: purchase price per chip with its share of the server ($); default the catalog's.
        years: years the capital is recovered over (default 4).
        cost_of_capital: a yearly rate (0.1 = 10 %).
        usd_per_kwh: electricity ($ per kWh).
        utilisation: share of hours the chip is busy (0–1, default 0.7).
        model: with `price_sheet`, the model whose tokens owning is compared with buying.
        price_sheet: an API price sheet of the catalog (`tokenmath prices sheets`).

    Returns:
        A `Result` with `usd_per_chip_hour` (owning, $/h), its parts (`capex_usd_per_chip_hour`,
        `power_usd_per_chip_hour`, `facility_usd_per_chip_hour`), `rental_usd_per_chip_hour` and, with a
        model, `versus_api` (`owned_usd_per_mtok`, `breakeven_utilisation`).

    Examples:
        >>> import tokenmath as tm
        >>> t = tm.tco(system="gb200-nvl72")
        >>> t["usd_per_chip_hour"] > t["power_usd_per_chip_hour"] > 0
        True
    """
    from . import energy as en

    cat = _catalog(catalog)
    s = _system(cat, system)
    fac = en.facility(pue=_num(pue, "--pue"), facility_class=facility, usd_per_kwh=_num(usd_per_kwh, "--usd-per-kwh"),
                      facility_usd_per_kw_month=_num(facility_usd_per_kw_month, "--facility-usd-per-kw-month"),
                      cost_of_capital=_num(cost_of_capital, "--cost-of-capital"), years=_num(years, "--years"))
    power = en.chip_power(s, overrides={"board_w": _num(board_w, "--board-w"), "host_w": _num(host_w, "--host-w"),
                                        "cap_w": _num(power_cap_w, "--power-cap-w")})
    utilisation = _num(utilisation, "--utilisation", allow_zero=True)
    other_capex_share = _num(other_capex_share, "--other-capex-share")
    est = None
    if (model is None) != (price_sheet is None):
        raise TokenmathError("--model and --price-sheet go together (owning vs buying that model's tokens)")
    if model is not None:
        from .estimate import estimate_pass
        from .profiles import choose

        m, sheet = _model(cat, model), cat.price_sheet(price_sheet)
        B, L = _num(batch, "--batch"), _num(context, "--context", allow_zero=True)
        est = estimate_pass(m, s, B, L, profile=choose("calibrated", system=s))
    # with a model, a busy hour is that pass: its tokens per chip set the board's busy watts
    tau = None if est is None else en.busy_tokens_of(est)
    t = en.tco(s, capex_usd=_num(capex_usd_per_chip, "--capex-usd-per-chip"), utilisation=utilisation,
               fac=fac, power=power, network=not no_network, other_capex_share=other_capex_share or 0.0,
               busy_tokens_per_chip=tau)
    rec = {k: getattr(t, k) for k in ("system", "capex_usd", "server_capex_usd", "network_capex_usd", "other_capex_usd",
                                      "capex_usd_per_chip_hour", "power_usd_per_chip_hour", "facility_usd_per_chip_hour",
                                      "usd_per_chip_hour", "rental_usd_per_chip_hour", "utilisation", "average_chip_w",
                                      "busy_chip_w", "capital_recovery_factor", "provisioned_w")}
    rec |= {"host_w": power.host_w, "host_max_w": power.host_max_w, "usd_per_busy_chip_hour": en.busy_chip_hour_usd(t),
            "usd_per_busy_chip_hour_means": "the owning cost per hour ÷ utilisation: what `--cost tco` charges a busy "
                                             "chip-hour, since tokens are made only in the busy hours",
            "board_watts_per_chip_average": t.average_chip_w, "node_watts_per_chip_average": t.node_average_w,
            "facility_watts_per_chip_average": t.facility_average_w}
    rec |= {"pue": fac.pue, "facility_class": fac.facility_class, "usd_per_kwh": fac.usd_per_kwh,
            "facility_usd_per_kw_month": fac.facility_usd_per_kw_month, "cost_of_capital": fac.cost_of_capital,
            "years": fac.years, "sources": list(t.sources), "assumptions": list(t.assumptions)}
    rent = "no rental price in the catalog" if t.rental_usd_per_chip_hour is None else \
        f"rented: ${t.rental_usd_per_chip_hour:,.2f}/chip-hour ({t.usd_per_chip_hour / t.rental_usd_per_chip_hour:.2f}× owned/rented)"
    busy = en.busy_chip_hour_usd(t)
    cap = (f"${t.server_capex_usd:,.0f}" + (f" + network ${t.network_capex_usd:,.0f}" if t.network_capex_usd else "")
           + (f" + other ${t.other_capex_usd:,.0f}" if t.other_capex_usd else ""))
    lines = [f"{s.name}: owning one chip costs ${t.usd_per_chip_hour:,.3f} per hour at {t.utilisation:.0%} utilisation"
             + ("" if busy is None else f" = ${busy:,.3f} per busy chip-hour (what --cost tco charges a token)") + f"; {rent}",
             f"  capital   ${t.capex_usd_per_chip_hour:,.3f}/h  ({cap} × CRF {t.capital_recovery_factor:.4f} at"
             f" {fac.cost_of_capital:.0%} over {fac.years:g} years / 8,766 h)",
             f"  power     ${t.power_usd_per_chip_hour:,.3f}/h  (({t.average_chip_w:,.0f} W average board + {power.host_w:,.0f} W"
             f" host) × PUE {fac.pue:g} × ${fac.usd_per_kwh:g}/kWh: {t.facility_average_w:,.0f} W at the facility's meter)",
             f"  facility  ${t.facility_usd_per_chip_hour:,.3f}/h  (${fac.facility_usd_per_kw_month:g}/kW-month on the"
             f" provisioned {t.provisioned_w:,.0f} W: board limit + host rating)"]
    if model is not None:
        chips = est.op.chips
        tps = float(est.tokens_per_s_per_chip)
        owned = t.usd_per_chip_hour / (tps * t.utilisation * 3600 / 1e6) if t.utilisation > 0 else None
        u_star = en.breakeven_utilisation(t, tokens_per_s_per_chip=tps, api_usd_per_mtok=sheet.output_usd_per_mtok)
        rec["versus_api"] = {"model": m.name, "price_sheet": sheet.name, "api_output_usd_per_mtok": sheet.output_usd_per_mtok,
                             "tokens_per_s_per_chip": tps, "owned_usd_per_mtok": owned, "breakeven_utilisation": u_star,
                             "estimate": est.label, "batch": B, "context": L, "chips": chips}
        lines.append(f"  vs {sheet.name} (${sheet.output_usd_per_mtok:g}/Mtok output): {m.name} at B = {B:,.0f}, L = {L:,.0f}"
                     f" makes {tps:,.0f} tokens/s per chip ({est.label}); owned at {t.utilisation:.0%}: "
                     + ("-" if owned is None else f"${sig(owned, 4)}/Mtok")
                     + ("; owning never beats the API" if u_star is None else f"; owning wins above {u_star:.1%} utilisation"))
    lines += [f"  assumption: {x}" for x in t.assumptions]
    lines.append(f"  sources: {len(t.sources)} figures from energy.toml (--json lists each; docs/energy-sources.md)")
    return Result("tco", rec, tuple(lines), {"tco": t, "estimate": est})


# ---- validate -----------------------------------------------------------------------------------


@_facade
def engines(*, efficiency: str = "calibrated") -> Result:
    """What `--engine` can name (`tokenmath engines`): each engine's documented features — how it sizes
    its KV cache (`kv_budget`), how attention-DP ranks reach the experts (`moe_a2a`, `deepep_mode`),
    what communication it hides (`comm_overlap`) — with their sources, and where the calibrated preset
    fitted it (cases per vendor generation); then the named feature sets a run adds with `+`.

    Args:
        efficiency: 'calibrated' (the shipped preset) or a preset .json file `calibrate` wrote.
    """
    from rich.table import Table

    from .layout import kv_budget_words
    from .profiles import engine_records

    if efficiency not in ("calibrated", "estimate") and not str(efficiency).endswith(".json"):
        raise TokenmathError(f"--efficiency = {efficiency!r}; expected 'calibrated' or a preset .json file")
    rec = engine_records(None if efficiency in ("calibrated", "estimate") else str(efficiency))
    t = Table(title="tokenmath engines (--engine NAME[+SET...]; default: generic)", title_justify="left")
    for col in ("engine", "KV budget", "MoE dispatch", "overlap", "fitted on (cases)", "features as of"):
        t.add_column(col, justify="right" if col == "overlap" else "left")
    for e in rec["engines"]:
        f = e["features"]
        kvb = kv_budget_words(f["kv_budget"], short=True)
        a2a = f["moe_a2a"] + (f" ({f['deepep_mode']})" if f["moe_a2a"] == "deepep" else "")
        where = ", ".join(f"{g} {c['cases']}" for g, c in e["fitted_on"].items()) or "-"
        t.add_row(e["name"], kvb, a2a, f"{f['comm_overlap']:g}", where,
                  e["as_of"] if e["documented"] else "not documented: defaults")
    sets = Table(title="feature sets a run adds (--engine NAME+SET)", title_justify="left")
    for col in ("set", "sets"):
        sets.add_column(col)
    for fs in rec["feature_sets"]:
        sets.add_row(fs["name"], ", ".join(f"{k} = {v}" for k, v in fs["features"].items()))
    lines = (t, sets, "[dim]KV budget: the share of memory the engine gives weights + KV (0.9 of HBM: vLLM, SGLang) or the"
             " KV cache alone (0.9 of what the weights leave free: TensorRT-LLM); each engine's source is in --json"
             " (catalog/engines.toml); an engine not documented there runs the Engine defaults[/dim]")
    return Result("engines", rec, lines)


@_facade
def validate(files: str | Path | Sequence[str | Path] | None = None, *, efficiency: str = "calibrated",
             catalog: CatalogArg = None) -> ValidationResult:
    """Predicted against measured on validation cases: each case's error, median and p90 |error| by
    metric, system, source, vendor, engine and model class, and how often the 80 % band holds the
    measurement (`tokenmath validate`).

    Args:
        files: case files (JSON lines), one or a list; default the shipped cases.
        efficiency: "calibrated" (each case with its engine and vendor profile), "roofline" (the bound)
            or a preset .json (shown beside the shipped preset).

    Returns:
        A `ValidationResult`: `median_abs_error`, `p90_abs_error` (fractions), `by_metric`, ... and
        `rows` (`to_frame()`: `predicted`, `measured` in the unit of the row's `metric`, `error_fraction`,
        `range_80_lo`/`_hi`, `in_band_80`); `plot()` draws predicted against measured.

    Examples:
        >>> import tokenmath as tm
        >>> v = tm.validate()
        >>> 0 < v["median_abs_error"] < 1
        True
    """
    from . import calibrate as cb
    from . import profiles as pf
    from . import report as rp
    from . import validate as vd
    from . import validate_energy as ve  # energy cases (their own module), run beside the step cases

    cat = _catalog(catalog)
    if isinstance(files, (str, Path)):
        files = [files]
    files = [Path(f) for f in files] if files else None
    cases = []
    for f in files or [None]:
        cases += vd.load_cases(f)
    ecases = [c for f in files or [None] for c in ve.load_energy_cases(f)]
    if not cases:  # energy cases only
        er = ve.validate_energy(ecases, cat)
        return ValidationResult("validate", {"energy": ve.energy_record(er)}, tuple(ve.render_energy(er)),
                                {"energy": er})
    preset = None
    if efficiency == "roofline":
        prof, fitted = pf.ROOFLINE_PROFILE, None
    else:
        if efficiency not in ("calibrated", "estimate") and not str(efficiency).endswith(".json"):
            raise TokenmathError(f"--efficiency = {efficiency!r}; expected 'calibrated', 'roofline' or a preset .json file")
        efficiency = str(efficiency)
        preset = pf.preset_record(None if efficiency in ("calibrated", "estimate") else efficiency)
        prof, fitted = "calibrated", set(preset.get("systems", []))
    r = vd.validate(cases, prof, cat, fitted_systems=fitted, preset=preset)
    shipped = None
    if efficiency.endswith(".json"):  # your preset beside the shipped one, on the same cases
        import dataclasses

        r = dataclasses.replace(r, label=f"preset {Path(efficiency).name} (each case: its engine and vendor profile)")
        shipped = vd.validate(cases, "calibrated", cat, preset=pf.preset_record(None))
    rec = rp.validation_record(r, preset)
    lines = rp.render_validation(r, preset)
    if preset is not None:  # the preset's fitted parameters that sit at a bound of their fit
        from .report import at_bound_lines

        rec["at_bound"] = cb.preset_at_bounds(preset) + [x | {"profile": "your fit (× on the preset)"}
                                                         for x in preset.get("user_fit", {}).get("at_bound", [])]
        lines += at_bound_lines(rec["at_bound"])
    if shipped is not None:
        rec["shipped"] = {"label": shipped.label, "median_abs_error": shipped.median_abs_error,
                          "p90_abs_error": shipped.p90_abs_error, "n": len(shipped.rows)}
        lines.insert(1, f"  side by side on these {len(r.rows)} cases: {Path(efficiency).name} median {r.median_abs_error:.1%},"
                        f" p90 {r.p90_abs_error:.1%}; the shipped preset median {shipped.median_abs_error:.1%},"
                        f" p90 {shipped.p90_abs_error:.1%}")
    er = None
    if ecases:
        er = ve.validate_energy(ecases, cat)
        rec["energy"] = ve.energy_record(er)
        lines += ve.render_energy(er)

    def draw(path):
        from . import plots

        return plots.predicted_vs_measured(r, title=f"{len(r.rows)} cases, {r.label}", path=path)

    return ValidationResult("validate", rec, tuple(lines), {"validation": r, "energy": er}, draw)
