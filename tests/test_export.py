"""export.py (issue 14, "Export"): engine launch commands for a planned pool.

Each test's docstring names the page (and version or commit) the flag names were read from; the
full list is export.SOURCES. A command must contain exactly the documented flags with the right
values, parse back with shlex, and bad input must be refused with one sentence."""

import json
import shlex

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
    """A dense 70B aggregated pool: TP4 × PP2 on 8 chips, bf16 KV, weights quantized to FP8."""
    args = dict(role="both", system="h100-sxm", replicas=1, chips_per_replica=8, tp=4, ep=1, pp=2, dp=1,
                max_batch=256, max_num_batched_tokens=8192, model="meta-llama/Llama-3.1-70B-Instruct",
                kv_dtype="bf16", weight_dtype="fp8")
    args.update(kw)
    return Pool(**args)


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
    """vLLM engine args (stable names since the v0.5 engine-args page): --tensor-parallel-size,
    --pipeline-parallel-size, --max-num-seqs, --max-num-batched-tokens, --kv-cache-dtype auto (the model's
    dtype, vllm/config/cache.py CacheDType), --quantization fp8 (QuantizationMethods); no DP, EP or
    KV-transfer flag for an aggregated dense replica."""
    a = argv(launch_commands(dense_pool(), "vllm")[0])
    assert a == ["vllm", "serve", "meta-llama/Llama-3.1-70B-Instruct",
                 "--tensor-parallel-size", "4", "--pipeline-parallel-size", "2",
                 "--max-num-seqs", "256", "--max-num-batched-tokens", "8192",
                 "--kv-cache-dtype", "auto", "--quantization", "fp8", "--port", "8000"]


@pytest.mark.parametrize("weight, method", [("nvfp4", "modelopt_fp4"), ("mxfp4", "mxfp4"), (None, None),
                                            ("bf16", None)])
def test_vllm_weight_dtypes(weight, method):
    """vLLM QuantizationMethods: 'fp8', 'modelopt_fp4' (ModelOptNvFp4Config), 'mxfp4' (v0.18.1 API page,
    Mxfp4Config.get_name); None keeps the checkpoint's format (no flag)."""
    a = argv(launch_commands(dense_pool(weight_dtype=weight), "vllm")[0])
    if method is None:
        assert "--quantization" not in a
    else:
        assert a[a.index("--quantization") + 1] == method


# ------------------------------------------------------------------------------------------------
# SGLang
# ------------------------------------------------------------------------------------------------

def test_sglang_decode_pool():
    """SGLang docs advanced_features/server_arguments (docs.sglang.io; repo docs at commit 004813e):
    --model-path, --tp-size, --pp-size, --dp-size, --enable-dp-attention ("the dp size should be equal to
    the tp size"), --ep-size, --max-running-requests, --chunked-prefill-size, --kv-cache-dtype
    fp8_e4m3, --disaggregation-mode decode, --port."""
    a = argv(launch_commands(decode_pool(), "sglang")[0])
    assert a == ["python", "-m", "sglang.launch_server", "--model-path", DS3,
                 "--tp-size", "8", "--pp-size", "1", "--dp-size", "8", "--enable-dp-attention",
                 "--ep-size", "8", "--max-running-requests", "1024", "--chunked-prefill-size", "8192",
                 "--kv-cache-dtype", "fp8_e4m3", "--disaggregation-mode", "decode", "--port", "8000"]


def test_sglang_dense_aggregated():
    """SGLang server_arguments page: --kv-cache-dtype accepts bf16 ("bf16 or bfloat16 for BF16 KV cache"),
    --quantization fp8 ("on a fp16 checkpoint"); no DP/EP/disaggregation flag for a dense aggregated pool."""
    a = argv(launch_commands(dense_pool(), "sglang")[0])
    assert a == ["python", "-m", "sglang.launch_server", "--model-path", "meta-llama/Llama-3.1-70B-Instruct",
                 "--tp-size", "4", "--pp-size", "2", "--max-running-requests", "256",
                 "--chunked-prefill-size", "8192", "--kv-cache-dtype", "bf16", "--quantization", "fp8",
                 "--port", "8000"]


def test_sglang_attention_tp_inside_dp():
    """SGLang python/sglang/srt/server_args.py: under --enable-dp-attention it asserts
    tp_size % dp_size == 0 ("1 < dp-size <= tp-size"), so TP2 × DP4 is --tp-size 8 --dp-size 4 (the
    server-arguments page's "dp size should be equal to the tp size" is the common case, said in a note)."""
    res = launch(decode_pool(tp=2, dp=4), "sglang")
    a = argv(res.commands[0])
    assert a[a.index("--tp-size") + 1] == "8" and a[a.index("--dp-size") + 1] == "4"
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
    FP8 weight dtype adds no flag, only a note."""
    lines = launch_commands(decode_pool(role="prefill"), "trtllm")
    cfg, _ = _trtllm_yaml(lines[0])
    assert cfg["disable_overlap_scheduler"] is True and cfg["cache_transceiver_config"] == {"backend": "DEFAULT"}
    res = launch(dense_pool(), "trtllm")
    cfg, _ = _trtllm_yaml(res.lines()[0])
    assert cfg == {"enable_chunked_prefill": True}
    a = argv(res.commands[0])
    assert flags(a) == ["--backend", "--tp_size", "--pp_size", "--max_batch_size", "--max_num_tokens",
                        "--extra_llm_api_options", "--port"]
    assert any("no weight-quantization flag" in n for n in res.notes)


# ------------------------------------------------------------------------------------------------
# All engines
# ------------------------------------------------------------------------------------------------

DOCUMENTED = {
    # every flag name the module may emit, as read in SOURCES (nothing else may appear)
    "vllm": {"--tensor-parallel-size", "--pipeline-parallel-size", "--data-parallel-size",
             "--enable-expert-parallel", "--max-num-seqs", "--max-num-batched-tokens", "--kv-cache-dtype",
             "--quantization", "--kv-transfer-config", "--port", "--host"},
    "sglang": {"--model-path", "--tp-size", "--pp-size", "--dp-size", "--enable-dp-attention", "--ep-size",
               "--max-running-requests", "--chunked-prefill-size", "--kv-cache-dtype", "--quantization",
               "--disaggregation-mode", "--port", "--host"},
    "trtllm": {"--backend", "--tp_size", "--pp_size", "--ep_size", "--max_batch_size", "--max_num_tokens",
               "--extra_llm_api_options", "--port", "--host"},
}


@pytest.mark.parametrize("engine", ENGINES)
def test_only_documented_flags(engine):
    """Over prefill, decode and aggregated pools, with and without DP/EP/quantization/host, every flag
    emitted is one read in the engine's documentation (SOURCES) and each line parses back with shlex."""
    seen = set()
    pools = [decode_pool(), decode_pool(role="prefill", host="0.0.0.0"), decode_pool(role="both", kv_dtype="bf16"),
             dense_pool(), dense_pool(weight_dtype="nvfp4", replicas=3)]
    for p in pools:
        for line in launch_commands(p, engine):
            toks = argv(line)
            assert shlex.join(toks) == line or line.startswith("printf")
            if toks[0] != "printf":
                seen |= set(flags(toks))
    assert seen <= DOCUMENTED[engine], seen - DOCUMENTED[engine]
    assert engine in SOURCES and SOURCES[engine]
    assert all(len(row) == len(ENGINES) for row in FLAGS.values())


@pytest.mark.parametrize("engine", ENGINES)
def test_one_command_per_replica(engine):
    """No engine documents a replica-count flag: one command per replica, ports port .. port+n-1."""
    res = launch(dense_pool(replicas=3, port=9000, host="10.0.0.5"), engine)
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
    line = [l for l in launch_commands(dense_pool(model=model), engine) if not l.startswith("printf")][0]
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
    return "\n" not in msg and ". " not in msg.rstrip(".") and len(msg) < 300


@pytest.mark.parametrize("make, engine, words", [
    (lambda: decode_pool(), "tgi", ["'tgi'", "vllm, sglang, trtllm"]),
    (lambda: decode_pool(kv_dtype="int8"), "vllm", ["'int8'", "bf16, fp8"]),
    (lambda: dense_pool(weight_dtype="int3"), "vllm", ["'int3'", "fp8"]),
    (lambda: dense_pool(weight_dtype="int3"), "trtllm", ["'int3'", "nvfp4"]),
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
