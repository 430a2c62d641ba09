"""Hugging Face config.json -> Model, read generically by the standard field names.

No per-model table: each architectural feature is detected from the fields that express it
(`kv_lora_rank` -> MLA, `n_routed_experts`/`num_local_experts`/`num_experts` -> MoE,
`layer_types`/`sliding_window_pattern` -> local/global layers, `index_topk` -> sparse attention,
`num_nextn_predict_layers` -> MTP, `text_config` -> the language model of a multimodal config).
Gemma 4 (model_type gemma4 / gemma4_text) is read as transformers 5.25's Gemma4TextConfig and
Gemma4TextModel build it: full-attention layers take `global_head_dim` (default 512) and, only
where `attention_k_eq_v` is true, `num_global_key_value_heads`, or the per-layer `head_dim` /
`num_key_value_heads` of a saved `per_layer_config`; `attention_k_eq_v` drops v_proj on those
layers; `enable_moe_block` puts `num_experts` experts (`top_k_experts` per token,
`moe_intermediate_size` wide) beside the dense MLP in every layer (and without it experts are
ignored); `hidden_size_per_layer_input` (default 256) adds per-layer input embeddings;
`num_kv_shared_layers` layers reuse KV without k/v projections, with a double-width MLP where
`use_double_wide_mlp`; layers follow `layer_types` (default: every 6th full) with the last forced
to full attention, and `sliding_window_pattern` is not read (Gemma4TextConfig ignores it).
The few places where families differ in how they *use* a field (which biases exist, how the
sliding layers are chosen) are keyed on model_type and commented with the transformers class
they mirror.

Every number is read by one validated parser (`_opt_int`): integers only (a whole float such as
4096.0 is accepted), finite, non-negative, and no larger than a physically sensible bound, so a
1 KB file cannot ask for unbounded work. The bounds: layers <= 1,000; hidden size <= 1,000,000;
attention / KV heads <= 10,000; head dims <= 100,000; MLP / expert widths <= 10,000,000;
experts <= 100,000; vocabulary <= 10,000,000; token lengths (context, windows) <= 10,000,000,000.
A config file is at most 4 MiB of UTF-8 JSON.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from pathlib import Path
from typing import Any

from .errors import TokenmathError, read_user_file
from .specs import Attention, Mlp, Model, Moe
from .units import HF_TORCH_DTYPES

# Families whose MLP is a plain two-matrix FFN (no gate).
_PLAIN_MLP = {"falcon", "gpt2", "gpt_neox", "gptj", "opt", "bloom", "phi", "starcoder2"}
# Families with q/k/v bias but no o_proj bias (Qwen2Attention, Glm4MoeAttention).
_QKV_BIAS_ONLY = {"qwen2", "qwen2_moe", "qwen2_vl", "glm4_moe", "glm4v_moe"}
# Families with one norm vector of head_dim on q and on k (Qwen3Attention, Gemma3Attention, ...).
_HEAD_QK_NORM = {"qwen3", "qwen3_moe", "qwen3_next", "gemma3", "gemma3_text", "gemma4", "gemma4_text", "olmoe"}
# Families with pre- and post- norms around both sublayers (Gemma2/3 decoder layers: 4 RMSNorms).
_FOUR_NORMS = {"gemma2", "gemma3", "gemma3_text", "gemma4", "gemma4_text"}
# Families whose embeddings are tied unless the config says otherwise (their *Config defaults).
_TIED_BY_DEFAULT = {"gemma", "gemma2", "gemma3", "gemma3_text", "gemma4", "gemma4_text", "qwen3_next"}
_LAYERNORM_WITH_BIAS = {"falcon", "gpt2", "gpt_neox", "opt", "bloom", "phi"}


MAX_CONFIG_BYTES = 4 * 2**20  # real config.json files are a few KB; the largest quantized ones ~100 KB

# Physically sensible maxima for each integer field (see the module docstring).
MAX_LAYERS = 1_000
MAX_HIDDEN = 1_000_000
MAX_HEADS = 10_000
MAX_HEAD_DIM = 100_000
MAX_FFN = 10_000_000
MAX_EXPERTS = 100_000
MAX_VOCAB = 10_000_000
MAX_TOKENS = 10_000_000_000

_BOUNDS: dict[str, tuple[int, str]] = {}
for _limit, _what, _keys in (
    (MAX_LAYERS, "number of layers", ("num_hidden_layers", "n_layer", "num_layers", "n_layers", "num_nextn_predict_layers",
                            "first_k_dense_replace", "moe_layer_freq", "decoder_sparse_step", "max_window_layers",
                            "sliding_window_pattern", "interleave_moe_layer_step", "no_rope_layer_interval",
                            "num_kv_shared_layers")),
    (MAX_HIDDEN, "hidden size", ("hidden_size", "n_embd", "d_model", "dim", "kv_lora_rank", "q_lora_rank")),
    (MAX_HEADS, "head count", ("num_attention_heads", "n_head", "num_heads", "n_heads", "num_key_value_heads",
                          "num_kv_heads", "n_head_kv", "multi_query_group_num", "num_global_key_value_heads",
                          "index_n_heads")),
    (MAX_HEAD_DIM, "head dimension", ("head_dim", "attention_head_dim", "global_head_dim", "v_head_dim",
                                        "qk_rope_head_dim", "qk_nope_head_dim", "index_head_dim")),
    (MAX_FFN, "MLP width", ("intermediate_size_mlp", "intermediate_size", "ffn_hidden_size", "n_inner", "ffn_dim",
                               "moe_intermediate_size", "expert_intermediate_size", "shared_expert_intermediate_size")),
    (MAX_EXPERTS, "expert count", ("n_routed_experts", "num_local_experts", "num_experts", "moe_num_experts",
                              "num_experts_per_tok", "experts_per_token", "moe_top_k", "num_experts_per_token",
                              "top_k", "top_k_experts", "n_shared_experts", "num_shared_experts")),
    (MAX_VOCAB, "vocabulary", ("vocab_size", "padded_vocab_size")),
    (MAX_TOKENS, "token length", ("max_position_embeddings", "n_positions", "seq_length", "sliding_window",
                            "attention_chunk_size", "index_topk")),
):
    for _k in _keys:
        _BOUNDS[_k] = (_limit, _what)

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 40
_short.maxlevel = 2


def _show(v: Any) -> str:
    """A short repr for messages: a huge or deeply nested value never floods (or recurses in) a sentence."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10**15:
        return f"{float(v):.3g}" if v.bit_length() < 1000 else f"an integer of about {int(v.bit_length() * 0.30103)} digits"
    return _short.repr(v)


def config_from_bytes(raw: bytes, where: str = "the config") -> dict[str, Any]:
    """Parse config.json bytes into a dict; every failure is one TokenmathError sentence naming `where`."""
    if len(raw) > MAX_CONFIG_BYTES:
        raise TokenmathError(f"{where} is {len(raw):,} bytes; a config.json is at most {MAX_CONFIG_BYTES:,} bytes")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(raw) >= 2 and b"\x00" in raw[:4]):
        raise TokenmathError(f"{where} looks like UTF-16 or binary data; expected UTF-8 JSON text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TokenmathError(f"{where} is not UTF-8 text (byte {e.start}); expected UTF-8 JSON") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise TokenmathError(f"{where} is not valid JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise TokenmathError(f"{where} nests arrays or objects too deeply to read (a config.json nests a few levels)") from None
    except ValueError as e:  # e.g. an integer literal longer than Python's 4,300-digit limit
        raise TokenmathError(f"{where} is not JSON that tokenmath can read ({str(e)[:80]})") from None
    if not isinstance(data, dict):
        raise TokenmathError(f"{where} holds a JSON {type(data).__name__}, expected an object")
    return data


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a config.json, with one-sentence errors for a missing file, broken JSON and absurd sizes."""
    where = f"config file {str(Path(path))!r}"
    raw = read_user_file(path, where, MAX_CONFIG_BYTES, "a config.json")
    return config_from_bytes(raw, where)


def model_from_config(
    cfg: dict[str, Any], *, name: str = "custom", source: str = "", as_of: str = "", path: str | None = None
) -> Model:
    """Build a Model from a parsed config.json dict."""
    if not isinstance(cfg, dict):
        raise TokenmathError(f"a config must be a JSON object, not a {type(cfg).__name__}")
    c = _flatten(cfg)
    family = c.get("model_type") or "unknown"
    if not isinstance(family, str):
        raise TokenmathError(f"config field 'model_type' = {_show(family)} must be a string")
    where = f"config {path or name!r}"

    hidden = _int(c, where, "hidden_size", "n_embd", "d_model", "dim")
    n_layers = _int(c, where, "num_hidden_layers", "n_layer", "num_layers", "n_layers")
    vocab = _int(c, where, "vocab_size", "padded_vocab_size")
    n_heads = _int(c, where, "num_attention_heads", "n_head", "num_heads", "n_heads")
    n_kv = _opt_int(c, "num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num", least=1)
    if n_kv is None:
        n_kv = 1 if c.get("multi_query") else n_heads
    gemma4 = family.startswith("gemma4")
    head_dim = _opt_int(c, "head_dim", "attention_head_dim") or (256 if gemma4 else hidden // n_heads)
    if head_dim < 1:
        raise TokenmathError(
            f"{where}: hidden_size = {hidden} is smaller than num_attention_heads = {n_heads}, so the head "
            "dimension would be 0; give 'head_dim' (>= 1)"
        )

    attention = _attention(c, family, n_heads, n_kv, head_dim)
    mlp, moe, layer_moe = _mlp_and_moe(c, family, hidden, n_layers, where)
    layer_window = _layer_windows(c, family, n_layers)
    layer_stores_kv = _kv_sharing(c, n_layers)
    gemma4_fields: dict[str, Any] = {}
    if gemma4:
        gemma4_fields = _gemma4(c, where, attention, layer_window, n_layers)

    tied = c.get("tie_word_embeddings")
    if tied is None:
        tied = family in _TIED_BY_DEFAULT
    weight_dtype, base_dtype, unquantized = _dtypes(c)
    hf_repo = hf_repo_id(cfg.get("_name_or_path"))

    return Model(
        name=name,
        family=family,
        hidden=hidden,
        n_layers=n_layers,
        vocab=vocab,
        tied_embeddings=bool(tied),
        attention=attention,
        mlp=mlp,
        moe=moe,
        layer_window=layer_window,
        layer_moe=layer_moe,
        layer_stores_kv=layer_stores_kv,
        norms_per_layer=4 if family in _FOUR_NORMS else 2,
        norm_bias=family in _LAYERNORM_WITH_BIAS,
        mtp_layers=_opt_int(c, "num_nextn_predict_layers") or 0,
        **gemma4_fields,
        weight_dtype=weight_dtype,
        base_dtype=base_dtype,
        unquantized_parts=unquantized,
        max_context=_opt_int(c, "max_position_embeddings", "n_positions", "seq_length"),
        source=source,
        as_of=as_of,
        config_path=path,
        hf_repo=hf_repo,
    )


# A Hugging Face repo id: "owner/name", each part letters, digits, '-', '_', '.', at most 96 characters,
# starting with a letter or digit (huggingface_hub's validate_repo_id rules, less its '--'/'..' checks,
# which this pattern also refuses). Anything else in `_name_or_path` is a local path and is not kept.
_REPO_ID = re.compile(r"(?!.*(--|\.\.))[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def hf_repo_id(value: Any) -> str | None:
    """`value` if it is a Hugging Face repo id ("Qwen/Qwen3-32B"), else None (a local path, empty, not text)."""
    if isinstance(value, str) and _REPO_ID.fullmatch(value) and not value.endswith((".json", ".")):
        return value
    return None


def model_from_config_file(path: str | Path, *, name: str | None = None, source: str = "", as_of: str = "") -> Model:
    p = Path(path)
    return model_from_config(load_config(p), name=name or p.stem, source=source or str(p), as_of=as_of, path=str(p))


# ---------------------------------------------------------------------------------------------


def _flatten(cfg: dict[str, Any]) -> dict[str, Any]:
    """Multimodal configs keep the language model in `text_config` (Llama 4, Gemma 3, Qwen-VL)."""
    out = dict(cfg)
    for key in ("text_config", "language_config", "llm_config"):
        sub = cfg.get(key)
        if isinstance(sub, dict):
            out.update(sub)
            if "model_type" not in sub:
                out["model_type"] = cfg.get("model_type")
    return out


def _whole(k: str, v: Any, least: int = 0) -> int:
    """The one validated integer parser for config fields: finite, whole, >= least, <= the field's bound."""
    limit, what = _BOUNDS.get(k, (MAX_TOKENS, "value"))
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TokenmathError(f"config field {k!r} = {_show(v)} is a {type(v).__name__}; expected an integer")
    if isinstance(v, float):
        if not math.isfinite(v):
            raise TokenmathError(f"config field {k!r} = {v!r} is not a finite number; expected an integer")
        if v != int(v):
            raise TokenmathError(f"config field {k!r} = {v!r} is not a whole number; expected an integer")
    n = int(v)
    if n < 0:
        raise TokenmathError(f"config field {k!r} = {_show(n)} must be a non-negative integer")
    if n < least:
        raise TokenmathError(f"config field {k!r} = {_show(n)} must be >= {least}")
    if n > limit:
        raise TokenmathError(
            f"config field {k!r} = {_show(n)} exceeds {limit:,}, the largest {what} tokenmath accepts"
        )
    return n


def _opt_int(c: dict, *keys: str, least: int = 0) -> int | None:
    """The first of `keys` present (not None), validated by `_whole`; None if none is present."""
    for k in keys:
        v = c.get(k)
        if v is not None:
            return _whole(k, v, least)
    return None


def _int(c: dict, where: str, *keys: str) -> int:
    """A required field: absent -> 'lacks'; present -> an integer >= 1 (0 is named as 0, not as missing)."""
    v = _opt_int(c, *keys, least=1)
    if v is None:
        raise TokenmathError(
            f"{where} (model_type {_show(c.get('model_type'))}) lacks {keys[0]!r} "
            f"(or {', '.join(repr(k) for k in keys[1:])}); cannot size the model without it"
        )
    return v


def _int_list(c: dict, key: str) -> list[int] | None:
    """A list of layer indices (moe_layers, mlp_only_layers), or None if absent."""
    v = c.get(key)
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
        raise TokenmathError(f"config field {key!r} = {_show(v)} must be a list of integer layer indices")
    return v


def _gemma4(c: dict, where: str, attention: Attention, layer_window: tuple, n_layers: int) -> dict[str, Any]:
    """Gemma 4's extra Model fields, as transformers 5.25 builds Gemma4TextModel from the config."""
    from dataclasses import replace

    base = (attention.n_kv_heads, attention.head_dim)
    per_layer = _per_layer_geometry(c, where, n_layers, base)
    k_eq_v = c.get("attention_k_eq_v") is True
    full = [i for i, w in enumerate(layer_window) if w is None]
    if per_layer is not None:
        # a config saved by transformers >= 5.2x: sparse per-layer overrides of head_dim / KV heads
        for i, w in enumerate(layer_window):
            if w is not None and per_layer.get(i, base) != base:
                raise TokenmathError(f"{where}: per_layer_config gives sliding layer {i} its own KV heads or head_dim "
                                     f"{per_layer[i]}; tokenmath models one geometry for the sliding layers")
        geoms = {per_layer.get(i, base) for i in full}
        if len(geoms) > 1:
            raise TokenmathError(f"{where}: per_layer_config gives the full-attention layers different (KV heads, "
                                 f"head_dim): {sorted(geoms)}; tokenmath models one geometry for them")
        g_kv, g_dim = geoms.pop() if geoms else base
    else:
        g_dim = _opt_int(c, "global_head_dim", least=1) or 512  # Gemma4TextConfig's default
        g_kv = _opt_int(c, "num_global_key_value_heads", least=1) if k_eq_v else None  # read only with k_eq_v
        g_kv = g_kv or attention.n_kv_heads
    if attention.n_heads % g_kv:
        raise TokenmathError(f"{where}: num_attention_heads = {attention.n_heads} is not a multiple of the "
                             f"full-attention layers' {g_kv} KV heads")
    g = replace(attention, n_kv_heads=g_kv, head_dim=g_dim, v_head_dim=g_dim, k_eq_v=k_eq_v)
    ple = _opt_int(c, "hidden_size_per_layer_input")
    ple = 256 if ple is None else ple  # Gemma4TextConfig's default
    if ple > MAX_HIDDEN:
        raise TokenmathError(f"config field 'hidden_size_per_layer_input' = {_show(ple)} exceeds {MAX_HIDDEN:,}, "
                             "the largest hidden size tokenmath accepts")
    ple_vocab = _opt_int(c, "vocab_size_per_layer_input")
    if ple_vocab is not None and ple_vocab > MAX_VOCAB:
        raise TokenmathError(f"config field 'vocab_size_per_layer_input' = {_show(ple_vocab)} exceeds "
                             f"{MAX_VOCAB:,}, the largest vocabulary tokenmath accepts")
    return dict(
        global_attention=None if g == attention else g,
        shared_kv_has_kv_proj=False,
        shared_kv_mlp_factor=2 if c.get("use_double_wide_mlp") is True else 1,
        moe_with_dense_mlp=c.get("enable_moe_block") is True,
        per_layer_input_dim=ple,
        per_layer_input_vocab=(262_144 if ple_vocab is None else ple_vocab) if ple else None,
    )


def _per_layer_geometry(c: dict, where: str, n_layers: int, base: tuple[int, int]) -> dict[int, tuple[int, int]] | None:
    """A saved `per_layer_config` ({"05": {"head_dim": 512, "num_key_value_heads": 2}, ...}) as
    {layer: (KV heads, head_dim)}; None when the config has none."""
    plc = c.get("per_layer_config")
    if plc is None:
        return None
    if not isinstance(plc, dict):
        raise TokenmathError(f"config field 'per_layer_config' = {_show(plc)} must be an object of layer index -> fields")
    out: dict[int, tuple[int, int]] = {}
    for key, over in plc.items():
        i = int(key) if isinstance(key, str) and key.isdigit() and len(key) <= 6 else None
        if i is None or i >= n_layers:
            raise TokenmathError(f"config field 'per_layer_config' has key {_show(key)}; expected a layer index "
                                 f"below num_hidden_layers = {n_layers}")
        if not isinstance(over, dict):
            raise TokenmathError(f"config field 'per_layer_config' layer {i} = {_show(over)} must be an object")
        kv = _opt_int(over, "num_key_value_heads", least=1)
        dim = _opt_int(over, "head_dim", least=1)
        out[i] = (kv or base[0], dim or base[1])
    return out


def _attention(c: dict, family: str, n_heads: int, n_kv: int, head_dim: int) -> Attention:
    bias = bool(c.get("attention_bias") or c.get("bias") or c.get("qkv_bias"))
    if family in _QKV_BIAS_ONLY and c.get("attention_bias", True):
        qkv_bias, o_bias = True, False
    else:
        qkv_bias = o_bias = bias
    if family in _HEAD_QK_NORM:
        qk_norm = "head"
    elif c.get("use_qk_norm"):
        # MiniMax-M2 normalises the whole q/k projection ("per_layer"); Llama 4's qk-norm is a
        # weightless L2 norm; GLM-4.5 norms each head.
        if family.startswith("llama4"):
            qk_norm = "none"
        elif c.get("qk_norm_type") == "per_layer":
            qk_norm = "full"
        else:
            qk_norm = "head"
    else:
        qk_norm = "none"
    sinks = family == "gpt_oss"

    index = dict(
        index_topk=_opt_int(c, "index_topk"),
        index_n_heads=_opt_int(c, "index_n_heads"),
        index_head_dim=_opt_int(c, "index_head_dim"),
    )
    if c.get("kv_lora_rank"):
        rope = _opt_int(c, "qk_rope_head_dim") or 0
        nope = _opt_int(c, "qk_nope_head_dim") or 0
        if not rope and not nope:
            raise TokenmathError(
                f"config of model_type {family!r} has kv_lora_rank (MLA) but no qk_rope_head_dim/qk_nope_head_dim"
            )
        return Attention(
            kind="mla",
            n_heads=n_heads,
            n_kv_heads=n_heads,
            head_dim=nope + rope,
            v_head_dim=_opt_int(c, "v_head_dim") or nope,
            qkv_bias=qkv_bias,
            o_bias=o_bias,
            q_lora_rank=_opt_int(c, "q_lora_rank") or None,
            kv_lora_rank=_opt_int(c, "kv_lora_rank", least=1),
            qk_rope_head_dim=rope,
            qk_nope_head_dim=nope,
            **index,
        )
    if n_heads % max(n_kv, 1):
        raise TokenmathError(f"num_attention_heads = {n_heads} is not a multiple of num_key_value_heads = {n_kv}")
    return Attention(
        kind="gqa",
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=head_dim,
        v_head_dim=_opt_int(c, "v_head_dim") or head_dim,
        qkv_bias=qkv_bias,
        o_bias=o_bias,
        qk_norm=qk_norm,
        sinks=sinks,
        **index,
    )


def _mlp_and_moe(c: dict, family: str, hidden: int, n_layers: int, where: str):
    gated = family not in _PLAIN_MLP
    mlp_bias = bool(c.get("mlp_bias")) or family == "gpt_oss"
    n_experts = _opt_int(c, "n_routed_experts", "num_local_experts", "num_experts", "moe_num_experts")
    inter = _opt_int(c, "intermediate_size_mlp", "intermediate_size", "ffn_hidden_size", "n_inner", "ffn_dim")
    if family.startswith("llama4"):
        # Llama 4: intermediate_size is the expert width, intermediate_size_mlp the dense one.
        inter = _opt_int(c, "intermediate_size_mlp") or _opt_int(c, "intermediate_size")
    gemma4 = family.startswith("gemma4")
    if gemma4 and c.get("enable_moe_block") is not True:
        n_experts = None  # Gemma4TextDecoderLayer builds experts only with enable_moe_block
    if gemma4 and c.get("enable_moe_block") is True:
        if not n_experts:
            raise TokenmathError(f"{where}: enable_moe_block = true needs 'num_experts', 'top_k_experts' and "
                                 "'moe_intermediate_size'")
        if inter is None:
            raise TokenmathError(f"{where} (model_type {family!r}) lacks 'intermediate_size' for the dense MLP "
                                 "beside the experts (enable_moe_block)")
        k = _opt_int(c, "top_k_experts", "num_experts_per_tok", least=1)
        expert_inter = _opt_int(c, "moe_intermediate_size")
        if not k or not expert_inter:
            raise TokenmathError(f"{where}: enable_moe_block = true needs 'num_experts', 'top_k_experts' and "
                                 "'moe_intermediate_size'")
        if k > n_experts:
            raise TokenmathError(f"{where}: top_k_experts = {k} exceeds the {n_experts} experts")
        # Gemma4TextRouter: proj + scale + per_expert_scale; 3 more norms around the experts.
        moe = Moe(n_experts=n_experts, k=k, expert=Mlp(expert_inter, True, False), router_scales=True, norms=3)
        return Mlp(inter, True, mlp_bias), moe, tuple([True] * n_layers)
    if not n_experts or n_experts <= 1:
        if inter is None:
            if family in _PLAIN_MLP:
                inter = 4 * hidden  # FalconConfig / GPT-2 default ffn width
            else:
                raise TokenmathError(f"{where} (model_type {family!r}) lacks 'intermediate_size'; cannot size the MLP")
        return Mlp(inter, gated, mlp_bias), None, tuple([False] * n_layers)

    k = _opt_int(c, "num_experts_per_tok", "experts_per_token", "moe_top_k", "num_experts_per_token", "top_k",
                 "top_k_experts", least=1)  # top_k_experts: Gemma 4
    if not k:
        raise TokenmathError(f"{where} has {n_experts} experts but no 'num_experts_per_tok'")
    if k > n_experts:
        raise TokenmathError(f"{where}: num_experts_per_tok = {k} exceeds the {n_experts} experts")
    if family.startswith("llama4"):
        expert_inter = _opt_int(c, "intermediate_size")
    else:
        expert_inter = _opt_int(c, "moe_intermediate_size", "expert_intermediate_size") or _opt_int(c, "intermediate_size")
    if not expert_inter:
        raise TokenmathError(f"{where} has experts but no 'moe_intermediate_size' or 'intermediate_size'")

    n_shared = _opt_int(c, "n_shared_experts", "num_shared_experts") or 0
    shared_inter = _opt_int(c, "shared_expert_intermediate_size")
    if shared_inter:
        n_shared = 1  # Qwen2-MoE / Qwen3-Next: one shared expert of shared_expert_intermediate_size
    if family.startswith("llama4"):
        n_shared = 1  # Llama4TextMoe always has one shared expert of the expert width
    shared = Mlp(shared_inter or expert_inter, gated, False) if n_shared else None

    n_group = _opt_int(c, "n_group") or 1
    topk_group = _opt_int(c, "topk_group") or n_group
    if n_group > 1 and (n_experts % n_group or not 1 <= topk_group <= n_group):
        raise TokenmathError(f"{where}: n_group = {n_group}, topk_group = {topk_group}; expected a group count that "
                             f"divides the {n_experts} experts and 1 <= topk_group <= n_group")
    if n_group > 1 and topk_group == n_group:  # every group allowed: no limit
        n_group = topk_group = 1
    moe = Moe(
        n_experts=n_experts,
        k=k,
        n_group=n_group,
        topk_group=topk_group,
        expert=Mlp(expert_inter, gated, mlp_bias),
        n_shared=n_shared,
        shared=shared,
        router_bias=family == "gpt_oss",
        expert_score_bias=c.get("topk_method") == "noaux_tc" or family in {"glm4_moe", "glm_moe_dsa", "minimax_m2"}
        or bool(c.get("use_routing_bias")),
        shared_gate=family in {"qwen2_moe"},
    )

    # Which layers are MoE
    if family.startswith("llama4"):
        step = _opt_int(c, "interleave_moe_layer_step") or 1
        layer_moe = tuple((i + 1) % step == 0 for i in range(n_layers))
        moe_layers = _int_list(c, "moe_layers")
        if moe_layers is not None:
            s = set(moe_layers)
            layer_moe = tuple(i in s for i in range(n_layers))
    else:
        first_dense = _opt_int(c, "first_k_dense_replace") or 0
        mlp_only = set(_int_list(c, "mlp_only_layers") or [])
        if c.get("decoder_sparse_step") is not None:  # Qwen2/3-MoE: every step-th layer, 1-based
            step = _opt_int(c, "decoder_sparse_step") or 1
            is_moe = [(i + 1) % step == 0 for i in range(n_layers)]
        else:  # DeepSeek / GLM: moe_layer_freq, 0-based, after first_k_dense_replace dense layers
            freq = _opt_int(c, "moe_layer_freq") or 1
            is_moe = [i % freq == 0 for i in range(n_layers)]
        layer_moe = tuple(is_moe[i] and i >= first_dense and i not in mlp_only for i in range(n_layers))
    needs_dense = not all(layer_moe)
    mlp = None
    if needs_dense:
        if family.startswith("llama4"):
            dense_inter = _opt_int(c, "intermediate_size_mlp")
        else:
            dense_inter = _opt_int(c, "intermediate_size")
        if not dense_inter:
            raise TokenmathError(f"{where} has dense layers but no 'intermediate_size' for them")
        mlp = Mlp(dense_inter, gated, mlp_bias)
    return mlp, moe, layer_moe


def _layer_windows(c: dict, family: str, n_layers: int) -> tuple[int | None, ...]:
    if family.startswith("gemma4"):
        return _gemma4_windows(c, n_layers)
    window = _opt_int(c, "sliding_window")
    chunk = _opt_int(c, "attention_chunk_size")
    types = c.get("layer_types")
    if isinstance(types, list) and len(types) == n_layers:
        if not all(isinstance(t, str) for t in types):
            raise TokenmathError(f"config field 'layer_types' = {_show(types)} must be a list of strings")
        out = []
        for t in types:
            if "sliding" in t or t == "local":
                out.append(window)
            elif "chunk" in t:
                out.append(chunk)
            else:
                out.append(None)
        return tuple(out)
    if family.startswith("llama4") and chunk:
        # Llama4: layers that use RoPE attend within chunks; every no_rope_layer_interval-th is global.
        nope = c.get("no_rope_layers")
        if isinstance(nope, list) and len(nope) == n_layers:
            return tuple(chunk if use_rope else None for use_rope in nope)
        interval = _opt_int(c, "no_rope_layer_interval") or 4
        return tuple(None if (i + 1) % interval == 0 else chunk for i in range(n_layers))
    if not window:
        return tuple([None] * n_layers)
    pattern = _opt_int(c, "sliding_window_pattern")
    if pattern:  # Gemma 3: every pattern-th layer is global
        return tuple(None if (i + 1) % pattern == 0 else window for i in range(n_layers))
    if family == "gemma2":  # Gemma2: even layers slide, odd layers are global
        return tuple(window if i % 2 == 0 else None for i in range(n_layers))
    if family.startswith("qwen"):  # Qwen2/3: only when use_sliding_window, from max_window_layers on
        if not c.get("use_sliding_window"):
            return tuple([None] * n_layers)
        start = _opt_int(c, "max_window_layers") or 0
        return tuple(window if i >= start else None for i in range(n_layers))
    return tuple([window] * n_layers)  # Mistral / Mixtral: a window on every layer


def _gemma4_windows(c: dict, n_layers: int) -> tuple[int | None, ...]:
    """Gemma4TextConfig.__post_init__: layer_types default to every 6th layer full, the last layer is
    forced to full attention, the window defaults to 512 and is w // 2 + 1 under bidirectional "all"."""
    window = _opt_int(c, "sliding_window")
    window = 512 if window is None else window
    if c.get("use_bidirectional_attention") == "all":
        window = window // 2 + 1
    types = c.get("layer_types")
    if isinstance(types, list) and len(types) == n_layers and all(isinstance(t, str) for t in types):
        full = [t == "full_attention" for t in types]
    elif types is not None and not (isinstance(types, list) and len(types) == n_layers):
        raise TokenmathError(f"config field 'layer_types' = {_show(types)} must be a list of {n_layers} layer types")
    elif types is not None:
        raise TokenmathError(f"config field 'layer_types' = {_show(types)} must be a list of strings")
    else:
        full = [(i + 1) % 6 == 0 for i in range(n_layers)]
    full[-1] = True
    return tuple(None if f else window for f in full)


def _kv_sharing(c: dict, n_layers: int) -> tuple[bool, ...]:
    """Gemma 3n style: the last `num_kv_shared_layers` layers reuse earlier layers' KV."""
    shared = _opt_int(c, "num_kv_shared_layers") or 0
    if shared > n_layers:
        raise TokenmathError(f"num_kv_shared_layers = {shared} exceeds num_hidden_layers = {n_layers}")
    return tuple(i < n_layers - shared for i in range(n_layers))


def _dtypes(c: dict) -> tuple[str, str, tuple[str, ...]]:
    name = c.get("torch_dtype") or c.get("dtype") or "bfloat16"
    base = HF_TORCH_DTYPES.get(name if isinstance(name, str) else "", "bf16")
    q = c.get("quantization_config")
    unquantized = ("embedding", "lm_head", "norms", "router")
    if not isinstance(q, dict):
        return base, base, unquantized
    method = q.get("quant_method")
    method = method.lower() if isinstance(method, str) else ""
    fmt = q.get("fmt")
    fmt = fmt.lower() if isinstance(fmt, str) else ""
    if method == "mxfp4":
        weight = "mxfp4"
    elif method in ("fp8", "fbgemm_fp8") or "e4m3" in fmt:
        weight = "fp8"
    elif q.get("bits") == 4 or method in ("awq", "gptq"):
        weight = "int4"
    elif q.get("bits") == 8:
        weight = "int8"
    else:
        weight = base
    skip = q.get("modules_to_not_convert")
    skip = [m for m in skip if isinstance(m, str)] if isinstance(skip, list) else []
    if any("self_attn" in m or "attention" in m for m in skip):
        unquantized = unquantized + ("attention",)
    return weight, base, unquantized
