"""Parameter counts as a breakdown: what a framework gets by instantiating the model.

`param_counts(model)` returns every part (embeddings, attention, dense MLP, routed and shared
experts, router, norms, lm_head) and the totals. Multi-token-prediction modules are counted in
`mtp` and kept out of `total` and `active`, as Hugging Face's model classes leave them out.
`active` = everything a token touches: all parts except the routed experts, plus k of them.

Gemma 4 (transformers' Gemma4TextModel) adds: full-attention layers with their own KV heads and
head dim (`Model.global_attention`), keys reused as values there (no v_proj), layers that reuse
another layer's KV without k/v projections, a double-width MLP on those layers, a dense MLP beside
the experts in every MoE layer (counted in `mlp`), a router with two scale vectors, three more
norms per MoE layer, and per-layer input embeddings: the table (`per_layer_embedding`, a lookup
like `embedding`) and its projections (`per_layer_input`: the model-level projection and each
layer's gate and projection; their norms are in `norms`). Buffers (Gemma 4's `layer_scalar`, the
embedding scales) are not parameters, as in transformers' `model.parameters()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .errors import TokenmathError
from .specs import Attention, Mlp, Model, Moe
from .units import dtype_bytes

PARTS = ("embedding", "attention", "mlp", "routed_experts", "shared_experts", "router", "norms", "lm_head",
         "per_layer_embedding", "per_layer_input")


@dataclass(frozen=True)
class ParamCounts:
    """Parameters by part; `total` excludes `mtp`. For totals-only models the parts are None."""

    total: int
    active: int
    embedding: int | None = None
    attention: int | None = None
    mlp: int | None = None
    routed_experts: int | None = None
    routed_experts_active: int | None = None
    shared_experts: int | None = None
    router: int | None = None
    norms: int | None = None
    lm_head: int | None = None
    mtp: int = 0
    per_layer_embedding: int | None = None  # Gemma 4 per-layer input embedding table (a lookup)
    per_layer_input: int | None = None  # Gemma 4 per-layer input projections (matmuls)

    @property
    def sparsity(self) -> float:
        """N_total / N_active (the lecture's "sparsity"; not experts / experts-active)."""
        return self.total / self.active

    def parts(self) -> dict[str, int | None]:
        return {p: getattr(self, p) for p in PARTS}


def mlp_params(h: int, m: Mlp) -> int:
    mats = (3 if m.gated else 2) * h * m.intermediate
    bias = ((2 if m.gated else 1) * m.intermediate + h) if m.bias else 0
    return mats + bias


def attention_params(h: int, a: Attention, kv_proj: bool = True) -> int:
    """One layer's attention projections (+ biases, q/k norms, sinks, a sparse-attention indexer).

    kv_proj=False: a layer that reuses another layer's KV and holds no k/v projections or k-norm
    (Gemma4TextAttention on its shared layers). `a.k_eq_v`: no v_proj (keys reused as values)."""
    if a.kind == "mla":
        qk = a.qk_nope_head_dim + a.qk_rope_head_dim
        if a.q_lora_rank:
            q = h * a.q_lora_rank + a.q_lora_rank + a.q_lora_rank * a.n_heads * qk  # q_a, q_a_norm, q_b
        else:
            q = h * a.n_heads * qk
        kv = h * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank  # kv_a_proj_with_mqa, kv_a_norm
        kv += a.kv_lora_rank * a.n_heads * (a.qk_nope_head_dim + a.v_head_dim)  # kv_b_proj
        o = a.n_heads * a.v_head_dim * h
        total = q + kv + o + (h if a.o_bias else 0)
    else:
        k_width = a.n_kv_heads * a.head_dim if kv_proj else 0
        v_width = a.n_kv_heads * a.v_head_dim if kv_proj and not a.k_eq_v else 0
        q = h * a.n_heads * a.head_dim
        o = a.n_heads * a.v_head_dim * h
        total = q + h * k_width + h * v_width + o
        if a.qkv_bias:
            total += a.n_heads * a.head_dim + k_width + v_width
        if a.o_bias:
            total += h
        if a.qk_norm == "head":
            total += a.head_dim * (2 if kv_proj else 1)
        elif a.qk_norm == "full":
            total += a.n_heads * a.head_dim + k_width
        if a.sinks:
            total += a.n_heads
    if a.index_topk and a.index_n_heads:
        # DeepSeek-V3.2 lightning indexer: wq_b (q_lora -> heads*dim), wk (h -> dim),
        # k_norm (LayerNorm: weight + bias), weights_proj (h -> heads).
        q_in = a.q_lora_rank or h
        total += q_in * a.index_n_heads * a.index_head_dim + h * a.index_head_dim
        total += 2 * a.index_head_dim + h * a.index_n_heads
    return total


def router_params(h: int, moe: Moe) -> int:
    n = h * moe.n_experts
    if moe.router_bias:
        n += moe.n_experts
    # expert_score_bias (DeepSeek-V3's e_score_correction_bias) is a registered buffer in
    # transformers, not a parameter, so instantiating the model does not count it.
    if moe.shared_gate:
        n += h
    if moe.router_scales:
        n += h + moe.n_experts  # Gemma4TextRouter.scale and .per_expert_scale
    return n


def _layers(model: Model) -> dict[tuple[int | None, bool, bool], int]:
    """Layers counted by (window, stores KV, MoE); per-layer tuples of the wrong length (a Model
    built by hand) read as full attention, storing KV, dense, as before these tuples existed."""
    n = model.n_layers
    win = model.layer_window if len(model.layer_window) == n else (None,) * n
    kv = model.layer_stores_kv if len(model.layer_stores_kv) == n else (True,) * n
    moe = model.layer_moe if len(model.layer_moe) == n else (False,) * n
    out: dict[tuple[int | None, bool, bool], int] = {}
    for key in zip(win, kv, moe):
        out[key] = out.get(key, 0) + 1
    return out


@lru_cache(maxsize=4096)
def param_counts(model: Model) -> ParamCounts:
    """Exact parameter counts of `model`, by part (cached: a Model is frozen)."""
    if model.is_totals_only:
        if model.total_params_given is None or model.active_params_given is None:
            raise TokenmathError(f"model {model.name!r} gives neither an architecture nor total_params and active_params")
        return ParamCounts(total=int(model.total_params_given), active=int(model.active_params_given))

    h, V = model.hidden, model.vocab
    a = model.attention
    norm_vec = h * (2 if model.norm_bias else 1)
    n_moe = sum(model.layer_moe)

    embedding = V * h
    lm_head = 0 if model.tied_embeddings else V * h
    attention = mlp = 0
    for (window, stores, is_moe), n in _layers(model).items():
        attention += n * attention_params(h, model.attention_of(window), stores or model.shared_kv_has_kv_proj)
        if model.mlp is not None and (not is_moe or model.moe_with_dense_mlp):
            m = model.mlp
            if not stores and model.shared_kv_mlp_factor != 1:
                m = Mlp(m.intermediate * model.shared_kv_mlp_factor, m.gated, m.bias)
            mlp += n * mlp_params(h, m)
    routed = routed_active = shared = router = 0
    if model.moe and n_moe:
        per_expert = mlp_params(h, model.moe.expert)
        routed = n_moe * model.moe.n_experts * per_expert
        routed_active = n_moe * model.moe.k * per_expert
        if model.moe.shared:
            shared = n_moe * model.moe.n_shared * mlp_params(h, model.moe.shared)
        router = n_moe * router_params(h, model.moe)
    norms = model.n_layers * model.norms_per_layer * norm_vec + norm_vec  # + final norm
    if model.moe and n_moe:
        norms += n_moe * model.moe.norms * norm_vec
    ple_table = ple_proj = 0
    d = model.per_layer_input_dim
    if d:
        L = model.n_layers
        ple_table = (model.per_layer_input_vocab or V) * L * d  # embed_tokens_per_layer
        ple_proj = h * L * d + L * 2 * h * d  # per_layer_model_projection; each layer's gate + projection
        norms += d + L * norm_vec  # per_layer_projection_norm; each layer's post_per_layer_input_norm

    total = embedding + lm_head + attention + mlp + routed + shared + router + norms + ple_table + ple_proj
    active = total - routed + routed_active

    mtp = 0
    if model.mtp_layers:
        # DeepSeek-V3 MTP module: enorm + hnorm, eh_proj (2h -> h), one decoder layer of the last
        # layer's kind, and the shared head's norm; embedding and head are shared with the main model.
        last_is_moe = bool(model.layer_moe and model.layer_moe[-1])
        layer = attention_params(h, a) + model.norms_per_layer * norm_vec
        if last_is_moe and model.moe:
            layer += model.moe.n_experts * mlp_params(h, model.moe.expert) + router_params(h, model.moe)
            if model.moe.shared:
                layer += model.moe.n_shared * mlp_params(h, model.moe.shared)
        else:
            layer += mlp_params(h, model.mlp)
        mtp = model.mtp_layers * (layer + 2 * h * h + 3 * norm_vec)

    return ParamCounts(
        total=total, active=active, embedding=embedding, attention=attention, mlp=mlp,
        routed_experts=routed, routed_experts_active=routed_active, shared_experts=shared,
        router=router, norms=norms, lm_head=lm_head, mtp=mtp,
        per_layer_embedding=ple_table, per_layer_input=ple_proj,
    )


def matmul_params_per_token(model: Model) -> int:
    """Parameters a token multiplies by: active minus the input-embedding tables (lookups, no FLOPs:
    the token embedding and Gemma 4's per-layer input embedding).

    With tied embeddings the token table is the lm_head too, so it stays in.
    """
    pc = param_counts(model)
    if pc.embedding is None:
        return pc.active
    lookups = (pc.per_layer_embedding or 0) + (0 if model.tied_embeddings else pc.embedding)
    return pc.active - lookups


@lru_cache(maxsize=4096)
def weight_bytes(model: Model, weight_dtype: str | None = None) -> float:
    """Bytes to store the weights. With `weight_dtype` every parameter is stored in it (the lecture's
    N_total × bytes/weight); with None each part takes the checkpoint's native dtype (e.g. gpt-oss:
    MXFP4 experts, BF16 attention/embeddings; DeepSeek-V3: FP8 linears, BF16 embeddings and norms)."""
    pc = param_counts(model)
    if weight_dtype is not None:
        return pc.total * dtype_bytes(weight_dtype)
    if pc.embedding is None:
        return pc.total * dtype_bytes(model.weight_dtype)
    q, base = dtype_bytes(model.weight_dtype), dtype_bytes(model.base_dtype)
    total = 0.0
    for part, n in pc.parts().items():
        key = "embedding" if part == "per_layer_embedding" else part
        unq = key in model.unquantized_parts or (key == "attention" and "attention" in model.unquantized_parts)
        total += n * (base if unq else q)
    return total


def weights_read_bytes(model: Model, weight_dtype: str | None = None) -> float:
    """Bytes of weights one forward pass streams from HBM: all stored weights except the lookup
    tables (the untied input embedding, Gemma 4's per-layer input embedding), of which a pass
    reads only the rows of its tokens (negligible)."""
    total = weight_bytes(model, weight_dtype)
    pc = param_counts(model)
    if pc.embedding is None:
        return total
    lookups = (pc.per_layer_embedding or 0) + (0 if model.tied_embeddings else pc.embedding)
    if not lookups:
        return total
    if weight_dtype is not None:
        b = dtype_bytes(weight_dtype)
    else:
        b = dtype_bytes(model.base_dtype if "embedding" in model.unquantized_parts else model.weight_dtype)
    return total - lookups * b


def routed_expert_bytes(model: Model, weight_dtype: str | None = None) -> float:
    """Bytes of the routed experts alone (what a small batch may skip fetching)."""
    pc = param_counts(model)
    if not pc.routed_experts:
        return 0.0
    return pc.routed_experts * dtype_bytes(weight_dtype or model.weight_dtype)
