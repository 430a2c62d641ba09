"""The vocabulary of parallelism: what a layout is, where its stages sit, which link a transfer
takes, and the divisor rules a layout obeys. No physics: these say how a model is cut, not how
long anything takes. Both the bound (layout.py) and the estimate (stepmodel.py, estimate.py)
build on them. (Not to be confused with parallel.py, the task runner.)

A layout is TP × EP × PP × DP. Inside one pipeline stage `stage_chips = max(TP, EP)` chips hold
that stage's layers: the routed experts are split over all of them (EP groups, each TP'd if
TP > EP), attention/dense weights are split TP ways and replicated over the remaining
`attention_dp = stage_chips / TP` ranks, which each serve their own share of the sequences
(attention data parallelism — what MLA models use, since the MLA latent cannot be split by heads).
A sequence lives on one attention-DP rank (its KV is there): ranks hold whole sequences, so the
busiest holds at least one whole sequence (`busiest_rank_share`), and only with more than one rank
must tokens travel to their experts (with one, every chip of the stage holds every token).
A replica is PP stages; DP replicas serve independent traffic.

Redundant experts (DeepSeek's EPLB: "32 redundant routed experts" in both its EP32 prefill and
EP144 decode units, github deepseek-ai/open-infra-index 202502OpenSourceWeek/day_6_...overview.md,
commit 56d8685) add R copies of popular experts to the E routed ones, so E + R expert slots are
spread over the EP ranks: they let EP be a degree that does not divide E (256 + 32 = 288 = 2 × 144)
and cost (E + R)/EP experts of memory per chip instead of E/EP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import TokenmathError
from .specs import Model, System

# A named, sourced assumption: one NIC -> top-of-rack switch -> NIC hop between scale-up domains.
# DeepEP's low-latency kernels (github deepseek-ai/DeepEP README, H800 + CX7 400 Gb/s InfiniBand)
# finish a whole 128-token EP8 dispatch in 77 µs and an EP256 one in 194 µs, so one hop is at most
# tens of µs; 10 µs is the default. The lecture's "a few ms, maybe off by 10×" (1:15) is 10–100×
# too high (lecture-claims L34). Hops inside a scale-up domain are treated as free.
HOP_LATENCY_S_DEFAULT = 10e-6


@dataclass(frozen=True)
class Layout:
    """TP × EP × PP × DP with m microbatches in flight per replica (default m = PP), and R
    redundant expert copies spread over the EP ranks with the routed experts."""

    tp: int = 1
    ep: int = 1
    pp: int = 1
    dp: int = 1
    microbatches: int | None = None
    redundant_experts: int = 0

    @property
    def stage_chips(self) -> int:
        return max(self.tp, self.ep)

    @property
    def replica_chips(self) -> int:
        return self.pp * self.stage_chips

    @property
    def chips(self) -> int:
        return self.dp * self.replica_chips

    @property
    def attention_dp(self) -> int:
        return self.stage_chips // self.tp

    @property
    def m(self) -> int:
        return self.microbatches or self.pp

    def describe(self) -> str:
        parts = [f"TP{self.tp}", f"EP{self.ep}", f"PP{self.pp}", f"DP{self.dp}"]
        extra = f", {self.redundant_experts} redundant experts" if self.redundant_experts else ""
        return "×".join(parts) + f" (m={self.m}{extra})"


class Layouts:
    """Several layouts as columns of shape (n, 1), so layout_memory and op_step evaluate them
    all in one broadcast against a batch axis (the planner's search). Same attribute names as
    Layout; `items` keeps the layouts themselves."""

    def __init__(self, items):
        self.items = tuple(items)
        col = lambda f: np.array([f(x) for x in self.items], float)[:, None]  # noqa: E731
        self.tp, self.ep, self.pp = col(lambda x: x.tp), col(lambda x: x.ep), col(lambda x: x.pp)
        self.stage_chips, self.replica_chips = col(lambda x: x.stage_chips), col(lambda x: x.replica_chips)
        self.attention_dp, self.m = col(lambda x: x.attention_dp), col(lambda x: x.m)
        self.redundant_experts = col(lambda x: x.redundant_experts)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Placement:
    """Where a replica's stages sit. A stage that fits a scale-up domain never straddles two:
    ⌊domain/stage⌋ stages share a domain and the rest of it idles (the lecture's 256 experts on
    64 of an NVL72's 72 GPUs); a stage larger than a domain spans ⌈stage/domain⌉ whole domains."""

    stage_domain: tuple[int, ...]  # domain index of each stage
    domains: int
    billed_chips: float  # chips a replica keeps busy or idle (fractional when replicas share a domain)
    idle_chips: float


def placement(layout: Layout, system: System) -> Placement:
    """Which scale-up domain each stage of a replica sits in, and the chips the replica bills."""
    dom, sc, pp = system.scaleup_chips, layout.stage_chips, layout.pp
    if sc > dom:
        per = math.ceil(sc / dom)
        return Placement(tuple(i * per for i in range(pp)), per * pp, per * pp * dom, per * pp * dom - sc * pp)
    per_domain = dom // sc
    stage_domain = tuple(i // per_domain for i in range(pp))
    domains = stage_domain[-1] + 1
    if domains == 1:
        # replicas share a domain: each is billed its share of the domain, idle chips included
        replicas_per_domain = dom // layout.replica_chips
        billed = dom / replicas_per_domain
    else:
        billed = float(domains * dom)
    return Placement(stage_domain, domains, billed, billed - layout.replica_chips)


def busiest_rank_share(items, ranks):
    """Whole items (sequences, prompts) spread over `ranks` attention-DP ranks: a sequence lives on
    one rank, so fewer items than ranks leave the busiest with one whole item (one prompt is one
    rank's, not 1/ranks of it on each), and more leave it items/ranks — exact when they fill the
    ranks evenly, within one item of a round-robin's ⌈items/ranks⌉ otherwise, and continuous in
    items so that searches over the batch stay well posed. With one rank (or under one item) the
    count passes through unchanged. Broadcasts."""
    if isinstance(items, (int, float)) and isinstance(ranks, (int, float)):  # one pass: plain floats
        return max(items / ranks, min(items, 1.0)) if ranks > 1 else float(items)
    items = np.asarray(items, float)
    r = np.asarray(ranks, float)
    return np.where(r > 1, np.maximum(items / r, np.minimum(items, 1.0)), items)


def redundant_experts_for(n_experts: int, ep: int) -> int:
    """The fewest redundant expert copies R that make E + R expert slots divide evenly over EP
    ranks: 0 where EP divides E (or EP = 1), else EP − E mod EP (DeepSeek-V3's 256 experts on
    EP144: 32, the count DeepSeek runs; on EP72: 32 as well)."""
    if ep <= 1:
        return 0
    return (-int(n_experts)) % int(ep)


MAX_REDUNDANT_FACTOR = 1  # R ≤ E: at most one extra copy of every expert


def largest_divisor_at_most(n: int, cap: int) -> int:
    """The largest d ≤ cap that divides n (1 at least): e.g. the EP degree 256 experts allow on
    72 chips is 64."""
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def check_layout(model: Model, system: System, layout: Layout, chips: int | None = None) -> None:
    """Validate at the edge, with the numbers in the message."""
    for name in ("tp", "ep", "pp", "dp"):
        v = getattr(layout, name)
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise TokenmathError(f"{name.upper()} = {v!r} must be a whole number >= 1")
    if layout.microbatches is not None and layout.microbatches < 1:
        raise TokenmathError(f"microbatches = {layout.microbatches!r} must be >= 1")
    R = layout.redundant_experts
    if not isinstance(R, (int, np.integer)) or R < 0:
        raise TokenmathError(f"redundant experts = {R!r} must be a whole number >= 0")
    if model.is_totals_only:
        raise TokenmathError(
            f"model {model.name!r} is defined by totals only; a layout needs its architecture (a config.json)"
        )
    a = model.attention
    if layout.ep > 1 and model.moe is None:
        raise TokenmathError(f"EP = {layout.ep} but {model.name} is dense (no experts to spread); use TP or DP")
    if R and (model.moe is None or layout.ep <= 1):
        raise TokenmathError(f"redundant experts = {R} need expert parallelism (EP > 1 on an MoE model)")
    if model.moe is not None and R > MAX_REDUNDANT_FACTOR * model.moe.n_experts:
        raise TokenmathError(f"redundant experts = {R} exceed the model's {model.moe.n_experts} experts (at most one "
                             f"extra copy of each): EP {layout.ep} is too wide to fill with {model.moe.n_experts} experts")
    if model.moe is not None and layout.ep > 1 and (model.moe.n_experts + R) % layout.ep:
        E = model.moe.n_experts
        best = largest_divisor_at_most(E, layout.ep)
        need = redundant_experts_for(E + R, layout.ep) + R
        raise TokenmathError(
            f"{E} experts{f' + {R} redundant' if R else ''} do not divide over EP {layout.ep}: use EP {best} and "
            f"leave {layout.ep - best} chips idle, or replicate experts ({need} redundant experts make "
            f"{E + need} = {(E + need) // layout.ep} per chip × {layout.ep})"
        )
    lo, hi = sorted((layout.tp, layout.ep))
    if hi % lo:
        raise TokenmathError(f"TP {layout.tp} and EP {layout.ep} must divide one another (a stage has max(TP, EP) chips)")
    if a.n_heads % layout.tp:
        raise TokenmathError(f"{a.n_heads} attention heads do not divide over TP {layout.tp}")
    if layout.pp > model.n_layers:
        raise TokenmathError(f"PP {layout.pp} exceeds the model's {model.n_layers} layers")
    if chips is not None and chips != layout.chips:
        raise TokenmathError(
            f"TP({layout.tp}) × EP({layout.ep}) × PP({layout.pp}) × DP({layout.dp}) needs {layout.chips} chips "
            f"(max(TP, EP) = {layout.stage_chips} per stage), but {chips} were given"
        )


def kv_head_split(model: Model, layout: Layout | Layouts):
    """How many ways TP splits one sequence's KV: by KV heads for GQA (replicated past that),
    not at all for MLA's single latent. A column (n, 1) for Layouts."""
    a = model.attention
    if a.kind == "mla":
        return 1
    return np.minimum(layout.tp, a.n_kv_heads) if isinstance(layout, Layouts) else min(layout.tp, a.n_kv_heads)


def link_bytes_per_s(system: System, across: bool, what: str) -> float:
    """Bandwidth per chip, one direction, of the link a transfer takes: the scale-out NIC when it
    crosses between scale-up domains (`across`), else the scale-up link. Raises, naming `what`
    needs it, where the catalog publishes none."""
    bw = system.scaleout_bytes_per_s if across else system.scaleup_bytes_per_s
    if not bw:
        link = "scale-out" if across else "scale-up"
        raise TokenmathError(
            f"{what} needs {system.name}'s {link} bandwidth, which the catalog does not publish; "
            f"give it in a --catalog table ({'scaleout' if across else 'scaleup'}_bytes_per_s)"
        )
    return bw
