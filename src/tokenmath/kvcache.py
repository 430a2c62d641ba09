"""KV-cache bytes: stored per sequence and read per decode step, for every attention kind.

Per layer that stores KV, one token costs
    GQA / MHA / MQA:  n_kv_heads × (head_dim + v_head_dim) × bytes      (K and V)
    MLA:              (kv_lora_rank + qk_rope_head_dim) × bytes          (the shared latent + rope key)
A sliding-window or chunked layer keeps min(L, W) tokens; a layer that reuses another layer's KV
keeps none. Each layer uses its own geometry: Gemma 4's full-attention layers have their own KV
heads and head dim (`Model.global_attention`), so each layer group has its own bytes per token.
Keys reused as values (Gemma 4 attention_k_eq_v) still cache a K and a V tensor per token: the
value is the key projection's output before k_norm and RoPE, a different tensor, and transformers'
cache stores both. Sparse attention (DeepSeek-V3.2 DSA) stores every token's latent plus an indexer key,
but a decode step reads only the top-k selected tokens' latents plus all L indexer keys.

Everything broadcasts over `context_tokens` (numpy arrays welcome).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import TokenmathError
from .specs import Model
from .units import dtype_bytes

# DeepSeek-V3.2's lightning indexer keeps its keys in FP8 (DeepSeek-V3.2-Exp report, sec. 2.1:
# "the lightning indexer ... can be implemented in FP8"). A named, overridable assumption.
INDEX_DTYPE_DEFAULT = "fp8"


@dataclass(frozen=True)
class KvCache:
    """KV bytes of one sequence at `context_tokens`, and per context token."""

    context_tokens: float | np.ndarray
    kv_dtype: str
    stored_bytes: float | np.ndarray  # held in memory for one sequence
    read_bytes: float | np.ndarray  # streamed by one decode step of that sequence
    stored_bytes_per_token: float | np.ndarray
    read_bytes_per_token: float | np.ndarray
    full_bytes_per_token: float  # per token of the full-attention layers (the L-proportional slope)
    layers_full: int
    layers_windowed: int
    layers_shared: int
    sparse_topk: int | None = None


def kv_elements_per_token_per_layer(model: Model, window: int | None = 0) -> int:
    """KV elements one token costs in one layer of the given layer_window entry (default: the
    main / sliding layers' geometry, `model.attention`)."""
    a = model.attention if window == 0 else model.attention_of(window)
    return _kv_elements(a)


def _kv_elements(a) -> int:
    if a.kind == "mla":
        return a.kv_lora_rank + a.qk_rope_head_dim
    return a.n_kv_heads * (a.head_dim + a.v_head_dim)


@dataclass(frozen=True)
class Terms:
    """A per-token quantity summed over layer groups, reduced to numbers once per model:
    value(L) = Σ_g a_g·sel(min(L, w_g)) + b_g·min(L, w_g), where sel() is what sparse attention
    reads of the kept tokens. kv_cache and attention_flops_per_token evaluate these; so does the
    roofline's scalar path, which is why they are plain floats and tuples."""

    groups: tuple[tuple[int | None, float, float], ...]  # (window or None, a, b)
    topk: int | None
    mode: str

    def at(self, L):
        """value(L) for a float (pure Python, no numpy) or an array (broadcasts)."""
        scalar = isinstance(L, (int, float))
        mn = min if scalar else np.minimum
        total = 0.0
        for w, a, b in self.groups:
            kept = L if w is None else mn(L, w)
            seen = kept
            if self.topk:
                if self.mode == "sqrt":
                    seen = mn(kept, (self.topk * kept) ** 0.5 if scalar else np.sqrt(self.topk * kept))
                else:
                    seen = mn(kept, self.topk)
            total = total + a * seen + b * kept
        return total


@dataclass(frozen=True)
class KvTerms:
    """kv_cache's numbers for one (model, KV dtype, index dtype): stored and read bytes as Terms."""

    stored: Terms
    read: Terms
    full_bytes_per_token: float
    layers_full: int
    layers_windowed: int
    layers_shared: int
    topk: int | None


@lru_cache(maxsize=1024)
def kv_terms(model: Model, kv_dtype: str = "bf16", index_dtype: str = INDEX_DTYPE_DEFAULT) -> KvTerms:
    """Per layer group: bytes stored per kept token, bytes read per selected token and per kept token."""
    b = dtype_bytes(kv_dtype)
    if model.is_totals_only:
        if model.kv_bytes_per_token_given is None:
            raise TokenmathError(f"model {model.name!r} has no kv_bytes_per_token and no architecture to derive it")
        per = float(model.kv_bytes_per_token_given)
        topk = model.sparse_topk_given
        return KvTerms(Terms(((None, 0.0, per),), None, "topk"), Terms(((None, per, 0.0),), topk, model.sparse_mode),
                       per, model.n_layers or 0, 0, 0, topk)
    a = model.attention
    stored, read = [], []
    full = windowed = shared = 0
    full_bytes = 0.0
    for (window, stores), n in _layer_groups(model).items():
        if not stores:
            shared += n
            continue
        g = model.attention_of(window)
        per_layer = float(_kv_elements(g) * b)
        idx = float(g.index_head_dim * dtype_bytes(index_dtype)) if g.index_topk and g.index_head_dim else 0.0
        stored.append((window, 0.0, n * (per_layer + idx)))
        read.append((window, n * per_layer, n * idx))
        if window is None:
            full += n
            full_bytes += n * (per_layer + idx)
        else:
            windowed += n
    return KvTerms(Terms(tuple(stored), None, "topk"), Terms(tuple(read), a.index_topk, model.sparse_mode),
                   full_bytes, full, windowed, shared, a.index_topk)


def kv_cache(
    model: Model,
    context_tokens: float | np.ndarray,
    kv_dtype: str = "bf16",
    *,
    index_dtype: str = INDEX_DTYPE_DEFAULT,
) -> KvCache:
    """KV bytes stored and read for one sequence of `context_tokens` tokens."""
    L = np.asarray(context_tokens, dtype=float)
    if np.any(L < 0) or not np.all(np.isfinite(L)):
        raise TokenmathError(f"context = {context_tokens!r} must be a finite number of tokens >= 0")
    t = kv_terms(model, kv_dtype, index_dtype)
    stored = np.asarray(t.stored.at(L), dtype=float) + np.zeros_like(L)
    read = np.asarray(t.read.at(L), dtype=float) + np.zeros_like(L)
    return _result(L, kv_dtype, stored, read, t.full_bytes_per_token, t.layers_full, t.layers_windowed,
                   t.layers_shared, t.topk)


def with_sparse_attention(model: Model, topk: int, *, mode: str = "topk", index_head_dim: int = 0,
                          index_n_heads: int = 0) -> Model:
    """The same model with sparse attention: a decode step reads min(L, topk) cached tokens per
    layer ("topk", DeepSeek-V3.2's DSA) or min(L, √(topk·L)) ("sqrt", the lecture's sketch), plus
    an indexer key of `index_head_dim` elements per token if given. Parameters are unchanged
    unless index_n_heads is given. A what-if for any catalog model."""
    from dataclasses import replace

    if topk is None or topk < 1:
        raise TokenmathError(f"sparse attention topk = {topk!r} must be a positive number of tokens")
    if mode not in ("topk", "sqrt"):
        raise TokenmathError(f"sparse attention mode = {mode!r}; expected 'topk' or 'sqrt'")
    if model.is_totals_only:
        return replace(model, sparse_topk_given=int(topk), sparse_mode=mode, name=f"{model.name}+sparse")
    a = replace(model.attention, index_topk=int(topk), index_head_dim=index_head_dim or model.attention.index_head_dim,
                index_n_heads=index_n_heads or model.attention.index_n_heads)
    return replace(model, attention=a, sparse_mode=mode, name=f"{model.name}+sparse")


def _result(L, kv_dtype, stored, read, full_per_token, full, windowed, shared, topk) -> KvCache:
    with np.errstate(divide="ignore", invalid="ignore"):
        # at L = 0 the per-token figure is the limit L -> 0+, i.e. every layer's per-token bytes
        s_pt = np.where(L > 0, stored / np.where(L > 0, L, 1), np.nan)
        r_pt = np.where(L > 0, read / np.where(L > 0, L, 1), np.nan)
    if np.any(L == 0):
        s_pt = np.where(L > 0, s_pt, full_per_token)
        r_pt = np.where(L > 0, r_pt, full_per_token)
    return KvCache(
        context_tokens=_scalar(L), kv_dtype=kv_dtype, stored_bytes=_scalar(stored), read_bytes=_scalar(read),
        stored_bytes_per_token=_scalar(s_pt), read_bytes_per_token=_scalar(r_pt),
        full_bytes_per_token=float(full_per_token), layers_full=full, layers_windowed=windowed,
        layers_shared=shared, sparse_topk=topk,
    )


def _scalar(x):
    x = np.asarray(x, dtype=float)
    return float(x) if x.ndim == 0 else x


def kv_bytes_per_token(model: Model, context_tokens: float = 1.0, kv_dtype: str = "bf16") -> float | np.ndarray:
    """Stored KV bytes per token of a sequence of `context_tokens` (the usual "KV bytes/token")."""
    return kv_cache(model, context_tokens, kv_dtype).stored_bytes_per_token


def attention_flops_per_token(model: Model, context_tokens: float | np.ndarray, *, absorbed: bool = True) -> float | np.ndarray:
    """FLOPs one new token spends attending to `context_tokens` earlier tokens (score + value).

    GQA: 2 × n_heads × (head_dim + v_head_dim) per attended token per layer.
    MLA, absorbed form used for decode: 2 × n_heads × (2·kv_lora_rank + rope_dim); with
    absorbed=False the form prefill kernels run (FlashMLA / FA on decompressed K, V):
    2 × n_heads × (qk_nope + rope + v_head_dim).
    DSA: attends to min(L, top-k) tokens, plus the indexer's 2 × index_heads × index_dim × L.
    Totals-only models have no attention shape: 0 (the lecture's "small until ~1M tokens").
    """
    L = np.asarray(context_tokens, dtype=float)
    return _scalar(attention_terms(model, absorbed).at(L) + np.zeros_like(L))


@lru_cache(maxsize=1024)
def attention_terms(model: Model, absorbed: bool = True) -> Terms:
    """attention_flops_per_token as Terms: per window group, FLOPs per attended token and the
    indexer's FLOPs per kept token (shared-KV layers still attend)."""
    if model.is_totals_only:
        return Terms((), None, "topk")
    windows: dict = {}
    for window in model.layer_window:
        windows[window] = windows.get(window, 0) + 1
    groups = []
    for w, n in windows.items():
        a = model.attention_of(w)  # Gemma 4: full-attention layers have their own head dim
        if a.kind == "mla" and absorbed:
            per = 2 * a.n_heads * (2 * a.kv_lora_rank + a.qk_rope_head_dim)
        elif a.kind == "mla":  # prefill runs MLA as multi-head attention on the decompressed K and V
            per = 2 * a.n_heads * (a.qk_nope_head_dim + a.qk_rope_head_dim + a.v_head_dim)
        else:
            per = 2 * a.n_heads * (a.head_dim + a.v_head_dim)
        indexer = 2 * (a.index_n_heads or 0) * (a.index_head_dim or 0) if a.index_topk else 0
        groups.append((w, float(n * per), float(n * indexer)))
    return Terms(tuple(groups), model.attention.index_topk, model.sparse_mode)


@lru_cache(maxsize=1024)
def _layer_groups(model: Model) -> dict[tuple[int | None, bool], int]:
    """Layers counted by (window, stores KV): usually one or two groups, so sweeps stay vectorised."""
    groups: dict[tuple[int | None, bool], int] = {}
    for key in zip(model.layer_window, model.layer_stores_kv):
        groups[key] = groups.get(key, 0) + 1
    return groups
