"""Predicted vs published measurements: validation cases, predictions and the error report
(calibration is calibrate.py's).

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
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .catalog import Catalog, load_catalog
from .errors import TokenmathError, read_json_lines, validation_message
from .parallelism import Layout
from .profiles import (ROOFLINE_PROFILE, Profile, band_on, case_features, choose_from, engine_features, model_class,
                       preset_record, vendor, with_features)
from .specs import Dtypes, Model, System
from .stepmodel import (ARRIVALS, MAX_REQUESTS, ClosedLoop, RateSolution, closed_loop, max_batch, op_step, solve_rate,
                        steady_step_s)
from .validate_energy import is_energy_record

CASES_DIR = Path(__file__).parent / "validation" / "cases"
METRICS = ("decode_step_s", "ttft_s", "static_output_tokens_per_s_per_chip", "max_output_tokens_per_s_per_chip",
           "output_tokens_per_s_per_chip_at_user_rate", "tpot_s")
# what a measured case's numbers can physically be: a time (s) or a rate (tokens/s per chip), token counts
# and layout degrees as the CLI bounds them (cli.FLAGS)
CASE_RANGES = {"measured": (1e-9, 1e12), "input_tokens": (1, 1e8), "output_tokens": (1, 1e8), "chips": (1, 1e6),
               "batch": (1e-9, 1e7), "tp": (1, 1e6), "ep": (1, 1e6), "pp": (1, 1e6), "dp": (1, 1e6),
               "min_tokens_per_s_per_user": (1e-9, 1e7)}


class Case(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    id: str
    model: str
    system: str
    chips: int
    # the run's weight dtype; the checkpoint's own (e.g. MXFP4 for gpt-oss) means the checkpoint as
    # published, whose unquantised parts (gpt-oss's BF16 attention) stay so (Dtypes.for_point)
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
    # how the client's requests reached the engine (stepmodel.ARRIVALS): "spread" (default: random
    # lengths, a long run's steady state) or "waves" (fixed lengths / a burst: admitted together,
    # finished together); and the run's request count (bench_serving --num-prompts), None: steady state
    arrivals: str | None = None
    requests: int | None = None

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"metric = {v!r}; expected one of {', '.join(METRICS)}")
        return v

    @field_validator("weight_dtype", "kv_dtype")
    @classmethod
    def _dtype(cls, v):
        return v.lower() if isinstance(v, str) else v  # "FP8" is fp8: the checkpoint's own dtype compares equal

    @field_validator("arrivals")
    @classmethod
    def _arrivals(cls, v):
        if v is not None and v not in ARRIVALS:
            raise ValueError(f"arrivals = {v!r}; expected one of {', '.join(ARRIVALS)}")
        return v

    @field_validator("requests")
    @classmethod
    def _requests(cls, v):
        if v is not None and not 1 <= v <= MAX_REQUESTS:
            raise ValueError(f"requests = {v!r}; expected 1 to {MAX_REQUESTS:g}")
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
    return case_layout(model, case.chips, case.tp, case.ep, case.pp)


def case_layout(model: Model, chips: int, tp: int | None = None, ep: int | None = None, pp: int | None = None) -> Layout:
    """The layout a case of `chips` runs: its stated TP/EP/PP, the rest filled — a dense model TP over
    the stage, a MoE model EP over the stage (attention TP 1) unless TP is given."""
    n = chips
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
    # d log(predicted) / d log(step time) at the answer: +1 for a time, −1 for a rate at a fixed
    # batch, −(1 − ε_cycle)/ε_tpot − 1 for a rate per chip at a stated rate per user with the batch
    # solved for (ε = d log t / d log batch there: a step that barely rises with batch makes it large)
    sensitivity: float | None = None
    prefill_share: float | None = None  # share of the engine's wall time spent prefilling (closed loop)


TIME_METRICS = ("decode_step_s", "ttft_s", "tpot_s")


def metric_kind(metric: str) -> str:
    """'time' (seconds, a larger prediction is slower) or 'rate' (tokens/s)."""
    return "time" if metric in TIME_METRICS else "rate"


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

    def loop(self, concurrency, I, O, cap=None, arrivals="spread", requests=None) -> ClosedLoop:
        """A benchmark client at `concurrency` requests in flight (stepmodel.closed_loop)."""
        return closed_loop(self.model, self.system, self.layout, concurrency, I, O, kernels=self.profile.kernels,
                           engine=self.profile.engine, dtypes=self.dtypes, batch_cap=cap, arrivals=arrivals,
                           requests=requests)


def _ctx(case: Case, profile: Profile, cat: Catalog, base_dir: Path | None) -> _Ctx:
    name = case.model
    if base_dir is not None and (name.endswith(".json") or "/" in name):
        name = str((base_dir / name).resolve())
    model, system = cat.model(name), cat.system(case.system)
    dt = Dtypes.for_point(model, case.weight_dtype, case.kv_dtype or "bf16")  # the checkpoint as published
    profile = with_features(profile, case_features().get(case.id, {}))  # the run's stated engine flags
    return _Ctx(model, system, _layout(case, model), dt, profile)


def predict(case: Case, profile: Profile = ROOFLINE_PROFILE, catalog: Catalog | None = None,
            base_dir: Path | None = None) -> Prediction:
    """The case's metric under `profile` (the roofline bound, or a calibrated estimate), as the
    case's source measured it (docs/validation.md, "How each metric is predicted"):

    decode_step_s, ttft_s    one pass (decode at I + O/2; a prompt of I tokens)
    static_...               B·O / (prefill of B prompts + O decode steps at I + O/2) / chips
    tpot_s                   a benchmark client's TPOT at the measured concurrency (closed_loop;
                             none given: one request)
    ..._at_user_rate         at a measured concurrency: the client's output tokens/s (total
                             output / run time, prefill included) / chips; without one, the batch
                             whose client TPOT meets the rate per user, solved for (_solve_rate)
    max_output_...           the closed loop at the largest batch that fits (engine cap applied),
                             or at the measured concurrency; never above the run's request count

    A measured concurrency beyond the KV that fits (at the mean context I + O/2) queues: the
    engine runs the batch that fits."""
    cat = catalog or load_catalog()
    c = _ctx(case, profile, cat, base_dir)
    model, system, lay = c.model, c.system, c.layout
    I, O = case.input_tokens, case.output_tokens
    replicas = max(1, case.chips // lay.replica_chips)
    chips = lay.replica_chips
    arrivals = case.arrivals or "spread"
    rate = case.min_tokens_per_s_per_user or 0.0
    note, sens, share = "", -1.0, None
    if case.metric == "decode_step_s":
        b_used = (case.batch or 1) / replicas
        value, sens = c.pass_s(b_used, I + O / 2), 1.0
    elif case.metric == "ttft_s":
        b_used = case.batch or 1
        value, sens = c.pass_s(b_used, 0.0, I), 1.0
    elif case.metric == "static_output_tokens_per_s_per_chip":
        b_used = (case.batch or 1) / replicas
        pre = c.pass_s(b_used, 0.0, I)
        dec = c.pass_s(b_used, I + O / 2)
        value = b_used * O / (pre + O * dec) / chips
    elif case.batch or case.metric == "tpot_s":
        # a measured concurrency: the client's numbers at it; beyond the KV that fits, the rest queue
        conc = max((case.batch or 1) / replicas, 1.0)
        cap = _kv_cap(c, I + O / 2)
        run = c.loop(conc, I, O, cap if cap is not None and cap < conc else None, arrivals, case.requests)
        b_used, share = float(run.decode_batch), float(run.prefill_share)
        if b_used < conc:
            note = (f"beyond the estimate's memory: concurrency {conc:g} exceeds the KV that fits ({b_used:g} "
                    f"sequences at the mean context {I + O / 2:g}); the rest queue")
        if case.metric == "tpot_s":
            value, sens = run.tpot_s, 1.0
        else:
            value = run.output_tokens_per_s / chips
            if case.metric != "max_output_tokens_per_s_per_chip" and run.tpot_s > 0 and 1.0 / run.tpot_s < rate:
                note = "; ".join(x for x in (note, (
                    f"beyond the estimate at concurrency {conc:g}: it gives {1 / run.tpot_s:.4g} tokens/s per user, "
                    f"the measurement {rate:.4g}")) if x)
    else:
        cap = None if profile.is_roofline else profile.engine.max_batch
        top = _max_batch(model, system, lay, I + O, c.dtypes, cap, c.profile.engine.kv_budget)
        if case.metric == "max_output_tokens_per_s_per_chip":
            run = c.loop(top, I, O, None, arrivals, case.requests)  # no more in flight than the run's requests
            value, b_used, share = run.output_tokens_per_s / chips, float(run.decode_batch), float(run.prefill_share)
        else:
            sol = _solve_rate(c, I, O, rate, top, arrivals)
            value, b_used, sens, share, note = sol.tokens_per_s / chips, sol.batch, sol.sensitivity, sol.prefill_share, sol.note
    value = float(value)
    return Prediction(case.id, case.metric, value, case.measured, value / case.measured - 1, case.system,
                      source_key(case), model.name, b_used, vendor=vendor(system), engine=case.engine or "unknown",
                      model_class=model_class(model), note=note, sensitivity=float(sens), prefill_share=share)


def _kv_cap(c: _Ctx, context: float) -> float | None:
    """Sequences whose KV fits beside the weights at `context` (layout.serving_hbm_bytes), None if not
    even one does (then nothing caps the measured concurrency: the case says it ran)."""
    try:
        return _max_batch(c.model, c.system, c.layout, context, c.dtypes, None, c.profile.engine.kv_budget)
    except TokenmathError:
        return None


def _solve_rate(c: _Ctx, I: float, O: float, rate: float, top: float, arrivals: str = "spread") -> RateSolution:
    """The best batch whose client TPOT meets `rate` tokens/s per user (stepmodel.solve_rate)."""
    return solve_rate(lambda b: c.loop(b, I, O, None, arrivals), rate, top)


@functools.lru_cache(maxsize=8192)
def _max_batch(model: Model, system: System, layout: Layout, context: float, dtypes: Dtypes, cap: float | None,
               kv_budget: str = "total") -> float:
    """stepmodel.max_batch (what a serving engine may fill, sized by its `kv_budget` rule), remembered:
    it depends on no fitted parameter, and a calibration asks it for the same case at every step of
    every fit."""
    return max_batch(model, system, layout, context, dtypes=dtypes, cap=cap, kv_budget=kv_budget)


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
CLASS_TABLE_DIMENSIONS = ("engine", "vendor")  # validate's class table: model class × each of these


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
    band_q: list = field(default_factory=list)  # per row: (q10, q90) of its step residual's band, or None
    band_80_coverage: dict = field(default_factory=dict)  # band_coverage(rows, band_q)
    class_table: dict = field(default_factory=dict)  # dimension -> model class -> class -> error summary

    @property
    def beyond(self) -> list[Prediction]:
        """Cases whose measured point lies beyond what the estimate reaches (answered, flagged)."""
        return [r for r in self.rows if r.note]

    def range_80(self, i: int):
        """[lo, hi] of row i's 80 % band on its own figure (its metric's unit), or None."""
        q = self.band_q[i] if i < len(self.band_q) else None
        return None if q is None else band_on(self.rows[i].predicted, q, answer_sensitivity(self.rows[i]))


def error_summary(errs: list[float]) -> dict[str, float]:
    a = np.abs(np.asarray(errs, float))
    if a.size == 0:
        return {"n": 0, "median_abs_error": float("nan"), "p90_abs_error": float("nan")}
    return {"n": int(a.size), "median_abs_error": float(np.median(a)), "p90_abs_error": float(np.percentile(a, 90))}


def answer_sensitivity(p: Prediction) -> float:
    """d log(answer) / d log(step time) of a prediction: its own (`Prediction.sensitivity`, where the
    prediction says how far its answer moves with the step: large at a stated rate per user, where the
    batch moves with the step), else 1; signed by the metric's kind (a longer step is a longer time
    and a lower rate), its size kept within 0.1–100."""
    kind = 1.0 if metric_kind(p.metric) == "time" else -1.0
    s = getattr(p, "sensitivity", None)
    if s is None or not math.isfinite(float(s)) or float(s) == 0.0:
        return kind
    return kind * min(max(abs(float(s)), 0.1), 100.0)


def step_residual(p: Prediction) -> float:
    """The prediction's error as the step-time error that would cause it (time sense):
    log(predicted / measured) / sensitivity. What bands are calibrated on."""
    return math.log(p.predicted / p.measured) / answer_sensitivity(p)


def range_class(p: Prediction) -> str:
    return "outside" if p.outside_fitted_range else "inside"


def in_band(p: Prediction, q) -> bool | None:
    """Whether the measured value lies inside the 80 % band (q10, q90) of the step residual, on the
    prediction's own figure (None: no band)."""
    if q is None:
        return None
    return bool(q[0] <= step_residual(p) <= q[1])


def band_coverage(rows: list[Prediction], band_q: list) -> dict:
    """Share of rows whose measured value lies inside their 80 % band: overall, and by model class,
    engine, vendor, inside/outside the fitted range and metric. {} when no row has a band."""
    hits = [(r, in_band(r, q)) for r, q in zip(rows, band_q)]
    hits = [(r, h) for r, h in hits if h is not None]
    if not hits:
        return {}

    def share(xs):
        return {"n": len(xs), "share": float(np.mean(xs))}

    out = share([h for _, h in hits])
    for key, f in (("model_class", lambda r: r.model_class), ("engine", lambda r: r.engine),
                   ("vendor", lambda r: r.vendor), ("range", range_class), ("metric", lambda r: r.metric)):
        ks = sorted({f(r) for r, _ in hits})
        out[f"by_{key}"] = {k: share([h for r, h in hits if f(r) == k]) for k in ks}
    return out


def class_table(rows: list[Prediction], band_q: list | None = None) -> dict:
    """Median and p90 |error| (and band coverage where there are bands) of each model class × engine
    and model class × vendor."""
    band_q = band_q or [None] * len(rows)
    out = {}
    for dim in CLASS_TABLE_DIMENSIONS:
        t = {}
        for mc in sorted({r.model_class for r in rows}):
            cells = {}
            for k in sorted({getattr(r, dim) for r in rows if r.model_class == mc}):
                sel = [(r, q) for r, q in zip(rows, band_q) if r.model_class == mc and getattr(r, dim) == k]
                cells[k] = error_summary([r.error for r, _ in sel])
                cov = [in_band(r, q) for r, q in sel if q is not None]
                if cov:
                    cells[k]["band_80_coverage"] = float(np.mean(cov))
            t[mc] = cells
        out[dim] = t
    return out


def summarize(rows: list[Prediction], label: str, failures: dict[str, str] | None = None,
              band_q: list | None = None) -> Report:
    """Median and p90 |error| overall and grouped by metric, system, source, vendor, engine, model
    class; the class table; and, given each row's band, the 80 % band's coverage."""
    group = lambda key: {k: error_summary([r.error for r in rows if getattr(r, key) == k])  # noqa: E731
                         for k in sorted({getattr(r, key) for r in rows})}
    s = error_summary([r.error for r in rows])
    band_q = list(band_q) if band_q is not None else [None] * len(rows)
    return Report(label, rows, s["median_abs_error"], s["p90_abs_error"], group("metric"), group("system"),
                  group("source"), dict(failures or {}), group("vendor"), group("engine"), group("model_class"),
                  band_q=band_q, band_80_coverage=band_coverage(rows, band_q), class_table=class_table(rows, band_q))


def _profile_for(case: Case, cat: Catalog, profile: Profile | str, preset: dict | None = None) -> Profile:
    """A fixed profile, or ("calibrated"/a path) the one the case's engine and vendor select."""
    if isinstance(profile, Profile):
        return profile
    return choose_from(preset, engine=case.engine, system=cat.system(case.system))


def validate(cases: list[tuple[Case, Path]] | None = None, profile: Profile | str = ROOFLINE_PROFILE,
             catalog: Catalog | None = None, fitted_systems: set[str] | None = None, preset: dict | None = None) -> Report:
    """Predict every case. `profile` is a Profile (the same for all), or "calibrated": each case
    gets the profile its engine and its system's vendor select from `preset` (default: shipped).
    Each row gets the 80 % band of its class (Profile.band_q), and the report its coverage."""
    cases = cases if cases is not None else load_cases()
    cat = catalog or load_catalog()
    if not isinstance(profile, Profile) and preset is None:
        preset = preset_record(None if profile in ("calibrated", "estimate") else profile)
    rows: list[Prediction] = []
    band_q: list = []
    failures: dict[str, str] = {}
    label = profile.label if isinstance(profile, Profile) else "calibrated (each case: its engine and vendor profile)"
    for case, path in cases:
        try:
            prof = _profile_for(case, cat, profile, preset)
            p = predict(case, prof, cat, base_dir=path.parent)
        except TokenmathError as e:
            failures[case.id] = str(e)
            continue
        outside = []
        if fitted_systems is not None and case.system not in fitted_systems:
            outside.append(f"system {case.system} not in the calibration data")
        if outside:
            p = replace(p, outside_fitted_range=tuple(outside))
        rows.append(p)
        band_q.append(prof.band_q(p.model_class))
    if not rows:
        raise TokenmathError("no case could be predicted: " + "; ".join(f"{k}: {v}" for k, v in list(failures.items())[:3]))
    return summarize(rows, label, failures, band_q)


def case_batch_limit(case: Case, path: Path, cat: Catalog, cap: float | None) -> float:
    """The case's largest batch: its HBM limit (layout.serving_hbm_bytes), capped at the engine batch cap
    `cap` (what a calibration's batch cap changes in a prediction), sized by the rule of the case's
    engine (its `kv_budget`)."""
    c = _ctx(case, ROOFLINE_PROFILE, cat, path.parent)
    kvb = engine_features(case.engine).get("kv_budget", "total")
    return _max_batch(c.model, c.system, c.layout, case.input_tokens + case.output_tokens, c.dtypes, cap, kvb)
