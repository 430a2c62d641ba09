"""tokenmath.probe: this machine measured in about a second, and written as a catalog system.

The physical ranges are sanity bounds, not a benchmark: any machine tokenmath runs on moves between
1 GB/s (a small ARM board) and 10 TB/s (an HBM3e GPU) and does 1e8 .. 1e16 FLOP/s. STREAM (McCalpin,
www.cs.virginia.edu/stream) counts a triad a = b + s*c as 3 arrays of traffic, a copy as 2.
"""

import json
import math

import pytest
from typer.testing import CliRunner

from tokenmath.catalog import load_catalog
from tokenmath.cli import app
from tokenmath.errors import TokenmathError
from tokenmath.probe import ProbeResult, default_name, probe, system_toml


@pytest.fixture(scope="module")
def measured():
    return probe(seconds=1.0, device="cpu")


def test_probe_returns_positive_finite_figures_in_a_sane_range(measured):
    r = measured
    assert r.backend == "numpy" and r.device
    assert math.isfinite(r.memory_bytes_per_s) and 1e9 <= r.memory_bytes_per_s <= 1e13
    assert set(r.memory_by_kernel) == {"copy", "triad"}
    assert r.memory_bytes_per_s == max(r.memory_by_kernel.values())
    assert set(r.flops_per_s) == {"fp32", "fp64"}  # numpy runs no native bf16/fp16 matmul
    for v in r.flops_per_s.values():
        assert math.isfinite(v) and 1e8 <= v <= 1e16
    assert 1e8 <= r.memory_bytes <= 1e15 and r.cores >= 1
    assert 0 < r.array_bytes <= 512e6 / 3 + 1 and r.array_bytes <= r.memory_bytes / 8
    assert all(64 <= n for n in r.matmul_n.values())
    assert r.seconds < 6.0  # 1 s asked; allocation and one last repeat may run over, not by much
    assert any("bf16" in n for n in r.notes)


def test_probe_respects_a_short_budget():
    r = probe(seconds=0.1, device="cpu")
    assert r.seconds < 3.0 and r.memory_bytes_per_s > 0 and min(r.flops_per_s.values()) > 0


def test_the_written_system_loads_and_keeps_the_measured_numbers(measured, tmp_path):
    name = default_name(measured)
    text = system_toml(measured, name)
    path = tmp_path / "probe.toml"
    path.write_text(text, encoding="utf-8")
    s = load_catalog([path]).system(name)
    assert s.scaleup_chips == 1
    assert s.chip.hbm_bytes_per_s == pytest.approx(measured.memory_bytes_per_s, rel=1e-3)
    assert s.chip.hbm_bytes == pytest.approx(measured.memory_bytes, rel=1e-3)
    assert s.chip.bf16_flops_per_s == pytest.approx(measured.flops_per_s["fp32"], rel=1e-3)
    assert s.chip.fp8_flops_per_s is None and s.chip.int8_flops_per_s is None  # never claimed
    assert "holds the measured fp32 rate" in s.notes
    assert s.source.startswith(f"tokenmath probe on {measured.device}, ") and s.as_of == measured.as_of


def test_step_runs_on_the_probed_system(measured, tmp_path):
    path = tmp_path / "probe.toml"
    path.write_text(system_toml(measured, "this-machine"), encoding="utf-8")
    res = CliRunner().invoke(app, ["step", "--catalog", str(path), "--system", "this-machine", "--model",
                                   "llama-3.1-8b", "--batch", "1", "--context", "1000", "--json"])
    assert res.exit_code == 0, res.stdout + res.stderr
    out = json.loads(res.stdout)
    # decode at B = 1 reads every weight: the step is at least that read at the measured bandwidth (which of
    # compute or memory binds depends on how loaded the machine was while it was probed)
    assert out["bound"] in ("memory", "compute")
    assert out["step_s"] >= out["weight_bytes_read"] / measured.memory_bytes_per_s * (1 - 1e-9)
    assert out["assumptions"]["hbm_bytes_per_s_per_chip"] == pytest.approx(measured.memory_bytes_per_s, rel=1e-3)


def _gpu_like(**kw):
    base = dict(device="NVIDIA Test GPU", backend="torch-cuda", memory_bytes_per_s=4.0e12,
                flops_per_s={"bf16": 7.0e14, "fp16": 7.1e14, "fp32": 5.0e13}, memory_bytes=140e9, cores=132,
                seconds=2.0, as_of="2026-01-02", memory_by_kernel={"copy": 3.9e12, "triad": 4.0e12})
    base.update(kw)
    return ProbeResult(**base)


def test_a_gpu_result_fills_bf16_with_its_bf16_figure(tmp_path):
    path = tmp_path / "gpu.toml"
    path.write_text(system_toml(_gpu_like(), "gpu"), encoding="utf-8")
    s = load_catalog([path]).system("gpu")
    assert s.chip.bf16_flops_per_s == pytest.approx(7.0e14, rel=1e-3)
    assert "holds the measured bf16 rate" in s.notes and "device memory" in s.notes


def test_without_bf16_the_next_dtype_fills_the_field_and_says_so(tmp_path):
    r = _gpu_like(flops_per_s={"fp16": 7.1e14, "fp32": 5.0e13})
    s = _load(tmp_path, system_toml(r, "g"), "g")
    assert s.chip.bf16_flops_per_s == pytest.approx(7.1e14, rel=1e-3)
    assert "holds the measured fp16 rate: this machine ran no native bf16" in s.notes


def _load(tmp_path, text, name):
    p = tmp_path / f"{name}.toml"
    p.write_text(text, encoding="utf-8")
    return load_catalog([p]).system(name)


def test_odd_device_names_are_quoted_safely(tmp_path):
    r = _gpu_like(device='Weird "chip" \\ with\tnewline\nand ünïcode')
    s = _load(tmp_path, system_toml(r, "weird"), "weird")
    assert s.chip.name == r.device
    assert default_name(r).startswith("probe-weird-chip")


@pytest.mark.parametrize("seconds", [0.05, 0, -1, 61, float("nan"), float("inf"), "2", True, None])
def test_bad_seconds_is_one_sentence(seconds):
    with pytest.raises(TokenmathError) as e:
        probe(seconds=seconds)
    msg = str(e.value)
    assert msg.startswith("seconds = ") and "between 0.1 and 60" in msg and "\n" not in msg


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "", 3])
def test_bad_device_is_one_sentence(device):
    with pytest.raises(TokenmathError, match=r"expected 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        probe(seconds=1, device=device)


def test_cuda_without_torch_says_so(monkeypatch):
    import tokenmath.probe as p

    monkeypatch.setattr(p, "_torch", lambda: None)
    with pytest.raises(TokenmathError, match="needs PyTorch, which is not installed"):
        p.probe(seconds=1, device="cuda")


@pytest.mark.parametrize("name", ["", "has space", "a.b", "-lead", "x" * 65, "[x]"])
def test_bad_system_name_is_refused(measured, name):
    with pytest.raises(TokenmathError, match="must be 1-64 letters"):
        system_toml(measured, name)


def test_a_figure_outside_the_catalog_range_is_not_written():
    with pytest.raises(TokenmathError, match="hbm_bytes_per_s = .* outside the catalog's range"):
        system_toml(_gpu_like(memory_bytes_per_s=1e3), "slow")
    with pytest.raises(TokenmathError, match="no matmul FLOP/s"):
        system_toml(_gpu_like(flops_per_s={}), "none")
