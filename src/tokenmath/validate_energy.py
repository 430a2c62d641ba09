"""Predicted vs measured power and energy: energy validation cases and their error report.

An energy case is one JSON line, like a step case (validate.py) but with an energy metric:

    {"id": ..., "metric": "board_watts_per_chip" | "node_watts_per_chip" | "joules_per_output_token",
     "model": "llama-3.1-8b", "system": "h100-sxm", "chips": 1, "tp": 1, "ep": 1, "weight_dtype": null,
     "batch": 64, "input_tokens": 500, "output_tokens": 400, "step_s_measured": 0.0124,
     "workload": "serving" | "static" | "training" | "gemm", "engine": "vllm", "level": "board",
     "measured": 610.3, "source": "...", "date": "2026-02"}

Predictions (energy.py):
  board_watts_per_chip     board power at τ = batch / chips (serving, static); a training pass at the
                           measured training share of the board limit; a GEMM burn at the limit
  node_watts_per_chip      that + the system's host power per chip
  joules_per_output_token  chips × power (at the case's `level`) × step time / batch, the step time
                           the calibrated estimate's (continuous batching with chunked prefill:
                           stepmodel.steady_step_s; a static batch: its prefill + O decode steps, ÷ O).
                           The same with the case's measured step time is reported beside it: that
                           isolates the power model from the step model.

Every metric's 80 % band is the 10th-90th percentile of predicted/measured of the cross-validated
fit (validation/power_fit.json, scripts/fit_power.py); the report gives the share of cases inside.
`tokenmath validate` runs these cases with the step cases (its hook reads them through here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .energy import LEVELS
from .errors import TokenmathError, read_json_lines, validation_message

ENERGY_DIR = Path(__file__).parent / "validation" / "energy"
METRICS = ("board_watts_per_chip", "node_watts_per_chip", "joules_per_output_token")
WORKLOADS = ("serving", "static", "training", "gemm")


class EnergyCase(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    metric: str
    model: str
    system: str
    chips: int
    tp: int | None = None
    ep: int | None = None
    weight_dtype: str | None = None
    kv_dtype: str | None = None
    batch: float | None = None
    input_tokens: float | None = None
    input_tokens_assumed: bool = False
    output_tokens: float | None = None
    step_s_measured: float | None = None
    workload: str = "serving"
    engine: str | None = None
    level: str = "board"
    measured: float
    source: str
    date: str | None = None
    notes: str = ""
    used_in_fit: str | None = None  # what of the model this case fixed (e.g. "host power"), if anything

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"metric = {v!r}; expected one of {', '.join(METRICS)}")
        return v

    @field_validator("workload")
    @classmethod
    def _workload(cls, v: str) -> str:
        if v not in WORKLOADS:
            raise ValueError(f"workload = {v!r}; expected one of {', '.join(WORKLOADS)}")
        return v

    @field_validator("level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v not in LEVELS:
            raise ValueError(f"level = {v!r}; expected board, node or facility")
        return v

    @field_validator("measured", "chips")
    @classmethod
    def _positive(cls, v):
        if not (v > 0 and math.isfinite(v)):
            raise ValueError(f"{v!r} must be a positive finite number")
        return v


def is_energy_record(d) -> bool:
    """A JSON line that is an energy case (validate.py's loader leaves these to this module)."""
    return isinstance(d, dict) and d.get("metric") in METRICS


def load_energy_cases(path: str | Path | None = None) -> list[tuple[EnergyCase, Path]]:
    """The energy cases of a JSON-lines file (none when it holds only step cases), or every shipped
    file under validation/energy/; one sentence naming the file and line on any error."""
    if path is None:
        out = []
        for f in sorted(ENERGY_DIR.glob("*.jsonl")):
            out += load_energy_cases(f)
        return out
    p = Path(path)
    where = f"case file {str(p)[:200]!r}"
    out = []
    for i, d in read_json_lines(p, where):
        if not is_energy_record(d):
            continue
        try:
            out.append((EnergyCase.model_validate(d), p))
        except ValidationError as e:
            raise TokenmathError(f"{where}, line {i}: {validation_message(e)}") from None
    return out


# --------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnergyPrediction:
    id: str
    metric: str
    predicted: float
    measured: float
    error: float  # predicted / measured − 1
    system: str
    source: str
    model: str
    vendor: str
    engine: str
    workload: str
    batch: float | None
    in_band: bool | None  # measured inside the metric's 80 % band around the prediction
    predicted_with_measured_step: float | None = None  # J/token with the case's measured step time
    note: str = ""
    used_in_fit: str | None = None


def layout_of(case: EnergyCase, model):
    from .parallelism import Layout

    tp, ep = case.tp, case.ep
    if tp is None and ep is None:
        tp, ep = (1, case.chips) if model.moe is not None and case.chips > 1 else (case.chips, 1)
    tp, ep = tp or 1, ep or 1
    if tp * ep != case.chips:
        raise TokenmathError(f"case {case.id}: TP {tp} × EP {ep} is not its {case.chips} chips")
    return Layout(tp=tp, ep=ep)


def board_watts(case: EnergyCase, power) -> float:
    """The board power per chip the model predicts for the case's workload."""
    from . import energy as en

    if case.workload == "gemm":
        return float(power.limit_w)
    if case.workload == "training":
        return float(min(en.training_board_share() * power.board_w, power.limit_w))
    if not case.batch:
        raise TokenmathError(f"case {case.id}: a {case.workload} case needs its batch")
    return float(en.board_power(power, case.batch / case.chips)[0])


def estimated_step_s(case: EnergyCase, model, system, layout, dtypes) -> float:
    """Time per output step of the case's workload under the calibrated estimate of its engine."""
    from .profiles import choose
    from .stepmodel import op_step, steady_step_s

    if not (case.batch and case.input_tokens and case.output_tokens):
        raise TokenmathError(f"case {case.id}: joules per output token needs batch, input and output tokens")
    prof = choose("calibrated", engine=case.engine, system=system)
    B, I, O = case.batch, case.input_tokens, case.output_tokens
    if case.workload == "static":  # one batch: its prefill, then O decode steps at mean context I + O/2
        pre = op_step(model, system, layout, B, 0.0, I, kernels=prof.kernels, engine=prof.engine, dtypes=dtypes, check=False)
        dec = op_step(model, system, layout, B, I + O / 2, 1.0, kernels=prof.kernels, engine=prof.engine, dtypes=dtypes,
                      check=False)
        return (float(pre.step_s) + O * float(dec.step_s)) / O
    return float(steady_step_s(model, system, layout, B, I, O, kernels=prof.kernels, engine=prof.engine, dtypes=dtypes))


def predict_energy(case: EnergyCase, catalog=None, power=None) -> EnergyPrediction:
    """The case's metric from the shipped power model (or `power`, a ChipPower: the fit's folds)."""
    from . import energy as en
    from .catalog import load_catalog
    from .profiles import vendor
    from .specs import Dtypes

    cat = catalog or load_catalog()
    model, system = cat.model(case.model), cat.system(case.system)
    power = power or en.chip_power(system)
    board = board_watts(case, power)
    note = ""
    with_measured = None
    if case.metric == "board_watts_per_chip":
        value = board
    elif case.metric == "node_watts_per_chip":
        value = board + power.host_w
    else:
        per_chip = {"board": board, "node": board + power.host_w,
                    "facility": (board + power.host_w) * en.facility().pue}[case.level]
        lay = layout_of(case, model)
        dt = Dtypes.for_point(model, case.weight_dtype, case.kv_dtype or "bf16")  # the checkpoint as published
        T = estimated_step_s(case, model, system, lay, dt)
        value = case.chips * per_chip * T / case.batch
        if case.step_s_measured:
            with_measured = case.chips * per_chip * case.step_s_measured / case.batch
    band = (en.power_fit().get("bands") or {}).get(case.metric)
    r = value / case.measured
    in_band = None if not band else bool(band[0] <= r <= band[1])
    if case.input_tokens_assumed and case.metric == "joules_per_output_token":
        note = f"input tokens {case.input_tokens:g} assumed (the source publishes none)"
    return EnergyPrediction(case.id, case.metric, float(value), case.measured, float(r - 1.0), case.system,
                            source_key(case), model.name, vendor(system), case.engine or "unknown", case.workload,
                            case.batch, in_band, with_measured, note, case.used_in_fit)


def source_key(case: EnergyCase) -> str:
    """The publication a case comes from (per-source errors, leave-one-source-out)."""
    import re

    m = re.search(r"github(?:\.com)?[ /:]+([\w.-]+/[\w.-]+)", case.source)
    if m:
        return m.group(1)
    m = re.search(r"arXiv\s*(\d{4}\.\d{4,5})", case.source)
    if m:
        return "arXiv " + m.group(1)
    return case.source.split(",")[0][:40]


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnergyReport:
    rows: list[EnergyPrediction]
    by_metric: dict[str, dict[str, float]]  # n, median_abs_error, p90_abs_error, band_coverage
    by_source: dict[str, dict[str, float]]
    by_metric_small_batch: dict[str, dict[str, float]]  # batch ≤ 16
    measured_step: dict[str, float]  # J/token with the measured step time
    failures: dict[str, str] = field(default_factory=dict)


SMALL_BATCH = 16


def _summary(rows: list[EnergyPrediction]) -> dict[str, float]:
    a = np.abs([r.error for r in rows])
    if a.size == 0:
        return {"n": 0, "median_abs_error": float("nan"), "p90_abs_error": float("nan"), "band_coverage": None}
    cov = [r.in_band for r in rows if r.in_band is not None]
    return {"n": int(a.size), "median_abs_error": float(np.median(a)), "p90_abs_error": float(np.percentile(a, 90)),
            "band_coverage": None if not cov else float(np.mean(cov))}


def summarize_energy(rows: list[EnergyPrediction], failures: dict[str, str] | None = None) -> EnergyReport:
    by_metric = {m: _summary([r for r in rows if r.metric == m]) for m in METRICS if any(r.metric == m for r in rows)}
    small = {m: _summary([r for r in rows if r.metric == m and r.batch is not None and r.batch <= SMALL_BATCH])
             for m in by_metric}
    by_source = {}
    for s in sorted({r.source for r in rows}):
        for m in METRICS:
            sel = [r for r in rows if r.source == s and r.metric == m]
            if sel:
                by_source[f"{s} · {m}"] = _summary(sel)
    ms = [r for r in rows if r.predicted_with_measured_step is not None]
    a = np.abs([r.predicted_with_measured_step / r.measured - 1 for r in ms])
    measured_step = {"n": int(a.size), "median_abs_error": float(np.median(a)) if a.size else float("nan"),
                     "p90_abs_error": float(np.percentile(a, 90)) if a.size else float("nan")}
    return EnergyReport(rows, by_metric, by_source, small, measured_step, dict(failures or {}))


def validate_energy(cases: list[tuple[EnergyCase, Path]] | None = None, catalog=None) -> EnergyReport:
    """Predict every energy case with the shipped power model and the calibrated step estimate."""
    from .catalog import load_catalog

    cases = load_energy_cases() if cases is None else cases
    cat = catalog or load_catalog()
    rows, failures = [], {}
    for case, _ in cases:
        try:
            rows.append(predict_energy(case, cat))
        except TokenmathError as e:
            failures[case.id] = str(e)
    if not rows and failures:
        raise TokenmathError("no energy case could be predicted: " + "; ".join(f"{k}: {v}" for k, v in list(failures.items())[:3]))
    return summarize_energy(rows, failures)


def _plain(x):
    """JSON-ready: NaN and inf become None, numpy scalars Python numbers, containers recursively."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, float, np.integer, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    return x


def energy_record(r: EnergyReport) -> dict:
    return _plain({
        "n": len(r.rows), "by_metric": r.by_metric, "by_metric_batch_le_16": r.by_metric_small_batch,
        "by_source": r.by_source, "joules_per_output_token_with_measured_step": r.measured_step,
        "cross_validated": _fit_record().get("cross_validated"), "bands": _fit_record().get("bands"),
        "rows": [{"id": x.id, "metric": x.metric, "predicted": x.predicted, "measured": x.measured, "error": x.error,
                  "system": x.system, "source": x.source, "model": x.model, "vendor": x.vendor, "engine": x.engine,
                  "workload": x.workload, "batch": x.batch, "in_band": x.in_band,
                  "predicted_with_measured_step": x.predicted_with_measured_step, "note": x.note or None,
                  "used_in_fit": x.used_in_fit} for x in r.rows],
        "failures": r.failures})


def _fit_record() -> dict:
    from .energy import power_fit

    return power_fit()


def render_energy(r: EnergyReport) -> list[str]:
    lines = [f"energy: {len(r.rows)} cases (the shipped power model; J/token on the calibrated estimate's step time)"]
    lines.append(f"  {'metric':<26} {'n':>4} {'median':>8} {'p90':>8} {'in 80% band':>12}   batch ≤ {SMALL_BATCH}: median, p90")
    for m, v in r.by_metric.items():
        s = r.by_metric_small_batch.get(m, {})
        cov = "-" if v["band_coverage"] is None else f"{v['band_coverage']:.0%}"
        sm = "-" if not s.get("n") else f"{s['median_abs_error']:.1%}, {s['p90_abs_error']:.1%} (n={s['n']})"
        lines.append(f"  {m:<26} {v['n']:>4} {v['median_abs_error']:>8.1%} {v['p90_abs_error']:>8.1%} {cov:>12}   {sm}")
    if r.measured_step["n"]:
        lines.append(f"  joules_per_output_token with the measured step time (the power model alone): median "
                     f"{r.measured_step['median_abs_error']:.1%}, p90 {r.measured_step['p90_abs_error']:.1%} "
                     f"(n={r.measured_step['n']})")
    cv = _fit_record().get("cross_validated", {})
    for k in ("leave_one_model_out", "leave_one_source_out"):
        if k in cv:
            b = cv[k].get("board_watts_per_chip", {})
            if b:
                lines.append(f"  board watts never fitted ({k.replace('_', '-')}): median {b['median_abs_error']:.1%}, "
                             f"p90 {b['p90_abs_error']:.1%} (n={b['n']})")
    lines.append("  by source:")
    lines += [f"    {k:<64} n={v['n']:<4} median {v['median_abs_error']:6.1%}  p90 {v['p90_abs_error']:6.1%}"
              for k, v in r.by_source.items()]
    lines.append("  worst cases:")
    for x in sorted(r.rows, key=lambda x: -abs(x.error))[:6]:
        lines.append(f"    {x.id:<70} predicted {x.predicted:9.4g}  measured {x.measured:9.4g}  {x.error:+.0%}")
    for x in r.rows:
        if x.used_in_fit:
            lines.append(f"  {x.id}: fixed the model's {x.used_in_fit} (in-sample)")
    for k, v in r.failures.items():
        lines.append(f"  could not predict {k}: {v}")
    return lines


__all__ = ["EnergyCase", "EnergyPrediction", "EnergyReport", "METRICS", "load_energy_cases", "predict_energy",
           "validate_energy", "render_energy", "energy_record", "is_energy_record", "summarize_energy"]
