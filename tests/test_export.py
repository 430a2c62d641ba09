"""export.py (issue 14, "Export"): engine launch commands for a planned pool.

Each test's docstring names the page (and version or commit) the flag names were read from; the
full list is export.SOURCES. A command must contain exactly the documented flags with the right
values, parse back with shlex, and bad input must be refused with one sentence."""

import json
import re
import shlex
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tokenmath.errors import TokenmathError
from tokenmath.export import ENGINES, FLAGS, SOURCES, Launch, Pool, launch, launch_commands, pool_from_layout
from tokenmath.layout import Layout

DS3 = "deepseek-ai/DeepSeek-V3"


def decode_pool(**kw):
    """DeepSeek-V3 decode pool on 8 × H200: TP1 EP8 DP8, FP8 KV, 1,024 sequences per replica."""
    args = dict(role="decode", system="h200-sxm", replicas=1, chips_per_replica=8, tp=1, ep=8, pp=1, dp=8,
                max_batch=1024, max_num_batched_tokens=8192, model=DS3, kv_dtype="fp8")
    args.update(kw)
    return Pool(**args)


def dense_pool(**kw):
    """A dense 70B aggregated pool: TP4 × PP2 on 8 chips, bf16 KV, from the BF16 checkpoint quantised to
    FP8 while loading."""
    args = dict(role="both", system="h100-sxm", replicas=1, chips_per_replica=8, tp=4, ep=1, pp=2, dp=1,
                max_batch=256, max_num_batched_tokens=8192, model="meta-llama/Llama-3.1-70B-Instruct",
                kv_dtype="bf16", weight_dtype="fp8", checkpoint_dtype="bf16")
    args.update(kw)
    return Pool(**args)


def fp8_pool(**kw):
    """The same pool loading NVIDIA's FP8 export of the model (stored in FP8: no quantisation flag)."""
    return dense_pool(**({"model": "nvidia/Llama-3.1-70B-Instruct-FP8", "checkpoint_dtype": None} | kw))


def argv(line):
    return shlex.split(line)


def flags(tokens):
    return [t for t in tokens if t.startswith("--")]


# ------------------------------------------------------------------------------------------------
# vLLM
# ------------------------------------------------------------------------------------------------

def test_vllm_decode_pool():
    """vLLM docs serving/expert_parallel_deployment (v0.12.0 page): `vllm serve deepseek-ai/DeepSeek-V3-0324
    --tensor-parallel-size 1 --data-parallel-size 8 --enable-expert-parallel`, EP_SIZE = TP_SIZE × DP_SIZE,
    and `--kv-transfer-config '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'` on prefill and
    decode; serving/data_parallel_deployment: "--max-num-seqs applies per DP rank"; engine args:
    --pipeline-parallel-size, --max-num-batched-tokens, --kv-cache-dtype fp8, --port."""
    lines = launch_commands(decode_pool(), "vllm")
    assert len(lines) == 1
    a = argv(lines[0])
    assert a[:3] == ["vllm", "serve", DS3]
    assert a[3:] == ["--tensor-parallel-size", "1", "--pipeline-parallel-size", "1",
                     "--data-parallel-size", "8", "--enable-expert-parallel",
                     "--max-num-seqs", "128", "--max-num-batched-tokens", "1024",
                     "--kv-cache-dtype", "fp8",
                     "--kv-transfer-config", '{"kv_connector":"NixlConnector","kv_role":"kv_both"}',
                     "--port", "8000"]
    assert json.loads(a[a.index("--kv-transfer-config") + 1]) == {"kv_connector": "NixlConnector",
                                                                 "kv_role": "kv_both"}


def test_vllm_dense_aggregated():
    """vllm 0.33.0 arg_utils.py: --tensor-parallel-size, --pipeline-parallel-size, --max-num-seqs,
    --max-num-batched-tokens, --kv-cache-dtype auto (config/cache.py CacheDType: the model's dtype); a BF16
    checkpoint run in FP8 gets --quantization fp8_per_tensor (config/quantization.py _ONLINE_SHORTHANDS;
    fp8.py: "The `fp8` quantization method no longer supports online quantization. Please use
    `--quantization fp8_per_tensor`"); no DP, EP or KV-transfer flag for an aggregated dense replica."""
    a = argv(launch_commands(dense_pool(), "vllm")[0])
    assert a == ["vllm", "serve", "meta-llama/Llama-3.1-70B-Instruct",
                 "--tensor-parallel-size", "4", "--pipeline-parallel-size", "2",
                 "--max-num-seqs", "256", "--max-num-batched-tokens", "8192",
                 "--kv-cache-dtype", "auto", "--quantization", "fp8_per_tensor", "--port", "8000"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("weight, stored", [("fp8", None), ("fp8", "fp8"), ("nvfp4", "nvfp4"), ("mxfp4", None),
                                            (None, None), ("bf16", "bf16"), (None, "bf16")])
def test_a_checkpoint_in_its_own_format_gets_no_quantization_flag(engine, weight, stored):
    """vllm 0.33.0 config/model.py _verify_quantization reads the method from the checkpoint's own
    quantization config when --quantization is not given (and refuses a --quantization that differs
    from it); SGLang and TensorRT-LLM likewise read it from the checkpoint. A pool whose checkpoint is
    stored in the weight dtype it runs (or whose weight dtype is the checkpoint's) emits no flag."""
    res = launch(dense_pool(weight_dtype=weight, checkpoint_dtype=stored), engine)
    assert "--quantization" not in argv(res.commands[0])


@pytest.mark.parametrize("engine, method", [("vllm", "fp8_per_tensor"), ("sglang", "fp8")])
def test_online_fp8_from_a_wider_checkpoint(engine, method):
    """Load-time FP8 from a BF16 checkpoint, at the pinned versions: vllm 0.33.0 `--quantization
    fp8_per_tensor` (config/quantization.py _ONLINE_SHORTHANDS); sglang 0.5.23 `--quantization fp8`
    (arg_groups/choices.py: "MOE + linear online quantization"). The note says it happens at load."""
    res = launch(dense_pool(), engine)
    a = argv(res.commands[0])
    assert a[a.index("--quantization") + 1] == method
    assert any("while loading" in n for n in res.notes)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("weight, stored", [("nvfp4", "bf16"), ("mxfp4", "bf16"), ("bf16", "fp8"), ("fp8", "nvfp4")])
def test_no_flag_that_would_not_start(engine, weight, stored):
    """No engine turns a BF16 checkpoint into NVFP4/MXFP4 weights while loading (vLLM's
    'nvfp4_per_token' covers MoE layers only, SGLang's 'mxfp4' is MoE-only), none dequantises, and
    trtllm-serve quantises nothing while loading (serve.py has no such option): refused, one sentence,
    naming the checkpoint dtype that is needed."""
    with pytest.raises(TokenmathError) as e:
        launch(dense_pool(weight_dtype=weight, checkpoint_dtype=stored), engine)
    msg = str(e.value)
    assert one_sentence(msg) and engine in msg and f"checkpoint_dtype = {weight!r}" in msg, msg


def test_trtllm_quantises_nothing_while_loading():
    """tensorrt_llm/commands/serve.py (commit 4c05a74) has no weight-quantization option: FP8 from a BF16
    checkpoint is refused; from an FP8 checkpoint it is loaded as stored."""
    with pytest.raises(TokenmathError, match="trtllm cannot turn the bf16 checkpoint"):
        launch(dense_pool(), "trtllm")
    a = argv(launch(fp8_pool(), "trtllm").commands[0])
    assert a[1] == "nvidia/Llama-3.1-70B-Instruct-FP8" and "--quantization" not in a


# ------------------------------------------------------------------------------------------------
# SGLang
# ------------------------------------------------------------------------------------------------

def test_sglang_decode_pool():
    """sglang 0.5.23 server_args.py and arg_groups/fields: --model-path, --tp-size (every GPU of the
    launch), --pp-size, --attn-dp-size ("the number of data-parallel attention groups inside the TP
    group"; the older `--dp-size N --enable-dp-attention` is deprecated and resolved to it by
    parallel_hook.py), --ep-size, --max-running-requests, --chunked-prefill-size, --kv-cache-dtype
    fp8_e4m3, --disaggregation-mode decode, --port."""
    a = argv(launch_commands(decode_pool(), "sglang")[0])
    assert a == ["python", "-m", "sglang.launch_server", "--model-path", DS3,
                 "--tp-size", "8", "--pp-size", "1", "--attn-dp-size", "8",
                 "--ep-size", "8", "--max-running-requests", "1024", "--chunked-prefill-size", "8192",
                 "--kv-cache-dtype", "fp8_e4m3", "--disaggregation-mode", "decode", "--port", "8000"]


def test_sglang_dense_aggregated():
    """sglang 0.5.23 fields/model.py: --kv-cache-dtype accepts bf16; choices.py: --quantization fp8 is
    "MOE + linear online quantization" (a BF16 checkpoint run in FP8); no DP/EP/disaggregation flag for a
    dense aggregated pool."""
    a = argv(launch_commands(dense_pool(), "sglang")[0])
    assert a == ["python", "-m", "sglang.launch_server", "--model-path", "meta-llama/Llama-3.1-70B-Instruct",
                 "--tp-size", "4", "--pp-size", "2", "--max-running-requests", "256",
                 "--chunked-prefill-size", "8192", "--kv-cache-dtype", "bf16", "--quantization", "fp8",
                 "--port", "8000"]


def test_sglang_attention_tp_inside_dp():
    """sglang 0.5.23 parallel_hook.py: attention DP groups of attention TP = tp_size / attn_dp_size, and
    chunked_prefill_size is divided by attn_dp_size, so TP2 × DP4 is --tp-size 8 --attn-dp-size 4 with the
    replica's totals."""
    res = launch(decode_pool(tp=2, dp=4), "sglang")
    a = argv(res.commands[0])
    assert a[a.index("--tp-size") + 1] == "8" and a[a.index("--attn-dp-size") + 1] == "4"
    assert a[a.index("--ep-size") + 1] == "8"
    assert any("attention TP 2" in n for n in res.notes)


# ------------------------------------------------------------------------------------------------
# TensorRT-LLM
# ------------------------------------------------------------------------------------------------

def _trtllm_yaml(line):
    """The YAML text a `printf '%s\\n' ... > file` line writes, and the file name."""
    toks = argv(line)
    assert toks[:2] == ["printf", "%s\\n"] and toks[-2] == ">"
    return yaml.safe_load("\n".join(toks[2:-2]) + "\n"), toks[-1]


def test_trtllm_decode_pool():
    """TensorRT-LLM tensorrt_llm/commands/serve.py click options (commit 00209af; docs
    commands/trtllm-serve/trtllm-serve.rst, which shows `--tp_size 16 --ep_size 4` with
    `enable_attention_dp: true` in the --config YAML): MODEL, --backend pytorch, --tp_size, --pp_size,
    --ep_size, --max_batch_size, --max_num_tokens, --extra_llm_api_options; there is no KV-dtype flag, so
    kv_cache_config.dtype (llmapi/llm_args.py KvCacheConfig, PyTorch backend only) goes in the YAML, as
    does cache_transceiver_config (features/disagg-serving.md)."""
    lines = launch_commands(decode_pool(), "trtllm")
    assert len(lines) == 2
    cfg, name = _trtllm_yaml(lines[0])
    assert cfg == {"enable_chunked_prefill": True, "enable_attention_dp": True,
                   "kv_cache_config": {"dtype": "fp8"}, "cache_transceiver_config": {"backend": "DEFAULT"}}
    a = argv(lines[1])
    assert a == ["trtllm-serve", DS3, "--backend", "pytorch", "--tp_size", "8", "--pp_size", "1",
                 "--ep_size", "8", "--max_batch_size", "128", "--max_num_tokens", "1024",
                 "--extra_llm_api_options", name, "--port", "8000"]


def test_trtllm_prefill_and_dense():
    """TensorRT-LLM features/disagg-serving.md: context (prefill) servers also set
    `disable_overlap_scheduler: True`; trtllm-serve has no weight-quantization option in serve.py, so an
    FP8 checkpoint is loaded as stored, with a note and no flag."""
    lines = launch_commands(decode_pool(role="prefill"), "trtllm")
    cfg, _ = _trtllm_yaml(lines[0])
    assert cfg["disable_overlap_scheduler"] is True and cfg["cache_transceiver_config"] == {"backend": "DEFAULT"}
    res = launch(fp8_pool(), "trtllm")
    cfg, _ = _trtllm_yaml(res.lines()[0])
    assert cfg == {"enable_chunked_prefill": True}
    a = argv(res.commands[0])
    assert flags(a) == ["--backend", "--tp_size", "--pp_size", "--max_batch_size", "--max_num_tokens",
                        "--extra_llm_api_options", "--port"]
    assert any("loaded as stored (fp8)" in n for n in res.notes)


# ------------------------------------------------------------------------------------------------
# All engines
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_one_command_per_replica(engine):
    """No engine documents a replica-count flag: one command per replica, ports port .. port+n-1."""
    res = launch(fp8_pool(replicas=3, port=9000, host="10.0.0.5"), engine)
    assert isinstance(res, Launch) and len(res.commands) == 3
    for i, c in enumerate(res.commands):
        a = argv(c)
        assert a[a.index("--port") + 1] == str(9000 + i)
        assert a[a.index("--host") + 1] == "10.0.0.5"
    assert any("3 replicas" in n for n in res.notes)


@pytest.mark.parametrize("engine", ENGINES)
def test_shell_unsafe_values_are_quoted(engine):
    """A model path with a space, a semicolon and a quote survives the shell as one argument."""
    model = "/models/my model;echo 'pwned' $HOME"
    line = [l for l in launch_commands(fp8_pool(model=model), engine) if not l.startswith("printf")][0]
    toks = argv(line)
    assert model in toks
    assert toks.count(model) == 1


def test_pool_from_layout():
    """layout.Layout(tp=1, ep=8): a replica is PP × max(TP, EP) = 8 chips with attention DP 8."""
    p = pool_from_layout("decode", "h200-sxm", Layout(tp=1, ep=8, dp=3), max_batch=1024,
                         max_num_batched_tokens=8192, model=DS3, kv_dtype="fp8")
    assert (p.replicas, p.chips_per_replica, p.tp, p.ep, p.pp, p.dp) == (3, 8, 1, 8, 1, 8)
    assert p.chips == 24
    assert launch_commands(p, "vllm")[0].count("vllm serve") == 1


# ------------------------------------------------------------------------------------------------
# Refusals: one sentence naming the value and what is expected
# ------------------------------------------------------------------------------------------------

def one_sentence(msg):
    return "\n" not in msg and ". " not in msg.rstrip(".") and len(msg) < 400


@pytest.mark.parametrize("make, engine, words", [
    (lambda: decode_pool(), "tgi", ["'tgi'", "vllm, sglang, trtllm"]),
    (lambda: decode_pool(kv_dtype="int8"), "vllm", ["'int8'", "bf16, fp8"]),
    (lambda: dense_pool(weight_dtype="int3"), "vllm", ["'int3'", "fp8"]),
    (lambda: dense_pool(weight_dtype="int3"), "trtllm", ["'int3'", "nvfp4"]),
    (lambda: dense_pool(checkpoint_dtype="fp9"), "vllm", ["checkpoint_dtype", "'fp9'", "bf16"]),
    (lambda: decode_pool(model="--trust-remote-code"), "vllm", ["'--trust-remote-code'", "begins with '-'"]),
    (lambda: decode_pool(model=" -x"), "sglang", ["begins with '-'"]),
    (lambda: decode_pool(host="--help"), "trtllm", ["host", "'--help'", "begins with '-'"]),
    (lambda: decode_pool(tp=2, dp=4), "trtllm", ["TP2", "DP4", "TP = 1"]),
    (lambda: decode_pool(ep=4), "vllm", ["EP = 4", "1 or TP × DP = 8"]),
    (lambda: decode_pool(ep=4), "sglang", ["EP = 4", "1 or TP × DP = 8"]),
    (lambda: decode_pool(ep=3), "trtllm", ["EP = 3", "divisor of TP × DP = 8"]),
    (lambda: decode_pool(max_num_batched_tokens=512), "vllm", ["64", "128", "max_num_batched_tokens"]),
    (lambda: decode_pool(dp=1), "vllm", ["chips_per_replica = 8", "= 1", "DP8"]),
    (lambda: decode_pool(role="router"), "vllm", ["'router'", "prefill, decode, both"]),
    (lambda: decode_pool(replicas=0), "vllm", ["replicas = 0", ">= 1"]),
    (lambda: decode_pool(port=70000), "vllm", ["70000", "65535"]),
    (lambda: decode_pool(model=" "), "vllm", ["model"]),
    (lambda: decode_pool(model="a\nb"), "vllm", ["one line"]),
])
def test_bad_input_is_one_sentence(make, engine, words):
    with pytest.raises(TokenmathError) as e:
        launch_commands(make(), engine)
    msg = str(e.value)
    assert one_sentence(msg), msg
    for w in words:
        assert w in msg, (w, msg)


def test_not_a_pool():
    with pytest.raises(TokenmathError, match="expected a tokenmath.export.Pool"):
        launch({"tp": 1}, "vllm")


def test_docs_worked_example_is_current():
    """docs/export.md's worked example (DeepSeek-V3 decode pool on 8 × H200, TP1 EP8 DP8, FP8 KV) shows
    exactly the lines the code emits, so the page cannot drift from the module."""
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "export.md").read_text(encoding="utf-8")
    for engine in ENGINES:
        for line in launch_commands(decode_pool(), engine):
            assert line in page, (engine, line)


# ------------------------------------------------------------------------------------------------
# Every command the module can write, checked against each engine's parser at a pinned version
# ------------------------------------------------------------------------------------------------

FLAG_TABLE = json.loads((Path(__file__).parent / "data" / "engine_flags.json").read_text(encoding="utf-8"))
PREFIX = {"vllm": ("vllm", "serve"), "sglang": ("python", "-m", "sglang.launch_server"), "trtllm": ("trtllm-serve",)}
MENTIONED = re.compile(r"(?<![\w-])(--?[a-z][a-z0-9_-]*)")


def _check_yaml(node, spec, where):
    """Every key of the TensorRT-LLM YAML is an LlmArgs field (and a listed value where the field has a
    fixed set)."""
    for k, v in node.items():
        assert k in spec and k != "_file", f"{where}: YAML key {k!r} is not in llm_args.py"
        if isinstance(spec[k], dict):
            _check_yaml(v, spec[k], f"{where}.{k}")
        elif isinstance(spec[k], list):
            assert v in spec[k], f"{where}.{k} = {v!r}"
        else:
            assert isinstance(v, bool), f"{where}.{k} = {v!r}"


def check_against_parser(engine, res):
    """Every flag of every command line of `res` (a Launch) is in the engine's parser at the pinned
    version, with an accepted value where the parser checks one; every YAML key is an LlmArgs field; every
    flag a note tells the user to add is one the engine has. Returns the flags seen."""
    entry = FLAG_TABLE[engine]
    table = entry["commands"][" ".join(PREFIX[engine])]
    seen = set()
    for line in res.lines():
        toks = argv(line)
        if toks[0] == "printf":
            cfg, _ = _trtllm_yaml(line)
            _check_yaml(cfg, entry["yaml_keys"], "yaml")
            continue
        assert tuple(toks[:len(PREFIX[engine])]) == PREFIX[engine], line
        rest = toks[len(PREFIX[engine]):]
        if engine != "sglang":
            assert not rest[0].startswith("-"), f"the model {rest[0]!r} would be read as an option"
            rest = rest[1:]
        i = 0
        while i < len(rest):
            flag = rest[i]
            assert flag.startswith("-") and flag in table["flags"], f"{engine}: {flag!r} is not in the parser ({line})"
            seen.add(flag)
            takes = i + 1 < len(rest) and not rest[i + 1].startswith("--")
            if takes:
                value = rest[i + 1]
                assert not value.startswith("-"), f"{flag} {value!r}: a value beginning with '-'"
                if flag in table["values"]:
                    assert value in table["values"][flag], f"{engine}: {flag} {value!r} is not an accepted value"
                for key, allowed in table.get("json_values", {}).get(flag, {}).items():
                    assert json.loads(value)[key] in allowed, f"{flag} {key}"
            i += 2 if takes else 1
    known = set().union(*(c["flags"] for c in entry["commands"].values()))
    for note in res.notes:
        for f in MENTIONED.findall(note):
            assert f in known, f"{engine} note names {f!r}, which the engine does not have: {note}"
    return seen


def _layouts(model):
    """Representative pools of one replica: aggregated dense TP1/TP4 and PP2, attention-DP × EP for MoE
    models, disaggregated prefill and decode, and a 16-chip (multi-host) replica."""
    out = [dict(role="both", tp=1, ep=1, pp=1, dp=1), dict(role="both", tp=4, ep=1, pp=2, dp=1),
           dict(role="prefill", tp=8, ep=1, pp=1, dp=1), dict(role="decode", tp=2, ep=1, pp=1, dp=1),
           dict(role="both", tp=8, ep=1, pp=2, dp=1)]
    if model.moe is not None:
        out += [dict(role="decode", tp=1, ep=8, pp=1, dp=8), dict(role="prefill", tp=1, ep=16, pp=1, dp=16),
                dict(role="both", tp=2, ep=8, pp=1, dp=4)]
    return out


@pytest.mark.parametrize("engine", ENGINES)
def test_every_emitted_flag_is_in_the_engines_parser(engine):
    """tests/data/engine_flags.json (vllm 0.33.0 and sglang 0.5.23 read from their PyPI wheels by
    scripts/engine_flags.py; TensorRT-LLM serve.py at 4c05a74 and llm_args.py at 0004396, read by hand):
    every catalog model (its checkpoint or a published one, in each weight dtype the planner uses) ×
    aggregated / disaggregated / multi-host layouts × KV dtype, with host and replicas. Each command's
    flags and checked values are the parser's; refusals (a layout or dtype the engine cannot take) are
    one sentence. At least the core flags are exercised, so the check cannot pass by emitting nothing."""
    from tokenmath.catalog import load_catalog
    from tokenmath.export import checkpoint_for

    cat = load_catalog()
    seen, built, refused = set(), 0, 0
    for m in cat.models.values():
        if not m.hf_repo:
            continue
        for wd in (None, "fp8", "nvfp4", "mxfp4"):
            try:
                repo, stored, _ = checkpoint_for(m, wd, engine)
            except TokenmathError as e:
                assert one_sentence(str(e)), str(e)
                refused += 1
                continue
            for lay in _layouts(m):
                for kv, host, replicas in (("bf16", None, 1), ("fp8", "0.0.0.0", 2)):
                    n = lay["tp"] * lay["dp"] * lay["pp"]
                    try:
                        pool = Pool(system="x", replicas=replicas, chips_per_replica=n, max_batch=256,
                                    max_num_batched_tokens=max(8192, 256), model=repo, kv_dtype=kv,
                                    weight_dtype=wd, checkpoint_dtype=stored, host=host, **lay)
                        res = launch(pool, engine)
                    except TokenmathError as e:
                        assert one_sentence(str(e)), str(e)
                        refused += 1
                        continue
                    built += 1
                    seen |= check_against_parser(engine, res)
    core = {"vllm": {"--tensor-parallel-size", "--data-parallel-size", "--enable-expert-parallel", "--max-num-seqs",
                     "--kv-cache-dtype", "--kv-transfer-config", "--quantization", "--host", "--port"},
            "sglang": {"--model-path", "--tp-size", "--attn-dp-size", "--ep-size", "--disaggregation-mode",
                       "--quantization", "--kv-cache-dtype", "--host", "--port"},
            "trtllm": {"--backend", "--tp_size", "--ep_size", "--extra_llm_api_options", "--host", "--port"}}[engine]
    assert core <= seen, core - seen
    assert built > 100 and refused > 0, (built, refused)


def test_invariant_the_parser_check_catches_a_foreign_flag_and_value():
    """Invariant (the check itself): a command with a flag the parser lacks, a refused value or a flag
    named in a note that does not exist fails it."""
    good = launch(decode_pool(), "vllm")
    check_against_parser("vllm", good)
    for bad in (good.commands[0].replace("--enable-expert-parallel", "--expert-parallel-size 8"),
                good.commands[0].replace("--kv-cache-dtype fp8", "--kv-cache-dtype fp8_e4m3fnuz"),
                good.commands[0].replace("NixlConnector", "NiXLConnector")):
        with pytest.raises(AssertionError):
            check_against_parser("vllm", Launch("vllm", (bad,), (), (), ""))
    with pytest.raises(AssertionError):
        check_against_parser("sglang", Launch("sglang", (), (), ("add --dp-attention-size 8",), ""))


def test_engine_flag_table_is_pinned_and_cited():
    """The table names its version and source for each engine, and holds the parsers' own accepted values
    (vllm CacheDType / QuantizationMethods, sglang --kv-cache-dtype choices, TensorRT-LLM backends)."""
    for engine in ENGINES:
        e = FLAG_TABLE[engine]
        assert e["version"] and e["source"] and e["commands"]
    assert FLAG_TABLE["vllm"]["version"] == "0.33.0" and FLAG_TABLE["sglang"]["version"] == "0.5.23"
    v = FLAG_TABLE["vllm"]["commands"]["vllm serve"]["values"]
    assert {"auto", "fp8"} <= set(v["--kv-cache-dtype"]) and "fp8_per_tensor" in v["--quantization"]
    s = FLAG_TABLE["sglang"]["commands"]["python -m sglang.launch_server"]["values"]
    assert {"bf16", "fp8_e4m3"} <= set(s["--kv-cache-dtype"]) and s["--disaggregation-mode"] == ["null", "prefill", "decode"]
    assert "4c05a74891e4df8066f08ed4ce14b0972abe4e25" in FLAG_TABLE["trtllm"]["source"]


# ------------------------------------------------------------------------------------------------
# Which checkpoint a pool loads
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, weight, repo", [
    ("qwen3-32b", None, "Qwen/Qwen3-32B"), ("qwen3-32b", "fp8", "Qwen/Qwen3-32B-FP8"),
    ("deepseek-v3", None, "deepseek-ai/DeepSeek-V3"), ("deepseek-v3", "fp8", "deepseek-ai/DeepSeek-V3"),
    ("deepseek-r1", "nvfp4", "nvidia/DeepSeek-R1-FP4"), ("gpt-oss-120b", None, "openai/gpt-oss-120b"),
    ("llama-3.1-70b", "fp8", "nvidia/Llama-3.1-70B-Instruct-FP8"),
    ("llama-3.1-405b", "nvfp4", "nvidia/Llama-3.1-405B-Instruct-FP4"),
])
def test_checkpoint_for_catalog_models(name, weight, repo):
    """models.toml: each model's hf_repo and its published checkpoints ([checkpoints.*], each sourced
    to its Hugging Face model page): DeepSeek-V3 ships in FP8, gpt-oss in MXFP4, so their own repo is the
    FP8 / MXFP4 checkpoint; an FP8 or NVFP4 plan of a BF16 model loads the published export."""
    from tokenmath.catalog import load_catalog
    from tokenmath.export import checkpoint_for

    got, stored, note = checkpoint_for(load_catalog().model(name), weight, "vllm")
    assert got == repo
    assert stored == (weight or load_catalog().model(name).weight_dtype)
    assert (note is None) == (got == load_catalog().model(name).hf_repo)


def test_checkpoint_for_refuses_naming_what_exists():
    """A BF16 model planned at NVFP4 with no NVFP4 checkpoint: one sentence naming the checkpoints that
    do exist (the BF16 repo and the FP8 export) and --hf-model; FP8 from BF16 on vLLM/SGLang is the
    model's own repo, quantised while loading; on TensorRT-LLM it is the published FP8 export."""
    from tokenmath.catalog import load_catalog
    from tokenmath.export import checkpoint_for

    m = load_catalog().model("llama-3.1-70b")
    with pytest.raises(TokenmathError) as e:
        checkpoint_for(m, "nvfp4", "vllm")
    msg = str(e.value)
    assert one_sentence(msg) and "meta-llama/Llama-3.1-70B-Instruct (bf16)" in msg
    assert "nvidia/Llama-3.1-70B-Instruct-FP8 (fp8)" in msg and "--hf-model" in msg
    bare = replace(m, checkpoints=())
    assert checkpoint_for(bare, "fp8", "vllm") == ("meta-llama/Llama-3.1-70B-Instruct", "bf16", None)
    with pytest.raises(TokenmathError, match="trtllm cannot serve llama-3.1-70b with fp8"):
        checkpoint_for(bare, "fp8", "trtllm")
    with pytest.raises(TokenmathError, match="no Hugging Face repo id"):
        checkpoint_for(load_catalog().model("lecture-moe-700b"), None, "vllm")


@pytest.mark.parametrize("bad", ["--trust-remote-code", "-rf", " --x", "", "a\nb"])
def test_hf_model_that_would_become_an_option_is_refused(bad):
    """A --hf-model beginning with '-' would be parsed by the engine as an option
    (`vllm serve --trust-remote-code ...`): refused before anything is written."""
    from tokenmath.catalog import load_catalog
    from tokenmath.export import checkpoint_for

    with pytest.raises(TokenmathError) as e:
        checkpoint_for(load_catalog().model("qwen3-32b"), None, "vllm", hf_model=bad)
    assert one_sentence(str(e.value))


def test_hf_model_is_served_as_given():
    """--hf-model names the checkpoint: loaded as stored (no quantisation flag), with a note when the
    plan's weight dtype differs from the catalog model's."""
    from tokenmath.catalog import load_catalog
    from tokenmath.export import checkpoint_for

    repo, stored, note = checkpoint_for(load_catalog().model("qwen3-32b"), "nvfp4", "vllm", hf_model="me/q-nvfp4")
    assert (repo, stored) == ("me/q-nvfp4", None) and "nvfp4" in note


def _option(*pools):
    return SimpleNamespace(pools=[SimpleNamespace(**p) for p in pools])


def test_fleet_launches_carry_checkpoint_and_notes():
    """A disaggregated fleet of Qwen3-32B at FP8 (prefill on one pool, decode on another): both load
    Qwen/Qwen3-32B-FP8 with no --quantization flag, the decode pool on ports 9000+, and every note the
    builder wrote (the checkpoint, the router, the replicas) travels with its pool."""
    from tokenmath.catalog import load_catalog
    from tokenmath.export import fleet_commands, fleet_launches

    opt = _option(dict(role="prefill", system="h100-sxm", replicas=2, tp=2, ep=1, pp=1, max_batch=4, kv_dtype="bf16",
                       weight_dtype="fp8"),
                  dict(role="decode", system="h100-sxm", replicas=3, tp=1, ep=1, pp=1, max_batch=128, kv_dtype="fp8",
                       weight_dtype="fp8"))
    m = load_catalog().model("qwen3-32b")
    launches = fleet_launches(opt, "vllm", model=m)
    assert [pl.checkpoint for pl in launches] == ["Qwen/Qwen3-32B-FP8"] * 2
    assert all(pl.quantization is None for pl in launches)
    first = argv(launches[1].lines[0])
    assert first[2] == "Qwen/Qwen3-32B-FP8" and first[first.index("--port") + 1] == "9000"
    assert any("published fp8 checkpoint" in n for n in launches[0].notes)
    assert any("proxy routes each request" in n for n in launches[0].notes)
    assert any("3 replicas" in n for n in launches[1].notes)
    assert fleet_commands(opt, "vllm", model=m)[0] == "# prefill pool: 2 × h100-sxm, Qwen/Qwen3-32B-FP8"


# ------------------------------------------------------------------------------------------------
# `tokenmath fleet --export`: commands, checkpoints and notes in text and JSON
# ------------------------------------------------------------------------------------------------

FLEET = ["fleet", "--model", "llama-3.1-70b", "--request-rate", "20", "--input-tokens", "1000", "--output-tokens",
         "500", "--ttft-p99-s", "1", "--tpot-p99-s", "0.04"]


def _run(*args):
    from typer.testing import CliRunner

    from tokenmath.cli import app

    return CliRunner().invoke(app, [*FLEET, *args])


def test_fleet_export_json_names_the_checkpoint_and_carries_notes():
    """Llama-3.1-70B on H100 in FP8 (`--weight-dtypes fp8`: left to choose, an FP8 TP2 decode pool and a
    BF16 TP4 PP2 one tie at 13 chips, $16.90/h, so the pick is a tie-break): the JSON's `export` lines and
    `export_pools` records load nvidia/Llama-3.1-70B-Instruct-FP8 (models.toml
    [checkpoints."llama-3.1-70b-fp8"]), never the catalog name, with no --quantization flag, and each
    record carries its notes; text shows them too."""
    r = _run("--systems", "h100-sxm", "--weight-dtypes", "fp8", "--export", "vllm", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    pools = d["export_pools"]
    assert pools and all(p["checkpoint"] == "nvidia/Llama-3.1-70B-Instruct-FP8" for p in pools)
    assert all(p["quantization"] is None and p["notes"] for p in pools)
    cmds = [c for p in pools for c in p["commands"]]
    assert cmds and all(argv(c)[:3] == ["vllm", "serve", "nvidia/Llama-3.1-70B-Instruct-FP8"] for c in cmds)
    assert not any("llama-3.1-70b" in c.split() or "--quantization" in c for c in d["export"])
    for p in pools:
        check_against_parser("vllm", Launch("vllm", tuple(p["commands"]), (), tuple(p["notes"]), ""))
    t = _run("--systems", "h100-sxm", "--weight-dtypes", "fp8", "--export", "sglang")
    assert t.exit_code == 0, t.output
    assert "--model-path nvidia/Llama-3.1-70B-Instruct-FP8" in t.output and "note: weights:" in t.output


def test_fleet_export_refuses_a_checkpoint_that_does_not_exist():
    """Asked for NVFP4 on B200 (--weight-dtypes nvfp4), no NVFP4 checkpoint of Llama-3.1-70B-Instruct is in
    the catalog and no engine quantises to NVFP4 while loading, so the fleet is shown and the export is
    refused (exit 2) in one sentence naming the checkpoints that exist, instead of the old
    `--quantization modelopt_fp4` on a BF16 checkpoint, which does not start."""
    r = _run("--systems", "b200", "--weight-dtypes", "nvfp4", "--export", "vllm")
    assert r.exit_code == 2, r.output
    assert "best:" in r.output and "vllm serve" not in r.output and "Traceback" not in r.output
    assert "nvidia/Llama-3.1-70B-Instruct-FP8 (fp8)" in r.output and "--hf-model" in r.output


def test_fleet_export_plans_only_what_the_engine_can_launch():
    """Without --weight-dtypes, `fleet --export vllm` on B200 tries only the dtypes vLLM can load for
    Llama-3.1-70B (the BF16 repo; FP8 via nvidia/Llama-3.1-70B-Instruct-FP8 or load-time FP8), not
    NVFP4 (no checkpoint): the answer is a fleet whose commands start, and the output says why."""
    r = _run("--systems", "b200", "--export", "vllm", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert "nvfp4" not in d["weight_dtypes"]["tried"]["b200"] and d["weight_dtypes"]["tried"]["b200"]
    pools = d["export_pools"]
    assert pools and all(p["weight_dtype"] in ("bf16", "fp8") for p in pools)
    for p in pools:
        check_against_parser("vllm", Launch("vllm", tuple(p["commands"]), (), tuple(p["notes"]), ""))
    t = _run("--systems", "b200", "--export", "vllm")
    assert "the deployable ones --export can launch" in t.output


def test_fleet_export_plans_only_layouts_the_engine_can_express():
    """TensorRT-LLM's enable_attention_dp runs attention data-parallel over every rank, so a replica of
    TP2 × attention-DP4 (EP8) has no trtllm-serve flags (TensorRT-LLM llm_args: attention DP over
    tp_size). Left free, Qwen3-235B-A22B on H100 at 20 requests/s of 1,000 in / 1,000 out picks TP2 EP8
    PP2; with `--export trtllm` the fleet searches only layouts the engine can express, so it answers
    with a fleet whose launch is written (exit 0), every pool with TP 1 or TP = its stage."""
    from tokenmath.export import exportable_layouts, layout_expressible
    from tokenmath.layout import Layout

    assert not layout_expressible(Layout(tp=2, ep=8, pp=2), "trtllm")
    assert layout_expressible(Layout(tp=2, ep=8, pp=2), "vllm") and layout_expressible(Layout(tp=1, ep=8), "trtllm")
    import tokenmath as tm

    cat = tm.load_catalog()
    m, s = cat.model("qwen3-235b-a22b"), cat.system("h100-sxm")
    lays = exportable_layouts(m, [s], "trtllm", wide_ep=True)["h100-sxm"]
    assert lays and all(lay.tp == 1 or lay.tp == max(lay.tp, lay.ep) for lay in lays)
    args = ["fleet", "--model", "qwen3-235b-a22b", "--systems", "h100-sxm", "--request-rate", "20",
            "--input-tokens", "1000", "--output-tokens", "1000", "--export", "trtllm", "--json"]
    from typer.testing import CliRunner

    from tokenmath.cli import app

    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["export_layouts"] == {"h100-sxm": len(lays)}
    assert d["export_pools"] and all(ln.startswith(("trtllm-serve", "printf")) for p in d["export_pools"]
                                      for ln in p["commands"])


@pytest.mark.parametrize("bad", ["--trust-remote-code", "-x"])
def test_fleet_hf_model_beginning_with_a_dash_is_refused(bad):
    """`--hf-model=--trust-remote-code` would put an option where the engine expects MODEL: refused with
    exit 2 before the fleet is sized."""
    r = _run("--systems", "h100-sxm", "--export", "vllm", f"--hf-model={bad}")
    assert r.exit_code == 2, r.output
    assert "begins with '-'" in r.output and "best:" not in r.output
