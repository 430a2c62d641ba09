"""The roofline's per-call cost and its sweep rate, each beside a comparator measured in the same run
(issue 13). CPU time (time.process_time), best of several repeats.

1. One scalar `step_time` (DeepSeek-V3 on GB200 NVL72, batch 64, context 4,096) against the same
   formula in plain Python with its constants precomputed. Targets: <= 20 µs and <= 40× the plain
   formula.
2. A 10⁶-point sweep (1,000 batches × 1,000 contexts) through `step_time`, reading step_s,
   tokens_per_s and usd_per_mtok, against the minimal numpy expression of the same formula producing
   the same three arrays. Targets: <= 5× its CPU time, <= 2× its peak memory (tracemalloc).

Run: make bench   (or .venv/bin/python benchmarks/bench_roofline.py)
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np

import tokenmath as tm
from _timing import cpu_best  # noqa: E402  (benchmarks/_timing.py, beside this script)
from tokenmath.kvcache import attention_terms, kv_terms
from tokenmath.params import matmul_params_per_token, weights_read_bytes




def peak_bytes(fn) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    out = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del out
    return peak


def constants(m, s):
    """The formula's constants for a full-attention model (DeepSeek-V3 has no windows)."""
    chips = s.scaleup_chips
    F = s.chip.flops_per_s(s.compute_class_for(m.weight_dtype)) * chips
    BW = s.chip.hbm_bytes_per_s * chips
    (_, attn_per_token, _), = attention_terms(m).groups
    (_, kv_per_token, _), = kv_terms(m, "bf16").read.groups
    return dict(N=matmul_params_per_token(m), a=attn_per_token, F=F, W=weights_read_bytes(m) / BW,
                k=kv_per_token / BW, usd=chips * s.usd_per_chip_hour / 3600.0 * 1e6)


def main() -> None:
    cat = tm.load_catalog()
    m, s = cat.model("deepseek-v3"), cat.system("gb200-nvl72")
    k = constants(m, s)

    # 1. one scalar call
    def plain(B, L, N=k["N"], a=k["a"], F=k["F"], W=k["W"], kk=k["k"], usd=k["usd"]):
        step = max(B * (2.0 * N + a * L) / F, W + B * kk * L)
        return step, B / step, step * usd / B

    n = 20_000
    t_plain = cpu_best(lambda: [plain(64.0, 4096.0) for _ in range(n)]) / n
    tm.step_time(m, s, 64, 4096)
    t_call = cpu_best(lambda: [tm.step_time(m, s, 64, 4096) for _ in range(n // 10)]) / (n // 10)
    st, ref = tm.step_time(m, s, 64, 4096), plain(64.0, 4096.0)
    assert abs(st.step_s / ref[0] - 1) < 1e-9 and abs(st.usd_per_mtok / ref[2] - 1) < 1e-9
    ok = t_call <= 20e-6 and t_call <= 40 * t_plain
    print(f"scalar step_time      {t_call * 1e6:8.2f} µs   plain-Python formula {t_plain * 1e6:6.2f} µs "
          f"({t_call / t_plain:5.1f}×)   target <= 20 µs and <= 40×: {'meets' if ok else 'MISSES'}")

    # 2. a 10⁶-point sweep
    B = np.geomspace(1, 1e5, 1000)
    L = np.geomspace(1, 1e6, 1000)[:, None]

    def minimal():
        c = (2.0 * k["N"] + k["a"] * L) / k["F"]
        kv = k["k"] * L
        step = np.maximum(B * c, k["W"] + B * kv)
        return step, B / step, step * k["usd"] / B

    def ours():
        r = tm.step_time(m, s, B, L)
        return r.step_s, r.tokens_per_s, r.usd_per_mtok

    a, b = ours(), minimal()
    assert all(np.allclose(x, y, rtol=1e-9) for x, y in zip(a, b))
    del a, b
    t_min, t_ours = cpu_best(minimal), cpu_best(ours)
    m_min, m_ours = peak_bytes(minimal), peak_bytes(ours)
    ok = t_ours <= 5 * t_min and m_ours <= 2 * m_min
    print(f"10⁶-point sweep       {t_ours * 1e3:8.1f} ms ({1e6 / t_ours / 1e6:5.1f} M points/s), peak {m_ours / 1e6:5.1f} MB"
          f"   minimal numpy {t_min * 1e3:5.1f} ms, {m_min / 1e6:5.1f} MB ({t_ours / t_min:4.1f}× time, {m_ours / m_min:4.2f}× memory)"
          f"   target <= 5× and <= 2×: {'meets' if ok else 'MISSES'}")


if __name__ == "__main__":
    main()
