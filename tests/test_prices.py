"""prices.py (issue 6): every inversion against the lecture's numbers and against round trips."""

import json
import math
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

import tokenmath as tm
from tokenmath import prices as pr
from tokenmath import serving as sv
from tokenmath.cli import app
from tokenmath.specs import Chip, Model, PriceSheet, System

CAT = tm.load_catalog()


def test_L48_kv_bytes_from_a_price_tier():
    """L48 (1:35–1:38): a price step at 200k tokens with 100B active -> ≈ 1.7 kB/token. Per chip
    (lecture-claims): H100 FP8 1,693 B, GB200 FP8 1,600, GB200 FP4 800; the lecture's 1/300 × 100B /
    200k = 1,667 B is a chip whose FLOP/s ÷ BW is 600 (a ~300-ratio chip in 8-bit). Rel 1e-3."""
    assert pr.kv_from_tier(100e9, 200e3, CAT.system("h100-sxm"), dtype="fp8") == pytest.approx(1693, rel=1e-3)
    assert pr.kv_from_tier(100e9, 200e3, CAT.system("gb200-nvl72"), dtype="fp8") == pytest.approx(1600, rel=1e-3)
    assert pr.kv_from_tier(100e9, 200e3, CAT.system("gb200-nvl72"), dtype="fp4") == pytest.approx(800, rel=1e-3)
    chip = Chip(name="r300", hbm_bytes=1e11, hbm_bytes_per_s=1e12, fp8_flops_per_s=600e12)
    assert pr.kv_from_tier(100e9, 200e3, System("s", chip, 1), dtype="fp8") == pytest.approx(1666.67, rel=1e-4)


def test_L49_candidate_layouts_include_the_lectures_2kB_layout():
    """L49: ~2 kB fits one KV layer shared by all layers × 2 × 8 KV heads × 128 dims at 1 byte."""
    layouts = pr.candidate_layouts(1667, models=CAT.models)
    assert any(x.description == "GQA: 1 layer that stores KV (the others share it) × 2 (K, V) × 8 KV heads × 128 dims × fp8"
               for x in layouts)
    assert all(1 / 1.6 <= x.ratio <= 1.6 for x in layouts if not x.description.startswith("catalog"))
    real = {x.description.split()[2]: x.bytes_per_token for x in layouts if x.description.startswith("catalog")}
    assert 70_272 in real.values() and 327_680 in real.values()  # DeepSeek-V3 / Llama-3.1-70B: far above 2 kB
    assert len(real) == len(set(m.config_path for m in CAT.models.values() if not m.is_totals_only))  # one per config


def test_kv_round_trip_through_the_serving_model():
    """Make a price step where the serving model says the KV crossover is, invert it: the model's
    KV bytes per token come back (weights amortised, a totals model: exact)."""
    for kv, N, system in ((2048, 100e9, "gb200-nvl72"), (70_272, 37e9, "h800-sxm"), (500, 20e9, "tpu-v7")):
        m = Model(name="m", total_params_given=10 * N, active_params_given=N, kv_bytes_per_token_given=kv,
                  weight_dtype="fp8", base_dtype="fp8")
        s = CAT.system(system)
        L_star = sv.balance_context(m, s, None)
        assert pr.kv_from_tier(N, L_star, s, dtype="fp8") == pytest.approx(kv, rel=1e-9)


def test_price_ratio_round_trip():
    """Generate a sheet from a model + system + margin (input = margin × prefill cost per token,
    output = margin × decode cost per token at batch B); infer recovers B from the ratio."""
    m, s = CAT.model("llama-3.1-70b"), CAT.system("h100-sxm")
    margin, B, L, P = 3.0, 96.0, 4096, 8192
    pd = sv.prefill_vs_decode(m, s, P, batch=B, context=L, chips=8)
    sheet = PriceSheet("gen", "me", "llama", input_usd_per_mtok=margin * pd.prefill_usd_per_mtok,
                       output_usd_per_mtok=margin * pd.decode_usd_per_mtok)
    inf = pr.infer(sheet, s, active_params=70e9, model=m, context=L, prompt_tokens=P)
    assert inf.decode_prefill_cost_ratio == pytest.approx(pd.output_input_cost_ratio, rel=1e-12)
    assert sv.batch_for_cost_ratio(m, s, inf.decode_prefill_cost_ratio, context=L, prompt_tokens=P, chips=8) == \
        pytest.approx(B, rel=1e-9)


def test_L56_fast_mode_inversion_and_round_trip():
    """L56: 6× price, 2.5× speed -> a 15× smaller batch, normal step 2.8·W, fast 1.12·W. Round trip:
    serving.fast_mode on a memory-bound model produces (p, s); the inversion recovers the batch cut."""
    f = pr.fast_mode_explanation(6, 2.5)
    assert f["consistent"] and f["batch_reduction"] == pytest.approx(15)
    assert f["normal_step_over_weight_fetch"] == pytest.approx(2.8) and f["fast_step_over_weight_fetch"] == pytest.approx(1.12)
    m = Model(name="mb", total_params_given=1e12, active_params_given=1e9, kv_bytes_per_token_given=1e5,
              weight_dtype="fp8", base_dtype="fp8")
    s = CAT.system("gb200-nvl72")
    p = tm.slopes(m, s, 10_000)
    for ref_ratio, speed in ((0.5, 1.3), (3.0, 2.0), (10.0, 5.0)):
        ref = ref_ratio * p.weights_s / p.kv_s_per_seq
        fm = sv.fast_mode(m, s, 10_000, speedup=speed, reference=ref)
        inv = pr.fast_mode_explanation(fm.price_multiplier, fm.speedup)
        assert inv["batch_reduction"] == pytest.approx(ref / fm.batch, rel=1e-6)
        assert inv["normal_step_over_weight_fetch"] == pytest.approx(fm.reference_step_s / p.weights_s, rel=1e-6)
    assert not pr.fast_mode_explanation(0.8, 2)["consistent"]


def test_L61_drain_times_and_cache_tiers():
    """L61 (2:00): drain times (capacity/bandwidth) computed from the catalog's devices: HBM 24 ms
    (GB200), Grace DDR ≈ 0.9 s, a 30.72 TB / 28 GB/s NVMe drive ≈ 18 min, a 24 TB / 285 MB/s HDD
    ≈ 23 h. The 5-minute and 1-hour caches are nearest the flash tier (lecture-claims L61: the
    lecture's "flash and disk" guess puts the 1-h cache on disk, which drains in a day)."""
    t = pr.tiers(CAT.system("gb200-nvl72"), CAT.storage)
    assert t["hbm"].drain_s == pytest.approx(0.024)
    assert t["ddr"].drain_s == pytest.approx(0.9375)
    assert t["flash"].drain_s == pytest.approx(30.72e12 / 28e9)
    assert t["disk"].drain_s / 3600 == pytest.approx(23.4, rel=0.01)
    assert pr.tier_for_hold(300, t) == "flash" and pr.tier_for_hold(3600, t) == "flash"
    assert pr.tier_for_hold(0.01, t) == "hbm" and pr.tier_for_hold(2, t) == "ddr" and pr.tier_for_hold(86400, t) == "disk"
    inf = pr.infer(CAT.price_sheet("claude-opus-4.6"), CAT.system("gb200-nvl72"), active_params=100e9, storage=CAT.storage)
    assert inf.cache_tiers == {"5m": "flash", "1h": "flash"}
    assert "ddr" not in pr.tiers(CAT.system("h100-sxm"), CAT.storage)  # no sourced host-DDR figure for HGX


def test_L59_hbm_break_even_hold_time():
    """L59 (1:49–1:59): DeepSeek-V3 on H100 at $2/h, BF16, 100 % MFU: recomputing costs $0.042 per
    million tokens (lecture-claims). Holding in HBM: lecture-claims gets $4.9e-10 per token-second
    and a break-even ≈ 85 s with the datasheet's "80 GB" read as decimal; an H100 has 80 GiB
    (aiconfigurator h100_sxm.yaml mem_capacity 85,899,345,920 B), 7.4 % more bytes for the same
    dollars: $4.9e-10 / 1.074 = $4.56e-10 and 85 s × 1.074 = 91 s. A short prompt keeps attention
    FLOPs out of it; tolerance 3 % (lecture-claims' two digits)."""
    m, s = CAT.model("deepseek-v3"), CAT.system("h100-sxm")
    cc = pr.cache_costs(m, s, 100, 1.0, storage=CAT.storage, usd_per_chip_hour=2.0, dtypes=tm.Dtypes(weight="bf16"))
    gib = 2**30 / 1e9
    assert cc.rematerialize_usd / 100 * 1e6 == pytest.approx(0.042, rel=0.03)
    assert cc.tiers["hbm"].hold_usd / 100 == pytest.approx(4.9e-10 / gib, rel=0.03)
    assert cc.break_even_hold_s["hbm"] == pytest.approx(85 * gib, rel=0.03)



def test_recompute_cost_of_a_long_prompt_counts_causal_attention():
    """Recomputing a cached prompt of P tokens is a causal prefill: token i attends to the i tokens
    before it, so its attention FLOPs sum to a·P(P − 1)/2 — on average each token attends to ~P/2,
    not P. Independent arithmetic from Llama-3.1-70B's config.json (meta-llama/Llama-3.1-70B: 80
    layers, 64 query heads of 128 dims; score + value = 2·64·(128 + 128) FLOPs per attended token per
    layer, a = 2,621,440) and its matmul parameters (80 layers × (q, o 2·8192² + k, v 2·8192·1024 +
    MLP 3·8192·28,672) + lm_head 128,256·8192 = 69,501,714,432; 2 FLOPs each), at the H100 SXM
    datasheet's 989 TFLOP/s dense BF16 and $2/chip-hour. At P = 100k attention is ~half the FLOPs,
    so counting P instead of P/2 would be ~47 % dearer; tolerance 0.1 % (norm parameters, which
    tokenmath counts and this sum leaves out, are 0.002 %)."""
    m, s = CAT.model("llama-3.1-70b"), CAT.system("h100-sxm")
    P = 100_000
    matmul = 80 * (2 * 8192**2 + 2 * 8192 * 1024 + 3 * 8192 * 28672) + 128256 * 8192
    flops = 2 * matmul * P + 2 * 64 * (128 + 128) * 80 * P * (P - 1) / 2
    expect_usd = flops / 989e12 * 2.0 / 3600
    cc = pr.cache_costs(m, s, P, 1.0, storage=CAT.storage, usd_per_chip_hour=2.0, dtypes=tm.Dtypes(weight="bf16"))
    assert cc.rematerialize_usd == pytest.approx(expect_usd, rel=1e-3)
    short = pr.cache_costs(m, s, 100, 1.0, storage=CAT.storage, usd_per_chip_hour=2.0, dtypes=tm.Dtypes(weight="bf16"))
    assert short.rematerialize_usd / 100 == pytest.approx(2 * matmul / 989e12 * 2.0 / 3600, rel=1e-3)

def test_hold_equals_retrieve_at_the_drain_time():
    """L60 (2:01): for any tier, holding for its drain time costs exactly one retrieval."""
    m, s = CAT.model("llama-3.1-8b"), CAT.system("gb200-nvl72")
    for name, t in pr.tiers(s, CAT.storage).items():
        if name == "hbm":
            continue  # reading HBM is free in this accounting: the chip is already paid for
        cc = pr.cache_costs(m, s, 4096, t.drain_s, storage=CAT.storage)
        assert cc.tiers[name].hold_usd == pytest.approx(cc.tiers[name].retrieve_usd, rel=1e-12)


def test_cheapest_tier_moves_down_with_hold_time():
    m, s = CAT.model("deepseek-v3"), CAT.system("gb200-nvl72")
    best = [pr.cache_costs(m, s, 10_000, h, storage=CAT.storage).best_tier for h in (0.001, 1, 300, 3600, 86_400 * 3)]
    assert best == ["hbm", "ddr", "flash", "flash", "disk"]
    # recomputing wins when the cache is never reused more than it costs to keep (huge hold, tiny prompt)
    assert pr.cache_costs(m, s, 10, 1e9, storage=CAT.storage).best_tier == "rematerialize"


def test_long_context_table():
    """L53: attention FLOPs equal weight FLOPs at ≈ 54k (Llama-3.1-70B) and ≈ 4.4k (DeepSeek-V3 MLA);
    sparse attention (DeepSeek-V3.2) makes 1M-token decode ~3× cheaper relative to 8k than dense."""
    s = CAT.system("gb200-nvl72")
    llama = pr.long_context(CAT.model("llama-3.1-70b"), s)
    ds3, v32 = pr.long_context(CAT.model("deepseek-v3"), s), pr.long_context(CAT.model("deepseek-v3.2"), s)
    assert llama.attention_equals_weights_context == pytest.approx(54e3, rel=0.01)
    assert ds3.attention_equals_weights_context == pytest.approx(4.4e3, rel=0.01)
    assert v32.cost_ratio_1m_vs_8k < ds3.cost_ratio_1m_vs_8k / 2
    assert llama.balance_context < 2000  # GQA at BF16: memory bound past ~1.4k tokens


def test_L52_million_token_prompts_are_sold():
    """L52: the lecture says contexts "hover at 100-200k". Google's model pages publish an input token
    limit of 1,048,576 for Gemini 2.5 Pro (docs.cloud.google.com, Gemini 2.5 Pro model page) and Gemini
    3.1 Pro Preview (ai.google.dev/gemini-api/docs/models/gemini-3.1-pro-preview, Feb 2026). Exact
    (tolerance 0): a published integer."""
    sold = pr.longest_sold_context(CAT.prices.values())
    assert sold.tokens == 1_048_576
    assert sold.sheets == ("gemini-2.5-pro", "gemini-3.1-pro-preview")
    # and the limit sits above the priced tier, as the lecture's reading of a 200k plateau would not have it
    assert all(CAT.prices[n].long_context_threshold_tokens == 200_000 for n in sold.sheets)
    r = CliRunner().invoke(app, ["prices", "long-context", "--json", "--models", "llama-3.1-70b"])
    assert r.exit_code == 0 and json.loads(r.stdout)["longest_sold_context"]["tokens"] == 1_048_576
    assert pr.longest_sold_context([]) == pr.SoldContext(None, ())


def test_user_price_sheet_and_storage(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text(textwrap.dedent("""
        [prices.my-api]
        provider = "Me"
        model = "M"
        input_usd_per_mtok = 1
        output_usd_per_mtok = 4
        cache_write_usd_per_mtok = { "30s" = 1.1, "1d" = 3 }
        long_context_threshold_tokens = 128000
        long_context_input_usd_per_mtok = 2
        source = "my sheet"
        as_of = "2026-11"

        [storage.my-flash]
        tier = "flash"
        bytes = "8 TB"
        bytes_per_s = "7 GB/s"
        usd_per_gb = 0.08
        source = "vendor"
        as_of = "2026"
        """))
    cat = tm.load_catalog([p])
    sh = cat.price_sheet("my-api")
    assert sh.cache_write_usd_per_mtok == ((30.0, 1.1), (86400.0, 3.0))
    assert pr.tiers(cat.system("h100-sxm"), cat.storage)["flash"].name == "my-flash"
    inf = pr.infer(sh, cat.system("h100-sxm"), active_params=50e9, storage=cat.storage)
    assert inf.kv_bytes_per_token == pytest.approx(2 * 50e9 * 3.35e12 / (1979e12 * 128e3))
    bad = tmp_path / "bad.toml"
    bad.write_text('[prices.x]\nprovider="a"\nmodel="b"\ninput_usd_per_mtok=1\noutput_usd_per_mtok=2\n'
                   'cache_write_usd_per_mtok = { "5 minutes" = 1 }\nsource="s"\nas_of="t"\n')
    with pytest.raises(tm.TokenmathError, match="cache TTL '5 minutes'"):
        tm.load_catalog([bad])


def test_prices_cli_json_contracts(tmp_path):
    from conftest import cli_json

    def run(*args):
        return cli_json("prices", *args)

    assert len(run("sheets")["sheets"]) >= 8
    inf = run("infer", "gemini-3.1-pro-preview", "--system", "h100-sxm", "--active-params", "100G")
    for k in ("kv_bytes_per_token", "candidate_layouts", "decode_prefill_cost_ratio", "cache_tiers", "fast_mode"):
        assert k in inf, k
    assert inf["kv_bytes_per_token"] == pytest.approx(1693, rel=1e-3) and inf["decode_prefill_cost_ratio"] == 6
    opus = run("infer", "claude-opus-4.6")
    assert opus["kv_bytes_per_token"] is None and opus["cache_tiers"] == {"5m": "flash", "1h": "flash"}
    assert opus["fast_mode"]["batch_reduction"] == pytest.approx(15)
    kv = run("kv-from-tier", "--active-params", "100G", "--crossover-context", "200k", "--system", "gb200-nvl72")
    assert kv["kv_bytes_per_token"] == pytest.approx(1600)
    tiers = run("tiers", "--system", "gb200-nvl72")
    assert set(tiers) == {"hbm", "ddr", "flash", "disk"}
    assert all({"capacity_bytes", "bytes_per_s", "drain_s"} <= set(v) for v in tiers.values())
    cache = run("cache", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--prompt-tokens", "10k", "--hold-s", "5min",
                "--plot", str(tmp_path / "c.png"))
    assert cache["best_tier"] == "flash"
    assert all({"hold_usd", "retrieve_usd", "rematerialize_usd"} <= set(v) for v in cache["tiers"].values())
    assert (tmp_path / "c.png").stat().st_size > 10_000
    lc = run("long-context", "--models", "deepseek-v3,llama-3.1-8b")
    assert [m["model"] for m in lc["models"]] == ["deepseek-v3", "llama-3.1-8b"]


@pytest.mark.parametrize("model", ["deepseek-v3", "kimi-k2", "lecture-longctx-100b", "llama-3.1-8b"])
def test_infer_with_any_stand_in_model(model):
    """Some stand-ins do not fit one H100 box, so their cost-optimal ratio is unknown: still one answer."""
    res = CliRunner().invoke(app, ["prices", "infer", "claude-opus-4.6", "--system", "h100-sxm", "--model", model])
    assert res.exit_code == 0, res.stderr
    assert "output/input = 5×" in res.stdout


@pytest.mark.parametrize("args, fragment", [
    (["prices", "infer", "claude-opus-4.7"], "unknown price sheet 'claude-opus-4.7'"),
    (["prices", "cache", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--prompt-tokens", "10k", "--hold-s", "-5"],
     "hold time"),
    (["prices", "cache", "--model", "deepseek-v3", "--system", "tpu-v7", "--prompt-tokens", "10k", "--hold-s", "5"],
     "no price"),
    (["prices", "kv-from-tier", "--active-params", "100G", "--crossover-context", "0", "--system", "h100-sxm"],
     "--crossover-context"),
])
def test_prices_cli_errors(args, fragment):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and fragment in res.stderr and "Traceback" not in res.stderr + res.stdout


# ---- issue 21: prices read off a page as flags; N_active from --model ----------------------------------

GEMINI_31_FLAGS = ["--input-usd-per-mtok", "2", "--output-usd-per-mtok", "12", "--long-context-threshold-tokens", "200k",
                   "--long-context-input-usd-per-mtok", "4", "--long-context-output-usd-per-mtok", "18"]


def test_infer_from_price_flags_needs_no_toml():
    """Gemini 3.1 Pro Preview's published prices typed as flags ($2/$12, $4/$18 past 200k; GEM in
    catalog/prices.toml) give the L48 inversion: 100B active at a 200k step on H100 FP8 -> 1,693 B/token
    (lecture-claims L48; rel 1e-3), and output/input = 6 exactly. The flags and the catalog sheet give
    the same inference (an invariant: the same prices, two ways in)."""
    from conftest import cli_json

    flags = cli_json("prices", "infer", *GEMINI_31_FLAGS, "--system", "h100-sxm", "--active-params", "100G")
    sheet = cli_json("prices", "infer", "gemini-3.1-pro-preview", "--system", "h100-sxm", "--active-params", "100G")
    assert flags["kv_bytes_per_token"] == pytest.approx(1693, rel=1e-3) and flags["decode_prefill_cost_ratio"] == 6
    for k in ("kv_bytes_per_token", "candidate_layouts", "decode_prefill_cost_ratio", "cache_tiers", "fast_mode"):
        assert flags[k] == sheet[k], k
    assert flags["sheet"] == "command-line" and flags["prices"]["long_context_output_usd_per_mtok"] == 18


def test_fast_mode_and_cache_writes_from_flags():
    """Claude Opus 4.6 as flags ($5/$25, 5-minute write $6.25, 1-hour $10, fast mode 6× price for up to
    2.5× speed; ANT in catalog/prices.toml): L56's 15× smaller batch (rel 1e-9), and the cache-write
    surcharge per minute held 0.05 (5 m) and 1/60 (1 h) of the input price, both caches on flash (L61)."""
    from conftest import cli_json

    r = cli_json("prices", "infer", "--input-usd-per-mtok", "5", "--output-usd-per-mtok", "25",
                 "--cache-write-usd-per-mtok", "5m=6.25", "--cache-write-usd-per-mtok", "1h=10",
                 "--fast-price-multiplier", "6", "--fast-speedup", "2.5")
    assert r["fast_mode"]["batch_reduction"] == pytest.approx(15, rel=1e-9)
    assert r["cache_write_surcharge_per_minute"] == pytest.approx({"5m": 0.05, "1h": 1 / 60}, rel=1e-9)
    assert r["cache_tiers"] == {"5m": "flash", "1h": "flash"}


def test_flags_change_a_catalog_sheet_field_by_field():
    """A sheet plus a flag: that figure replaced, the others kept (Gemini 2.5 Pro's 200k tier stays)."""
    from conftest import cli_json

    r = cli_json("prices", "infer", "gemini-2.5-pro", "--output-usd-per-mtok", "15", "--system", "h100-sxm")
    assert r["decode_prefill_cost_ratio"] == 12 and r["prices"]["long_context_threshold_tokens"] == 200_000
    assert r["kv_bytes_per_token"] == pytest.approx(1693, rel=1e-3) and r["sheet"] == "gemini-2.5-pro + flags"
    opus = cli_json("prices", "infer", "claude-opus-4.6", "--cache-write-usd-per-mtok", "5m=7")
    assert opus["prices"]["cache_write_usd_per_mtok"] == {"5m": 7.0, "1h": 10.0}  # TTL by TTL: the 1-hour write stays


def test_infer_states_the_stand_in_models_n_active():
    """With --model, the N_active stated and used is that model's: DeepSeek-V3's 37,552,282,624 (exact,
    what transformers instantiates; tests/test_params.py). The KV inversion uses it too:
    2·N·BW/(FLOP/s·L*) on H100 FP8 at 200k = 1,693 × 37.55/100 B (rel 1e-9). Without --model or
    --active-params the lecture's 100B is used and called an assumption."""
    from conftest import cli_json

    s = CAT.system("h100-sxm")
    r = cli_json("prices", "infer", "gemini-3.1-pro-preview", "--system", "h100-sxm", "--model", "deepseek-v3")
    assert r["active_params"] == 37_552_282_624
    assert r["kv_bytes_per_token"] == pytest.approx(pr.kv_from_tier(37_552_282_624, 200e3, s), rel=1e-9)
    assert "deepseek-v3" in r["active_params_source"] and "assumption" not in r["active_params_source"]
    text = CliRunner().invoke(app, ["prices", "infer", "claude-opus-4.6", "--model", "deepseek-v3"]).stdout
    assert "N_active 37.6 billion (the stand-in model deepseek-v3's" in text and "100 billion" not in text
    plain = cli_json("prices", "infer", "claude-opus-4.6")
    assert plain["active_params"] == 100e9 and plain["active_params_source"].startswith("an assumption")
    given = cli_json("prices", "infer", "claude-opus-4.6", "--active-params", "200G")
    assert given["active_params"] == 200e9 and "given" in given["active_params_source"]


@pytest.mark.parametrize("args, fragment", [
    ([], "give a price sheet name (tokenmath prices sheets) or the prices you read"),
    (["--input-usd-per-mtok", "2"], "missing --output-usd-per-mtok"),
    (["--input-usd-per-mtok", "2", "--output-usd-per-mtok", "8", "--long-context-input-usd-per-mtok", "4"],
     "--long-context-input-usd-per-mtok = 4 needs --long-context-threshold-tokens"),
    (GEMINI_31_FLAGS[:4] + ["--long-context-threshold-tokens", "200k", "--long-context-input-usd-per-mtok", "1"],
     "--long-context-input-usd-per-mtok = 1 is below --input-usd-per-mtok = 2"),
    (["gemini-2.5-pro", "--input-usd-per-mtok", "3"],
     "--long-context-input-usd-per-mtok = 2.5 (sheet gemini-2.5-pro's) is below --input-usd-per-mtok = 3"),
    (["--input-usd-per-mtok", "2", "--output-usd-per-mtok", "8", "--cache-read-usd-per-mtok", "3"],
     "--cache-read-usd-per-mtok = 3 is above --input-usd-per-mtok = 2"),
    (["--input-usd-per-mtok", "2", "--output-usd-per-mtok", "8", "--cache-write-usd-per-mtok", "5m=1"],
     "--cache-write-usd-per-mtok 5m=1 is below --input-usd-per-mtok = 2"),
    (["--input-usd-per-mtok", "2", "--output-usd-per-mtok", "8", "--cache-write-usd-per-mtok", "5m"], "is not TTL=PRICE"),
    (["--input-usd-per-mtok", "2", "--output-usd-per-mtok", "8", "--cache-write-usd-per-mtok", "5q=3"], "cache TTL '5q'"),
    (["--input-usd-per-mtok", "2", "--output-usd-per-mtok", "8", "--cache-write-usd-per-mtok", "5m=x"],
     "--cache-write-usd-per-mtok = '5m=x'"),
    (["--input-usd-per-mtok", "2", "--output-usd-per-mtok", "8", "--fast-speedup", "2"],
     "--fast-speedup = 2 needs --fast-price-multiplier"),
    (["--input-usd-per-mtok", "0", "--output-usd-per-mtok", "8"], "--input-usd-per-mtok = 0 must be > 0"),
    (["--input-usd-per-mtok", "nan", "--output-usd-per-mtok", "8"], "--input-usd-per-mtok = nan is not a finite number"),
    (["claude-opus-4.6", "--model", "deepseek-v3", "--active-params", "37G"], "give --active-params or --model, not both"),
])
def test_price_flags_inconsistent_or_missing_one_sentence(args, fragment):
    res = CliRunner().invoke(app, ["prices", "infer", *args])
    assert res.exit_code == 2 and "Traceback" not in res.stdout + res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and fragment in res.stderr, res.stderr


def test_invariant_every_catalog_sheet_is_consistent():
    """The consistency rules that refuse bad flags hold for every shipped sheet (so they refuse no real one)."""
    for sheet in CAT.prices.values():
        pr.check_sheet(sheet)
        assert pr.sheet_from_prices(sheet) is sheet  # no flags: the sheet itself
