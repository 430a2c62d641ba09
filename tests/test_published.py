"""The roofline step against step times someone else published for the same inputs."""

from pathlib import Path

import pytest

import tokenmath as tm

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("batch, step_ms, kv_gb", [
    (1, 4.98, 6.7), (8, 12.13, 53.6), (16, 20.3, 107.2), (32, 36.65, 214.4), (64, 69.33, 428.8), (240, 249.09, 1608),
])
def test_scaling_book_llama2_13b_on_8_tpu_v5e(cat, batch, step_ms, kv_gb):
    """jax-ml/scaling-book inference.md (commit 0819a7d, 2025-02-18; shared/reference misc.jsonl):
    theoretical decode step of LLaMA-2-13B on 8 × TPU v5e at 8,192 context, bf16 weights and KV.
    The book labels its KV column "GiB" but the numbers are decimal GB (819,200 B/token × 8,192 =
    6.71e9 B). It uses 8.2e11 B/s HBM where the catalog has Google's 8.19e11, and it keeps the
    embedding table in the weights; tolerance 2 %."""
    m = tm.model_from_config_file(DATA / "llama-2-13b.json")
    st = tm.step_time(m, cat.system("tpu-v5e"), batch, 8192, chips=8)
    assert st.step_s * 1e3 == pytest.approx(step_ms, rel=0.02)
    assert batch * tm.kv_cache(m, 8192).stored_bytes == pytest.approx(kv_gb * 1e9, rel=0.01)
    assert st.bound == "memory"


def test_latency_floors_of_deepseek_v3(cat):
    """lecture-claims.md L03: DeepSeek-V3 in FP8 (671 GB of weights) has a latency floor of 17.5 ms
    on 8 × H200 and 1.3 ms on 64 GB200s; L36: a 1T-parameter FP8 model on an NVL72 1.7 ms, 5T in
    FP4 4.3 ms. Tolerance 3 %."""
    ds3 = cat.model("deepseek-v3")
    assert tm.latency_floor_s(ds3, cat.system("h200-sxm"), chips=8) * 1e3 == pytest.approx(17.5, rel=0.03)
    assert tm.latency_floor_s(ds3, cat.system("gb200-nvl72"), chips=64) * 1e3 == pytest.approx(1.3, rel=0.03)
    one_t = tm.Model(name="1t", total_params_given=1e12, active_params_given=1e11, kv_bytes_per_token_given=1)
    five_t = tm.Model(name="5t", total_params_given=5e12, active_params_given=1e11, kv_bytes_per_token_given=1)
    nvl72 = cat.system("gb200-nvl72")
    assert tm.latency_floor_s(one_t, nvl72, dtypes=tm.Dtypes(weight="fp8")) * 1e3 == pytest.approx(1.7, rel=0.03)
    assert tm.latency_floor_s(five_t, nvl72, dtypes=tm.Dtypes(weight="fp4")) * 1e3 == pytest.approx(4.3, rel=0.03)
