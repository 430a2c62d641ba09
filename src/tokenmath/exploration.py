"""Design-space exploration: the planner's best estimate over hypothetical chips, models and workloads.

    explore(model="deepseek-v3", base_chip="h100-sxm", vary=["hbm_bytes_per_s=3.35e12:13.4e12:4"],
            input_tokens=2000, output_tokens=500, min_tokens_per_s_per_user=50, out="x.parquet")

A *point* is one model on one chip variant under one workload: a base system (a catalog system;
several are an axis) with the varied fields replaced (`FIELDS`: the catalog's own names — hbm_bytes_per_s,
bf16_flops_per_s, scaleup_chips, ...). For each point the planner's search (plan.plan_system: every
candidate layout × batch × deployable weight dtype, in one broadcast per dtype; layout axes tp, ep,
pp keep the candidates with those degrees) runs under the
calibrated per-operation step model (stepmodel.op_step, the estimate) and, beside it, at peak rates
(the roofline bound); the point's answer is the cheapest deployment ($/Mtok; tokens/s per chip where
the system has no price) whose users see at least `min_tokens_per_s_per_user`. Its row holds the
estimate's $/Mtok with the 80 % band, tokens/s per chip and per user, J per output token
(energy.plan_energy), the binding term (the largest part of the estimated decode step at that
layout and batch), and the roofline bound of that same deployment (`roofline_*`, plan.plan_bound:
the same layout, batch and dtypes at peak rates, as `tokenmath plan` shows it).

The space is enumerated in chunks of consecutive points (a mixed-radix index: models, then the
axes in the order given, the last fastest); each chunk is one task (parallel.stream_tasks: in this
process, a local process pool, or a Dask cluster), its rows written as one Parquet file
(`part-NNNNNN.parquet`) in the folder `out` as it finishes, with the space in `_explore.json`:
a run stopped half-way and started again with the same arguments skips the chunks already written.
Only the chunks in flight are held in memory; the Pareto front is merged chunk by chunk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .errors import TokenmathError
from .specs import Model, System
from .units import parse_bounded, sig


# --------------------------------------------------------------------------------------------
# The fields a point may vary, as the catalog spells them, with their units and bounds
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    """A field an axis may vary: where it lives (chip, system, workload, layout), its unit, and the range a
    value must lie in. The bounds are physical sense, not the catalog's range: the upper ones sit
    two to three orders of magnitude above the largest chip in the catalog (2026)."""

    where: str  # "chip" | "system" | "workload" | "layout"
    kind: str  # units.parse_quantity kind
    unit: str  # the unit written into the Parquet column metadata
    low: float
    high: float
    whole: bool = False
    meaning: str = ""


FIELDS: dict[str, FieldSpec] = {
    "hbm_bytes": FieldSpec("chip", "bytes", "B", 1e6, 1e14, meaning="HBM capacity per chip, bytes"),
    "hbm_bytes_per_s": FieldSpec("chip", "bytes_per_s", "B/s", 1e9, 1e16, meaning="HBM bandwidth per chip, bytes/s"),
    "bf16_flops_per_s": FieldSpec("chip", "flops_per_s", "FLOP/s", 1e9, 1e19, meaning="dense BF16 FLOP/s per chip"),
    "fp8_flops_per_s": FieldSpec("chip", "flops_per_s", "FLOP/s", 1e9, 1e19, meaning="dense FP8 FLOP/s per chip"),
    "int8_flops_per_s": FieldSpec("chip", "flops_per_s", "FLOP/s", 1e9, 1e19, meaning="dense INT8 OP/s per chip"),
    "fp4_flops_per_s": FieldSpec("chip", "flops_per_s", "FLOP/s", 1e9, 1e19, meaning="dense FP4 FLOP/s per chip"),
    "power_w": FieldSpec("chip", "watts", "W", 1.0, 1e5, meaning="board power per chip, watts"),
    "scaleup_chips": FieldSpec("system", "count", "chips", 1, 65536, whole=True, meaning="chips in a scale-up domain"),
    "scaleup_bytes_per_s": FieldSpec("system", "bytes_per_s", "B/s", 1e6, 1e16,
                                     meaning="scale-up bandwidth per chip, one direction, bytes/s"),
    "scaleout_bytes_per_s": FieldSpec("system", "bytes_per_s", "B/s", 1e6, 1e16,
                                      meaning="scale-out bandwidth per chip, one direction, bytes/s"),
    "usd_per_chip_hour": FieldSpec("system", "usd", "USD/chip-hour", 1e-6, 1e4, meaning="$ per chip-hour"),
    "input_tokens": FieldSpec("workload", "count", "tokens", 1, 1e8, whole=True, meaning="prompt tokens per request"),
    "output_tokens": FieldSpec("workload", "count", "tokens", 1, 1e8, whole=True, meaning="output tokens per request"),
    "min_tokens_per_s_per_user": FieldSpec("workload", "count", "tokens/s", 1e-9, 1e7,
                                           meaning="SLO: decode tokens/s each user sees"),
    # a layout axis restricts the planner's search to its candidate layouts with that degree
    "tp": FieldSpec("layout", "count", "", 1, 65536, whole=True,
                    meaning="tensor-parallel degree: only layouts with this TP are searched"),
    "ep": FieldSpec("layout", "count", "", 1, 65536, whole=True,
                    meaning="expert-parallel degree: only layouts with this EP are searched"),
    "pp": FieldSpec("layout", "count", "", 1, 65536, whole=True,
                    meaning="pipeline stages: only layouts with this PP are searched"),
}
HARDWARE = ("chip", "system")  # the FieldSpec.where of a hypothetical chip's fields

MAX_POINTS = 10**9  # points in one exploration: the scale; every chunk is resumable
MAX_AXIS_VALUES = 10**6
MAX_AXES = 16
MAX_MODELS = 100
CHUNK_POINTS_MAX = 512  # a chunk is one task: ~2-5 s of one core, so progress and resume are fine-grained
ROW_BYTES = 2048  # memory a point's row and its share of a chunk's working arrays take (bench_explore.py)
WORKER_BASE_BYTES = 250e6  # one worker process: Python, numpy, tokenmath, its catalog (RSS, measured)
MAX_FRONT = 10_000  # Pareto records returned (a 2-D front of a real space holds tens)
PART = "part-{:06d}.parquet"
MANIFEST = "_explore.json"


def field_names() -> str:
    return ", ".join(FIELDS)


@dataclass(frozen=True)
class Axis:
    field: str
    values: tuple[float, ...]

    @property
    def spec(self) -> FieldSpec:
        return FIELDS[self.field]


def _value(text, name: str, spec: FieldSpec) -> float:
    """A value with the field's unit ('6.7 TB/s') or a plain number in it ('6.7e12', '6.7T'), bounded."""
    kw = dict(what=f"--vary {name}", low=spec.low, low_inclusive=True, high=spec.high, whole=spec.whole,
              meaning=spec.meaning)
    try:
        return parse_bounded(text, spec.kind, **kw)
    except TokenmathError as e:
        if "has unit ''" not in str(e):
            raise
    return parse_bounded(text, "count", **kw)


def parse_axis(text: str | Axis) -> Axis:
    """'FIELD=START:STOP:N' (N evenly spaced values, both ends included) or 'FIELD=v1,v2,...';
    values may carry units ('6.7 TB/s'). One sentence for an unknown field, a malformed axis, or a
    value outside the field's bounds."""
    if isinstance(text, Axis):
        return text
    if not isinstance(text, str) or "=" not in text:
        raise TokenmathError(f"--vary = {text!r} is not FIELD=START:STOP:N or FIELD=v1,v2,...")
    name, _, rest = text.partition("=")
    name = name.strip()
    if name not in FIELDS:
        raise TokenmathError(f"--vary field {name!r} is not a field explore can vary; expected one of {field_names()}")
    spec = FIELDS[name]
    rest = rest.strip()
    if not rest:
        raise TokenmathError(f"--vary {name} gives no values; expected {name}=START:STOP:N or {name}=v1,v2,...")
    if ":" in rest:
        parts = rest.split(":")
        if len(parts) != 3:
            raise TokenmathError(f"--vary {name}={rest!r} is not START:STOP:N (three parts separated by ':')")
        start, stop = _value(parts[0], name, spec), _value(parts[1], name, spec)
        n = parse_bounded(parts[2], "count", what=f"--vary {name} N", low=1, low_inclusive=True,
                          high=MAX_AXIS_VALUES, whole=True, meaning="values on the axis")
        vals = np.linspace(start, stop, int(n))
        if spec.whole:
            vals = np.round(vals)
    else:
        items = [x.strip() for x in rest.split(",") if x.strip()]
        if not items:
            raise TokenmathError(f"--vary {name}={rest!r} lists no values")
        if len(items) > MAX_AXIS_VALUES:
            raise TokenmathError(f"--vary {name} lists {len(items):,} values; at most {MAX_AXIS_VALUES:,}")
        vals = np.array([_value(x, name, spec) for x in items])
    vals = tuple(dict.fromkeys(float(v) for v in vals))  # in order, without repeats
    return Axis(name, vals)


# --------------------------------------------------------------------------------------------
# The space
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Space:
    """What is explored: models × base systems × axes, under a workload (the axes may vary it)."""

    models: tuple[Model, ...]
    bases: tuple[System, ...]
    axes: tuple[Axis, ...]
    input_tokens: float
    output_tokens: float
    min_tokens_per_s_per_user: float | None
    goal: str = "cost"

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.models), len(self.bases)) + tuple(len(a.values) for a in self.axes)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def describe(self) -> dict:
        """The space as plain data: what `_explore.json` records, and what a resumed run must match."""
        return {"models": [m.name for m in self.models], "base_chips": [b.name for b in self.bases],
                "bases": [_system_fields(b) for b in self.bases],
                "axes": [{"field": a.field, "unit": a.spec.unit, "values": list(a.values)} for a in self.axes],
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "min_tokens_per_s_per_user": self.min_tokens_per_s_per_user, "objective": self.goal,
                "estimate": _estimate_label()}

    def brief(self) -> dict:
        """describe(), with an axis of more than 100 values given as its count and range (the JSON
        summary stays small; `_explore.json` keeps every value)."""
        d = self.describe()
        d["axes"] = [a if len(a["values"]) <= 100 else
                     {"field": a["field"], "unit": a["unit"], "count": len(a["values"]), "min": min(a["values"]),
                      "max": max(a["values"])} for a in d["axes"]]
        return d

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()[:16]


def _estimate_label() -> str:
    """The calibrated profile's label (its date and preset) and tokenmath's version: a folder written
    under another calibration is not resumed as if it were this one's."""
    from . import __version__
    from .profiles import choose

    return f"{choose('calibrated').label}; tokenmath {__version__}"


def _system_fields(s: System) -> dict:
    c = s.chip
    return {"hbm_bytes": c.hbm_bytes, "hbm_bytes_per_s": c.hbm_bytes_per_s, "bf16_flops_per_s": c.bf16_flops_per_s,
            "fp8_flops_per_s": c.fp8_flops_per_s, "int8_flops_per_s": c.int8_flops_per_s,
            "fp4_flops_per_s": c.fp4_flops_per_s, "power_w": c.power_w, "scaleup_chips": s.scaleup_chips,
            "scaleup_bytes_per_s": s.scaleup_bytes_per_s, "scaleout_bytes_per_s": s.scaleout_bytes_per_s,
            "usd_per_chip_hour": s.usd_per_chip_hour}


def variant(base: System, values: dict[str, float]) -> System:
    """The base system with chip and system fields replaced. Its name stays the base's unless the
    board power changes (energy.toml's measured board and idle power are the base chip's: a varied
    power_w is the board power, idle and host power then follow from the measured shares)."""
    chip_kw = {k: float(v) for k, v in values.items() if FIELDS[k].where == "chip"}
    sys_kw = {k: (int(v) if FIELDS[k].whole else float(v)) for k, v in values.items() if FIELDS[k].where == "system"}
    s = base
    if chip_kw:
        s = replace(s, chip=replace(s.chip, **chip_kw))
    if "power_w" in chip_kw:
        s = replace(s, name=f"{base.name} (power_w varied)")
    if sys_kw:
        s = replace(s, **sys_kw)
    return s


def make_space(models: Sequence[Model], bases: Sequence[System], axes: Sequence[Axis], *, input_tokens: float,
               output_tokens: float, min_tokens_per_s_per_user: float | None, goal: str = "cost") -> Space:
    if not models:
        raise TokenmathError("--model names no model")
    if len(models) > MAX_MODELS:
        raise TokenmathError(f"--model lists {len(models)} models; at most {MAX_MODELS}")
    for m in models:
        if m.is_totals_only:
            raise TokenmathError(f"model {m.name!r} is defined by totals only; explore runs the planner's per-operation"
                                 " estimate, which needs the architecture (a config.json)")
    if len(axes) > MAX_AXES:
        raise TokenmathError(f"{len(axes)} --vary axes; at most {MAX_AXES}")
    seen = set()
    for a in axes:
        if a.field in seen:
            raise TokenmathError(f"--vary {a.field} is given twice; give its values in one --vary")
        seen.add(a.field)
    for name, v, spec in (("--input-tokens", input_tokens, FIELDS["input_tokens"]),
                          ("--output-tokens", output_tokens, FIELDS["output_tokens"])):
        parse_bounded(v, "count", what=name, low=spec.low, low_inclusive=True, high=spec.high, whole=True,
                      meaning=spec.meaning)
    if min_tokens_per_s_per_user is not None:
        spec = FIELDS["min_tokens_per_s_per_user"]
        parse_bounded(min_tokens_per_s_per_user, "count", what="--min-tokens-per-s-per-user", low=0, high=spec.high,
                      meaning=spec.meaning)
    if goal not in GOALS:
        raise TokenmathError(f"--objective = {goal!r}; expected 'cost' (the cheapest deployment meeting the SLO) or"
                             " 'speed' (the fastest per user)")
    if not bases:
        raise TokenmathError("--base-chip names no system")
    if len(bases) > MAX_MODELS:
        raise TokenmathError(f"--base-chip lists {len(bases)} systems; at most {MAX_MODELS}")
    if len({b.name for b in bases}) < len(bases):
        raise TokenmathError("--base-chip names a system twice")
    space = Space(tuple(models), tuple(bases), tuple(axes), float(input_tokens), float(output_tokens),
                  None if min_tokens_per_s_per_user is None else float(min_tokens_per_s_per_user), goal)
    n = space.size
    if n > MAX_POINTS:
        dims = " × ".join(f"{k:,}" for k in space.shape)
        raise TokenmathError(f"the space has {n:,} points ({dims}: models × base chips × each --vary axis); at most "
                             f"{MAX_POINTS:,} are explored in one run — split it, or take fewer values per axis")
    return space


# --------------------------------------------------------------------------------------------
# One point, one chunk
# --------------------------------------------------------------------------------------------

PARTS = ("dense_gemm_s", "expert_gemm_s", "attention_s", "tp_comm_s", "ep_comm_s", "pp_comm_s", "overhead_s")

# the result columns after the axes: name -> unit (the Parquet metadata), in this order
RESULT_UNITS = {
    "input_tokens": "tokens", "output_tokens": "tokens", "min_tokens_per_s_per_user": "tokens/s",
    "feasible": "", "objective": "", "usd_per_mtok": "USD per million output tokens",
    "usd_per_mtok_lo": "USD per million output tokens (80 % band, low)",
    "usd_per_mtok_hi": "USD per million output tokens (80 % band, high)",
    "tokens_per_s_per_chip": "output tokens/s per billed chip", "tokens_per_s_per_user": "tokens/s",
    "joules_per_token": "J per output token (at the wall)", "step_s": "s (time per output token)", "ttft_s": "s",
    "batch": "sequences per replica", "chips": "chips", "billed_chips": "chips", "tp": "", "ep": "", "pp": "",
    "weight_dtype": "", "binding": "", "deployments": "(layout, batch, dtype) points the planner evaluated",
    "roofline_bound": "", "roofline_step_s": "s (time per output token, roofline bound)",
    "roofline_usd_per_mtok": "USD per million output tokens (roofline bound)",
    "roofline_tokens_per_s_per_chip": "output tokens/s per billed chip (roofline bound)",
    "infeasible": "why no deployment is answered (null where feasible)",
}
TEXT = {"model", "objective", "weight_dtype", "binding", "roofline_bound", "infeasible"}
INTEGER = {"chips", "tp", "ep", "pp", "deployments"}


GOALS = ("cost", "speed")


def _best(cols: dict, U: float | None, priced: bool, goal: str = "cost") -> int | None:
    """The deployment a point answers with: among those meeting the SLO, the cheapest ($/Mtok; the
    most tokens/s per chip where unpriced), or with goal 'speed' the fastest per user (then the
    cheapest of equals)."""
    n = len(cols["batch"])
    if not n:
        return None
    ok = np.ones(n, bool) if U is None else cols["tokens_per_s_per_user"] >= U
    if not ok.any():
        return None
    idx = np.nonzero(ok)[0]
    user = cols["tokens_per_s_per_user"][idx]
    if goal == "speed":
        v = cols["usd_per_mtok"][idx].astype(float) if priced else -cols["tokens_per_s_per_chip"][idx]
        return int(idx[np.lexsort((v, -user))[0]])
    if priced:
        v = cols["usd_per_mtok"][idx].astype(float)
        return int(idx[np.lexsort((-user, v))[0]])
    v = cols["tokens_per_s_per_chip"][idx]
    return int(idx[np.lexsort((-user, -v))[0]])


SEARCHES_KEPT = 16  # planner searches a chunk keeps for points that differ only in price, power or SLO


def layouts_with(model: Model, system: System, degrees: dict[str, int]) -> list:
    """The planner's candidate layouts on `system` (plan.candidate_layouts) whose degrees are
    `degrees` ({"tp": 8, "pp": 2}: a point's layout axes). One sentence when none has them."""
    from .plan import candidate_layouts

    out = [lay for lay in candidate_layouts(model, system) if all(getattr(lay, k) == v for k, v in degrees.items())]
    if not out:
        want = " ".join(f"{k.upper()}{v}" for k, v in degrees.items())
        raise TokenmathError(f"no candidate layout of {model.name} on {system.name} has {want}")
    return out


def _search(model: Model, system: System, I: float, O: float, searches: dict | None,
            degrees: dict[str, int] | None = None) -> dict:
    """The planner's search of one chip variant (plan.plan_system under the estimate; with
    `degrees`, over the layouts that have them), shared by the points that differ from it only in
    $/chip-hour, board power or the SLO: none of them moves a step time, and $/Mtok is
    proportional to the price (billed chips × price ÷ tokens/s)."""
    from .plan import plan_system

    price = system.usd_per_chip_hour
    degrees = degrees or {}
    key = None
    if searches is not None:
        key = (model, replace(system, usd_per_chip_hour=None, chip=replace(system.chip, power_w=None)), I, O,
               price is None, tuple(sorted(degrees.items())))
        hit = searches.get(key)
        if hit is not None:
            searches.move_to_end(key)
            cols, price0 = hit
            if price is None or price == price0:
                return cols
            return cols | {"usd_per_mtok": cols["usd_per_mtok"] * (price / price0)}
    cols, _, _ = plan_system(model, system, input_tokens=I, output_tokens=O, estimate="calibrated",
                             layouts=layouts_with(model, system, degrees) if degrees else None)
    if searches is not None:
        searches[key] = (cols, price)
        if len(searches) > SEARCHES_KEPT:
            searches.popitem(last=False)
    return cols


def evaluate_point(model: Model, system: System, I: float, O: float, U: float | None, goal: str = "cost",
                   searches: dict | None = None, degrees: dict[str, int] | None = None) -> dict:
    """The row of one point: the cheapest deployment meeting the SLO under the estimate (the
    planner's search), its 80 % band, energy and binding term, and the roofline bound of that
    same deployment (plan.plan_bound: same layout, batch and dtypes at peak rates). searches: an
    OrderedDict the caller keeps across points, to share a search between points that differ
    only in price, power or SLO (_search). degrees: the point's layout axes ({"tp": 8}): only
    layouts with them are searched (a point none has is infeasible)."""
    from .energy import plan_energy
    from .plan import plan_bound, points
    from .profiles import choose, model_class
    from .specs import Dtypes
    from .stepmodel import op_step

    from .parallelism import Layout

    priced = system.usd_per_chip_hour is not None
    row = {"feasible": False, "objective": "cost" if priced else "throughput", "deployments": 0}
    try:
        cols = _search(model, system, I, O, searches, degrees)
    except TokenmathError as e:  # a variant no layout can serve (no FLOP/s for any dtype, no such layout)
        return row | {"infeasible": str(e)[:300]}
    if U is not None and goal == "cost":  # the batch at the SLO between grid points, as `plan` does
        from .plan import refine_at_rate

        cols = refine_at_rate(model, {system.name: system}, cols, U, input_tokens=I, output_tokens=O)
    row["deployments"] = len(cols["batch"])
    b = _best(cols, U, priced, goal)
    if b is None:
        if not row["deployments"]:
            return row | {"infeasible": "no deployment fits: no candidate layout holds the weights and a sequence's"
                                        " KV in what a serving engine fills of HBM (90 % less the runtime's"
                                        " reserve) with the links it needs"}
        fastest = float(np.max(cols["tokens_per_s_per_user"]))
        return row | {"infeasible": f"no deployment reaches {sig(U, 4)} tokens/s per user (the fastest: {sig(fastest, 4)})"}
    g = lambda k: cols[k][b]  # noqa: E731
    row.update(feasible=True, usd_per_mtok=float(g("usd_per_mtok")) if priced else None,
               tokens_per_s_per_chip=float(g("tokens_per_s_per_chip")),
               tokens_per_s_per_user=float(g("tokens_per_s_per_user")), step_s=float(g("step_s")),
               ttft_s=float(g("ttft_s")), batch=float(g("batch")), chips=int(g("chips")),
               billed_chips=float(g("billed_chips")), tp=int(g("tp")), ep=int(g("ep")), pp=int(g("pp")),
               weight_dtype=str(g("weight_dtype")))
    prof = choose("calibrated", system=system)
    bound = plan_bound(model, system, points(cols, [b])[0], I, O)
    r80 = prof.range_80(row["step_s"], model_class=model_class(model), bound=bound["step_s"])  # never past the bound
    if r80 is not None and priced:
        lo, hi = r80
        row["usd_per_mtok_lo"] = row["usd_per_mtok"] * float(lo) / row["step_s"]
        row["usd_per_mtok_hi"] = row["usd_per_mtok"] * float(hi) / row["step_s"]
    wd = row["weight_dtype"]
    dt = Dtypes.for_point(model, wd)
    op = op_step(model, system, Layout(tp=row["tp"], ep=row["ep"], pp=row["pp"]), row["batch"], I + O / 2.0, 1.0,
                 kernels=prof.kernels, engine=prof.engine, dtypes=dt, check=False)
    parts = {k: float(np.asarray(getattr(op, k))) for k in PARTS}
    row["binding"] = max(parts, key=parts.get)[:-2]
    row.update(roofline_step_s=bound["step_s"], roofline_tokens_per_s_per_chip=bound["tokens_per_s_per_chip"],
               roofline_usd_per_mtok=bound["usd_per_mtok"], roofline_bound=bound["bound"])
    _, j, _ = plan_energy(model, {system.name: system}, cols, [b], I, O)
    row["joules_per_token"] = None if np.isnan(j[0]) else float(j[0])
    return row


def chunk_bounds(n_points: int, chunk_points: int, skip=frozenset()):
    """(index, first point, one past the last) of every chunk not in `skip`, lazily: 10⁹ points are
    two million chunks, never listed at once."""
    for i, lo in enumerate(range(0, n_points, chunk_points)):
        if i not in skip:
            yield i, lo, min(lo + chunk_points, n_points)


def run_chunk(task: tuple[Space, int, int, int]) -> dict:
    """The rows of points lo..hi-1 of the space, as columns (lists): one task."""
    space, _, lo, hi = task
    idx = np.unravel_index(np.arange(lo, hi), space.shape)
    axes = [a.field for a in space.axes]
    names = ["model", "base_chip"] + axes + [k for k in RESULT_UNITS if k not in axes]
    out: dict[str, list] = {k: [] for k in names}
    base_w = {"input_tokens": space.input_tokens, "output_tokens": space.output_tokens,
              "min_tokens_per_s_per_user": space.min_tokens_per_s_per_user}
    from collections import OrderedDict

    searches: OrderedDict = OrderedDict()
    for k in range(hi - lo):
        model, base = space.models[int(idx[0][k])], space.bases[int(idx[1][k])]
        vals = {a.field: a.values[int(idx[j + 2][k])] for j, a in enumerate(space.axes)}
        w = base_w | {f: v for f, v in vals.items() if FIELDS[f].where == "workload"}
        sysv = variant(base, {f: v for f, v in vals.items() if FIELDS[f].where in HARDWARE})
        degrees = {f: int(v) for f, v in vals.items() if FIELDS[f].where == "layout"}
        row = evaluate_point(model, sysv, w["input_tokens"], w["output_tokens"], w["min_tokens_per_s_per_user"],
                             space.goal, searches, degrees)
        row = {"model": model.name, "base_chip": base.name} | vals | w | row
        for c in names:
            out[c].append(row.get(c))
    return out


# --------------------------------------------------------------------------------------------
# Memory budget, the output folder, the front
# --------------------------------------------------------------------------------------------


def machine_memory_bytes() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8e9


DEFAULT_MEMORY_SHARE = 0.25  # of the machine's memory, when --memory-gb is not given (at most 2 GB)


def default_memory_gb() -> float:
    return min(2.0, DEFAULT_MEMORY_SHARE * machine_memory_bytes() / 1e9)


def workers_for(scheduler: str | None) -> int:
    if scheduler in ("processes", "local"):
        return max(1, os.cpu_count() or 1)
    return 1


def chunk_points_for(memory_gb: float, workers: int, n_points: int | None = None) -> int:
    """Points per chunk that keep the in-flight chunks (two per worker) and the workers within the
    budget, and give every worker at least four chunks; one sentence when the budget cannot hold
    even the worker processes."""
    budget = float(memory_gb) * 1e9
    local_workers = workers
    need = local_workers * WORKER_BASE_BYTES + WORKER_BASE_BYTES  # the workers and this process
    if budget < need:
        raise TokenmathError(f"--memory-gb = {memory_gb:g} cannot hold {local_workers} worker process(es) and this one "
                             f"(about {need / 1e9:.2f} GB); give at least {math.ceil(need / 1e8) / 10:g}")
    per = (budget - need) / (2 * workers * ROW_BYTES)
    if n_points is not None and workers > 1:
        per = min(per, math.ceil(n_points / (4 * workers)))
    return int(max(1, min(CHUNK_POINTS_MAX, per)))


def _schema(space: Space):
    import pyarrow as pa

    fields = [pa.field("model", pa.string(), metadata={"unit": "", "meaning": "catalog model name"}),
              pa.field("base_chip", pa.string(), metadata={"unit": "", "meaning": "the system the variant starts from"})]
    for a in space.axes:
        typ = pa.int64() if a.spec.where == "layout" else pa.float64()  # a degree, as the result's tp/ep/pp
        fields.append(pa.field(a.field, typ, metadata={"unit": a.spec.unit, "meaning": a.spec.meaning}))
    for name, unit in RESULT_UNITS.items():
        if name in {a.field for a in space.axes}:
            continue
        typ = (pa.string() if name in TEXT else pa.bool_() if name == "feasible" else pa.int64() if name in INTEGER
               else pa.float64())
        fields.append(pa.field(name, typ, metadata={"unit": unit}))
    meta = {"tokenmath": "explore", "estimate": "calibrated per-operation step model (stepmodel.op_step) via the "
            "planner; roofline_* columns: the bound", "base_chips": ",".join(b.name for b in space.bases)}
    return pa.schema(fields, metadata=meta)


def _table(space: Space, cols: dict):
    import pyarrow as pa

    schema = _schema(space)
    return pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in schema}, schema=schema)


def need_pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise TokenmathError("explore writes Parquet: pip install 'tokenmath[explore]' (pyarrow)") from None


def prepare_out(out: Path, space: Space, chunk_points: int, *, force: bool) -> tuple[Path, int, set[int]]:
    """The output folder: created, or (same space) resumed with its recorded chunk size; its chunks
    already written; refused when it holds something else."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TokenmathError(f"--out {str(out)!r} is a file; explore writes a folder of Parquet parts there (a Parquet"
                             " dataset): give a new name")
    man = out / MANIFEST
    if out.is_dir():
        entries = [p.name for p in out.iterdir()]
        if man.is_file():
            try:
                rec = json.loads(man.read_text())
            except (OSError, ValueError):
                rec = {}
            if rec.get("key") == space.key() and not force:
                chunk_points = int(rec.get("chunk_points", chunk_points))
                done = {int(p[5:11]) for p in entries if p.startswith("part-") and p.endswith(".parquet")
                        and p[5:11].isdigit()}
                return out, chunk_points, done
            if not force:
                raise TokenmathError(f"--out {str(out)!r} holds another exploration (other models, chip or axes); give "
                                     "a new --out, or --force to replace it")
            for p in entries:
                if (p.startswith("part-") and p.endswith(".parquet")) or p == MANIFEST or p.startswith(".part-"):
                    (out / p).unlink()
        elif entries:
            raise TokenmathError(f"--out {str(out)!r} is a folder that holds other files; give a new or empty folder")
    else:
        if not out.parent.is_dir():
            raise TokenmathError(f"--out {str(out)!r}: the folder {str(out.parent)!r} does not exist; create it first")
        out.mkdir()
    man.write_text(json.dumps({"key": space.key(), "chunk_points": chunk_points, "space": space.describe()},
                              indent=1))
    return out, chunk_points, set()


def _value_column(space_objective_priced: bool) -> str:
    return "usd_per_mtok" if space_objective_priced else "tokens_per_s_per_chip"


def front_of(records: list[dict]) -> list[dict]:
    """The Pareto front within each (model, input, output tokens) group: no other point is both
    faster per user and cheaper ($/Mtok; tokens/s per chip, higher, where unpriced)."""
    from .plan import pareto_indices

    groups: dict[tuple, list[dict]] = {}
    # a canonical order first: of points that tie (e.g. a varied field no deployment uses), the front
    # keeps the same one whatever order the chunks finished in
    for r in sorted(records, key=lambda r: json.dumps(r, sort_keys=True, default=str)):
        groups.setdefault((r["model"], r["input_tokens"], r["output_tokens"], r["objective"]), []).append(r)
    out = []
    for (_, _, _, objective), rs in sorted(groups.items(), key=lambda kv: kv[0]):
        priced = objective == "cost"
        key = _value_column(priced)
        user = np.array([r["tokens_per_s_per_user"] for r in rs], float)
        value = np.array([r[key] for r in rs], float)
        front = [rs[i] for i in pareto_indices(user, value, lower_is_better=priced)]
        out += sorted(front, key=lambda r: (-r["tokens_per_s_per_user"], r[key] if priced else -r[key]))
    return out[:MAX_FRONT]


def _chunk_records(table) -> list[dict]:
    """The feasible rows of a chunk that can be on a front (the chunk's own front)."""
    feas = np.asarray(table.column("feasible").to_numpy(zero_copy_only=False), bool)
    if not feas.any():
        return []
    import pyarrow.compute as pc

    rows = table.filter(pc.equal(table.column("feasible"), True)).to_pylist()
    return front_of(rows)


# --------------------------------------------------------------------------------------------
# The result, the run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exploration:
    """What explore returns (and `--json` prints: to_dict()). points: points evaluated in this run
    plus those read back from chunks already written; pareto: the front's records; summary: per
    model and workload, how many points and the cheapest."""

    points: int
    out: str
    seconds: float
    pareto: tuple[dict, ...]
    summary: tuple[dict, ...]
    feasible: int
    chunks: int
    chunks_skipped: int
    chunk_points: int
    scheduler: str
    space: dict
    estimate: str = ("calibrated per-operation step model (each point: the planner's cheapest deployment meeting "
                     "the SLO); roofline_* columns: the bound")
    points_per_s: float = 0.0
    deployments: int = 0  # (layout, batch, dtype) points the planner evaluated over all points
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {"points": self.points, "out": self.out, "seconds": self.seconds, "pareto": list(self.pareto),
                "summary": list(self.summary), "feasible": self.feasible, "chunks": self.chunks,
                "chunks_skipped": self.chunks_skipped, "chunk_points": self.chunk_points,
                "scheduler": self.scheduler, "points_per_s": self.points_per_s, "deployments": self.deployments, "estimate": self.estimate,
                "space": self.space, "notes": list(self.notes)}

    def to_frame(self):
        """Every point written to `out` (this run's and resumed chunks) as a pandas DataFrame, one
        column per Parquet column, its unit in the name and in the column metadata. Needs pyarrow
        and pandas: `pip install 'tokenmath[explore,notebook]'`."""
        try:
            import pandas  # noqa: F401
            import pyarrow.parquet as pq
        except ImportError:
            raise TokenmathError("to_frame() needs pyarrow and pandas: pip install 'tokenmath[explore,notebook]'") from None
        return pq.read_table(self.out).to_pandas()

    def _repr_html_(self) -> str:
        import html

        head = (f"{self.points:,} points ({self.feasible:,} meet the SLO) in {self.seconds:.3g} s → {self.out}; "
                f"Pareto front: {len(self.pareto)} points")
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>"
                       for r in self.pareto[:50])
        cols = "".join(f"<th>{html.escape(str(k))}</th>" for k in (self.pareto[0] if self.pareto else {}))
        return f"<p>{html.escape(head)}</p><table><tr>{cols}</tr>{rows}</table>"


def _summarise(summary: dict, table, goal: str = "cost") -> None:
    """Fold a chunk's rows into per-(model, workload) counts and the cheapest point."""
    cols = table.to_pydict()
    n = len(cols["model"])
    for i in range(n):
        key = (cols["model"][i], cols["input_tokens"][i], cols["output_tokens"][i])
        s = summary.setdefault(key, {"model": key[0], "input_tokens": key[1], "output_tokens": key[2],
                                     "points": 0, "feasible": 0, "best": None})
        s["points"] += 1
        if not cols["feasible"][i]:
            continue
        s["feasible"] += 1
        priced = cols["objective"][i] == "cost"

        def value(r, i=None):
            g = (lambda k: cols[k][i]) if i is not None else (lambda k: r[k])  # noqa: E731
            v = g("usd_per_mtok") if priced else -g("tokens_per_s_per_chip")
            return (-g("tokens_per_s_per_user"), v) if goal == "speed" else (v, -g("tokens_per_s_per_user"))

        b = s["best"]
        if b is None or value(None, i) < value(b):
            s["best"] = {k: cols[k][i] for k in cols}


def explore(*, model: str | Model | Sequence[str | Model], base_chip: str | System | Sequence[str | System],
            vary: Iterable[str | Axis] = (), input_tokens: float = 2000, output_tokens: float = 500,
            min_tokens_per_s_per_user: float | None = None, objective: str = "cost", out: str | os.PathLike,
            memory_gb: float | None = None, scheduler: str | None = None, force: bool = False,
            progress: Callable[[int, int], None] | None = None, catalog=None) -> Exploration:
    """Explore models × hypothetical chips (the base system with `vary`'s fields replaced) under a
    workload; write every point's row to the Parquet folder `out`; return the summary and front.

    model: a catalog name or config.json path, a comma-separated list of them, a list, or Models.
    base_chip: a catalog system (a hypothetical one from a --catalog TOML too), or several: an axis.
    vary: 'FIELD=START:STOP:N' or 'FIELD=v1,v2,...' (FIELDS). objective: 'cost' (each point's
    cheapest deployment meeting the SLO) or 'speed' (its fastest per user: the latency floor). scheduler: None (this process),
    'processes' (a pool of local worker processes, one per core), 'local' (a Dask LocalCluster) or
    a Dask scheduler address 'tcp://HOST:PORT' (the workers need tokenmath installed)."""
    t0 = time.perf_counter()
    need_pyarrow()
    from .catalog import load_catalog

    cat = catalog or load_catalog()
    names = model.split(",") if isinstance(model, str) else [model] if isinstance(model, Model) else list(model)
    models = [cat.model(x.strip() if isinstance(x, str) else x) for x in names]
    given = base_chip.split(",") if isinstance(base_chip, str) else [base_chip] if isinstance(base_chip, System) \
        else list(base_chip)
    bases = [cat.system(x.strip()) if isinstance(x, str) else x for x in given]
    axes = [parse_axis(v) for v in ([vary] if isinstance(vary, str) else list(vary))]
    space = make_space(models, bases, axes, input_tokens=input_tokens, output_tokens=output_tokens,
                       min_tokens_per_s_per_user=min_tokens_per_s_per_user, goal=objective)
    if memory_gb is None:
        memory_gb = default_memory_gb()
    elif not (isinstance(memory_gb, (int, float)) and math.isfinite(memory_gb) and 0 < memory_gb <= 1e4):
        raise TokenmathError(f"--memory-gb = {memory_gb!r}; expected a positive number of GB, at most 10,000")
    if scheduler is not None and scheduler != "processes" and scheduler != "local" and "://" not in str(scheduler):
        raise TokenmathError(f"--scheduler = {scheduler!r}; expected 'processes', 'local' or a Dask scheduler address"
                             " tcp://HOST:PORT")
    workers = workers_for(scheduler)
    chunk_points = chunk_points_for(memory_gb, workers, space.size)
    fresh = not Path(out).exists()
    out_dir, chunk_points, done = prepare_out(Path(out), space, chunk_points, force=force)
    n_chunks = -(-space.size // chunk_points)
    done = {i for i in done if i < n_chunks}

    import pyarrow.parquet as pq

    front: list[dict] = []
    summary: dict = {}
    state = {"points": 0, "feasible": 0, "deployments": 0}

    def fold(table) -> None:
        nonlocal front
        front = front_of(front + _chunk_records(table))
        _summarise(summary, table, space.goal)
        state["points"] += table.num_rows
        state["deployments"] += int(np.asarray(table.column("deployments").to_numpy(zero_copy_only=False)).sum())
        state["feasible"] += int(np.asarray(table.column("feasible").to_numpy(zero_copy_only=False), bool).sum())
        if progress:
            progress(state["points"], space.size)

    for i in sorted(done):  # chunks a stopped run already wrote: read back, not recomputed
        try:
            fold(pq.read_table(out_dir / PART.format(i)))
        except Exception:  # noqa: BLE001 - a damaged part is computed again
            (out_dir / PART.format(i)).unlink(missing_ok=True)
            done.discard(i)

    def on_result(task, cols) -> None:
        i = task[1]
        table = _table(space, cols)
        tmp = out_dir / f".part-{i:06d}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, out_dir / PART.format(i))
        fold(table)

    from .parallel import stream_tasks

    todo = ((space, i, lo, hi) for i, lo, hi in chunk_bounds(space.size, chunk_points, done))
    t_run = time.perf_counter()
    computed_before = state["points"]
    try:
        stream_tasks(run_chunk, todo, scheduler=scheduler, on_result=on_result, label=lambda t: f"chunk {t[1]}")
    except BaseException:
        # a run that wrote nothing (no scheduler answered, an error in the first chunk) leaves no folder
        # behind; one stopped after some chunks keeps them, to resume
        if fresh and not any(out_dir.glob("part-*.parquet")):
            for p in out_dir.iterdir():
                if p.name == MANIFEST or p.name.startswith(".part-"):
                    p.unlink()
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise
    seconds = time.perf_counter() - t0
    computed = state["points"] - computed_before
    rate = computed / max(1e-9, time.perf_counter() - t_run)
    notes = []
    if done:
        notes.append(f"{len(done)} chunk(s) already in {str(out_dir)!r} were read back, not recomputed")
    pick = "fastest deployment per user" if space.goal == "speed" else "cheapest deployment"
    label = (f"calibrated per-operation step model (each point: the planner's {pick} meeting the SLO); roofline_* "
             "columns: the bound of the same deployment")
    return Exploration(estimate=label, points=state["points"], out=str(out_dir), seconds=round(seconds, 3), pareto=tuple(front),
                       summary=tuple(summary.values()), feasible=state["feasible"], chunks=n_chunks,
                       chunks_skipped=len(done), chunk_points=chunk_points, scheduler=scheduler or "in-process",
                       space=space.brief(), points_per_s=round(rate, 2), deployments=state["deployments"], notes=tuple(notes))


def read_grid(out: str | os.PathLike, x: str, y: str, value: str = "usd_per_mtok", *, model: str | None = None,
              base_chip: str | None = None):
    """(x values, y values, grid[y, x]) of `value` over two axes of an exploration folder: the best
    (lowest cost; highest tokens/s per chip) over the other axes, for one model and base chip (default:
    the first), read part by part (bounded memory)."""
    import pyarrow.parquet as pq

    out = Path(out)
    rec = json.loads((out / MANIFEST).read_text())
    axes = {a["field"]: np.array(a["values"], float) for a in rec["space"]["axes"]}
    for f in (x, y):
        if f not in axes:
            raise TokenmathError(f"{f!r} is not an axis of this exploration; its axes: {', '.join(axes) or 'none'}")
    xs, ys = np.sort(axes[x]), np.sort(axes[y])
    if len(xs) * len(ys) > 4_000_000:
        raise TokenmathError(f"a heat map of {len(xs):,} × {len(ys):,} cells is too large to draw; at most 4,000,000")
    lower = value != "tokens_per_s_per_chip"
    grid = np.full((len(ys), len(xs)), np.inf if lower else -np.inf)
    model = model or rec["space"]["models"][0]
    base_chip = base_chip or rec["space"]["base_chips"][0]
    for p in sorted(out.glob("part-*.parquet")):
        t = pq.read_table(p, columns=["model", "base_chip", x, y, value]).to_pydict()
        m = (np.array(t["model"]) == model) & (np.array(t["base_chip"]) == base_chip)
        v = np.array([np.nan if z is None else z for z in t[value]], float)
        ok = m & ~np.isnan(v)
        if not ok.any():
            continue
        ix = np.searchsorted(xs, np.array(t[x], float)[ok])
        iy = np.searchsorted(ys, np.array(t[y], float)[ok])
        (np.minimum if lower else np.maximum).at(grid, (iy, ix), v[ok])
    grid[~np.isfinite(grid)] = np.nan
    return xs, ys, grid


__all__ = ["FIELDS", "Axis", "Space", "Exploration", "explore", "parse_axis", "read_grid", "variant"]
