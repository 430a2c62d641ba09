"""Issue 12, robustness of the CLI: every bad value is exit 2 with one sentence naming the flag, the
value and the bound; never a traceback, NaN or inf in output; never unbounded work."""

from __future__ import annotations

import math
import os
import re
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tokenmath import TokenmathError
from tokenmath import cli
from tokenmath.cli import FLAGS, app
from tokenmath.units import parse_bounded

runner = CliRunner()
M = ["--model", "llama-3.1-8b", "--system", "h100-sxm"]
NONFINITE = re.compile(r"(?<![\w.])[-+]?(?:nan|inf|infinity)(?![\w])", re.IGNORECASE)


def invoke(*args):
    res = runner.invoke(app, list(args))
    err = res.stderr or ""
    return res.exit_code, res.stdout, err


def one_sentence_exit_2(args, fragment=None):
    code, out, err = invoke(*args)
    assert code == 2, (args, code, out, err)
    assert "Traceback" not in out + err and "Warning" not in err
    assert len(err.strip().splitlines()) == 1, err
    if fragment is not None:
        assert fragment in err, err
    return err


# ---- the one number parser -----------------------------------------------------------------------

ADVERSARIAL = ["nan", "NaN", "inf", "-inf", "Infinity", "1e308", "1e400", "-1e308", "1e-320", "0", "-0", "-1",
               "0.5", "1.5", "99999999999999999999", "１２", "١٢", "12\u00a0", "", " ", ",", "garbage", "1e", "--1",
               "1,000", "8k", "1.5M", "1e7", "1e8", "1" * 400, "0x10", "1_000", "½", "²", "+5"]


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.sampled_from(ADVERSARIAL), st.text(max_size=30),
                      st.floats(allow_nan=True, allow_infinity=True).map(repr),
                      st.integers(min_value=-10**30, max_value=10**30).map(str)),
       flag=st.sampled_from(sorted(FLAGS)))
def test_number_parser_is_bounded_or_one_sentence(text, flag):
    """Whatever the text, the parser returns a finite number inside the flag's bound, or raises one
    TokenmathError sentence naming the flag."""
    b = FLAGS[flag]
    try:
        x = cli._num(text, flag)
    except TokenmathError as e:
        msg = str(e)
        assert flag in msg and "\n" not in msg
        return
    assert math.isfinite(x) and x <= b.high and (x > b.low or (x == b.low and b.low_inclusive))
    if b.whole:
        assert float(x).is_integer()
    assert all(not ch.isdigit() or ch.isascii() for ch in text)


@pytest.mark.parametrize("text", ["１２", "١٢", "۱۲", "１.５k"])
def test_unicode_digits_are_refused(text):
    with pytest.raises(TokenmathError, match="non-ASCII digits"):
        parse_bounded(text, what="--batch", high=1e7)


def test_bound_message_names_flag_value_and_bound():
    with pytest.raises(TokenmathError) as e:
        cli._num("1e308", "--batch")
    assert str(e.value) == "--batch = '1e308' must be at most 10,000,000 (sequences per replica)"
    with pytest.raises(TokenmathError, match=r"--batch = '1.5' must be a whole number"):
        cli._num("1.5", "--batch")


# ---- each item of the issue, reproduced -------------------------------------------------------------------


@pytest.mark.parametrize("args, fragment", [
    (["step", *M, "--batch", "1.5"], "--batch = '1.5' must be a whole number"),
    (["step", *M, "--batch", "1e30"], "--batch = '1e30' must be at most 10,000,000"),
    (["step", *M, "--batch", "１２"], "non-ASCII digits"),
    (["step", *M, "--chips", "１２"], "--chips = １２ uses non-ASCII digits"),
    (["step", *M, "--chips", "1e7"], "--chips = 1e7 must be at most 1,000,000"),
    (["step", *M, "--context", "1e9"], "--context = '1e9' must be at most 100,000,000"),
    (["step", *M, "--efficiency", "roofline", "--flops-efficiency", "nan"], "--flops-efficiency = nan is not a finite"),
    (["traffic", *M, "--tokens-per-s", "1M", "--batch", "1e308"], "--batch = '1e308'"),
    (["balance", *M, "--batch", "1e308"], "--batch = '1e308'"),
    (["train", "mfu", *M, "--tokens", "1e308", "--chip-hours", "1M"], "--tokens = '1e308' must be at most"),
    (["curve", *M, "--points", "1000000"], "--points = 1000000 must be at most 10,000 (curve points)"),
    (["simulate", *M, "--duration-s", "1e308"], "--duration-s = 1e308 must be at most 1,000,000"),
    (["simulate", *M, "--duration-s", "1e9"], "--duration-s = 1e9"),
    (["simulate", *M, "--rate", "1000", "--duration-s", "1e4"], "simulated requests"),
    (["simulate", *M, "--rate", ","], "--rate = ',' lists no rate"),
    (["simulate", *M, "--rate", ""], "--rate = '' lists no rate"),
    (["simulate", *M, "--chunk-tokens", "0"], "--chunk-tokens = 0 must be >= 1"),
    (["simulate", *M, "--output-tokens", "99999999999999999999"], "--output-tokens = '99999999999999999999'"),
    (["simulate", *M, "--input-tokens", "1e400"], "--input-tokens = '1e400' is not a finite number"),
    (["report", "--context", "1e308", "--plots", "d"], "--context = '1e308'"),
    (["plan", "--model", "llama-3.1-8b", "--systems", ""], "--systems = '' lists no system name"),
    (["plan", "--model", "llama-3.1-8b", "--systems", " , "], "--systems = ' , ' lists no"),
    (["plan", "--model", "llama-3.1-8b", "--weight-dtypes", ","], "--weight-dtypes"),
    (["prices", "long-context", "--models", ""], "--models = '' lists no model name"),
    (["balance", *M, "--sparse-mode", "sqrt"], "--sparse-mode = 'sqrt' needs --sparse-topk"),
    (["balance", *M, "--sparse-topk", "2048", "--sparse-mode", "x"], "--sparse-mode = 'x'; expected one of topk, sqrt"),
    (["curve", *M, "--sparse-mode", "topk"], "needs --sparse-topk"),
    (["fastmode", *M, "--speedup", "50"], "--speedup = 50 is out of reach"),
    (["fastmode", *M, "--price-multiplier", "0.5"], "--price-multiplier = 0.5 is out of reach"),
    (["serve", "--host", "not a host!"], "--host = 'not a host!' is not an IP address or host name"),
    (["serve", "--port", "0"], "--port = 0 must be >= 1"),
    (["layout", *M, "--chips", "8", "--tp", "inf"], "--tp = inf"),
    (["bubble", "--schedule", "gpipe", "--pp", "4", "--microbatches", "1e9"], "--microbatches = 1e9"),
    (["train", "memory", *M, "--chips", "8", "--dp", "8", "--seq-len", "1e12"], "--seq-len = '1e12'"),
    (["prices", "cache", *M, "--prompt-tokens", "10k", "--hold-s", "1e308"], "--hold-s = '1e308'"),
    (["step", *M, "--usd-per-chip-hour", "inf"], "--usd-per-chip-hour = 'inf' is not a finite"),
])
def test_issue_items_exit_2_one_sentence(args, fragment):
    one_sentence_exit_2(args, fragment)


def test_fastmode_names_the_reachable_range():
    err = one_sentence_exit_2(["fastmode", *M, "--speedup", "50"])
    best = float(re.search(r"at most ([0-9.]+)×", err).group(1))
    code, out, _ = invoke("fastmode", *M, "--speedup", f"{best * 0.9:.3f}")
    assert code == 0 and "gives" in out


# ---- plot paths: checked before the work, no folders created ------------------------------------------


@pytest.mark.parametrize("name, fragment", [
    ("p.txt", "format '.txt' is not supported; use one of .png, .svg, .pdf"),
    ("p", "has no file extension"),
    ("new/dir/x.png", "does not exist; create it first"),
    ("x" * 300 + ".png", "at most 255 fit"),
])
def test_bad_plot_paths(tmp_path, name, fragment):
    target = tmp_path / name
    t0 = time.perf_counter()
    one_sentence_exit_2(["curve", *M, "--plot", str(target)], fragment)
    assert not (tmp_path / "new").exists()  # no folder made silently
    assert time.perf_counter() - t0 < 5


def test_plot_into_a_folder_path_and_unwritable(tmp_path):
    one_sentence_exit_2(["fastmode", *M, "--plot", str(tmp_path)], "has no file extension")
    (tmp_path / "d.png").mkdir()
    one_sentence_exit_2(["prefill", *M, "--plot", str(tmp_path / "d.png")], "is a folder")
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            one_sentence_exit_2(["curve", *M, "--plot", str(ro / "x.png")], "is not writable")
        finally:
            ro.chmod(0o700)


def test_good_plot_path_still_written(tmp_path):
    code, _, err = invoke("curve", *M, "--points", "8", "--plot", str(tmp_path / "c.svg"))
    assert code == 0, err
    assert (tmp_path / "c.svg").stat().st_size > 0


def test_report_plots_folder(tmp_path):
    one_sentence_exit_2(["report", "--plots", str(tmp_path / "a" / "b")], "does not exist")
    assert not (tmp_path / "a").exists()


def test_plots_module_never_creates_folders(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")  # noqa: F841
    from tokenmath import plots
    import matplotlib.pyplot as plt

    fig, _ = plt.subplots()
    with pytest.raises(TokenmathError, match="does not exist"):
        plots._save(fig, tmp_path / "missing" / "x.png")
    assert not (tmp_path / "missing").exists()
    fig, _ = plt.subplots()
    with pytest.raises(TokenmathError, match="not supported"):
        plots._save(fig, tmp_path / "x.txt")


# ---- --catalog everywhere ---------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["bubble", "--schedule", "gpipe", "--pp", "4", "--microbatches", "8"],
    ["train", "overtrain", "--active-params", "100G", "--tokens-per-s", "50M", "--lifetime-days", "60"],
    ["train", "chinchilla", "--flops", "1e23"],
])
def test_catalog_accepted_everywhere(tmp_path, args):
    good = tmp_path / "extra.toml"
    good.write_text("")
    code, _, err = invoke(*args, "--catalog", str(good))
    assert code == 0, err
    one_sentence_exit_2([*args, "--catalog", str(tmp_path / "missing.toml")], "does not exist")


TINY_CHIP = """[systems.tiny]
description = "a made-up 3 GB accelerator"
chip = "Tiny"
bf16_flops_per_s = 100e12
hbm_bytes = 3e9
hbm_bytes_per_s = 1e12
scaleup_bytes_per_s = 50e9
scaleup_chips = 8
source = "test"
as_of = "2026-12"
"""


@pytest.mark.parametrize("command", ["step", "client"])
def test_a_chip_too_small_to_serve_from_says_so(tmp_path, command):
    """A user's chip whose HBM is under what a serving engine keeps for itself (90 % of 3 GB less
    the runtime's 4.2 GB: layout.serving_hbm_bytes) gets one sentence saying so, not a replica
    grown to thousands of chips and an error about a link it then lacks. On chips the user names,
    one pass is still estimated (`step`); a client's runs, which need a batch, are refused."""
    cat = tmp_path / "tiny.toml"
    cat.write_text(TINY_CHIP)
    args = [command, "--model", "llama-3.1-8b", "--system", "tiny", "--catalog", str(cat)]
    one_sentence_exit_2(args, "leave nothing to serve from")
    if command == "step":
        code, _, err = invoke(*args, "--chips", "8")
        assert code == 0, err
    else:
        one_sentence_exit_2([*args, "--chips", "8"], "nothing is left per chip")


# ---- serve: loopback unless asked, with a warning ----------------------------------------------------------


def test_serve_host(monkeypatch):
    pytest.importorskip("streamlit")
    calls = []
    monkeypatch.setattr(cli.os, "execv", lambda exe, args: calls.append(args))
    code, _, err = invoke("serve")
    assert code == 0 and "warning" not in err
    assert calls[-1][calls[-1].index("--server.address") + 1] == "127.0.0.1"
    for host in ("localhost", "::1", "127.0.0.2"):
        code, _, err = invoke("serve", "--host", host)
        assert code == 0 and "warning" not in err, (host, err)
    code, _, err = invoke("serve", "--host", "0.0.0.0")
    assert code == 0 and "warning" in err and "0.0.0.0" in err
    assert calls[-1][calls[-1].index("--server.address") + 1] == "0.0.0.0"
    for bad in ("", "a b", "http://x", "-x", "999.1.1.1", "x" * 300):
        one_sentence_exit_2(["serve", "--host", bad], "--host")


# ---- a scheduler that does not answer ----------------------------------------------------------------


def test_unreachable_scheduler_fails_fast():
    pytest.importorskip("dask.distributed")
    t0 = time.perf_counter()
    one_sentence_exit_2(["simulate", *M, "--duration-s", "5", "--scheduler", "tcp://127.0.0.1:1"],
                        "no Dask scheduler answered within 5 s")
    one_sentence_exit_2(["simulate", *M, "--duration-s", "5", "--scheduler", "garbage"],
                        "is not a Dask scheduler address")
    assert time.perf_counter() - t0 < 9


def test_malformed_scheduler_port_and_bad_run_are_refused_before_any_client():
    """Found by the fuzz campaign (seed 36): `tcp://[::1]:x` half-built a Dask Client whose close timed
    out at exit, printing a traceback after the one sentence; and a bad --prefill was only refused
    after the scheduler was reached. The address is now parsed first (dask's own parser) and every
    run's arguments are checked before any scheduler is contacted; in a fresh process (where an
    unclosed client would complain at exit) stderr is one line."""
    import subprocess
    import sys

    pytest.importorskip("dask.distributed")
    code = "from tokenmath.cli import main; main()"
    for extra, fragment in ((["--scheduler", "tcp://[::1]:x"], "is not a Dask scheduler address"),
                            (["--prefill", '"', "--scheduler", "tcp://127.0.0.1:1"], "expected 'first' or 'chunked'")):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", code, "simulate", *M, "--duration-s", "5", *extra],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and fragment in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
        assert time.perf_counter() - t0 < 9


# ---- the output guard ---------------------------------------------------------------------------------


def test_nonfinite_result_is_one_sentence_naming_inputs(monkeypatch):
    from tokenmath import training

    def overflowing(*a, **k):
        return float(np.float64(1e308) * 10)  # would warn "overflow" without the guard's errstate

    monkeypatch.setattr(training, "implied_mfu", overflowing)
    for extra in ([], ["--json"]):
        err = one_sentence_exit_2(["train", "mfu", *M, "--tokens", "1T", "--chip-hours", "1M", *extra])
        assert "--tokens 1T" in err and "--chip-hours 1M" in err and "not a finite number" in err


def test_nan_in_text_is_caught(monkeypatch):
    from tokenmath import training

    monkeypatch.setattr(training, "implied_mfu", lambda *a, **k: float(np.float64(0.0) / np.float64(0.0)))
    err = one_sentence_exit_2(["train", "mfu", *M, "--tokens", "1T", "--chip-hours", "1M"])
    assert "--tokens 1T" in err


# ---- the fuzz: random and adversarial values into every command ------------------------------------------

VALUES = st.one_of(
    st.sampled_from(ADVERSARIAL),
    st.sampled_from(["1", "2", "8", "64", "4096", "1k", "32k", "1M", "0.3", "0.9", "2.5", "100", "1e6", "1e7"]),
    st.floats(allow_nan=True, allow_infinity=True, width=64).map(lambda x: f"{x:g}"),
    st.integers(min_value=-(10**25), max_value=10**25).map(str),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8),
)

# (command prefix, flags that take a value); flags not drawn keep their defaults
COMMANDS = [
    (["step", *M], ["--batch", "--context", "--new-tokens", "--chips", "--usd-per-chip-hour"]),
    (["step", *M, "--efficiency", "roofline"], ["--batch", "--flops-efficiency", "--hbm-efficiency"]),
    (["curve", *M, "--points", "6"], ["--context", "--batch", "--chips", "--sparse-topk"]),
    (["curve", *M, "--over", "context", "--points", "6"], ["--batch", "--points"]),
    (["balance", *M], ["--context", "--batch", "--chips", "--sparse-topk"]),
    (["fastmode", *M], ["--context", "--speedup", "--price-multiplier", "--reference-batch", "--draft-tokens",
                        "--acceptance"]),
    (["traffic", *M, "--tokens-per-s", "1M"], ["--tokens-per-s", "--batch", "--context", "--usd-per-chip-hour"]),
    (["prefill", *M], ["--prompt-tokens", "--batch", "--context"]),
    (["model", "llama-3.1-8b"], ["--context"]),
    (["layout", *M, "--chips", "8", "--tp", "8"], ["--chips", "--tp", "--ep", "--pp", "--dp", "--batch", "--context",
                                                  "--microbatches", "--hop-latency"]),
    (["bubble", "--schedule", "1f1b", "--pp", "4", "--microbatches", "8"], ["--pp", "--microbatches"]),
    (["train", "time", *M, "--chips", "8", "--tokens", "1T"], ["--chips", "--tokens", "--mfu"]),
    (["train", "mfu", *M, "--tokens", "1T", "--chip-hours", "1M"], ["--tokens", "--chip-hours"]),
    (["train", "overtrain", "--active-params", "100G", "--tokens-per-s", "50M", "--lifetime-days", "60"],
     ["--active-params", "--tokens-per-s", "--lifetime-days", "--rl-factor", "--rl-efficiency",
      "--inference-efficiency"]),
    (["train", "chinchilla", "--flops", "1e23"], ["--flops"]),
    (["train", "memory", *M, "--chips", "8", "--dp", "8"], ["--chips", "--dp", "--tp", "--micro-batch", "--seq-len",
                                                            "--zero"]),
    (["prices", "cache", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--prompt-tokens", "10k",
      "--hold-s", "300"], ["--prompt-tokens", "--hold-s", "--reuse"]),
    (["prices", "kv-from-tier", "--active-params", "100G", "--crossover-context", "200k", "--system", "h100-sxm"],
     ["--active-params", "--crossover-context"]),
    (["simulate", *M, "--duration-s", "20", "--rate", "2", "--efficiency", "roofline"],
     ["--rate", "--duration-s", "--input-tokens", "--output-tokens", "--max-batch", "--chunk-tokens", "--cadence-s"]),
]


@st.composite
def command_lines(draw, commands):
    prefix, flags = draw(st.sampled_from(commands))
    chosen = draw(st.lists(st.sampled_from(flags), min_size=1, max_size=3, unique=True))
    args = list(prefix)
    for flag in chosen:
        args += [flag, draw(VALUES)]
    if draw(st.booleans()):
        args.append("--json")
    return args


@pytest.mark.parametrize("half", [0, 1])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_cli(half, data):
    """Random and adversarial values into every command: exit 0 or 2, no traceback, no NaN or inf on
    stdout, no warning before the sentence, and bounded time."""
    args = data.draw(command_lines(COMMANDS[half::2]), label="args")
    t0 = time.perf_counter()
    res = runner.invoke(app, args)
    elapsed = time.perf_counter() - t0
    err = res.stderr or ""
    assert res.exit_code in (0, 2), (args, res.exit_code, err, res.exception)
    assert "Traceback" not in res.stdout + err, args
    assert not NONFINITE.search(res.stdout), (args, res.stdout)
    assert "RuntimeWarning" not in err, (args, err)
    if res.exit_code == 2:
        assert len(err.strip().splitlines()) == 1, (args, err)
    assert elapsed < 15, (args, elapsed)
