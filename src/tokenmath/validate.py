"""Predicted vs published measurements: validation cases, an error report, and calibration.

A case is one JSON line (the format of issue 7):

    {"id": ..., "model": "llama-3.1-8b" | "path/to/config.json", "system": "h100-sxm", "chips": 1,
     "weight_dtype": "fp8", "kv_dtype": "fp8", "tp": 1, "ep": 1, "pp": 1, "dp": 1, "batch": null,
     "input_tokens": 1000, "output_tokens": 1000, "min_tokens_per_s_per_user": null,
     "metric": "max_output_tokens_per_s_per_chip", "measured": 15220, "source": "..."}

Metrics, all predicted from `layout.layout_step` under an `Estimate` (efficiencies, overheads, an
engine batch cap): decode_step_s, ttft_s, static_output_tokens_per_s_per_chip,
max_output_tokens_per_s_per_chip, output_tokens_per_s_per_chip_at_user_rate.
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .catalog import Catalog, load_catalog
from .errors import TokenmathError, read_json_lines, validation_message
from .parallelism import Layout
from .profiles import ROOFLINE_PROFILE, Profile, choose_from, preset_record, profile_from_record, vendor
from .specs import Dtypes, Model, System
from .stepmodel import max_batch, op_step, steady_step_s
from .validate_energy import is_energy_record

CASES_DIR = Path(__file__).parent / "validation" / "cases"
METRICS = ("decode_step_s", "ttft_s", "static_output_tokens_per_s_per_chip", "max_output_tokens_per_s_per_chip",
           "output_tokens_per_s_per_chip_at_user_rate", "tpot_s")
# what a measured case's numbers can physically be: a time (s) or a rate (tokens/s per chip), token counts
# and layout degrees as the CLI bounds them (cli.FLAGS)
CASE_RANGES = {"measured": (1e-9, 1e12), "input_tokens": (1, 1e8), "output_tokens": (1, 1e8), "chips": (1, 1e6),
               "batch": (1e-9, 1e7), "tp": (1, 1e6), "ep": (1, 1e6), "pp": (1, 1e6), "dp": (1, 1e6),
               "min_tokens_per_s_per_user": (1e-9, 1e7)}
HBM_USABLE_FRACTION = 0.9  # engines keep ~10 % of HBM for activations, workspaces and fragmentation (assumption)


class Case(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    id: str
    model: str
    system: str
    chips: int
    weight_dtype: str | None = None
    kv_dtype: str | None = None
    tp: int | None = None
    ep: int | None = None
    pp: int | None = None
    dp: int | None = None
    batch: float | None = None
    input_tokens: float
    output_tokens: float
    min_tokens_per_s_per_user: float | None = None
    metric: str
    measured: float
    source: str
    notes: str = ""
    engine: str | None = None  # "trtllm" | "vllm" | "sglang" | ... : picks the engine profile
    date: str | None = None  # when the measurement was published (YYYY-MM or YYYY-MM-DD)

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"metric = {v!r}; expected one of {', '.join(METRICS)}")
        return v

    @field_validator("measured", "input_tokens", "output_tokens", "chips")
    @classmethod
    def _positive(cls, v):
        if not v > 0:
            raise ValueError(f"{v!r} must be > 0")
        return v

    @field_validator("measured", "input_tokens", "output_tokens", "chips", "batch", "tp", "ep", "pp", "dp",
                     "min_tokens_per_s_per_user")
    @classmethod
    def _physical(cls, v, info):
        """Issue 24: a subnormal or absurd number (5e-324, 1e300) is refused, not fitted to an infinite residual."""
        lo, hi = CASE_RANGES[info.field_name]
        if v is not None and not lo <= v <= hi:
            raise ValueError(f"{v!r} is outside {lo:g} to {hi:g}")
        return v


def load_cases(path: str | Path | None = None) -> list[tuple[Case, Path]]:
    """Read a JSON-lines case file (default: every shipped file under validation/cases/); one
    sentence naming the file and line on any error."""
    if path is None:
        out = []
        for f in sorted(CASES_DIR.glob("*.jsonl")):
            out += load_cases(f)
        return out
    p = Path(path)
    where = f"case file {str(p)[:200]!r}"
    out = []
    energy = 0  # energy cases (validate_energy.py reads them): skipped here, counted so the file is not "empty"
    for i, d in read_json_lines(p, where):
        if is_energy_record(d):
            energy += 1
            continue
        try:
            out.append((Case.model_validate(d), p))
        except ValidationError as e:
            raise TokenmathError(f"{where}, line {i}: {validation_message(e)}") from None
    if not out and not energy:
        raise TokenmathError(f"{where} holds no cases")
    return out


# --------------------------------------------------------------------------------------------
# Predictions: each metric from passes of the per-operation step model (stepmodel.op_step)
# --------------------------------------------------------------------------------------------


def _layout(case: Case, model: Model) -> Layout:
    tp, ep, pp = case.tp, case.ep, case.pp
    n = case.chips
    pp = pp or 1
    per_stage = n // pp
    if model.moe is not None:
        ep = ep or per_stage
        tp = tp or 1
        if ep == 1 and tp == 1 and per_stage > 1:
            tp = per_stage
    else:
        tp = tp or per_stage
        ep = 1
    return Layout(tp=tp, ep=ep, pp=pp, dp=1)


@dataclass(frozen=True)
class Prediction:
    id: str
    metric: str
    predicted: float
    measured: float
    error: float  # predicted / measured − 1
    system: str
    source: str
    model: str
    batch_used: float | None
    outside_fitted_range: tuple[str, ...] = ()
    vendor: str = ""
    engine: str = ""
    model_class: str = ""  # dense | moe | mla
    note: str = ""  # e.g. the measured point lies beyond what the estimate reaches


TIME_METRICS = ("decode_step_s", "ttft_s", "tpot_s")


def metric_kind(metric: str) -> str:
    """'time' (seconds, a larger prediction is slower) or 'rate' (tokens/s)."""
    return "time" if metric in TIME_METRICS else "rate"


def model_class(model: Model) -> str:
    if model.attention is not None and model.attention.kind == "mla":
        return "mla"
    return "moe" if model.moe is not None else "dense"


@dataclass(frozen=True)
class _Ctx:
    """What every pass of one case shares."""

    model: Model
    system: System
    layout: Layout
    dtypes: Dtypes
    profile: Profile

    def pass_s(self, batch, context, new_tokens=1.0, prefill_tokens=0.0, prefill_context=0.0, prefill_seqs=None):
        st = op_step(self.model, self.system, self.layout, batch, context, new_tokens, kernels=self.profile.kernels,
                     engine=self.profile.engine, prefill_tokens=prefill_tokens, prefill_context=prefill_context,
                     prefill_seqs=prefill_seqs, dtypes=self.dtypes, check=False)
        return np.asarray(st.step_s)

    def steady_s(self, batch, I, O):
        """Continuous batching with chunked prefill at `batch` sequences (stepmodel.steady_step_s)."""
        return steady_step_s(self.model, self.system, self.layout, batch, I, O, kernels=self.profile.kernels,
                             engine=self.profile.engine, dtypes=self.dtypes)


def _ctx(case: Case, profile: Profile, cat: Catalog, base_dir: Path | None) -> _Ctx:
    name = case.model
    if base_dir is not None and (name.endswith(".json") or "/" in name):
        name = str((base_dir / name).resolve())
    model, system = cat.model(name), cat.system(case.system)
    dt = Dtypes(weight=case.weight_dtype, kv=case.kv_dtype or "bf16")
    return _Ctx(model, system, _layout(case, model), dt, profile)


def predict(case: Case, profile: Profile = ROOFLINE_PROFILE, catalog: Catalog | None = None,
            base_dir: Path | None = None) -> Prediction:
    """The case's metric under `profile` (the roofline bound, or a calibrated estimate)."""
    cat = catalog or load_catalog()
    c = _ctx(case, profile, cat, base_dir)
    model, system, lay = c.model, c.system, c.layout
    I, O = case.input_tokens, case.output_tokens
    replicas = max(1, case.chips // lay.replica_chips)
    chips = lay.replica_chips
    note = ""
    if case.metric == "decode_step_s":
        b_used = (case.batch or 1) / replicas
        value = c.pass_s(b_used, I + O / 2)
    elif case.metric == "ttft_s":
        b_used = case.batch or 1
        value = c.pass_s(b_used, 0.0, I)
    elif case.metric == "static_output_tokens_per_s_per_chip":
        b_used = (case.batch or 1) / replicas
        pre = c.pass_s(b_used, 0.0, I)
        dec = c.pass_s(b_used, I + O / 2)
        value = b_used * O / (pre + O * dec) / chips
    elif case.metric == "tpot_s":
        b_used = (case.batch or 1) / replicas
        value = c.steady_s(b_used, I, O)
    else:
        if case.batch:
            top = case.batch / replicas
        else:
            cap = None if profile.is_roofline else profile.engine.max_batch
            top = _max_batch(model, system, lay, I + O, c.dtypes, cap)
        if case.metric == "max_output_tokens_per_s_per_chip" or case.batch:
            # max throughput at the largest batch; a frontier point at its measured concurrency
            # (the user rate it reaches is then the prediction's, reported when it falls short)
            b_used = top
            tpot = float(c.steady_s(b_used, I, O))
            value = b_used / tpot / chips
            rate = case.min_tokens_per_s_per_user or 0.0
            if case.metric != "max_output_tokens_per_s_per_chip" and 1.0 / tpot < rate:
                note = (f"beyond the estimate at concurrency {b_used:g}: it gives {1 / tpot:.4g} tokens/s per user, "
                        f"the measurement {rate:.4g}")
        else:
            grid = np.unique(np.round(np.geomspace(1, max(top, 1), 160)))
            tpot = c.steady_s(grid, I, O)
            tput = grid / tpot / chips
            rate = case.min_tokens_per_s_per_user or 0.0
            ok = 1.0 / tpot >= rate
            if not ok.any():
                i = 0
                note = (f"beyond the estimate: no batch reaches {rate:.4g} tokens/s per user "
                        f"(batch 1 gives {1 / tpot[0]:.4g}); answered at batch 1")
            else:
                i = int(np.argmax(np.where(ok, tput, -1)))
            value, b_used = tput[i], float(grid[i])
    value = float(value)
    return Prediction(case.id, case.metric, value, case.measured, value / case.measured - 1, case.system,
                      source_key(case), model.name, b_used, vendor=vendor(system), engine=case.engine or "unknown",
                      model_class=model_class(model), note=note)


@functools.lru_cache(maxsize=8192)
def _max_batch(model: Model, system: System, layout: Layout, context: float, dtypes: Dtypes, cap: float | None) -> float:
    """stepmodel.max_batch at HBM_USABLE_FRACTION, remembered: it depends on no fitted parameter,
    and a calibration asks it for the same case at every step of every fit."""
    return max_batch(model, system, layout, context, dtypes=dtypes, usable_fraction=HBM_USABLE_FRACTION, cap=cap)


def source_key(case: Case) -> str:
    """Group cases by the table or publication they come from (per-source errors, leave-one-
    source-out): the legacy draft rows by their table, InferenceX and MLPerf by their own names,
    others by the repository (`github OWNER/REPO ...`) or the web site they cite."""
    src = case.source.lower()
    if "lmsys" in src:
        return "lmsys-blog"
    if case.id.startswith("vis-"):
        if "00f3768" in src:
            return "trtllm-v1.0-perf-overview"
        if "138f96d" in src:
            return "trtllm-v0.5-first-token" if case.metric == "ttft_s" else "trtllm-v0.6.1-throughput"
        if "llm-viewer" in src:
            return "trtllm-a100-page-via-llm-viewer"
    if src.startswith("inferencex") or case.id.startswith("ix-"):
        return "inferencex"
    if "mlcommons" in src or case.id.startswith("mlperf"):
        m = re.search(r"inference_results_(v\d+\.\d+)", src)
        return "mlperf-" + (m.group(1) if m else "inference")
    m = re.search(r"github(?:\.com)?[ /:]+([\w.-]+/[\w.-]+)", src)
    if m:
        return m.group(1).removesuffix(".git")
    m = re.search(r"https?://([^/\s]+)(/[^/\s]*)?", src)
    if m:
        return m.group(1).removeprefix("www.") + (m.group(2) or "")[:30]
    return case.source.split()[0][:40]


GROUPS = ("metric", "system", "source", "vendor", "engine", "model_class")


@dataclass(frozen=True)
class Report:
    label: str
    rows: list[Prediction]
    median_abs_error: float
    p90_abs_error: float
    by_metric: dict[str, dict[str, float]]
    by_system: dict[str, dict[str, float]]
    by_source: dict[str, dict[str, float]]
    failures: dict[str, str] = field(default_factory=dict)  # case id -> why it could not be predicted
    by_vendor: dict[str, dict[str, float]] = field(default_factory=dict)
    by_engine: dict[str, dict[str, float]] = field(default_factory=dict)
    by_model_class: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def beyond(self) -> list[Prediction]:
        """Cases whose measured point lies beyond what the estimate reaches (answered, flagged)."""
        return [r for r in self.rows if r.note]


def _summary(errs: list[float]) -> dict[str, float]:
    a = np.abs(np.asarray(errs, float))
    if a.size == 0:
        return {"n": 0, "median_abs_error": float("nan"), "p90_abs_error": float("nan")}
    return {"n": int(a.size), "median_abs_error": float(np.median(a)), "p90_abs_error": float(np.percentile(a, 90))}


def summarize(rows: list[Prediction], label: str, failures: dict[str, str] | None = None) -> Report:
    """Median and p90 |error| overall and grouped by metric, system, source, vendor, engine, model class."""
    group = lambda key: {k: _summary([r.error for r in rows if getattr(r, key) == k])  # noqa: E731
                         for k in sorted({getattr(r, key) for r in rows})}
    s = _summary([r.error for r in rows])
    return Report(label, rows, s["median_abs_error"], s["p90_abs_error"], group("metric"), group("system"),
                  group("source"), dict(failures or {}), group("vendor"), group("engine"), group("model_class"))


def _profile_for(case: Case, cat: Catalog, profile: Profile | str, preset: dict | None = None) -> Profile:
    """A fixed profile, or ("calibrated"/a path) the one the case's engine and vendor select."""
    if isinstance(profile, Profile):
        return profile
    return choose_from(preset, engine=case.engine, system=cat.system(case.system))


def validate(cases: list[tuple[Case, Path]] | None = None, profile: Profile | str = ROOFLINE_PROFILE,
             catalog: Catalog | None = None, fitted_systems: set[str] | None = None, preset: dict | None = None) -> Report:
    """Predict every case. `profile` is a Profile (the same for all), or "calibrated": each case
    gets the profile its engine and its system's vendor select from `preset` (default: shipped)."""
    cases = cases if cases is not None else load_cases()
    cat = catalog or load_catalog()
    if not isinstance(profile, Profile) and preset is None:
        preset = preset_record(None if profile in ("calibrated", "estimate") else profile)
    rows: list[Prediction] = []
    failures: dict[str, str] = {}
    label = profile.label if isinstance(profile, Profile) else "calibrated (each case: its engine and vendor profile)"
    for case, path in cases:
        try:
            p = predict(case, _profile_for(case, cat, profile, preset), cat, base_dir=path.parent)
        except TokenmathError as e:
            failures[case.id] = str(e)
            continue
        outside = []
        if fitted_systems is not None and case.system not in fitted_systems:
            outside.append(f"system {case.system} not in the calibration data")
        if outside:
            p = replace(p, outside_fitted_range=tuple(outside))
        rows.append(p)
    if not rows:
        raise TokenmathError("no case could be predicted: " + "; ".join(f"{k}: {v}" for k, v in list(failures.items())[:3]))
    return summarize(rows, label, failures)


# --------------------------------------------------------------------------------------------
# Calibration: a generic profile, then engine and vendor profiles on top, cross-validated
# --------------------------------------------------------------------------------------------

# (name, lower, upper, start, scale)
GENERIC_PARAMS = (("overhead_s", 0.0, 0.05, 2e-3, 1e-3), ("compute_scale", 0.2, 1.5, 0.9, 0.2),
                  ("memory_scale", 0.2, 1.5, 0.9, 0.2), ("network_scale", 0.05, 1.5, 0.7, 0.2),
                  ("routing_cv", 0.0, 1.0, 0.2, 0.1), ("floor_scale", 0.0, 2.0, 1.0, 0.3))
ENGINE_FIT = ("overhead_s", "compute_scale", "memory_scale")
VENDOR_FIT = ("compute_scale", "memory_scale")
BATCH_CAPS = (None, 256, 512, 1024, 2048)
MIN_CASES_ENGINE = 8  # fewer cases than this: the engine keeps the generic profile
MIN_CASES_VENDOR = 8
VENDOR_BOUNDS = (0.1, 2.0)  # a vendor factor on the generic compute / memory scales
USER_FACTOR_BOUNDS = (0.1, 10.0)  # a user fit's factor on the shipped preset (fitted in log space)
AT_BOUND_TOL = 1e-3  # a fitted value this close to a bound, as a share of its range (log range for factors), is at it


def at_bounds(values: dict, bounds: dict, *, log: bool = False, tol: float = AT_BOUND_TOL, profile: str | None = None,
              ) -> list[dict]:
    """The fitted parameters that ended at (within `tol` of the range from) one of their bounds: there
    the fit wanted to go further, so the value is the bound's, not a measurement. `log`: the range
    is measured on a log scale (factors fitted as log x)."""
    out = []
    for name, (lo, hi) in bounds.items():
        v = values.get(name)
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        f = (lambda x: math.log(x)) if log else (lambda x: x)  # noqa: E731
        width = f(hi) - f(lo)
        for side, b in (("lower", lo), ("upper", hi)):
            if abs(f(max(v, 1e-300) if log else v) - f(b)) <= tol * width:
                out.append(({"profile": profile} if profile else {})
                           | {"parameter": name, "value": float(v), "bound": float(b), "side": side,
                              "range": [float(lo), float(hi)]})
    return out


def preset_at_bounds(rec: dict, tol: float = AT_BOUND_TOL) -> list[dict]:
    """Every parameter of a fitted preset record (generic, per engine, per vendor) at its fit's bound."""
    generic = {n: (lo, hi) for n, lo, hi, _, _ in GENERIC_PARAMS}
    out = at_bounds(rec.get("generic", {}), generic, tol=tol, profile="generic")
    for eng, v in sorted(rec.get("engines", {}).items()):
        out += at_bounds(v, {n: generic[n] for n in ENGINE_FIT}, tol=tol, profile=f"engine {eng}")
    for ven, v in sorted(rec.get("vendors", {}).items()):
        out += at_bounds(v, {n: VENDOR_BOUNDS for n in VENDOR_FIT}, tol=tol, profile=f"vendor {ven}")
    return out


def _residuals(cases, cat, make_profile):
    out = []
    for case, path in cases:
        try:
            p = predict(case, make_profile(case), cat, base_dir=path.parent)
            out.append(math.log(p.predicted / case.measured))
        except TokenmathError:
            out.append(3.0)
    return np.asarray(out)


def _fit_params(cases, cat, names, base: dict, make, bounds: dict, x0: dict, scale: dict) -> dict:
    """Least squares in log(predicted / measured) over the named parameters (soft_l1: a few
    outliers do not steer the fit)."""
    from scipy.optimize import least_squares

    if not cases or not names:
        return dict(base)

    def profile_of(x):
        rec = dict(base) | dict(zip(names, x))
        return lambda case: make(case, rec)

    lo = [bounds[n][0] for n in names]
    hi = [bounds[n][1] for n in names]
    start = np.clip([x0.get(n, base.get(n, 1.0)) for n in names], np.array(lo) + 1e-12, np.array(hi) - 1e-12)
    res = least_squares(lambda x: _residuals(cases, cat, profile_of(x)), start, bounds=(lo, hi),
                        x_scale=[scale[n] for n in names], loss="soft_l1", f_scale=0.3, max_nfev=60)
    return dict(base) | {n: float(v) for n, v in zip(names, res.x)}


def _batch_limits(cases, cat, cap) -> tuple:
    """Each case's largest batch (its HBM limit, capped at the engine batch cap `cap`): all that the
    cap changes in a prediction, so two caps with the same limits fit to the same profile."""
    out = []
    for case, path in cases:
        try:
            c = _ctx(case, ROOFLINE_PROFILE, cat, path.parent)
            out.append(_max_batch(c.model, c.system, c.layout, case.input_tokens + case.output_tokens, c.dtypes, cap))
        except TokenmathError:
            out.append(None)
    return tuple(out)


def fit_preset(cases, catalog: Catalog | None = None, caps=BATCH_CAPS) -> dict:
    """Fit the generic profile (and the engine batch cap), then each engine's and each vendor's
    on its own cases where there are enough; returns the preset's profile records."""
    cat = catalog or load_catalog()
    bounds = {n: (lo, hi) for n, lo, hi, _, _ in GENERIC_PARAMS}
    x0 = {n: v for n, _, _, v, _ in GENERIC_PARAMS}
    scale = {n: sc for n, _, _, _, sc in GENERIC_PARAMS}
    names = [n for n, *_ in GENERIC_PARAMS]
    # the generic profile: NVIDIA cases (vendors get their own factor after), every engine together
    vend = {id(c): vendor(cat.system(c.system)) for c, _ in cases}
    nv = [(c, p) for c, p in cases if vend[id(c)] == "nvidia"] or list(cases)
    best = None
    seen = set()
    for cap in caps:
        limits = _batch_limits(nv, cat, cap)
        if limits in seen:  # the same residuals as an earlier cap's at every parameter: the same fit, not better
            continue
        seen.add(limits)
        make = lambda case, rec, cap=cap: profile_from_record(rec | {"max_batch": cap}, engine=case.engine)  # noqa: E731
        rec = _fit_params(nv, cat, names, {}, make, bounds, x0, scale) | {"max_batch": cap}
        med = float(np.median(np.abs(np.expm1(_residuals(nv, cat, lambda case: profile_from_record(rec, engine=case.engine))))))
        if best is None or med < best[1]:
            best = (rec, med)
    generic = best[0] | {"n_cases": len(nv)}
    # vendor factors (e.g. AMD's ROCm stack): the compute and memory scales on the generic profile,
    # fitted on every case of that vendor whatever its engine
    vendors = {}
    for v in sorted(set(vend.values()) - {"nvidia"}):
        mine = [(c, p) for c, p in cases if vend[id(c)] == v]
        if len(mine) < MIN_CASES_VENDOR:
            continue

        def make_v(case, rec):
            return profile_from_record(generic | {k: generic.get(k, 1.0) * rec[k] for k in VENDOR_FIT}, engine=case.engine)

        fb = {n: VENDOR_BOUNDS for n in VENDOR_FIT}
        rec = _fit_params(mine, cat, list(VENDOR_FIT), {n: 1.0 for n in VENDOR_FIT}, make_v, fb, {},
                          {n: 0.2 for n in VENDOR_FIT})
        vendors[v] = {k: rec[k] for k in VENDOR_FIT} | {"n_cases": len(mine)}
    # engine profiles: overhead and the two scales refitted on the engine's own cases (any vendor,
    # its vendor factor applied on top), where there are enough of them
    engines = {}
    for eng in sorted({c.engine for c, _ in cases if c.engine}):
        mine = [(c, p) for c, p in cases if c.engine == eng]
        if len(mine) < MIN_CASES_ENGINE:
            continue

        def make_e(case, rec):
            f = vendors.get(vend[id(case)], {})
            return profile_from_record(rec | {k: rec[k] * f.get(k, 1.0) for k in VENDOR_FIT}, engine=case.engine)

        rec = _fit_params(mine, cat, list(ENGINE_FIT), generic, make_e, bounds, {}, scale)
        engines[eng] = {k: rec[k] for k in ENGINE_FIT} | {"n_cases": len(mine)}
    return {"generic": generic, "engines": engines, "vendors": vendors}


def _cv(cases, cat, key, progress=None, what="source", caps=BATCH_CAPS) -> list[Prediction]:
    """Hold out each group of `key`, fit on the rest (the engine batch cap fixed at the full
    fit's choice), predict it."""
    groups = sorted({key(c) for c, _ in cases})
    rows: list[Prediction] = []
    folds = [([(c, p) for c, p in cases if key(c) != g], [(c, p) for c, p in cases if key(c) == g]) for g in groups]
    folds = [(tr, te) for tr, te in folds if tr]
    from concurrent.futures import ProcessPoolExecutor

    workers = min(len(folds), os.cpu_count() or 1, 4)
    with ProcessPoolExecutor(max_workers=workers) if workers > 1 else _Serial() as pool:
        futures = [pool.submit(fit_preset, tr, cat, caps) for tr, _ in folds]
        for i, ((_, test), fut) in enumerate(zip(folds, futures)):
            rec = fut.result()
            for case, path in test:
                try:
                    rows.append(predict(case, choose_from(rec, engine=case.engine, system=cat.system(case.system)), cat,
                                        base_dir=path.parent))
                except TokenmathError:
                    continue
            if progress:
                progress(i + 1, len(folds), f"{what} {key(test[0][0])}")
    return rows


class _Serial:
    """A stand-in executor that runs each task when submitted (one core, or tests)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *a):
        from concurrent.futures import Future

        f = Future()
        f.set_result(fn(*a))
        return f


def calibrate(cases: list[tuple[Case, Path]] | None = None, catalog: Catalog | None = None,
              progress=None, cross_validate: bool = True) -> dict:
    """Fit the preset on all cases and cross-validate it: leave-one-source-out (each source
    predicted by a fit to the others) and leave-one-vendor-out. The residuals of the
    leave-one-source-out predictions give every estimate its 80 % band. Returns the preset record
    (what `tokenmath calibrate --out` saves)."""
    import datetime

    cases = cases if cases is not None else load_cases()
    cat = catalog or load_catalog()
    rec = fit_preset(cases, cat)
    rec["at_bound"] = preset_at_bounds(rec)
    rec["fit_date"] = datetime.date.today().isoformat()
    rec["n_cases"] = len(cases)
    rec["cases"] = "validation/cases/*.jsonl"
    rec["systems"] = sorted({c.system for c, _ in cases})
    in_rows = validate(cases, "calibrated", cat, preset=rec).rows
    rec["in_sample"] = _summary([r.error for r in in_rows])
    if not cross_validate:
        return rec
    caps = (rec["generic"]["max_batch"],)
    loso = _cv(cases, cat, source_key, progress, "source", caps)
    lovo = _cv(cases, cat, lambda c: vendor(cat.system(c.system)), progress, "vendor", caps)
    cv = summarize(loso, "leave-one-source-out")
    rec["cross_validated"] = {"method": "leave-one-source-out", "sources": sorted({source_key(c) for c, _ in cases}),
                              "n": len(loso), "median_abs_error": cv.median_abs_error, "p90_abs_error": cv.p90_abs_error}
    rec["leave_one_vendor_out"] = {"by_vendor": summarize(lovo, "lovo").by_vendor} | _summary([r.error for r in lovo])
    for g in ("source", "vendor", "engine", "metric", "model_class"):
        rec[f"cv_by_{g}"] = getattr(cv, f"by_{g}")
    # residuals in time sense (log predicted time / measured time): a rate metric's sign flips
    r = np.asarray([math.log1p(x.error) * (1 if metric_kind(x.metric) == "time" else -1) for x in loso])
    rec["bands"] = {"step": [float(np.percentile(r, 10)), float(np.percentile(r, 90))],
                    "note": "10th/90th percentiles of log(predicted/measured step time), leave-one-source-out"}
    rec["worst_cv_cases"] = [{"id": x.id, "error": x.error, "metric": x.metric, "source": x.source, "note": x.note}
                             for x in sorted(loso, key=lambda x: -abs(x.error))[:10]]
    return rec


# --------------------------------------------------------------------------------------------
# A preset fitted to a user's own cases, starting from the shipped one
# --------------------------------------------------------------------------------------------

# Parameters a user fit adjusts, in the order more cases unlock them (one per CASES_PER_PARAM cases):
# decode is mostly memory-bound, then the fixed per-step cost, then compute, kernel floors, links.
USER_FIT_ORDER = ("memory_scale", "overhead_s", "compute_scale", "floor_scale", "network_scale")
CASES_PER_PARAM = 4
MAX_USER_CASES = 2000


def user_fit_params(n_cases: int) -> tuple[str, ...]:
    """Which factors `n_cases` cases can carry: one per CASES_PER_PARAM, at least one."""
    return USER_FIT_ORDER[:min(len(USER_FIT_ORDER), max(1, n_cases // CASES_PER_PARAM))]


def _user_residuals(cases, cat, d: dict, adjust: dict) -> np.ndarray:
    from .profiles import choose_from

    dd = d | {"adjust": adjust}
    out = []
    for case, path in cases:
        try:
            prof = choose_from(dd, engine=case.engine, system=cat.system(case.system), name="fit")
            out.append(math.log(predict(case, prof, cat, base_dir=path.parent).predicted / case.measured))
        except TokenmathError:
            out.append(3.0)
    return np.asarray(out)


def _compose(base: dict, new: dict) -> dict:
    return {k: base.get(k, 1.0) * new.get(k, 1.0) for k in set(base) | set(new)}


def _fit_adjust(cases, cat, d: dict, names, base: dict | None = None, *, fitted: dict | None = None) -> dict:
    """Factors on `names` (on top of `base`'s factors, which stay) that fit the cases; returns the
    combined factors (and puts the fitted ones alone, before combining, into `fitted`)."""
    from scipy.optimize import least_squares

    base = base or {}
    lo, hi = (math.log(b) for b in USER_FACTOR_BOUNDS)
    res = least_squares(lambda x: _user_residuals(cases, cat, d, _compose(base, dict(zip(names, np.exp(x))))),
                        np.zeros(len(names)), bounds=(np.full(len(names), lo), np.full(len(names), hi)),
                        loss="soft_l1", f_scale=0.3, max_nfev=80)
    new = {n: float(math.exp(v)) for n, v in zip(names, res.x)}
    if fitted is not None:
        fitted.update(new)
    return _compose(base, new)


def fit_user_preset(cases: list[tuple[Case, Path]], catalog: Catalog | None = None, base: str | None = None,
                    cross_validate: bool = True, progress=None) -> dict:
    """Fit factors on the shipped preset (or `base`) to the user's cases: which factors depends on how
    many cases there are (user_fit_params). Reports the shipped preset's error on these cases, the
    fitted in-sample error and — with cross_validate — the leave-one-out error (10 folds past 40
    cases), whose residuals become the preset's 80 % band when there are at least 5 cases."""
    import datetime

    from .profiles import preset_record

    if not cases:
        raise TokenmathError("no cases to fit: give case files (tokenmath import writes them)")
    if len(cases) > MAX_USER_CASES:
        raise TokenmathError(f"{len(cases):,} cases; a user fit takes at most {MAX_USER_CASES:,}")
    cat = catalog or load_catalog()
    src = preset_record(base)
    d = {k: v for k, v in src.items() if k not in ("adjust", "user_fit")}
    base_adjust = dict(src.get("adjust", {}))  # a user preset as the base: its factors stay, the new multiply
    names = user_fit_params(len(cases))

    def fit_on(train):
        return _fit_adjust(train, cat, d, user_fit_params(len(train)), base_adjust)

    def resid(test, adj):
        return _user_residuals(test, cat, d, adj)

    own: dict = {}
    adjust = _fit_adjust(cases, cat, d, names, base_adjust, fitted=own)
    shipped = resid(cases, base_adjust)
    fitted = resid(cases, adjust)
    err = lambda r: _summary([float(np.expm1(x)) for x in r])  # noqa: E731
    fit = {"params": list(names), "factors": adjust, "n_cases": len(cases),
           "why_these": f"one factor per {CASES_PER_PARAM} cases, in the order {', '.join(USER_FIT_ORDER)}",
           "shipped_error": err(shipped), "in_sample": err(fitted),
           "fit_date": datetime.date.today().isoformat(), "base_fit_date": d.get("fit_date"),
           "cases": sorted({str(p) for _, p in cases}),
           # a factor (this fit's, on top of the base's) that ended at ×0.1 or ×10: not a measurement
           "at_bound": at_bounds(own, {n: USER_FACTOR_BOUNDS for n in names}, log=True)}
    out = d | {"adjust": adjust, "user_fit": fit, "at_bound": fit["at_bound"]}
    if cross_validate and len(cases) >= 3:
        n = len(cases)
        folds = np.arange(n) % (n if n <= 40 else 10)
        cv = np.empty(n)
        for k, f in enumerate(np.unique(folds)):
            if progress:
                progress(k + 1, len(np.unique(folds)), "fold")
            train = [c for c, g in zip(cases, folds) if g != f]
            test = [c for c, g in zip(cases, folds) if g == f]
            cv[folds == f] = resid(test, fit_on(train))
        fit["cross_validated"] = err(cv) | {"method": "leave-one-out" if n <= 40 else "10-fold"}
        if n >= 5:
            kinds = np.array([1 if metric_kind(c.metric) == "time" else -1 for c, _ in cases])
            r = cv * kinds
            out["bands"] = {"step": [float(np.percentile(r, 10)), float(np.percentile(r, 90))],
                            "note": f"10th/90th percentiles of log(predicted/measured step time), {fit['cross_validated']['method']} on your {n} cases"}
    return out
