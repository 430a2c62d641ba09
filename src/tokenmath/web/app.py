"""tokenmath's interactive blackboard (Streamlit). Thin: every number comes from the core, the
same functions the CLI's --json prints; this file only lays out widgets and draws.

Run with `tokenmath serve` (binds 127.0.0.1). It reads no file paths from the page; an uploaded
config.json is taken as bounded JSON text and validated like the CLI does.
"""

from __future__ import annotations

import html
import io
import logging

import matplotlib.pyplot as plt
import streamlit as st

# No stack traces or server paths on the page, whatever goes wrong (also set by `tokenmath serve`'s
# flags where it can be): the page boundary in main() turns every exception into one sentence.
st.set_option("client.showErrorDetails", "none")

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
# Round slider stops: powers of two and 1.5× powers of two (1, 2, 3, 4, 6, 8, 12, ...; 4096, 6144, 8192, ...).
BATCHES = sorted({1, *(2 ** k for k in range(17)), *(3 * 2 ** k for k in range(15))})
CONTEXTS = sorted({*(2 ** k for k in range(7, 21)), *(3 * 2 ** k for k in range(6, 19))})
# Which sidebar controls each page uses: the others are not shown there.
SIDEBAR = {"Batch": ("model", "system", "dtypes"), "Context": ("model", "system", "dtypes"),
           "Fast/slow mode": ("model", "system", "dtypes"), "Layout": ("model", "system", "dtypes"),
           "Prices": ("model", "system", "dtypes"), "Training": ()}
DEFAULTS = {"model": "deepseek-v3", "system": "gb200-nvl72", "weight": "native", "kv": "bf16"}
log = logging.getLogger("tokenmath.web")


@st.cache_resource
def catalog():
    return tm.load_catalog()


# st.pyplot's resolution (streamlit.elements.pyplot). The figure is made at that dpi and saved
# without st.pyplot's bbox_inches="tight": plots already fitted it (tight_layout), and "tight" lays
# the figure out and draws it once more only to crop the same margins (about a quarter of the time).
CHART_DPI = 200


@st.cache_data(max_entries=128, show_spinner=False)
def chart_png(make: str, *args, **kwargs) -> bytes:
    """The PNG of plots.`make`(*args, **kwargs), drawn under the plot lock (matplotlib is not
    thread-safe and every browser session runs in its own thread). Cached by its inputs: Streamlit
    reruns the whole page on every widget change, and a chart whose inputs did not change (the
    speculative-decoding inputs on Fast/slow mode, the price sheet on Prices, a page visited again)
    is not drawn again."""
    with plots.LOCK, plt.rc_context({"figure.dpi": CHART_DPI}):
        fig = getattr(plots, make)(*args, **kwargs)
        try:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=CHART_DPI)
            return buf.getvalue()
        finally:
            plt.close(fig)


def show(make, *args, chart_width: int | str = 820, **kwargs) -> None:
    """Draw one chart: plots.`make`'s figure as the image st.pyplot would show (chart_png)."""
    st.image(chart_png(make.__name__, *args, **kwargs), width=chart_width, output_format="PNG")


def hooks(**values: str) -> None:
    """Values the tests read back (stable ids, machine-readable), hidden from people: one markdown
    element of `display:none` spans, keyed by id (underscores in the keyword become dashes)."""
    spans = "".join(f"<span style='display:none' id='{k.replace('_', '-')}'>{html.escape(str(v))}</span>"
                    for k, v in values.items())
    st.markdown(f"<div style='display:none'>{spans}</div>", unsafe_allow_html=True)


def keep_sidebar_state() -> None:
    """Streamlit forgets a widget's value on a run where it is not drawn; the sidebar hides controls
    a page does not use, so re-assign them each run (Streamlit's documented way to keep them)."""
    for k, v in DEFAULTS.items():
        st.session_state[k] = st.session_state.get(k, v)


KEPT_UPLOAD = "kept_upload"


def keep_upload() -> None:
    """The uploader's on_change: keep (file name, bytes) in the session, so the upload survives a page
    that draws no sidebar (Streamlit drops an undrawn widget's value); clearing the uploader forgets
    it. Only the first MAX_UPLOAD_BYTES + 1 bytes are kept: enough to refuse a bigger file."""
    f = st.session_state.get("upload")
    if f is None:
        st.session_state.pop(KEPT_UPLOAD, None)
    else:
        st.session_state[KEPT_UPLOAD] = (f.name, f.getvalue()[:MAX_UPLOAD_BYTES + 1])


def pick_model_system(cat, page: str):
    """The sidebar's model, system and dtypes; only the controls `page` uses are drawn."""
    needs = SIDEBAR[page]
    if not needs:
        return None, None, None
    with st.sidebar:
        name = st.selectbox("Model", sorted(cat.models), key="model")
        st.file_uploader("…or a Hugging Face config.json", type=["json"], key="upload", on_change=keep_upload)
        kept = st.session_state.get(KEPT_UPLOAD)
        if kept and st.session_state.get("upload") is None:
            st.caption(f"using the uploaded {kept[0]} (kept across pages)")
            st.button("Forget the uploaded config", key="forget_upload", on_click=st.session_state.pop,
                      args=(KEPT_UPLOAD, None))
        sysname = st.selectbox("System", sorted(cat.systems), key="system")
        weight = st.selectbox("Weight dtype", ["native", "bf16", "fp8", "fp4"], key="weight")
        kv = st.selectbox("KV dtype", ["bf16", "fp8"], key="kv")
    model = cat.model(name)
    kept = st.session_state.get(KEPT_UPLOAD)
    if kept:
        filename, raw = kept
        if len(raw) > MAX_UPLOAD_BYTES:
            raise TokenmathError(f"the uploaded config {filename} is larger than {MAX_UPLOAD_BYTES:,} bytes, the most"
                                 " the blackboard reads")
        from tokenmath.hf import config_from_bytes

        cfg = config_from_bytes(raw, "the uploaded config")  # one sentence for any malformed upload
        model = model_from_config(cfg, name=filename.removesuffix(".json"), source="uploaded config.json")
    dtypes = tm.Dtypes(weight=None if weight == "native" else weight, kv=kv)
    system = cat.system(sysname)
    system.compute_class_for(dtypes.weight or model.weight_dtype)  # one sentence if unsupported
    return model, system, dtypes


def page_batch(cat, model, system, dt) -> None:
    st.header("Batch: latency and cost vs batch size")
    context = st.select_slider("Context L (tokens)", CONTEXTS, value=4096, key="batch_context")
    chips = default_replica_chips(model, system, context, weight_dtype=dt.weight, kv_dtype=dt.kv)
    batch = st.select_slider("Batch B (sequences)", BATCHES, value=1024, key="batch")
    s = tm.step_time(model, system, batch, context, chips=chips, dtypes=dt)
    bstar = serving.balance_batch(model, system, dtypes=dt)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("step time", seconds(s.step_s))
    c2.metric("tokens/s", f"{s.tokens_per_s:,.0f}")
    c3.metric("$ / Mtok", "n/a" if s.usd_per_mtok is None else f"{s.usd_per_mtok:.4g}")
    c4.metric("bound", s.bound)
    st.caption("The lecture's blackboard: these are the **roofline bound**. The calibrated estimate with its "
               "80 % band is what `tokenmath step` prints (docs/stepmodel.md).")
    st.caption(f"{chips} × {system.name}; {s.assumptions.label}; weights {s.assumptions.weight_dtype}, "
               f"KV {s.assumptions.kv_dtype}. Balance batch B\\* = {bstar:,.0f}; HBM drain {seconds(tm.hbm_drain_s(system))}.")
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
    left, right = st.columns(2)
    with left:
        show(plots.latency_vs_batch, curve, title=f"{model.name} on {chips} × {system.name}, L = {context:,}: step time",
             balance_batch=bstar, drain_s=tm.hbm_drain_s(system), mark=(batch, s.step_s), chart_width="stretch")
    if curve.usd_per_mtok is not None:
        with right:
            show(plots.cost_vs_batch, curve, title=f"{model.name}, L = {context:,}: cost per token",
                 balance_batch=bstar, mark=(batch, s.usd_per_mtok), chart_width="stretch",
                 floor_usd_per_mtok=serving.cost_floor_usd_per_mtok(model, system, context, dtypes=dt))
    hooks(step_s=f"{s.step_s:.6g}", model_name=model.name, batch_value=f"{batch}", context_value=f"{context}", chips_value=f"{chips}")


def page_context(cat, model, system, dt) -> None:
    st.header("Context: cost vs context length")
    batch = st.select_slider("Batch B", BATCHES, value=16384, key="ctx_batch")  # ~3× B*: the lines cross
    sparse = st.toggle("Sparse attention (top-2048, DSA-style)", key="sparse")
    m = tm.kvcache.with_sparse_attention(model, 2048) if sparse else model
    chips = default_replica_chips(m, system, 8192, weight_dtype=dt.weight, kv_dtype=dt.kv)
    L = serving.balance_context(m, system, None, chips=chips, dtypes=dt)  # weights amortised (B → ∞)
    LB = serving.balance_context(m, system, batch, chips=chips, dtypes=dt)  # at the chart's batch
    if L is None:
        st.markdown("**Balance context L\\*: none** — compute wins at every context (the KV read per token never "
                    "overtakes the attention + MLP compute).")
    else:
        st.markdown(f"**Balance context L\\* = {L:,.0f} tokens**: past it the KV fetch outlasts the compute "
                    "(weights amortised over a large batch).")
    if LB is None or LB == 0:
        st.caption(f"At B = {batch:,}: {'compute' if LB is None else 'memory (the weight fetch)'} binds at every "
                   "context, so the chart has no crossover.")
    else:
        st.caption(f"At B = {batch:,} the weight fetch counts too: the lines cross at L = {LB:,.0f} tokens.")
    curve = serving.curve(m, system, over="context", batch=batch, chips=chips, dtypes=dt, points=100)
    show(plots.cost_vs_context, curve, title=f"{m.name} on {chips} × {system.name}, B = {batch:,}: cost vs context",
         crossover=LB or None)
    hooks(l_star="none (compute wins at every context)" if L is None else f"{L:,.0f} tokens",
          l_at_batch="none" if not LB else f"{LB:,.0f}")


def page_fast(cat, model, system, dt) -> None:
    st.header("Fast mode and slow mode")
    context = st.select_slider("Context L", CONTEXTS, value=4096, key="fast_context")
    speed = st.slider("Target speed-up", 1.0, 10.0, 2.5, 0.1, key="speedup")
    chips = default_replica_chips(model, system, context, weight_dtype=dt.weight, kv_dtype=dt.kv)
    fm = serving.fast_mode(model, system, context, speedup=speed, chips=chips, dtypes=dt)
    if fm.batch is None:
        st.warning(f"{speed:.1f}× is out of reach by batch size alone: batch 1 gives {fm.max_speedup:.2f}×.")
    else:
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
    show(plots.price_speed_frontier, fm, title=f"{model.name} on {chips} × {system.name}, L = {context:,}: price vs speed")
    hooks(price_multiplier="out of reach" if fm.batch is None else f"{fm.price_multiplier:.3f}")


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
    batch = st.select_slider("Batch per replica B (sequences, all microbatches)", BATCHES, value=512,
                             key="layout_batch")
    context = st.select_slider("Context", CONTEXTS, value=4096, key="layout_context")
    layout = lay.Layout(tp=tp, ep=ep, pp=pp)
    lay.check_layout(model, system, layout)
    s = lay.layout_step(model, system, layout, batch, context, dtypes=dt)
    m = s.memory
    if m.fits:
        st.success(f"Fits: {si(float(m.total_bytes_per_chip), 'B')} of {si(m.hbm_bytes_per_chip, 'B')} HBM per chip.")
    else:
        st.warning(f"Does not fit: {si(float(m.total_bytes_per_chip), 'B')} per chip, more than the "
                   f"{si(m.hbm_bytes_per_chip, 'B')} of HBM.")
    st.write(f"{layout.describe()} on {s.chips} chips ({s.placement.domains} domain(s), "
             f"{s.placement.idle_chips:g} idle): step {seconds(s.step_s)}, {s.bound} bound; all-to-all "
             f"{seconds(s.all_to_all_s)}, hops {seconds(s.pipeline_hop_latency_s)}; "
             f"{s.network.scale_out_fraction:.0%} of the all-to-all leaves the domain.")
    bars = [(f"TP{tp} EP{ep} PP{pp}\nB = {batch:,}", m)]
    if pp > 1:  # the same layout without pipelining, for comparison (same chips per stage)
        one = lay.layout_memory(model, system, lay.Layout(tp=tp, ep=ep, pp=1), batch, context, dtypes=dt)
        grown = lay.layout_memory(model, system, layout, batch * pp, context, dtypes=dt)
        bars = [(f"TP{tp} EP{ep} PP1\nB = {batch:,}", one), bars[0], (f"TP{tp} EP{ep} PP{pp}\nB = {batch * pp:,}", grown)]
    show(plots.layout_memory_per_chip, bars, m.hbm_bytes_per_chip,
         title=f"{model.name} on {system.name}, L = {context:,}: memory per chip")
    if pp > 1:
        st.caption(f"With the batch per replica held at B = {batch:,}, PP{pp} divides both the weights and the KV per "
                   f"chip by {pp} (middle bar against the left). The lecture's point — pipelining divides weight memory "
                   f"per chip, not KV memory per chip — is for a batch that grows with PP ({pp} microbatches of "
                   f"{batch:,} in flight, B = {batch * pp:,}, right bar): the KV per chip is then the same as PP1's.")
    else:
        st.caption("PP1: each chip holds its TP/EP share of the weights and of the KV. Raise PP to compare: at a fixed "
                   "batch it divides both by PP; with PP microbatches in flight (B × PP) it divides only the weights.")
    hooks(fits="yes" if m.fits else "NO")
    if st.checkbox("Plan: cheapest deployment across the catalog (≥ 20 tokens/s per user)", key="plan"):
        from tokenmath.plan import plan

        p = plan(model, list(cat.systems.values()), input_tokens=2000, output_tokens=500, min_tokens_per_s_per_user=20)
        if p.best is not None:
            b = p.best
            st.write(f"Cheapest: {b.system} TP{b.tp} EP{b.ep} PP{b.pp}, batch {b.batch:,.0f}: "
                     f"{b.tokens_per_s_per_user:,.1f} tokens/s per user, ${b.usd_per_mtok:.3g}/Mtok.")
            show(plots.plan_frontier, p, title=f"{model.name}: Pareto frontier")


def page_prices(cat, model, system, dt) -> None:
    st.header("Prices: what a price sheet reveals")
    names = sorted(cat.prices)
    sheet_name = st.selectbox("Price sheet", names, index=names.index("gemini-3.1-pro-preview"), key="sheet")
    sheet = cat.price_sheet(sheet_name)
    n_act = st.number_input("Assumed active parameters (billions)", 1.0, 5000.0, 100.0, key="nact")
    inf = pr.infer(sheet, system, active_params=n_act * 1e9, storage=cat.storage, models=cat.models)
    kv_text = ("no long-context tier" if inf.kv_bytes_per_token is None else f"{inf.kv_bytes_per_token:,.0f}")
    st.markdown(f"**{sheet_name}** on {system.name}: KV bytes per token implied by the long-context tier: "
                f"**{kv_text}**.")
    st.write(f"Output/input = {inf.decode_prefill_cost_ratio:.2g}×. Cache tiers: {inf.cache_tiers or 'no cache writes'}.")
    if inf.fast_mode and inf.fast_mode["consistent"]:
        st.write(f"Fast mode: a {inf.fast_mode['batch_reduction']:.3g}× smaller batch explains it.")
    if not model.is_totals_only and system.usd_per_chip_hour is not None:
        st.subheader(f"Where to keep a prompt's KV cache: {model.name} on {system.name}")
        st.caption(f"This chart is for the sidebar's model ({model.name}) and system, not the price sheet above.")
        prompt = st.select_slider("Cached prompt tokens", CONTEXTS, value=8192, key="prompt")
        show(plots.cache_cost_vs_hold, model, system, prompt, cat.storage, dtypes=dt,
             title=f"{model.name} on {system.name}: keeping {prompt:,} tokens' KV cache")
    hooks(kv_implied=kv_text)


def page_training(cat, model, system, dt) -> None:
    st.header("Training: how much to over-train")
    n = st.number_input("Active parameters (billions)", 1.0, 2000.0, 100.0, key="train_n")
    rate = st.number_input("Serving demand (million tokens/s)", 0.1, 10000.0, 50.0, key="train_rate")
    days = st.number_input("Lifetime (days)", 1.0, 3650.0, 60.875, key="train_days")
    o = tr.overtrain(n * 1e9, rate * 1e6, days)
    st.markdown(f"**Over-training factor: {o.overtraining_factor:,.1f}×** the Chinchilla tokens.")
    hooks(overtrain=f"{o.overtraining_factor:,.1f}")
    st.write(f"Inference {o.inference_tokens:.3g} tokens → pre-training {o.pretrain_tokens:.3g}, RL {o.rl_tokens:.3g}; "
             f"Chinchilla would be {o.chinchilla_tokens:.3g}.")
    show(plots.loss_frontier, o, "hoffmann", title="loss vs training compute", chart_width=1100)


def main() -> None:
    st.set_page_config(page_title="tokenmath blackboard", layout="wide")
    keep_sidebar_state()
    page = st.sidebar.radio("Page", PAGES, key="page")
    try:
        cat = catalog()
        model, system, dt = pick_model_system(cat, page)
        {"Batch": page_batch, "Context": page_context, "Fast/slow mode": page_fast, "Layout": page_layout,
         "Prices": page_prices, "Training": page_training}[page](cat, model, system, dt)
    except TokenmathError as e:
        st.error(str(e))
    except Exception as e:  # the page boundary: one sentence, never a stack trace or a server path
        log.warning("blackboard page %r failed: %s", page, type(e).__name__, exc_info=True)  # server log only
        st.error(f"The {page} page could not be computed for these inputs ({type(e).__name__}); "
                 "try other values or another model.")


main()
