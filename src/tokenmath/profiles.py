"""Engine and vendor profiles: which fitted numbers an estimate is computed with, and its band.

Two files ship beside the cases (src/tokenmath/validation/):
  kernels.json     per-operation curves fitted on measured kernel timings (A100/H100/H200 tables of
                   the aiconfigurator-core package; scripts/fit_kernels.py refits them)
  calibrated.json  end-to-end parameters fitted on the shipped cases by `tokenmath calibrate`: a
                   generic profile, one per engine (trtllm, vllm, sglang) where cases exist, one per
                   vendor (e.g. AMD's ROCm stack), each with the number of cases it was fitted on, and
                   the cross-validated residuals that give every estimate its 80 % band.

`choose(engine=..., system=...)` returns the profile a result is computed with and its label, e.g.
"calibrated 2026-12 generic" or "calibrated 2026-12 vllm + amd"; "roofline" is the bound.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import TokenmathError
from .specs import System
from .stepmodel import AttentionCurve, CommCurve, Engine, GemmCurve, Kernels

HERE = Path(__file__).parent / "validation"
KERNELS_FILE = HERE / "kernels.json"
PRESET_FILE = HERE / "calibrated.json"
ENGINE_PARAMS = ("overhead_s", "compute_scale", "memory_scale", "network_scale", "routing_cv", "floor_scale")
ENGINES = ("trtllm", "vllm", "sglang")


@lru_cache(maxsize=8)
def load_kernels(path: str | None = None) -> Kernels:
    """The fitted kernel curves (kernels.json; the "generic" fit pooled over A100/H100/H200, or
    for MLA decode the Hopper-only fit, with the three-chip one kept for Ampere)."""
    p = Path(path) if path else KERNELS_FILE
    try:
        d = json.loads(p.read_text())
        ops = d["ops"]
        gemm = {cls: _gemm(ops["gemm"][cls]["generic"]) for cls in ("bf16", "fp8") if cls in ops["gemm"]}
        moe = {cls: _gemm(ops["moe"][cls]["balanced"]["generic"]) for cls in ("bf16", "fp8") if cls in ops["moe"]}

        def att(ctx: dict, gen: dict, key: str = "generic") -> AttentionCurve:
            c, g = ctx["generic"], gen.get(key, gen["generic"])
            g = g.get("generic", g)
            return AttentionCurve(e_max=c["e_max"], s_half=c["s_half"], pre_t0_s=c["t0_s"],
                                  e_m=g.get("e_m", g.get("e")), s0=g.get("s0", 0.0), dec_t0_s=g["t0_s"],
                                  e_c=g.get("e_c"), p=g.get("p", 1.0))

        ca, ga = ops["context_attention"], ops["generation_attention"]
        attention = {"bf16": att(ca["bf16"], ga["kv_bf16"]), "fp8": att(ca["bf16_kvfp8"], ga["kv_fp8"])}
        mc, mg = ops["mla_context"], ops["mla_generation"]
        mla = {k: att(mc[f"kv_{k}"], mg[f"kv_{k}"], "generic_hopper_only") for k in ("bf16", "fp8")}
        mla_ampere = {k: att(mc[f"kv_{k}"], mg[f"kv_{k}"]) for k in ("bf16", "fp8")}
        comm = ops["comm"]
        custom = {e: _comm(comm[f"custom_all_reduce_{e}"]["generic"]) for e in ENGINES if f"custom_all_reduce_{e}" in comm}
        if custom:  # an engine we have no table for: the mean of the engines'
            custom["generic"] = CommCurve(float(np.mean([c.alpha_s for c in custom.values()])),
                                          float(np.mean([c.e_link for c in custom.values()])))
        return Kernels(gemm=gemm, moe=moe, attention=attention, mla=mla, mla_ampere=mla_ampere,
                       all_reduce=_comm(comm["all_reduce"]["generic"]), alltoall=_comm(comm["alltoall"]["generic"]),
                       custom_all_reduce=custom, source=d.get("source", "")[:200])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TokenmathError(f"cannot read kernel curves {str(p)!r}: {type(e).__name__} {e}") from None


def _gemm(g: dict) -> GemmCurve:
    return GemmCurve(e_c=g["e_c"], e_m=g["e_m"], p=g["p"], t0_s=g["t0_s"])


def _comm(g: dict) -> CommCurve:
    return CommCurve(alpha_s=g["alpha_s"], e_link=g["e_link"])


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


@dataclass(frozen=True)
class Profile:
    """What an estimate is computed with: kernel curves + engine parameters + a label + a band."""

    engine: Engine
    kernels: Kernels | None  # None: the roofline bound
    label: str
    band: dict = field(default_factory=dict)  # metric kind -> (q10, q90) of log(predicted / measured)
    n_cases: int = 0

    @property
    def is_roofline(self) -> bool:
        return self.kernels is None

    def range_80(self, step_s):
        """80 % band of the true step time given this estimate, from the cross-validated residuals
        (in time sense: r = log(predicted time / measured time), rate metrics inverted):
        measured ≈ predicted / exp(r), r between its 10th and 90th percentiles."""
        if self.is_roofline or not self.band:
            return None
        q10, q90 = self.band.get("step", (0.0, 0.0))
        v = np.asarray(step_s, float)
        return [_f(v / np.exp(q90)), _f(v / np.exp(q10))]


def _f(x):
    a = np.asarray(x, float)
    return float(a) if a.ndim == 0 else a.tolist()


ROOFLINE_PROFILE = Profile(engine=Engine(label="roofline"), kernels=None, label="roofline")


@lru_cache(maxsize=8)
def _preset(path: str | None) -> dict:
    from .errors import read_user_json
    from .preset_schema import MAX_PRESET_BYTES, MAX_PRESET_DEPTH, check_preset

    p = Path(path) if path else PRESET_FILE
    if not p.exists() and not p.is_symlink():
        raise TokenmathError(f"no calibrated preset at {str(p)[:200]!r}; run `tokenmath calibrate --out {str(p)[:200]}`")
    where = f"calibrated preset {str(p)[:200]!r}"
    return check_preset(read_user_json(p, where, MAX_PRESET_BYTES, "a preset", max_depth=MAX_PRESET_DEPTH), where)


def _engine(rec: dict, label: str, max_batch=None, name: str | None = None) -> Engine:
    kw = {k: float(rec[k]) for k in ENGINE_PARAMS if k in rec}
    mb = rec.get("max_batch", max_batch)
    return Engine(**kw, max_batch=None if mb is None else float(mb), label=label, name=name)


def preset_record(path: str | None = None) -> dict:
    """The preset JSON (default: the shipped calibrated.json)."""
    return _preset(path)


def profile_from_record(rec: dict, label: str = "fit", engine: str | None = None) -> Profile:
    """A profile straight from engine parameters (what calibration varies)."""
    return Profile(engine=_engine(rec, label, name=engine), kernels=load_kernels(), label=label)


def choose_from(d: dict, *, engine: str | None = None, system: System | None = None, name: str = "calibrated") -> Profile:
    """The profile a preset record gives for `engine` and the system's vendor."""
    month = str(d.get("fit_date", ""))[:7]
    gen = d["generic"]
    rec = dict(gen)
    parts = []
    n = int(gen.get("n_cases", 0))
    engines = d.get("engines", {})
    if engine is not None:
        if engine in engines:
            rec.update({k: v for k, v in engines[engine].items() if k in ENGINE_PARAMS or k == "max_batch"})
            parts.append(engine)
            n = int(engines[engine].get("n_cases", n))
        else:
            parts.append(f"{engine}: generic")
    v = vendor(system) if system is not None else None
    vend = d.get("vendors", {}).get(v) if v else None
    if vend:
        for k in ("compute_scale", "memory_scale"):
            if k in vend:
                rec[k] = rec.get(k, 1.0) * float(vend[k])
        parts.append(v)
    adjust = d.get("adjust", {})  # a user preset's factors on top (tokenmath calibrate on your cases)
    for k, f in adjust.items():
        if k in ENGINE_PARAMS:
            rec[k] = rec.get(k, getattr(Engine(), k)) * float(f)  # the Engine default where unset (overhead 0)
    if adjust:
        parts.append("fitted to " + str(d.get("user_fit", {}).get("n_cases", "your")) + " cases")
    label = " ".join(x for x in (name, month, " + ".join(parts) if parts else "generic") if x)
    band = {k: tuple(v) for k, v in d.get("bands", {}).items() if isinstance(v, list)}
    return Profile(engine=_engine(rec, label, name=engine), kernels=load_kernels(), label=label, band=band, n_cases=n)


def choose(efficiency: str = "calibrated", *, engine: str | None = None, system: System | None = None) -> Profile:
    """The profile for `efficiency` ('calibrated', 'roofline', or a preset JSON path), `engine`
    (None: generic) and the system's vendor (a vendor profile applies where one was fitted)."""
    if efficiency == "roofline":
        return ROOFLINE_PROFILE
    preset = None
    if efficiency not in ("calibrated", "estimate"):
        if not str(efficiency).endswith(".json"):
            raise TokenmathError(f"--efficiency = {efficiency!r}; expected 'calibrated', 'roofline' or a preset .json file")
        preset = str(efficiency)
    d = _preset(preset)
    if engine is not None and engine not in ENGINES and engine not in d.get("engines", {}):
        raise TokenmathError(f"--engine = {engine!r}; expected one of {', '.join(sorted(set(ENGINES) | set(d.get('engines', {}))))}")
    return choose_from(d, engine=engine, system=system, name="calibrated" if preset is None else f"preset {Path(preset).name}")
