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
    for over in ("batch", "context"):
        rec = run_json("curve", *COMMON, "--over", over, "--points", "12")
        assert len(rec["points"]) >= 10
        for p in rec["points"]:
            assert {"batch", "context", "step_s", "compute_s", "weights_s", "kv_s", "tokens_per_s_per_chip",
                    "tokens_per_s_per_user", "usd_per_mtok", "bound"} <= set(p)
    st = tm.step_time(CAT.model("deepseek-v3"), CAT.system("gb200-nvl72"), 1, 4096)
    rec = run_json("curve", *COMMON, "--points", "12")
    first = rec["points"][0]
    assert rec["estimate"].startswith("calibrated")
    assert first["batch"] == 1 and first["roofline_step_s"] == pytest.approx(st.step_s, rel=1e-12)
    assert all(p["step_s"] >= p["roofline_step_s"] * 0.95 and p["range_80"]["step_s"][0] < p["step_s"] for p in rec["points"])
    bound = run_json("curve", *COMMON, "--points", "12", "--efficiency", "roofline")
    assert bound["estimate"] == "roofline" and bound["points"][0]["step_s"] == pytest.approx(st.step_s, rel=1e-12)


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
