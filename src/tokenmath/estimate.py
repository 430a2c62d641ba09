"""The answer a user gets: the calibrated estimate of a pass, its 80 % band, and the roofline
bound beside it.

    estimate_pass(model, system, batch, context, new_tokens, chips=8, profile=choose("calibrated"))

runs the per-operation step model (stepmodel.op_step) under a profile (profiles.choose) on the
layout the chips imply (or one given), and returns step time, tokens/s (per replica, chip, user)
and $/Mtok, each labelled, with `range_80` from the cross-validated residuals, MFU and MBU on its
step time, and the roofline bound of the same pass as `roofline` (a Bound: same layout, chips,
dtypes and expert-fetch convention). With the roofline profile every number is the bound.

`roofline_record(bound)` is the `roofline` dict every serving JSON carries beside `estimate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import TokenmathError
from .parallelism import Layout, largest_divisor_at_most, placement
from .profiles import ROOFLINE_PROFILE, Profile, model_class
from .specs import Dtypes, Model, System
from .stepmodel import OpStep, num_or_array, op_step


def default_layout(model: Model, system: System, chips: int) -> Layout:
    """The layout `chips` chips of one replica get when the user names none: MoE models spread
    experts over as many of them as divide the experts (EP, attention data-parallel: DeepSeek's
    256 experts on 64 of an NVL72's 72 GPUs, the rest idle and billed), dense models split by
    tensor parallelism as far as the heads divide, the rest as pipeline stages."""
    n = int(chips)
    if model.is_totals_only:
        raise TokenmathError(f"model {model.name!r} is defined by totals only; the per-operation estimate needs its "
                             "architecture (a config.json) — use --efficiency roofline")
    if model.moe is not None:
        ep = largest_divisor_at_most(model.moe.n_experts, n)
        if ep > 1:
            return Layout(tp=1, ep=ep)
    tp = largest_divisor_at_most(model.attention.n_heads, n)
    pp = n // tp if n % tp == 0 else 1
    return Layout(tp=tp, pp=max(1, min(pp, model.n_layers)))


@dataclass(frozen=True)
class Bound:
    """The roofline bound of one pass: the same layout, chips, dtypes and expert-fetch convention
    as the estimate beside it, at peak FLOP/s and HBM bandwidth, ideal links and no latencies.
    Times are what one chip spends on each resource over the step; `bound` names the largest."""

    step_s: float | np.ndarray
    compute_s: float | np.ndarray
    weights_s: float | np.ndarray
    kv_s: float | np.ndarray
    activations_s: float | np.ndarray
    network_s: float | np.ndarray
    bound: str | np.ndarray  # "compute" | "memory" | "network"
    tokens_per_s: float | np.ndarray  # one replica
    tokens_per_s_per_chip: float | np.ndarray  # per billed chip
    tokens_per_s_per_user: float | np.ndarray
    usd_per_mtok: float | np.ndarray | None
    mfu: float | np.ndarray  # on the bound's own step time
    mbu: float | np.ndarray
    label: str = "roofline bound"

    @property
    def memory_s(self):
        return self.weights_s + self.kv_s + self.activations_s


ROOFLINE_KEYS = ("step_s", "tokens_per_s", "tokens_per_s_per_chip", "usd_per_mtok", "bound")


def roofline_record(bound, **extra) -> dict:
    """The `roofline` dict every serving JSON carries beside its `estimate` label: the bound's
    step_s, tokens_per_s, tokens_per_s_per_chip, usd_per_mtok and bound (what decides it), plus
    mfu, mbu and its terms where the object has them, plus `extra` (e.g. a closed form's name).

    `bound`: anything with those attributes — a Bound (estimate_pass(...).roofline), a roofline
    StepTime (roofline.step_time) or a LayoutStep — or a dict with those keys. Arrays (a sweep)
    become lists; a missing price is None."""
    get = (lambda k: bound.get(k)) if isinstance(bound, dict) else (lambda k: getattr(bound, k, None))
    rec = {}
    for k in ROOFLINE_KEYS + ("tokens_per_s_per_user", "mfu", "mbu", "compute_s", "weights_s", "kv_s",
                              "activations_s", "network_s"):
        v = get(k)
        if v is None and k not in ROOFLINE_KEYS:
            continue
        rec[k] = _plain(v)
    rec.update({k: _plain(v) for k, v in extra.items()})
    return rec


def _plain(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


@dataclass(frozen=True)
class Replica:
    """How many chips one replica runs on, and why: what the user asked for, what the layout uses
    and bills, and whether it grew past the scale-up domain to hold weights + KV."""

    chips_requested: int | None  # --chips (None: not given)
    chips: int  # chips the layout uses
    billed_chips: float  # ... with the idle chips its placement strands in its domains
    scaleup_chips: int
    grown_to_fit: bool  # no --chips, and the replica is larger than one scale-up domain to fit
    unused_chips: int  # --chips the default layout could not use (not in the replica, not billed)
    layout: Layout
    note: str  # one sentence, or "" when nothing needs saying


def _layouts_for(model: Model, system: System, n: int) -> list[Layout]:
    """The default layout of n chips, then (MoE) the same EP group with attention tensor-parallel
    inside it (TP 2, 4, … up to EP, dividing the heads): fewer copies of the dense weights."""
    lay = default_layout(model, system, n)
    out = [lay]
    if model.moe is not None and lay.ep > 1:
        tp = 2
        while tp <= lay.ep:
            if lay.ep % tp == 0 and model.attention.n_heads % tp == 0:
                out.append(Layout(tp=tp, ep=lay.ep, pp=lay.pp))
            tp *= 2
    return out


def _fitting(model, system, n, B, L, S, dtypes) -> tuple[Layout, bool]:
    from .layout import layout_memory

    lays = _layouts_for(model, system, n)
    for lay in lays:
        if bool(np.all(layout_memory(model, system, lay, B, L, dtypes=dtypes, new_tokens=S).serves)):
            return lay, True
    return lays[0], False


def grown_chips(n: int, domain: int) -> int:
    """The next replica size when one does not fit: powers of two inside the scale-up domain, then
    whole domains."""
    return n * 2 if n * 2 <= domain else (n // domain + 1) * domain if n >= domain else domain


def replica_chips(model: Model, system: System, context=0.0, batch=1.0, *, dtypes: Dtypes = Dtypes()) -> int:
    """Chips a serving command bills when the user names none: `replica`'s (weights and the batch's
    KV in what a serving engine fills), so every command answers on the replica `step` and `client`
    choose; a model defined by totals only (no architecture for a layout) takes the roofline's
    domain-or-fit rule (roofline.default_replica_chips)."""
    from .roofline import default_replica_chips

    if model.is_totals_only:
        return default_replica_chips(model, system, context, batch, weight_dtype=dtypes.weight, kv_dtype=dtypes.kv)
    return int(replica(model, system, float(np.max(batch)), float(np.max(context)), dtypes=dtypes).billed_chips)


def replica(model: Model, system: System, batch=1.0, context=0.0, new_tokens=1.0, *, chips: int | None = None,
            dtypes: Dtypes = Dtypes()) -> Replica:
    """The replica a pass runs on when the user names no layout. chips None: the scale-up domain
    (a box or a rack; for pods the fewest power-of-two chips that hold weights + KV), grown by
    powers of two, then by whole domains, until a default layout's busiest chip holds its weights,
    KV and activations in what a serving engine may fill (layout.serving_hbm_bytes: 90 % of HBM
    less the runtime's reserve; at most 4,096 chips); said in `note`. On each chip count the layout is
    `default_layout`'s, or — for MoE models whose copies of the dense weights on every
    attention-data-parallel chip do not fit — the same EP group with attention TP inside it.
    chips given: the same choice on them; chips the layout cannot use (e.g. past the experts'
    divisors) are named in `note`, and neither used nor billed."""
    from .layout import SERVING_HBM_FRACTION, serving_hbm_bytes
    from .roofline import default_replica_chips

    dom = system.scaleup_chips
    B, L, S = float(np.max(batch)), float(np.max(context)), float(np.max(new_tokens))
    if chips is not None:
        n = int(chips)
        lay, _ = _fitting(model, system, n, B, L, S, dtypes)
        billed = placement(lay, system).billed_chips
        note = ""
        if billed < n:
            note = (f"the default layout ({lay.describe()}) uses {lay.replica_chips:,} of the {n:,} chips given "
                    f"({billed:,.0f} billed with its domains' idle chips); the other {n - billed:,.0f} are neither "
                    "in this replica nor billed — give --chips to match, or lay them out with `tokenmath layout`")
        elif billed > n:
            note = (f"{lay.describe()} on the {n:,} chips given is billed {billed:,.0f}: the other "
                    f"{billed - n:,.0f} of its {dom}-chip scale-up domain(s) idle beside it")
        return Replica(n, lay.replica_chips, billed, dom, False, int(max(0, n - billed)), lay, note)
    hbm = system.chip.hbm_bytes
    usable = serving_hbm_bytes(system, Layout(tp=2))  # a chip of a multi-chip replica (the reserve with NCCL's)
    if usable <= 0:  # no replica of more than one chip can serve: say so, rather than grow to 4,096 chips
        raise TokenmathError(
            f"{system.name}'s {hbm / 1e9:.3g} GB of HBM per chip leave nothing to serve from: an engine fills "
            f"{SERVING_HBM_FRACTION:.0%} of it less its runtime's {(hbm * SERVING_HBM_FRACTION - usable) / 1e9:.2g} GB "
            "(layout.serving_hbm_bytes); give --chips to lay the model out on chips you choose")
    n = default_replica_chips(model, system, L, B, weight_dtype=dtypes.weight, kv_dtype=dtypes.kv)
    lay, fits = _fitting(model, system, n, B, L, S, dtypes)
    for _ in range(64):  # bounded: powers of two inside a domain, then whole domains, up to 4,096 chips
        if fits or n >= 4096:
            break
        n = grown_chips(n, dom)
        lay, fits = _fitting(model, system, n, B, L, S, dtypes)
    billed = placement(lay, system).billed_chips
    grown = billed > dom
    note = ""
    if not fits:
        note = (f"no replica of up to {billed:,.0f} chips holds weights + KV of {B:,.0f} × {L:,.0f} tokens in the "
                f"{SERVING_HBM_FRACTION:.0%} of HBM a serving engine fills less its runtime's reserve: this one "
                f"({lay.describe()}) does not")
    elif grown:
        note = (f"replica grown to {billed:,.0f} chips ({billed / dom:,.0f} × {dom}-chip scale-up domains; the layout "
                f"{lay.describe()} uses {lay.replica_chips:,}) to fit weights + KV of {B:,.0f} × {L:,.0f} tokens in the "
                "90 % of HBM a serving engine fills, less its runtime's reserve")
    return Replica(None, lay.replica_chips, billed, dom, grown, 0, lay, note)


@dataclass(frozen=True)
class Estimated:
    """A pass's estimate (or bound), labelled, with its band and the bound beside it."""

    label: str  # "calibrated 2026-12 generic" | "roofline"
    step_s: float | np.ndarray
    tokens_per_s: float | np.ndarray  # one replica
    tokens_per_s_per_chip: float | np.ndarray  # per billed chip
    tokens_per_s_per_user: float | np.ndarray  # new tokens each sequence gets per second
    usd_per_mtok: float | np.ndarray | None
    roofline_step_s: float | np.ndarray
    range_80: dict | None  # {"step_s": [lo, hi], "tokens_per_s_per_chip": [lo, hi], "usd_per_mtok": [lo, hi]}
    op: OpStep
    roofline: Bound = None  # the bound of the same pass, with its own figures
    mfu: float | np.ndarray = 0.0  # on the estimate's step time (OpStep.mfu)
    mbu: float | np.ndarray = 0.0
    replica: Replica | None = None  # how the chips were chosen (None: the caller gave a layout)

    @property
    def is_roofline(self) -> bool:
        return self.label == "roofline"


def estimate_pass(model: Model, system: System, batch=1.0, context=0.0, new_tokens=1.0, *, chips: int | None = None,
                  layout: Layout | None = None, dtypes: Dtypes = Dtypes(), profile: Profile = ROOFLINE_PROFILE,
                  usd_per_chip_hour: float | None = None, prefill_tokens=0.0, prefill_context=0.0,
                  prefill_seqs=None, expert_fetch: str = "expected", overlap: str = "full",
                  efficiency=None, hop_latency_s: float | None = None) -> Estimated:
    """One pass of `batch` sequences × `new_tokens` at `context`, on `layout` (default: the layout
    `replica` chooses for `chips`, or for the batch when chips is None), and the roofline bound of
    the same pass beside it: same layout, chips, dtypes, and expert-fetch convention
    (stepmodel.op_step). `efficiency`: with the roofline profile, a roofline at these achieved
    fractions of peak (a what-if, labelled)."""
    rep = None
    if layout is None:
        rep = replica(model, system, batch, context, new_tokens, chips=chips, dtypes=dtypes)
        layout = rep.layout
    if efficiency is not None and (efficiency.label == "roofline" or not profile.is_roofline):
        efficiency = None
    op = op_step(model, system, layout, batch, context, new_tokens, kernels=profile.kernels, engine=profile.engine,
                 prefill_tokens=prefill_tokens, prefill_context=prefill_context, prefill_seqs=prefill_seqs,
                 dtypes=dtypes, expert_fetch=expert_fetch, overlap=overlap, efficiency=efficiency,
                 **({} if hop_latency_s is None else {"hop_latency_s": hop_latency_s}))
    price = system.usd_per_chip_hour if usd_per_chip_hour is None else float(usd_per_chip_hour)
    step = num_or_array(op.step_s)
    tokens = num_or_array(op.tokens_per_s) * step
    billed = num_or_array(op.billed_chips)

    def usd_of(t):
        return None if price is None else _f(num_or_array(t) * billed * price / 3600.0 / tokens * 1e6)

    usd = usd_of(step)
    band = None
    r80 = None if profile.is_roofline else profile.range_80(step, model_class=model_class(model),  # its class's band,
                                                            bound=op.bound_s)  # never past the bound
    if r80 is not None:
        lo, hi = r80
        band = {"step_s": [lo, hi]}
        band["tokens_per_s_per_chip"] = [_f(tokens / num_or_array(hi) / billed), _f(tokens / num_or_array(lo) / billed)]
        if usd is not None:
            band["usd_per_mtok"] = [_f(num_or_array(usd) * num_or_array(lo) / step),
                                    _f(num_or_array(usd) * num_or_array(hi) / step)]
    S = num_or_array(new_tokens)
    bs = num_or_array(op.bound_s)
    bp = op.bound_parts
    usd_b = None if price is None else _a(bs * billed * price / 3600.0 / tokens * 1e6)
    bound = Bound(step_s=_a(bs), compute_s=bp["compute_s"], weights_s=bp["weights_s"], kv_s=bp["kv_s"],
                  activations_s=bp["activations_s"], network_s=bp["network_s"], bound=op.bound_name,
                  tokens_per_s=_a(tokens / bs), tokens_per_s_per_chip=_a(tokens / bs / billed),
                  tokens_per_s_per_user=_a(S / bs + 0 * bs), usd_per_mtok=usd_b, mfu=op.mfu(bs), mbu=op.mbu(bs))
    label = op.label if (profile.is_roofline and efficiency is not None) else profile.label
    return Estimated(
        label=label, step_s=_f(step), tokens_per_s=_f(tokens / step),
        tokens_per_s_per_chip=_f(tokens / step / billed), tokens_per_s_per_user=_f(S / step),
        usd_per_mtok=usd, roofline_step_s=op.bound_s, range_80=band, op=op, roofline=bound,
        mfu=op.mfu(step), mbu=op.mbu(step), replica=rep,
    )


def _f(x):
    """A float, or a list for a sweep (the estimate's figures, as profiles' band gives them)."""
    if isinstance(x, (int, float)):
        return float(x)
    a = np.asarray(x, float)
    return float(a) if a.ndim == 0 else a.tolist()


def _a(x):
    """A float, or a numpy array for a sweep (the Bound's figures)."""
    if isinstance(x, (int, float)):
        return float(x)
    a = np.asarray(x, float)
    return float(a) if a.ndim == 0 else a


def replica_record(r: Replica | None) -> dict | None:
    if r is None:
        return None
    return {"chips_requested": r.chips_requested, "chips": r.chips, "billed_chips": r.billed_chips,
            "scaleup_chips": r.scaleup_chips, "grown_to_fit": r.grown_to_fit, "unused_chips": r.unused_chips,
            "note": r.note or None}


def estimate_record(e: Estimated) -> dict:
    """The estimate's JSON keys (merged into every serving command's record): the answer's figures
    under their plain names, `estimate` (its label), `roofline` (the bound's figures,
    roofline_record), MFU and MBU on the estimate's step time (the bound's under `roofline`)."""
    op = e.op
    return {
        "estimate": e.label, "step_s": e.step_s, "tokens_per_s": e.tokens_per_s,
        "tokens_per_s_per_chip": e.tokens_per_s_per_chip, "tokens_per_s_per_user": e.tokens_per_s_per_user,
        "usd_per_mtok": e.usd_per_mtok, "range_80": e.range_80, "mfu": e.mfu, "mbu": e.mbu,
        "roofline": roofline_record(e.roofline), "roofline_step_s": e.roofline_step_s,
        "expert_fetch": op.expert_fetch,
        "parts": op.parts | {"expert_imbalance": op.expert_imbalance},
        "layout": {"tp": op.layout.tp, "ep": op.layout.ep, "pp": op.layout.pp, "dp": op.layout.dp},
        "chips": op.chips, "billed_chips": op.billed_chips, "replica": replica_record(e.replica),
    }


def linearised(model: Model, system: System, *, chips: int, dtypes: Dtypes, profile: Profile, input_tokens: float,
               output_tokens: float, batch: float = 64.0, layout: Layout | None = None):
    """(Efficiency, overhead_s) that make the simulator's affine step model
    T = max(tokens·c(L), W + KV/BW)/eff + overhead reproduce the estimate at the workload's
    operating point: the per-step overhead is the profile's; the HBM efficiency is the roofline's
    memory time over the estimate of a decode step at `batch` (mean context I + O/2); the FLOP/s
    efficiency is the roofline's compute time over the estimate of a prefill of one prompt per
    attention-DP rank (one prompt on a layout without attention DP).
    An approximation, labelled as such in the simulator's output. `layout`: the replica's layout
    (default: the one `chips` implies)."""
    from .roofline import step_time
    from .specs import Efficiency

    lay = layout or default_layout(model, system, chips)
    ov = profile.engine.overhead_s
    L = input_tokens + output_tokens / 2
    dec = op_step(model, system, lay, batch, L, 1.0, kernels=profile.kernels, engine=profile.engine, dtypes=dtypes)
    # one prompt per attention-DP rank: a lone prompt runs on one rank while the roofline spreads its
    # FLOPs over every chip, which would read as an efficiency of 1/ranks (and slow every token with it)
    n = float(lay.attention_dp)
    pre = op_step(model, system, lay, n, 0.0, float(input_tokens), kernels=profile.kernels, engine=profile.engine,
                  dtypes=dtypes)
    r_dec = step_time(model, system, batch, L, 1, chips=chips, dtypes=dtypes, expert_fetch="all")
    r_pre = step_time(model, system, n, input_tokens / 2, input_tokens, chips=chips, dtypes=dtypes)
    e_m = min(1.0, float(r_dec.memory_s) / max(float(dec.step_s) - ov, 1e-12))
    e_c = min(1.0, float(r_pre.compute_s) / max(float(pre.step_s) - ov, 1e-12))
    return Efficiency(flops=max(e_c, 1e-3), hbm=max(e_m, 1e-3), label=f"{profile.label}, linearised"), ov
