"""Wide expert parallelism: an MoE model's routed experts spread over many scale-up domains
(the lecture's 8 → 72 → 576 chips; DeepSeek's EP32 prefill on 4 and EP144 decode on 18 H800
nodes), attention data-parallel over the same chips (one sequence's MLA latent lives on one
rank), dense layers tensor-parallel inside a domain, and the dispatch/combine traffic each
layout sends across domains.

Per MoE layer and token, with EP ranks in D = EP/dom domains of dom chips:

    low-latency kernels   one message per routed expert: k·(dom − 1)/EP copies over the scale-up
                          links, k·(1 − dom/EP) over the scale-out NIC (decode batches)
    normal kernels        one copy per distinct remote domain, forwarded inside it, and one per
                          distinct rank in the home domain (prefill batches)
    node-limited routing  DeepSeek-V3's n_group = 8, topk_group = 4: where the domains divide the
                          groups (EPLB's hierarchical policy), a token reaches at most 4 domains
    bytes                 dispatch FP8 with one scale per 128 channels, combine BF16

(stepmodel.alltoall_copies, ep_alltoall_time: the estimate's `ep_comm_s`, its own named term).
Redundant experts (EPLB) add R slots to the E experts: (E + R)/EP experts of memory per chip,
which is what makes EP144 possible for 256 experts (288 = 2 × 144).

`expert_parallel` reports these terms for one layout; `wide_ep_layouts` enumerates the layouts
the planner (and the fleet) search beyond one domain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import TokenmathError
from .parallelism import Layout, check_layout, placement, redundant_experts_for
from .specs import Dtypes, Model, System

# Domains an EP group may span in the planner's search: the 3-smooth numbers (2^a·3^b) up to 36,
# a ladder with steps of at most 1.5× that holds the deployments published (DeepSeek: 4 and 18
# H800 nodes; LMSYS: 4 and 9 H100 nodes) — a search grid, not a claim about what is best. 1 is a
# whole domain, searched here only where its size does not divide the experts (EP72 on an NVL72
# with 32 redundant experts instead of 8 idle GPUs); otherwise the in-domain search has it.
WIDE_EP_DOMAINS = (1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24, 32, 36)
# The widest EP group searched (chips): "hundreds of chips"; DeepSeek's decode unit is 144.
WIDE_EP_MAX_CHIPS = 320
# Redundant copies the search adds (EPLB) at most, as a share of the routed experts: DeepSeek runs
# 32 on 256 (12.5 %) in both phases (open-infra-index day 6). Beyond this share an EP degree that
# does not divide the experts is skipped.
WIDE_EP_MAX_REDUNDANT_SHARE = 0.125


def wide_ep_layouts(model: Model, system: System, *, max_chips: int = WIDE_EP_MAX_CHIPS,
                    domains: tuple[int, ...] = WIDE_EP_DOMAINS, tps: tuple[int, ...] = (1, 2, 4, 8),
                    max_redundant_share: float = WIDE_EP_MAX_REDUNDANT_SHARE) -> list[Layout]:
    """Wide-EP candidate layouts of `model` on `system`: EP over n whole scale-up domains (n in
    `domains`, EP = n·dom ≤ max_chips; n = 1 only where the domain does not divide the experts,
    e.g. EP72 on an NVL72 with 32 redundant experts), attention data-parallel over the EP group with attention
    TP of `tps` inside a domain (TP divides the heads and the domain; TP 1 is DeepSeek's
    DP144 attention), PP 1, and the fewest redundant experts that make the slots divide over EP
    (skipped above `max_redundant_share` of the experts). Every layout passes check_layout.
    Empty for a dense model or a system without a scale-out link (a layout inside one domain that
    needs redundant experts is offered all the same). Bounded: at most
    len(domains) × len(tps) layouts."""
    if model.moe is None:
        return []
    if max_chips < 1 or max_chips > 100_000:
        raise TokenmathError(f"max chips = {max_chips!r}; expected 1 to 100,000")
    dom, E = system.scaleup_chips, model.moe.n_experts
    out: list[Layout] = []
    for n in domains:
        ep = n * dom
        if ep > max_chips or (n > 1 and not system.scaleout_bytes_per_s):
            break
        R = redundant_experts_for(E, ep)
        if R > max_redundant_share * E or (n == 1 and R == 0):
            continue
        for tp in tps:
            if tp > dom or dom % tp or model.attention.n_heads % tp or ep % tp:
                continue
            lay = Layout(tp=tp, ep=ep, pp=1, redundant_experts=R)
            try:
                check_layout(model, system, lay)
            except TokenmathError:
                continue
            out.append(lay)
    return out


@dataclass(frozen=True)
class ExpertParallel:
    """The cross-domain terms of one expert-parallel layout (per MoE layer and token unless named)."""

    ep: int
    attention_tp: int
    attention_dp: int  # ranks that each hold whole sequences (their KV)
    domains: int  # scale-up domains the EP group spans
    chips_per_domain: int
    expert_slots: int  # routed experts + redundant copies
    redundant_experts: int
    experts_per_chip: float
    node_limit: str  # what group-limited routing does here, in words
    node_limited: bool  # whether it caps the remote domains of the normal kernels
    remote_domains_per_token: float  # normal kernels: distinct remote domains a token is sent to
    in_domain_ranks_per_token: float  # normal kernels: distinct other ranks in its own domain
    low_latency_copies_in_domain: float  # low-latency kernels: one per routed expert, scale-up
    low_latency_copies_across: float  # ... over the scale-out NIC
    scale_out_share: float  # share of the EP group outside a chip's domain
    dispatch_bytes_per_token: float  # one copy: hidden × (FP8 + scales | BF16)
    combine_bytes_per_token: float
    mode: str  # how the estimate's pass dispatches: "low_latency" | "normal" | "allgather" | "alltoall" | "none"
    moe_layers: int
    ep_comm_s: float  # the estimate's dispatch + combine over the step (its own term)
    ep_comm_s_per_layer: float  # one MoE layer, one microbatch
    overlap_s: float  # communication hidden under the other micro-batch (≤ 0)
    kv_room_bytes_per_chip: float  # what a serving engine fills − weights − activations at this batch: what KV may use
    kv_tokens_per_chip: float  # ... in tokens of this model's KV


def expert_parallel(model: Model, system: System, layout: Layout, est, *, engine=None, dtypes: Dtypes = Dtypes(),
                    context: float = 0.0) -> ExpertParallel | None:
    """The wide-EP terms of `layout` beside an estimate `est` of one of its passes (estimate_pass):
    the copies each token sends in and across domains under both kernel families, node-limited
    routing, redundant experts, what the estimate charges for dispatch + combine, and the HBM each
    chip leaves for KV. `engine`: the profile's stepmodel.Engine (how it dispatches; None: the
    roofline's plain all-to-all). None for a dense model or EP 1."""
    from .kvcache import kv_cache
    from .layout import layout_memory
    from .roofline import resolve_dtypes
    from .stepmodel import ACT_BYTES, FP8_DISPATCH_BYTES, a2a_low_latency, alltoall_copies
    from .units import dtype_bytes

    moe = model.moe
    if moe is None or layout.ep <= 1:
        return None
    dom = system.scaleup_chips
    ep, k, E, R = layout.ep, moe.k, moe.n_experts, layout.redundant_experts
    in_dom = min(ep, dom)
    D = max(1, -(-ep // in_dom))
    groups = (moe.n_group, moe.topk_group)
    ll_up, ll_out = (float(x) for x in alltoall_copies("ll", ep, dom, k))
    ht_up, remote = (float(x) for x in alltoall_copies("ht", ep, dom, k, E, groups=groups))
    _, free = (float(x) for x in alltoall_copies("ht", ep, dom, k, E))
    if moe.n_group <= 1:
        limit, limited = "none (the model's routing has no group limit)", False
    elif D <= 1:
        limit, limited = "inside one domain: no remote domains to limit", False
    elif moe.n_group % D == 0:
        limit = (f"{moe.topk_group} of {moe.n_group} expert groups per token, {moe.n_group // D} groups per domain: "
                 f"≤ {min(D, moe.topk_group)} domains, {remote + 1:.2f} on average with its own (unlimited: {free + 1:.2f})")
        limited = remote < free - 1e-12
    else:
        limit = (f"{moe.topk_group} of {moe.n_group} groups per token, but {D} domains do not divide {moe.n_group} groups: "
                 "the load balancer places experts regardless of groups (EPLB's global policy), no limit")
        limited = False
    weight, *_ = resolve_dtypes(model, system, dtypes)
    b_d = FP8_DISPATCH_BYTES if dtype_bytes(weight) <= 1 else ACT_BYTES
    op = est.op
    decode = bool(np.all(np.asarray(op.new_tokens) == 1) and np.all(np.asarray(op.prefill_tokens) == 0))
    eng = engine
    if layout.attention_dp <= 1:
        mode = "none"
    elif eng is None:
        mode = "alltoall"
    elif eng.moe_a2a == "deepep":
        mode = "low_latency" if bool(a2a_low_latency(eng, decode)) else "normal"
    else:
        mode = eng.moe_a2a
    n_moe = int(sum(model.layer_moe))
    mem = layout_memory(model, system, layout, float(np.max(op.batch)), float(np.max(op.context)), dtypes=dtypes,
                        kv_budget="total" if eng is None else eng.kv_budget)
    # KV room in what a serving engine fills of each chip (layout.serving_hbm_bytes), beside weights and activations
    room = float(np.min(mem.serving_bytes_per_chip) - mem.weights_bytes_per_chip - np.max(mem.activation_bytes_per_chip))
    _, kv, *_ = resolve_dtypes(model, system, dtypes)
    per_tok = float(kv_cache(model, max(float(context), 1.0), kv).stored_bytes) / max(float(context), 1.0)
    # a token's KV lives on one attention-DP rank, split over the KV-head shards of its TP group
    from .parallelism import kv_head_split

    tokens = max(room, 0.0) / per_tok * kv_head_split(model, layout) if per_tok > 0 else 0.0
    ep_s = float(np.max(op.ep_comm_s))
    return ExpertParallel(
        ep=ep, attention_tp=layout.tp, attention_dp=layout.attention_dp, domains=placement(layout, system).domains,
        chips_per_domain=dom, expert_slots=E + R, redundant_experts=R, experts_per_chip=(E + R) / layout.stage_chips,
        node_limit=limit, node_limited=bool(limited), remote_domains_per_token=remote, in_domain_ranks_per_token=ht_up,
        low_latency_copies_in_domain=ll_up, low_latency_copies_across=ll_out, scale_out_share=1.0 - in_dom / ep,
        dispatch_bytes_per_token=model.hidden * b_d, combine_bytes_per_token=model.hidden * ACT_BYTES, mode=mode,
        moe_layers=n_moe, ep_comm_s=ep_s, ep_comm_s_per_layer=ep_s / max(n_moe, 1),
        overlap_s=float(np.min(op.overlap_s)), kv_room_bytes_per_chip=room, kv_tokens_per_chip=tokens,
    )
