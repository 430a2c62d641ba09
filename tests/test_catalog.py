"""catalog: names, provenance, datasheet-derived numbers, and user TOML extension/override."""

import textwrap
from pathlib import Path

import pytest

import tokenmath as tm

SYSTEM_NAMES = ["a100-sxm-80gb", "h100-sxm", "h800-sxm", "h200-sxm", "b200", "b300", "gb200-nvl72", "gb300-nvl72",
                "rubin-nvl144", "mi300x", "mi325x", "mi355x", "tpu-v5e", "tpu-v5p", "tpu-v6e", "tpu-v7", "trainium2"]
MODEL_NAMES = ["deepseek-v3", "deepseek-r1", "deepseek-v3.2", "kimi-k2", "llama-3.1-8b", "llama-3.1-70b",
               "llama-3.3-70b", "llama-3.1-405b", "llama-2-7b", "llama-2-70b", "qwen3-8b", "qwen3-32b",
               "qwen3-235b-a22b", "gpt-oss-20b", "gpt-oss-120b", "mixtral-8x7b"]
DATA = Path(__file__).parent / "data"


def test_exact_names_present(cat):
    assert set(SYSTEM_NAMES) <= set(cat.systems)
    assert set(MODEL_NAMES) <= set(cat.models)
    assert any(m.is_totals_only for m in cat.models.values())


@pytest.mark.parametrize("name", SYSTEM_NAMES)
def test_every_system_has_provenance(cat, name):
    s = cat.system(name)
    assert s.source and s.as_of
    assert s.usd_per_chip_hour is None or s.price_source


def test_every_model_has_provenance(cat):
    for m in cat.models.values():
        assert m.source and m.as_of, m.name


def test_rubin_is_marked_preliminary(cat):
    assert cat.system("rubin-nvl144").preliminary
    assert not cat.system("gb200-nvl72").preliminary


@pytest.mark.parametrize("name, drain_ms", [
    # lecture-claims.md L15, recomputed from the datasheets (capacity / bandwidth)
    ("h100-sxm", 23.9), ("h200-sxm", 29.4), ("b200", 22.5), ("gb200-nvl72", 24.0), ("gb300-nvl72", 36.0),
    ("mi355x", 36.0), ("a100-sxm-80gb", 42.0), ("tpu-v5e", 19.5), ("tpu-v6e", 19.5), ("tpu-v7", 28.0),
])
def test_hbm_drain_times(cat, name, drain_ms):
    """HBM drain time = capacity / bandwidth; lecture-claims L15 values, tolerance 1 %."""
    assert tm.hbm_drain_s(cat.system(name)) * 1e3 == pytest.approx(drain_ms, rel=0.01)


@pytest.mark.parametrize("name, ratio", [("h100-sxm", 9), ("h200-sxm", 9), ("gb200-nvl72", 9), ("gb300-nvl72", 9),
                                          ("a100-sxm-80gb", 12), ("h800-sxm", 4)])
def test_scaleup_to_scaleout_ratio_is_derived(cat, name, ratio):
    """lecture-claims L24 (AIConfigurator bandwidths): 450/50 = 9 (Hopper), 900/100 = 9 (Blackwell),
    300/25 = 12 (A100), 200/50 = 4 (H800). Exact."""
    assert cat.system(name).scaleup_to_scaleout_ratio == pytest.approx(ratio)


def test_domain_capacity_and_bandwidth(cat):
    """lecture-claims L32/L36: GB200 NVL72 13.8 TB, GB300 NVL72 20.7 TB; 8 × 3.35 = 26.8 TB/s for
    an H100 box vs 72 × 8 = 576 TB/s for an NVL72 rack. Tolerance 0.5 %."""
    g2, g3, h = cat.system("gb200-nvl72"), cat.system("gb300-nvl72"), cat.system("h100-sxm")
    assert g2.chip.hbm_bytes * g2.scaleup_chips == pytest.approx(13.8e12, rel=0.005)
    assert g3.chip.hbm_bytes * g3.scaleup_chips == pytest.approx(20.7e12, rel=0.005)
    assert h.chip.hbm_bytes_per_s * h.scaleup_chips == pytest.approx(26.8e12)
    assert g2.chip.hbm_bytes_per_s * g2.scaleup_chips == pytest.approx(576e12)


def write(tmp_path, text, name="user.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_user_toml_adds_chip_system_and_models(tmp_path):
    cfg = DATA / "llama-2-13b.json"
    p = write(tmp_path, f"""
        [chips.my-gpu]
        bf16_flops_per_s = "1 PFLOP/s"
        hbm_bytes = "96 GB"
        hbm_bytes_per_s = "4 TB/s"
        source = "vendor sheet"
        as_of = "2026-01"

        [systems.my-rack]
        bf16_flops_per_s = 1e15
        hbm_bytes = "96 GB"
        hbm_bytes_per_s = "4 TB/s"
        scaleup_chips = 16
        usd_per_chip_hour = 2
        source = "vendor sheet"
        as_of = "2026-01"

        [models.my-13b]
        config = "{cfg}"
        source = "meta"
        as_of = "2023"

        [models.tiny-moe]
        total_params = "100G"
        active_params = "10G"
        kv_bytes_per_token = "2 kB"
        source = "me"
        as_of = "2026"
        """)
    cat = tm.load_catalog([p])
    chip = cat.system("my-gpu")
    assert chip.scaleup_chips == 1 and chip.chip.hbm_bytes_per_s == 4e12
    assert tm.hbm_drain_s(chip) == pytest.approx(0.024)
    assert cat.system("my-rack").scaleup_chips == 16
    assert tm.param_counts(cat.model("my-13b")).total == 13_015_864_320  # Llama-2-13B, HF safetensors count
    assert tm.kv_bytes_per_token(cat.model("tiny-moe")) == 2000
    assert "h100-sxm" in cat.systems  # built-ins are still there


def test_relative_config_path_and_override(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text((DATA / "llama-2-13b.json").read_text())
    p = write(tmp_path, """
        [models.rel]
        config = "cfg/config.json"
        source = "x"
        as_of = "2026"

        [systems.h100-sxm]
        bf16_flops_per_s = 989e12
        hbm_bytes = 80e9
        hbm_bytes_per_s = 3.35e12
        scaleup_chips = 8
        usd_per_chip_hour = 9.99
        source = "my contract"
        as_of = "2026-11"
        """)
    cat = tm.load_catalog([p])
    assert cat.model("rel").n_layers == 40
    assert cat.system("h100-sxm").usd_per_chip_hour == 9.99


@pytest.mark.parametrize("body, msg", [
    ("[systems.x]\nhbm_bytes = '80 GX'\nhbm_bytes_per_s = 1e12\nbf16_flops_per_s = 1e15\nsource='a'\nas_of='b'\n",
     "hbm_bytes = '80 GX' has unit 'GX'"),
    ("[systems.x]\nhbm_bytes_per_s = 1e12\nbf16_flops_per_s = 1e15\nsource='a'\nas_of='b'\n", "missing field 'hbm_bytes'"),
    ("[systems.x]\nhbm_bytes = 1e9\nhbm_bytes_per_s = 1e12\nbf16_flops_per_s = 1e15\nsource='a'\nas_of='b'\nhbm_gb = 3\n",
     "unknown field 'hbm_gb'"),
    ("[systems.x]\nhbm_bytes = -1e9\nhbm_bytes_per_s = 1e12\nbf16_flops_per_s = 1e15\nsource='a'\nas_of='b'\n",
     "must be > 0"),
    ("[systems.x]\nhbm_bytes = 1e9\nhbm_bytes_per_s = 1e12\nsource='a'\nas_of='b'\n", "at least one of bf16_flops_per_s"),
    ("[models.m]\ntotal_params = 1e9\nsource='a'\nas_of='b'\n", "needs either config"),
    ("[models.m]\ntotal_params = 1e9\nactive_params = 2e9\nkv_bytes_per_token = 1\nsource='a'\nas_of='b'\n", "exceeds"),
    ("[models.m]\nconfig = 'nope.json'\nsource='a'\nas_of='b'\n", "does not exist"),
    ("[gpus.x]\na = 1\n", "top-level table"),
    ("[systems.x\n", "not valid TOML"),
])
def test_bad_toml_is_one_sentence(tmp_path, body, msg):
    p = write(tmp_path, body)
    with pytest.raises(tm.TokenmathError) as e:
        tm.load_catalog([p])
    assert msg in str(e.value) and str(p) in str(e.value)


def test_unknown_names_suggest_close_matches(cat):
    with pytest.raises(tm.TokenmathError, match="did you mean 'h100-sxm'"):
        cat.system("h100")
    with pytest.raises(tm.TokenmathError, match="'llama-3.1-8b'"):
        cat.model("llama-3.1-7b")
