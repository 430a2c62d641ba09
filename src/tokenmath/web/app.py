"""tokenmath's interactive blackboard (Streamlit). Thin: every number comes from the core, the
same functions the CLI's --json prints; this file only lays out widgets and draws.

Run with `tokenmath serve` (binds 127.0.0.1). It reads no file paths from the page; an uploaded
config.json is taken as bounded JSON text and validated like the CLI does.
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import streamlit as st

import tokenmath as tm
from tokenmath import layout as lay
from tokenmath import plots, serving
from tokenmath import prices as pr
from tokenmath import training as tr
from tokenmath.errors import TokenmathError
from tokenmath.hf import model_from_config
from tokenmath.roofline import default_replica_chips
from tokenmath.units import seconds, si

MAX_UPLOAD_BYTES = 1_000_000
PAGES = ("Batch", "Context", "Fast/slow mode", "Layout", "Prices", "Training")
BATCHES = [int(b) for b in np.unique(np.round(np.geomspace(1, 65536, 49)))]
CONTEXTS = [int(c) for c in np.unique(np.round(np.geomspace(128, 1_048_576, 27), -1))]


def nearest(options: list[int], value: float) -> int:
    """The option closest to `value` on a log scale (slider defaults must be options)."""
    return min(options, key=lambda o: abs(np.log(o / value)))


@st.cache_resource
def catalog():
    return tm.load_catalog()


def show(fig) -> None:
    st.pyplot(fig)
    plt.close(fig)


def number(label: str, text: str, key: str) -> None:
    """A value the browser test reads back (stable id) next to its label."""
    st.markdown(f"**{label}:** <span id='{key}'>{text}</span>", unsafe_allow_html=True)


def pick_model_system(cat):
    with st.sidebar:
        names = sorted(cat.models)
        name = st.selectbox("Model", names, index=names.index("deepseek-v3"), key="model")
        upload = st.file_uploader("…or a Hugging Face config.json", type=["json"], key="upload")
        systems = sorted(cat.systems)
        sysname = st.selectbox("System", systems, index=systems.index("gb200-nvl72"), key="system")
        weight = st.selectbox("Weight dtype", ["native", "bf16", "fp8", "fp4"], key="weight")
        kv = st.selectbox("KV dtype", ["bf16", "fp8"], key="kv")
    model = cat.model(name)
    if upload is not None:
        raw = upload.getvalue()
        if len(raw) > MAX_UPLOAD_BYTES:
            raise TokenmathError(f"the uploaded config is {len(raw):,} bytes; expected at most {MAX_UPLOAD_BYTES:,}")
        from tokenmath.hf import config_from_bytes

        cfg = config_from_bytes(raw, "the uploaded config")  # one sentence for any malformed upload
        model = model_from_config(cfg, name=upload.name.removesuffix(".json"), source="uploaded config.json")
    dtypes = tm.Dtypes(weight=None if weight == "native" else weight, kv=kv)
    system = cat.system(sysname)
    system.compute_class_for(dtypes.weight or model.weight_dtype)  # one sentence if unsupported
    return model, system, dtypes


def page_batch(cat, model, system, dt) -> None:
    st.header("Batch: latency and cost vs batch size")
    context = st.select_slider("Context L (tokens)", CONTEXTS, value=nearest(CONTEXTS, 4100), key="batch_context")
    chips = default_replica_chips(model, system, context, weight_dtype=dt.weight, kv_dtype=dt.kv)
    batch = st.select_slider("Batch B (sequences)", BATCHES, value=nearest(BATCHES, 1024), key="batch")
    s = tm.step_time(model, system, batch, context, chips=chips, dtypes=dt)
    bstar = serving.balance_batch(model, system, dtypes=dt)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("step time", seconds(s.step_s))
    c2.metric("tokens/s", f"{s.tokens_per_s:,.0f}")
    c3.metric("$ / Mtok", "n/a" if s.usd_per_mtok is None else f"{s.usd_per_mtok:.4g}")
    c4.metric("bound", s.bound)
    st.caption("The lecture's blackboard: these are the **roofline bound**. The calibrated estimate with its "
               "80 % band is what `tokenmath step` prints (docs/stepmodel.md).")
    number("step_s", f"{s.step_s:.6g}", "step-s")
    number("batch", f"{batch}", "batch-value")
    st.caption(f"{chips} × {system.name}; {s.assumptions.label}; weights {s.assumptions.weight_dtype}, "
               f"KV {s.assumptions.kv_dtype}. Balance batch B* = {bstar:,.0f}; HBM drain {seconds(tm.hbm_drain_s(system))}.")
    mem = s.weights_s + s.kv_s
    if s.bound == "memory":
        ratio = mem / max(s.compute_s, 1e-30)
        bkv = serving.balance_batch_with_kv(model, system, context, dtypes=dt)
        hint = (f"raise the batch toward ~{bkv:,.0f} to amortise the weights" if bkv
                else "no batch makes it compute bound at this context: the KV read per sequence outlasts its compute")
        st.info(f"Memory bound: weight + KV fetch is {ratio:,.1f}× compute; {hint}.")
    else:
        st.info(f"Compute bound: compute is {s.compute_s / max(mem, 1e-30):,.1f}× the memory time; more batch "
                "no longer lowers the cost per token.")
    if not s.fits:
        st.warning(f"Weights + KV need {si(s.memory_bytes, 'B')}, more than the {si(s.hbm_bytes, 'B')} of HBM.")
    curve = serving.curve(model, system, over="batch", context=context, chips=chips, dtypes=dt, points=100)
    show(plots.latency_vs_batch(curve, title=f"{model.name} on {chips} × {system.name}", balance_batch=bstar,
                                drain_s=tm.hbm_drain_s(system)))
    if curve.usd_per_mtok is not None:
        show(plots.cost_vs_batch(curve, title="cost per token", balance_batch=bstar,
                                 floor_usd_per_mtok=serving.cost_floor_usd_per_mtok(model, system, context, dtypes=dt)))


def page_context(cat, model, system, dt) -> None:
    st.header("Context: cost vs context length")
    batch = st.select_slider("Batch B", BATCHES, value=nearest(BATCHES, 256), key="ctx_batch")
    sparse = st.toggle("Sparse attention (top-2048, DSA-style)", key="sparse")
    m = tm.kvcache.with_sparse_attention(model, 2048) if sparse else model
    chips = default_replica_chips(m, system, 8192, weight_dtype=dt.weight, kv_dtype=dt.kv)
    L = serving.balance_context(m, system, None, chips=chips, dtypes=dt)
    number("balance context L*", "none (compute wins at every context)" if L is None else f"{L:,.0f} tokens", "l-star")
    curve = serving.curve(m, system, over="context", batch=batch, chips=chips, dtypes=dt, points=100)
    show(plots.cost_vs_context(curve, title=f"{m.name}, B = {batch}", crossover=L))


def page_fast(cat, model, system, dt) -> None:
    st.header("Fast mode and slow mode")
    context = st.select_slider("Context L", CONTEXTS, value=nearest(CONTEXTS, 4100), key="fast_context")
    speed = st.slider("Target speed-up", 1.0, 10.0, 2.5, 0.1, key="speedup")
    chips = default_replica_chips(model, system, context, weight_dtype=dt.weight, kv_dtype=dt.kv)
    fm = serving.fast_mode(model, system, context, speedup=speed, chips=chips, dtypes=dt)
    if fm.batch is None:
        st.warning(f"{speed:.1f}× is out of reach by batch size alone: batch 1 gives {fm.max_speedup:.2f}×.")
    else:
        number("price multiplier", f"{fm.price_multiplier:.3f}", "price-multiplier")
        st.write(f"Batch {fm.batch:,.0f} (normal {fm.reference_batch:,.0f}) gives {fm.speedup:.2f}× the speed for "
                 f"{fm.price_multiplier:.2f}× the price; at most {fm.max_speedup:.2f}× (latency floor), slow mode saves "
                 f"at most {fm.max_saving:.2f}×.")
    k = st.number_input("Speculative decoding: drafted tokens", 0, 8, 1, key="draft")
    a = st.slider("Acceptance rate", 0.0, 1.0, 0.8, 0.05, key="accept")
    if k:
        sp = serving.speculative_decode(model, system, fm.batch or fm.reference_batch, context, int(k), a, chips=chips,
                                        dtypes=dt)
        st.write(f"{sp.tokens_per_verify:.2f} tokens per verify pass → {sp.speedup:.2f}× speed, "
                 f"{sp.price_multiplier:.2f}× price per token (draft cost neglected, as an MTP head).")
    show(plots.price_speed_frontier(fm, title=f"{model.name} on {chips} × {system.name}"))


def page_layout(cat, model, system, dt) -> None:
    st.header("Layout: expert and pipeline parallelism")
    if model.is_totals_only:
        st.warning("A layout needs the model's architecture; pick a catalog model with a config.json.")
        return
    c1, c2, c3 = st.columns(3)
    eps = [e for e in (1, 2, 4, 8, 16, 32, 64, 128, 256) if model.moe is None and e == 1 or
           model.moe is not None and model.moe.n_experts % e == 0]
    ep = c1.select_slider("EP", eps, value=eps[min(len(eps) - 1, 6 if model.moe else 0)], key="ep")
    pp = c2.select_slider("PP", [1, 2, 4, 8], value=1, key="pp")
    tps = [t for t in (1, 2, 4, 8) if model.attention.n_heads % t == 0]
    tp = c3.select_slider("TP", tps, value=1 if model.moe else tps[-1], key="tp")
    batch = st.select_slider("Batch per replica", BATCHES, value=nearest(BATCHES, 512), key="layout_batch")
    context = st.select_slider("Context", CONTEXTS, value=nearest(CONTEXTS, 4100), key="layout_context")
    layout = lay.Layout(tp=tp, ep=ep, pp=pp)
    lay.check_layout(model, system, layout)
    s = lay.layout_step(model, system, layout, batch, context, dtypes=dt)
    m = s.memory
    number("fits", "yes" if m.fits else "NO", "fits")
    st.write(f"{layout.describe()} on {s.chips} chips ({s.placement.domains} domain(s), "
             f"{s.placement.idle_chips:g} idle): step {seconds(s.step_s)}, {s.bound} bound; all-to-all "
             f"{seconds(s.all_to_all_s)}, hops {seconds(s.pipeline_hop_latency_s)}; "
             f"{s.network.scale_out_fraction:.0%} of the all-to-all leaves the domain.")
    st.bar_chart({"GB per chip": {"weights": m.weights_bytes_per_chip / 1e9, "KV": float(m.kv_bytes_per_chip) / 1e9,
                                  "activations": float(m.activation_bytes_per_chip) / 1e9}})
    st.caption(f"HBM per chip {si(m.hbm_bytes_per_chip, 'B')}; pipelining divides weights per chip by PP, not KV.")
    if st.checkbox("Plan: cheapest deployment across the catalog (≥ 20 tokens/s per user)", key="plan"):
        from tokenmath.plan import plan

        p = plan(model, list(cat.systems.values()), input_tokens=2000, output_tokens=500, min_tokens_per_s_per_user=20)
        if p.best is not None:
            b = p.best
            st.write(f"Cheapest: {b.system} TP{b.tp} EP{b.ep} PP{b.pp}, batch {b.batch:,.0f}: "
                     f"{b.tokens_per_s_per_user:,.1f} tokens/s per user, ${b.usd_per_mtok:.3g}/Mtok.")
            show(plots.plan_frontier(p, title=f"{model.name}: Pareto frontier"))


def page_prices(cat, model, system, dt) -> None:
    st.header("Prices: what a price sheet reveals")
    names = sorted(cat.prices)
    sheet = cat.price_sheet(st.selectbox("Price sheet", names, index=names.index("gemini-3.1-pro-preview"), key="sheet"))
    n_act = st.number_input("Assumed active parameters (billions)", 1.0, 5000.0, 100.0, key="nact")
    inf = pr.infer(sheet, system, active_params=n_act * 1e9, storage=cat.storage, models=cat.models)
    number("KV bytes/token implied", "no long-context tier" if inf.kv_bytes_per_token is None
           else f"{inf.kv_bytes_per_token:,.0f}", "kv-implied")
    st.write(f"Output/input = {inf.decode_prefill_cost_ratio:.2g}×. Cache tiers: {inf.cache_tiers or 'no cache writes'}.")
    if inf.fast_mode and inf.fast_mode["consistent"]:
        st.write(f"Fast mode: a {inf.fast_mode['batch_reduction']:.3g}× smaller batch explains it.")
    if not model.is_totals_only and system.usd_per_chip_hour is not None:
        prompt = st.select_slider("Cached prompt tokens", CONTEXTS, value=nearest(CONTEXTS, 10250), key="prompt")
        show(plots.cache_cost_vs_hold(model, system, prompt, cat.storage, title=f"{model.name}: where to keep the cache"))


def page_training(cat, model, system, dt) -> None:
    st.header("Training: how much to over-train")
    n = st.number_input("Active parameters (billions)", 1.0, 2000.0, 100.0, key="train_n")
    rate = st.number_input("Serving demand (million tokens/s)", 0.1, 10000.0, 50.0, key="train_rate")
    days = st.number_input("Lifetime (days)", 1.0, 3650.0, 60.875, key="train_days")
    o = tr.overtrain(n * 1e9, rate * 1e6, days)
    number("over-training factor", f"{o.overtraining_factor:,.1f}", "overtrain")
    st.write(f"Inference {o.inference_tokens:.3g} tokens → pre-training {o.pretrain_tokens:.3g}, RL {o.rl_tokens:.3g}; "
             f"Chinchilla would be {o.chinchilla_tokens:.3g}.")
    show(plots.loss_frontier(o, "hoffmann", title="loss vs training compute"))


def main() -> None:
    st.set_page_config(page_title="tokenmath blackboard", layout="wide")
    cat = catalog()
    page = st.sidebar.radio("Page", PAGES, key="page")
    try:
        model, system, dt = pick_model_system(cat)
        {"Batch": page_batch, "Context": page_context, "Fast/slow mode": page_fast, "Layout": page_layout,
         "Prices": page_prices, "Training": page_training}[page](cat, model, system, dt)
    except TokenmathError as e:
        st.error(str(e))


main()
