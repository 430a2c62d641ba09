"""What `tokenmath explore` costs, each figure beside a comparator measured in the same run (issue 26).

1. One scalar calibrated estimate (estimate.estimate_pass: DeepSeek-V3 on an H100 SXM, TP8 EP8 PP2,
   batch 64, context 4,096) and one op_step call, against the plain-Python roofline formula of the
   same pass (bench_roofline's). Target of the issue: <= 40× the plain formula.
2. explore in one process: CPU time per point (one chip variant: the planner's search over every
   layout × batch × dtype under the estimate, the best's band, energy and bound) and per
   (layout, batch, dtype) deployment the search evaluates, against the roofline's 10⁶-point sweep
   (roofline.step_time over arrays) per point. Target of the issue: 2·10⁶ points/s per core, and
   the estimate within 5× the roofline sweep per point.
3. --scheduler processes (one worker per core) against one process on the same space, wall time.
   Target: >= 1.7× on 2 cores.
4. Peak memory (max resident set) of an explore run in a fresh process, in-process and with its
   workers. Target: <= 2 GB.

On a shared machine every figure moves with the load: read the ratios, each measured in this run.
Run: .venv/bin/python benchmarks/bench_explore.py [--points N] [--pool-points N]   (default 96 and 480)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

import tokenmath as tm
from _timing import cpu_best as _cpu_best  # noqa: E402  (benchmarks/_timing.py, beside this script)
from tokenmath.kvcache import attention_terms, kv_terms
from tokenmath.params import matmul_params_per_token, weights_read_bytes



def cpu_best(fn, repeats: int = 3) -> float:
    return _cpu_best(fn, repeats)


def scalar() -> None:
    from tokenmath.parallelism import Layout

    cat = tm.load_catalog()
    m, s = cat.model("deepseek-v3"), cat.system("h100-sxm")
    chips = 16
    F = s.chip.flops_per_s(s.compute_class_for(m.weight_dtype)) * chips
    BW = s.chip.hbm_bytes_per_s * chips
    (_, a, _), = attention_terms(m).groups
    (_, kv, _), = kv_terms(m, "bf16").read.groups
    N, W, usd = matmul_params_per_token(m), weights_read_bytes(m) / BW, chips * s.usd_per_chip_hour / 3600.0 * 1e6

    def plain(B, L, N=N, a=a, F=F, W=W, kk=kv / BW, usd=usd):
        step = max(B * (2.0 * N + a * L) / F, W + B * kk * L)
        return step, B / step, step * usd / B

    n = 20_000
    t_plain = cpu_best(lambda: [plain(64.0, 4096.0) for _ in range(n)]) / n
    lay = Layout(tp=8, ep=8, pp=2)
    prof = tm.choose_profile("calibrated", system=s)
    tm.estimate_pass(m, s, 64, 4096, layout=lay, profile=prof)
    k = 300
    t_est = cpu_best(lambda: [tm.estimate_pass(m, s, 64, 4096, layout=lay, profile=prof) for _ in range(k)]) / k
    t_op = cpu_best(lambda: [tm.op_step(m, s, lay, 64, 4096, kernels=prof.kernels, engine=prof.engine)
                             for _ in range(k)]) / k
    print(f"1. scalar estimate_pass {t_est * 1e6:7.1f} µs, op_step {t_op * 1e6:7.1f} µs; plain roofline formula "
          f"{t_plain * 1e6:5.2f} µs -> {t_est / t_plain:5.0f}× and {t_op / t_plain:5.0f}×   target <= 40×: "
          f"{'meets' if t_est <= 40 * t_plain else 'MISSES'}")


KW = dict(model="deepseek-v3", base_chip="h100-sxm", input_tokens=2000, output_tokens=500,
          min_tokens_per_s_per_user=50)


def vary_for(points: int) -> list[str]:
    return [f"hbm_bytes_per_s=2e12:14e12:{points // 4}", "scaleup_chips=8,16,32,72"]


def per_point(points: int) -> None:
    cat = tm.load_catalog()
    m, s = cat.model("deepseek-v3"), cat.system("h100-sxm")
    B = np.geomspace(1, 1e5, 1000)
    L = np.geomspace(1, 1e6, 1000)[:, None]
    tm.step_time(m, s, B, L)
    t_roof = cpu_best(lambda: tm.step_time(m, s, B, L)) / 1e6
    d = tempfile.mkdtemp()
    try:
        tm.explore(**KW, vary=["hbm_bytes_per_s=3e12"], out=os.path.join(d, "warm.parquet"))  # imports, caches
        t0 = time.process_time()
        r = tm.explore(**KW, vary=vary_for(points), out=os.path.join(d, "one.parquet"))
        t = time.process_time() - t0
    finally:
        shutil.rmtree(d)
    per, per_dep = t / r.points, t / max(1, r.deployments)
    # the estimate itself over arrays of points (one layout, batch × context), in chunks as explore streams
    from tokenmath.parallelism import Layout
    from tokenmath.profiles import choose
    from tokenmath.stepmodel import op_step

    prof = choose("calibrated", system=s)
    rng = np.random.default_rng(0)
    Bv, Lv = rng.uniform(1, 2048, 100_000), rng.uniform(0, 32_768, 100_000)
    op_step(m, s, Layout(ep=16), Bv[:10], Lv[:10], kernels=prof.kernels, engine=prof.engine)
    import tokenmath.stepmodel as sm

    t_vec = cpu_best(lambda: op_step(m, s, Layout(ep=16), Bv, Lv, kernels=prof.kernels, engine=prof.engine)) / 1e5
    chunk, sm.CHUNK_POINTS = sm.CHUNK_POINTS, 10**9  # the comparator: one pass over the whole array
    try:
        t_one = cpu_best(lambda: op_step(m, s, Layout(ep=16), Bv, Lv, kernels=prof.kernels, engine=prof.engine)) / 1e5
    finally:
        sm.CHUNK_POINTS = chunk
    print(f"2a. the estimate vectorised (op_step over 10^5 (batch, context) points of one layout, in chunks of "
          f"{chunk:,}): {t_vec * 1e9:,.0f} ns a point = {1 / t_vec / 1e6:.2f} M points/s per core (one pass over "
          f"the whole array: {t_one * 1e9:,.0f} ns, {t_one / t_vec:.1f}× slower); {t_vec / t_roof:,.0f}× the "
          f"roofline sweep per point   target 2e6 points/s: {'meets' if 1 / t_vec >= 2e6 else 'MISSES'}; "
          f"<= 5× the roofline: {'meets' if t_vec <= 5 * t_roof else 'MISSES'}")
    print(f"2. explore, one process: {r.points} points in {t:.2f} s CPU = {1 / per:,.0f} points/s "
          f"({per * 1e3:.2f} ms a point; {r.deployments / r.points:,.0f} deployments each = {1 / per_dep:,.0f} "
          f"deployments/s); roofline sweep {t_roof * 1e9:.1f} ns a point ({1 / t_roof / 1e6:.1f} M/s) -> a point "
          f"{per / t_roof:,.0f}×, a deployment {per_dep / t_roof:,.0f}× the roofline's   target 2e6 points/s: "
          f"{'meets' if 1 / per >= 2e6 else 'MISSES'}; <= 5× per point: {'meets' if per_dep <= 5 * t_roof else 'MISSES'}")


def run_cli(args: list[str]) -> tuple[float, dict, float, float]:
    """(wall s, --json, max RSS MB of one process, CPU s of the process and its workers) of one
    `tokenmath explore`, fresh."""
    code = ("import resource, subprocess, sys, json, time;"
            "t = time.perf_counter();"
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
            "w = time.perf_counter() - t;"
            "u = resource.getrusage(resource.RUSAGE_CHILDREN);"
            "print(json.dumps({'wall': w, 'rc': p.returncode, 'out': p.stdout, 'err': p.stderr[-500:],"
            " 'maxrss_mb': u.ru_maxrss / 1024, 'cpu': u.ru_utime + u.ru_stime}))")
    exe = os.path.join(os.path.dirname(sys.executable), "tokenmath")
    p = subprocess.run([sys.executable, "-c", code, exe, "explore", *args, "--json"], capture_output=True, text=True)
    rec = json.loads(p.stdout)
    if rec["rc"] != 0:
        raise SystemExit(f"explore failed: {rec['err']}")
    return rec["wall"], json.loads(rec["out"]), rec["maxrss_mb"], rec["cpu"]


def schedulers(points: int) -> None:
    d = tempfile.mkdtemp()
    try:
        base = ["--model", KW["model"], "--base-chip", KW["base_chip"], "--input-tokens", "2000", "--output-tokens",
                "500", "--min-tokens-per-s-per-user", "50"]
        for v in vary_for(points):
            base += ["--vary", v]
        w1, r1, m1, c1 = run_cli(base + ["--out", os.path.join(d, "one.parquet")])
        wp, rp, mp, cp = run_cli(base + ["--out", os.path.join(d, "pool.parquet"), "--scheduler", "processes"])
    finally:
        shutil.rmtree(d)
    cores = os.cpu_count()
    print(f"3. {r1['points']} points: one process {w1:.2f} s wall ({r1['points'] / w1:,.0f} points/s), "
          f"--scheduler processes ({cores} workers) {wp:.2f} s ({rp['points'] / wp:,.0f} points/s) -> {w1 / wp:.2f}×   "
          f"target >= 1.7× on 2 cores: {'meets' if w1 / wp >= 1.7 else 'MISSES'} (load average now "
          f"{os.getloadavg()[0]:.1f} on {cores} cores)")
    print(f"   CPU of every process: one process {c1:.2f} s, the pool {cp:.2f} s ({cp / c1 - 1:+.0%}: the pool's own"
          f" cost); on {cores} idle cores the pool could at best reach {c1 / (cp / cores):.2f}×"
          " (CPU ÷ cores, start-up and uneven chunks aside) — an upper bound, not a measurement")
    print(f"4. peak memory (max RSS of one process): in-process run {m1:,.0f} MB; with --scheduler processes the "
          f"largest process {mp:,.0f} MB, {cores + 1} processes <= {(cores + 1) * mp:,.0f} MB   target <= 2 GB: "
          f"{'meets' if (cores + 1) * mp <= 2000 and m1 <= 2000 else 'MISSES'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=96, help="points in 2 (a multiple of 4)")
    ap.add_argument("--pool-points", type=int, default=480, help="points in 3 and 4 (a multiple of 4)")
    a = ap.parse_args()
    scalar()
    per_point(a.points)
    schedulers(a.pool_points)


if __name__ == "__main__":
    main()
