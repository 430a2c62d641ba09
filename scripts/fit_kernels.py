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
hard whitelist).  Blackwell parts (b200/b300/gb200/gb300/rtx_pro_6000/b60) are
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
    if chip not in CHIPS:  # defence in depth
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
        self.sys = {c: cat.system(s) for c, s in CHIPS.items()}

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
        return {c: {"catalog_system": CHIPS[c],
                    "bf16_flops_per_s": self.flops(c, "bf16"),
                    "fp8_flops_per_s": self.flops(c, "fp8"),
                    "int8_flops_per_s": self.flops(c, "int8"),
                    "hbm_bytes_per_s": self.hbm(c),
                    "scaleup_bytes_per_s": self.link(c)} for c in CHIPS}


# ----------------------------------------------------------------------------- models
# Each model: names, x0, lo, hi (internal units; t0/alpha in microseconds), f(params, X)
US = 1e-6


def _roof(p, X):
    ec, em, pw, t0 = p
    a = np.log(X["tc"] / ec)
    b = np.log(X["tm"] / em)
    m = np.maximum(a, b)
    return np.exp(m + np.log(np.exp(pw * (a - m)) + np.exp(pw * (b - m))) / pw) + t0 * US


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


def fit(model, X, t, chip):
    names, x0, lo, hi, f = MODELS[model]
    # each chip gets equal total weight in a pooled fit
    w = np.ones_like(t)
    for c in np.unique(chip):
        sel = chip == c
        w[sel] = 1.0 / np.sqrt(sel.sum())
    lt = np.log(t)

    def res(p):
        return w * (np.log(f(p, X)) - lt)

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


def binned(x, y, edges, chip=None, fmt="{:g}"):
    """median of y in bins of x (pooled, and per chip)."""
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (x >= lo) & (x < hi)
        if sel.sum() == 0:
            continue
        r = {"bin": f"[{fmt.format(lo)}, {fmt.format(hi)})", "n": int(sel.sum()),
             "median": float(f"{np.median(y[sel]):.3f}")}
        if chip is not None:
            for c in CHIPS:
                s2 = sel & (chip == c)
                if s2.sum():
                    r[c] = float(f"{np.median(y[s2]):.3f}")
        rows.append(r)
    return rows


def arrays(df, cols):
    return {c: df[c].to_numpy(dtype=float) for c in cols}


# ----------------------------------------------------------------------------- gemm
GEMM_CLASS = {"bfloat16": ("bf16", 2, 2), "fp8": ("fp8", 1, 1), "fp8_block": ("fp8", 1, 1),
              "sq": ("int8", 1, 1)}


def gemm_frame(aic, peaks, engine):
    dfs = [load_table(aic, c, "gemm", engine, "gemm_perf.parquet") for c in CHIPS]
    df = pd.concat([d for d in dfs if d is not None], ignore_index=True)
    df = df[df.gemm_dtype.isin(GEMM_CLASS)]
    df = dedup(df, ["gemm_dtype", "m", "n", "k"])
    cls = df.gemm_dtype.map(lambda d: GEMM_CLASS[d][0])
    bw = df.gemm_dtype.map(lambda d: GEMM_CLASS[d][1]).astype(float)
    bi = df.gemm_dtype.map(lambda d: GEMM_CLASS[d][2]).astype(float)
    M, N, K = (df[c].astype(float) for c in "mnk")
    F = np.array([peaks.flops(c, k) for c, k in zip(df.chip, cls)])
    B = df.chip.map(peaks.hbm).astype(float)
    df["tc"] = 2 * M * N * K / F
    df["tm"] = (N * K * bw + M * K * bi + M * N * 2) / B
    df["t"] = df.latency * MS
    return df[np.isfinite(df.tc)]


def do_gemm(aic, peaks, engine, doc):
    df = gemm_frame(aic, peaks, engine)
    res = {}
    for dt in ["bfloat16", "fp8", "fp8_block", "sq"]:
        d = df[df.gemm_dtype == dt]
        if len(d) < 50:
            continue
        X = arrays(d, ["tc", "tm"])
        key = SHORT.get(dt, dt if dt != "sq" else "int8_smoothquant")
        r = fit_family("roofline", X, d.t.to_numpy(), d.chip.to_numpy())
        x = (d.tc / d.tm).to_numpy()
        eff = (np.maximum(d.tc, d.tm) / d.t).to_numpy()
        r["eff_vs_intensity_over_ridge"] = binned(
            x, eff, [0, 1 / 64, 1 / 16, 1 / 4, 1, 4, 16, 64, 256, np.inf], d.chip.to_numpy())
        r["eff_vs_m"] = binned(d.m.to_numpy(), eff, [1, 2, 9, 33, 129, 513, 2049, 8193, np.inf],
                               d.chip.to_numpy())
        res[key] = r
        doc.setdefault(f"gemm/{engine}", {})[key] = r
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


def gen_attn_frame(aic, peaks, engine):
    df = attn_table(aic, engine, "generation_attention_perf.parquet",
                    ["attn_dtype", "kv_cache_dtype", "batch_size", "isl", "step", "num_heads", "num_key_value_heads",
                     "head_dim"])
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


def do_gen_attn(aic, peaks, engine, doc):
    df = gen_attn_frame(aic, peaks, engine)
    res = {}
    for dt, d in df.groupby("kv_cache_dtype"):
        if len(d) < 50:
            continue
        t, ch = d.t.to_numpy(), d.chip.to_numpy()
        r = fit_family("bandwidth_pad", arrays(d, ["tkv", "tq", "s"]), t, ch)
        r["bandwidth_only"] = {k: v for k, v in fit_family("bandwidth", arrays(d, ["tm"]), t, ch).items()
                               if k in ("generic", "in_sample", "leave_one_chip_out")}
        big = d[d.tm > 20 * r["generic"]["t0_s"]]
        r["eff_vs_s_(bytes-dominated)"] = binned(big.s.to_numpy(), (big.tm / big.t).to_numpy(),
                                                 [1, 128, 1024, 8192, 65536, np.inf], big.chip.to_numpy())
        res["kv_" + SHORT.get(dt, dt)] = r
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


# ----------------------------------------------------------------------------- MoE
MOE_CLASS = {"bfloat16": ("bf16", 2, 2), "fp8": ("fp8", 1, 1), "fp8_block": ("fp8", 1, 1)}


def do_moe(aic, peaks, engine, doc):
    dfs = [load_table(aic, c, "moe", engine, "moe_perf.parquet") for c in CHIPS]
    df = pd.concat([d for d in dfs if d is not None], ignore_index=True)
    df = df[df.moe_dtype.isin(MOE_CLASS)]
    df["n_mat"] = np.where(df.kernel_source.str.contains("nongated"), 2, 3)
    keys = ["moe_dtype", "distribution", "n_mat", "num_tokens", "hidden_size", "inter_size",
            "topk", "num_experts", "moe_tp_size", "moe_ep_size"]
    df = dedup(df, keys)
    T, h, i, k, E, tp, ep = (df[c].astype(float) for c in
                             ["num_tokens", "hidden_size", "inter_size", "topk", "num_experts",
                              "moe_tp_size", "moe_ep_size"])
    nm = df.n_mat.astype(float)
    cls = df.moe_dtype.map(lambda d: MOE_CLASS[d][0])
    bw = df.moe_dtype.map(lambda d: MOE_CLASS[d][1]).astype(float)
    bi = df.moe_dtype.map(lambda d: MOE_CLASS[d][2]).astype(float)
    F = np.array([peaks.flops(c, x) for c, x in zip(df.chip, cls)])
    B = df.chip.map(peaks.hbm).astype(float)
    il = i / tp
    A = T * k / ep  # token-expert assignments landing on this rank (uniform routing)
    El = E / ep
    touched = El * (1 - (1 - 1 / E) ** (T * k))  # expected distinct local experts hit
    df["m"] = T * k / E  # tokens per expert
    df["tc"] = 2 * nm * A * h * il / F
    df["tm"] = (touched * nm * h * il * bw + A * h * bi + A * h * 2) / B
    df["t"] = df.latency * MS
    res = {}
    chips_present = sorted(df.chip.unique())
    for dt in MOE_CLASS:
        for dist in ["balanced", "power_law_1.01"]:
            d = df[(df.moe_dtype == dt) & (df.distribution == dist)]
            if len(d) < 50:
                continue
            r = fit_family("roofline", arrays(d, ["tc", "tm"]), d.t.to_numpy(), d.chip.to_numpy())
            eff = (np.maximum(d.tc, d.tm) / d.t).to_numpy()
            r["eff_vs_tokens_per_expert"] = binned(d.m.to_numpy(), eff,
                                                   [0, 0.25, 1, 4, 16, 64, 256, 1024, np.inf],
                                                   d.chip.to_numpy())
            res.setdefault(SHORT.get(dt, dt), {})[dist] = r
    res["_chips_with_data"] = chips_present
    doc[f"moe/{engine}"] = res
    return res


# ----------------------------------------------------------------------------- comm
FACTOR = {"all_reduce": lambda n: 2 * (n - 1) / n, "all_gather": lambda n: (n - 1) / n,
          "reduce_scatter": lambda n: (n - 1) / n, "alltoall": lambda n: (n - 1) / n}
HOPS = {"all_reduce": lambda n: 2 * (n - 1), "all_gather": lambda n: n - 1,
        "reduce_scatter": lambda n: n - 1, "alltoall": lambda n: n - 1}


def _comm_fit(d, op, peaks):
    n = d.num_gpus.astype(float)
    d = d.assign(tb=FACTOR[op](n) * d.bytes / d.chip.map(peaks.link).astype(float),
                 t=d.latency * MS)
    best = None
    for hops_kind in ["ring_hops", "constant"]:
        hops = HOPS[op](n) if hops_kind == "ring_hops" else np.ones_like(n)
        X = {"hops": np.asarray(hops, float), "tb": d.tb.to_numpy()}
        r = fit_family("comm", X, d.t.to_numpy(), d.chip.to_numpy())
        r["hops"] = hops_kind
        if best is None or r["in_sample"]["median"] + r["in_sample"]["p90"] < \
                best["in_sample"]["median"] + best["in_sample"]["p90"]:
            alt = best
            best = r
        else:
            alt = r
    best["alternative_hops_errors"] = {"hops": alt["hops"], "in_sample": alt["in_sample"],
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


def do_comm(aic, peaks, doc):
    res = {}
    dfs = [load_table(aic, c, "comm", "nccl", "nccl_perf.parquet", pick="newest") for c in CHIPS]
    df = pd.concat([d for d in dfs if d is not None], ignore_index=True)
    df = dedup(df, ["op_name", "nccl_dtype", "num_gpus", "message_size"])
    # message_size counts elements (int8 rows take ~half the time of half rows at equal size)
    df["bytes"] = df.message_size * df.nccl_dtype.map(DTYPE_BYTES)
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
        r = _comm_fit(d, "all_reduce", peaks)
        r["engine"] = eng
        res[f"custom_all_reduce_{eng}"] = r
    doc["comm"] = res
    return res


# ----------------------------------------------------------------------------- doc helpers
def md_bins(rows):
    cols = ["bin", "n", "median"] + [c for c in CHIPS if any(c in r for r in rows)]
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
    ap.add_argument("--print-doc", action="store_true", help="print markdown tables for docs/kernels.md")
    a = ap.parse_args(argv)
    peaks = Peaks()
    doc: dict = {}
    ops: dict = {}
    ops["gemm"] = do_gemm(a.aic, peaks, "trtllm", doc)
    ops["context_attention"] = do_ctx_attn(a.aic, peaks, "trtllm", doc)
    ops["generation_attention"] = do_gen_attn(a.aic, peaks, "trtllm", doc)
    mla = do_mla(a.aic, peaks, "trtllm", doc)
    ops["mla_context"] = mla["mla_context"]
    ops["mla_generation"] = mla["mla_generation"]
    ops["mla_dims"] = mla["mla_dims_from_DeepSeek-V3_config"]
    ops["moe"] = do_moe(a.aic, peaks, "trtllm", doc)
    ops["comm"] = do_comm(a.aic, peaks, doc)
    # other engines, slimmed (generic + errors only)
    by_engine = {}
    for eng in ["vllm", "sglang"]:
        e = {}
        e["gemm"] = {k: slim(v) for k, v in do_gemm(a.aic, peaks, eng, {}).items()}
        e["context_attention"] = {k: slim(v) for k, v in do_ctx_attn(a.aic, peaks, eng, {}).items()}
        e["generation_attention"] = {k: slim(v) for k, v in do_gen_attn(a.aic, peaks, eng, {}).items()}
        m = do_moe(a.aic, peaks, eng, {})
        e["moe"] = {k: ({dd: slim(vv) for dd, vv in v.items()} if isinstance(v, dict) else v)
                    for k, v in m.items()}
        by_engine[eng] = e
    result = {
        "source": "aiconfigurator-core 0.12.0 (PyPI, Apache-2.0): " + "; ".join(sorted(set(SOURCES))),
        "chips": list(CHIPS),
        "excluded": "Blackwell (b200, b300, gb200, gb300, rtx_pro_6000, b60) never read: held-out target",
        "fit_date": _dt.date.today().isoformat(),
        "peaks_from_tokenmath_catalog": peaks.table(),
        "forms": {
            "roofline": "t = ((t_c/e_c)^p + (t_m/e_m)^p)^(1/p) + t0; t_c = flops/F_peak[dtype], t_m = bytes/HBM_bw",
            "flash": "t = t_c / (e_max * s/(s+s_half)) + t0; t_c = causal flops/F_peak[attn dtype], s = sequence length (tokens)",
            "bandwidth": "t = t_m / e + t0; t_m = bytes/HBM_bw",
            "bandwidth_pad": "t = (t_kv*(s+s0)/s + t_q)/e + t0; t_kv = KV-cache bytes/HBM_bw, t_q = q+out bytes/HBM_bw, "
                             "s0 = per-sequence padding in tokens (KV tile granularity)",
            "roofline_pad": "roofline with t_m = t_kv*(s+s0)/s + t_q",
            "comm": "t = alpha*hops(n) + factor(n)*bytes/(scaleup_bw*e_link); factor: all_reduce 2(n-1)/n, others (n-1)/n; "
                    "hops: 'ring_hops' = all_reduce 2(n-1), others n-1, or 'constant' = 1 (whichever fits better, see 'hops')",
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
