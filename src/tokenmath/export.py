"""Launch commands for a planned deployment: a pool description -> the command line that starts each
replica on vLLM (`vllm serve`), SGLang (`python -m sglang.launch_server`) or TensorRT-LLM
(`trtllm-serve`), with each engine's own flag names (issue 14, "Export").

    launch_commands(pool, engine) -> list[str]     # shell lines, shlex-parseable, values quoted
    launch(pool, engine) -> Launch                 # the same, plus config files and notes
    pool_from_layout(...) -> Pool                  # from a layout.Layout (tokenmath's TP×EP×PP×DP)

    checkpoint_for(model, weight_dtype, engine) -> (checkpoint, stored dtype, note)   # which weights load
    fleet_launches(option, engine, model=...) -> list[PoolLaunch]                  # every pool of a fleet

Pure functions: nothing is run, nothing is read from disk or the network.

A command loads a real checkpoint: the catalog model's Hugging Face repo (Model.hf_repo), or its
published checkpoint in the pool's weight dtype (Model.checkpoints), read as stored; a quantisation flag
appears only where the engine quantises a wider checkpoint while loading (ONLINE_QUANTIZATION), and
anything else is refused with the checkpoints that exist. Every flag, value and YAML key the module
can write is checked against each engine's parser at the pinned VERSIONS (tests/data/engine_flags.json).

What a Pool means (one replica = one engine instance = one command):

    chips_per_replica = TP × DP × PP     DP = data-parallel attention ranks inside the replica
    EP                                   spread over the TP × DP ranks of a stage (EP = 1 or
                                         EP = TP × DP for vLLM and SGLang; EP divides TP × DP for
                                         TensorRT-LLM)
    max_batch, max_num_batched_tokens    for the whole replica; engines that count per DP rank
                                         get ceil(value / DP) (see FLAGS)

Every flag below was read in the engine's own documentation or argument definitions (versions and
pages in SOURCES; mapping in FLAGS). A setting with no documented flag is left out and said in the
notes, never invented: vLLM has no EP-size flag (EP = TP × DP once --enable-expert-parallel is set),
trtllm-serve has no KV-dtype, attention-DP or weight-quantization flag (KV dtype and attention DP go
in its --extra_llm_api_options YAML; quantized weights come from the checkpoint), and no engine has
a "replicas" flag (one command per replica; a router or load balancer goes in front).
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass, replace

from .errors import TokenmathError
from .units import DTYPE_BYTES

ENGINES = ("vllm", "sglang", "trtllm")
ROLES = ("prefill", "decode", "both")
KV_DTYPES = ("bf16", "fp8")

# The engine versions every emitted flag was checked against (tests/data/engine_flags.json holds each
# parser's accepted flags and values, read from these sources; tests/test_export.py checks every flag,
# value and YAML key the module can emit against it).
VERSIONS = {
    "vllm": "vllm 0.33.0 (PyPI wheel vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl)",
    "sglang": "sglang 0.5.23 (PyPI wheel sglang-0.5.23-cp311-cp311-manylinux_2_34_x86_64.whl)",
    "trtllm": ("NVIDIA/TensorRT-LLM tensorrt_llm/commands/serve.py at commit 4c05a74891e4 and "
               "tensorrt_llm/llmapi/llm_args.py at commit 000439672005 (no TensorRT-LLM wheel is on PyPI)"),
}

# Where each flag name was read (and the pinned source files that the flag table was built from).
SOURCES = {
    "vllm": (
        "vllm 0.33.0: vllm/engine/arg_utils.py EngineArgs.add_cli_args (--tensor-parallel-size, "
        "--pipeline-parallel-size, --data-parallel-size, --enable-expert-parallel, --max-num-seqs, "
        "--max-num-batched-tokens, --kv-cache-dtype, --quantization, --kv-transfer-config, "
        "--data-parallel-size-local, --data-parallel-address, --data-parallel-rpc-port); "
        "vllm/entrypoints/common/cli_args.py (FrontendArgs --host, --port; make_arg_parser --headless); "
        "vllm/config/cache.py CacheDType ('auto' = the model's dtype, 'fp8'); "
        "vllm/model_executor/layers/quantization/__init__.py QuantizationMethods and "
        "vllm/config/quantization.py _ONLINE_SHORTHANDS ('fp8_per_tensor' quantises a wider checkpoint to "
        "FP8 while loading; fp8.py Fp8Config refuses online quantisation under 'fp8' since 'fp8' now means "
        "an FP8-serialized checkpoint); vllm/config/model.py _verify_quantization (the checkpoint's own "
        "quantization config is detected when --quantization is not given); vllm/config/kv_transfer.py "
        "(kv_role 'kv_both') and kv_connector/factory.py ('NixlConnector'). "
        "Docs: serving/data_parallel_deployment ('--max-num-seqs applies per DP rank'), "
        "serving/expert_parallel_deployment (EP_SIZE = TP_SIZE x DP_SIZE; NixlConnector kv_both on "
        "prefill and decode), vllm/config/scheduler.py (max_num_batched_tokens >= max_num_seqs)"
    ),
    "sglang": (
        "sglang 0.5.23: python/sglang/srt/server_args.py add_cli_args and the fields it registers from "
        "sglang/srt/arg_groups/fields/*.py: --model-path, --tp-size (every GPU of the launch), --pp-size, "
        "--attn-dp-size (attention data-parallel groups inside the TP group; replaces the deprecated "
        "'--dp-size N --enable-dp-attention', parallel_hook.py), --ep-size, --max-running-requests, "
        "--chunked-prefill-size (divided by attn_dp_size, parallel_hook.py), --kv-cache-dtype "
        "{auto, fp8_e5m2, fp8_e4m3, mxfp8, bf16, bfloat16, ...}, --quantization (arg_groups/choices.py "
        "QUANTIZATION_CHOICES; 'fp8' is 'MOE + linear online quantization'), --disaggregation-mode "
        "{null, prefill, decode}, --disaggregation-transfer-backend, --nnodes, --node-rank, "
        "--dist-init-addr, --base-gpu-id, --host, --port"
    ),
    "trtllm": (
        "TensorRT-LLM tensorrt_llm/commands/serve.py (commit 4c05a74) click options of `trtllm-serve serve`: "
        "MODEL, --host, --port, --backend {pytorch, tensorrt, _autodeploy}, --tp_size, --pp_size, --ep_size, "
        "--max_batch_size, --max_num_tokens, --extra_llm_api_options (YAML of LlmArgs), and of "
        "`trtllm-serve disaggregated`: -c/--config_file; tensorrt_llm/llmapi/llm_args.py (commit 0004396): "
        "BaseLlmArgs enable_attention_dp, enable_chunked_prefill, kv_cache_config, cache_transceiver_config; "
        "KvCacheConfig.dtype {auto, fp8, fp8_ds_mla, nvfp4, torch dtypes}; CacheTransceiverConfig.backend "
        "{DEFAULT, UCX, NIXL, MOONCAKE, MPI}; TorchLlmArgs disable_overlap_scheduler; no weight-quantization "
        "option (quantized weights come from the checkpoint's own config). Docs: features/disagg-serving.md "
        "(disable_overlap_scheduler on context servers, then `trtllm-serve disaggregated -c <config>`)"
    ),
}

# tokenmath field -> each engine's flag (docs/export.md renders this table).
FLAGS = {
    "model": ("positional MODEL", "--model-path", "positional MODEL"),
    "tp": ("--tensor-parallel-size TP", "--tp-size TP×DP", "--tp_size TP×DP"),
    "pp": ("--pipeline-parallel-size", "--pp-size", "--pp_size"),
    "dp": ("--data-parallel-size", "--attn-dp-size DP", "YAML enable_attention_dp: true (needs TP = 1)"),
    "ep": ("--enable-expert-parallel (EP = TP×DP; no size flag)", "--ep-size", "--ep_size"),
    "max_batch": ("--max-num-seqs ceil(B/DP) (per DP engine)", "--max-running-requests B",
                  "--max_batch_size ceil(B/DP) (per rank)"),
    "max_num_batched_tokens": ("--max-num-batched-tokens ceil(T/DP)", "--chunked-prefill-size T",
                               "--max_num_tokens ceil(T/DP) + YAML enable_chunked_prefill: true"),
    "kv_dtype": ("--kv-cache-dtype auto|fp8", "--kv-cache-dtype bf16|fp8_e4m3",
                 "YAML kv_cache_config.dtype: fp8 (bf16: left at auto)"),
    "weight_dtype": ("the checkpoint's own format; --quantization fp8_per_tensor only to quantise a wider "
                     "checkpoint to FP8 while loading",
                     "the checkpoint's own format; --quantization fp8 only to quantise a wider checkpoint "
                     "to FP8 while loading",
                     "the checkpoint's own format (no flag; no quantisation while loading)"),
    "port": ("--port", "--port", "--port"),
    "host": ("--host", "--host", "--host"),
    "role": ("--kv-transfer-config NixlConnector kv_both", "--disaggregation-mode prefill|decode",
             "YAML cache_transceiver_config (+ disable_overlap_scheduler on prefill)"),
}

# Quantisation while loading, from a wider (bf16 / fp16 / fp32) checkpoint: the engine's --quantization
# value for each target weight dtype (pinned versions above). Anything else needs a checkpoint that is
# already stored in the target dtype: no engine turns BF16 weights into NVFP4 or MXFP4 while loading
# (vLLM's 'nvfp4_per_token' covers MoE layers only; SGLang's 'mxfp4' is MoE-only).
ONLINE_QUANTIZATION = {
    "vllm": {"fp8": "fp8_per_tensor"},
    "sglang": {"fp8": "fp8"},
    "trtllm": {},
}
_UNQUANTIZED = ("bf16", "bfloat16")


def check_model_ref(value, what: str = "model") -> str:
    """A Hugging Face repo id or a local path that can stand as an engine's MODEL argument: one line of
    text that does not begin with '-' (which an engine's parser would read as an option)."""
    if not isinstance(value, str) or not value.strip():
        raise TokenmathError(f"{what} must be a Hugging Face repo id or a path, not empty")
    if any(c in value for c in "\x00\n\r"):
        raise TokenmathError(f"{what} {value!r} must be one line of text")
    if value.lstrip().startswith("-"):
        raise TokenmathError(f"{what} = {value!r} begins with '-', which the engine would read as an option; "
                             "expected a Hugging Face repo id (owner/name) or a path (./name for a local folder)")
    return value


@dataclass(frozen=True)
class Pool:
    """One pool of identical replicas (issue 14's `pools[]` entry plus what a launch needs).

    chips_per_replica = tp × dp × pp; dp counts data-parallel attention ranks inside one replica,
    `replicas` the independent copies. max_batch (sequences) and max_num_batched_tokens (the
    chunked-prefill token budget of one step) are for the whole replica.

    `model` is the checkpoint the engine loads (a Hugging Face repo id or a path). weight_dtype is the
    dtype the pool runs its linear layers in (None or "bf16": the checkpoint's own); checkpoint_dtype the
    dtype `model` is stored in (None: the same as weight_dtype, i.e. a checkpoint already quantised that
    way, which the engine reads from its config with no flag). A wider checkpoint_dtype than weight_dtype
    asks for quantisation while loading, which only ONLINE_QUANTIZATION allows."""

    role: str
    system: str
    replicas: int
    chips_per_replica: int
    tp: int
    ep: int
    pp: int
    dp: int
    max_batch: int
    max_num_batched_tokens: int
    model: str
    kv_dtype: str = "bf16"
    weight_dtype: str | None = None
    port: int = 8000
    host: str | None = None
    checkpoint_dtype: str | None = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise TokenmathError(f"pool role {self.role!r} is not one of {', '.join(ROLES)}")
        for name in ("replicas", "chips_per_replica", "tp", "ep", "pp", "dp", "max_batch",
                     "max_num_batched_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TokenmathError(f"pool {name} = {v!r} must be a whole number >= 1")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise TokenmathError(f"pool port = {self.port!r} must be a whole number from 1 to 65535")
        if self.port + self.replicas - 1 > 65535:
            raise TokenmathError(f"pool port {self.port} + {self.replicas} replicas runs past 65535; "
                                 "choose a lower port")
        if self.kv_dtype not in KV_DTYPES:
            raise TokenmathError(f"kv_dtype {self.kv_dtype!r} is not one of {', '.join(KV_DTYPES)}")
        check_model_ref(self.model, "pool model")
        for name in ("system", "host"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or any(c in v for c in "\x00\n\r")):
                raise TokenmathError(f"pool {name} {v!r} must be one line of text")
            if isinstance(v, str) and v.startswith("-"):
                raise TokenmathError(f"pool {name} = {v!r} begins with '-', which the engine would read as an option")
        for name in ("weight_dtype", "checkpoint_dtype"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or v.lower() not in DTYPE_BYTES):
                raise TokenmathError(f"{name} {v!r} is not a dtype tokenmath knows; expected None or one of "
                                     f"{', '.join(DTYPE_BYTES)}")
        want = self.tp * self.dp * self.pp
        if self.chips_per_replica != want:
            raise TokenmathError(
                f"chips_per_replica = {self.chips_per_replica} but TP({self.tp}) × DP({self.dp}) × "
                f"PP({self.pp}) = {want}; DP counts the data-parallel attention ranks inside one replica "
                f"(EP{self.ep} over TP{self.tp} needs DP{max(1, self.ep // self.tp)})")

    @property
    def chips(self) -> int:
        return self.replicas * self.chips_per_replica


@dataclass(frozen=True)
class Launch:
    """What an engine needs to start a pool: `files` (name, text) to write first, `commands` (one
    per replica), `notes` (what has no flag and what else to run), `source` (where the flags come
    from)."""

    engine: str
    commands: tuple[str, ...]
    files: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    source: str

    def lines(self) -> list[str]:
        """Shell lines in order: one `printf ... > file` per config file, then the commands."""
        out = []
        for name, text in self.files:
            parts = text.rstrip("\n").split("\n")
            out.append("printf '%s\\n' " + " ".join(shlex.quote(p) for p in parts) + " > " + shlex.quote(name))
        return out + list(self.commands)


def pool_from_layout(role: str, system: str, layout, *, replicas: int | None = None, max_batch: int,
                     max_num_batched_tokens: int, model: str, kv_dtype: str = "bf16",
                     weight_dtype: str | None = None, port: int = 8000, host: str | None = None) -> Pool:
    """A Pool from a `layout.Layout`: a replica is PP × max(TP, EP) chips with attention DP =
    max(TP, EP) / TP inside it; Layout.dp (outer data parallel) is the replica count unless given."""
    stage = max(layout.tp, layout.ep)
    if stage % layout.tp:
        raise TokenmathError(f"EP({layout.ep}) is not a multiple of TP({layout.tp}); an engine "
                             "replica needs EP = TP × DP")
    return Pool(role=role, system=system, replicas=layout.dp if replicas is None else replicas,
                chips_per_replica=layout.pp * stage, tp=layout.tp, ep=layout.ep, pp=layout.pp,
                dp=stage // layout.tp, max_batch=max_batch, max_num_batched_tokens=max_num_batched_tokens,
                model=model, kv_dtype=kv_dtype, weight_dtype=weight_dtype, port=port, host=host)


def _quantization(pool: Pool, engine: str) -> tuple[str | None, str | None]:
    """(the --quantization value or None, a note or None) for the pool's weights: no flag when the
    checkpoint is stored in the weight dtype (the engine reads its quantization config); the engine's
    load-time quantisation (ONLINE_QUANTIZATION) when the checkpoint is wider; otherwise a refusal."""
    w = None if pool.weight_dtype is None else pool.weight_dtype.lower()
    ck = None if pool.checkpoint_dtype is None else pool.checkpoint_dtype.lower()
    if w is None or w in _UNQUANTIZED and ck in (None, *_UNQUANTIZED):
        return None, None
    if ck is None or ck == w:
        return None, (f"weights: {pool.model} is loaded as stored ({w}); the engine reads the format from the "
                      "checkpoint's own quantization config, so no quantization flag")
    method = ONLINE_QUANTIZATION[engine].get(w)
    if method is not None and DTYPE_BYTES[ck] > DTYPE_BYTES[w]:
        return method, (f"weights: {pool.model} is stored in {ck}; --quantization {method} quantises it to {w} "
                        "while loading (a checkpoint already in that format loads faster and may be calibrated)")
    raise TokenmathError(
        f"{engine} cannot turn the {ck} checkpoint {pool.model!r} into {w} weights while loading; expected a "
        f"checkpoint already stored in {w} as the model (checkpoint_dtype = {w!r})")


def _ep_check(pool: Pool, engine: str, stage: int, *, divides: bool) -> None:
    if pool.ep == 1 or pool.ep == stage or (divides and stage % pool.ep == 0):
        return
    want = f"a divisor of TP × DP = {stage}" if divides else f"1 or TP × DP = {stage}"
    raise TokenmathError(f"EP = {pool.ep} cannot be expressed on {engine}; expected EP = {want} "
                         f"(TP{pool.tp} × DP{pool.dp})")


def _multinode_note(pool: Pool, notes: list[str], flags: str) -> None:
    if pool.chips_per_replica > 8:
        notes.append(f"a replica of {pool.chips_per_replica} chips spans more than one 8-GPU host on most "
                     f"systems: add {flags} per host (not emitted)")


def _vllm(pool: Pool) -> Launch:
    notes = []
    n = pool.tp * pool.dp
    _ep_check(pool, "vllm", n, divides=False)
    quant, qnote = _quantization(pool, "vllm")
    per = pool.dp
    base = ["vllm", "serve", pool.model,
            "--tensor-parallel-size", str(pool.tp),
            "--pipeline-parallel-size", str(pool.pp)]
    if pool.dp > 1:
        base += ["--data-parallel-size", str(pool.dp)]
    if pool.ep > 1:
        base += ["--enable-expert-parallel"]
    seqs, tokens = math.ceil(pool.max_batch / per), math.ceil(pool.max_num_batched_tokens / per)
    if tokens < seqs:
        raise TokenmathError(
            f"max_num_batched_tokens {tokens} per DP engine is below max_num_seqs {seqs}, which vLLM refuses; "
            f"expected max_num_batched_tokens >= max_batch ({pool.max_batch})")
    base += ["--max-num-seqs", str(seqs),
             "--max-num-batched-tokens", str(tokens),
             "--kv-cache-dtype", "fp8" if pool.kv_dtype == "fp8" else "auto"]
    if quant:
        base += ["--quantization", quant]
    if pool.kv_dtype == "bf16":
        notes.append("--kv-cache-dtype auto stores the KV cache in the model's activation dtype (bf16, for a "
                     "bf16 or an FP8 checkpoint alike)")
    if pool.dp > 1:
        notes.append(f"--max-num-seqs and --max-num-batched-tokens count per DP engine: the replica's "
                     f"{pool.max_batch} sequences and {pool.max_num_batched_tokens} tokens ÷ DP {pool.dp}")
    if pool.role in ("prefill", "decode"):
        base += ["--kv-transfer-config", json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"},
                                                    separators=(",", ":"))]
        notes.append("disaggregated: vLLM's documented NixlConnector setup uses kv_role kv_both on prefill "
                     "and decode alike; a proxy routes each request to a prefill then a decode instance "
                     "(vLLM ships an example, tests/v1/kv_connector/nixl_integration/toy_proxy_server.py); "
                     "set VLLM_NIXL_SIDE_CHANNEL_HOST per host")
    if qnote:
        notes.append(qnote)
    _multinode_note(pool, notes, "--data-parallel-size-local, --data-parallel-address, "
                                 "--data-parallel-rpc-port and --headless")
    return _finish("vllm", pool, base, (), notes)


def _sglang(pool: Pool) -> Launch:
    notes = []
    n = pool.tp * pool.dp
    _ep_check(pool, "sglang", n, divides=False)
    quant, qnote = _quantization(pool, "sglang")
    base = ["python", "-m", "sglang.launch_server", "--model-path", pool.model,
            "--tp-size", str(n), "--pp-size", str(pool.pp)]
    if pool.dp > 1:
        base += ["--attn-dp-size", str(pool.dp)]
    if pool.ep > 1:
        base += ["--ep-size", str(pool.ep)]
    base += ["--max-running-requests", str(pool.max_batch),
             "--chunked-prefill-size", str(pool.max_num_batched_tokens),
             "--kv-cache-dtype", "fp8_e4m3" if pool.kv_dtype == "fp8" else "bf16"]
    if quant:
        base += ["--quantization", quant]
    if pool.dp > 1:
        notes.append(f"SGLang's --tp-size counts every GPU of the replica ({n}); --attn-dp-size {pool.dp} runs "
                     f"attention data-parallel in groups of attention TP {pool.tp} (before 0.5.23: --dp-size "
                     f"{pool.dp} --enable-dp-attention), and --max-running-requests / --chunked-prefill-size are "
                     "the replica's totals (SGLang divides them among the attention-DP groups)")
    if pool.role in ("prefill", "decode"):
        base += ["--disaggregation-mode", pool.role]
        notes.append("disaggregated: put SGLang's router (sglang_router, PD mode) in front of the prefill "
                     "and decode servers; the KV transfer backend is --disaggregation-transfer-backend "
                     "(default mooncake)")
    if qnote:
        notes.append(qnote)
    if pool.replicas > 1:
        notes.append("replicas sharing a host need their own GPUs: --base-gpu-id (documented) or "
                     "CUDA_VISIBLE_DEVICES")
    _multinode_note(pool, notes, "--nnodes, --node-rank and --dist-init-addr")
    return _finish("sglang", pool, base, (), notes)


def _trtllm(pool: Pool) -> Launch:
    notes = []
    n = pool.tp * pool.dp
    if pool.dp > 1 and pool.tp != 1:
        raise TokenmathError(
            f"TP{pool.tp} × DP{pool.dp} cannot be expressed on trtllm: enable_attention_dp runs attention "
            f"data-parallel over all tp_size ranks, so expected TP = 1 with DP = {n}")
    _ep_check(pool, "trtllm", n, divides=True)
    _, qnote = _quantization(pool, "trtllm")
    per = pool.dp
    yaml_lines = ["enable_chunked_prefill: true"]
    if pool.dp > 1:
        yaml_lines.append("enable_attention_dp: true")
    if pool.kv_dtype == "fp8":
        yaml_lines += ["kv_cache_config:", "  dtype: fp8"]
    if pool.role in ("prefill", "decode"):
        if pool.role == "prefill":
            yaml_lines.append("disable_overlap_scheduler: true")
        yaml_lines += ["cache_transceiver_config:", "  backend: DEFAULT"]
        notes.append("disaggregated: start these context (prefill) / generation (decode) servers, then "
                     "`trtllm-serve disaggregated -c <config>` listing their URLs (that file is not "
                     "written here)")
    name = f"tokenmath-trtllm-{pool.role}.yaml"
    base = ["trtllm-serve", pool.model, "--backend", "pytorch",
            "--tp_size", str(n), "--pp_size", str(pool.pp)]
    if pool.ep > 1:
        base += ["--ep_size", str(pool.ep)]
    base += ["--max_batch_size", str(math.ceil(pool.max_batch / per)),
             "--max_num_tokens", str(math.ceil(pool.max_num_batched_tokens / per)),
             "--extra_llm_api_options", name]
    if pool.dp > 1:
        notes.append(f"--max_batch_size and --max_num_tokens count per attention-DP rank: the replica's "
                     f"{pool.max_batch} sequences and {pool.max_num_batched_tokens} tokens ÷ DP {pool.dp}")
    if pool.kv_dtype == "bf16":
        notes.append("kv_cache_config.dtype is left at 'auto' (the model's dtype) for a bf16 KV cache")
    if qnote:
        notes.append(qnote)
    _multinode_note(pool, notes, "an MPI/Slurm launch (trtllm-llmapi-launch)")
    return _finish("trtllm", pool, base, ((name, "\n".join(yaml_lines) + "\n"),), notes)


def _finish(engine: str, pool: Pool, base: list[str], files, notes: list[str]) -> Launch:
    commands = []
    for i in range(pool.replicas):
        argv = list(base)
        if pool.host is not None:
            argv += ["--host", pool.host]
        argv += ["--port", str(pool.port + i)]
        commands.append(shlex.join(argv))
    if pool.replicas > 1:
        notes.append(f"{pool.replicas} replicas, one command each (ports {pool.port}–{pool.port + pool.replicas - 1}; "
                     "on separate hosts one port would do); no engine has a replica-count flag, so put a "
                     "router or load balancer in front")
    return Launch(engine=engine, commands=tuple(commands), files=tuple(files), notes=tuple(notes),
                  source=SOURCES[engine])


_BUILDERS = {"vllm": _vllm, "sglang": _sglang, "trtllm": _trtllm}


def launch(pool: Pool, engine: str) -> Launch:
    """Config files, one command per replica, and notes for `pool` on `engine` (one of ENGINES)."""
    if not isinstance(pool, Pool):
        raise TokenmathError(f"expected a tokenmath.export.Pool, got {type(pool).__name__}")
    if engine not in _BUILDERS:
        raise TokenmathError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    return _BUILDERS[engine](pool)


def launch_commands(pool: Pool, engine: str) -> list[str]:
    """The shell lines that start `pool` on `engine`: config files first (TensorRT-LLM's YAML, as a
    `printf ... > file` line), then one command per replica. Values are shell-quoted."""
    return launch(pool, engine).lines()


@dataclass(frozen=True)
class PoolLaunch:
    """The launch of one pool of a fleet: which checkpoint it loads and how, the shell lines (config
    files first, then one command per replica) and every note (what has no flag, what else to run)."""

    role: str
    system: str
    replicas: int
    engine: str
    checkpoint: str
    weight_dtype: str
    quantization: str | None
    lines: tuple[str, ...]
    notes: tuple[str, ...]


def checkpoint_for(model, weight_dtype: str | None, engine: str, *, hf_model: str | None = None
                   ) -> tuple[str, str | None, str | None]:
    """(checkpoint, the dtype it is stored in, a note) for `model` (a specs.Model) served with its linear
    layers in `weight_dtype` (None: the checkpoint's own) on `engine`.

    The model's own repo (Model.hf_repo) when the dtype is the one it ships in; a published checkpoint in
    that dtype (Model.checkpoints, the catalog's [checkpoints.*]) when there is one; the model's repo with
    the engine's load-time quantisation when the engine has it (ONLINE_QUANTIZATION); else a refusal
    naming the checkpoints that exist. `hf_model` (the user's --hf-model) is taken as given: it is the
    checkpoint, stored in whatever its own config says."""
    if engine not in ENGINES:
        raise TokenmathError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    native = model.weight_dtype
    want = native if weight_dtype is None else weight_dtype.lower()
    if hf_model is not None:
        check_model_ref(hf_model, "--hf-model")
        note = None if want == native else (
            f"weights: tokenmath planned {want}; {hf_model} (your --hf-model) is loaded as its own config says, "
            "so make sure it is stored in that format")
        return hf_model, None, note
    if not model.hf_repo:
        raise TokenmathError(f"model {model.name!r} has no Hugging Face repo id (hf_repo in the catalog, or "
                             "_name_or_path in its config.json); pass --hf-model with the checkpoint to serve")
    if want == native:
        return model.hf_repo, native, None
    published = dict(model.checkpoints)
    if want in published:
        return published[want], want, (f"weights: {published[want]} is the published {want} checkpoint of "
                                        f"{model.hf_repo}, loaded as stored (the engine reads its quantization "
                                        "config, so no quantization flag)")
    method = ONLINE_QUANTIZATION[engine].get(want)
    if method is not None and DTYPE_BYTES.get(native, 0) > DTYPE_BYTES[want]:
        return model.hf_repo, native, None
    have = [f"{model.hf_repo} ({native})"] + [f"{r} ({d})" for d, r in sorted(published.items())]
    raise TokenmathError(
        f"{engine} cannot serve {model.name} with {want} weights (the catalog has no {want} checkpoint of it and "
        f"{engine} cannot quantise to {want} while loading); expected a plan in the weight dtype of "
        f"{' or '.join(have)}, or --hf-model naming a {want} checkpoint")


def layout_expressible(layout, engine: str) -> bool:
    """Whether `engine`'s launch flags can express `layout` (a layout.Layout) as one replica: the
    checks `launch` makes (EP = TP × DP, or a divisor of it; TensorRT-LLM's attention DP over every
    rank), asked of a pool of that layout, so the two cannot disagree."""
    try:
        launch(pool_from_layout("both", "system", layout, replicas=1, max_batch=1, max_num_batched_tokens=1,
                                model="model"), engine)
    except TokenmathError:
        return False
    return True


def exportable_weight_dtypes(model, systems, engine: str) -> dict[str, list]:
    """The weight dtypes `fleet --export ENGINE` may plan on each system (by name): the deployable ones
    (plan.deployable_weight_dtypes) for which `checkpoint_for` finds a checkpoint the engine can load
    (the model's own, a published export, or the engine's load-time quantisation), so the fleet it
    answers with is one whose launch commands start."""
    from .plan import deployable_weight_dtypes

    out = {}
    for s in systems:
        ok = []
        for wd in deployable_weight_dtypes(model, s):
            try:
                checkpoint_for(model, wd, engine)
            except TokenmathError:
                continue
            ok.append(wd)
        out[s.name] = ok
    return out


def exportable_layouts(model, systems, engine: str, *, wide_ep: bool) -> dict[str, list]:
    """The layouts `fleet --export ENGINE` may plan on each system (by name): the planner's candidates
    (plan.candidate_layouts) that `engine` can launch (layout_expressible), so the fleet it answers
    with is one whose launch commands can be written."""
    from .plan import candidate_layouts

    return {s.name: [lay for lay in candidate_layouts(model, s, wide_ep=wide_ep) if layout_expressible(lay, engine)]
            for s in systems}


def fleet_launches(option, engine: str, *, model, hf_model: str | None = None, max_num_batched_tokens: int = 8192,
                   port: int = 8000) -> list[PoolLaunch]:
    """The launch of every pool of a fleet.FleetOption for `model` (a specs.Model): each pool on its own
    port range (prefill from `port`, decode from `port` + 1000), loading the checkpoint checkpoint_for
    picks; the chunked-prefill budget is the planner's (8,192 tokens per step)."""
    from .layout import Layout

    out = []
    for i, p in enumerate(option.pools):
        repo, stored, wnote = checkpoint_for(model, p.weight_dtype, engine, hf_model=hf_model)
        lay = Layout(tp=p.tp, ep=p.ep, pp=p.pp, redundant_experts=getattr(p, "redundant_experts", 0))
        pool = pool_from_layout(p.role, p.system, lay, replicas=p.replicas,
                                max_batch=p.max_batch, max_num_batched_tokens=max(max_num_batched_tokens, p.max_batch),
                                model=repo, kv_dtype=p.kv_dtype, weight_dtype=p.weight_dtype, port=port + 1000 * i)
        pool = replace(pool, checkpoint_dtype=stored)
        res = launch(pool, engine)
        quant, _ = _quantization(pool, engine)
        out.append(PoolLaunch(role=p.role, system=p.system, replicas=p.replicas, engine=engine, checkpoint=repo,
                              weight_dtype=p.weight_dtype, quantization=quant, lines=tuple(res.lines()),
                              notes=((wnote,) if wnote else ()) + tuple(
                                  n for n in res.notes if not (wnote and n.startswith("weights:")))))
    return out


def fleet_commands(option, engine: str, **kw) -> list[str]:
    """fleet_launches as shell lines: a `# role pool` comment, then each pool's lines."""
    lines: list[str] = []
    for pl in fleet_launches(option, engine, **kw):
        lines += [f"# {pl.role} pool: {pl.replicas} × {pl.system}, {pl.checkpoint}"] + list(pl.lines)
    return lines
