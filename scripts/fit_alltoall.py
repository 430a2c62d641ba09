#!/usr/bin/env python
"""Fit the MoE dispatch/combine all-to-all curves (DeepEP normal and low-latency kernels).

Data
----
The measured DeepEP tables shipped in the ``aiconfigurator-core`` 0.12.0 wheel (PyPI,
Apache-2.0; unpack it as scripts/fit_kernels.py says), data only:

  systems/data/{h100_sxm,h200_sxm}/comm/sglang/0.5.12/wideep_deepep_{ll,normal}_perf.parquet
      EP8 inside one 8-GPU node (NVLink), SGLang 0.5.12's DeepEP, dispatch in FP8, combine BF16
  systems/data/h200_sxm/comm/sglang/0.5.6.post2/wideep_deepep_{ll,normal}_perf.parquet
      the legacy collection (rows labelled version 0.5.0): node_num 2, 4, 8 = EP16/32/64 across
      8-GPU H200 nodes (InfiniBand); only its node_num > 1 rows are used
  systems/data/{h100_sxm,h200_sxm}/comm/trtllm/1.3.0rc11/moe_a2a_perf.parquet
      TensorRT-LLM's DeepEP (HT/LL) inside one node: not fitted, reported as a transfer check

Only Hopper directories are opened (``CHIPS``); Blackwell data is held out and never read.

Model (the same formula `tokenmath.stepmodel.ep_alltoall_time` charges)
-----------------------------------------------------------------------
One phase (dispatch or combine) for a rank of T tokens, hidden h, b bytes per element:

    t = alpha + [EP group leaves the domain] * hop + max(T * c_up * h * b / (BW_up * e_up),
                                                         T * c_out * h * b / (BW_out * e_out))

with the copies of each token the mode sends (EP ranks, D = EP / domain domains, k experts):

    low-latency  (one message per routed expert): c_up  = k * (domain - 1) / EP
                                                  c_out = k * (1 - domain / EP)
    normal (one per distinct rank / domain):      c_up  = (domain - 1) * P(a rank is hit)
                                                  c_out = (D - 1) * P(a domain is hit)

(a rank or domain is hit unless all k distinct experts of E miss it: hypergeometric).

BW_up / BW_out are tokenmath's catalog scale-up / scale-out bytes/s per GPU (H100/H200: 450 GB/s
NVLink, 50 GB/s per 400 Gb/s NIC); dispatch b = 1 + 4/128 (FP8 with one float32 scale per 128
channels, DeepEP's format), combine b = 2 (BF16); hop = HOP_LATENCY_S_DEFAULT. The normal
(high-throughput) kernels are read at DeepEP's default 20 SMs (deep_ep/buffer.py, ``num_sms = 20``).
Fitted per (mode, phase): alpha, e_up, e_out (least squares in log time).

    python scripts/fit_alltoall.py --aic /tmp/aic/x/aiconfigurator_core \
        --out src/tokenmath/validation/alltoall.json
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from tokenmath.catalog import load_catalog  # noqa: E402
from tokenmath.parallelism import HOP_LATENCY_S_DEFAULT  # noqa: E402

CHIPS = {"h100_sxm": "h100-sxm", "h200_sxm": "h200-sxm"}  # HARD WHITELIST (Hopper only)
DOMAIN = 8  # GPUs per node in every table
SMS = 20  # DeepEP's default SM count for the normal kernels
BYTES = {"dispatch": 1 + 4 / 128, "combine": 2.0}


def copies(mode: str, ep, k, n_experts):
    """(in-domain, out-of-domain) copies of one token a rank sends in `mode`: the same closed form
    as tokenmath.stepmodel.alltoall_copies (k distinct experts of n_experts, without replacement)."""
    from tokenmath.stepmodel import alltoall_copies

    out = [alltoall_copies(mode, e, DOMAIN, kk, n) for e, kk, n in zip(ep, k, n_experts)]
    return np.array([float(a) for a, _ in out]), np.array([float(b) for _, b in out])


def rows(aic: Path) -> pd.DataFrame:
    """Every (mode, phase) timing as one row: chip, EP, k, hidden, tokens, t (s)."""
    base = aic / "systems" / "data"
    out = []

    def add(df, chip, mode, phase, tcol, tok="num_token", k="num_topk"):
        out.append(pd.DataFrame({"chip": chip, "mode": mode, "phase": phase, "ep": DOMAIN * df.node_num,
                                 "k": df[k], "E": df.num_experts, "h": df.hidden_size, "T": df[tok], "t": df[tcol] * 1e-6,
                                 "table": df.attrs.get("table", "")}))

    for chip in CHIPS:
        d = base / chip / "comm" / "sglang"
        for ver, cross in (("0.5.12", False), ("0.5.6.post2", True)):
            if cross and chip != "h200_sxm":
                continue  # the legacy cross-node collection is one H200 cluster (copied under h100_sxm)
            ll = pd.read_parquet(d / ver / "wideep_deepep_ll_perf.parquet")
            nm = pd.read_parquet(d / ver / "wideep_deepep_normal_perf.parquet")
            sel = (ll.node_num > 1) if cross else (ll.node_num == 1)
            ll = ll[sel]
            nm = nm[((nm.node_num > 1) if cross else (nm.node_num == 1)) & (nm.dispatch_sms == SMS)]
            for df in (ll, nm):
                df.attrs["table"] = f"{chip}/comm/sglang/{ver}"
            add(ll, chip, "ll", "dispatch", "dispatch_avg_t_us")
            add(ll, chip, "ll", "combine", "combine_avg_t_us")
            add(nm, chip, "ht", "dispatch", "dispatch_transmit_us")
            add(nm, chip, "ht", "combine", "combine_transmit_us")
    df = pd.concat(out, ignore_index=True)
    return df[np.isfinite(df.t) & (df.t > 0)].reset_index(drop=True)


def features(df: pd.DataFrame, cat) -> dict:
    up_bw = df.chip.map(lambda c: cat.system(CHIPS[c]).scaleup_bytes_per_s).to_numpy(float)
    out_bw = df.chip.map(lambda c: cat.system(CHIPS[c]).scaleout_bytes_per_s).to_numpy(float)
    c_up, c_out = copies(df["mode"].iloc[0], df.ep.to_numpy(), df.k.to_numpy(), df.E.to_numpy())
    b = df.phase.map(BYTES).to_numpy(float)
    vol = df["T"].to_numpy(float) * df.h.to_numpy(float) * b
    return {"t_up": vol * c_up / up_bw, "t_out": vol * c_out / out_bw,
            "hop": np.where(df.ep.to_numpy() > DOMAIN, HOP_LATENCY_S_DEFAULT, 0.0)}


def model(p, X):
    alpha, e_up, e_out = p
    return alpha + X["hop"] + np.maximum(X["t_up"] / e_up, X["t_out"] / e_out)


def errors(pred, t) -> dict:
    e = np.abs(pred / t - 1)
    return {"median": float(f"{np.median(e):.4g}"), "p90": float(f"{np.percentile(e, 90):.4g}"), "n": int(len(e))}


def fit(df: pd.DataFrame, cat) -> dict:
    X = features(df, cat)
    t = df.t.to_numpy(float)
    has_out = bool(np.any(X["t_out"] > 0))
    r = least_squares(lambda p: np.log(model(p, X) / t), [10e-6, 0.6, 0.8], bounds=([0, 0.05, 0.05], [1e-3, 1.0, 1.0]),
                      x_scale=[1e-5, 0.1, 0.1])
    alpha, e_up, e_out = (float(v) for v in r.x)
    pred = model(r.x, X)
    res = {"alpha_s": float(f"{alpha:.4g}"), "e_up": float(f"{e_up:.4g}"),
           "e_out": float(f"{e_out:.4g}") if has_out else None, "in_sample": errors(pred, t)}
    res["in_domain"] = errors(pred[df.ep == DOMAIN], t[df.ep == DOMAIN])
    if has_out:
        res["across_domains"] = errors(pred[df.ep > DOMAIN], t[df.ep > DOMAIN])
    return res


def trtllm_check(aic: Path, fits: dict, cat) -> dict:
    """TensorRT-LLM's own DeepEP tables (EP8, one node) under the SGLang-fitted curves."""
    out = {}
    for chip in CHIPS:
        f = aic / "systems" / "data" / chip / "comm" / "trtllm" / "1.3.0rc11" / "moe_a2a_perf.parquet"
        if not f.is_file():
            continue
        d = pd.read_parquet(f)
        for (backend, phase, dt), g in d.groupby(["comm_backend", "phase", "comm_dtype"]):
            if dt not in ("fp8", "bfloat16"):
                continue
            mode = "ll" if backend.endswith("_ll") else "ht"
            p = fits[mode][phase]
            X = features(pd.DataFrame({"chip": chip, "mode": mode, "phase": phase, "ep": g.ep_size, "k": g.topk, "E": g.num_experts,
                                       "h": g.hidden_size, "T": g.num_tokens}).reset_index(drop=True), cat)
            scale = {"fp8": 1 + 4 / 128, "bfloat16": 2.0}[dt] / BYTES[phase]
            X = {k: (v * scale if k != "hop" else v) for k, v in X.items()}
            pred = model((p["alpha_s"], p["e_up"], p["e_out"] or 1.0), X)
            out[f"{chip} {backend} {phase} {dt}"] = errors(pred, g.latency.to_numpy(float) * 1e-6)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--aic", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=REPO / "src" / "tokenmath" / "validation" / "alltoall.json")
    a = ap.parse_args()
    cat = load_catalog()
    df = rows(a.aic)
    fits = {}
    for (mode, phase), g in df.groupby(["mode", "phase"]):
        fits.setdefault(mode, {})[phase] = fit(g.reset_index(drop=True), cat)
    doc = {
        "source": ("aiconfigurator-core 0.12.0 (PyPI, Apache-2.0) DeepEP tables: "
                   + ", ".join(sorted(df.table.unique())) + "; fitted by scripts/fit_alltoall.py"),
        "fit_date": _dt.date.today().isoformat(),
        "form": ("t = alpha + hop*[across domains] + max(T*c_up*h*b/(BW_up*e_up), T*c_out*h*b/(BW_out*e_out)); "
                 "ll: c_up = k(dom-1)/EP, c_out = k(1-dom/EP); ht: distinct remote ranks in the domain, "
                 "distinct remote domains; dispatch b = 1+4/128 (FP8), combine b = 2 (BF16)"),
        "normal_kernel_sms": SMS,
        "modes": {"ll": "DeepEP low-latency kernels", "ht": "DeepEP normal (high-throughput) kernels"},
        "fits": fits,
        "transfer_check_trtllm_tables": trtllm_check(a.aic, fits, cat),
    }
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
