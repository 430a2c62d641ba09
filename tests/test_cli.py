"""The CLI: every issue-fixed JSON key present; bad input -> one sentence on stderr, exit 2."""

import json
import subprocess
import sys

import pytest
from pathlib import Path

from typer.testing import CliRunner

import tokenmath as tm
from tokenmath.cli import app

runner = CliRunner()
DATA = Path(__file__).parent / "data"


def run(*args):
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


from conftest import cli_json as run_json  # noqa: E402


def test_models_and_systems_list():
    models = run_json("models")["models"]
    assert {"deepseek-v3", "llama-3.1-8b", "lecture-moe-700b"} <= {m["name"] for m in models}
    systems = run_json("systems")["systems"]
    assert len(systems) >= 17 and all("hbm_drain_s" in s for s in systems)


def test_model_json_contract():
    rec = run_json("model", "deepseek-v3", "--context", "4096", "--kv-dtype", "bf16")
    for key in ("total_params", "active_params", "kv_bytes_per_token", "kv_read_bytes_per_token", "layers", "breakdown"):
        assert key in rec, key
    assert rec["total_params"] == 671_026_404_352 and rec["active_params"] == 37_552_282_624
    assert rec["kv_bytes_per_token"] == 70_272 and rec["layers"] == 61
    assert rec["breakdown"]["routed_experts"] > 0


def test_model_accepts_config_path():
    rec = run_json("model", str(DATA / "llama-2-13b.json"), "--context", "8k")
    assert rec["total_params"] == 13_015_864_320 and rec["context"] == 8000


def test_system_json_contract():
    rec = run_json("system", "h100-sxm")
    for key in ("bf16_flops_per_s", "fp8_flops_per_s", "hbm_bytes", "hbm_bytes_per_s", "scaleup_bytes_per_s",
                "scaleup_chips", "scaleout_bytes_per_s", "usd_per_chip_hour", "power_w", "hbm_drain_s"):
        assert key in rec, key
    assert rec["hbm_drain_s"] == pytest.approx(80 * 2**30 / 3.35e12)  # 80 GiB (aiconfigurator h100_sxm.yaml) / 3.35 TB/s
    # 90 % of it less aiconfigurator's other_mem 3.5 GiB and nccl_mem 392 MiB (layout.serving_hbm_bytes)
    assert rec["serving_hbm_bytes"] == pytest.approx(0.9 * 80 * 2**30 - 3.5 * 2**30 - 392 * 2**20)


def test_step_json_contract_and_values_equal_python():
    """`step --efficiency roofline` is the bound of the pass on its layout (issue 21: one bound),
    equal to the Python estimate_pass under the roofline profile, and to the `roofline` record."""
    rec = run_json("step", "--model", "llama-3.1-70b", "--system", "h100-sxm", "--chips", "8", "--batch", "64",
                   "--context", "8192", "--weight-dtype", "fp8", "--kv-dtype", "fp8", "--efficiency", "roofline")
    for key in ("compute_s", "weights_s", "kv_s", "network_s", "step_s", "bound", "tokens_per_s", "usd_per_mtok",
                "mfu", "mbu", "assumptions", "estimate", "roofline"):
        assert key in rec, key
    assert rec["estimate"] == "roofline"
    cat = tm.load_catalog()
    est = tm.estimate_pass(cat.model("llama-3.1-70b"), cat.system("h100-sxm"), 64, 8192, chips=8,
                           dtypes=tm.Dtypes(weight="fp8", kv="fp8"))
    assert rec["step_s"] == pytest.approx(est.op.bound_s, rel=1e-12) == rec["roofline"]["step_s"]
    # memory on two tests: all of HBM (the bound) and what a serving engine fills (the estimate's replica)
    from tokenmath.parallelism import Layout

    assert rec["serving_bytes_per_chip"] == pytest.approx(tm.serving_hbm_bytes(cat.system("h100-sxm"), Layout(tp=8)))
    assert rec["fits"] and rec["serves"] and rec["serving_bytes_per_chip"] < rec["hbm_bytes_per_chip"]
    assert rec["assumptions"]["efficiency"] == {"flops": 1.0, "hbm": 1.0, "network": 1.0, "label": "roofline"}
    assert rec["assumptions"]["weight_dtype"] == "fp8"


def test_step_default_is_the_labelled_estimate_with_its_band_and_the_bound_beside_it():
    """Issue 11: the default answer is the calibrated estimate, named under "estimate", with
    range_80 for step_s, tokens/s per chip and $/Mtok, never faster than the roofline beside it;
    it equals the Python estimate_pass."""
    args = ("step", "--model", "llama-3.1-70b", "--system", "h100-sxm", "--chips", "8", "--batch", "64",
            "--context", "8192", "--weight-dtype", "fp8", "--kv-dtype", "fp8")
    rec = run_json(*args)
    assert rec["estimate"].startswith("calibrated ")
    assert rec["step_s"] > rec["roofline"]["step_s"] == pytest.approx(rec["roofline_step_s"], rel=0.05)
    for k in ("step_s", "tokens_per_s_per_chip", "usd_per_mtok"):
        lo, hi = rec["range_80"][k]
        assert lo < rec[k] < hi, k
    cat = tm.load_catalog()
    m, s = cat.model("llama-3.1-70b"), cat.system("h100-sxm")
    est = tm.estimate_pass(m, s, 64, 8192, chips=8, dtypes=tm.Dtypes(weight="fp8", kv="fp8"),
                           profile=tm.choose_profile("calibrated", system=s))
    assert rec["step_s"] == pytest.approx(est.step_s, rel=1e-12)
    assert set(rec["parts"]) >= {"dense_gemm_s", "attention_s", "tp_comm_s", "overhead_s"}
    vllm = run_json(*args, "--engine", "vllm")
    assert "vllm" in vllm["estimate"]


def test_step_default_chips_is_one_replica():
    """Default replica: the whole box/rack (<= 72 chips); on TPU pods the fewest chips that fit."""
    rec = run_json("step", "--model", "llama-3.1-70b", "--system", "h100-sxm", "--batch", "8", "--context", "1000")
    assert rec["assumptions"]["chips"] == 8 and rec["fits"]
    rec = run_json("step", "--model", "llama-3.1-70b", "--system", "tpu-v5e", "--batch", "8", "--context", "1000")
    assert rec["assumptions"]["chips"] == 16 and rec["fits"]  # 141 GB of weights + KV in 16 GB chips
    rec = run_json("step", "--model", "llama-3.1-405b", "--system", "h100-sxm", "--batch", "8", "--context", "1000")
    assert rec["assumptions"]["chips"] == 16  # 812 GB does not fit one 640 GB box: two boxes


def test_step_without_price_gives_null():
    rec = run_json("step", "--model", "llama-3.1-8b", "--system", "tpu-v6e", "--batch", "8")
    assert rec["usd_per_mtok"] is None
    rec = run_json("step", "--model", "llama-3.1-8b", "--system", "tpu-v6e", "--batch", "8", "--usd-per-chip-hour", "2.7")
    assert rec["usd_per_mtok"] > 0


def test_report_default_is_the_lecture_example():
    code, out, err = run("report")
    assert code == 0, err
    for phrase in ("deepseek-v3", "gb200-nvl72", "Latency floor", "Balance batch", "Cost floor", "Memory",
                   "8 of 256 experts"):
        assert phrase in out, phrase
    rec = run_json("report")
    assert rec["balance_batch"] > 5000 and rec["latency_floor_s"] < 2e-3
    assert {"steps", "cost_floor_usd_per_mtok", "hbm_drain_s", "assumptions"} <= set(rec)


@pytest.mark.parametrize("args, fragment", [
    (["step", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--batch", "0"], "--batch = '0' must be > 0"),
    (["step", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--batch", "-4"], "must be > 0"),
    (["step", "--model", "llama-3.1-8b", "--system", "h100", "--batch", "1"], "did you mean 'h100-sxm'"),
    (["step", "--model", "llama-3.1-7b", "--system", "h100-sxm"], "unknown model 'llama-3.1-7b'"),
    (["step", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--context", "lots"], "--context = 'lots'"),
    (["step", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--weight-dtype", "fp5"], "unknown dtype 'fp5'"),
    (["step", "--model", "llama-3.1-405b", "--system", "h100-sxm", "--chips", "1"], "needs 812 GB"),
    (["step", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "0"], "--chips = 0"),
    (["model", str(DATA / "does-not-exist.json")], "does not exist"),
    (["report", "--system", "gb200"], "unknown system 'gb200'"),
])
def test_bad_input_one_sentence_exit_2(args, fragment):
    code, out, err = run(*args)
    assert code == 2
    assert fragment in err
    assert "Traceback" not in err + out and len(err.strip().splitlines()) == 1


def test_broken_config_and_toml(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{")
    code, _, err = run("model", str(bad))
    assert code == 2 and "not valid JSON" in err
    toml = tmp_path / "c.toml"
    toml.write_text("[systems.x]\nhbm_bytes = '80 GX'\nhbm_bytes_per_s = 1e12\nbf16_flops_per_s = 1e15\nsource='a'\nas_of='b'\n")
    code, _, err = run("systems", "--catalog", str(toml))
    assert code == 2 and "'80 GX'" in err and "[systems.x]" in err


def test_catalog_option_adds_a_system(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[chips.x1]\nbf16_flops_per_s = '2 PFLOP/s'\nhbm_bytes = '200 GB'\nhbm_bytes_per_s = '10 TB/s'\n"
                    "usd_per_chip_hour = 3\nsource='me'\nas_of='2026'\n")
    rec = run_json("step", "--model", "llama-3.1-8b", "--system", "x1", "--batch", "32", "--catalog", str(toml))
    assert rec["assumptions"]["flops_per_s_per_chip"] == 2e15


def test_installed_entry_point_exits_2():
    """The real console script (not the test runner) exits 2 with no traceback."""
    res = subprocess.run([sys.executable, "-m", "tokenmath.cli", "step", "--model", "nope", "--system", "h100-sxm"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "unknown model 'nope'" in res.stderr and "Traceback" not in res.stderr


def test_version_is_the_installed_package_version():
    """`tokenmath --version` prints what importlib.metadata says is installed (pyproject's version),
    and exits 0 before any command runs."""
    from importlib.metadata import version

    code, out, _ = run("--version")
    assert code == 0 and out.strip() == f"tokenmath {version('tokenmath')}"
    assert version("tokenmath") == tm.__version__  # pyproject.toml and tokenmath.__version__ agree


def test_version_imports_no_heavy_library():
    """Invariant (like tests/test_startup.py for --help): the real entry point with --version imports
    neither numpy nor the core."""
    probe = ("import sys; sys.argv = ['tokenmath', '--version']\nimport tokenmath.cli\ntry:\n    tokenmath.cli.main()\n"
             "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
             "print('HEAVY', sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'matplotlib', 'pydantic', 'scipy'}))")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("tokenmath ") and lines[-1] == "HEAVY []", res.stdout


def _front_lines(ax):
    """The axes' step line (its label starts 'Pareto front') and every other drawn data line."""
    steps = [ln for ln in ax.get_lines() if ln.get_label().startswith("Pareto front")]
    others = [ln for ln in ax.get_lines() if not ln.get_label().startswith(("Pareto front", "SLO", "_"))]
    return steps, others


@pytest.mark.parametrize("objective, key", [("cost", "usd_per_mtok"), ("energy", "joules_per_token")])
def test_invariant_plan_frontier_is_a_step_with_markers(objective, key):
    """Invariant (issue 21: frontier lines through sparse points looked like options): the plan plot
    draws the Pareto front as one step (drawstyle steps-pre: between two deployments the value is the
    next faster one's) whose legend says what it means, and each system's deployments as markers with
    no line; the plotted quantity is what the plan minimised. At every front point the step's value
    is the best among points at least that fast (what a 'pre' step shows)."""
    from tokenmath import plan as pl
    from tokenmath import plots

    cat = tm.load_catalog()
    p = pl.plan(cat.model("llama-3.1-70b"), [cat.system("h100-sxm"), cat.system("mi300x")], input_tokens=2000,
                output_tokens=500, min_tokens_per_s_per_user=20, goal=objective)
    fig = plots.plan_frontier(p, title="t")
    ax = fig.axes[0]
    steps, others = _front_lines(ax)
    assert len(steps) == 1 and steps[0].get_drawstyle() == "steps-pre"
    assert "no option lies between the markers" in steps[0].get_label()
    x, y = steps[0].get_xdata(), steps[0].get_ydata()
    assert list(x) == sorted(x) and len(x) == len(p.frontier) >= 3
    assert all(y[i] == min(y[j] for j in range(len(x)) if x[j] >= x[i]) for i in range(len(x)))
    assert sorted(y) == sorted(getattr(pt, key) for pt in p.frontier)
    assert all(ln.get_linestyle() == "None" for ln in others)  # markers only: systems and the best star
    assert sum(len(ln.get_xdata()) for ln in others if not ln.get_label().startswith("best")) == len(p.frontier)
    assert ax.get_legend().get_title().get_text().startswith("markers: deployments")
    plots.plt.close(fig)


def test_invariant_fleet_frontier_is_a_step_with_markers():
    """The fleet plot draws its analytic front the same way: a step, and candidate markers without lines."""
    from types import SimpleNamespace

    from tokenmath import plots

    front = [{"system": sy, "tokens_per_s_per_user": u, "usd_per_mtok_output": c}  # a front as fleet._frontier returns it
             for sy, u, c in (("h100-sxm", 20.0, 0.5), ("h200-sxm", 35.0, 0.8), ("h100-sxm", 60.0, 2.0))]
    f = SimpleNamespace(frontier=front, best=None, slo=SimpleNamespace(tpot_limit=lambda: 0.04), model="m",
                        request_rate=10.0, input_tokens=1000.0, output_tokens=200.0)
    fig = plots.fleet_frontier(f)
    steps, others = _front_lines(fig.axes[0])
    assert len(steps) == 1 and steps[0].get_drawstyle() == "steps-pre" and len(steps[0].get_xdata()) == len(f.frontier)
    assert others and all(ln.get_linestyle() == "None" for ln in others)
    plots.plt.close(fig)


def test_invariant_naming_the_checkpoints_dtype_says_every_part_takes_it():
    """Invariant: `--weight-dtype mxfp4` on gpt-oss (whose MXFP4 checkpoint keeps attention, router,
    embeddings and lm_head in BF16, config.json quantization_config.modules_to_not_convert) stores
    every part in MXFP4, and the output says so and how to get the checkpoint as published; without
    the flag, or for a BF16 checkpoint, nothing is said."""
    args = ["step", "--model", "gpt-oss-120b", "--system", "h100-sxm", "--chips", "8", "--batch", "4"]
    named = runner.invoke(app, args + ["--weight-dtype", "mxfp4"])
    assert named.exit_code == 0 and "every part: the checkpoint keeps" in named.output
    assert "attention" in named.output.split("every part:")[1].split(";")[0]
    plain = runner.invoke(app, args)
    assert plain.exit_code == 0 and "every part" not in plain.output
    llama = runner.invoke(app, ["step", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--weight-dtype", "bf16"])
    assert llama.exit_code == 0 and "every part" not in llama.output


def test_models_kv_column_holds_only_the_window_on_sliding_window_layers():
    """gpt-oss-120b's config (github openai/gpt-oss, HF openai/gpt-oss-120b config.json: 36 layers
    alternating sliding-window (128 tokens) and full attention, 8 KV heads of 64, bf16 KV): a token's
    KV is 2 · 8 · 64 · 2 B = 2,048 B per layer; over a 4,096-token context the 18 full layers hold
    all of it and the 18 windowed ones 128 / 4,096 of it — 18 · 2,048 + 18 · 2,048 · 128 / 4,096 =
    38,016 B per token, which the `models` table shows (its first token's 73,728, every layer full,
    stays in the JSON as kv_bytes_per_token). Exact arithmetic on the config: tolerance 0."""
    rows = {m["name"]: m for m in run_json("models")["models"]}
    g = rows["gpt-oss-120b"]
    assert g["kv_bytes_per_token_at_4096"] == 18 * 2048 + 18 * 2048 * 128 / 4096 == 38016
    assert g["kv_bytes_per_token"] == 36 * 2048
    code, out, _ = run("models")
    assert code == 0 and "L = 4k" in out and "38,016" in out


def test_step_labels_compute_on_the_line_the_chip_has():
    """FP4 weights on an H100 (no FP4 tensor-core line on its datasheet) run on its FP8 line: the
    assumptions say so rather than 'compute fp4 (1.98 PFLOP/s)', and the JSON's flops_class is fp8."""
    code, out, _ = run("step", "--model", "llama-3.1-70b", "--system", "h100-sxm", "--chips", "8", "--weight-dtype", "fp4")
    assert code == 0 and "compute fp4 on the chip's fp8 FLOP/s line, having no fp4 one" in " ".join(out.split())
    a = run_json("step", "--model", "llama-3.1-70b", "--system", "h100-sxm", "--chips", "8", "--weight-dtype",
                 "fp4")["assumptions"]
    assert a["compute_dtype"] == "fp4" and a["flops_class"] == "fp8"


def test_report_reads_attention_intensity_the_right_way_round():
    """The lecture's L51 (decode attention is memory-bound) holds for GQA models and not for MLA's
    absorbed attention: DeepSeek-V3 spends 242 FLOPs per KV byte against an H200's 206 FLOP/byte in
    BF16 (989 TFLOP/s ÷ 4.8 TB/s), so its report must not say 'costs bandwidth, not FLOPs';
    Llama-3.1-70B's 8 must."""
    _, ds, _ = run("report", "--model", "deepseek-v3", "--system", "h200-sxm")
    _, ll, _ = run("report", "--model", "llama-3.1-70b", "--system", "h200-sxm")
    ds, ll = " ".join(ds.split()), " ".join(ll.split())
    assert "compute-heavier" in ds and "costs bandwidth, not FLOPs" not in ds
    assert "costs bandwidth, not FLOPs" in ll


def test_context_past_the_models_maximum_is_said():
    """Llama-3.1-8B's config allows 131,072 positions (max_position_embeddings): a step at 300k and a
    curve over context (which sweeps to 10× the maximum) say their contexts past it are a what-if."""
    _, out, _ = run("step", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "1", "--context", "300k")
    assert "maximum of 131,072 tokens" in " ".join(out.split())
    _, out, _ = run("step", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "1", "--context", "100k")
    assert "maximum of" not in out
    _, out, _ = run("curve", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "1", "--over", "context",
                    "--batch", "8", "--points", "5")
    assert "maximum of 131,072 tokens" in " ".join(out.split())


def test_a_given_price_is_labelled_as_given():
    """--usd-per-chip-hour prices the answer and its words say so, not the catalog's source; a user
    catalog that replaces a system's price drops the replaced price's source."""
    code, out, _ = run("step", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--batch", "8", "--usd-per-chip-hour", "1.85")
    assert code == 0 and "$1.85/chip-h (given: --usd-per-chip-hour)" in " ".join(out.split())
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "price.toml"
        p.write_text("[systems.h100-sxm]\nusd_per_chip_hour = 1.85\n")
        rec = run_json("system", "h100-sxm", "--catalog", str(p))
    assert rec["usd_per_chip_hour"] == 1.85 and rec["price_source"] == "the user's catalog"


def test_engines_lists_what_engine_can_name_with_each_features_source():
    """`tokenmath engines` (and tm.engines()): every engine --engine accepts, its documented features
    with their source, where the preset fitted it, and the feature sets a run adds with +. Checked
    against the engines' documentation: TensorRT-LLM's KV cache takes 0.9 of the memory free after
    loading (nvidia.github.io/TensorRT-LLM "How to Change KV Cache Behavior": free_gpu_memory_fraction
    default 0.9), vLLM's gpu_memory_utilization (default 0.9) covers the model executor's whole memory,
    SGLang's --moe-a2a-backend defaults to no all-to-all (its DP attention gathers tokens). The CLI's
    JSON is the Python record; a bad --efficiency is one sentence, exit 2."""
    d = run_json("engines")
    by = {e["name"]: e for e in d["engines"]}
    assert by["trtllm"]["features"]["kv_budget"] == "free" and "free_gpu_memory_fraction" in by["trtllm"]["source"]
    assert by["vllm"]["features"]["kv_budget"] == "total" and "gpu_memory_utilization" in by["vllm"]["source"]
    assert by["sglang"]["features"]["moe_a2a"] == "allgather"
    assert by["trtllm"]["fitted_cases"] > 0  # the shipped preset fitted TensorRT-LLM cases
    for e in d["engines"]:  # every listed engine is one --engine accepts
        assert tm.choose_profile(engine=e["name"]).engine.kv_budget == e["features"]["kv_budget"]
    assert {"two_batch_overlap", "deepep_low_latency"} <= {f["name"] for f in d["feature_sets"]}
    assert tm.engines().to_dict() == d
    text = runner.invoke(app, ["engines"]).stdout
    assert "0.9 of free after weights" in text and "two_batch_overlap" in text
    r = runner.invoke(app, ["engines", "--efficiency", "roofline"])
    assert r.exit_code == 2 and "expected 'calibrated' or a preset .json file" in r.stderr and "Traceback" not in r.output
