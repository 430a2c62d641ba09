"""Issue 24: nothing a user types or points at ends in an internal error, a hang, a lost file or an
open port. Every reproducer of the issue is a test here; the output-path policy (tokenmath.paths)
and the bounded reader (tokenmath.errors) are tested directly too. These are invariants of the CLI's
contract (one sentence, exit 2, no file changed but the one named), not checks against published
numbers."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenmath import TokenmathError
from tokenmath.cli import app, unsigned_zeros
from tokenmath.errors import read_user_file, read_user_json
from tokenmath.paths import output_path, write_atomic

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "src" / "tokenmath" / "validation" / "cases" / "engines.jsonl"
PRESET = ROOT / "src" / "tokenmath" / "validation" / "calibrated.json"
M = ["--model", "llama-3.1-8b", "--system", "h100-sxm"]
runner = CliRunner()
EXE = Path(sys.executable).parent / "tokenmath"


def invoke(*args):
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr or ""


def one_sentence(args, fragment=None):
    code, out, err = invoke(*args)
    assert code == 2, (args, code, out, err)
    assert "Traceback" not in out + err and "internal error" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    if fragment is not None:
        assert fragment in err, err
    return err


def few_cases(tmp_path, n=3) -> Path:
    p = tmp_path / "cases.jsonl"
    p.write_text("".join(CASES.read_text().splitlines(keepends=True)[:n]))
    return p


# ---- the reproducers of the table ------------------------------------------------------------


@pytest.mark.parametrize("cmd", ["validate", "calibrate"])
def test_case_file_not_utf8(tmp_path, cmd):
    """`tokenmath validate binary.json` was a UnicodeDecodeError (exit 1)."""
    p = tmp_path / "binary.json"
    p.write_bytes(bytes(range(256)) * 8)
    one_sentence([cmd, p], "binary data; expected UTF-8 JSON lines")
    p.write_bytes(b'{"id": "\xff\xfe"}\n')
    one_sentence([cmd, p], "is not UTF-8 text (byte 0xff")


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="Linux /proc")
def test_proc_self_mem_is_an_io_error_sentence():
    one_sentence(["validate", "/proc/self/mem"], "cannot be read (Input/output error)")


@pytest.mark.parametrize("kind, fragment", [
    ("fifo", "is a named pipe (FIFO), not a regular file"),
    ("/dev/zero", "is a character device, not a regular file"),
    ("dir", "is a folder, not a regular file"),
])
def test_special_files_give_the_right_reason(tmp_path, kind, fragment):
    """A FIFO or /dev/zero was refused as "does not exist"; a FIFO must never hang the reader."""
    if kind == "fifo":
        p = tmp_path / "f.jsonl"
        os.mkfifo(p)
    elif kind == "dir":
        p = tmp_path / "d.jsonl"
        p.mkdir()
    else:
        p = Path(kind)
    t0 = time.perf_counter()
    for args in (["validate", p], ["model", p], ["systems", "--catalog", p], ["fleet", "--model", "llama-3.1-8b",
                 "--trace", p], ["import", p, "--format", "vllm-bench", *M, "--chips", "1"]):
        one_sentence(args, fragment)
    assert time.perf_counter() - t0 < 20


@pytest.mark.parametrize("out, fragment", [
    ("nosuchdir/x.json", "the folder 'nosuchdir' does not exist; create it first"),
    ("", "names no file"),
    (".", "names no file"),
    ("x" * 300 + ".json", "the file name is 305 bytes long; at most 255 fit"),
    ("dangling.json", "is a symbolic link (to 'nowhere/x.json', which does not exist)"),
    ("folder", "is a folder"),
    ("existing.json", "already exists; give --force to replace it"),
])
def test_calibrate_out_checked_before_work(tmp_path, monkeypatch, out, fragment):
    """`calibrate cases.jsonl --out nosuchdir/x` (and '', a folder, a 300-byte name, a dangling
    symlink) was a FileNotFoundError after the fit; now one sentence before any work."""
    monkeypatch.chdir(tmp_path)
    cases = few_cases(tmp_path, 12)
    (tmp_path / "dangling.json").symlink_to("nowhere/x.json")
    (tmp_path / "folder").mkdir()
    (tmp_path / "existing.json").write_text("keep me")
    from tokenmath import calibrate

    monkeypatch.setattr(calibrate, "fit_user_preset", lambda *a, **k: pytest.fail("the fit ran before the check"))
    one_sentence(["calibrate", cases, "--out", out], fragment)
    assert (tmp_path / "existing.json").read_text() == "keep me"


def test_import_probe_report_outputs_checked_before_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bench = ROOT / "tests" / "data" / "bench" / "vllm_llama8b_c16.json"
    one_sentence(["import", bench, "--format", "vllm-bench", *M, "--chips", "1", "-o", "no/dir/c.jsonl"], "does not exist")
    from tokenmath import probe

    monkeypatch.setattr(probe, "probe", lambda **k: pytest.fail("probe measured before the check"))
    one_sentence(["probe", "--out", "no/dir/sys.toml"], "does not exist")
    one_sentence(["probe", "--out", "y" * 300 + ".toml"], "at most 255 fit")
    (tmp_path / "f").write_text("a file")
    one_sentence(["report", *M, "--plots", "f"], "is a file, not a folder")
    one_sentence(["report", *M, "--plots", "a/b"], "does not exist")
    one_sentence(["report", *M, "--plots", ""], "names no folder")  # the campaign found '' read as '.'
    assert os.listdir(tmp_path) == ["f"]


def test_deep_or_wrong_preset_json_is_one_sentence(tmp_path):
    """A 50k-deep --efficiency preset was a RecursionError; wrong types TypeError/ValueError/AttributeError."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 50_000 + "]" * 50_000)
    one_sentence(["step", *M, "--efficiency", deep], "nests arrays or objects too deeply")
    good = json.loads(PRESET.read_text())
    for patch, fragment in [
        ({"generic": {"memory_scale": "x"}}, "field 'generic.memory_scale'"),
        ({"generic": {"memory_scale": None}}, "field 'generic.memory_scale'"),
        ({"generic": {"compute_scale": -1}}, "greater than 0"),
        ({"generic": {"overhead_s": 1e300}}, "field 'generic.overhead_s'"),
        ({"engines": [1, 2]}, "field 'engines'"),
        ({"engines": {"vllm": {"memory_scael": 1}}}, "'engines.vllm.memory_scael' is not a preset field"),
        ({"adjust": {"memory_scale": "big"}}, "field 'adjust.memory_scale'"),
        ({"bands": {"step": [1, -1]}}, "the 10th percentile is above the 90th"),
        ({"vendors": {"amd": 3}}, "field 'vendors.amd'"),
        ({"user_fit": {"at_bound": [{"parameter": 1}]}}, "field 'user_fit.at_bound.0"),
    ]:
        d = json.loads(json.dumps(good))
        for k, v in patch.items():
            if isinstance(v, dict) and isinstance(d.get(k), dict):
                d[k] = d[k] | v
            else:
                d[k] = v
        p = tmp_path / "p.json"
        p.write_text(json.dumps(d))
        from tokenmath import profiles

        profiles._preset.cache_clear()
        one_sentence(["step", *M, "--efficiency", p], fragment)
    p.write_text('{"generic": {}, "x": NaN}')
    profiles._preset.cache_clear()
    one_sentence(["step", *M, "--efficiency", p], "NaN is not a number JSON allows")
    p.write_text("[1]")
    profiles._preset.cache_clear()
    one_sentence(["validate", CASES, "--efficiency", p], "holds a JSON list")


def test_a_preset_whose_summaries_validate_prints_are_malformed_is_one_sentence(tmp_path):
    """Found by the campaign (seed 33): a preset whose cv_band_80_coverage lost a key ('n' renamed)
    passed the schema and `validate` then ended in an internal KeyError while printing it. The
    summaries validate prints are part of the schema now."""
    from tokenmath import profiles

    d = json.loads(PRESET.read_text())
    mla = d["cv_band_80_coverage"]["by_model_class"]["mla"]
    d["cv_band_80_coverage"]["by_model_class"]["mla"] = {"x": mla["n"], "share": mla["share"]}
    p = tmp_path / "p.json"
    p.write_text(json.dumps(d))
    profiles._preset.cache_clear()
    one_sentence(["validate", CASES, "--efficiency", p], "cv_band_80_coverage.by_model_class.mla.n")
    d = json.loads(PRESET.read_text())
    d["cross_validated"]["median_abs_error"] = "x"
    p.write_text(json.dumps(d))
    profiles._preset.cache_clear()
    one_sentence(["validate", CASES, "--efficiency", p], "cross_validated.median_abs_error")


def test_invariant_every_preset_calibrate_writes_fits_the_schema():
    """Invariant: the shipped preset passes the schema that user presets must pass."""
    from tokenmath.preset_schema import check_preset

    check_preset(json.loads(PRESET.read_text()), "shipped")


def test_calibrate_from_scratch_base_dev_null(tmp_path):
    """`calibrate cases.jsonl --from-scratch --base /dev/null` was an IndexError (an empty
    leave-one-source-out on cases of one source)."""
    cases = few_cases(tmp_path)
    one_sentence(["calibrate", cases, "--from-scratch", "--base", "/dev/null"], "--base is the preset a fit")
    one_sentence(["calibrate", cases, "--from-scratch"], "come from 1 source")
    one_sentence(["calibrate", cases, "--base", "/dev/null"], "is a character device, not a regular file")


def test_case_values_outside_physics_are_refused(tmp_path):
    """A subnormal measurement made the fit's residuals infinite (found by the campaign)."""
    line = json.loads(CASES.read_text().splitlines()[0])
    for field, value in [("measured", 5e-324), ("chips", 1e300), ("input_tokens", 1e30), ("batch", 1e300)]:
        p = tmp_path / "c.jsonl"
        p.write_text(json.dumps(line | {field: value}) + "\n")
        one_sentence(["validate", p], f"field '{field}'")
    p.write_text(json.dumps(line).replace('"measured": 21020.81', '"measured": 1e400') + "\n")
    one_sentence(["validate", p], "field 'measured'")
    p.write_text("[" * 5000 + "]" * 5000 + "\n")
    one_sentence(["validate", p], "line 1 nests arrays or objects")


needs_dask = pytest.mark.skipif(importlib.util.find_spec("distributed") is None, reason="the dask extra")


@needs_dask
def test_scheduler_local_prints_no_traceback():
    """`simulate ... --prefill '' --scheduler local`: Dask printed tracebacks before the sentence."""
    err = one_sentence(["simulate", "--model", "llama-3.1-405b", "--system", "h200-sxm", "--rate", "1", "--prefill", "",
                        "--scheduler", "local"], "prefill = ''; expected 'first' or 'chunked'")
    assert "distributed" not in err


@needs_dask
def test_scheduler_local_listens_on_loopback_only(tmp_path):
    """`--scheduler local` opened Dask's dashboard on 0.0.0.0 and [::]: now worker processes that talk
    over 127.0.0.1 only, no dashboard (the listening sockets of the whole process tree, sampled)."""
    psutil = pytest.importorskip("psutil")
    p = subprocess.Popen([str(EXE), "simulate", *M, "--chips", "1", "--rate", "1,2", "--duration-s", "60", "--scheduler",
                          "local", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    seen, proc = set(), psutil.Process(p.pid)
    while p.poll() is None:
        try:
            for q in [proc] + proc.children(recursive=True):
                for c in q.net_connections(kind="inet"):
                    if c.status == psutil.CONN_LISTEN:
                        seen.add(c.laddr.ip)
        except psutil.Error:
            pass
        time.sleep(0.02)
    out, err = p.communicate()
    assert p.returncode == 0, err
    assert json.loads(out)["runs"][1]["rate_per_s"] == 2
    assert seen and seen <= {"127.0.0.1"}, seen  # the cluster ran, and only on loopback
    assert err.strip() == b"", err


def test_no_socket_without_a_scheduler(monkeypatch):
    """Without --scheduler nothing binds a socket (the audit event every bind raises)."""
    binds = []
    real = socket.socket.bind
    monkeypatch.setattr(socket.socket, "bind", lambda self, addr: binds.append(addr) or real(self, addr))
    assert invoke("simulate", *M, "--rate", "1,2", "--duration-s", "30")[0] == 0
    assert invoke("plan", "--model", "llama-3.1-8b", "--systems", "h100-sxm")[0] == 0
    assert binds == []


def test_dashboard_needs_a_local_cluster():
    one_sentence(["simulate", *M, "--rate", "1", "--dashboard"], "needs --scheduler local")


@pytest.mark.skipif(not EXE.exists(), reason="the installed program")
def test_closed_pipe_exits_quietly():
    """`tokenmath systems --json | head -c 10` was a BrokenPipeError, exit 1: now quiet, exit 141 (the
    shell's code for a program stopped by SIGPIPE) when output was cut short, else 0."""
    for args in (["systems", "--json"], ["curve", *M, "--points", "5000", "--json"], ["systems"]):
        p = subprocess.Popen([str(EXE), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert len(p.stdout.read(10)) == 10
        p.stdout.close()
        err = p.stderr.read().decode()
        p.wait(timeout=60)
        assert p.returncode in (0, 141) and err == "", (args, p.returncode, err)
        if args[0] == "curve":  # megabytes of JSON: the pipe closed before the end
            assert p.returncode == 141


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="Linux /dev/full")
def test_full_disk_on_stdout_is_a_sentence():
    p = subprocess.run(f"{EXE} systems --json > /dev/full", shell=True, capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.strip() == "error: the output could not be written (No space left on device)"


def test_big_case_file_refused_by_size_before_reading(tmp_path):
    """`validate big60mb.jsonl` read everything (567 MB RSS, 72 s): now refused by stat."""
    p = tmp_path / "big60mb.jsonl"
    with open(p, "wb") as f:
        f.truncate(60_000_000)  # sparse: no disk
    tracemalloc.start()
    t0 = time.perf_counter()
    one_sentence(["validate", p], "is 60,000,000 bytes; a case file is at most 8,000,000 bytes")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.perf_counter() - t0 < 5 and peak < 20e6


def test_long_trace_refused_before_parsing(tmp_path):
    """`fleet --trace big100mb.csv` parsed every row (1.9 GB RSS) before refusing row 1,000,001: now
    its lines are counted first (a newline count over the bytes)."""
    p = tmp_path / "big.csv"
    p.write_bytes(b"TIMESTAMP,ContextTokens,GeneratedTokens\n" + b"2023-11-16 18:15:46.6805900,374,44\n" * 1_000_001)
    tracemalloc.start()
    one_sentence(["fleet", "--model", "llama-3.1-8b", "--trace", p, "--ttft-p99-s", "2"],
                 "has 1,000,002 lines; a trace holds at most 1,000,000 requests")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 3 * p.stat().st_size  # the bytes, not a parse of a million rows


def test_reader_bounds_what_stat_cannot_see(tmp_path):
    """/proc files report size 0: the read itself stops past the limit."""
    if Path("/proc/self/status").exists():
        with pytest.raises(TokenmathError, match="is more than 10 bytes"):
            read_user_file("/proc/self/status", "status", 10, "a tiny file")
    with pytest.raises(TokenmathError, match="does not exist"):
        read_user_file(tmp_path / "missing", "x", 10, "a file")
    p = tmp_path / "w.json"
    p.write_text("[" + "1," * 100 + "1]")
    with pytest.raises(TokenmathError, match="more than 50 values"):
        read_user_json(p, "w", 10_000, "a file", max_items=50)


def test_subnormal_input_refused():
    """`train chinchilla --flops 5e-324` was a ZeroDivisionError."""
    one_sentence(["train", "chinchilla", "--flops", "5e-324"], "too small to mean anything: expected at least 1 (FLOPs)")
    one_sentence(["step", *M, "--usd-per-chip-hour", "1e-320"], "too small to mean anything")
    assert invoke("train", "chinchilla", "--flops", "1")[0] == 0


def test_signed_zero_never_printed():
    """`traffic ... --usd-per-chip-hour -0 --json` printed "usd_per_day": -0.0."""
    args = ["traffic", "--model", "gpt-oss-120b", "--system", "h200-sxm", "--tokens-per-s", "34", "--usd-per-chip-hour", "-0"]
    code, out, _ = invoke(*args, "--json")
    assert code == 0 and json.loads(out)["usd_per_day"] == 0 and "-0.0" not in out
    code, out, _ = invoke(*args)
    assert code == 0 and not any(tok in out for tok in (" -0 ", " -0.0", "$-0"))


def test_invariant_negative_zero_text_filter():
    assert unsigned_zeros("x -0.00 s, -0%, (-0.0)") == "x 0.00 s, 0%, (0.0)"
    for keep in ("-0.001", "2024-05-01", "TP8-0", "1e-05", "-10", "-0,001"):
        assert unsigned_zeros(keep) == keep


def test_invariant_simulate_percentiles_over_one_set():
    """simulate llama-3.1-8b, h200, rate 5, I 8000, O 2, chunked 64, cadence 0.05, seed 733 (200 s):
    latency p50 2033.1 s < TTFT p50 2036.1 s, because TTFT counted requests that never finished.
    Invariant: over one set (the completed requests) every percentile of latency >= TTFT's."""
    from tokenmath import simulate as sm
    from tokenmath.catalog import load_catalog

    cat = load_catalog()
    r = sm.simulate(cat.model("llama-3.1-8b"), cat.system("h200-sxm"), rate_per_s=5, duration_s=200, input_tokens=8000,
                    output_tokens=2, prefill="chunked", chunk_tokens=64, cadence_s=0.05, seed=733, chips=1)
    assert r.completed < r.requests  # the case where the sets differed
    assert r.percentile_requests == r.completed
    for k in ("p50", "p90", "p99", "mean"):
        assert r.latency_s[k] >= r.ttft_s[k], k
    code, out, _ = invoke("simulate", "--model", "llama-3.1-8b", "--system", "h200-sxm", "--chips", "1", "--rate", "5",
                          "--duration-s", "200", "--input-tokens", "8000", "--output-tokens", "2", "--chunk-tokens", "64",
                          "--cadence-s", "0.05", "--seed", "733", "--efficiency", "roofline", "--json")
    rec = json.loads(out)
    assert code == 0 and rec["percentile_requests"] == rec["completed"] and "completed" in rec["percentiles_over"]


def test_hf_model_beginning_with_dash_is_not_an_engine_flag():
    one_sentence(["fleet", "--model", "llama-3.1-8b", "--request-rate", "1", "--input-tokens", "1000", "--output-tokens",
                  "100", "--export", "vllm", "--hf-model=--trust-remote-code"], "begins with '-'")


# ---- the output-path policy ---------------------------------------------------------------------------


def test_import_never_replaces_its_input(tmp_path, monkeypatch):
    """`import in.json ... -o in.json` silently replaced its own input; also through a hard link or a
    symbolic link, and with --force."""
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "in.json"
    shutil.copy(ROOT / "tests" / "data" / "bench" / "vllm_llama8b_c16.json", src)
    before = src.read_bytes()
    os.link(src, tmp_path / "hard.json")
    (tmp_path / "soft.json").symlink_to("in.json")
    for out, extra in [("in.json", []), ("./in.json", ["--force"]), ("hard.json", ["--force"]), ("soft.json", ["--force"])]:
        one_sentence(["import", "in.json", "--format", "vllm-bench", *M, "--chips", "1", "-o", out, *extra],
                     "is the same file as the input")
    assert src.read_bytes() == before


def test_plot_through_a_symlink_needs_force(tmp_path):
    """A `--plot link.png` pointing elsewhere changed the target file."""
    target = tmp_path / "target.png"
    target.write_bytes(b"precious")
    link = tmp_path / "link.png"
    link.symlink_to(target)
    one_sentence(["curve", *M, "--points", "6", "--plot", link], "is a symbolic link")
    assert target.read_bytes() == b"precious"
    code, _, err = invoke("curve", *M, "--points", "6", "--plot", link, "--force")
    assert code == 0, err
    assert link.is_symlink() and target.read_bytes().startswith(b"\x89PNG")  # the link kept, its target written


def test_charts_replace_data_needs_force(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n an old chart")
    assert invoke("curve", *M, "--points", "6", "--plot", "c.png")[0] == 0  # a chart replaces a chart: documented
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG") and b"old" not in (tmp_path / "c.png").read_bytes()
    (tmp_path / "notes.png").write_text("precious notes")  # not a chart: a user review found it silently replaced
    one_sentence(["curve", *M, "--points", "6", "--plot", "notes.png"], "holds no chart")
    assert (tmp_path / "notes.png").read_text() == "precious notes"
    assert invoke("curve", *M, "--points", "6", "--plot", "notes.png", "--force")[0] == 0
    (tmp_path / "notes.png").unlink()
    bench = ROOT / "tests" / "data" / "bench" / "vllm_llama8b_c16.json"
    (tmp_path / "cases.jsonl").write_text("old cases\n")
    one_sentence(["import", bench, "--format", "vllm-bench", *M, "--chips", "1", "-o", "cases.jsonl"], "--force")
    assert (tmp_path / "cases.jsonl").read_text() == "old cases\n"
    code, _, err = invoke("import", bench, "--format", "vllm-bench", *M, "--chips", "1", "-o", "cases.jsonl", "--force")
    assert code == 0, err
    assert (tmp_path / "cases.jsonl").read_text().startswith("{")
    assert sorted(os.listdir(tmp_path)) == ["c.png", "cases.jsonl"]  # no temporary file left


def test_atomic_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    p = tmp_path / "preset.json"
    p.write_text("old")
    p.chmod(0o640)

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(TokenmathError, match=r"could not be written \(No space left on device\); nothing was changed"):
        write_atomic(p, "new", flag="--out", replace=True)
    monkeypatch.undo()
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["preset.json"]
    write_atomic(p, "new", flag="--out", replace=True)
    assert p.read_text() == "new" and (p.stat().st_mode & 0o777) == 0o640  # the old file's permissions kept
    with pytest.raises(TokenmathError, match="appeared while tokenmath worked"):
        write_atomic(p, "newer", flag="--out", replace=False)
    assert p.read_text() == "new"


def test_output_path_refuses_special_files(tmp_path):
    fifo = tmp_path / "f.png"
    os.mkfifo(fifo)
    with pytest.raises(TokenmathError, match="is a named pipe"):
        output_path(fifo, "--plot", replaces=True, suffixes=(".png",))
    with pytest.raises(TokenmathError, match="is a character device"):
        output_path("/dev/null", "--out", force=True)
    assert output_path(tmp_path / "new.json", "--out") == tmp_path / "new.json"


def test_report_plots_folder_files_checked(tmp_path):
    d = tmp_path / "charts"
    d.mkdir()
    (d / "latency_vs_batch.png").symlink_to(tmp_path / "elsewhere.png")
    one_sentence(["report", *M, "--plots", d], "is a symbolic link")
    assert not (tmp_path / "elsewhere.png").exists()
