"""CLI of the serving issue: fixed JSON keys, values equal to Python, plots written headless."""

import json

import pytest
from typer.testing import CliRunner

import tokenmath as tm
from tokenmath import serving as sv
from tokenmath.cli import app

runner = CliRunner()
CAT = tm.load_catalog()
COMMON = ["--model", "deepseek-v3", "--system", "gb200-nvl72"]


from conftest import cli_json as run_json  # noqa: E402


def test_curve_json_contract():
    """curve: the estimate at every point with the roofline bound of the same pass beside it
    (issue 21: one bound — the same layout, chips and expert fetch as the estimate), `estimate`
    and `roofline` at the top; `--efficiency roofline` gives that same bound as its answer.
    Invariants (rel 1e-12)."""
    for over in ("batch", "context"):
        rec = run_json("curve", *COMMON, "--over", over, "--points", "12")
        assert len(rec["points"]) >= 10
        for p in rec["points"]:
            assert {"batch", "context", "step_s", "roofline_step_s", "compute_s", "weights_s", "kv_s",
                    "tokens_per_s_per_chip", "tokens_per_s_per_user", "usd_per_mtok", "bound", "mfu", "mbu"} <= set(p)
        assert set(rec["roofline"]) >= {"step_s", "tokens_per_s", "tokens_per_s_per_chip", "usd_per_mtok", "bound"}
        assert rec["roofline"]["step_s"] == [p["roofline_step_s"] for p in rec["points"]]
    m, s = CAT.model("deepseek-v3"), CAT.system("gb200-nvl72")
    rec = run_json("curve", *COMMON, "--points", "12")
    first = rec["points"][0]
    assert rec["estimate"].startswith("calibrated") and rec["layout"] == {"tp": 1, "ep": 64, "pp": 1, "dp": 1}
    est = tm.estimate_pass(m, s, 1, 4096, layout=tm.default_layout(m, s, 72))
    assert first["batch"] == 1 and first["roofline_step_s"] == pytest.approx(est.op.bound_s, rel=1e-12)
    assert all(p["step_s"] >= p["roofline_step_s"] and p["range_80"]["step_s"][0] < p["step_s"] for p in rec["points"])
    bound = run_json("curve", *COMMON, "--points", "12", "--efficiency", "roofline")
    assert bound["estimate"] == "roofline"
    assert [p["step_s"] for p in bound["points"]] == pytest.approx([p["roofline_step_s"] for p in rec["points"]], rel=1e-12)


KIMI = ["--model", "kimi-k2", "--system", "h200-sxm", "--batch", "1", "--context", "4k"]


def test_step_prints_one_bound_the_estimate_never_below_it():
    """Issue 21's reproducer (`step --model kimi-k2 --system h200-sxm --batch 1 --context 4k` printed
    an estimate of 10.3 ms, "the roofline bound of the same pass is 3 ms" and "bound: 37 tokens/s"
    (27 ms)): one line labelled "roofline bound", whose figures are the JSON's `roofline`, on the
    estimate's own layout; MFU and MBU on the estimate's step and the bound's on its own, of the
    same work (so mfu × step_s is the same for both). Invariants."""
    res = runner.invoke(app, ["step", *KIMI])
    assert res.exit_code == 0, res.stderr
    text = res.stdout
    assert sum(line.startswith("roofline bound:") for line in text.splitlines()) == 1
    assert "the roofline bound of the same pass is" not in text and not any(
        line.startswith("bound:") for line in text.splitlines())
    rec = run_json("step", *KIMI)
    rf = rec["roofline"]
    assert rec["estimate"].startswith("calibrated") and rf["step_s"] == rec["roofline_step_s"] <= rec["step_s"]
    assert rf["layout"].startswith(f"TP{rec['layout']['tp']}×EP{rec['layout']['ep']}×PP{rec['layout']['pp']}")
    assert rf["tokens_per_s"] == pytest.approx(1.0 / rf["step_s"], rel=1e-12)  # batch 1, one token
    assert rec["mfu"] * rec["step_s"] == pytest.approx(rf["mfu"] * rf["step_s"], rel=1e-12)
    assert rec["mbu"] * rec["step_s"] == pytest.approx(rf["mbu"] * rf["step_s"], rel=1e-12)
    assert f"MBU {rf['mbu']:.1%}" in text and f"MBU {rec['mbu']:.1%}" in text


def test_expert_fetch_moves_the_estimate_the_bound_and_the_energy_together():
    """Issue 21: `--expert-fetch` swung the energy 597 → 150 W per chip while the estimate did not
    move. Now one convention serves all three: 'all' (every expert, every step) reads more than
    'expected' (the experts a batch-1 step touches), so the estimate, the bound and the energy per
    token all rise (issue 23: board power follows the tokens per chip, the same here, so the longer
    step costs more joules), and the memory busy share is the bound's HBM time over the estimate's
    step. Invariants of the shared convention."""
    exp = run_json("step", *KIMI, "--expert-fetch", "expected")
    al = run_json("step", *KIMI, "--expert-fetch", "all")
    assert exp["expert_fetch"] == "expected" and al["expert_fetch"] == "all"
    assert al["step_s"] > 1.5 * exp["step_s"] and al["roofline"]["step_s"] > 1.5 * exp["roofline"]["step_s"]
    assert al["joules_per_token"] > 1.5 * exp["joules_per_token"]
    assert al["weight_bytes_read"] > 10 * exp["weight_bytes_read"]
    for r in (exp, al):
        mem = r["weights_s"] + r["kv_s"] + r["activations_s"]
        assert r["energy"]["u_memory"] == pytest.approx(min(1.0, mem / r["step_s"]), rel=1e-9)
        e = run_json("energy", *KIMI, "--expert-fetch", r["expert_fetch"])  # the energy command agrees
        assert e["step_s"] == pytest.approx(r["step_s"], rel=1e-12) and e["watts"] == pytest.approx(r["watts"], rel=1e-12)


def test_mbu_matches_databricks_definition_and_worked_example():
    """MBU = (parameter bytes + KV bytes read) / TPOT / peak bandwidth — Databricks, "LLM Inference
    Performance Engineering: Best Practices" (2023-10-12), whose worked example is a 7B model in
    16-bit at a TPOT of 14 ms: 14 GB moved in 14 ms = 1 TB/s achieved. Llama-2-7B (6.74B
    parameters, the 131M-entry input embedding a lookup, not a read) at batch 1 on an A100: the
    step's MBU × peak at 14 ms is within 8 % of 1 TB/s (the blog rounds to 7B and counts the
    embedding)."""
    m, s = CAT.model("llama-2-7b"), CAT.system("a100-sxm-80gb")
    est = tm.estimate_pass(m, s, 1, 0, chips=1)
    achieved = est.op.mbu(0.014) * s.chip.hbm_bytes_per_s
    assert achieved == pytest.approx(1.0e12, rel=0.08)
    # and exactly the definition, with the parameter count of the model card (6,738,415,616) less
    # the 32,000 × 4,096 input embedding, in BF16, plus one token's KV (2 · 32 layers · 4,096 · 2 B)
    bytes_ = (6_738_415_616 - 32_000 * 4096) * 2 + 2 * 32 * 4096 * 2
    assert est.op.mbu(0.014) == pytest.approx(bytes_ / 0.014 / 2.039e12, rel=1e-3)


def test_mfu_matches_palm_definition():
    """MFU = model FLOPs per token × tokens/s ÷ peak FLOP/s, with the forward pass's model FLOPs
    per token 2N + 4·n_layers·n_heads·head_dim·T (PaLM, Chowdhery et al. 2022, appendix B: training
    is 6N + 12·L·H·Q·T, three forwards; T the context attended). Llama-3.1-8B (8,030,261,248
    parameters less its 525,336,576-entry input embedding; 32 layers × 32 heads × 128), 64
    sequences at 4,096 tokens on one H100 (989 TFLOP/s BF16), at a 20 ms step: rel 1 %."""
    m, s = CAT.model("llama-3.1-8b"), CAT.system("h100-sxm")
    est = tm.estimate_pass(m, s, 64, 4096, chips=1)
    per_token = 2 * (8_030_261_248 - 525_336_576) + 4 * 32 * 32 * 128 * 4096
    assert est.op.mfu(0.020) == pytest.approx(64 * per_token / 0.020 / 989e12, rel=0.01)


def test_chips_the_default_layout_cannot_use_are_said_and_not_billed():
    """Issue 21: `step --chips 100000 --batch 1` reported a bound of 2.4M tokens/s at batch 1 (ideal
    sharding over 100,000 chips) while the estimate ran on 256. Now both run on the layout that
    can use them (EP256: DeepSeek-V3's 256 experts; 288 GB200s billed with their domains' idle
    chips), the rest are said in the text and JSON; the bound is at least the time 256 chips need
    to read the weights once (N_total bytes / (256 · HBM B/s), independent of the code)."""
    args = ["step", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--chips", "100000", "--batch", "1"]
    rec = run_json(*args)
    rep = rec["replica"]
    assert rep["chips_requested"] == 100000 and rep["chips"] == 256 and rep["billed_chips"] == 288
    assert rep["unused_chips"] == 100000 - 288 and "256 of the 100,000 chips" in rep["note"]
    s = CAT.system("gb200-nvl72")
    floor = 671_026_404_352 / (256 * s.chip.hbm_bytes_per_s)  # FP8: a byte per parameter
    assert rec["roofline"]["step_s"] >= floor and rec["roofline"]["tokens_per_s"] < 1 / floor
    assert rec["roofline"]["tokens_per_s_per_chip"] == pytest.approx(rec["roofline"]["tokens_per_s"] / 288, rel=1e-12)
    res = runner.invoke(app, args)
    assert "note: the default layout" in res.stdout and "99,712" in res.stdout


def test_a_replica_grown_past_the_domain_is_said():
    """Issue 21: DeepSeek-V3 at batch 30,000 ran on 144 GB200s while `step --help` said the replica
    is the scale-up domain. The help says it grows, the output says when (text and JSON), and the
    layout's busiest chip then holds its weights and KV."""
    res = runner.invoke(app, ["step", "--help"])
    assert "grown" in res.stdout
    args = ["step", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--batch", "30000", "--context", "8k"]
    rec = run_json(*args)
    assert rec["replica"]["grown_to_fit"] is True and rec["replica"]["billed_chips"] == 144
    assert rec["fits"] is True and rec["memory_bytes_per_chip"] <= rec["hbm_bytes_per_chip"]
    assert "replica grown to 144 chips" in runner.invoke(app, args).stdout
    small = run_json("step", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--batch", "64")
    assert small["replica"]["grown_to_fit"] is False and small["replica"]["note"] is None


def test_balance_json_contract():
    rec = run_json("balance", *COMMON, "--context", "4096")
    for key in ("balance_batch", "balance_batch_with_kv", "balance_context", "latency_floor_s",
                "cost_floor_usd_per_mtok", "hbm_drain_s", "sparsity", "flops_per_byte"):
        assert key in rec, key
    assert rec["balance_batch_with_kv"] is None  # past L*: memory bound at every batch
    assert rec["balance_context"] == pytest.approx(sv.balance_context(CAT.model("deepseek-v3"),
                                                                      CAT.system("gb200-nvl72"), None))
    with_batch = run_json("balance", *COMMON, "--context", "1000", "--batch", "12000")
    assert with_batch["balance_batch_with_kv"] is not None and with_batch["balance_context_with_weights"] > 0
    sparse = run_json("balance", *COMMON, "--sparse-topk", "2048")
    assert sparse["balance_context"] is None


def test_fastmode_json_contract():
    rec = run_json("fastmode", *COMMON, "--speedup", "2.5")
    for key in ("batch", "speedup", "price_multiplier", "max_speedup", "max_saving", "points"):
        assert key in rec, key
    assert rec["speedup"] == pytest.approx(2.5)
    rec = run_json("fastmode", *COMMON, "--price-multiplier", "100", "--draft-tokens", "1", "--acceptance", "0.85")
    assert rec["speedup"] <= rec["max_speedup"] * (1 + 1e-9)
    assert rec["speculative"]["tokens_per_verify"] == pytest.approx(1.85)


def test_traffic_json_contract():
    rec = run_json("traffic", *COMMON, "--tokens-per-s", "128k", "--batch", "2000")
    for key in ("tokens_per_s_per_replica", "replicas", "chips", "usd_per_day", "max_queue_wait_s", "max_latency_s"):
        assert key in rec, key
    assert rec["max_latency_s"] == pytest.approx(2 * rec["max_queue_wait_s"])


def test_prefill_json():
    rec = run_json("prefill", "--model", "llama-3.1-70b", "--system", "h100-sxm", "--prompt-tokens", "8192",
                   "--batch", "16")
    roof = rec["roofline"]  # the bound beside the estimate
    assert roof["prefill"]["bound"] == "compute" and roof["decode"]["bound"] == "memory"
    assert roof["output_input_cost_ratio"] > 5
    assert rec["estimate"].startswith("calibrated") and rec["output_input_cost_ratio"] > 1


@pytest.mark.parametrize("args, fragment", [
    (["fastmode", *COMMON, "--speedup", "2", "--price-multiplier", "3"], "not both"),
    (["fastmode", *COMMON, "--speedup", "-1"], "speedup"),
    (["traffic", *COMMON, "--tokens-per-s", "0"], "--tokens-per-s"),
    (["curve", *COMMON, "--over", "chips"], "over = 'chips'"),
    (["balance", *COMMON, "--sparse-topk", "0"], "topk"),
    (["fastmode", *COMMON, "--chips", "2"], "does not fit"),
])
def test_serving_errors_exit_2(args, fragment):
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and fragment in res.stderr and "Traceback" not in res.stderr + res.stdout


def test_plots_render_headless(tmp_path):
    """`tokenmath report --plots DIR` writes the five blackboard charts (Agg backend, no display)."""
    res = runner.invoke(app, ["report", "--plots", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.stderr
    written = json.loads(res.stdout)["plots"]
    names = {p.split("/")[-1] for p in written}
    assert names == {"latency_vs_batch.png", "cost_vs_batch.png", "cost_vs_context.png", "price_speed_frontier.png",
                     "prefill_vs_decode.png"}
    for p in written:
        data = open(p, "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    for cmd in (["curve", *COMMON, "--plot", str(tmp_path / "c.svg")],
                ["fastmode", *COMMON, "--plot", str(tmp_path / "f.png")],
                ["prefill", *COMMON, "--plot", str(tmp_path / "p.png")]):
        res = runner.invoke(app, cmd)
        assert res.exit_code == 0, res.stderr
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")


def test_curve_plot_draws_the_estimate_its_band_and_the_bound(tmp_path):
    """`curve --plot` (issue 21: the chart was roofline-only): the chart's legend names the estimate
    (with its label), its 80 % band and the roofline bound of the same passes, for a sweep over batch
    and over context; the estimate's line lies on or above the bound's at every point."""
    import matplotlib.pyplot as plt

    from tokenmath import plots

    m, s = CAT.model("deepseek-v3"), CAT.system("gb200-nvl72")
    st = sv.curve(m, s, over="batch", context=4096, chips=64, points=30)
    est = tm.estimate_pass(m, s, st.batch, st.context, layout=tm.default_layout(m, s, 72),
                           profile=tm.choose_profile("calibrated", system=s))
    for draw in (lambda: plots.latency_vs_batch(st, title="t", est=est, fits=st.fits),
                 lambda: plots.cost_vs_context(st, title="t", crossover=None, est=est)):
        fig = draw()
        ax = fig.axes[0]
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any(lab.startswith("estimate (calibrated") for lab in labels)
        assert "estimate's 80 % band" in labels and any(lab.startswith("roofline bound") for lab in labels)
        line = {ln.get_label(): ln for ln in ax.lines}
        e = next(v for k, v in line.items() if k.startswith("estimate ("))
        b = next(v for k, v in line.items() if k.startswith("roofline bound"))
        assert all(ye >= yb for ye, yb in zip(e.get_ydata(), b.get_ydata()))
        plt.close(fig)
    res = runner.invoke(app, ["curve", *COMMON, "--points", "8", "--plot", str(tmp_path / "c.png")])
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "c.png").stat().st_size > 10_000
