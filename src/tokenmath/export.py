"""Launch commands for a planned deployment: a pool description -> the command line that starts each
replica on vLLM (`vllm serve`), SGLang (`python -m sglang.launch_server`) or TensorRT-LLM
(`trtllm-serve`), with each engine's own flag names (issue 14, "Export").

    launch_commands(pool, engine) -> list[str]     # shell lines, shlex-parseable, values quoted
    launch(pool, engine) -> Launch                 # the same, plus config files and notes
    pool_from_layout(...) -> Pool                  # from a layout.Layout (tokenmath's TP×EP×PP×DP)

Pure functions: nothing is run, nothing is read from disk or the network.

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
from dataclasses import dataclass

from .errors import TokenmathError

ENGINES = ("vllm", "sglang", "trtllm")
ROLES = ("prefill", "decode", "both")
KV_DTYPES = ("bf16", "fp8")

# Where each flag name was read. Versions are those of the pages / source files read (Dec 2026).
SOURCES = {
    "vllm": (
        "vLLM docs: serving/data_parallel_deployment ('--max-num-seqs applies per DP rank'; "
        "--data-parallel-size with --tensor-parallel-size); serving/expert_parallel_deployment "
        "(v0.12.0 page; EP_SIZE = TP_SIZE x DP_SIZE, "
        "--tensor-parallel-size, --data-parallel-size, --enable-expert-parallel, --kv-transfer-config "
        "'{\"kv_connector\":\"NixlConnector\",\"kv_role\":\"kv_both\"}' on both prefill and decode); "
        "features/nixl_connector_usage (--port, --tensor-parallel-size, --kv-transfer-config); "
        "engine args (--pipeline-parallel-size, --max-num-seqs, --max-num-batched-tokens, "
        "--kv-cache-dtype {auto, fp8, ...}, --quantization; same names on the v0.5-v0.9 pages); "
        "cli/serve (v0.12.0 page: frontend --host, --port default 8000); "
        "vllm/config/scheduler.py (max_num_batched_tokens must be >= max_num_seqs); "
        "vllm/config/cache.py CacheDType ('auto' = model dtype, 'fp8' = fp8_e4m3); "
        "vllm/model_executor/layers/quantization QuantizationMethods ('fp8', 'modelopt_fp4'; "
        "'mxfp4' from the v0.18.1 API page, Mxfp4Config.get_name)"
    ),
    "sglang": (
        "SGLang docs: advanced_features/server_arguments (docs.sglang.io, repo docs at commit 004813e): "
        "--model-path, --host, --port, --tensor-parallel-size/--tp-size, --pipeline-parallel-size/"
        "--pp-size, --data-parallel-size/--dp-size, --expert-parallel-size/--ep-size, "
        "--enable-dp-attention ('the dp size should be equal to the tp size'; server_args.py itself "
        "asserts only tp_size % dp_size == 0, '1 < dp-size <= tp-size', so attention TP = tp/dp > 1 "
        "is accepted, and it divides chunked_prefill_size by dp_size under DP attention; "
        "max_running_requests is likewise split per DP worker), "
        "--max-running-requests, --chunked-prefill-size, --kv-cache-dtype {auto, fp8_e5m2, fp8_e4m3, "
        "bf16, bfloat16, fp4_e2m1}, --quantization {fp8, modelopt_fp4, mxfp4, ...}, "
        "--disaggregation-mode {null, prefill, decode}"
    ),
    "trtllm": (
        "TensorRT-LLM: tensorrt_llm/commands/serve.py click options (commit 00209af; docs "
        "commands/trtllm-serve/trtllm-serve.rst): MODEL, --host, --port, --backend {pytorch, tensorrt, "
        "_autodeploy}, --tensor_parallel_size/--tp_size, --pipeline_parallel_size/--pp_size, "
        "--moe_expert_parallel_size/--ep_size, --max_batch_size, --max_num_tokens, "
        "--config/--extra_llm_api_options (YAML of LlmArgs); LlmArgs fields kv_cache_config.dtype "
        "('auto' default, PyTorch backend only), enable_attention_dp, enable_chunked_prefill "
        "(tensorrt_llm/llmapi/llm_args.py); features/disagg-serving.md: cache_transceiver_config "
        "{backend: DEFAULT|UCX|NIXL|MPI}, context servers also disable_overlap_scheduler: true, "
        "then `trtllm-serve disaggregated -c <config>` in front"
    ),
}

# tokenmath field -> each engine's flag (docs/export.md renders this table).
FLAGS = {
    "model": ("positional MODEL", "--model-path", "positional MODEL"),
    "tp": ("--tensor-parallel-size TP", "--tp-size TP×DP", "--tp_size TP×DP"),
    "pp": ("--pipeline-parallel-size", "--pp-size", "--pp_size"),
    "dp": ("--data-parallel-size", "--dp-size DP --enable-dp-attention",
           "YAML enable_attention_dp: true (needs TP = 1)"),
    "ep": ("--enable-expert-parallel (EP = TP×DP; no size flag)", "--ep-size", "--ep_size"),
    "max_batch": ("--max-num-seqs ceil(B/DP) (per DP engine)", "--max-running-requests B",
                  "--max_batch_size ceil(B/DP) (per rank)"),
    "max_num_batched_tokens": ("--max-num-batched-tokens ceil(T/DP)", "--chunked-prefill-size T",
                               "--max_num_tokens ceil(T/DP) + YAML enable_chunked_prefill: true"),
    "kv_dtype": ("--kv-cache-dtype auto|fp8", "--kv-cache-dtype bf16|fp8_e4m3",
                 "YAML kv_cache_config.dtype: fp8 (bf16: left at auto)"),
    "weight_dtype": ("--quantization fp8|modelopt_fp4|mxfp4", "--quantization fp8|modelopt_fp4|mxfp4",
                     "no flag: a checkpoint already quantized"),
    "port": ("--port", "--port", "--port"),
    "host": ("--host", "--host", "--host"),
    "role": ("--kv-transfer-config NixlConnector kv_both", "--disaggregation-mode prefill|decode",
             "YAML cache_transceiver_config (+ disable_overlap_scheduler on prefill)"),
}

# weight_dtype -> the engine's --quantization method (None: the checkpoint's own format, no flag)
_QUANT = {
    "vllm": {"fp8": "fp8", "nvfp4": "modelopt_fp4", "mxfp4": "mxfp4"},
    "sglang": {"fp8": "fp8", "nvfp4": "modelopt_fp4", "mxfp4": "mxfp4"},
    "trtllm": {"fp8": None, "nvfp4": None, "mxfp4": None},
}
_UNQUANTIZED = ("bf16", "bfloat16")


@dataclass(frozen=True)
class Pool:
    """One pool of identical replicas (issue 14's `pools[]` entry plus what a launch needs).

    chips_per_replica = tp × dp × pp; dp counts data-parallel attention ranks inside one replica,
    `replicas` the independent copies. max_batch (sequences) and max_num_batched_tokens (the
    chunked-prefill token budget of one step) are for the whole replica. weight_dtype None (or
    "bf16") keeps the checkpoint's format; "fp8" | "nvfp4" | "mxfp4" select that quantization."""

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
        if not isinstance(self.model, str) or not self.model.strip():
            raise TokenmathError("pool model must be a Hugging Face repo id or a path, not empty")
        for name in ("model", "system", "host"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or any(c in v for c in "\x00\n\r")):
                raise TokenmathError(f"pool {name} {v!r} must be one line of text")
        if self.weight_dtype is not None and not isinstance(self.weight_dtype, str):
            raise TokenmathError(f"weight_dtype {self.weight_dtype!r} must be a dtype name or None")
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
    """(the --quantization value or None, a note or None) for the pool's weight dtype."""
    w = pool.weight_dtype
    if w is None or w.lower() in _UNQUANTIZED:
        return None, None
    table = _QUANT[engine]
    key = w.lower()
    if key not in table:
        known = ", ".join(["None (the checkpoint's)", *table])
        raise TokenmathError(f"weight_dtype {w!r} has no {engine} quantization tokenmath knows; expected {known}")
    method = table[key]
    if engine == "trtllm":
        return None, (f"trtllm-serve has no weight-quantization flag: point MODEL at a checkpoint already "
                      f"quantized to {key} (e.g. a ModelOpt export)")
    if key in ("nvfp4", "mxfp4"):
        return method, f"--quantization {method} needs a checkpoint already quantized to {key}"
    return method, None


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
        notes.append("--kv-cache-dtype auto stores the KV cache in the model's dtype (bf16 for a bf16 "
                     "or FP8 checkpoint); vLLM's 'bfloat16' value is only valid for models that default to fp8")
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
        base += ["--dp-size", str(pool.dp), "--enable-dp-attention"]
    if pool.ep > 1:
        base += ["--ep-size", str(pool.ep)]
    base += ["--max-running-requests", str(pool.max_batch),
             "--chunked-prefill-size", str(pool.max_num_batched_tokens),
             "--kv-cache-dtype", "fp8_e4m3" if pool.kv_dtype == "fp8" else "bf16"]
    if quant:
        base += ["--quantization", quant]
    if pool.dp > 1:
        notes.append(f"SGLang's --tp-size counts every GPU of the replica ({n}); --dp-size splits attention "
                     f"into DP ranks of attention TP {pool.tp} (the server-arguments page says dp should equal "
                     f"tp; server_args.py accepts any divisor), and --max-running-requests / --chunked-prefill-size are the replica's totals "
                     "(SGLang divides them among DP ranks)")
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


def fleet_commands(option, engine: str, *, model_id: str, checkpoint_dtype: str | None = None,
                   max_num_batched_tokens: int = 8192, port: int = 8000) -> list[str]:
    """Launch lines for every pool of a fleet.FleetOption: each pool on its own port range
    (prefill from `port`, decode from `port` + 1000). Weights in the checkpoint's dtype get no
    quantization flag; the chunked-prefill budget is the planner's (8,192 tokens per step)."""
    from .layout import Layout

    lines: list[str] = []
    for i, p in enumerate(option.pools):
        wd = None if checkpoint_dtype is not None and p.weight_dtype == checkpoint_dtype else p.weight_dtype
        pool = pool_from_layout(p.role, p.system, Layout(tp=p.tp, ep=p.ep, pp=p.pp), replicas=p.replicas,
                                max_batch=p.max_batch, max_num_batched_tokens=max(max_num_batched_tokens, p.max_batch),
                                model=model_id, kv_dtype=p.kv_dtype, weight_dtype=wd, port=port + 1000 * i)
        lines += [f"# {p.role} pool: {p.replicas} × {p.system}"] + launch(pool, engine).lines()
    return lines
