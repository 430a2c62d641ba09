"""training.py (issue 5): every reproduced number with its source and tolerance."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import tokenmath as tm
from tokenmath import training as tr
from tokenmath.cli import app

CAT = tm.load_catalog()


def test_llama3_405b_compute_and_time():
    """Llama 3 Herd of Models (arXiv 2407.21783): 405B trained on 15.6T tokens with 3.8e25 FLOPs
    (§1), at 400 TFLOP/s per GPU = 41 % BF16 MFU on 16,384 H100 (Table 4; training.jsonl).
    6·N·D reproduces the FLOPs within 1 %; at 41 % MFU that is 66 days / 26M GPU-hours of
    pre-training compute."""
    t = tr.train_time(CAT.model("llama-3.1-405b"), CAT.system("h100-sxm"), 16384, 15.6e12, mfu=0.41)
    assert t.flops == pytest.approx(3.8e25, rel=0.01)
    assert t.flops / (t.seconds * 16384) == pytest.approx(400e12, rel=0.02)  # the table's 400 TFLOP/s/GPU
    assert t.days == pytest.approx(66.2, rel=0.01)
    assert t.chip_hours == pytest.approx(t.seconds * 16384 / 3600)
    assert t.usd == pytest.approx(t.chip_hours * 1.30)


def test_deepseek_v3_implied_mfu():
    """DeepSeek-V3 report (arXiv 2412.19437, Table 1): 2.664M H800-hours for 14.8T pre-training
    tokens. With 37.55B active params that is 6·N·D = 3.33e24 FLOPs: 35 % of the H800's dense BF16
    peak, or 18 % of its FP8 peak (the run used FP8 matmuls). Tolerance 1 %."""
    m, s = CAT.model("deepseek-v3"), CAT.system("h800-sxm")
    assert tr.implied_mfu(m, s, 14.8e12, 2.664e6) == pytest.approx(0.352, rel=0.01)
    assert tr.implied_mfu(m, s, 14.8e12, 2.664e6, dtype="fp8") == pytest.approx(0.176, rel=0.01)
    # the inverse of train_time: feeding the implied MFU back gives the published hours
    u = tr.implied_mfu(m, s, 14.8e12, 2.664e6)
    assert tr.train_time(m, s, 2048, 14.8e12, mfu=u).chip_hours == pytest.approx(2.664e6, rel=1e-9)


def test_chinchilla_fits():
    """Besiroglu et al. 2024 (arXiv 2404.10102): their refit puts Chinchilla's budget
    (6 × 70e9 × 1.4e12 = 5.88e23) at ~70B params and ~1.4T tokens, ~20 tokens/param (5 %).
    Hoffmann's rounded Approach-3 constants give a much smaller model for the same budget (~32B),
    the inconsistency Besiroglu et al. set out to explain."""
    C = 6 * 70e9 * 1.4e12
    b = tr.compute_optimal(C, "besiroglu")
    assert b.params == pytest.approx(70e9, rel=0.05) and b.tokens == pytest.approx(1.4e12, rel=0.05)
    assert 17 < b.tokens_per_param < 22
    h = tr.compute_optimal(C, "hoffmann")
    assert h.params < 40e9 and h.tokens_per_param > 60
    assert 6 * h.params * h.tokens == pytest.approx(C)
    assert tr.chinchilla_loss(70e9, 1.4e12, "hoffmann") == pytest.approx(1.69 + 406.4 / 70e9**0.34 + 410.7 / 1.4e12**0.28)


@settings(max_examples=40, deadline=None)
@given(st.floats(1e19, 1e27), st.sampled_from(["hoffmann", "besiroglu"]), st.floats(0.2, 5.0))
def test_compute_optimal_is_the_minimum(C, fit, k):
    """Any other split of the same budget predicts a higher loss."""
    co = tr.compute_optimal(C, fit)
    N = co.params * k
    assert tr.chinchilla_loss(N, C / 6 / N, fit) >= co.loss - 1e-12


def test_sardana_frankle_direction():
    """Sardana, Doubov & Frankle 2024 (arXiv 2401.00448): with 2T tokens of inference demand, a
    13B Chinchilla-style model is better replaced by a ~7B model trained longer, saving ~17 % of
    total FLOPs. Their exact loss fit and baseline were not found (shared/reference README); with
    Hoffmann's constants and a compute-optimal 13B baseline the same optimisation gives ~8B and
    ~10 %. Asserted: smaller (6–9B), trained longer, saving 8–20 %."""
    base = tr.compute_optimal_for_params(13e9)  # a compute-optimal ("Chinchilla-style") 13B
    assert base.params == pytest.approx(13e9, rel=1e-9)
    base_N, base_D, loss = base.params, base.tokens, base.loss
    opt = tr.inference_aware_optimum(loss, 2e12, baseline_params=base_N)
    assert 6e9 < opt.params < 9e9
    assert opt.tokens > base_D and opt.tokens_per_param > base_D / base_N
    assert 0.08 < opt.saving_fraction < 0.20
    assert tr.chinchilla_loss(opt.params, opt.tokens) == pytest.approx(loss, rel=1e-9)
    # with no inference demand the optimum is the compute-optimal model itself
    none = tr.inference_aware_optimum(loss, 0.0)
    co = tr.compute_optimal(6 * none.params * none.tokens)
    assert none.params == pytest.approx(co.params, rel=1e-3)


def test_lecture_overtraining():
    """L41–L44 (1:29–1:32): 50M tokens/s for two months = 2.63e14 tokens (lecture-claims quick
    reference, two months = 365.25/6 days); 100B active at Chinchilla's 20 tokens/param = 2T; equal
    pre-training and inference cost (decode at 0.3 of pre-training's MFU) makes pre-training
    ~1.1 × the inference tokens: ~2.9e14, i.e. ~100–150× over-trained (the lecture: ~100×;
    lecture-claims: 75–130× for 150T–260T)."""
    o = tr.overtrain(100e9, 50e6, 365.25 / 6)
    assert o.inference_tokens == pytest.approx(2.63e14, rel=1e-3)
    assert o.chinchilla_tokens == 2e12
    assert o.pretrain_tokens == pytest.approx(o.inference_tokens * (2 / 0.3) / 6, rel=1e-12)
    assert 75 <= o.overtraining_factor <= 150
    assert o.pretrain_cost == o.rl_cost == o.inference_cost
    # RL: an RL token costs (r/6)/u = 1.1–3.3 pre-training tokens (lecture-claims L40)
    for r, ratio in ((2.0, 1.11), (6.0, 3.33)):
        o2 = tr.overtrain(100e9, 50e6, 365.25 / 6, rl_factor=r)
        assert o2.pretrain_tokens / o2.rl_tokens == pytest.approx(ratio, rel=0.01)
    assert o.exact.params < 100e9  # the exact optimum trains a smaller model longer still


def test_L41_global_tokens():
    """L41: 500M tokens/s for two months = 2.6e15 tokens."""
    assert tr.overtrain(100e9, 500e6, 365.25 / 6).inference_tokens == pytest.approx(2.63e15, rel=1e-3)


def test_moe_quality_law_anchor_and_tradeoff():
    """Clark et al. 2022 coefficients were not found; the default exponent is anchored to the
    lecture's reading (64 experts at 370M active ≈ 1.3B dense): γ = ln(1.3/0.37)/ln 64 = 0.302,
    each doubling of experts ≈ 1.23× (lecture-claims L20)."""
    assert tr.effective_dense_params(370e6, 64) == pytest.approx(1.3e9, rel=1e-9)
    assert tr.MOE_EXPONENT_LECTURE_ANCHOR == pytest.approx(0.302, abs=0.001)
    assert 2 ** tr.MOE_EXPONENT_LECTURE_ANCHOR == pytest.approx(1.23, abs=0.01)
    assert tr.experts_for_quality(1.3 / 0.37) == pytest.approx(64)
    assert tr.effective_dense_params(1e9, 1) == 1e9
    # a negative interaction term (Clark et al.'s form) shrinks the gain for bigger models
    assert tr.effective_dense_params(10e9, 64, interaction=-0.02) < tr.effective_dense_params(10e9, 64)
    t = tr.sparsity_tradeoff(37e9, [1, 8, 64, 256], CAT.system("gb200-nvl72"))
    assert list(np.diff(t.effective_params) > 0) == [True] * 3  # quality rises with experts
    assert list(np.diff(t.balance_batch) > 0) == [True] * 3  # ... as do users needed
    assert list(np.diff(t.weight_bytes) > 0) == [True] * 3  # ... and memory
    assert t.cost_floor_usd_per_mtok is not None  # while the cost floor is set by N_active alone


def test_training_memory_by_hand():
    """Mixed-precision Adam: 2 + 2 + 12 bytes per parameter (Rajbhandari et al. 2020, ZeRO §3);
    ZeRO-1/2/3 shard optimizer / gradients / weights over DP. Activations per layer
    s·b·h·(34 + 5as/h)/t without recompute, s·b·h·34/t selective, 2·s·b·h full (Korthikanti et al.
    2022, Table 2)."""
    m, s = CAT.model("llama-3.1-70b"), CAT.system("h100-sxm")
    P = tm.param_counts(m).total
    kw = dict(dp=8, tp=8, pp=4, micro_batch=1, seq_len=8192)
    mem0 = tr.train_memory(m, s, zero=0, recompute="none", **kw)
    p_chip = P / 32
    assert mem0.weights_bytes_per_chip == pytest.approx(2 * p_chip)
    assert mem0.optimizer_bytes_per_chip == pytest.approx(12 * p_chip)
    per_layer = 8192 * 8192 * (34 + 5 * 64 * 8192 / 8192) / 8
    assert mem0.activation_bytes_per_chip == pytest.approx(per_layer * 20 * 4)
    z1, z2, z3 = (tr.train_memory(m, s, zero=z, recompute="none", **kw) for z in (1, 2, 3))
    assert z1.optimizer_bytes_per_chip == pytest.approx(mem0.optimizer_bytes_per_chip / 8)
    assert z2.grads_bytes_per_chip == pytest.approx(mem0.grads_bytes_per_chip / 8)
    assert z3.weights_bytes_per_chip == pytest.approx(mem0.weights_bytes_per_chip / 8)
    sel = tr.train_memory(m, s, zero=1, recompute="selective", **kw)
    full = tr.train_memory(m, s, zero=1, recompute="full", **kw)
    rev = tr.train_memory(m, s, zero=1, recompute="reversible", **kw)
    assert mem0.activation_bytes_per_chip > sel.activation_bytes_per_chip > full.activation_bytes_per_chip
    assert rev.activation_bytes_per_chip < full.activation_bytes_per_chip
    assert (sel.flops_per_param_token, full.flops_per_param_token, rev.flops_per_param_token) == (6, 8, 8)
    with pytest.raises(tm.TokenmathError, match=r"DP\(8\) × TP\(8\) × PP\(4\) = 256 chips, but 64"):
        tr.train_memory(m, s, chips=64, **kw)


def test_reversible_activations_constant_in_depth():
    """RevNets (Gomez et al. 2017): activation memory does not grow with depth."""
    import dataclasses

    base = CAT.model("llama-3.1-8b")
    deep = dataclasses.replace(base, n_layers=64, layer_window=(None,) * 64, layer_moe=(False,) * 64,
                               layer_stores_kv=(True,) * 64, name="deep")
    s = CAT.system("h100-sxm")
    kw = dict(dp=8, micro_batch=1, seq_len=4096, recompute="reversible")
    assert tr.train_memory(deep, s, **kw).activation_bytes_per_chip == tr.train_memory(base, s, **kw).activation_bytes_per_chip
    kw["recompute"] = "selective"
    assert tr.train_memory(deep, s, **kw).activation_bytes_per_chip == pytest.approx(
        2 * tr.train_memory(base, s, **kw).activation_bytes_per_chip)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12), st.integers(2, 64), st.integers(0, 2**31 - 1))
def test_reversible_round_trip(depth, width, seed):
    """(x, y) -> (y + F(x), x) stacked, then inverted, recovers the inputs to float64 rounding,
    with F a random ReLU MLP (not invertible)."""
    rng = np.random.default_rng(seed)
    fns = [tr.random_mlp(width, 2 * width, rng) for _ in range(depth)]
    x, y = rng.standard_normal((5, width)), rng.standard_normal((5, width))
    a, b = tr.reversible_forward(x, y, fns)
    x2, y2 = tr.reversible_inverse(a, b, fns)
    scale = max(1.0, float(np.abs(a).max()), float(np.abs(b).max()))
    assert np.abs(x2 - x).max() <= 1e-12 * scale and np.abs(y2 - y).max() <= 1e-12 * scale


def test_reversible_needs_no_invertible_f():
    """F may destroy information (here it maps everything to a constant or clips it)."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(8), rng.standard_normal(8)
    fns = [lambda v: np.ones_like(v) * 3.0, lambda v: np.clip(v, 0, 0.1), lambda v: np.sign(v)]
    a, b = tr.reversible_forward(x, y, fns)
    x2, y2 = tr.reversible_inverse(a, b, fns)
    assert np.allclose(x2, x, atol=1e-15) and np.allclose(y2, y, atol=1e-15)


def test_train_cli_json_contracts(tmp_path):
    from conftest import cli_json

    def run(*args):
        return cli_json("train", *args)

    t = run("time", "--model", "llama-3.1-405b", "--system", "h100-sxm", "--chips", "16384", "--tokens", "15.6T",
            "--mfu", "0.41")
    assert {"flops", "seconds", "days", "chip_hours", "usd"} <= set(t)
    o = run("overtrain", "--active-params", "100G", "--tokens-per-s", "50M", "--lifetime-days", "60.875",
            "--plot", str(tmp_path / "o.png"))
    assert {"inference_tokens", "pretrain_tokens", "rl_tokens", "chinchilla_tokens", "overtraining_factor"} <= set(o)
    c = run("chinchilla", "--flops", "5.88e23", "--fit", "besiroglu")
    assert {"params", "tokens", "loss"} <= set(c) and c["params"] == pytest.approx(70e9, rel=0.05)
    mem = run("memory", "--model", "llama-3.1-70b", "--system", "h100-sxm", "--chips", "256", "--dp", "8", "--tp", "8",
              "--pp", "4", "--micro-batch", "1", "--seq-len", "8192", "--zero", "1", "--recompute", "selective",
              "--plot", str(tmp_path / "m.png"))
    assert {"weights_bytes_per_chip", "grads_bytes_per_chip", "optimizer_bytes_per_chip", "activation_bytes_per_chip",
            "total_bytes_per_chip", "fits"} <= set(mem)
    u = run("mfu", "--model", "deepseek-v3", "--system", "h800-sxm", "--tokens", "14.8T", "--chip-hours", "2.664M")
    assert u["mfu"] == pytest.approx(0.352, rel=0.01)
    assert (tmp_path / "o.png").stat().st_size > 10_000 and (tmp_path / "m.png").stat().st_size > 5_000


@pytest.mark.parametrize("args, fragment", [
    (["train", "time", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "8", "--tokens", "1T", "--mfu", "1.5"],
     "MFU"),
    (["train", "overtrain", "--active-params", "100G", "--tokens-per-s", "50M", "--lifetime-days", "60", "--rl-factor", "9"],
     "RL factor"),
    (["train", "chinchilla", "--flops", "1e23", "--fit", "kaplan"], "unknown fit"),
    (["train", "memory", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "8", "--dp", "8", "--zero", "4"],
     "ZeRO"),
])
def test_train_cli_errors(args, fragment):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and fragment in res.stderr and "Traceback" not in res.stderr + res.stdout


def test_invariant_zero3_stores_each_parameter_once_with_expert_parallelism():
    """Invariant: under ZeRO-3 every parameter is stored once across the cluster, so weights per chip ×
    chips = the model's bf16 bytes exactly — with expert parallelism too, where ZeRO can shard a routed
    expert only over the DP / EP ranks holding a copy of it (a user review found DeepSeek-V3 on 2,048
    chips at EP64 reporting 55 GB of weights in total, the experts divided by DP as well as EP). And
    with ZeRO-1 the optimizer's 12 bytes per parameter add up to 12 × the parameters."""
    m = CAT.model("deepseek-v3")
    s = CAT.system("h100-sxm")
    n = tm.param_counts(m).total
    z3 = tr.train_memory(m, s, dp=64, tp=8, pp=4, ep=64, zero=3)
    assert z3.weights_bytes_per_chip * 2048 == pytest.approx(2 * n, rel=1e-9)
    z1 = tr.train_memory(m, s, dp=128, tp=1, pp=16, ep=64, zero=1)  # DeepSeek-V3's own layout (its report, §3.2)
    assert z1.optimizer_bytes_per_chip * 2048 == pytest.approx(12 * n, rel=1e-9)


def test_train_refuses_what_cannot_be_and_labels_the_peak_it_uses():
    """A run implying more than 100 % of the peak is refused in one sentence (Llama-3.1-8B's 15 T
    tokens in 1,000 H100-hours would need ~200× the bf16 peak); an unknown --facility is a usage
    error, not a line inside a successful answer; FP4 on an H100 says it runs on the FP8 line; a chip
    without a sourced board power takes --board-w (as `energy` does)."""
    runner = CliRunner()
    r = runner.invoke(app, ["train", "mfu", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--tokens", "15T",
                            "--chip-hours", "1000"])
    assert r.exit_code == 2 and "more than the chips can do" in r.stderr
    r = runner.invoke(app, ["train", "time", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "8",
                            "--tokens", "1T", "--facility", "bogus"])
    assert r.exit_code == 2 and "--facility" in r.stderr
    r = runner.invoke(app, ["train", "time", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "8",
                            "--tokens", "1T", "--dtype", "fp4"])
    assert r.exit_code == 0 and "fp4 on the chip's fp8 FLOP/s line" in " ".join(r.stdout.split())
    r = runner.invoke(app, ["train", "time", "--model", "llama-3.1-8b", "--system", "tpu-v5p", "--chips", "8",
                            "--tokens", "1T", "--board-w", "900", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["energy_mwh"] > 0
