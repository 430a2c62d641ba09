"""catalog: names, provenance, datasheet-derived numbers, and user TOML extension/override."""

import json
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


@pytest.mark.parametrize("name, driver_mib, source", [
    ("h100-sxm", 81_559, "nvidia-smi on 8 × H100 80GB HBM3: 'NNNNNMiB / 81559MiB' (github dstackai/benchmarks "
                         "comparison/h100sxm5_vs_mi300x/raw_data/gpu-usage.md, commit 06c957a, 2025-09)"),
    ("mi300x", 196_592, "amd-smi static --json on an MI300X: vram size 196592 'MB' (github ROCm/rocm-blogs "
                        "blogs/software-tools-optimization/amd-smi-overview/README.md, 2024-09-17, commit c9a603f)"),
])
def test_hbm_is_what_the_driver_reports(cat, name, driver_mib, source):
    """The catalog's HBM capacity is the memory a driver reports (`source`), not the datasheet's
    "80 GB" / "192 GB" read as decimal (7.4 % fewer bytes). Tolerance 1 %: a driver reports its
    total less what it reserves for itself (nvidia-smi's 81,559 MiB is 0.4 % under 80 GiB)."""
    hbm = cat.system(name).chip.hbm_bytes
    assert hbm == pytest.approx(driver_mib * 2**20, rel=0.01), source


@pytest.mark.parametrize("name, drain_ms", [
    # lecture-claims.md L15, recomputed from the datasheets (capacity / bandwidth); H100 and H200 at
    # 80 GiB and 141 GiB (aiconfigurator h100_sxm.yaml, h200_sxm.yaml mem_capacity), where
    # lecture-claims reads "80 GB" and "141 GB" as decimal (23.9 and 29.4 ms)
    ("h100-sxm", 25.6), ("h200-sxm", 31.5), ("b200", 22.5), ("gb200-nvl72", 24.0), ("gb300-nvl72", 36.0),
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


# ---- overrides merge field by field (issue 21) -------------------------------------------------------

def _doc_example_toml() -> str:
    """The TOML of docs/catalog.md's "GB200 NVL72 at your own price" example, as the page shows it."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "catalog.md").read_text(encoding="utf-8")
    block = page.split("### Worked example: a GB200 NVL72 at your own price", 1)[1]
    return block.split("$ cat my.toml\n", 1)[1].split("$ tokenmath", 1)[0]


def test_documented_gb200_price_override_works_and_scales_only_the_cost(tmp_path):
    """docs/catalog.md's worked example: a [systems.gb200-nvl72] table giving only a price merges into the
    built-in entry, so the scale-up bandwidth, power and host memory stay (a whole-entry replacement lost
    scaleup_bytes_per_s and the step was refused). The page's claim, checked: the step time is unchanged
    and $/Mtok scales by 2.21 / 3.30 (systems.toml: rental 3.30, the same source's hyperscaler 2.21).
    Exact up to float rounding (1e-9)."""
    from typer.testing import CliRunner

    from tokenmath.cli import app

    p = write(tmp_path, _doc_example_toml(), "my.toml")
    cat = tm.load_catalog([p])
    g, base = cat.system("gb200-nvl72"), tm.load_catalog().system("gb200-nvl72")
    assert g.usd_per_chip_hour == 2.21 and base.usd_per_chip_hour == 3.30
    assert (g.scaleup_bytes_per_s, g.scaleout_bytes_per_s, g.chip.power_w, g.ddr, g.scaleup_chips) == \
        (base.scaleup_bytes_per_s, base.scaleout_bytes_per_s, base.chip.power_w, base.ddr, base.scaleup_chips)
    args = ["step", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--batch", "2048", "--context", "4096",
            "--json"]
    mine, theirs = (CliRunner().invoke(app, a) for a in (args + ["--catalog", str(p)], args))
    assert mine.exit_code == 0 and theirs.exit_code == 0, mine.output
    m, t = json.loads(mine.stdout), json.loads(theirs.stdout)
    assert m["step_s"] == pytest.approx(t["step_s"], rel=1e-9)
    assert m["usd_per_mtok"] / t["usd_per_mtok"] == pytest.approx(2.21 / 3.30, rel=1e-9)


def test_partial_overrides_merge_field_by_field(tmp_path):
    """A table naming an existing entry changes only the fields it gives, in every section; a later file
    merges into what earlier files made; the merged table is validated whole."""
    a = write(tmp_path, """
        [chips.h100-sxm]
        power_w = 650
        [prices."claude-opus-4.6"]
        notes = "my note"
        [models.qwen3-32b]
        notes = "mine"
        """, "a.toml")
    b = write(tmp_path, """
        [systems.h100-sxm]
        usd_per_chip_hour = 1.5
        """, "b.toml")
    cat, base = tm.load_catalog([a, b]), tm.load_catalog()
    h, h0 = cat.system("h100-sxm"), base.system("h100-sxm")
    assert (h.chip.power_w, h.usd_per_chip_hour) == (650, 1.5)
    assert (h.chip.hbm_bytes, h.scaleup_chips, h.scaleup_bytes_per_s, h.source) == \
        (h0.chip.hbm_bytes, h0.scaleup_chips, h0.scaleup_bytes_per_s, h0.source)
    q, q0 = cat.model("qwen3-32b"), base.model("qwen3-32b")
    assert q.notes == "mine" and q.n_layers == q0.n_layers and q.hf_repo == q0.hf_repo == "Qwen/Qwen3-32B"
    p, p0 = cat.price_sheet("claude-opus-4.6"), base.price_sheet("claude-opus-4.6")
    assert p.notes == "my note" and p.input_usd_per_mtok == p0.input_usd_per_mtok and p0.notes != "my note"


def test_model_override_switches_between_config_and_totals(tmp_path):
    """A model is read one way: totals in an override drop the built-in config.json (and a config drops
    the totals), the other fields merge; the config path is relative to the file that names it."""
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text((DATA / "llama-2-13b.json").read_text())
    p = write(tmp_path, """
        [models.deepseek-v3]
        total_params = "671G"
        active_params = "37G"
        kv_bytes_per_token = 70272
        [models.lecture-moe-700b]
        config = "cfg/config.json"
        """)
    cat = tm.load_catalog([p])
    d = cat.model("deepseek-v3")
    assert d.is_totals_only and d.total_params_given == 671e9 and d.hf_repo == "deepseek-ai/DeepSeek-V3"
    m = cat.model("lecture-moe-700b")
    assert not m.is_totals_only and m.n_layers == 40 and m.source == tm.load_catalog().model("lecture-moe-700b").source


@pytest.mark.parametrize("body, msg", [
    ("[systems.gb200-nvl72]\nreplace = true\nusd_per_chip_hour = 1\n", "missing field 'hbm_bytes'"),
    ("[systems.gb200-nvl72]\nreplace = 'yes'\n", "replace = 'yes' must be true or false"),
    ("[systems.h100-sxm]\nhbm_bytes = '80 GX'\n", "hbm_bytes = '80 GX' has unit 'GX'"),
    ("[models.qwen3-32b]\ntotal_params = 1e9\n", "needs either config"),
    ("[models.qwen3-32b]\nhf_repo = '--trust-remote-code'\n", "is not a Hugging Face repo id"),
    ("[checkpoints.x]\nmodel = 'nope'\nweight_dtype = 'fp8'\nhf_repo = 'a/b'\nsource = 's'\nas_of = 'a'\n",
     "model = 'nope' is not a catalog model"),
    ("[checkpoints.x]\nmodel = 'qwen3-32b'\nweight_dtype = 'fp9'\nhf_repo = 'a/b'\nsource = 's'\nas_of = 'a'\n",
     "unknown dtype 'fp9'"),
    ("[checkpoints.x]\nmodel = 'qwen3-32b'\nweight_dtype = 'fp8'\nhf_repo = 'a/b'\nsource = 's'\nas_of = 'a'\n",
     "both give model 'qwen3-32b' in fp8"),
])
def test_merged_tables_are_validated(tmp_path, body, msg):
    """`replace = true` replaces the built-in entry whole (so every required field must be given); a merged
    table is validated whole, and a bad field is one sentence naming the file and the table."""
    p = write(tmp_path, body)
    with pytest.raises(tm.TokenmathError) as e:
        tm.load_catalog([p])
    assert msg in str(e.value), str(e.value)
    if "checkpoints" not in body or "not a catalog model" in msg:
        assert str(p) in str(e.value)


def test_replace_true_replaces_the_entry_whole(tmp_path):
    """`replace = true`: the built-in's other fields are gone (here its scale-up bandwidth and power)."""
    p = write(tmp_path, """
        [systems.gb200-nvl72]
        replace = true
        bf16_flops_per_s = 2.5e15
        hbm_bytes = 192e9
        hbm_bytes_per_s = 8e12
        scaleup_chips = 72
        source = "mine"
        as_of = "2026"
        """)
    g = tm.load_catalog([p]).system("gb200-nvl72")
    assert g.scaleup_bytes_per_s is None and g.chip.power_w is None and g.source == "mine"


def test_user_checkpoint_for_a_builtin_model(tmp_path):
    """A [checkpoints.NAME] table adds a published checkpoint to a catalog model; the export then loads it
    for a pool in that weight dtype."""
    from tokenmath.export import checkpoint_for

    p = write(tmp_path, """
        [checkpoints.my-qwen-nvfp4]
        model = "qwen3-32b"
        weight_dtype = "nvfp4"
        hf_repo = "me/Qwen3-32B-NVFP4"
        source = "my export"
        as_of = "2026-12"
        """)
    m = tm.load_catalog([p]).model("qwen3-32b")
    assert ("nvfp4", "me/Qwen3-32B-NVFP4") in m.checkpoints and ("fp8", "Qwen/Qwen3-32B-FP8") in m.checkpoints
    assert checkpoint_for(m, "nvfp4", "trtllm")[:2] == ("me/Qwen3-32B-NVFP4", "nvfp4")


def test_every_catalog_model_with_a_config_names_its_checkpoint(cat):
    """models.toml: every config.json model carries the Hugging Face repo id a server loads, sourced
    (hf_repo_source where it is not the config's own repo); every [checkpoints.*] has source and as_of and
    belongs to a catalog model. The lecture's totals-only models have none (no checkpoint exists)."""
    import tomllib

    raw = tomllib.loads((Path(tm.__file__).parent / "catalog" / "models.toml").read_text(encoding="utf-8"))
    for name, t in raw["models"].items():
        m = cat.model(name)
        if m.is_totals_only:
            assert m.hf_repo is None, name
            continue
        assert m.hf_repo and "/" in m.hf_repo, name
        assert m.hf_repo in t["source"] or t.get("hf_repo_source"), name
    for name, c in raw["checkpoints"].items():
        assert c["source"] and c["as_of"] and c["model"] in cat.models, name
        assert (c["weight_dtype"], c["hf_repo"]) in cat.model(c["model"]).checkpoints


def test_config_name_or_path_gives_the_repo_id(tmp_path):
    """hf.py: a config.json's `_name_or_path` is the repo id when it is one ("owner/name"); a local path
    there is not taken."""
    cfg = json.loads((DATA / "llama-2-13b.json").read_text())
    for value, want in (("meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-13b-hf"), ("/root/models/x", None),
                        ("--trust-remote-code", None)):
        f = tmp_path / "config.json"
        f.write_text(json.dumps(cfg | {"_name_or_path": value}))
        assert tm.load_catalog().model(str(f)).hf_repo == want
