"""Engine and vendor profiles: which fitted numbers an estimate is computed with, and its band.

Two files ship beside the cases (src/tokenmath/validation/):
  kernels.json     per-operation curves fitted on measured kernel timings (A100/H100/H200 tables of
                   the aiconfigurator-core package; scripts/fit_kernels.py refits them)
  calibrated.json  end-to-end parameters fitted on the shipped cases by `tokenmath calibrate`
                   (calibrate.py): a generic profile; on it a factor per vendor (e.g. AMD's ROCm
                   stack), and on that a factor per engine × vendor (vllm on amd, trtllm on nvidia,
                   ...), each shrunk toward its parent by as much as cross-validation says (so an
                   engine or vendor with few cases stays near the generic fit), each with the number
                   of cases it was fitted on; and the cross-validated residuals, by class, that give
                   every estimate its 80 % band.

`choose(engine=..., system=...)` returns the profile a result is computed with and its label, e.g.
"calibrated 2026-12 generic" or "calibrated 2026-12 vllm + amd"; "roofline" is the bound.
`Profile.range_80(step_s, model_class=...)` is the band of the query's cell (its model class: the
prediction interval of that class's cross-validated residuals, `band_for`), widened by the answer's
sensitivity to step time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import TokenmathError
from .layout import KV_BUDGETS
from .specs import Model, System
from .stepmodel import A2A_MODES, DEEPEP_MODES, A2ACurve, AttentionCurve, CommCurve, Engine, GemmFamily, Kernels

HERE = Path(__file__).parent / "validation"
KERNELS_FILE = HERE / "kernels.json"
ALLTOALL_FILE = HERE / "alltoall.json"  # DeepEP dispatch/combine curves (scripts/fit_alltoall.py)
PRESET_FILE = HERE / "calibrated.json"
ENGINES_FILE = Path(__file__).parent / "catalog" / "engines.toml"  # sourced engine features
CASE_FEATURES_FILE = HERE / "case_features.toml"  # features a published run states it used
# Engine features: named facts about how an engine runs (catalog/engines.toml), never fitted
ENGINE_FEATURES = ("moe_a2a", "deepep_mode", "comm_overlap", "kv_budget")
ENGINE_PARAMS = ("overhead_s", "compute_scale", "memory_scale", "network_scale", "routing_cv", "floor_scale")
ENGINES = ("trtllm", "vllm", "sglang")
# A user fit's overhead factor f scales the preset's per-step overhead plus this, less this:
# (overhead + 1 ms)·f − 1 ms, so a preset whose fitted overhead is 0 (its kernel floors already carry the
# fixed cost) can still take one from your cases (× 10 adds 9 ms). Presets with "adjust_format": 2.
USER_OVERHEAD_REF_S = 1e-3


@lru_cache(maxsize=8)
def load_kernels(path: str | None = None) -> Kernels:
    """The fitted kernel curves (kernels.json): GEMM and MoE dtype families (stepmodel.GemmFamily,
    pooled over A100/H100/H200/L40S where each has tables), attention and collectives (the
    "generic" fit pooled over A100/H100/H200, or for MLA decode the Hopper-only fit, with the
    three-chip one kept for Ampere)."""
    p = Path(path) if path else KERNELS_FILE
    try:
        d = json.loads(p.read_text())
        ops = d["ops"]
        gemm = {fam: _family(r["generic"]) for fam, r in ops["gemm"].items() if _is_family(r)}
        moe = {fam: _family(r["generic"]) for fam, r in ops["moe"].items() if _is_family(r)}
        if "tensor" not in gemm or "tensor" not in moe:
            raise KeyError("gemm/moe 'tensor' family (refit with scripts/fit_kernels.py)")

        def att(ctx: dict, gen: dict, key: str = "generic") -> AttentionCurve:
            c, g = ctx["generic"], gen.get(key, gen["generic"])
            g = g.get("generic", g)
            return AttentionCurve(e_max=c["e_max"], s_half=c["s_half"], pre_t0_s=c["t0_s"],
                                  e_m=g.get("e_m", g.get("e")), s0=g.get("s0", 0.0), dec_t0_s=g["t0_s"],
                                  e_c=g.get("e_c"), p=g.get("p", 1.0))

        ca, ga = ops["context_attention"], ops["generation_attention"]
        attention = {"bf16": att(ca["bf16"], ga["kv_bf16"]), "fp8": att(ca["bf16_kvfp8"], ga["kv_fp8"])}
        for k, ctx in (("bf16", "bf16"), ("fp8", "bf16_kvfp8")):  # multi-head decode: its own kernel's curve
            if f"kv_{k}_mha" in ga:
                attention[f"{k}_mha"] = att(ca[ctx], ga[f"kv_{k}_mha"])
        mc, mg = ops["mla_context"], ops["mla_generation"]
        mla = {k: att(mc[f"kv_{k}"], mg[f"kv_{k}"], "generic_hopper_only") for k in ("bf16", "fp8")}
        mla_ampere = {k: att(mc[f"kv_{k}"], mg[f"kv_{k}"]) for k in ("bf16", "fp8")}
        comm = ops["comm"]
        custom = {e: _comm(comm[f"custom_all_reduce_{e}"]["generic"]) for e in ENGINES if f"custom_all_reduce_{e}" in comm}
        if custom:  # an engine we have no table for: the mean of the engines'
            custom["generic"] = CommCurve(float(np.mean([c.alpha_s for c in custom.values()])),
                                          float(np.mean([c.e_link for c in custom.values()])),
                                          float(np.mean([c.p for c in custom.values()])))
        gathers = {op: _comm(comm[op]["generic"]) if op in comm else None for op in ("all_gather", "reduce_scatter")}
        return Kernels(gemm=gemm, moe=moe, attention=attention, mla=mla, mla_ampere=mla_ampere,
                       all_reduce=_comm(comm["all_reduce"]["generic"]), alltoall=_comm(comm["alltoall"]["generic"]),
                       custom_all_reduce=custom, source=d.get("source", "")[:200], ep_a2a=load_alltoall(),
                       all_gather=gathers["all_gather"], reduce_scatter=gathers["reduce_scatter"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TokenmathError(f"cannot read kernel curves {str(p)!r}: {type(e).__name__} {e}") from None


@lru_cache(maxsize=2)
def load_alltoall(path: str | None = None) -> dict | None:
    """The DeepEP dispatch/combine curves: mode ("ll" low-latency | "ht" normal) -> phase ->
    A2ACurve (validation/alltoall.json); None where the file is absent (every mode then runs on
    the generic all-to-all curve)."""
    p = Path(path) if path else ALLTOALL_FILE
    if not p.is_file():
        return None
    try:
        fits = json.loads(p.read_text())["fits"]
        return {mode: {ph: A2ACurve(alpha_s=float(f["alpha_s"]), e_up=float(f["e_up"]),
                                    e_out=float(f["e_out"] if f.get("e_out") is not None else f["e_up"]))
                       for ph, f in phases.items()} for mode, phases in fits.items()}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TokenmathError(f"cannot read all-to-all curves {str(p)!r}: {type(e).__name__} {e}") from None


def _check_features(feats: dict, where: str) -> dict:
    """Engine features as Engine fields, each checked: one sentence naming a bad one."""
    out = {}
    for k, v in feats.items():
        if k in ("source", "as_of", "notes"):
            continue
        if k not in ENGINE_FEATURES:
            raise TokenmathError(f"{where}: unknown engine feature {k!r}; expected one of {', '.join(ENGINE_FEATURES)}")
        if k == "moe_a2a" and v not in A2A_MODES:
            raise TokenmathError(f"{where}: moe_a2a = {v!r}; expected one of {', '.join(A2A_MODES)}")
        if k == "deepep_mode" and v not in DEEPEP_MODES:
            raise TokenmathError(f"{where}: deepep_mode = {v!r}; expected one of {', '.join(DEEPEP_MODES)}")
        if k == "kv_budget" and v not in KV_BUDGETS:
            raise TokenmathError(f"{where}: kv_budget = {v!r}; expected one of {', '.join(KV_BUDGETS)}")
        if k == "comm_overlap" and not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
            raise TokenmathError(f"{where}: comm_overlap = {v!r}; expected a share between 0 and 1")
        out[k] = float(v) if k == "comm_overlap" else v
    return out


@lru_cache(maxsize=2)
def _engines_toml(path: str | None = None) -> dict:
    p = Path(path) if path else ENGINES_FILE
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise TokenmathError(f"cannot read engine features {str(p)!r}: {e}") from None


def engine_features(engine: str | None) -> dict:
    """The documented default features of `engine` (catalog/engines.toml, each with its source),
    as Engine fields; {} for an engine the table does not list (the Engine defaults apply)."""
    d = _engines_toml().get("engines", {})
    if engine is None or engine not in d:
        return {}
    return _check_features(d[engine], f"engines.toml [engines.{engine}]")


def engine_records(preset: str | None = None) -> dict:
    """What `--engine` can name, and what each name means: every engine with documented features
    (catalog/engines.toml, with its source) or a fitted profile (the preset's engine × vendor-generation
    cells: cases, sources and factors), its features as Engine fields (the Engine defaults where the
    table says nothing), and the named feature sets a run can add with `+`."""
    d = _engines_toml()
    p = _preset(preset)
    defaults = {k: getattr(Engine(), k) for k in ENGINE_FEATURES}
    documented = d.get("engines", {})
    fitted = p.get("engines", {})
    engines = []
    for name in sorted(set(documented) | set(fitted)):
        rec = documented.get(name, {})
        cells = {g: {"cases": int(c.get("n_cases", 0)), "sources": int(c.get("n_sources", 0)),
                     "overhead_add_s": c.get("overhead_add_s"), "compute_factor": c.get("compute_factor"),
                     "memory_factor": c.get("memory_factor"), "shrinkage": c.get("lambda")}
                 for g, c in sorted(fitted.get(name, {}).items())}
        engines.append({"name": name, "features": defaults | engine_features(name),
                        "documented": name in documented, "source": rec.get("source"), "as_of": rec.get("as_of"),
                        "fitted_cases": sum(c["cases"] for c in cells.values()), "fitted_on": cells})
    sets = [{"name": k, "features": _check_features(v, f"engines.toml [features.{k}]"), "source": v.get("source")}
            for k, v in sorted(d.get("features", {}).items())]
    return {"engines": engines, "feature_sets": sets, "default": "generic",
            "usage": "--engine NAME, or NAME+SET+SET (a run's named feature sets); 'generic' (the default) is "
                     "the fit over every engine's NVIDIA cases with the Engine defaults"}


def named_feature(name: str) -> dict:
    """A named feature a run switches on (e.g. "two_batch_overlap", "deepep_low_latency") as
    Engine fields, from catalog/engines.toml's [features] table."""
    d = _engines_toml().get("features", {})
    if name not in d:
        raise TokenmathError(f"unknown engine feature set {name!r}; expected one of {', '.join(sorted(d))}")
    return _check_features(d[name], f"engines.toml [features.{name}]")


@lru_cache(maxsize=2)
def case_features(path: str | None = None) -> dict:
    """Per validation case, the engine features its source says the run used
    (validation/case_features.toml: case id -> named feature sets and/or fields, with the quote)."""
    p = Path(path) if path else CASE_FEATURES_FILE
    if not p.is_file():
        return {}
    try:
        d = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise TokenmathError(f"cannot read case features {str(p)!r}: {e}") from None
    out = {}
    for cid, rec in d.items():
        feats = {}
        for name in rec.get("features", []):
            feats |= named_feature(name)
        feats |= _check_features({k: v for k, v in rec.items() if k != "features"}, f"case_features.toml [{cid!r}]")
        out[cid] = feats
    return out


def with_features(profile: "Profile", features: dict) -> "Profile":
    """The profile with some engine features set (a run's stated flags); the same profile when
    there are none. The label says so."""
    if not features or profile.kernels is None:
        return profile
    eng = dataclasses.replace(profile.engine, **features)
    return dataclasses.replace(profile, engine=eng)


def _is_family(r) -> bool:
    return isinstance(r, dict) and r.get("form") == "gemm_family"


def _family(g: dict) -> GemmFamily:
    return GemmFamily(e_c0=g["e_c0"], kappa=g["kappa"], e_m=g["e_m"], p=g["p"], t0_s=g["t0_s"],
                      t0q_s=g.get("t0q_s", 0.0), tile_m=float(g.get("tile_m", 1)), t0ep_s=g.get("t0ep_s", 0.0))


def _comm(g: dict) -> CommCurve:
    return CommCurve(alpha_s=g["alpha_s"], e_link=g["e_link"], p=float(g.get("p", 1.0)))


def vendor(system: System) -> str:
    """nvidia | amd | google | aws | cpu | other, from the catalog description and name. A CPU
    (e.g. one `tokenmath probe` wrote) is "cpu", even an AMD EPYC: GPU vendor profiles do not apply."""
    text = f"{system.name} {system.description} {system.chip.name}".lower()
    for key, v in (("instinct", "amd"), ("mi3", "amd"), ("tpu", "google"), ("trainium", "aws"),
                   ("nvidia", "nvidia"), ("h100", "nvidia"), ("h200", "nvidia"), ("a100", "nvidia"), ("b200", "nvidia")):
        if key in text:
            return v
    if any(w in text for w in ("epyc", "xeon", "ryzen", "graviton", "neoverse", "cpu")):
        return "cpu"
    return "amd" if "amd" in text else "other"


def factor_group(system: System) -> str:
    """The group a preset's factors on the generic profile are fitted for and looked up by: the
    vendor and the chip's generation ("amd CDNA 3", "amd CDNA 4", "google TPU v6e"), or the vendor
    alone where the catalog names no generation. NVIDIA is "nvidia": the generic profile is its fit.
    A generation with no cases of its own takes the generic profile, not its vendor's other
    generation (on AMD the two disagree by ~1.5× in achieved fractions of the datasheet:
    docs/validation.md)."""
    v = vendor(system)
    arch = system.chip.architecture
    return f"{v} {arch}" if arch and v not in ("nvidia", "cpu", "other") else v


def model_class(model: Model) -> str:
    """dense | moe | mla: the model classes whose errors are reported, gated and banded apart."""
    if model.attention is not None and model.attention.kind == "mla":
        return "mla"
    return "moe" if model.moe is not None else "dense"


MODEL_CLASSES = ("dense", "moe", "mla")
BAND_DIMENSIONS = ("model_class", "engine", "vendor", "range")  # what a query's band may be told apart by
# The cells an 80 % band is calibrated on, finest first: a query takes the first of its cells the preset
# has a band for, else the pooled band. One level, the model class: on the cases of issue 22 finer cells
# (model class × engine or × vendor) rest on fewer sources each and held out less often hold the next
# source's measurement (docs/validation.md, "The 80 % band").
BAND_CELLS = (("model_class",),)
BAND_MIN_N = 20  # a cell with fewer cross-validated residuals than this has no band of its own
BAND_MIN_SOURCES = 3  # ... or with residuals from fewer sources than this (a source is the unit a band is for)
BAND_SHARE = 0.8


def band_levels(n_sources: int, share: float = BAND_SHARE) -> tuple[float, float]:
    """The quantile levels whose interval holds the next source's residual `share` of the time, given
    residuals from `n_sources` exchangeable sources (each weighing once): the distribution-free
    prediction interval between the order statistics of rank (k + 1)(1 − share)/2 and
    (k + 1)(1 + share)/2 of k draws, as levels of the midpoint-rule empirical CDF ((rank − ½)/k):
    0.1 − 0.4/k and 0.9 + 0.4/k for 80 % (k = 5: 0.02 and 0.98; k = 18: 0.078 and 0.922), clipped to
    0 and 1 (the extremes). The small-sample correction of a q10/q90, not a tuned level."""
    k = max(int(n_sources), 1)
    lo = ((k + 1) * (1 - share) / 2 - 0.5) / k
    hi = ((k + 1) * (1 + share) / 2 - 0.5) / k
    return max(lo, 0.0), min(hi, 1.0)


def band_cell(dims, values: dict) -> tuple[str, str] | None:
    """(level, key) of the cell of `dims` a query with these `values` falls in, e.g.
    ("model_class", "mla") or ("model_class,engine", "mla,sglang"); None where a value is unknown."""
    vals = [values.get(d) for d in dims]
    if any(v is None or v == "unknown" for v in vals):
        return None
    return ",".join(dims), ",".join(str(v) for v in vals)


def band_for(bands: dict, *, model_class: str | None = None, engine: str | None = None, vendor: str | None = None,
             outside: bool | None = None) -> tuple[float, float] | None:
    """(lo, hi) of the time-sense step residual r = log(predicted step / measured step) for a query of
    this class. Under bands["rule"] == "cell" (issue 22 on): the band of the first cell of the query
    the preset has one for (bands["cells"], finest level first; BAND_CELLS), each the prediction
    interval of the cell's cross-validated residuals (band_levels); else the pooled band
    (bands["step"]). Presets from before: each dimension's class with at least `min_n` residuals
    gives its 10th/90th percentiles, the band their mean ("mean") or union ("widest"). None when the
    preset has no band."""
    if not bands or "step" not in bands:
        return None
    pooled = (float(bands["step"][0]), float(bands["step"][1]))
    query = {"model_class": model_class, "engine": engine, "vendor": vendor,
             "range": None if outside is None else ("outside" if outside else "inside")}
    if bands.get("rule") == "cell":
        for level, cells in (bands.get("cells") or {}).items():
            cell = band_cell(level.split(","), query)
            q = (cells or {}).get(cell[1]) if cell is not None else None
            if q is not None:
                return (float(q[0]), float(q[1]))
        return pooled
    by = bands.get("by") or {}
    min_n = int(bands.get("min_n", BAND_MIN_N))
    picks = []
    for dim, key in query.items():
        q = (by.get(dim) or {}).get(key) if key is not None else None
        if q is not None and len(q) >= 3 and q[2] >= min_n:
            picks.append((float(q[0]), float(q[1])))
    if not picks:
        return pooled
    lo, hi = zip(*picks)
    if bands.get("rule") == "widest":
        return (min(lo), max(hi))
    return (float(np.mean(lo)), float(np.mean(hi)))


def band_on(value, q: tuple[float, float], sensitivity=1.0, bound=None):
    """[lo, hi] of a figure whose log moves `sensitivity` times the step time's (1: a step time or a
    latency; −1: a rate at a fixed batch; larger at a stated rate per user, where the batch moves with
    the step), given the step residual's (q10, q90): measured ≈ predicted · exp(−sensitivity · r).
    `bound`: the roofline's value of the same figure, which no deployment beats, so the band stops
    there — a time-like figure (sensitivity > 0) is never below it, a rate never above it."""
    if all(isinstance(x, (int, float)) for x in (value, sensitivity)) and (bound is None or isinstance(bound, (int, float))):
        a, b = value * math.exp(-sensitivity * q[1]), value * math.exp(-sensitivity * q[0])  # one answer: floats
        lo, hi = min(a, b), max(a, b)
        if bound is not None:
            lo, hi = (max(lo, bound), max(hi, bound)) if sensitivity > 0 else (lo, min(hi, bound))
            lo = min(lo, hi)
        return [float(lo), float(hi)]
    v = np.asarray(value, float)
    s = np.asarray(sensitivity, float)
    a, b = v * np.exp(-s * q[1]), v * np.exp(-s * q[0])
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    if bound is not None:
        bd = np.asarray(bound, float)
        time_like = s > 0
        lo = np.where(time_like, np.maximum(lo, bd), lo)
        hi = np.where(time_like, np.maximum(hi, bd), np.minimum(hi, bd))
        lo = np.minimum(lo, hi)
    return [_f(lo), _f(hi)]


@dataclass(frozen=True)
class Profile:
    """What an estimate is computed with: kernel curves + engine parameters + a label + a band."""

    engine: Engine
    kernels: Kernels | None  # None: the roofline bound
    label: str
    band: dict = field(default_factory=dict)  # "step" -> (q10, q90) of log(predicted / measured step time)
    n_cases: int = 0
    band_by_model_class: dict = field(default_factory=dict)  # dense | moe | mla -> (q10, q90) for this profile's class

    @property
    def is_roofline(self) -> bool:
        return self.kernels is None

    def band_q(self, model_class: str | None = None) -> tuple[float, float] | None:
        """(lo, hi) of the step residual for a query of `model_class` under this profile's engine,
        vendor and fitted range (band_for); the profile's own band when the class is not given."""
        if self.is_roofline or not self.band:
            return None
        q = self.band_by_model_class.get(model_class) if model_class else None
        return tuple(q) if q is not None else tuple(self.band.get("step", (0.0, 0.0)))

    def range_80(self, step_s, *, model_class: str | None = None, sensitivity=1.0, bound=None):
        """80 % band of the true value given this estimate of it, from the cross-validated residuals
        of the query's class (band_q; in time sense: r = log(predicted step / measured step)):
        measured ≈ predicted · exp(−sensitivity · r), r between its 10th and 90th percentiles.
        `step_s` is a step time (sensitivity 1) or any figure with its sensitivity to step time;
        `bound` the roofline's value of that figure, where the band stops (band_on)."""
        q = self.band_q(model_class)
        if q is None:
            return None
        return band_on(step_s, q, sensitivity, bound)


def _f(x):
    a = np.asarray(x, float)
    return float(a) if a.ndim == 0 else a.tolist()


ROOFLINE_PROFILE = Profile(engine=Engine(label="roofline"), kernels=None, label="roofline")


@lru_cache(maxsize=8)
def _preset(path: str | None) -> dict:
    p = Path(path) if path else PRESET_FILE
    if p == PRESET_FILE:  # the shipped preset: checked against the schema by the test suite
        # (test_invariant_every_preset_calibrate_writes_fits_the_schema), so start-up skips
        # building the pydantic schema (~70 ms) for it; a user's preset is checked on load
        return json.loads(p.read_text())
    from .errors import read_user_json
    from .preset_schema import MAX_PRESET_BYTES, MAX_PRESET_DEPTH, check_preset

    if not p.exists() and not p.is_symlink():
        raise TokenmathError(f"no calibrated preset at {str(p)[:200]!r}; run `tokenmath calibrate --out {str(p)[:200]}`")
    where = f"calibrated preset {str(p)[:200]!r}"
    return check_preset(read_user_json(p, where, MAX_PRESET_BYTES, "a preset", max_depth=MAX_PRESET_DEPTH), where)


def _engine(rec: dict, label: str, max_batch=None, name: str | None = None) -> Engine:
    kw = {k: float(rec[k]) for k in ENGINE_PARAMS if k in rec}
    mb = rec.get("max_batch", max_batch)
    return Engine(**kw, max_batch=None if mb is None else float(mb), label=label, name=name, **engine_features(name))


def preset_record(path: str | None = None) -> dict:
    """The preset JSON (default: the shipped calibrated.json)."""
    return _preset(path)


def profile_from_record(rec: dict, label: str = "fit", engine: str | None = None) -> Profile:
    """A profile straight from engine parameters (what calibration varies)."""
    return Profile(engine=_engine(rec, label, name=engine), kernels=load_kernels(), label=label)


def apply_factors(rec: dict, f: dict) -> dict:
    """A profile record with a vendor's or an engine × vendor's factors applied on top: its added
    overhead (the sum kept ≥ 0) and its factors on the compute and memory scales. (Presets before
    issue 22 stored a vendor's factors as compute_scale / memory_scale: read as factors too.)"""
    out = dict(rec)
    if "overhead_add_s" in f:
        out["overhead_s"] = max(0.0, float(out.get("overhead_s", 0.0)) + float(f["overhead_add_s"]))
    for k in ("compute", "memory"):
        x = f.get(f"{k}_factor", f.get(f"{k}_scale"))
        if x is not None:
            out[f"{k}_scale"] = float(out.get(f"{k}_scale", 1.0)) * float(x)
    return out


def _cell(engines: dict, engine: str | None, v: str | None) -> dict | None:
    """The engine × vendor factors of a preset (issue 22 on), or None."""
    e = engines.get(engine) if engine is not None else None
    if not isinstance(e, dict) or not any(isinstance(x, dict) for x in e.values()):
        return None
    return e.get(v) if v else None


def choose_from(d: dict, *, engine: str | None = None, system: System | None = None, name: str = "calibrated") -> Profile:
    """The profile a preset record gives for `engine` and the system's vendor: the generic profile,
    the vendor's factors on it, the engine × vendor's factors on that (a preset from before issue 22:
    the engine's own parameters, then the vendor's factors)."""
    month = str(d.get("fit_date", ""))[:7]
    gen = d["generic"]
    rec = dict(gen)
    parts = []
    n = int(gen.get("n_cases", 0))
    engines = d.get("engines", {})
    v = vendor(system) if system is not None else None
    # the factors of the chip's generation ("amd CDNA 3"); a preset fitted per vendor has "amd"
    grp = factor_group(system) if system is not None else None
    if grp not in d.get("vendors", {}):
        grp = v
    vend = d.get("vendors", {}).get(grp) if grp else None
    if int(d.get("preset_format", 1)) >= 2:
        if vend:
            rec = apply_factors(rec, vend)
            n = int(vend.get("n_cases", n))
        cell = _cell(engines, engine, grp)
        if cell:
            rec = apply_factors(rec, cell)
            parts.append(engine)
            n = int(cell.get("n_cases", n))
        elif engine is not None:
            parts.append(f"{engine}: generic")
        if vend:
            parts.append(grp)
    else:
        if engine is not None:
            if engine in engines:
                rec.update({k: x for k, x in engines[engine].items() if k in ENGINE_PARAMS or k == "max_batch"})
                parts.append(engine)
                n = int(engines[engine].get("n_cases", n))
            else:
                parts.append(f"{engine}: generic")
        if vend:
            rec = apply_factors(rec, {k: vend[k] for k in ("compute_scale", "memory_scale") if k in vend})
            parts.append(grp)
    adjust = d.get("adjust", {})  # a user preset's factors on top (tokenmath calibrate on your cases)
    for k, f in adjust.items():
        if k in ENGINE_PARAMS:
            base = rec.get(k, getattr(Engine(), k))  # the Engine default where unset (overhead 0)
            if k == "overhead_s" and int(d.get("adjust_format", 1)) >= 2:  # counted from USER_OVERHEAD_REF_S
                rec[k] = max(0.0, (base + USER_OVERHEAD_REF_S) * float(f) - USER_OVERHEAD_REF_S)
            else:
                rec[k] = base * float(f)
    if adjust:
        parts.append("fitted to " + str(d.get("user_fit", {}).get("n_cases", "your")) + " cases")
    label = " ".join(x for x in (name, month, " + ".join(parts) if parts else "generic") if x)
    bands = d.get("bands", {})
    outside = None if system is None or "systems" not in d else system.name not in d["systems"]
    band, by_class = {}, {}
    q = band_for(bands, engine=engine, vendor=v, outside=outside)
    if q is not None:
        band = {"step": q}
        by_class = {mc: band_for(bands, model_class=mc, engine=engine, vendor=v, outside=outside) for mc in MODEL_CLASSES}
    return Profile(engine=_engine(rec, label, name=engine), kernels=load_kernels(), label=label, band=band, n_cases=n,
                   band_by_model_class=by_class)


def split_engine(engine: str | None) -> tuple[str | None, tuple[str, ...]]:
    """'sglang+deepep_low_latency+two_batch_overlap' -> ('sglang', ('deepep_low_latency',
    'two_batch_overlap')): an engine profile and the named features (catalog/engines.toml
    [features]) a run switches on; 'generic', 'generic+...' or '+...' keeps the generic profile."""
    if engine is None or "+" not in engine:
        return (None if engine is not None and engine.strip() == "generic" else engine), ()
    base, *feats = (x.strip() for x in engine.split("+"))
    return (None if base in ("", "generic") else base), tuple(f for f in feats if f)


def choose(efficiency: str = "calibrated", *, engine: str | None = None, system: System | None = None) -> Profile:
    """The profile for `efficiency` ('calibrated', 'roofline', or a preset JSON path), `engine`
    (None: generic; 'sglang+two_batch_overlap' adds named engine features, `split_engine`) and the
    system's vendor (a vendor profile applies where one was fitted)."""
    engine, feats = split_engine(engine)
    if feats:
        extra = {}
        for f in feats:
            extra |= named_feature(f)
        prof = choose(efficiency, engine=engine, system=system)
        if prof.is_roofline:
            return prof
        prof = with_features(prof, extra)
        label = f"{prof.label} + {' + '.join(feats)}"
        return dataclasses.replace(prof, label=label, engine=dataclasses.replace(prof.engine, label=label))
    if efficiency == "roofline":
        return ROOFLINE_PROFILE
    preset = None
    if efficiency not in ("calibrated", "estimate"):
        if not str(efficiency).endswith(".json"):
            raise TokenmathError(f"--efficiency = {efficiency!r}; expected 'calibrated', 'roofline' or a preset .json file")
        preset = str(efficiency)
    d = _preset(preset)
    if engine is not None and engine not in ENGINES and engine not in d.get("engines", {}):
        raise TokenmathError(f"--engine = {engine!r}; expected generic or one of "
                             f"{', '.join(sorted(set(ENGINES) | set(d.get('engines', {}))))}")
    return choose_from(d, engine=engine, system=system, name="calibrated" if preset is None else f"preset {Path(preset).name}")
