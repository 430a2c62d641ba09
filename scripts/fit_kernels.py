#!/usr/bin/env python
"""Fit dimensionless per-operation efficiency curves on published kernel timings.

Data source
-----------
The measured kernel tables shipped inside the ``aiconfigurator-core`` wheel
(version 0.12.0, PyPI, Apache-2.0).  Get it with::

    pip download aiconfigurator-core==0.12.0 --no-deps -d /tmp/aic
    cd /tmp/aic && mkdir x && cd x && unzip ../aiconfigurator_core-0.12.0-*.whl

and pass ``--aic /tmp/aic/x/aiconfigurator_core``.  Only the *data* is read
(``systems/data/<chip>/<op>/<engine>/<version>/*.parquet`` plus one model
config json for the MLA ranks); no aiconfigurator code is imported or copied.

Chips
-----
Only ``a100_sxm``, ``h100_sxm`` and ``h200_sxm`` are read (``CHIPS`` below is a
hard whitelist), and for the GEMM and MoE kernel families also ``l40s`` (``GEMM_CHIPS``; the
L40S is in tokenmath's catalog from its datasheet).  Blackwell parts (b200/b300/gb200/gb300/rtx_pro_6000/b60) are
the held-out judging target and are never opened, fitted or reported.

Inputs are dimensionless: every kernel's work is turned into a roofline time
using tokenmath's *own* catalog peaks (dense FLOP/s per dtype class, HBM
bytes/s, scale-up bytes/s), so the fitted efficiencies multiply the same
denominators that the tokenmath runtime uses.  The only dimensional fitted
constants are fixed overheads (``t0``, ``alpha``; seconds).

Running
-------
Needs pyarrow + pandas + numpy + scipy (fit-time only; not tokenmath runtime
deps) and an importable ``tokenmath`` (the script puts ``<repo>/src`` on
``sys.path``, so tokenmath's own runtime deps, e.g. pydantic, must be present)::

    python scripts/fit_kernels.py --aic /tmp/aic/x/aiconfigurator_core \\
        --out src/tokenmath/validation/kernels.json

e.g. with the project venv (it has pandas/pyarrow/scipy) or any venv with
``pip install pyarrow pandas scipy numpy pydantic``.  Use ``--print-doc`` to
dump the markdown tables used in docs/kernels.md.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from tokenmath.catalog import load_catalog  # noqa: E402

# aiconfigurator chip dir -> tokenmath catalog system.  HARD WHITELIST.
CHIPS = {"a100_sxm": "a100-sxm-80gb", "h100_sxm": "h100-sxm", "h200_sxm": "h200-sxm"}
_FORBIDDEN = ("b200", "b300", "gb200", "gb300", "rtx_pro_6000", "b60")
assert not any(f in c for c in CHIPS for f in _FORBIDDEN)

MS = 1e-3  # all aiconfigurator latencies are milliseconds
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "fp8": 1, "fp8_block": 1, "int8": 1,
               "sq": 1, "int8_wo": 1, "int4_wo": 0.5}
SHORT = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16"}

SOURCES: list[str] = []


# ----------------------------------------------------------------------------- data
def _vkey(v: str):
    return tuple(int(x) for x in re.findall(r"\d+", v))


def _chip_dir(aic: Path, chip: str) -> Path:
    if chip not in CHIPS and chip not in ("l40s",):  # defence in depth: the fitted chips only
        raise SystemExit(f"refusing to read non-whitelisted chip {chip}")
    return aic / "systems" / "data" / chip


def load_table(aic: Path, chip: str, op: str, engine: str, fname: str, pick: str = "rows"):
    """One table for chip/op/engine; version = most rows ('rows') or newest ('newest')."""
    base = _chip_dir(aic, chip) / op / engine
    if not base.is_dir():
        return None
    cands = []
    for vdir in base.iterdir():
        f = vdir / fname
        if f.is_file():
            n = pd.read_parquet(f, columns=["latency"]).shape[0]
            cands.append((n, _vkey(vdir.name), vdir.name, f))
    if not cands:
        return None
    if pick == "newest":
        cands.sort(key=lambda c: c[1])
    else:
        cands.sort(key=lambda c: (c[0], c[1]))
    n, _, ver, f = cands[-1]
    df = pd.read_parquet(f)
    df = df[np.isfinite(df.latency) & (df.latency > 0)].copy()
    SOURCES.append(f"systems/data/{chip}/{op}/{engine}/{ver}/{fname}")
    df["chip"] = chip
    return df


def dedup(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Median over repeats of one kernel, then the fastest kernel_source per shape."""
    k2 = keys + (["kernel_source"] if "kernel_source" in df else [])
    g = df.groupby(["chip"] + k2, as_index=False)["latency"].median()
    return g.groupby(["chip"] + keys, as_index=False)["latency"].min()


# ----------------------------------------------------------------------------- peaks
class Peaks:
    def __init__(self):
        cat = load_catalog()
        self.sys = {c: cat.system(s) for c, s in {**CHIPS, "l40s": "l40s"}.items()}

    def flops(self, chip: str, dclass: str) -> float:
        ch = self.sys[chip].chip
        v = {"bf16": ch.bf16_flops_per_s, "fp8": ch.fp8_flops_per_s,
             "int8": ch.int8_flops_per_s}[dclass]
        return float(v) if v else float("nan")

    def hbm(self, chip: str) -> float:
        return float(self.sys[chip].chip.hbm_bytes_per_s)

    def link(self, chip: str) -> float:
        return float(self.sys[chip].scaleup_bytes_per_s)

    def table(self):
        return {c: {"catalog_system": GEMM_CHIPS[c],
                    "bf16_flops_per_s": self.flops(c, "bf16"),
                    "fp8_flops_per_s": self.flops(c, "fp8"),
                    "int8_flops_per_s": self.flops(c, "int8"),
                    "hbm_bytes_per_s": self.hbm(c),
                    "scaleup_bytes_per_s": self.link(c)} for c in self.sys}


# ----------------------------------------------------------------------------- models
# Each model: names, x0, lo, hi (internal units; t0/alpha in microseconds), f(params, X)
US = 1e-6


def _log_pnorm(a, b, pw):
    """(e^a^p + e^b^p)^(1/p) from the logs a, b of two times, computed on the larger (no overflow)."""
    m = np.maximum(a, b)
    return np.exp(m + np.log(np.exp(pw * (a - m)) + np.exp(pw * (b - m))) / pw)


def _roof(p, X):
    ec, em, pw, t0 = p
    return _log_pnorm(np.log(X["tc"] / ec), np.log(X["tm"] / em), pw) + t0 * US


def _fa(p, X):
    emax, shalf, t0 = p
    return X["tc"] * (X["s"] + shalf) / (emax * X["s"]) + t0 * US


def _bw(p, X):
    e, t0 = p
    return X["tm"] / e + t0 * US


def _bwpad(p, X):
    # KV read padded by s0 tokens per sequence (tile granularity / per-sequence fixed work)
    e, s0, t0 = p
    return (X["tkv"] * (X["s"] + s0) / X["s"] + X["tq"]) / e + t0 * US


def _roofpad(p, X):
    ec, em, pw, s0, t0 = p
    tm = X["tkv"] * (X["s"] + s0) / X["s"] + X["tq"]
    return _roof([ec, em, pw, t0], {"tc": X["tc"], "tm": tm})


def _comm(p, X):
    alpha, e = p
    return alpha * US * X["hops"] + X["tb"] / e


def _comm_knee(p, X):
    # the latency and the bandwidth terms joined by a p-norm (tokenmath.stepmodel.comm_call_time):
    # p = 1 is alpha + bytes/bw; p < 1 charges more than their sum near the crossover, where the
    # library changes protocol (NCCL's LL / LL128 / Simple), and reaches the link's own
    # bandwidth for large messages, which the sum can only approach by lowering e_link for all
    alpha, e, pw = p
    return _log_pnorm(np.log(alpha * US * X["hops"]), np.log(X["tb"] / e), pw)


MODELS = {
    "roofline": (["e_c", "e_m", "p", "t0_s"], [0.7, 0.7, 2.0, 5.0], [1e-3, 1e-3, 1.0, 0.0],
                 [1.0, 1.0, 8.0, 1e4], _roof),
    "flash": (["e_max", "s_half", "t0_s"], [0.6, 256.0, 5.0], [1e-3, 0.0, 0.0],
              [1.0, 1e6, 1e4], _fa),
    "bandwidth": (["e", "t0_s"], [0.7, 5.0], [1e-3, 0.0], [1.0, 1e4], _bw),
    "bandwidth_pad": (["e", "s0", "t0_s"], [0.8, 64.0, 5.0], [1e-3, 0.0, 0.0], [1.0, 1e5, 1e4], _bwpad),
    "roofline_pad": (["e_c", "e_m", "p", "s0", "t0_s"], [0.7, 0.8, 2.0, 64.0, 5.0],
                     [1e-3, 1e-3, 1.0, 0.0, 0.0], [1.0, 1.0, 8.0, 1e5, 1e4], _roofpad),
    # comm efficiency may exceed 1 vs one-direction link bw (NVLS / in-switch reduction)
    "comm": (["alpha_s", "e_link"], [5.0, 0.7], [0.0, 1e-3], [1e3, 4.0], _comm),
    "comm_knee": (["alpha_s", "e_link", "p"], [5.0, 0.8, 0.7], [1e-3, 1e-3, 0.2], [1e3, 4.0, 1.0], _comm_knee),
}


def _to_out(model, p):
    names = MODELS[model][0]
    out = {}
    for n, v in zip(names, p):
        if n in ("t0_s", "alpha_s"):
            v = v * US
        out[n] = float(f"{v:.4g}")
    return out


def _from_out(model, d):
    return np.array([d[n] / US if n in ("t0_s", "alpha_s") else d[n] for n in MODELS[model][0]])


# Robust loss: soft-L1 on log time at tokenmath's SOFT_L1_SCALE, 0.3 (calibrate.soft_l1_residual, the
# end-to-end fit's loss too) — an error inside the per-shape scatter that one chip's own best fit leaves
# (p90 0.22-0.33 on dense GEMMs, docs/kernels.md "Per-chip fits") counts as in least squares, a larger
# one linearly. Every kernel table has a tail of shapes no smooth curve follows (the library's
# per-shape kernel choice: ~10 % of TensorRT-LLM's MoE rows run 1.7-3x slower than the curve through
# the rest); squared, that tail pulled the floors and efficiencies of the whole curve (the MoE layer's
# floor: 40 us by least squares, 33 us by this loss). A scale of 0.1 was tried first and fails the
# FP8-from-BF16 transfer on L40S (median 0.835 of measured, window 0.85-1.2).
from tokenmath.calibrate import soft_l1_residual as robust_residual  # noqa: E402


def fit(model, X, t, chip):
    names, x0, lo, hi, f = MODELS[model]
    # each chip gets equal total weight in a pooled fit
    w = np.ones_like(t)
    for c in np.unique(chip):
        sel = chip == c
        w[sel] = 1.0 / np.sqrt(sel.sum())
    lt = np.log(t)

    def res(p):
        return robust_residual(np.log(f(p, X)) - lt, w)

    best = None
    starts = [x0]
    if model == "roofline":
        starts += [[0.5, 0.5, 1.5, 2.0], [0.8, 0.8, 4.0, 10.0]]
    if model == "roofline_pad":
        starts += [[0.5, 0.5, 1.5, 128.0, 2.0], [0.8, 0.8, 4.0, 4.0, 10.0]]
    for s0 in starts:
        r = least_squares(res, np.clip(s0, lo, hi), bounds=(lo, hi), method="trf", x_scale="jac")
        if best is None or r.cost < best.cost:
            best = r
    return best.x


def errs(pred, t):
    e = np.abs(pred / t - 1.0)
    return {"median": float(f"{np.median(e):.4f}"), "p90": float(f"{np.quantile(e, 0.9):.4f}")}


def sub(X, sel):
    return {k: v[sel] for k, v in X.items()}


def fit_family(model, X, t, chip):
    """generic (pooled) + per-chip fits, in-sample and leave-one-chip-out errors."""
    f = MODELS[model][4]
    chips = [c for c in CHIPS if (chip == c).any()]
    pg = fit(model, X, t, chip)
    out = {"form": model, "generic": _to_out(model, pg), "per_chip": {},
           "n_points": int(len(t)), "n_points_per_chip": {c: int((chip == c).sum()) for c in chips},
           "in_sample": errs(f(pg, X), t)}
    for c in chips:
        sel = chip == c
        pc = fit(model, sub(X, sel), t[sel], chip[sel])
        out["per_chip"][c] = dict(_to_out(model, pc), **{"in_sample": errs(f(pc, sub(X, sel)), t[sel])})
    if len(chips) >= 2:
        preds = np.empty_like(t)
        per = {}
        for c in chips:
            tr, te = chip != c, chip == c
            p = fit(model, sub(X, tr), t[tr], chip[tr])
            preds[te] = f(p, sub(X, te))
            per[c] = errs(preds[te], t[te])
        out["leave_one_chip_out"] = dict(errs(preds, t), per_held_out_chip=per)
    else:
        out["leave_one_chip_out"] = None
    return out


def binned(x, y, edges, chip=None, fmt="{:g}", chips=CHIPS):
    """median of y in bins of x (pooled, and per chip)."""
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (x >= lo) & (x < hi)
        if sel.sum() == 0:
            continue
        r = {"bin": f"[{fmt.format(lo)}, {fmt.format(hi)})", "n": int(sel.sum()),
             "median": float(f"{np.median(y[sel]):.3f}")}
        if chip is not None:
            for c in chips:
                s2 = sel & (chip == c)
                if s2.sum():
                    r[c] = float(f"{np.median(y[s2]):.3f}")
        rows.append(r)
    return rows


def arrays(df, cols):
    return {c: df[c].to_numpy(dtype=float) for c in cols}


# ----------------------------------------------------------------------------- GEMM and MoE kernel families
# The GEMM-class kernels (dense GEMMs and the MoE layer's grouped GEMMs) are fitted as dtype
# *families* of one dimensionless form (tokenmath.stepmodel.GemmFamily):
#   t = ((t_c·pad / e_c(r))^p + (t_m / e_m)^p)^(1/p) + t0 + q·t0q + ep·t0ep,   1/e_c(r) = 1/e_c0 + κ·r
# r = the kernel dtype's peak ÷ the chip's BF16 peak (datasheet), q = 1 where activations are
# quantised first (FP8/FP4 kernels launch a quantise kernel), pad = M padded to the tile.
# "tensor" = BF16 + per-tensor FP8 fitted jointly (that is what identifies κ: the same chips at
# r = 1 and 2); the other families share the tensor family's κ and fit their own e_c0, e_m, p, t0.

# Fitted on four chips, L40S (Ada, GDDR6, PCIe) added to the three HBM chips: a second FP8
# architecture, so an FP8 curve can be held out across architectures.
GEMM_CHIPS = {**CHIPS, "l40s": "l40s"}
assert not any(f in c for c in GEMM_CHIPS for f in _FORBIDDEN)
# L2 cache per chip (bytes), for data cleaning only: the tables time each kernel in a loop, so a
# kernel whose operands fit in L2 is measured warm and beats DRAM bandwidth (L40S memory-bound
# points under 0.5 × L2 run up to 1.7× its datasheet GDDR6 rate); a served model streams GB of
# weights per step, never from L2. Memory-side points (t_c < 2·t_m) whose footprint is under
# 2 × L2 are dropped unless they are floor-dominated (t_m < 1 µs).
# Sources: NVIDIA A100 Tensor Core GPU Architecture whitepaper (2020): 40 MB; NVIDIA H100 Tensor
# Core GPU Architecture whitepaper (2022): 50 MB (H100 SXM5; H200 is the same GH100 die); NVIDIA
# Ada Lovelace architecture whitepaper (2022): AD102, 96 MB (L40S is an AD102 part). The drop in
# the residuals sits at footprint ≈ L2 on every chip (docs/kernels.md), which checks the values.
L2_BYTES = {"a100_sxm": 40e6, "h100_sxm": 50e6, "h200_sxm": 50e6, "l40s": 96e6}
MAX_ROWS = int(os.environ.get("FIT_KERNELS_MAX_ROWS", 8000))  # per (chip, dtype[, engine]) group, a seeded sample: keeps the fit a few minutes on 2 cores
EXTRACT_ROWS = 300  # per group, written to tests/data for CI (the LOCO test)
TILES = (1, 16, 32, 64, 128)

# aic dtype -> family, peak class, weight bytes per element (with block scales), activation bytes, quantised acts
FP8_BLOCK_W = 1 + 4 / 128 ** 2  # one fp32 scale per 128×128 weight block (DeepSeek-V3 recipe)
FP8_BLOCK_A = 1 + 4 / 128  # one fp32 scale per 1×128 activation group
GEMM_DTYPES = {"bfloat16": ("tensor", "bf16", 2.0, 2.0, 0), "fp8": ("tensor", "fp8", 1.0, 1.0, 1),
               "fp8_block": ("fp8_block", "fp8", FP8_BLOCK_W, FP8_BLOCK_A, 1),
               "sq": ("int8", "int8", 1.0, 1.0, 1),  # SmoothQuant W8A8 (A100 only)
               "int8_wo": ("w8a16", "bf16", 1.0, 2.0, 0),  # weight-only INT8, per-channel scales (A100)
               "int4_wo": ("w4a16", "bf16", 0.5, 2.0, 0)}  # weight-only INT4, per-channel scales (A100)
# MXFP4: one E8M0 byte per 32 values (OCP MX v1.0); INT4 Marlin/GPTQ: one fp16 scale per 128
MOE_DTYPES = {"bfloat16": ("tensor", "bf16", 2.0, 2.0, 0), "fp8": ("tensor", "fp8", 1.0, 1.0, 1),
              "fp8_block": ("fp8_block", "fp8", FP8_BLOCK_W, FP8_BLOCK_A, 1),
              "w4a16_mxfp4": ("w4a16", "bf16", 0.5 + 1 / 32, 2.0, 0),
              "int4_wo": ("w4a16", "bf16", 0.5 + 2 / 128, 2.0, 0)}
# which engines' tables fit each MoE family: TensorRT-LLM's CUTLASS MoE where it has >= 2 chips;
# weight-only 4-bit MoE has few TRT-LLM rows (H100/H200, one shape), so vLLM (OpenAI Triton MXFP4,
# Marlin) and SGLang (Triton, Marlin) are pooled with it: the kernels engines actually run
MOE_ENGINES = {"tensor": ("trtllm",), "fp8_block": ("trtllm",), "w4a16": ("trtllm", "vllm", "sglang")}

FAM_NAMES = ["e_c0", "kappa", "e_m", "p", "t0_s", "t0q_s", "t0ep_s"]
FAM_LO = np.array([1e-3, 0.0, 1e-3, 1.0, 0.0, 0.0, 0.0])
FAM_HI = np.array([1.0, 5.0, 1.0, 8.0, 1e3, 1e3, 1e3])


def _family(q, tile):
    from tokenmath.stepmodel import GemmFamily
    return GemmFamily(e_c0=q[0], kappa=q[1], e_m=q[2], p=q[3], t0_s=q[4] * US, t0q_s=q[5] * US, tile_m=float(tile),
                      t0ep_s=q[6] * US)


def fam_time(q, X, tile):
    return _family(q, tile).time_s(X["tc"], X["tm"], X["r"], X["q"], X["rows"], X.get("ep", 0.0))


def fit_gemm_family(X, t, group, tile, kappa=None):
    """Soft-L1 on log time (robust_residual), each group (chip × dtype [× engine]) equal total weight. kappa
    given: held at that value (a family that shares the tensor family's κ); t0ep (the MoE layer's
    expert-parallel path) only where the data hold both paths; t0q is fitted only
    where the data mix quantised and unquantised kernels."""
    lo, hi = FAM_LO.copy(), FAM_HI.copy()
    if kappa is not None:
        lo[1] = hi[1] = kappa
    if len(np.unique(X["q"])) < 2:
        hi[5] = 0.0
    if len(np.unique(X.get("ep", np.zeros(1)))) < 2:  # t0ep only where the data hold both MoE paths
        hi[6] = 0.0
    w = np.ones_like(t)
    for g in np.unique(group):
        w[group == g] = 1.0 / np.sqrt((group == g).sum())
    lt = np.log(t)
    best = None
    for x0 in ([0.9, 0.3, 0.8, 1.5, 5.0, 5.0, 5.0], [0.6, 0.05, 0.6, 3.0, 20.0, 10.0, 20.0],
               [1.0, 0.5, 0.9, 1.2, 40.0, 1.0, 1.0]):
        x0 = np.clip(x0, lo, hi)
        hi_ = np.where(hi > lo, hi, lo + 1e-12)  # least_squares needs lo < hi; a held value sits on its bound
        r = least_squares(lambda q: robust_residual(np.log(fam_time(q, X, tile)) - lt, w), x0, bounds=(lo, hi_),
                          x_scale="jac")
        if best is None or r.cost < best.cost:
            best = r
    return best.x, float(best.cost)


def _fam_out(q, tile):
    return {"e_c0": float(f"{q[0]:.4g}"), "kappa": float(f"{q[1]:.4g}"), "e_m": float(f"{q[2]:.4g}"),
            "p": float(f"{q[3]:.4g}"), "t0_s": float(f"{q[4] * US:.4g}"), "t0q_s": float(f"{q[5] * US:.4g}"), "t0ep_s": float(f"{q[6] * US:.4g}"),
            "tile_m": int(tile)}


def _fam_in(rec: dict):
    """(parameter vector in fit units, tile) of a kernels.json family record: _fam_out's inverse."""
    g = rec["generic"]
    return np.array([g["e_c0"], g["kappa"], g["e_m"], g["p"], g["t0_s"] / US, g["t0q_s"] / US,
                     g.get("t0ep_s", 0.0) / US]), g["tile_m"]


def _errs_by(pred, t, keys):
    return {k: errs(pred[sel], t[sel]) for k, sel in keys.items() if sel.any()}


def family_report(X, t, chip, dtype, group, tiles=TILES, kappa=None, kappa_loco=None, chip_names=None):
    """Generic fit (tile scanned), per-chip fits, in-sample and leave-one-chip-out errors, per dtype
    and chip. kappa_loco: chip -> the κ to hold when that chip is out (from the tensor family's own
    fit without it), so nothing of the held-out chip leaks in. chip_names: the chips in their order
    (default GEMM_CHIPS, the NVIDIA tables)."""
    scan = {}
    for tile in tiles:
        q, cost = fit_gemm_family(X, t, group, tile, kappa)
        scan[tile] = (cost, q)
    tile = min(scan, key=lambda k: scan[k][0])
    q = scan[tile][1]
    pred = fam_time(q, X, tile)
    keys = {f"{c}/{d}": (chip == c) & (dtype == d) for c in np.unique(chip) for d in np.unique(dtype)}
    chips = [c for c in (chip_names or GEMM_CHIPS) if (chip == c).any()]
    out = {"form": "gemm_family", "generic": _fam_out(q, tile), "n_points": int(len(t)),
           "n_points_per_chip": {c: int((chip == c).sum()) for c in chips},
           "dtypes": sorted(set(dtype.tolist())),
           "tile_scan": {str(k): {"cost": float(f"{v[0]:.4g}"), "in_sample": errs(fam_time(v[1], X, k), t)}
                         for k, v in scan.items()},
           "in_sample": dict(errs(pred, t), by_chip_dtype=_errs_by(pred, t, keys)), "per_chip": {}}
    for c in chips:
        sel = chip == c
        qc, _ = fit_gemm_family(sub(X, sel), t[sel], group[sel], tile, kappa)
        out["per_chip"][c] = dict(_fam_out(qc, tile), in_sample=errs(fam_time(qc, sub(X, sel), tile), t[sel]))
    if len(chips) >= 2:
        lp = np.empty_like(t)
        held = {}
        for c in chips:
            tr, te = chip != c, chip == c
            k_ = kappa if kappa_loco is None else kappa_loco.get(c, kappa)
            qh, _ = fit_gemm_family(sub(X, tr), t[tr], group[tr], tile, k_)
            lp[te] = fam_time(qh, sub(X, te), tile)
            held[c] = _fam_out(qh, tile)
        out["leave_one_chip_out"] = dict(errs(lp, t), by_chip_dtype=_errs_by(lp, t, keys), params_without=held)
    else:
        out["leave_one_chip_out"] = None
    return out


def dtype_step_test(X, t, chip, dtype, group, tile, kappa=None):
    """Leave one dtype family out (the transfer that justifies FP4 from a datasheet): on each chip
    with FP8, fit the tensor family on everything but that chip's FP8 rows (its BF16 rows and the
    other chips' FP8 stay), then predict that chip's FP8 kernels from its datasheet FP8 peak; beside
    it the rule this replaces — the BF16 curve borrowed at the FP8 peak (κ = 0, no quantise floor)."""
    res = {}
    bf = np.char.endswith(dtype.astype(str), "bfloat16")
    qb, _ = fit_gemm_family(sub(X, bf), t[bf], group[bf], tile, kappa=0.0)
    for c in GEMM_CHIPS:
        te = (chip == c) & np.char.endswith(dtype.astype(str), ":fp8") | (chip == c) & (dtype == "fp8")
        if not te.any():
            continue
        tr = ~te
        q, _ = fit_gemm_family(sub(X, tr), t[tr], group[tr], tile, kappa)
        rule = fam_time(q, sub(X, te), tile)
        naive = fam_time(qb, dict(sub(X, te), q=np.zeros(te.sum())), tile)
        cb = X["tc"][te] >= X["tm"][te]  # compute-side kernels: where the rate of the dtype matters
        res[c] = {"kappa_rule": dict(errs(rule, t[te]), median_ratio=float(f"{np.median(rule / t[te]):.3f}")),
                  "borrowed_bf16_curve": dict(errs(naive, t[te]), median_ratio=float(f"{np.median(naive / t[te]):.3f}")),
                  "compute_side": {"n": int(cb.sum()),
                                   **({"kappa_rule": dict(errs(rule[cb], t[te][cb]),
                                                          median_ratio=float(f"{np.median(rule[cb] / t[te][cb]):.3f}")),
                                       "borrowed_bf16_curve": dict(errs(naive[cb], t[te][cb]),
                                                                   median_ratio=float(f"{np.median(naive[cb] / t[te][cb]):.3f}"))}
                                      if cb.sum() else {})},
                  "fitted_without": _fam_out(q, tile)}
    return res


def _sample(df, keys, n, seed=0):
    df = df.sample(frac=1.0, random_state=seed)
    return df[df.groupby(keys).cumcount() < n].reset_index(drop=True)


def _keep_dram(tc, tm, foot, chip):
    """The L2 rule (see L2_BYTES): compute-side, DRAM-sized or floor-dominated points."""
    l2 = np.array([L2_BYTES[c] for c in chip])
    return (tc >= 2 * tm) | (foot >= 2 * l2) | (tm < 1e-6)


def gemm_family_frame(aic, peaks, engine):
    dfs = [load_table(aic, c, "gemm", engine, "gemm_perf.parquet") for c in GEMM_CHIPS]
    df = pd.concat([d for d in dfs if d is not None], ignore_index=True)
    df = df[df.gemm_dtype.isin(GEMM_DTYPES)]
    df = dedup(df, ["gemm_dtype", "m", "n", "k"])
    f = df.gemm_dtype.map(GEMM_DTYPES)
    cls = f.map(lambda x: x[1])
    bw, bi = f.map(lambda x: x[2]).astype(float), f.map(lambda x: x[3]).astype(float)
    M, N, K = (df[c].astype(float) for c in "mnk")
    F = np.array([peaks.flops(c, k) for c, k in zip(df.chip, cls)])
    F16 = np.array([peaks.flops(c, "bf16") for c in df.chip])
    B = df.chip.map(peaks.hbm).astype(float)
    df["family"] = f.map(lambda x: x[0])
    df["tc"] = 2 * M * N * K / F
    df["foot"] = N * K * bw + M * K * bi + M * N * 2
    df["tm"] = df.foot / B
    df["r"] = F / F16
    df["q"] = f.map(lambda x: x[4]).astype(float)
    df["rows"] = M
    df["t"] = df.latency * MS
    df = df[np.isfinite(df.tc)]
    df = df[_keep_dram(df.tc.to_numpy(), df.tm.to_numpy(), df.foot.to_numpy(), df.chip.to_numpy())]
    return _sample(df, ["chip", "gemm_dtype"], MAX_ROWS)


FAM_COLS = ["tc", "tm", "r", "q", "rows"]


def do_gemm(aic, peaks, engine, doc, extract=None):
    df = gemm_family_frame(aic, peaks, engine)
    res = {}
    ten = df[df.family == "tensor"]
    X, t, ch, dt = arrays(ten, FAM_COLS), ten.t.to_numpy(), ten.chip.to_numpy(), ten.gemm_dtype.to_numpy()
    grp = np.char.add(ch.astype(str), dt.astype(str))
    r = family_report(X, t, ch, dt, grp)
    tile = r["generic"]["tile_m"]
    r["dtype_step"] = dtype_step_test(X, t, ch, dt, grp, tile)
    res["tensor"] = r
    kappa = r["generic"]["kappa"]
    kloco = {c: v["kappa"] for c, v in (r["leave_one_chip_out"] or {}).get("params_without", {}).items()}
    for fam in ("fp8_block", "int8", "w8a16", "w4a16"):
        d = df[df.family == fam]
        if len(d) < 50:
            continue
        X, t, ch, dt = arrays(d, FAM_COLS), d.t.to_numpy(), d.chip.to_numpy(), d.gemm_dtype.to_numpy()
        res[fam] = family_report(X, t, ch, dt, np.char.add(ch.astype(str), dt.astype(str)), kappa=kappa,
                                 kappa_loco=kloco)
    for fam, r_ in res.items():
        d = df[df.family == fam]
        x = (d.tc / d.tm).to_numpy()
        eff = (np.maximum(d.tc, d.tm) / d.t).to_numpy()
        r_["eff_vs_intensity_over_ridge"] = binned(x, eff, [0, 1 / 64, 1 / 16, 1 / 4, 1, 4, 16, 64, np.inf],
                                                   d.chip.to_numpy(), chips=GEMM_CHIPS)
    if extract is not None:
        extract["gemm"] = _sample(df, ["chip", "gemm_dtype"], EXTRACT_ROWS)[
            ["chip", "gemm_dtype", "m", "n", "k", "latency"]].rename(columns={"gemm_dtype": "dtype"})
    doc[f"gemm/{engine}"] = res
    return res


# ----------------------------------------------------------------------------- AMD: ROCm aiter's tuned GEMM tables
# AMD's kernel library aiter (github ROCm/aiter, MIT) ships the timings its tuner measured for every shape it
# tuned: aiter/configs/**/a8w8_blockscale_tuned_gemm*.csv, one row per (gfx, CU count, M, N, K) with the best
# kernel's time in microseconds ("us") — FP8 weights and activations with DeepSeek-V3's block scales (1×128 on
# activations, 128×128 on weights), the GEMMs of every block-FP8 checkpoint served on MI300X and MI355X. The tuner
# times each kernel over copies of its inputs rotated to cover the caches (aiter/test_common.py `perftest`:
# num_rotate_args = 0 makes enough copies to exceed L2 × 8,192 bytes, at most one per iteration), so the rows are
# cache-cold like a served model's weights; no memory-side row beats the datasheet bandwidth. Two CDNA
# generations, so a curve fitted on one can be tested on the other (leave one chip out): gfx942 with 304 CUs
# (the MI300X/MI325X die; the MI300X datasheet, whose compute peaks MI325X shares — MI325X's HBM is 13 % faster,
# which only memory-side rows, 1 % of the table, would feel) and gfx950 with 256 CUs (MI355X). Rows of other CU
# counts (80: MI308X; 96/256 gfx1250) are not read.
AITER_COMMIT = "e4048607a535ace3a2b51ded31b1c8c2d45c0879"  # 2026-08-22
AITER_FP8_BLOCK_FILES = (
    "aiter/configs/a8w8_blockscale_tuned_gemm.csv",
    "aiter/configs/model_configs/a8w8_blockscale_tuned_gemm_ds_v3.csv",
    "aiter/configs/model_configs/a8w8_blockscale_tuned_gemm_glm5_1.csv",
    "aiter/configs/model_configs/a8w8_blockscale_tuned_gemm_qwen36_27b.csv",
    "aiter/configs/model_configs/a8w8_blockscale_tuned_gemm_qwen3_235b.csv",
    "aiter/configs/model_configs/a8w8_blockscale_tuned_gemm_qwen3_5_397b_a13b.csv",
    "aiter/configs/model_configs/a8w8_blockscale_tuned_gemm_qwen3_next_80b_a3b.csv",
    "aiter/configs/model_configs/a8w8_blockscale_tuned_gemm_qwen3_vl_235b.csv",
    "aiter/configs/model_configs/a8w8_blockscale_tuned_gemm_qwen3_vl_32b.csv",
)
AMD_CHIPS = {"mi300x": ("gfx942", 304), "mi355x": ("gfx950", 256)}  # catalog system -> (gfx, CU count) of its rows
AITER_SOURCES: list[str] = []


def amd_peaks() -> dict:
    """The catalog datasheet peaks the AMD rows are divided by (kernels.json peaks_from_tokenmath_catalog)."""
    cat = load_catalog()
    out = {}
    for sysname, (gfx, cus) in AMD_CHIPS.items():
        ch = cat.system(sysname).chip
        out[sysname] = {"catalog_system": sysname, "aiter_rows": f"{gfx} with {cus} CUs",
                        "bf16_flops_per_s": float(ch.flops_per_s("bf16")), "fp8_flops_per_s": float(ch.flops_per_s("fp8")),
                        "hbm_bytes_per_s": float(ch.hbm_bytes_per_s)}
    return out


MXFP4_BYTES = 0.5 + 1 / 32  # OCP MX v1.0: 4-bit elements, one E8M0 scale byte per 32


def _aiter_tables(aiter: Path, commit: str, match) -> pd.DataFrame:
    import io
    import subprocess

    ls = subprocess.run(["git", "-C", str(aiter), "ls-tree", "-r", "--name-only", commit, "aiter/configs"],
                        capture_output=True, text=True, check=True).stdout.split()
    frames = []
    for f in ls:
        if match(f):
            txt = subprocess.run(["git", "-C", str(aiter), "show", f"{commit}:{f}"], capture_output=True, text=True).stdout
            frames.append(pd.read_csv(io.StringIO(txt)).assign(table=f.rsplit("/", 1)[-1]))
    return pd.concat(frames, ignore_index=True)


def aiter_fp8_block_frame(aiter: Path, commit: str = AITER_COMMIT) -> pd.DataFrame:
    """The block-FP8 GEMM rows of aiter's tuned tables at `commit` (a clone or a bare git dir), one per
    (chip, M, N, K) — the fastest where several tables tuned the same shape — with the roofline times
    of the catalog's datasheet peaks (the GEMM family's inputs, as gemm_family_frame)."""
    cat = load_catalog()
    df = _aiter_tables(aiter, commit, lambda f: f in AITER_FP8_BLOCK_FILES)
    if "gfx" not in df.columns or df.gfx.isna().all():
        raise SystemExit(f"no aiter block-FP8 table at {commit} in {aiter}")
    df = df[df.gfx.notna()]  # early tables have no gfx column: their CU count alone does not name the chip
    AITER_SOURCES.extend(f for f in AITER_FP8_BLOCK_FILES if f.rsplit("/", 1)[-1] in set(df.table))
    rows = []
    for sysname, (gfx, cus) in AMD_CHIPS.items():
        d = df[(df.gfx == gfx) & (df.cu_num == cus) & (df.us > 0)].assign(chip=sysname)
        ch = cat.system(sysname).chip
        F, F16, B = float(ch.flops_per_s("fp8")), float(ch.flops_per_s("bf16")), float(ch.hbm_bytes_per_s)
        M, N, K = (d[c].astype(float) for c in "MNK")
        d = d.assign(tc=2 * M * N * K / F, foot=N * K * FP8_BLOCK_W + M * K * FP8_BLOCK_A + M * N * 2, r=F / F16, q=1.0,
                     rows=M, t=d.us.astype(float) * US, latency=d.us.astype(float) / 1e3)  # latency in ms, as aic's
        rows.append(d.assign(tm=d.foot / B))
    df = pd.concat(rows, ignore_index=True).sort_values("t")
    return df.drop_duplicates(["chip", "M", "N", "K"]).reset_index(drop=True)


AITER_FMOE_GLOB = "fmoe"  # aiter/configs/**/*tuned_fmoe*.csv (not the untuned lists)


def amd_moe_check(aiter: Path, nvidia: dict, kappa: float, commit: str = AITER_COMMIT) -> dict:
    """Does the MoE layer's block-FP8 family, fitted on NVIDIA's grouped GEMMs, transfer to AMD's fused MoE
    kernels? aiter's tuned fmoe tables (per_1x128 block-FP8 rows of 304-CU gfx942 and 256-CU gfx950) time the
    whole layer (gate-up and down, 3 matrices of model_dim × inter_dim per expert, inter_dim already per GPU)
    at `token` tokens routed top-k over `expert` experts at random, so the experts a step touches are
    E·(1 − (1 − k/E)^T). Reported: the NVIDIA family's errors per chip, and a family fitted on AMD's own
    rows with one chip held out — kept only as a comparison (docs/kernels.md)."""
    df = _aiter_tables(aiter, commit, lambda f: AITER_FMOE_GLOB in f and "untuned" not in f and f.endswith(".csv"))
    df = df[df.q_type.notna() & df.token.notna()]
    cat = load_catalog()
    parts = []
    for sysname, (gfx, cus) in AMD_CHIPS.items():
        d = df[(df.q_type == "QuantType.per_1x128") & (df.cu_num == cus) & (df.us > 0)]
        if "gfx" in d.columns:
            d = d[d.gfx.isna() | (d.gfx == gfx)]
        ch = cat.system(sysname).chip
        F, F16, B = float(ch.flops_per_s("fp8")), float(ch.flops_per_s("bf16")), float(ch.hbm_bytes_per_s)
        T, h, i, E, k = (d[c].astype(float) for c in ("token", "model_dim", "inter_dim", "expert", "topk"))
        A, touched = T * k, E * (1 - (1 - k / E) ** T)
        parts.append(d.assign(chip=sysname, tc=2 * 3 * A * h * i / F, r=F / F16, q=1.0, rows=A / touched, ep=0.0,
                              tm=(touched * 3 * h * i * FP8_BLOCK_W + A * h * (FP8_BLOCK_A + 2)) / B,
                              t=d.us.astype(float) * US))
    d = pd.concat(parts, ignore_index=True).sort_values("t")
    d = d.drop_duplicates(["chip", "token", "model_dim", "inter_dim", "expert", "topk"]).reset_index(drop=True)
    X, t, ch = arrays(d, FAM_COLS + ["ep"]), d.t.to_numpy(), d.chip.to_numpy()
    qn, tile = _fam_in(nvidia)
    pred = fam_time(qn, X, tile)
    own = family_report(X, t, ch, np.array(["fp8_block"] * len(t)), ch.astype(str), tiles=(1,), kappa=kappa,
                        chip_names=list(AMD_CHIPS))
    held = own["leave_one_chip_out"]["by_chip_dtype"]
    keep = all(errs(pred[ch == c], t[ch == c])["median"] <= held[f"{c}/fp8_block"]["median"] for c in AMD_CHIPS)
    return {"source": f"github ROCm/aiter (MIT) at {commit}: " + ", ".join(sorted(set(d.table))),
            "n_points_per_chip": {c: int((ch == c).sum()) for c in AMD_CHIPS},
            "nvidia_family": {c: dict(errs(pred[ch == c], t[ch == c]),
                                      median_ratio=float(f"{np.median(pred[ch == c] / t[ch == c]):.3f}")) for c in AMD_CHIPS},
            "amd_own_family": {"generic": own["generic"], "in_sample": own["in_sample"],
                               "leave_one_chip_out": {k_: v for k_, v in own["leave_one_chip_out"].items()
                                                      if k_ != "params_without"}},
            "nvidia_family_transfers": bool(keep),
            "rule": "the NVIDIA family serves the MoE layer on AMD where its median error on each chip is no worse than "
                    "an AMD-fitted family's on the CDNA generation it did not see (no 'fp8_block@cdna' MoE family then)"}


def amd_bf16_check(aiter: Path, nvidia: dict, commit: str = AITER_COMMIT) -> dict:
    """How the NVIDIA tensor family (BF16 at r = 1) predicts aiter's tuned BF16 GEMMs (aiter/configs/**/
    *bf16_tuned_gemm.csv). Their rows of a catalog chip are MI355X's only (gfx950, 256 CUs; gfx942 rows are
    80-CU MI308X), so no second CDNA generation could test an AMD BF16 fit: this is a check, not a fit."""
    d = _aiter_tables(aiter, commit, lambda f: f.endswith("bf16_tuned_gemm.csv"))
    d = d[(d.gfx == "gfx950") & (d.cu_num == 256) & (d.us > 0)].sort_values("us").drop_duplicates(["M", "N", "K"])
    ch = load_catalog().system("mi355x").chip
    M, N, K = (d[c].astype(float).to_numpy() for c in "MNK")
    X = {"tc": 2 * M * N * K / float(ch.flops_per_s("bf16")), "tm": (N * K + M * K + M * N) * 2 / float(ch.hbm_bytes_per_s),
         "r": np.ones(len(M)), "q": np.zeros(len(M)), "rows": M}
    qn, tile = _fam_in(nvidia)
    ratio = fam_time(qn, X, tile) / (d.us.to_numpy() * US)
    return {"rows": int(len(M)), "chip": "mi355x (gfx950, 256 CUs)",
            "median_abs_error": float(f"{np.median(np.abs(ratio - 1)):.3f}"),
            "median_ratio": float(f"{np.median(ratio):.3f}"),
            "median_ratio_by_m": {k: float(f"{np.median(ratio[(M > lo) & (M <= hi)]):.3f}")
                                  for k, lo, hi in (("1-16", 0, 16), ("17-256", 16, 256), ("257-4096", 256, 4096),
                                                    (">4096", 4096, np.inf)) if ((M > lo) & (M <= hi)).any()}}


def amd_fp4_check(aiter: Path, gemm_tensor: dict, moe_tensor: dict, extract=None, commit: str = AITER_COMMIT) -> dict:
    """FP4 from the datasheet, tested on a chip with FP4 units that is not held out: the tensor families at
    MI355X's datasheet FP4 line (r = 4, the κ rule's extrapolation from r = 2) against aiter's tuned MXFP4
    kernels on gfx950 — dense GEMMs with MXFP4 weights and activations (a4w4_blockscale_tuned_gemm*.csv) and
    fused-MoE layers with MXFP4 weights and activations (*tuned_fmoe*.csv, per_1x32). aiter times the kernel
    on inputs already quantised, so no activation-quantise floor (q = 0). A check, not a fit: one chip."""
    ch = load_catalog().system("mi355x").chip
    F4, F16, B = float(ch.flops_per_s("fp4")), float(ch.flops_per_s("bf16")), float(ch.hbm_bytes_per_s)
    r = F4 / F16
    out = {"chip": "mi355x (gfx950, 256 CUs)", "r": float(f"{r:.4g}"), "source": f"github ROCm/aiter (MIT) at {commit}"}

    d = _aiter_tables(aiter, commit, lambda f: "a4w4_blockscale_tuned_gemm" in f and f.endswith(".csv"))
    d = d[(d.gfx == "gfx950") & (d.cu_num == 256) & (d.us > 0)].sort_values("us").drop_duplicates(["M", "N", "K"])
    M, N, K = (d[c].astype(float).to_numpy() for c in "MNK")
    X = {"tc": 2 * M * N * K / F4, "tm": (N * K * MXFP4_BYTES + M * K * MXFP4_BYTES + M * N * 2) / B,
         "r": np.full(len(M), r), "q": np.zeros(len(M)), "rows": M}
    q, tile = _fam_in(gemm_tensor)
    ratio = fam_time(q, X, tile) / (d.us.to_numpy() * US)
    cb = X["tc"] >= X["tm"]
    out["dense"] = {"rows": int(len(M)), "median_abs_error": float(f"{np.median(np.abs(ratio - 1)):.3f}"),
                    "median_ratio": float(f"{np.median(ratio):.3f}"),
                    "compute_side": {"rows": int(cb.sum()), "median_ratio": float(f"{np.median(ratio[cb]):.3f}")},
                    "memory_side": {"rows": int((~cb).sum()), "median_ratio": float(f"{np.median(ratio[~cb]):.3f}")}}
    m = _aiter_tables(aiter, commit, lambda f: "fmoe" in f and "untuned" not in f and f.endswith(".csv"))
    m = m[(m.q_type == "QuantType.per_1x32") & (m.cu_num == 256) & (m.us > 0) & (m.q_dtype_w == "torch.float4_e2m1fn_x2")
          & (m.q_dtype_a == "torch.float4_e2m1fn_x2")]
    if "gfx" in m.columns:
        m = m[m.gfx.isna() | (m.gfx == "gfx950")]
    m = m.sort_values("us").drop_duplicates(["token", "model_dim", "inter_dim", "expert", "topk"])
    T, h, i, E, k = (m[c].astype(float).to_numpy() for c in ("token", "model_dim", "inter_dim", "expert", "topk"))
    A, touched = T * k, E * (1 - (1 - k / E) ** T)
    Xm = {"tc": 2 * 3 * A * h * i / F4, "tm": (touched * 3 * h * i * MXFP4_BYTES + A * h * (MXFP4_BYTES + 2)) / B,
          "r": np.full(len(A), r), "q": np.zeros(len(A)), "rows": A / touched, "ep": np.zeros(len(A))}
    q, tile = _fam_in(moe_tensor)
    ratio = fam_time(q, Xm, tile) / (m.us.to_numpy() * US)
    out["moe"] = {"rows": int(len(A)), "median_abs_error": float(f"{np.median(np.abs(ratio - 1)):.3f}"),
                  "p90_abs_error": float(f"{np.quantile(np.abs(ratio - 1), 0.9):.3f}"),
                  "median_ratio": float(f"{np.median(ratio):.3f}"),
                  "median_ratio_by_tokens": {kk: float(f"{np.median(ratio[(T > lo) & (T <= hi)]):.3f}")
                                             for kk, lo, hi in (("1-16", 0, 16), ("17-256", 16, 256),
                                                                ("257-4096", 256, 4096), (">4096", 4096, np.inf))
                                             if ((T > lo) & (T <= hi)).any()}}
    out["tables"] = sorted(set(d.table) | set(m.table))
    if extract is not None:
        dd = d.assign(m_decade=np.floor(np.log10(M)).clip(max=4))
        extract["amd_fp4_gemm"] = _sample(dd, ["m_decade"], EXTRACT_ROWS // 5)[["gfx", "cu_num", "M", "N", "K", "us"]] \
            .rename(columns={"M": "m", "N": "n", "K": "k"})
        extract["amd_fp4_moe"] = m[["cu_num", "token", "model_dim", "inter_dim", "expert", "topk", "us"]].reset_index(drop=True)
    return out


def do_amd_gemm(aiter: Path, doc, extract=None, nvidia=None, kappa=None):
    """The block-FP8 GEMM family fitted on AMD's own kernels ("fp8_block@cdna"), κ held at the dense tensor
    family's (every AMD row runs at r = 2: FP8 at twice BF16, so κ is not identified here), with the
    NVIDIA family it replaces on these chips evaluated beside it ("borrowed_nvidia_curve")."""
    # the tuner's shapes are 90 % prefill-sized (M > 1,024) and 3 % decode-sized (M <= 64): each decade of M
    # (1-9, 10-99, ..., >= 10^4) carries equal weight per chip, as the NVIDIA tables' grids over M do by design,
    # so the curve serves decode as well as prefill (a fit weighting every row alike charged M <= 16 at
    # 1.2-1.4x the measured time)
    df = aiter_fp8_block_frame(aiter)
    df = _sample(df.assign(m_decade=np.floor(np.log10(df.M.astype(float))).clip(upper=4)), ["chip", "m_decade"],
                 MAX_ROWS // 5)
    X, t, ch = arrays(df, FAM_COLS), df.t.to_numpy(), df.chip.to_numpy()
    dt = np.array(["fp8_block"] * len(t))
    grp = np.char.add(ch.astype(str), df.m_decade.astype(int).astype(str).to_numpy())
    r = family_report(X, t, ch, dt, grp, kappa=kappa, chip_names=list(AMD_CHIPS))
    r["weighting"] = "each chip x decade of M equal total weight (<= MAX_ROWS/5 seeded rows each)"
    r["source"] = f"github ROCm/aiter (MIT) at {AITER_COMMIT}: " + "; ".join(sorted(set(AITER_SOURCES)))
    r["chips"] = {c: f"{g} with {n} CUs" for c, (g, n) in AMD_CHIPS.items()}
    if nvidia is not None:
        qn, tile = _fam_in(nvidia)
        pred = fam_time(qn, X, tile)
        cb = X["tc"] >= X["tm"]
        r["borrowed_nvidia_curve"] = {
            c: dict(errs(pred[ch == c], t[ch == c]), median_ratio=float(f"{np.median(pred[ch == c] / t[ch == c]):.3f}"),
                    compute_side_median_ratio=float(f"{np.median(pred[(ch == c) & cb] / t[(ch == c) & cb]):.3f}"))
            for c in AMD_CHIPS}
    x = (df.tc / df.tm).to_numpy()
    eff = (np.maximum(df.tc, df.tm) / df.t).to_numpy()
    r["eff_vs_intensity_over_ridge"] = binned(x, eff, [0, 1 / 64, 1 / 16, 1 / 4, 1, 4, 16, 64, np.inf], ch,
                                              chips=AMD_CHIPS)
    if extract is not None:  # seeded, per chip and decade of M, like the fit
        extract["amd_gemm"] = _sample(df, ["chip", "m_decade"], EXTRACT_ROWS // 5)[
            ["chip", "gfx", "cu_num", "M", "N", "K", "us"]].rename(columns={"M": "m", "N": "n", "K": "k"})
    doc["gemm/aiter"] = {"fp8_block@cdna": r}
    return r


def moe_family_frame(aic, peaks, engines):
    out = []
    for engine in engines:
        for c in GEMM_CHIPS:
            d = load_table(aic, c, "moe", engine, "moe_perf.parquet")
            if d is None:
                continue
            d = d[d.moe_dtype.isin(MOE_DTYPES) & (d.distribution == "balanced")]
            if not len(d):
                continue
            d = d.assign(n_mat=np.where(d.kernel_source.str.contains("nongated"), 2, 3), engine=engine)
            out.append(dedup(d, ["engine", "moe_dtype", "n_mat", "num_tokens", "hidden_size", "inter_size", "topk",
                                 "num_experts", "moe_tp_size", "moe_ep_size"]))
    df = pd.concat(out, ignore_index=True)
    T, h, i, k, E, tp, ep, nm = (df[c].astype(float) for c in ["num_tokens", "hidden_size", "inter_size", "topk",
                                                                "num_experts", "moe_tp_size", "moe_ep_size", "n_mat"])
    f = df.moe_dtype.map(MOE_DTYPES)
    cls = f.map(lambda x: x[1])
    bw, bi = f.map(lambda x: x[2]).astype(float), f.map(lambda x: x[3]).astype(float)
    F = np.array([peaks.flops(c, x) for c, x in zip(df.chip, cls)])
    F16 = np.array([peaks.flops(c, "bf16") for c in df.chip])
    B = df.chip.map(peaks.hbm).astype(float)
    il = i / tp
    A = T * k / ep  # token-expert pairs on one rank (num_tokens is the global count)
    # 'balanced' tables spread the pairs evenly: a rank's experts are all hit once pairs >= experts
    touched = np.minimum(E / ep, A)
    df["family"] = f.map(lambda x: x[0])
    df["tc"] = 2 * nm * A * h * il / F
    df["foot"] = touched * nm * h * il * bw
    df["tm"] = (df.foot + A * h * (bi + 2)) / B
    df["r"] = F / F16
    df["q"] = f.map(lambda x: x[4]).astype(float)
    df["rows"] = A / touched  # M of each expert's GEMM
    df["ep"] = (ep > 1).astype(float)  # the expert-parallel path (its own permute kernels): GemmFamily.t0ep_s
    df["t"] = df.latency * MS
    df = df[_keep_dram(df.tc.to_numpy(), df.tm.to_numpy(), df.foot.to_numpy(), df.chip.to_numpy())]
    return _sample(df, ["engine", "chip", "moe_dtype"], MAX_ROWS)


def do_moe(aic, peaks, doc, extract=None, gemm_tensor=None):
    """The MoE layer's families. κ is the dense GEMMs' (gemm_tensor): the MoE tables hold too few
    compute-side FP8 kernels to identify it (free fits give κ = 0 … 0.57 at the same error), and
    κ is the chip's non-tensor work per tensor FLOP, the same inside a grouped GEMM."""
    res = {}
    kappa = gemm_tensor["generic"]["kappa"] if gemm_tensor else None
    kloco = ({c: v["kappa"] for c, v in (gemm_tensor.get("leave_one_chip_out") or {}).get("params_without", {}).items()}
             if gemm_tensor else None)
    for fam in ("tensor", "fp8_block", "w4a16"):
        df = moe_family_frame(aic, peaks, MOE_ENGINES[fam])
        d = df[df.family == fam]
        if len(d) < 50:
            continue
        X, t, ch = arrays(d, FAM_COLS + ["ep"]), d.t.to_numpy(), d.chip.to_numpy()
        dt = (d.engine + ":" + d.moe_dtype).to_numpy() if len(MOE_ENGINES[fam]) > 1 else d.moe_dtype.to_numpy()
        grp = np.char.add(ch.astype(str), dt.astype(str))
        r = family_report(X, t, ch, dt, grp, kappa=kappa, kappa_loco=kloco)
        r["engines"] = list(MOE_ENGINES[fam])
        if fam == "tensor":
            r["dtype_step"] = dtype_step_test(X, t, ch, dt, grp, r["generic"]["tile_m"], kappa=kappa)
            if kappa is None:
                kappa = r["generic"]["kappa"]
                kloco = {c: v["kappa"] for c, v in (r["leave_one_chip_out"] or {}).get("params_without", {}).items()}
        eff = (np.maximum(d.tc, d.tm) / d.t).to_numpy()
        r["eff_vs_tokens_per_expert"] = binned(d.rows.to_numpy(), eff, [0, 1, 4, 16, 64, 256, 1024, np.inf],
                                               d.chip.to_numpy(), chips=GEMM_CHIPS)
        res[fam] = r
        if extract is not None:
            extract.setdefault("moe", []).append(_sample(d, ["engine", "chip", "moe_dtype"], EXTRACT_ROWS)[
                ["chip", "engine", "moe_dtype", "n_mat", "num_tokens", "hidden_size", "inter_size", "topk",
                 "num_experts", "moe_tp_size", "moe_ep_size", "latency"]].rename(columns={"moe_dtype": "dtype"}))
    res["_tables"] = "balanced routing only (the uniform-routing byte model); families: " + "; ".join(
        f"{k}: {', '.join(v)}" for k, v in MOE_ENGINES.items())
    doc["moe"] = res
    return res


# ----------------------------------------------------------------------------- attention
def attn_table(aic, engine, table, keys):
    """One attention table over the fitted chips: full attention (no window), GQA-consistent head
    counts, one row per configuration."""
    dfs = [load_table(aic, c, "attention", engine, table) for c in CHIPS]
    df = pd.concat([d for d in dfs if d is not None], ignore_index=True)
    df = df[(df.window_size == 0) & (df.num_key_value_heads <= df.num_heads)
            & (df.num_heads % df.num_key_value_heads == 0)]
    return dedup(df, keys)


def ctx_attn_frame(aic, peaks, engine):
    df = attn_table(aic, engine, "context_attention_perf.parquet",
                    ["attn_dtype", "kv_cache_dtype", "batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim"])
    cls = df.attn_dtype.map(lambda d: "fp8" if d == "fp8" else "bf16")
    F = np.array([peaks.flops(c, k) for c, k in zip(df.chip, cls)])
    b, s, h, d = (df[c].astype(float) for c in ["batch_size", "isl", "num_heads", "head_dim"])
    df["flops"] = 4 * b * h * d * s * s / 2  # causal
    df["tc"] = df.flops / F
    df["s"] = s
    df["t"] = df.latency * MS
    return df


def do_ctx_attn(aic, peaks, engine, doc):
    df = ctx_attn_frame(aic, peaks, engine)
    res = {}
    for (dt, kvd), d in df.groupby(["attn_dtype", "kv_cache_dtype"]):
        if len(d) < 50:
            continue
        r = fit_family("flash", arrays(d, ["tc", "s"]), d.t.to_numpy(), d.chip.to_numpy())
        big = d[d.batch_size * d.num_heads >= 128]
        r["eff_vs_s_(b*h>=128)"] = binned(big.s.to_numpy(), (big.tc / big.t).to_numpy(),
                                          [1, 64, 256, 1024, 4096, 16385], big.chip.to_numpy())
        res[SHORT.get(dt, dt) + ("" if kvd == dt else "_kv" + SHORT.get(kvd, kvd))] = r
    doc[f"context_attention/{engine}"] = res
    return res


# Query heads per KV head the decode-attention curve is fitted on. In aiconfigurator's tables the
# configurations above 32 (48-128 query heads sharing one KV head) run 12-30x slower than their KV
# bytes at every batch and length (another kernel path), and pulled the pooled fit's bandwidth
# efficiency from ~0.82 to 0.65 (BF16 KV, TRT-LLM) for every model. No catalog model is above 29
# (Falcon-180B: 232 / 8); Llama-3.1-405B and Qwen3-235B are 16.
GQA_FITTED_MAX = 32


def gen_attn_frame(aic, peaks, engine):
    df = attn_table(aic, engine, "generation_attention_perf.parquet",
                    ["attn_dtype", "kv_cache_dtype", "batch_size", "isl", "step", "num_heads", "num_key_value_heads",
                     "head_dim"])
    df = df[df.num_heads <= GQA_FITTED_MAX * df.num_key_value_heads]
    b, h, kv, d = (df[c].astype(float) for c in ["batch_size", "num_heads", "num_key_value_heads", "head_dim"])
    s = (df.isl + df.step).astype(float)
    kvb = df.kv_cache_dtype.map(DTYPE_BYTES).astype(float)
    B = df.chip.map(peaks.hbm).astype(float)
    F = np.array([peaks.flops(c, "bf16") for c in df.chip])
    df["tkv"] = b * s * 2 * kv * d * kvb / B
    df["tq"] = 2 * b * h * d * 2 / B  # q in + out, bf16
    df["tm"] = df.tkv + df.tq
    df["tc"] = 4 * b * h * d * s / F
    df["s"] = s
    df["t"] = df.latency * MS
    return df


# the decode-attention shapes of catalog models per GPU (query heads, KV heads, head dim): Llama-3.1-8B
# TP1, Llama-3.1-70B TP4 and TP8, Llama-3.1-405B TP8, gpt-oss TP1, and one multi-head shape (Llama-2-7B
# TP1) — the extract tests/test_kernels.py checks
EXTRACT_ATTENTION_SHAPES = ((32, 8, 128), (16, 2, 128), (8, 1, 128), (16, 1, 128), (64, 8, 64), (32, 32, 128))

# Multi-head attention (one query head per KV head) and grouped-query attention (2-32) run different
# TensorRT-LLM decode kernels (the XQA kernels serve grouped heads; multi-head runs the masked-MHA
# kernel), and with FP8 KV they part: 0.50-0.65 of HBM bandwidth for multi-head against 0.75-0.85 for
# grouped heads where the KV read dominates (H100/H200). One curve through both put every grouped-
# query model's FP8 KV read ~20 % too slow, so each is fitted on its own: "kv_<dtype>" on grouped
# heads (every current catalog model), "kv_<dtype>_mha" on multi-head rows (Llama-2-7B-class).


def do_gen_attn(aic, peaks, engine, doc, extract=None):
    df = gen_attn_frame(aic, peaks, engine)
    if extract is not None:
        shape = list(zip(df.num_heads, df.num_key_value_heads, df.head_dim))
        keep = np.array([x in EXTRACT_ATTENTION_SHAPES for x in shape]) & df.batch_size.isin([1, 16, 128, 512]).to_numpy() \
            & df.s.isin([1024, 4096, 16384]).to_numpy()
        extract["attention"] = df[keep][["chip", "kv_cache_dtype", "batch_size", "s", "num_heads", "num_key_value_heads",
                                        "head_dim", "latency"]].rename(columns={"s": "context"}).reset_index(drop=True)
    res = {}
    mha = (df.num_heads == df.num_key_value_heads).to_numpy()
    for (dt, one), d in df.groupby([df.kv_cache_dtype, mha]):
        if len(d) < 50:
            continue
        t, ch = d.t.to_numpy(), d.chip.to_numpy()
        # grouped heads: the KV read blended with the FLOPs (query heads per KV head cost time beyond
        # the bytes: the roofline_pad form MLA decode uses), against the bytes-only forms. Multi-head:
        # the FLOPs are a fixed multiple of the KV bytes (2 per byte at BF16), so the blend's two
        # efficiencies cannot be told apart (the roofline_pad fit runs to its bounds, e_c ~0.005 and
        # p = 8); the bytes-only form is the curve, the blend kept beside it
        forms = {"roofline_pad": ["tc", "tkv", "tq", "s"], "bandwidth_pad": ["tkv", "tq", "s"],
                 "bandwidth_only": ["tm"]}
        main_form = "bandwidth_pad" if one else "roofline_pad"
        r = fit_family(main_form, arrays(d, forms[main_form]), t, ch)
        for form, cols in forms.items():
            if form == main_form:
                continue
            f = fit_family(form if form != "bandwidth_only" else "bandwidth", arrays(d, cols), t, ch)
            r[form] = {k: v for k, v in f.items() if k in ("generic", "in_sample", "leave_one_chip_out")}
        big = d[d.tm > 20 * r["generic"]["t0_s"]]
        r["eff_vs_s_(bytes-dominated)"] = binned(big.s.to_numpy(), (big.tm / big.t).to_numpy(),
                                                 [1, 128, 1024, 8192, 65536, np.inf], big.chip.to_numpy())
        r["query_heads_per_kv_head"] = "1 (multi-head)" if one else f"2-{GQA_FITTED_MAX} (grouped)"
        res["kv_" + SHORT.get(dt, dt) + ("_mha" if one else "")] = r
    doc[f"generation_attention/{engine}"] = res
    return res


# ----------------------------------------------------------------------------- MLA
def mla_dims(aic):
    f = aic / "model_configs" / "deepseek-ai--DeepSeek-V3_config.json"
    c = json.loads(f.read_text())
    SOURCES.append("model_configs/deepseek-ai--DeepSeek-V3_config.json")
    return {k: int(c[k]) for k in ["kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"]}


def do_mla(aic, peaks, engine, doc):
    dims = mla_dims(aic)
    out = {}
    dfs = [load_table(aic, c, "mla", engine, "context_mla_perf.parquet") for c in CHIPS]
    dfs = [d for d in dfs if d is not None]
    if dfs:
        df = dedup(pd.concat(dfs, ignore_index=True),
                   ["mla_dtype", "kv_cache_dtype", "num_heads", "batch_size", "isl"])
        F = np.array([peaks.flops(c, "fp8" if m == "fp8" else "bf16") for c, m in zip(df.chip, df.mla_dtype)])
        b, h, s = (df[c].astype(float) for c in ["batch_size", "num_heads", "isl"])
        dqk = dims["qk_nope_head_dim"] + dims["qk_rope_head_dim"]
        df["tc"] = 2 * b * h * s * s * (dqk + dims["v_head_dim"]) / 2 / F
        df["s"] = s
        df["t"] = df.latency * MS
        res = {}
        for kvd, d in df.groupby("kv_cache_dtype"):
            r = fit_family("flash", arrays(d, ["tc", "s"]), d.t.to_numpy(), d.chip.to_numpy())
            big = d[d.batch_size * d.num_heads >= 128]
            r["eff_vs_s_(b*h>=128)"] = binned(big.s.to_numpy(), (big.tc / big.t).to_numpy(),
                                              [1, 64, 256, 1024, 4096, np.inf], big.chip.to_numpy())
            res["kv_" + SHORT.get(kvd, kvd)] = r
        out["mla_context"] = res
    dfs = [load_table(aic, c, "mla", engine, "generation_mla_perf.parquet") for c in CHIPS]
    dfs = [d for d in dfs if d is not None]
    if dfs:
        df = dedup(pd.concat(dfs, ignore_index=True),
                   ["mla_dtype", "kv_cache_dtype", "num_heads", "batch_size", "isl", "step"])
        r_, dr = dims["kv_lora_rank"], dims["qk_rope_head_dim"]
        b, h = df.batch_size.astype(float), df.num_heads.astype(float)
        s = (df.isl + df.step).astype(float)
        kvb = df.kv_cache_dtype.map(DTYPE_BYTES).astype(float)
        B = df.chip.map(peaks.hbm).astype(float)
        F = np.array([peaks.flops(c, "bf16") for c in df.chip])
        df["tkv"] = b * s * (r_ + dr) * kvb / B
        df["tq"] = (b * h * (r_ + dr) * 2 + b * h * r_ * 2) / B
        df["tm"] = df.tkv + df.tq
        df["tc"] = 2 * b * h * s * (2 * r_ + dr) / F
        df["s"] = s
        df["t"] = df.latency * MS
        res = {}
        for kvd, d in df.groupby("kv_cache_dtype"):
            t, ch = d.t.to_numpy(), d.chip.to_numpy()
            r = fit_family("roofline_pad", arrays(d, ["tc", "tkv", "tq", "s"]), t, ch)
            hop = d.chip.str.startswith("h").to_numpy()
            hr = fit_family("roofline_pad", sub(arrays(d, ["tc", "tkv", "tq", "s"]), hop), t[hop], ch[hop])
            r["generic_hopper_only"] = {k: hr[k] for k in ("generic", "in_sample", "leave_one_chip_out")}
            r["bandwidth_only"] = {k: v for k, v in fit_family("bandwidth", arrays(d, ["tm"]), t, ch).items()
                                   if k in ("generic", "in_sample", "leave_one_chip_out")}
            eff = (np.maximum(d.tc, d.tm) / d.t).to_numpy()
            r["eff_vs_heads_(s>=4096)"] = binned(d.num_heads.to_numpy()[d.s >= 4096], eff[d.s.to_numpy() >= 4096],
                                                 [1, 2, 8, 32, 64, 128, 129], ch[d.s.to_numpy() >= 4096])
            res["kv_" + SHORT.get(kvd, kvd)] = r
        out["mla_generation"] = res
    out["mla_dims_from_DeepSeek-V3_config"] = dims
    for k, v in out.items():
        doc[f"{k}/{engine}"] = v
    return out


EXTRACT_README = """Small extracts of the aiconfigurator-core 0.12.0 kernel tables (PyPI wheel, Apache-2.0:
systems/data/<chip>/{{gemm,moe}}/<engine>/<version>/*_perf.parquet), for tests/test_kernels.py: up to
{n} seeded rows per chip x dtype (x engine for MoE) of the points scripts/fit_kernels.py fits on
(after its L2 rule), latency in seconds. Chips: a100_sxm, h100_sxm, h200_sxm, l40s. No Blackwell part.
kernels-attention.csv.gz: every TensorRT-LLM decode-attention row (generation_attention_perf.parquet)
of the catalog models' per-GPU shapes EXTRACT_ATTENTION_SHAPES at batch 1, 16, 128, 512 and context
1,024, 4,096, 16,384 (context = isl + step).
Written by: python scripts/fit_kernels.py --aic <unpacked wheel> --out src/tokenmath/validation/kernels.json --only gemm,moe,attention --extract tests/data
Tables: {tables}
"""


COMM_README = """kernels-comm.csv.gz: every row scripts/fit_kernels.py fits the collectives on (aiconfigurator-core
0.12.0: systems/data/<chip>/comm/nccl/<version>/nccl_perf.parquet and comm/<engine>/<version>/
custom_allreduce_perf.parquet, the newest version of each; chips a100_sxm, h100_sxm, h200_sxm; one
NVLink node, 2-8 GPUs), after its dedup: op (NCCL op, or custom_all_reduce_<engine>), chip, num_gpus,
bytes (message_size elements x dtype bytes), latency in seconds, for tests/test_kernels.py.
Written by: python scripts/fit_kernels.py --aic <unpacked wheel> --out src/tokenmath/validation/kernels.json --only comm --extract tests/data
Tables: {tables}
"""


AMD_README = """kernels-amd-gemm.csv.gz: up to {n} seeded rows per chip of the block-FP8 GEMM timings AMD's aiter
tuner measured (github ROCm/aiter, MIT, commit {commit}; the tables below), the rows scripts/fit_kernels.py
fits the "fp8_block@cdna" family on: chip (the catalog system whose datasheet peaks the fit uses: mi300x for
gfx942 with 304 CUs, mi355x for gfx950 with 256 CUs), gfx, cu_num, m, n, k, us (the best kernel's time,
microseconds). FP8 activations with 1x128 block scales, FP8 weights with 128x128 block scales, BF16 output.
kernels-amd-fp4-gemm.csv.gz: up to {n} seeded rows of aiter's MXFP4 GEMM timings on MI355X (gfx950, 256
CUs; a4w4_blockscale_tuned_gemm*.csv: MXFP4 weights and activations, BF16 out), columns as above.
kernels-amd-fp4-moe.csv.gz: every MXFP4 fused-MoE layer timing on MI355X in the tuned fmoe tables (per_1x32,
MXFP4 weights and activations): token, model_dim, inter_dim (per GPU), expert, topk, us.
Written by: python scripts/fit_kernels.py --aic <unpacked wheel> --aiter <ROCm/aiter clone> --out src/tokenmath/validation/kernels.json --only amd_gemm --extract tests/data
Tables: {tables}
"""


def write_extracts(extract: dict, folder: Path):
    """tests/data/kernels-gemm.csv.gz, kernels-moe.csv.gz, kernels-attention.csv.gz and a README
    naming their source tables; kernels-comm.csv.gz and its own README (a run with --only comm)."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in (("amd_fp4_gemm", "kernels-amd-fp4-gemm.csv.gz"), ("amd_fp4_moe", "kernels-amd-fp4-moe.csv.gz")):
        frame = extract.pop(key, None)
        if frame is not None:
            frame.to_csv(folder / name, index=False, compression={"method": "gzip", "mtime": 0})
    amd = extract.pop("amd_gemm", None)
    if amd is not None:
        amd.to_csv(folder / "kernels-amd-gemm.csv.gz", index=False, compression={"method": "gzip", "mtime": 0})
        (folder / "kernels-amd-README.md").write_text(AMD_README.format(n=EXTRACT_ROWS, commit=AITER_COMMIT,
                                                                        tables="; ".join(sorted(set(AITER_SOURCES)))))
    comm = extract.pop("comm", None)
    if comm is not None:
        df = pd.concat(comm, ignore_index=True)
        df = df.assign(latency_s=(df.pop("latency") * MS).map(lambda v: float(f"{v:.5g}")))
        df.to_csv(folder / "kernels-comm.csv.gz", index=False, compression={"method": "gzip", "mtime": 0})
        tables = "; ".join(s for s in sorted(set(SOURCES)) if "/comm/" in s)
        (folder / "kernels-comm-README.md").write_text(COMM_README.format(tables=tables))
    if not extract:
        return
    for name, frame in (("gemm", extract.get("gemm")), ("moe", extract.get("moe")),
                        ("attention", extract.get("attention"))):
        if frame is None:
            continue
        df = pd.concat(frame, ignore_index=True) if isinstance(frame, list) else frame
        df = df.assign(latency_s=(df.pop("latency") * MS).map(lambda v: float(f"{v:.5g}")))
        df.to_csv(folder / f"kernels-{name}.csv.gz", index=False, compression={"method": "gzip", "mtime": 0})
    tables = "; ".join(s for s in sorted(set(SOURCES)) if "/gemm/trtllm/" in s or "/moe/" in s
                       or "/attention/trtllm/" in s and "generation" in s)
    (folder / "kernels-README.md").write_text(EXTRACT_README.format(n=EXTRACT_ROWS, tables=tables))


# ----------------------------------------------------------------------------- comm
FACTOR = {"all_reduce": lambda n: 2 * (n - 1) / n, "all_gather": lambda n: (n - 1) / n,
          "reduce_scatter": lambda n: (n - 1) / n, "alltoall": lambda n: (n - 1) / n}
HOPS = {"all_reduce": lambda n: 2 * (n - 1), "all_gather": lambda n: n - 1,
        "reduce_scatter": lambda n: n - 1, "alltoall": lambda n: n - 1}


def _by_size(pred, d):
    """Median signed error pred/measured − 1 of the generic fit by message size: where a form's bias
    sits (small messages set the latency, large ones the bandwidth a big batch's all-reduce gets)."""
    t, b = (d.latency * MS).to_numpy(), d.bytes.to_numpy()
    out = {}
    for name, lo, hi in (("< 1 MB", 0, 1e6), ("1-32 MB", 1e6, 32e6), (">= 32 MB", 32e6, np.inf)):
        sel = (b >= lo) & (b < hi)
        if sel.any():
            out[name] = float(f"{np.median(pred[sel] / t[sel] - 1):.3f}")
    return out


def _comm_fit(d, op, peaks):
    n = d.num_gpus.astype(float)
    d = d.assign(tb=FACTOR[op](n) * d.bytes / d.chip.map(peaks.link).astype(float),
                 t=d.latency * MS)
    best = None
    for form, hops_kind in [("comm", "ring_hops"), ("comm", "constant"), ("comm_knee", "constant")]:
        hops = HOPS[op](n) if hops_kind == "ring_hops" else np.ones_like(n)
        X = {"hops": np.asarray(hops, float), "tb": d.tb.to_numpy()}
        r = fit_family(form, X, d.t.to_numpy(), d.chip.to_numpy())
        r["hops"] = hops_kind
        r["signed_median_by_bytes"] = _by_size(MODELS[form][4](_from_out(form, r["generic"]), X), d)
        if best is None or r["in_sample"]["median"] + r["in_sample"]["p90"] < \
                best["in_sample"]["median"] + best["in_sample"]["p90"]:
            alt = best
            best = r
        else:
            alt = r
    best["alternative_hops_errors"] = {"form": alt["form"], "hops": alt["hops"], "in_sample": alt["in_sample"],
                                       "signed_median_by_bytes": alt["signed_median_by_bytes"],
                                       "leave_one_chip_out": alt["leave_one_chip_out"]}
    # message size (bytes) where latency term == bandwidth term, generic params
    g = best["generic"]
    cross = {}
    for c in CHIPS:
        if not (d.chip == c).any():
            continue
        row = {}
        for nn in sorted(d.num_gpus.unique()):
            hops = HOPS[op](nn) if best["hops"] == "ring_hops" else 1
            row[str(int(nn))] = float(f"{g['alpha_s'] * hops * peaks.link(c) * g['e_link'] / FACTOR[op](nn):.3g}")
        cross[c] = row
    best["crossover_bytes_generic"] = cross
    return best


def do_comm(aic, peaks, doc, extract=None):
    res = {}
    keep = ["op_name", "chip", "num_gpus", "bytes", "latency"]
    dfs = [load_table(aic, c, "comm", "nccl", "nccl_perf.parquet", pick="newest") for c in CHIPS]
    df = pd.concat([d for d in dfs if d is not None], ignore_index=True)
    df = dedup(df, ["op_name", "nccl_dtype", "num_gpus", "message_size"])
    # message_size counts elements (int8 rows take ~half the time of half rows at equal size)
    df["bytes"] = df.message_size * df.nccl_dtype.map(DTYPE_BYTES)
    if extract is not None:
        extract.setdefault("comm", []).append(df[df.op_name.isin(list(FACTOR))][keep])
    for op, d in df.groupby("op_name"):
        if op in FACTOR:
            res[op] = _comm_fit(d, op, peaks)
            res[op]["engine"] = "nccl"
    for eng in ["trtllm", "vllm", "sglang"]:
        dfs = [load_table(aic, c, "comm", eng, "custom_allreduce_perf.parquet", pick="newest") for c in CHIPS]
        dfs = [d for d in dfs if d is not None]
        if not dfs:
            continue
        d = pd.concat(dfs, ignore_index=True)
        dcol = "allreduce_dtype" if "allreduce_dtype" in d else None
        d = dedup(d, ["num_gpus", "message_size"] + ([dcol] if dcol else []))
        d["bytes"] = d.message_size * (d[dcol].map(DTYPE_BYTES) if dcol else 2)
        if extract is not None:
            extract.setdefault("comm", []).append(d.assign(op_name=f"custom_all_reduce_{eng}")[keep])
        r = _comm_fit(d, "all_reduce", peaks)
        r["engine"] = eng
        res[f"custom_all_reduce_{eng}"] = r
    doc["comm"] = res
    return res


# ----------------------------------------------------------------------------- doc helpers
def md_bins(rows):
    cols = ["bin", "n", "median"] + [c for c in GEMM_CHIPS if any(c in r for r in rows)]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(out)


def slim(r):
    return {k: v for k, v in r.items() if k in ("form", "generic", "n_points", "in_sample", "leave_one_chip_out")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aic", required=True, type=Path, help="unpacked aiconfigurator_core package dir")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--only", default="", help="comma list of ops to refit (gemm, moe, attention, comm); the "
                    "others are kept from the existing --out file")
    ap.add_argument("--extract", type=Path, default=None,
                    help="write the small CSV extracts of the GEMM and MoE tables the tests fit on (tests/data)")
    ap.add_argument("--aiter", type=Path, default=None,
                    help="a clone (or bare git dir) of github ROCm/aiter holding commit AITER_COMMIT: fits the AMD "
                         "block-FP8 GEMM family on its tuned tables (op 'amd_gemm' for --only)")
    ap.add_argument("--print-doc", action="store_true", help="print markdown tables for docs/kernels.md")
    a = ap.parse_args(argv)
    only = {x.strip() for x in a.only.split(",") if x.strip()}
    old = json.loads(a.out.read_text()) if only and a.out.is_file() else None
    peaks = Peaks()
    doc: dict = {}
    ops: dict = dict(old["ops"]) if old else {}
    by_engine = dict(old.get("by_engine", {})) if old else {}
    extract: dict | None = {} if a.extract else None
    if not only or "gemm" in only:
        ops["gemm"] = do_gemm(a.aic, peaks, "trtllm", doc, extract)
        for eng in ["vllm", "sglang"]:
            by_engine.setdefault(eng, {})["gemm"] = {k: slim(v) for k, v in do_gemm(a.aic, peaks, eng, {}).items()}
    if not only or "attention" in only:
        ops["context_attention"] = do_ctx_attn(a.aic, peaks, "trtllm", doc)
        ops["generation_attention"] = do_gen_attn(a.aic, peaks, "trtllm", doc, extract)
        mla = do_mla(a.aic, peaks, "trtllm", doc)
        ops["mla_context"] = mla["mla_context"]
        ops["mla_generation"] = mla["mla_generation"]
        ops["mla_dims"] = mla["mla_dims_from_DeepSeek-V3_config"]
        for eng in ["vllm", "sglang"]:
            e = by_engine.setdefault(eng, {})
            e["context_attention"] = {k: slim(v) for k, v in do_ctx_attn(a.aic, peaks, eng, {}).items()}
            e["generation_attention"] = {k: slim(v) for k, v in do_gen_attn(a.aic, peaks, eng, {}).items()}
    if not only or "moe" in only:
        ops["moe"] = do_moe(a.aic, peaks, doc, extract, gemm_tensor=ops.get("gemm", {}).get("tensor"))
        for e in by_engine.values():
            e.pop("moe", None)  # engines are pooled inside the MoE families (MOE_ENGINES)
    if not only or "comm" in only:
        ops["comm"] = do_comm(a.aic, peaks, doc, extract)
    if a.aiter is not None and (not only or "amd_gemm" in only):
        g = ops["gemm"]
        g["fp8_block@cdna"] = do_amd_gemm(a.aiter, doc, extract, nvidia=g.get("fp8_block"),
                                          kappa=g["tensor"]["generic"]["kappa"])
        g["tensor"]["on_amd_bf16"] = amd_bf16_check(a.aiter, g["tensor"])
        ops["moe"]["tensor"]["fp4_on_mi355x"] = g["tensor"]["fp4_on_mi355x"] = amd_fp4_check(
            a.aiter, g["tensor"], ops["moe"]["tensor"], extract)
        chk = amd_moe_check(a.aiter, ops["moe"]["fp8_block"], g["tensor"]["generic"]["kappa"])
        ops["moe"]["fp8_block"]["on_amd_fused_moe"] = chk
        if not chk["nvidia_family_transfers"]:
            print("note: the NVIDIA MoE block-FP8 family does not transfer to AMD's fused MoE here; an AMD MoE "
                  "family ('fp8_block@cdna' in ops.moe) would be the next fit")
    elif only and "amd_gemm" in only:
        raise SystemExit("--only amd_gemm needs --aiter")
    if extract is not None and extract:
        write_extracts(extract, a.extract)
    sources = sorted(set(SOURCES))
    if AITER_SOURCES:
        sources.append(f"github ROCm/aiter (MIT) {AITER_COMMIT[:10]} tuned tables: "
                       + ", ".join(sorted({x.rsplit('/', 1)[-1] for x in AITER_SOURCES})))
    if old:  # the ops kept from the old file keep their tables in the source list
        sources = sorted(set(sources) | set(old.get("source", "").split(": ", 1)[-1].split("; ")) - {""})
    result = {
        "source": "aiconfigurator-core 0.12.0 (PyPI, Apache-2.0): " + "; ".join(sources),
        "chips": list(CHIPS),
        "gemm_moe_chips": list(GEMM_CHIPS),
        "excluded": "Blackwell (b200, b300, gb200, gb300, rtx_pro_6000, b60) never read: held-out target",
        "fit_date": _dt.date.today().isoformat(),
        "peaks_from_tokenmath_catalog": peaks.table() | (amd_peaks() if "fp8_block@cdna" in ops.get("gemm", {}) else {}),
        "forms": {
            "roofline": "t = ((t_c/e_c)^p + (t_m/e_m)^p)^(1/p) + t0; t_c = flops/F_peak[dtype], t_m = bytes/HBM_bw",
            "flash": "t = t_c / (e_max * s/(s+s_half)) + t0; t_c = causal flops/F_peak[attn dtype], s = sequence length (tokens)",
            "bandwidth": "t = t_m / e + t0; t_m = bytes/HBM_bw",
            "bandwidth_pad": "t = (t_kv*(s+s0)/s + t_q)/e + t0; t_kv = KV-cache bytes/HBM_bw, t_q = q+out bytes/HBM_bw, "
                             "s0 = per-sequence padding in tokens (KV tile granularity)",
            "roofline_pad": "roofline with t_m = t_kv*(s+s0)/s + t_q",
            "gemm_family": "t = ((t_c*pad/e_c(r))^p + (t_m/e_m)^p)^(1/p) + t0 + q*t0q + ep*t0ep; 1/e_c(r) = 1/e_c0 + kappa*r; "
                           "r = kernel dtype peak / BF16 peak of the chip, q = 1 where activations are quantised, "
                           "pad = ceil(M/tile_m)*tile_m/M (tokens per expert for MoE); t_m counts block-scale bytes; "
                           "ep = 1 for a MoE layer on the expert-parallel path (moe_ep_size > 1)",
            "comm": "t = alpha*hops(n) + factor(n)*bytes/(scaleup_bw*e_link); factor: all_reduce 2(n-1)/n, others (n-1)/n; "
                    "hops: 'ring_hops' = all_reduce 2(n-1), others n-1, or 'constant' = 1 (whichever fits better, see 'hops')",
            "comm_knee": "t = ((alpha*hops(n))^p + (factor(n)*bytes/(scaleup_bw*e_link))^p)^(1/p), hops 'constant'; p = 1 "
                         "is the comm form; each collective takes whichever of the forms fits better",
        },
        "errors": "|t_pred/t_meas - 1|: in_sample = generic fit on all chips; leave_one_chip_out = fit on the other "
                  "chip(s), predict the held-out one (pooled over held-out chips); pooled fits weight chips equally",
        "ops": ops,
        "by_engine": by_engine,
        "notes": "",
    }
    result["notes"] = NOTES
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.out} ({a.out.stat().st_size} bytes)")
    if a.print_doc:
        for name, blk in doc.items():
            print(f"\n## {name}")
            items = blk.items() if isinstance(blk, dict) else []
            for key, r in items:
                if not isinstance(r, dict):
                    continue
                subs = r.items() if "generic" not in r else [("", r)]
                for sk, rr in subs:
                    if not isinstance(rr, dict) or "generic" not in rr:
                        continue
                    print(f"\n### {key} {sk}\n generic {rr['generic']}  n={rr['n_points']}")
                    print(f" in-sample {rr['in_sample']}  LOCO {rr['leave_one_chip_out']}")
                    for c, pc in rr["per_chip"].items():
                        print(f"   {c}: {pc}")
                    for extra in ("generic_hopper_only", "bandwidth_only", "alternative_hops_errors",
                                  "crossover_bytes_generic"):
                        if extra in rr:
                            print(f" {extra}: {rr[extra]}")
                    for tk, tv in rr.items():
                        if tk.startswith("eff_vs"):
                            print(f"\n{tk}\n" + md_bins(tv))


NOTES = (
    "Latencies in the tables are milliseconds; converted to seconds. Duplicated shapes: median per kernel, then fastest "
    "kernel_source. trtllm tables are the primary fit; version dir = the one with most rows (nccl/custom allreduce: "
    "newest). gemm fp8/fp8_block exist only on Hopper (2 chips: LOCO = fit on one Hopper, predict the other); "
    "int8_smoothquant only on A100 (no LOCO). Attention: window_size==0 rows only; context flops causal "
    "4*b*h*d*s^2/2 at the attn dtype's peak; generation s = isl+step, bytes = b*s*2*n_kv*d*kv_bytes + q/out. MLA dims "
    "(kv_lora_rank, rope, nope, v) read from DeepSeek-V3 config; mla num_heads is per GPU. mla_generation: A100 "
    "(no FlashMLA-class kernel, e~0.1) drags the 3-chip generic; for Hopper-and-later chips use "
    "generic_hopper_only. context_attention keys: <attn dtype>[_kv<kv dtype>]. MoE: num_tokens is the "
    "global token count (latency ~ 1/ep at fixed T); per rank A = T*k/ep assignments, inter/tp, experts touched = "
    "E/ep*(1-(1-1/E)^(T*k)); nongated kernels use 2 matrices else 3; 'balanced' only exists for Hopper, so A100 enters "
    "MoE only via power_law_1.01. Comm: message_size counts elements (bytes = elements*dtype bytes); e_link may "
    "exceed 1 (NVLS/in-switch reduction on H100/H200 all_reduce) because it is relative to the catalog's one-direction "
    "per-GPU scale-up bw. t0/alpha are absolute seconds (launch/sync overhead), the only non-dimensionless params."
)

if __name__ == "__main__":
    main()
