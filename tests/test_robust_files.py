"""Robustness of the file readers (issue 12): config.json, catalog TOML, price sheets.

Every malformed, adversarial or absurd file gives one TokenmathError sentence that names the field
(or the file) and what was expected -- never another exception, never unbounded work.
"""

import itertools
import json
import math
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tokenmath as tm
from tokenmath.errors import TokenmathError
from tokenmath.hf import config_from_bytes, load_config, model_from_config, model_from_config_file

CONFIGS = Path(tm.__file__).parent / "catalog" / "configs"
BASE = json.loads((CONFIGS / "meta-llama--Meta-Llama-3.1-8B.json").read_text())
MOE = json.loads((CONFIGS / "mistralai--Mixtral-8x7B-v0.1.json").read_text())
SYSTEM = ('[systems.x]\nbf16_flops_per_s = 1e15\nhbm_bytes = {hbm}\nhbm_bytes_per_s = 1e12\n'
          'source = "s"\nas_of = "a"\n')
PRICE = ('[prices.p]\nprovider = "a"\nmodel = "b"\ninput_usd_per_mtok = {inp}\noutput_usd_per_mtok = 1\n'
         'source = "s"\nas_of = "a"\n')
STORAGE = ('[storage.s]\ntier = "ddr"\nbytes = 1e12\nbytes_per_s = 1e11\nusd_per_gb = {usd}\n'
           'amortization_years = {years}\nsource = "s"\nas_of = "a"\n')
_counter = itertools.count()


def _one_sentence(e: BaseException) -> str:
    msg = str(e)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


def _config_text(**fields) -> str:
    c = dict(BASE)
    c.update(fields)
    return json.dumps(c)


def _write(tmp_path: Path, data: str | bytes, suffix: str) -> Path:
    p = tmp_path / f"f{next(_counter)}{suffix}"
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


# ---- config.json --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expect", [
    (_config_text(num_hidden_layers=0).replace('"num_hidden_layers": 0', '"num_hidden_layers": Infinity'),
     "'num_hidden_layers' = inf is not a finite number"),
    (_config_text(hidden_size=0).replace('"hidden_size": 0', '"hidden_size": NaN'), "'hidden_size' = nan is not a finite"),
    (_config_text(vocab_size=0).replace('"vocab_size": 0', '"vocab_size": 1e400'), "'vocab_size' = inf is not a finite"),
    (_config_text(num_nextn_predict_layers=float("inf")), "'num_nextn_predict_layers' = inf"),
    (_config_text(head_dim=128.5), "'head_dim' = 128.5 is not a whole number"),
    (_config_text(num_hidden_layers="32"), "'num_hidden_layers' = '32' is a str"),
    (_config_text(num_hidden_layers=10**9), "'num_hidden_layers' = 1000000000 exceeds 1,000"),
    (_config_text(hidden_size=10**15), "'hidden_size' = 1e+15 exceeds 1,000,000"),
    (_config_text(vocab_size=10**15), "'vocab_size' = 1e+15 exceeds 10,000,000"),
    (_config_text(num_attention_heads=10**6), "'num_attention_heads' = 1000000 exceeds 10,000"),
    (_config_text(intermediate_size=10**12), "'intermediate_size' = 1000000000000 exceeds 10,000,000"),
    (_config_text(num_attention_heads=0), "'num_attention_heads' = 0 must be >= 1"),
    (_config_text(num_key_value_heads=0), "'num_key_value_heads' = 0 must be >= 1"),
    (_config_text(hidden_size=-5), "'hidden_size' = -5 must be a non-negative integer"),
    (_config_text(hidden_size=4, head_dim=None), "head dimension would be 0"),
    (_config_text(layer_types=[[1]] * 32), "'layer_types'"),
    (_config_text(model_type=["llama"]), "'model_type'"),
    ("[" * 3000 + "]" * 3000, "too deeply"),
    ('{"a": ' + "[" * 3000 + "]" * 3000 + "}", "too deeply"),
    ('{"hidden_size": ' + "9" * 5000 + "}", "not JSON that tokenmath can read"),
    ("[1, 2]", "holds a JSON list"),
    ("{", "not valid JSON"),
])
def test_bad_config_json_is_one_sentence(tmp_path, text, expect):
    p = _write(tmp_path, text, ".json")
    with pytest.raises(TokenmathError) as e:
        model_from_config_file(p)
    assert expect in _one_sentence(e.value)


def test_moe_bounds_and_zeros():
    with pytest.raises(TokenmathError, match="'num_local_experts' = 1000000 exceeds 100,000"):
        model_from_config(dict(MOE, num_local_experts=10**6))
    with pytest.raises(TokenmathError, match="'num_experts_per_tok' = 0 must be >= 1"):
        model_from_config(dict(MOE, num_experts_per_tok=0))
    with pytest.raises(TokenmathError, match="'moe_layers'"):
        model_from_config(dict(MOE, model_type="llama4", moe_layers=[[1], {}]))


@pytest.mark.parametrize("data, expect", [
    (_config_text().encode("utf-16"), "UTF-16 or binary"),
    (_config_text().encode("utf-16-be"), "UTF-16 or binary"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "not UTF-8"),
    (b"\xef\xbb\xbf" + _config_text().encode(), None),  # a UTF-8 BOM is fine
])
def test_binary_and_utf16_config(tmp_path, data, expect):
    p = _write(tmp_path, data, ".json")
    if expect is None:
        assert model_from_config_file(p).n_layers == 32
        return
    with pytest.raises(TokenmathError) as e:
        load_config(p)
    assert expect in _one_sentence(e.value)


def test_config_size_bound(tmp_path):
    with pytest.raises(TokenmathError, match="at most 4,194,304 bytes"):
        config_from_bytes(b" " * (4 * 2**20 + 1), "the upload")


def test_unreadable_and_absurd_paths(tmp_path, cat):
    with pytest.raises(TokenmathError, match="unknown model"):
        cat.model("a" * 300)
    with pytest.raises(TokenmathError, match="cannot be read|does not exist"):
        cat.model("a" * 300 + ".json")
    with pytest.raises(TokenmathError, match="cannot be read|does not exist"):
        load_config("x\0y.json")
    with pytest.raises(TokenmathError, match="is a folder, not a regular file"):
        load_config(tmp_path)  # a directory: the right reason (issue 24), not "does not exist"


# ---- catalog TOML -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expect", [
    ("systems = 5\n", "'systems' = 5 must be a table"),
    ("prices = [1, 2]\n", "'prices' = [1, 2] must be a table"),
    ("a = " + "[" * 3000 + "]" * 3000 + "\n", "too deeply"),
    ("a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n", "too deeply"),
    (SYSTEM.format(hbm="1e-300"), "hbm_bytes = 1e-300 must be between 1e+06 and 1e+15"),
    (SYSTEM.format(hbm="inf"), "hbm_bytes = inf is not a finite number"),
    (SYSTEM.format(hbm="nan"), "hbm_bytes = nan is not a finite number"),
    (SYSTEM.format(hbm="1e11") + 'ddr = "grace-lpddr5x"\nddr_share = 0\n', "ddr_share = 0 must be between 0.001 and 1"),
    (SYSTEM.format(hbm="1e11") + 'ddr = "grace-lpddr5x"\nddr_share = -1\n', "ddr_share = -1 must be between"),
    (SYSTEM.format(hbm="1e11") + 'ddr = "grace-lpddr5x"\nddr_share = nan\n', "'ddr_share': Input should be a finite"),
    (SYSTEM.format(hbm="1e11") + 'ddr = "grace-lpddr5x"\nddr_share = "0"\n', "ddr_share = 0 must be between"),
    (SYSTEM.format(hbm="1e11") + "scaleup_chips = 1e12\n", "scaleup_chips = 1e+12 must be between 1 and 1e+06"),
    (SYSTEM.format(hbm="1e11") + "power_w = -inf\n", "power_w = -inf is not a finite number"),
    (PRICE.format(inp="inf"), "'input_usd_per_mtok': Input should be a finite number"),
    (PRICE.format(inp="nan"), "'input_usd_per_mtok': Input should be a finite number"),
    (PRICE.format(inp="-1"), "input_usd_per_mtok = -1 must be between 1e-06 and 10000"),
    (PRICE.format(inp="1e300"), "input_usd_per_mtok = 1e+300 must be between"),
    (PRICE.format(inp="1") + 'cache_write_usd_per_mtok = { "5m" = inf }\n', "'cache_write_usd_per_mtok.5m'"),
    (PRICE.format(inp="1") + 'cache_write_usd_per_mtok = { "5m" = -3 }\n', "cache_write_usd_per_mtok = -3"),
    (PRICE.format(inp="1") + 'cache_write_usd_per_mtok = { "%sm" = 1 }\n' % ("9" * 400), "cache TTL"),
    (PRICE.format(inp="1") + 'cache_write_usd_per_mtok = { "0m" = 1 }\n', "between 1 s and 366 days"),
    (STORAGE.format(usd=1, years="1e-300"), "amortization_years = 1e-300 must be between 0.1 and 100"),
    (STORAGE.format(usd=1, years="inf"), "'amortization_years': Input should be a finite number"),
    (STORAGE.format(usd=-1, years=5), "usd_per_gb = -1 must be between 0 and 10000"),
    (STORAGE.format(usd="nan", years=5), "'usd_per_gb': Input should be a finite number"),
    ('[models.m]\ntotal_params = 1e9\nactive_params = 1e9\nkv_bytes_per_token = 1e400\nsource="a"\nas_of="b"\n',
     "kv_bytes_per_token = inf is not a finite"),
    ('[models.m]\ntotal_params = 1e9\nactive_params = 1e9\nkv_bytes_per_token = 1\nlayers = 1000000000\n'
     'source="a"\nas_of="b"\n', "layers = 1e+09 must be between 1 and 1000"),
])
def test_bad_catalog_is_one_sentence(tmp_path, text, expect):
    p = _write(tmp_path, text, ".toml")
    with pytest.raises(TokenmathError) as e:
        tm.load_catalog([p])
    msg = _one_sentence(e.value)
    assert expect in msg and str(p) in msg, msg


@pytest.mark.parametrize("data, expect", [
    (SYSTEM.format(hbm="1e11").encode("utf-16"), "UTF-16 or binary"),
    (bytes(range(256)), "UTF-16 or binary"),
    (b"\xff\xfe\xfd[systems.x]\n", "UTF-16 or binary"),
    (b"a = '\xc3\x28'\n", "not UTF-8"),
])
def test_binary_and_utf16_catalog(tmp_path, data, expect):
    p = _write(tmp_path, data, ".toml")
    with pytest.raises(TokenmathError) as e:
        tm.load_catalog([p])
    assert expect in _one_sentence(e.value)


def test_valid_ddr_share_still_halves_capacity(cat):
    gb = cat.system("gb200-nvl72")
    assert gb.ddr.bytes == pytest.approx(cat.storage["grace-lpddr5x"].bytes * 0.5)


# ---- names --------------------------------------------------------------------------------------

def test_names_are_case_insensitive(cat, tmp_path):
    assert cat.model("Llama-3.1-70B").name == "llama-3.1-70b"
    assert cat.model("DEEPSEEK-V3") is cat.model("deepseek-v3")
    assert cat.system("H100-SXM") is cat.system("h100-sxm")
    some_sheet = sorted(cat.prices)[0]
    assert cat.price_sheet(some_sheet.upper()) is cat.price_sheet(some_sheet)
    # exact match first; an ambiguous case-insensitive match is refused, not guessed
    body = 'total_params = 1e9\nactive_params = 1e9\nkv_bytes_per_token = 1000\nsource = "s"\nas_of = "a"\n'
    p = _write(tmp_path, f"[models.Foo]\n{body}[models.FOO]\n{body}layers = 3\n", ".toml")
    c = tm.load_catalog([p])
    assert c.model("FOO").n_layers == 3 and c.model("Foo").n_layers is None
    with pytest.raises(TokenmathError, match="unknown model 'foo'"):
        c.model("foo")


# ---- cache --------------------------------------------------------------------------------------

def test_edited_files_are_read_again(tmp_path):
    p = tmp_path / "user.toml"
    p.write_text(SYSTEM.format(hbm="1e11"))
    assert tm.load_catalog([p]).system("x").chip.hbm_bytes == 1e11
    assert tm.load_catalog([p]) is tm.load_catalog([p])  # unchanged: cached
    p.write_text(SYSTEM.format(hbm="2e11"))
    assert tm.load_catalog([p]).system("x").chip.hbm_bytes == 2e11
    cfg = tmp_path / "c.json"
    cfg.write_text(_config_text())
    p.write_text('[models.m]\nconfig = "c.json"\nsource = "s"\nas_of = "a"\n')
    assert tm.load_catalog([p]).model("m").n_layers == 32
    cfg.write_text(_config_text(num_hidden_layers=40))  # the TOML is unchanged; its config.json is not
    assert tm.load_catalog([p]).model("m").n_layers == 40


# ---- fuzz ---------------------------------------------------------------------------------------

FINITE_AND_NOT = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, 1, -1, 2**63, 10**15, 10**400, 1e-300, 1e300, 0.5]),
    st.floats(allow_nan=True, allow_infinity=True),
)
JSON_LEAF = st.one_of(st.none(), st.booleans(), FINITE_AND_NOT, st.text(max_size=20))
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)), max_leaves=20)
CONFIG_KEYS = sorted(set(BASE) | set(MOE) | {
    "num_local_experts", "num_experts_per_tok", "moe_intermediate_size", "n_routed_experts", "kv_lora_rank",
    "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim", "q_lora_rank", "layer_types", "sliding_window",
    "sliding_window_pattern", "moe_layers", "mlp_only_layers", "decoder_sparse_step", "first_k_dense_replace",
    "num_kv_shared_layers", "quantization_config", "text_config", "head_dim", "multi_query", "index_topk",
    "attention_chunk_size", "no_rope_layers", "num_nextn_predict_layers", "shared_expert_intermediate_size",
    "top_k_experts", "num_global_key_value_heads", "global_head_dim", "attention_k_eq_v", "enable_moe_block"})
FAMILIES = st.sampled_from(["llama", "llama4_text", "mixtral", "qwen2", "qwen3_moe", "deepseek_v3", "gemma2",
                            "gemma3_text", "gemma4_text", "gpt_oss", "falcon", "gpt2", "glm4_moe"])


@st.composite
def configs(draw):
    """A real config with random fields replaced, deleted or nested, or a random JSON value."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON_VALUE)
    c = dict(draw(st.sampled_from([BASE, MOE])))
    c["model_type"] = draw(FAMILIES)
    for key in draw(st.lists(st.sampled_from(CONFIG_KEYS), max_size=6)):
        if draw(st.booleans()):
            c.pop(key, None)
        else:
            c[key] = draw(JSON_VALUE)
    if draw(st.integers(0, 4)) == 0:
        c = {"model_type": draw(FAMILIES), "text_config": c}
    return c


@st.composite
def config_bytes(draw):
    c = draw(configs())
    text = json.dumps(c, allow_nan=True)
    damage = draw(st.integers(0, 5))
    if damage == 1:  # deep nesting somewhere
        d = draw(st.integers(1, 4000))
        text = text.replace("{", "{\"deep\": " + "[" * d + "]" * d + ",", 1) if text.startswith("{") else text
    elif damage == 2:  # truncation
        text = text[: draw(st.integers(0, len(text)))]
    elif damage == 3:
        return text.encode(draw(st.sampled_from(["utf-16", "utf-32", "latin-1"])), errors="replace")
    elif damage == 4:
        return draw(st.binary(max_size=200))
    return text.encode()


def _only_tokenmath_errors(fn) -> float:
    t = time.perf_counter()
    try:
        fn()
    except TokenmathError as e:
        _one_sentence(e)
    return time.perf_counter() - t


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(configs())
def test_fuzz_model_from_config(cfg):
    def build():
        m = model_from_config(cfg, name="fuzz")
        assert 1 <= m.n_layers <= 1000 and 1 <= m.hidden <= 10**6
        counts = tm.param_counts(m)
        assert counts.total >= counts.active > 0
        kv = tm.kv_bytes_per_token(m, 1000.0)
        assert math.isfinite(kv) and kv > 0
    assert _only_tokenmath_errors(build) < 2.0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(config_bytes())
def test_fuzz_config_bytes(raw):
    assert _only_tokenmath_errors(lambda: model_from_config(config_from_bytes(raw, "the upload"))) < 2.0


TOML_LEAF = st.one_of(
    st.sampled_from(["0", "-1", "1", "1e-300", "1e300", "1e400", "inf", "-inf", "nan", "0.5", "1e9", "1e12",
                     "9223372036854775807", '"1 TB"', '"3.35 TB/s"', '"x"', '""', "true", "'5m'",
                     '"ddr"', '"flash"', '"grace-lpddr5x"', "1979-05-27"]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=10).map(json.dumps),
)
TOML_VALUE = st.recursive(TOML_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.lists(st.tuples(st.sampled_from(["a", "b", "5m", "1h"]), inner), max_size=3, unique_by=lambda kv: kv[0])
    .map(lambda kvs: "{" + ", ".join(f'"{k}" = {v}' for k, v in kvs) + "}")), max_leaves=8)
TOML_FIELDS = sorted({"bf16_flops_per_s", "fp8_flops_per_s", "hbm_bytes", "hbm_bytes_per_s", "scaleup_chips",
                      "scaleup_bytes_per_s", "ddr", "ddr_share", "ddr_bytes", "power_w", "usd_per_chip_hour",
                      "source", "as_of", "config", "total_params", "active_params", "kv_bytes_per_token", "layers",
                      "weight_dtype", "tier", "bytes", "bytes_per_s", "usd_per_gb", "amortization_years",
                      "provider", "model", "input_usd_per_mtok", "output_usd_per_mtok", "cache_read_usd_per_mtok",
                      "cache_write_usd_per_mtok", "batch_multiplier", "fast_speedup", "fast_price_multiplier",
                      "long_context_threshold_tokens", "unknown_field"})
BASE_TABLES = {
    "systems": SYSTEM.format(hbm="1e11").split("\n", 1)[1],
    "prices": PRICE.format(inp="1").split("\n", 1)[1],
    "storage": STORAGE.format(usd=1, years=5).split("\n", 1)[1],
    "models": 'total_params = 1e9\nactive_params = 1e9\nkv_bytes_per_token = 1000\nsource = "s"\nas_of = "a"\n',
}


@st.composite
def toml_snippets(draw):
    kind = draw(st.integers(0, 9))
    if kind == 0:  # a non-table section or a random top-level value
        return f"{draw(st.sampled_from(['systems', 'chips', 'models', 'prices', 'storage', 'x']))} = {draw(TOML_VALUE)}\n"
    if kind == 1:  # deep nesting
        d = draw(st.integers(1, 4000))
        return f"[systems.x]\nnotes = {'[' * d}{']' * d}\n" if draw(st.booleans()) else "a = " + "{b = " * d + "1" + "}" * d
    if kind == 2:
        return draw(st.binary(max_size=100))
    section = draw(st.sampled_from(["systems", "chips", "models", "prices", "storage"]))
    base = BASE_TABLES["systems" if section == "chips" else section]
    lines = {ln.split(" = ", 1)[0]: ln for ln in base.splitlines() if ln}
    if section in ("systems", "chips") and draw(st.booleans()):
        lines["ddr"] = 'ddr = "grace-lpddr5x"'
    for key in draw(st.lists(st.sampled_from(TOML_FIELDS), max_size=4)):
        if draw(st.booleans()):
            lines.pop(key, None)
        else:
            lines[key] = f"{key} = {draw(TOML_VALUE)}"
    return f"[{section}.{draw(st.sampled_from(['x', 'h100-sxm', 'deepseek-v3', 'grace-lpddr5x']))}]\n" + "\n".join(lines.values()) + "\n"


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                  HealthCheck.function_scoped_fixture])
@given(toml_snippets())
def test_fuzz_catalog_toml(tmp_path, snippet):
    p = _write(tmp_path, snippet, ".toml")

    def load():
        c = tm.load_catalog([p])
        for s in c.systems.values():
            assert math.isfinite(s.chip.hbm_bytes) and s.chip.hbm_bytes > 0
            if s.ddr is not None:
                assert math.isfinite(s.ddr.bytes) and s.ddr.bytes > 0
        for t in c.storage.values():
            assert t.usd_per_byte_s is None or (math.isfinite(t.usd_per_byte_s) and t.usd_per_byte_s >= 0)
        for sheet in c.prices.values():
            assert math.isfinite(sheet.input_usd_per_mtok) and sheet.input_usd_per_mtok > 0
    assert _only_tokenmath_errors(load) < 2.0


# ---- Gemma 4 style fields (synthetic config; exact counts against transformers in test_params.py) ----

GEMMA4_DENSE = {
    "model_type": "gemma4", "text_config": {
        "model_type": "gemma4_text", "hidden_size": 256, "num_hidden_layers": 6, "intermediate_size": 512,
        "num_attention_heads": 4, "num_key_value_heads": 2, "num_global_key_value_heads": 2, "head_dim": 64,
        "global_head_dim": 64, "vocab_size": 1024, "sliding_window": 32, "sliding_window_pattern": 3,
        "max_position_embeddings": 2048, "attention_k_eq_v": False, "enable_moe_block": False,
        "num_experts": None, "top_k_experts": None, "tie_word_embeddings": True}}


def _g4(**kw):
    return {**GEMMA4_DENSE, "text_config": {**GEMMA4_DENSE["text_config"], **kw}}


def test_gemma4_text_config_is_read():
    """Gemma4TextConfig (transformers 5.25) ignores sliding_window_pattern: without layer_types
    every 6th layer is full attention, and the last always is."""
    m = model_from_config(GEMMA4_DENSE)
    assert (m.family, m.hidden, m.n_layers, m.attention.n_kv_heads, m.attention.head_dim) == ("gemma4_text", 256, 6, 2, 64)
    assert m.layer_window == (32, 32, 32, 32, 32, None) and m.tied_embeddings and m.norms_per_layer == 4
    assert m.global_attention is None and m.per_layer_input_dim == 256  # Gemma4TextConfig's PLE default
    types = ["full_attention", "sliding_attention"] * 3
    assert model_from_config(_g4(layer_types=types[::-1] + [])).layer_window[-1] is None
    assert model_from_config(_g4(layer_types=types)).layer_window == (None, 32, None, 32, None, None)


def test_top_k_experts_is_experts_per_token():
    cfg = dict(MOE, num_experts_per_tok=None, top_k_experts=2)
    assert model_from_config(cfg).moe.k == 2


def test_gemma4_geometry_is_held():
    """Global layers with their own head dim / KV heads, k_eq_v and the MoE block are modelled."""
    m = model_from_config(_g4(global_head_dim=128))
    assert m.global_attention.head_dim == 128 and m.attention.head_dim == 64
    assert model_from_config(_g4(num_global_key_value_heads=1)).global_attention is None  # ignored without k_eq_v
    g = model_from_config(_g4(num_global_key_value_heads=1, attention_k_eq_v=True)).global_attention
    assert (g.n_kv_heads, g.k_eq_v) == (1, True)
    moe = model_from_config(_g4(enable_moe_block=True, num_experts=4, top_k_experts=2, moe_intermediate_size=64))
    assert moe.moe_with_dense_mlp and moe.moe.k == 2 and moe.mlp.intermediate == 512 and all(moe.layer_moe)
    assert model_from_config(_g4(num_experts=4, top_k_experts=2)).moe is None  # experts only with enable_moe_block


@pytest.mark.parametrize("field, value, expect", [
    ("num_global_key_value_heads", 0, "'num_global_key_value_heads' = 0 must be >= 1"),
    ("num_global_key_value_heads", 3, "not a multiple of the full-attention layers' 3 KV heads"),
    ("enable_moe_block", True, "needs 'num_experts', 'top_k_experts' and 'moe_intermediate_size'"),
    ("hidden_size_per_layer_input", 10**7, "'hidden_size_per_layer_input' = 10000000 exceeds"),
    ("per_layer_config", [1], "'per_layer_config' = \\[1\\] must be an object"),
    ("per_layer_config", {"9": {"head_dim": 8}}, "key '9'; expected a layer index below num_hidden_layers = 6"),
    ("per_layer_config", {"0": {"head_dim": 8}}, "sliding layer 0 its own KV heads or head_dim"),
    ("per_layer_config", {"5": {"head_dim": -1}}, "'head_dim' = -1 must be a non-negative integer"),
    ("layer_types", "full", "must be a list of 6 layer types"),
])
def test_gemma4_bad_fields_are_one_sentence(field, value, expect):
    cfg = _g4(**{field: value})
    if field == "num_global_key_value_heads":
        cfg["text_config"]["attention_k_eq_v"] = True
    with pytest.raises(TokenmathError, match=expect):
        model_from_config(cfg)


def test_gemma4_per_layer_config_full_layers_must_agree():
    cfg = _g4(num_hidden_layers=12, per_layer_config={"05": {"head_dim": 128}, "11": {"head_dim": 256}})
    with pytest.raises(TokenmathError, match="full-attention layers different"):
        model_from_config(cfg)
    ok = model_from_config(_g4(per_layer_config={"05": {"head_dim": 128, "num_key_value_heads": 1}}))
    assert (ok.global_attention.head_dim, ok.global_attention.n_kv_heads) == (128, 1)
