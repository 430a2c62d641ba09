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

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .catalog import Catalog, load_catalog
from .errors import TokenmathError
from .layout import Layout, layout_memory, layout_step
from .specs import Dtypes, Efficiency, Model, System

CASES_FILE = Path(__file__).parent / "validation" / "cases.jsonl"
PRESET_FILE = Path(__file__).parent / "validation" / "calibrated.json"
METRICS = ("decode_step_s", "ttft_s", "static_output_tokens_per_s_per_chip", "max_output_tokens_per_s_per_chip",
           "output_tokens_per_s_per_chip_at_user_rate")
HBM_USABLE_FRACTION = 0.9  # engines keep ~10 % of HBM for activations, workspaces and fragmentation (assumption)


class Case(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

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


def load_cases(path: str | Path | None = None) -> list[tuple[Case, Path]]:
    """Read a JSON-lines case file; one sentence naming the line on any error."""
    p = Path(path) if path is not None else CASES_FILE
    if not p.is_file():
        raise TokenmathError(f"case file {str(p)!r} does not exist")
    out = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            out.append((Case.model_validate(json.loads(line)), p))
        except json.JSONDecodeError as e:
            raise TokenmathError(f"case file {str(p)!r}, line {i} is not JSON ({e.msg})") from None
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err.get("loc", ()))
            raise TokenmathError(f"case file {str(p)!r}, line {i}: field {loc!r}: {err.get('msg', '').removeprefix('Value error, ')}") from None
    if not out:
        raise TokenmathError(f"case file {str(p)!r} holds no cases")
    return out


# --------------------------------------------------------------------------------------------
# The estimate: a roofline with named, fitted corrections
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """Corrections to the roofline. All defaults = the pure roofline (a bound)."""

    flops_prefill: float = 1.0  # achieved fraction of peak FLOP/s in prefill passes
    flops_decode: float = 1.0  # ... in decode passes
    hbm: float = 1.0  # achieved fraction of HBM bandwidth
    network: float = 1.0  # achieved fraction of link bandwidth
    step_overhead_s: float = 0.0  # fixed per forward pass (launches, scheduling, sampling)
    layer_overhead_s: float = 0.0  # per layer per pass (kernel launches, per-layer all-reduce latency)
    max_batch: float | None = None  # engine cap on sequences per replica (None: memory decides)
    label: str = "roofline"
    fitted_on: str = ""
    fit_date: str = ""

    def efficiency(self, kind: str) -> Efficiency:
        fl = self.flops_prefill if kind == "prefill" else self.flops_decode
        return Efficiency(flops=min(fl, 1.0), hbm=min(self.hbm, 1.0), network=min(self.network, 1.0), label=self.label)

    def overhead_s(self, model: Model) -> float:
        return self.step_overhead_s + self.layer_overhead_s * (model.n_layers or 0)

    @property
    def is_roofline(self) -> bool:
        return self.label == "roofline"


ROOFLINE_ESTIMATE = Estimate()


def load_preset(path: str | Path | None = None) -> tuple[Estimate, dict]:
    p = Path(path) if path is not None else PRESET_FILE
    if not p.is_file():
        raise TokenmathError(f"no calibrated preset at {str(p)!r}; run `tokenmath calibrate`")
    data = json.loads(p.read_text())
    return Estimate(**data["params"], label="calibrated", fitted_on=data.get("cases", ""),
                    fit_date=data.get("fit_date", "")), data


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


def _step(model, system, layout, batch, context, new_tokens, dt, est: Estimate, kind: str):
    st = layout_step(model, system, layout, batch, context, new_tokens=new_tokens, dtypes=dt,
                     efficiency=est.efficiency(kind), usd_per_chip_hour=0.0, check=False)
    return np.asarray(st.step_s) + est.overhead_s(model), st


def _max_batch(model, system, layout, context, dt, est: Estimate) -> float:
    """Largest batch per replica whose KV fits in the usable HBM, capped by the engine's max."""
    m1 = layout_memory(model, system, layout, 1.0, context, dtypes=dt)
    usable = m1.hbm_bytes_per_chip * HBM_USABLE_FRACTION - m1.weights_bytes_per_chip
    per_seq = m1.total_bytes_per_chip - m1.weights_bytes_per_chip
    b = math.floor(usable / per_seq) if per_seq > 0 else 0
    if b < 1:
        raise TokenmathError(f"{model.name} does not fit on {layout.replica_chips} × {system.name} in this layout")
    if est.max_batch:
        b = min(b, est.max_batch)
    return float(b)


def predict(case: Case, est: Estimate = ROOFLINE_ESTIMATE, catalog: Catalog | None = None,
            base_dir: Path | None = None) -> Prediction:
    cat = catalog or load_catalog()
    name = case.model
    if base_dir is not None and (name.endswith(".json") or "/" in name):
        name = str((base_dir / name).resolve())
    model, system = cat.model(name), cat.system(case.system)
    wd = {"fp16": "fp16"}.get(case.weight_dtype, case.weight_dtype)
    dt = Dtypes(weight=wd, kv=case.kv_dtype or "bf16")
    lay = _layout(case, model)
    I, O = case.input_tokens, case.output_tokens
    replicas = max(1, case.chips // lay.replica_chips)
    b_used = None
    if case.metric == "decode_step_s":
        b_used = (case.batch or 1) / replicas
        value, _ = _step(model, system, lay, b_used, I + O / 2, 1, dt, est, "decode")
    elif case.metric == "ttft_s":
        b_used = case.batch or 1
        value, _ = _step(model, system, lay, b_used, I / 2, I, dt, est, "prefill")
    elif case.metric == "static_output_tokens_per_s_per_chip":
        b_used = (case.batch or 1) / replicas
        pre, _ = _step(model, system, lay, b_used, I / 2, I, dt, est, "prefill")
        dec, _ = _step(model, system, lay, b_used, I + O / 2, 1, dt, est, "decode")
        value = b_used * O / (pre + O * dec) / lay.replica_chips
    else:
        ctx = I + O / 2
        if case.batch:
            b_used = case.batch / replicas
        else:
            b_used = _max_batch(model, system, lay, I + O, dt, est)
        # continuous batching prefills prompts together: a pass over B prompts shares one weight read
        if case.metric == "max_output_tokens_per_s_per_chip":
            pre, _ = _step(model, system, lay, b_used, I / 2, I, dt, est, "prefill")
            dec, _ = _step(model, system, lay, b_used, ctx, 1, dt, est, "decode")
            value = O / (O * dec / b_used + pre / b_used) / lay.replica_chips
        else:
            grid = np.unique(np.round(np.geomspace(1, b_used, 200)))
            pre, _ = _step(model, system, lay, grid, I / 2, I, dt, est, "prefill")
            dec, _ = _step(model, system, lay, grid, ctx, 1, dt, est, "decode")
            ok = 1.0 / dec >= (case.min_tokens_per_s_per_user or 0)
            if not ok.any():
                raise TokenmathError(f"case {case.id}: no batch reaches {case.min_tokens_per_s_per_user} tokens/s per user")
            tput = O / (O * dec / grid + pre / grid) / lay.replica_chips
            i = int(np.argmax(np.where(ok, tput, -1)))
            value, b_used = tput[i], float(grid[i])
    value = float(value)
    return Prediction(case.id, case.metric, value, case.measured, value / case.measured - 1, case.system,
                      source_key(case), model.name, b_used)


def source_key(case: Case) -> str:
    """Group cases by the table they were published in (per-source errors, leave-one-source-out)."""
    src = case.source.lower()
    if "lmsys" in src or "sglang" in src:
        return "sglang-lmsys"
    if "00f3768" in src:
        return "trtllm-v1.0-perf-overview"
    if "138f96d" in src:
        return "trtllm-v0.5-first-token" if case.metric == "ttft_s" else "trtllm-v0.6.1-throughput"
    if "llm-viewer" in src:
        return "trtllm-a100-page-via-llm-viewer"
    return case.source.split()[0][:40]


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


def _summary(errs: list[float]) -> dict[str, float]:
    a = np.abs(np.asarray(errs, float))
    return {"n": int(a.size), "median_abs_error": float(np.median(a)), "p90_abs_error": float(np.percentile(a, 90))}


def validate(cases: list[tuple[Case, Path]] | None = None, est: Estimate = ROOFLINE_ESTIMATE,
             catalog: Catalog | None = None, fitted_systems: set[str] | None = None) -> Report:
    cases = cases if cases is not None else load_cases()
    cat = catalog or load_catalog()
    rows: list[Prediction] = []
    failures: dict[str, str] = {}
    for case, path in cases:
        try:
            p = predict(case, est, cat, base_dir=path.parent)
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
    errs = [r.error for r in rows]
    group = lambda key: {k: _summary([r.error for r in rows if getattr(r, key) == k])  # noqa: E731
                         for k in sorted({getattr(r, key) for r in rows})}
    s = _summary(errs)
    return Report(est.label, rows, s["median_abs_error"], s["p90_abs_error"], group("metric"), group("system"),
                  group("source"), failures)


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------

FIT_PARAMS = ("flops_prefill", "flops_decode", "hbm", "network", "step_overhead_s", "layer_overhead_s")
FIT_BOUNDS = ((0.05, 1.0), (0.05, 1.0), (0.05, 1.0), (0.05, 1.0), (0.0, 0.05), (0.0, 1e-3))
BATCH_CAPS = (None, 256, 512, 1024, 2048)


def _fit_one(cases, cat, max_batch) -> tuple[Estimate, float]:
    from scipy.optimize import least_squares

    def residuals(x):
        est = Estimate(**dict(zip(FIT_PARAMS, x)), max_batch=max_batch, label="fit")
        out = []
        for case, path in cases:
            try:
                out.append(math.log(predict(case, est, cat, base_dir=path.parent).predicted / case.measured))
            except TokenmathError:
                out.append(3.0)
        return np.asarray(out)

    x0 = np.array([0.5, 0.5, 0.7, 0.7, 1e-3, 1e-5])
    lo, hi = zip(*FIT_BOUNDS)
    res = least_squares(residuals, x0, bounds=(lo, hi), x_scale=[0.3, 0.3, 0.3, 0.3, 1e-3, 1e-5], max_nfev=200)
    est = Estimate(**dict(zip(FIT_PARAMS, res.x)), max_batch=max_batch, label="calibrated")
    errs = np.abs(np.exp(residuals(res.x)) - 1)
    return est, float(np.median(errs))


def fit(cases, catalog: Catalog | None = None) -> Estimate:
    """Fit the Estimate's parameters to `cases` (median |error| decides the engine batch cap)."""
    cat = catalog or load_catalog()
    best = None
    for cap in BATCH_CAPS:
        est, med = _fit_one(cases, cat, cap)
        if best is None or med < best[1]:
            best = (est, med)
    return best[0]


def calibrate(cases: list[tuple[Case, Path]] | None = None, catalog: Catalog | None = None,
              progress=None) -> dict:
    """Fit on all cases, and report leave-one-source-out cross-validated errors: for each source,
    fit on the others and predict it. Returns the preset record (what `tokenmath calibrate` saves)."""
    import datetime

    cases = cases if cases is not None else load_cases()
    cat = catalog or load_catalog()
    sources = sorted({source_key(c) for c, _ in cases})
    full = fit(cases, cat)
    in_sample = validate(cases, full, cat)
    cv_rows: list[Prediction] = []
    for i, src in enumerate(sources):
        train = [(c, p) for c, p in cases if source_key(c) != src]
        test = [(c, p) for c, p in cases if source_key(c) == src]
        if not train:
            continue
        est = fit(train, cat)
        cv_rows += validate(test, est, cat).rows
        if progress:
            progress(i + 1, len(sources), src)
    cv = _summary([r.error for r in cv_rows])
    worst = sorted(cv_rows, key=lambda r: -abs(r.error))[:5]
    return {
        "params": {k: getattr(full, k) for k in FIT_PARAMS} | {"max_batch": full.max_batch},
        "fit_date": datetime.date.today().isoformat(),
        "cases": str(CASES_FILE.name),
        "n_cases": len(cases),
        "systems": sorted({c.system for c, _ in cases}),
        "in_sample": {"median_abs_error": in_sample.median_abs_error, "p90_abs_error": in_sample.p90_abs_error},
        "cross_validated": {"method": "leave-one-source-out", "sources": sources} | cv,
        "cv_by_source": {src: _summary([r.error for r in cv_rows if r.source == src]) for src in sources
                         if any(r.source == src for r in cv_rows)},
        "worst_cv_cases": [{"id": r.id, "error": r.error, "metric": r.metric, "source": r.source} for r in worst],
    }
