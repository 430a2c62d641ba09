"""Speculative decoding and multi-token prediction (MTP): the one place their step is composed.

A decode step that verifies k drafted tokens runs the target model over 1 + k tokens per
sequence: it reads the weights and the KV once and does (1 + k) tokens of compute. Each draft is
accepted with probability a, and the chain stops at the first rejection, so a step yields

    e = 1 + a + a² + … + a^k = (1 − a^(k+1)) / (1 − a)      tokens per sequence

(the expected accepted drafts + the one token the pass always yields; Leviathan et al. 2023,
"Fast Inference from Transformers via Speculative Decoding", eq. 1). Time per output token is
T_verify / e.

The step model times a pass of S > 1 tokens per sequence as a prompt (flash-attention efficiency
at length S), not as a decode kernel with k + 1 queries, so the verify pass is composed from
decode steps (serving.speculative_decode and fleet's decode pools both call verify_pass_s):

    T_verify = T_dec(B, L) + [T_dec(B·(k+1), 0) − T_dec(B, 0)] + attention_s(B, L)·(ρ − 1)

— the decode step, plus what k·B more tokens add to the GEMMs and the all-to-all (at no context),
plus the decode attention scaled by the roofline's ratio for k + 1 queries on one KV read,
ρ = max((k+1)·f/F, r/BW) / max(f/F, r/BW) (f attention FLOPs, r KV bytes per sequence, F the
BF16 peak). An approximation, stated with every result that uses it.
"""

from __future__ import annotations

import numpy as np

from .errors import TokenmathError
from .kvcache import attention_flops_per_token, kv_cache
from .roofline import resolve_dtypes
from .specs import Dtypes, Model, System


def expected_tokens_per_verify(draft_tokens: int, acceptance: float) -> float:
    """Tokens produced by one verify pass with k drafted tokens each accepted with probability a
    (Leviathan et al. 2023, eq. 1): (1 − a^(k+1)) / (1 − a); k + 1 when a = 1."""
    if draft_tokens < 0 or int(draft_tokens) != draft_tokens:
        raise TokenmathError(f"draft tokens = {draft_tokens!r} must be a whole number >= 0")
    if not (0 <= acceptance <= 1):
        raise TokenmathError(f"acceptance rate = {acceptance!r} must be between 0 and 1")
    if acceptance == 1:
        return draft_tokens + 1.0
    return (1 - acceptance ** (draft_tokens + 1)) / (1 - acceptance)


def attention_query_ratio(model: Model, system: System, context: float, draft_tokens: int,
                          dtypes: Dtypes = Dtypes()) -> float:
    """ρ: the roofline's time of decode attention with k + 1 queries on one KV read over its time
    with one query (1 while the KV read binds, up to k + 1 once compute does)."""
    _, kv_dt, *_ = resolve_dtypes(model, system, dtypes)
    f = float(attention_flops_per_token(model, context)) / float(
        system.chip.flops_per_s("bf16") or system.chip.flops_per_s(system.compute_class_for("fp8")))
    r = float(kv_cache(model, float(context) + 1.0, kv_dtype=kv_dt).read_bytes) / system.chip.hbm_bytes_per_s
    k = float(draft_tokens)
    return max((k + 1) * f, r) / max(f, r, 1e-30)


def verify_pass_s(model: Model, system: System, layout, batch, context: float, draft_tokens: int, *, kernels,
                  engine=None, dtypes: Dtypes = Dtypes()) -> tuple[np.ndarray, np.ndarray]:
    """(T_verify, T_dec) for each batch in `batch` (a 1-D array) on one layout: the verify pass of
    k drafts composed from decode steps (module docstring) and the plain decode step beside it."""
    from .stepmodel import op_step

    B = np.atleast_1d(np.asarray(batch, float)).reshape(-1)
    k = float(draft_tokens)
    kw = dict(kernels=kernels, engine=engine, dtypes=dtypes)
    dec = op_step(model, system, layout, B, float(context), 1.0, check=False, **kw)
    plain = np.asarray(dec.step_s, float).reshape(-1)
    if k == 0:
        return plain, plain
    more = np.asarray(op_step(model, system, layout, np.concatenate([B * (k + 1), B]), 0.0, 1.0, check=False,
                              **kw).step_s, float).reshape(-1)
    rho = attention_query_ratio(model, system, context, draft_tokens, dtypes)
    att = np.asarray(dec.attention_s, float).reshape(-1) * np.ones_like(plain)
    return plain + (more[: B.size] - more[B.size:]) + att * (rho - 1.0), plain


__all__ = ["expected_tokens_per_verify", "attention_query_ratio", "verify_pass_s"]
