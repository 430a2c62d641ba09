"""tokenmath's interactive blackboard (Streamlit). Thin: every number comes from the core, the
same functions the CLI's --json prints; this file only lays out widgets and draws.

Like the CLI, a page answers with the calibrated estimate (estimate.estimate_pass under the profile
the CLI's --engine picks) and shows the roofline bound beside it, each labelled.

Run with `tokenmath serve` (binds 127.0.0.1). It reads no file paths from the page; an uploaded
config.json is taken as bounded JSON text and validated like the CLI does.
"""

from __future__ import annotations

import html
import importlib
import io
import logging

import matplotlib.pyplot as plt
import numpy as np
import streamlit as st

# No stack traces or server paths on the page, whatever goes wrong (also set by `tokenmath serve`'s
# flags where it can be): the page boundary in main() turns every exception into one sentence.
st.set_option("client.showErrorDetails", "none")

import tokenmath as tm
from tokenmath import energy as en
from tokenmath import layout as lay
from tokenmath import plots, serving
from tokenmath import prices as pr
from tokenmath import profiles as pf
from tokenmath.units import sig
from tokenmath import training as tr
from tokenmath.errors import TokenmathError
from tokenmath.estimate import estimate_pass, replica_chips
from tokenmath.hf import model_from_config
from tokenmath.units import seconds, si
from tokenmath.web import charts

MAX_UPLOAD_BYTES = 1_000_000
PAGES = ("Batch", "Context", "Fast/slow mode", "Client", "Layout", "Prices", "Training", "Fleet", "Energy")
# Round slider stops: powers of two and 1.5× powers of two (1, 2, 3, 4, 6, 8, 12, ...; 4096, 6144, 8192, ...).
BATCHES = sorted({1, *(2 ** k for k in range(17)), *(3 * 2 ** k for k in range(15))})
CONTEXTS = sorted({*(2 ** k for k in range(7, 21)), *(3 * 2 ** k for k in range(6, 19))})
LENGTHS = sorted({*(2 ** k for k in range(5, 18)), *(1000 * k for k in (1, 2, 5, 10, 20, 50))})  # request lengths
# Which sidebar controls each page uses: the others are not shown there. "engine" picks the
# estimate's engine profile (the CLI's --engine; generic = none).
SERVING = ("model", "system", "dtypes", "engine")
SIDEBAR = {"Batch": SERVING, "Context": SERVING, "Fast/slow mode": SERVING, "Client": SERVING, "Layout": SERVING,
           "Prices": ("model", "system", "dtypes"), "Training": (), "Fleet": ("model", "engine"), "Energy": SERVING}
ENGINES = ("generic", *pf.ENGINES)
DEFAULTS = {"model": "deepseek-v3", "system": "gb200-nvl72", "weight": "native", "kv": "bf16", "engine": "generic"}
log = logging.getLogger("tokenmath.web")


@st.cache_resource
def catalog():
    return tm.load_catalog()


# st.pyplot's resolution (streamlit.elements.pyplot). The figure is made at that dpi and saved
# without st.pyplot's bbox_inches="tight": plots already fitted it (tight_layout), and "tight" lays
# the figure out and draws it once more only to crop the same margins (about a quarter of the time).
CHART_DPI = 200
CHART_MODULES = {"tokenmath.plots", "tokenmath.web.charts"}  # where chart_png looks a chart up


@st.cache_data(max_entries=128, show_spinner=False)
def chart_png(make: str, *args, **kwargs) -> bytes:
    """The PNG of `make` ("module:function", plots.py or web/charts.py)(*args, **kwargs), drawn
    under the plot lock (matplotlib is not thread-safe and every browser session runs in its own
    thread). Cached by its inputs: Streamlit reruns the whole page on every widget change, and a
    chart whose inputs did not change (the speculative-decoding inputs on Fast/slow mode, the price
    sheet on Prices, a page visited again) is not drawn again."""
    module, name = make.split(":")
    if module not in CHART_MODULES:
        raise ValueError(f"not a chart module: {module}")
    with plots.LOCK, plt.rc_context({"figure.dpi": CHART_DPI}):
        fig = getattr(importlib.import_module(module), name)(*args, **kwargs)
        try:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=CHART_DPI)
            return buf.getvalue()
        finally:
            plt.close(fig)


def show(make, *args, chart_width: int | str = 820, **kwargs) -> None:
    """Draw one chart: `make`'s figure as the image st.pyplot would show (chart_png)."""
    st.image(chart_png(f"{make.__module__}:{make.__name__}", *args, **kwargs), width=chart_width, output_format="PNG")


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
UPLOADER_GEN = "uploader_gen"  # bumped to give the uploader a new key: the only way to empty it


def uploader_key() -> str:
    return f"upload_{st.session_state.get(UPLOADER_GEN, 0)}"


def keep_upload() -> None:
    """The uploader's on_change: keep (file name, bytes) in the session, so the upload survives a page
    that draws no sidebar (Streamlit drops an undrawn widget's value); clearing the uploader forgets
    it. Only the first MAX_UPLOAD_BYTES + 1 bytes are kept: enough to refuse a bigger file."""
    f = st.session_state.get(uploader_key())
    if f is None:
        st.session_state.pop(KEPT_UPLOAD, None)
    else:
        st.session_state[KEPT_UPLOAD] = (f.name, f.getvalue()[:MAX_UPLOAD_BYTES + 1])


def forget_upload() -> None:
    """The "Forget the uploaded config" button: drop the kept upload and empty the uploader."""
    st.session_state.pop(KEPT_UPLOAD, None)
    st.session_state[UPLOADER_GEN] = st.session_state.get(UPLOADER_GEN, 0) + 1


def uploaded_name(filename: str) -> str:
    return filename.removesuffix(".json")


def pick_model_system(cat, page: str):
    """The sidebar's model, system, dtypes and the estimate's profile; only the controls `page`
    uses are drawn. While an uploaded config.json is in use, the sidebar names it as the model (the
    catalog's model list is greyed out until the upload is forgotten)."""
    needs = SIDEBAR[page]
    if not needs:
        return None, None, None, None
    kept = st.session_state.get(KEPT_UPLOAD)
    with st.sidebar:
        name = st.selectbox("Catalog model" + (" (replaced by the upload)" if kept else ""), sorted(cat.models),
                            key="model", disabled=bool(kept))
        st.file_uploader("…or a Hugging Face config.json", type=["json"], key=uploader_key(), on_change=keep_upload)
        if kept:
            st.markdown(f"Model in use: **{html.escape(uploaded_name(kept[0]))}** (the uploaded {html.escape(kept[0])},"
                        " kept across pages)")
            st.button("Forget the uploaded config", key="forget_upload", on_click=forget_upload)
        sysname = st.selectbox("System", sorted(cat.systems), key="system") if "system" in needs else None
        if "dtypes" in needs:
            weight = st.selectbox("Weight dtype", ["native", "bf16", "fp8", "fp4"], key="weight")
            kv = st.selectbox("KV dtype", ["bf16", "fp8"], key="kv")
        engine = (st.selectbox("Estimate: engine profile", ENGINES, key="engine",
                               help="The calibrated estimate's engine profile (the CLI's --engine); generic = "
                                    "the fit over every engine.") if "engine" in needs else None)
    model = cat.model(name)
    if kept:
        filename, raw = kept
        if len(raw) > MAX_UPLOAD_BYTES:
            raise TokenmathError(f"the uploaded config {filename} is larger than {MAX_UPLOAD_BYTES:,} bytes, the most"
                                 " the blackboard reads")
        from tokenmath.hf import config_from_bytes

        cfg = config_from_bytes(raw, "the uploaded config")  # one sentence for any malformed upload
        model = model_from_config(cfg, name=uploaded_name(filename), source="uploaded config.json")
    if sysname is None:
        return model, None, None, engine
    dtypes = tm.Dtypes(weight=None if weight == "native" else weight, kv=kv)
    system = cat.system(sysname)
    system.compute_class_for(dtypes.weight or model.weight_dtype)  # one sentence if unsupported
    return model, system, dtypes, engine


def profile_for(engine: str | None, system):
    """The estimate's profile, chosen as the CLI's `_profile` chooses it (profiles.choose)."""
    return pf.choose("calibrated", engine=None if engine in (None, "generic") else engine, system=system)


def estimate(model, system, batch, context, *, prof, chips=None, layout=None, dt=tm.Dtypes()):
    """estimate_pass under `prof`, or None where the model is defined by totals only (the estimate
    needs its architecture: the page then shows the roofline bound alone, and says so)."""
    if model.is_totals_only:
        return None
    return estimate_pass(model, system, batch, context, 1.0, chips=chips, layout=layout, dtypes=dt, profile=prof)


def no_estimate_note(model) -> None:
    st.caption(f"{model.name} is defined by totals only: the estimate needs its architecture (a config.json), so "
               "this page shows the **roofline bound** alone.")


def band(est, key):
    """(lo, hi) of the estimate's 80 % band for `key`, or None."""
    r = None if est is None else (est.range_80 or {}).get(key)
    return None if r is None else (r[0], r[1])


def money(v, digits: int = 4) -> str:
    return "n/a" if v is None else f"${v:,.{digits}g}"


def figures_table(rows, est_label: str | None) -> None:
    """One markdown table: each figure's estimate, its 80 % band and the roofline bound beside it."""
    head = f"| | **estimate** ({est_label}) | 80 % band | roofline bound |" if est_label else "| | | | roofline bound |"
    lines = [head, "|---|---:|---:|---:|"]
    lines += [f"| {name} | {e} | {b} | {r} |" for name, e, b, r in rows]
    st.markdown("\n".join(lines))


def page_batch(cat, model, system, dt, engine) -> None:
    st.header("Batch: latency and cost vs batch size")
    context = st.select_slider("Context L (tokens)", CONTEXTS, value=4096, key="batch_context")
    chips = replica_chips(model, system, context, dtypes=dt)
    batch = st.select_slider("Batch B (sequences)", BATCHES, value=1024, key="batch")
    prof = profile_for(engine, system)
    s = tm.step_time(model, system, batch, context, chips=chips, dtypes=dt)  # the lecture's roofline (ideal sharding)
    e = estimate(model, system, batch, context, prof=prof, chips=chips, dt=dt)
    # the bound beside the estimate is the roofline of the same pass (its layout, chips and expert
    # fetch), as `tokenmath step` gives it; a totals-only model has only the lecture's closed form
    b = s if e is None else e.roofline
    bstar = serving.balance_batch(model, system, dtypes=dt)
    c1, c2, c3, c4 = st.columns(4)
    if e is not None:
        c1.metric("step time (estimate)", seconds(e.step_s))
        c2.metric("tokens/s per chip (estimate)", f"{e.tokens_per_s_per_chip:,.0f}")
        c3.metric("$ / Mtok (estimate)", "n/a" if e.usd_per_mtok is None else f"{e.usd_per_mtok:.4g}")
    else:
        c1.metric("step time (roofline bound)", seconds(s.step_s))
        c2.metric("tokens/s per chip (roofline bound)", f"{s.tokens_per_s_per_chip:,.0f}")
        c3.metric("$ / Mtok (roofline bound)", "n/a" if s.usd_per_mtok is None else f"{s.usd_per_mtok:.4g}")
    c4.metric("roofline bound: step time", seconds(b.step_s), help=f"{b.bound} bound")
    usd = lambda v: "n/a" if v is None else f"${sig(v, 4)}"  # noqa: E731
    num = lambda v: f"{v:,.0f}"  # noqa: E731
    rows = [("step time", seconds(e.step_s) if e else "—", charts.band_text(*(band(e, "step_s") or (None, None))),
             seconds(b.step_s)),
            ("tokens/s (replica)", num(e.tokens_per_s) if e else "—", "—", num(b.tokens_per_s)),
            ("tokens/s per chip", num(e.tokens_per_s_per_chip) if e else "—",
             charts.band_text(*(band(e, "tokens_per_s_per_chip") or (None, None)), fmt=num), num(b.tokens_per_s_per_chip)),
            ("tokens/s per user", f"{e.tokens_per_s_per_user:,.1f}" if e else "—", "—", f"{b.tokens_per_s_per_user:,.1f}"),
            ("$ per million tokens", usd(e.usd_per_mtok) if e else "—",
             charts.band_text(*(band(e, "usd_per_mtok") or (None, None)), fmt=usd), usd(b.usd_per_mtok))]
    figures_table(rows, e.label if e else None)
    if e is None:
        no_estimate_note(model)
    else:
        names = {"dense_gemm_s": "dense GEMMs", "expert_gemm_s": "expert GEMMs", "attention_s": "attention",
                 "tp_comm_s": "TP all-reduce", "ep_comm_s": "EP all-to-all", "pp_comm_s": "PP send/recv",
                 "overhead_s": "per-step overhead"}
        lt = e.op.layout
        parts = ", ".join(f"{names.get(k, k)} {seconds(float(v))}" for k, v in e.op.parts.items() if float(v) > 0)
        st.caption(f"The **estimate** is the answer (`tokenmath step`): the per-operation step model on TP{lt.tp} EP{lt.ep} "
                   f"PP{lt.pp} — {parts}. The **roofline bound** beside it is the same pass at peak FLOP/s and HBM "
                   "bandwidth, ideal links (a floor no engine beats); the charts' thin lines are the lecture's "
                   "blackboard, max(compute, weight + KV fetch) with the weights sharded ideally over the chips.")
    st.caption(f"{chips} × {system.name}; weights {s.assumptions.weight_dtype}, KV {s.assumptions.kv_dtype}. "
               f"Balance batch B\\* = {bstar:,.0f} (roofline); HBM drain {seconds(tm.hbm_drain_s(system))}.")
    mem = b.weights_s + b.kv_s
    if b.bound == "memory":
        ratio = mem / max(b.compute_s, 1e-30)
        bkv = serving.balance_batch_with_kv(model, system, context, dtypes=dt)
        hint = (f"raise the batch toward ~{bkv:,.0f} to amortise the weights" if bkv
                else "no batch makes it compute bound at this context: the KV read per sequence outlasts its compute")
        st.info(f"Roofline: memory bound — weight + KV fetch is {ratio:,.1f}× compute; {hint}.")
    else:
        st.info(f"Roofline: {b.bound} bound — compute is {b.compute_s / max(mem, 1e-30):,.1f}× the memory time; more "
                "batch no longer lowers the bound's cost per token.")
    if not s.fits:
        st.warning(f"Weights + KV need {si(s.memory_bytes, 'B')}, more than the {si(s.hbm_bytes, 'B')} of HBM.")
    curve = serving.curve(model, system, over="batch", context=context, chips=chips, dtypes=dt, points=100)
    ec = estimate(model, system, curve.batch, context, prof=prof, chips=chips, dt=dt)
    lat = None if ec is None else {"step_s": ec.step_s, "band": band(ec, "step_s"), "label": ec.label}
    left, right = st.columns(2)
    point = s if e is None else e
    with left:
        show(charts.latency_vs_batch, curve, lat, title=f"{model.name} on {chips} × {system.name}, L = {context:,}: step time",
             balance_batch=bstar, drain_s=tm.hbm_drain_s(system), mark=(batch, point.step_s), chart_width="stretch")
    if curve.usd_per_mtok is not None:
        cost = None if ec is None else {"usd_per_mtok": ec.usd_per_mtok, "band": band(ec, "usd_per_mtok"), "label": ec.label}
        with right:
            show(charts.cost_vs_batch, curve, cost, title=f"{model.name}, L = {context:,}: cost per token",
                 balance_batch=bstar, mark=(batch, point.usd_per_mtok), chart_width="stretch",
                 floor_usd_per_mtok=serving.cost_floor_usd_per_mtok(model, system, context, dtypes=dt))
    hooks(step_s=f"{(s if e is None else e).step_s:.6g}", bound_step_s=f"{b.step_s:.6g}",
          usd_per_mtok="n/a" if point.usd_per_mtok is None else f"{point.usd_per_mtok:.6g}",
          bound_usd_per_mtok="n/a" if b.usd_per_mtok is None else f"{b.usd_per_mtok:.6g}",
          estimate_label="roofline" if e is None else e.label, model_name=model.name, batch_value=f"{batch}",
          context_value=f"{context}", chips_value=f"{chips}")


def page_context(cat, model, system, dt, engine) -> None:
    st.header("Context: cost vs context length")
    batch = st.select_slider("Batch B", BATCHES, value=16384, key="ctx_batch")  # ~3× B*: the lines cross
    sparse = st.toggle("Sparse attention (top-2048, DSA-style)", key="sparse")
    m = tm.kvcache.with_sparse_attention(model, 2048) if sparse else model
    chips = replica_chips(m, system, 8192, dtypes=dt)
    L = serving.balance_context(m, system, None, chips=chips, dtypes=dt)  # weights amortised (B → ∞)
    LB = serving.balance_context(m, system, batch, chips=chips, dtypes=dt)  # at the chart's batch
    if L is None:
        st.markdown("**Balance context L\\*: none** — compute wins at every context (the KV read per token never "
                    "overtakes the attention + MLP compute), on the roofline.")
    else:
        st.markdown(f"**Balance context L\\* = {L:,.0f} tokens** (a roofline quantity): past it the KV fetch outlasts "
                    "the compute (weights amortised over a large batch).")
    if LB is None or LB == 0:
        st.caption(f"At B = {batch:,}: {'compute' if LB is None else 'memory (the weight fetch)'} binds the roofline at "
                   "every context, so the chart has no crossover.")
    else:
        st.caption(f"At B = {batch:,} the weight fetch counts too: the roofline's lines cross at L = {LB:,.0f} tokens.")
    curve = serving.curve(m, system, over="context", batch=batch, chips=chips, dtypes=dt, points=100)
    prof = profile_for(engine, system)
    ec = estimate(m, system, batch, curve.context, prof=prof, chips=chips, dt=dt)
    cost = None
    if ec is None:
        no_estimate_note(m)
    else:
        if ec.usd_per_mtok is not None:
            y, b = ec.usd_per_mtok, band(ec, "usd_per_mtok")
        else:  # the chart's unit without a price: chip-seconds per million tokens
            y = np.asarray(ec.step_s) * ec.op.billed_chips / batch * 1e6
            b = None if band(ec, "step_s") is None else tuple(np.asarray(v) * ec.op.billed_chips / batch * 1e6
                                                              for v in band(ec, "step_s"))
        cost = {"cost": y, "band": b, "label": ec.label}
        at = 8192  # one point in words: the estimate and the bound of the same pass
        e8 = estimate(m, system, batch, at, prof=prof, chips=chips, dt=dt)
        b8 = tm.step_time(m, system, batch, at, chips=chips, dtypes=dt)
        st.caption(f"The **estimate** ({ec.label}) is the main line, with its 80 % band; the roofline's compute and "
                   f"memory parts and their max (the **roofline bound**, dashed) beside it. At L = {at:,}: estimate "
                   f"{seconds(e8.step_s)} per step (80 % band {charts.band_text(*(band(e8, 'step_s') or (None, None)))}), "
                   f"roofline bound {seconds(b8.step_s)}.")
    show(charts.cost_vs_context, curve, cost, title=f"{m.name} on {chips} × {system.name}, B = {batch:,}: cost vs context",
         crossover=LB or None)
    hooks(l_star="none (compute wins at every context)" if L is None else f"{L:,.0f} tokens",
          l_at_batch="none" if not LB else f"{LB:,.0f}")


def page_fast(cat, model, system, dt, engine) -> None:
    st.header("Fast mode and slow mode")
    context = st.select_slider("Context L", CONTEXTS, value=4096, key="fast_context")
    speed = st.slider("Target speed-up", 1.0, 10.0, 2.5, 0.1, key="speedup")
    chips = replica_chips(model, system, context, dtypes=dt)
    fm = serving.fast_mode(model, system, context, speedup=speed, chips=chips, dtypes=dt)
    if fm.batch is None:
        st.warning(f"{speed:.1f}× is out of reach by batch size alone on the roofline: batch 1 gives "
                   f"{fm.max_speedup:.2f}×.")
    else:
        st.write(f"Roofline bound: batch {fm.batch:,.0f} (normal {fm.reference_batch:,.0f}) gives {fm.speedup:.2f}× the "
                 f"speed for {fm.price_multiplier:.2f}× the price; at most {fm.max_speedup:.2f}× (latency floor), slow "
                 f"mode saves at most {fm.max_saving:.2f}×.")
    prof = profile_for(engine, system)
    b_pts = np.asarray(fm.points.batch, float)
    ep = estimate(model, system, b_pts, context, prof=prof, chips=chips, dt=dt)
    er = estimate(model, system, fm.reference_batch, context, prof=prof, chips=chips, dt=dt)
    front = None
    if ep is None or er is None:
        no_estimate_note(model)
    else:
        # speed = tokens/s per user and price = $/token, each relative to the estimate at the reference batch
        sp = float(er.step_s) / np.asarray(ep.step_s)
        pm = (np.asarray(ep.step_s) / b_pts) / (float(er.step_s) / fm.reference_batch)
        point = None
        if fm.batch is not None:
            eb = estimate(model, system, fm.batch, context, prof=prof, chips=chips, dt=dt)
            point = (float(er.step_s) / float(eb.step_s), (float(eb.step_s) / fm.batch) / (float(er.step_s) / fm.reference_batch),
                     fm.batch)
            st.write(f"Estimate ({ep.label}) at the same batch {fm.batch:,.0f}: {point[0]:.2f}× the speed for "
                     f"{point[1]:.2f}× the price (step {seconds(float(eb.step_s))} against {seconds(float(er.step_s))} at "
                     f"B = {fm.reference_batch:,.0f}); at batch 1: {float(sp[0]):.2f}×.")
        front = {"speedup": sp, "price_multiplier": pm, "point": point, "label": ep.label}
    k = st.number_input("Speculative decoding: drafted tokens", 0, 8, 1, key="draft")
    a = st.slider("Acceptance rate", 0.0, 1.0, 0.8, 0.05, key="accept")
    if k:
        sp = serving.speculative_decode(model, system, fm.batch or fm.reference_batch, context, int(k), a, chips=chips,
                                        dtypes=dt)
        st.write(f"Speculative decoding (roofline bound): {sp.tokens_per_verify:.2f} tokens per verify pass → "
                 f"{sp.speedup:.2f}× speed, {sp.price_multiplier:.2f}× price per token (draft cost neglected, as an MTP head).")
    show(charts.price_speed_frontier, fm, front,
         title=f"{model.name} on {chips} × {system.name}, L = {context:,}: price vs speed")
    hooks(price_multiplier="out of reach" if fm.batch is None else f"{fm.price_multiplier:.3f}",
          est_price_multiplier="n/a" if not front or front["point"] is None else f"{front['point'][1]:.3f}")


def page_client(cat, model, system, dt, engine) -> None:
    st.header("What a benchmark client reports")
    st.caption("What `vllm bench serve --max-concurrency c`, SGLang's bench_serving or genai-perf will print at each "
               "concurrency: TTFT, TPOT (1 / tokens/s per user) and output tokens/s per chip — the `tokenmath client` "
               "command (docs/client.md).")
    c1, c2, c3 = st.columns(3)
    I = c1.select_slider("Input tokens", LENGTHS, value=1000, key="cl_in")
    O = c2.select_slider("Output tokens", LENGTHS, value=1000, key="cl_out")
    arrivals = c3.radio("Arrivals", ("spread", "waves"), horizontal=True, key="cl_arr",
                        help="spread: random lengths, prompts arrive through the run; waves: fixed lengths "
                             "(--random-range-ratio 1), a wave of prompts starts and ends together")
    if model.is_totals_only:
        no_estimate_note(model)
        st.caption("A client's numbers need the per-operation step model, so this page has none for it.")
        return
    r = tm.client(model, system, input_tokens=I, output_tokens=O, arrivals=arrivals, weight_dtype=dt.weight,
                  kv_dtype=dt.kv, engine=None if engine in (None, "generic") else engine)
    rec, sw = r.to_dict(), r.parts["sweep"]
    from tokenmath.api import CLIENT_COLUMNS, client_cells

    lines = ["| " + " | ".join(CLIENT_COLUMNS) + " |", "|" + "---:|" * len(CLIENT_COLUMNS)]
    lines += ["| " + " | ".join(client_cells(p)) + " |" for p in rec["points"]]
    st.markdown("\n".join(lines))
    st.caption(f"{model.name} on {rec['chips']} × {system.name} ({rec['layout']}); estimate: {rec['estimate']}, with the "
               f"80 % band of its model class; bound: the same runs with every step at its roofline bound. Beyond "
               f"{rec['kv_cap_sequences']:,.0f} sequences (the KV that fits at the mean context) the rest queue.")
    show(plots.client_frontier, sw, title=f"{model.name} on {rec['chips']} × {system.name}, I = {I:,}, O = {O:,}")
    top = rec["points"][-1]
    hooks(client_points=f"{len(rec['points'])}", client_cap=f"{rec['kv_cap_sequences']:.6g}",
          client_tpot_at_cap=f"{top['tpot_s']:.6g}", client_tput_at_cap=f"{top['output_tokens_per_s_per_chip']:.6g}")


def page_layout(cat, model, system, dt, engine) -> None:
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
    s = lay.layout_step(model, system, layout, batch, context, dtypes=dt, overlap="full")  # as `tokenmath layout`
    e = estimate(model, system, batch, context, prof=profile_for(engine, system), layout=layout, dt=dt)
    m = s.memory
    if m.fits and m.serves:
        st.success(f"Fits: {si(float(m.total_bytes_per_chip), 'B')} of {si(m.hbm_bytes_per_chip, 'B')} HBM per chip, "
                   f"inside the {si(float(m.serving_bytes_per_chip), 'B')} a serving engine fills.")
    elif m.fits:
        st.warning(f"Fits in HBM ({si(float(m.total_bytes_per_chip), 'B')} of {si(m.hbm_bytes_per_chip, 'B')} per chip), "
                   f"but not in the {si(float(m.serving_bytes_per_chip), 'B')} a serving engine fills (90 % less its "
                   "runtime's reserve): the bound holds, an engine would not start.")
    else:
        st.warning(f"Does not fit: {si(float(m.total_bytes_per_chip), 'B')} per chip, more than the "
                   f"{si(m.hbm_bytes_per_chip, 'B')} of HBM.")
    if e is not None:
        lo_hi = band(e, "step_s")
        st.markdown(f"**Estimate** ({e.label}): step **{seconds(e.step_s)}** (80 % band "
                    f"{charts.band_text(*(lo_hi or (None, None)))}), {e.tokens_per_s_per_chip:,.0f} tokens/s per chip, "
                    f"{e.tokens_per_s_per_user:,.1f} per user" + ("" if e.usd_per_mtok is None else f", ${sig(e.usd_per_mtok, 4)}/Mtok")
                    + ".")
    b = s if e is None else e.roofline  # the bound of the same pass, as `tokenmath layout` gives it
    st.write(f"Roofline bound: {layout.describe()} on {s.chips} chips ({s.placement.domains} domain(s), "
             f"{s.placement.idle_chips:g} idle): step {seconds(b.step_s)}, {b.bound} bound; all-to-all "
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
    hooks(fits="yes" if m.fits else "NO", step_s="n/a" if e is None else f"{e.step_s:.6g}", bound_step_s=f"{b.step_s:.6g}")
    if st.checkbox("Plan: cheapest deployment across the catalog (≥ 20 tokens/s per user)", key="plan"):
        from tokenmath.plan import plan

        p = plan(model, list(cat.systems.values()), input_tokens=2000, output_tokens=500, min_tokens_per_s_per_user=20)
        if p.best is not None:
            b = p.best
            st.write(f"Cheapest ({p.estimate}): {b.system} TP{b.tp} EP{b.ep} PP{b.pp}, batch {b.batch:,.0f}: "
                     f"{b.tokens_per_s_per_user:,.1f} tokens/s per user, ${b.usd_per_mtok:.3g}/Mtok.")
            show(plots.plan_frontier, p, title=f"{model.name}: Pareto frontier")


def page_prices(cat, model, system, dt, engine) -> None:
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


def page_training(cat, model, system, dt, engine) -> None:
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


# ---- Fleet --------------------------------------------------------------------------------------

# The Fleet page's inputs, bounded (the core bounds them too, more loosely): each run simulates
# every verified candidate, so the page keeps the work a person waits for small.
FLEET_BOUNDS = {"rate": (0.01, 10_000.0), "input": (1, 1_000_000), "output": (1, 100_000), "ttft_s": (0.01, 600.0),
                "tpot_ms": (1.0, 10_000.0), "verify": (1, 5)}
FLEET_DEFAULT_SYSTEMS = ("b200", "h100-sxm", "h200-sxm", "mi300x")
# Words for the fleet record's keys (report.fleet_record); a key not named here is shown by its own
# name, so keys the core adds later appear without a change here.
FLEET_LABELS = {
    "mode": "mode", "total_chips": "chips (billed)", "usd_per_hour": "$ per hour",
    "usd_per_mtok": "$ per million output tokens", "usd_per_mtok_output": "$ per million output tokens",
    "usd_per_mtok_all_tokens": "$ per million tokens, input + output", "watts": "power at the facility (× PUE)",
    "joules_per_token": "J per output token (prefill included)", "goodput_requests_per_s": "goodput (requests meeting every SLO)",
    "simulated.ttft_p50_s": "TTFT p50 (simulated)", "simulated.ttft_p99_s": "TTFT p99 (simulated)",
    "simulated.tpot_p50_s": "TPOT p50 (simulated)", "simulated.tpot_p99_s": "TPOT p99 (simulated)",
    "simulated.slo_attainment": "requests meeting every SLO (simulated)", "simulated.meets_slo": "meets the SLOs (simulated)",
    "simulated.requests_per_replica": "requests simulated per replica",
    "analytic.ttft_s": "TTFT (analytic screen)", "analytic.tpot_s": "TPOT (analytic screen)",
    "analytic.kv_transfer_s": "KV transfer per request (analytic)",
}


def fmt_figure(key: str, v) -> str:
    """A fleet record's value in words and units, chosen by its key's unit suffix."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        return f"{fmt_figure(key, v[0])} – {fmt_figure(key, v[1])}"
    if not isinstance(v, (int, float)):
        return html.escape(str(v))
    leaf = key.rsplit(".", 1)[-1]
    if "usd_per_mtok" in leaf:
        return f"${sig(v, 4)}/Mtok"
    if "usd_per_hour" in leaf:
        return f"${v:,.2f}/h"
    if leaf == "watts" or leaf.endswith("_w"):
        return si(v, "W")
    if "joules" in leaf:
        return f"{sig(v, 3)} J"
    if "attainment" in leaf or leaf.endswith(("_fraction", "_share")):
        return f"{v:.1%}"
    if leaf.endswith("requests_per_s"):
        return f"{sig(v, 4)} requests/s"
    if leaf.endswith("_s") or "_s_" in leaf:
        return seconds(v)
    return f"{sig(v, 4)}" if isinstance(v, float) else f"{v:,}"


def flat_figures(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, value) of every scalar (or [lo, hi] pair) in a record, nested dicts flattened; lists
    of records (pools) are shown in their own table."""
    rows = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows += flat_figures(v, key + ".")
        elif not isinstance(v, list) or (len(v) == 2 and all(isinstance(x, (int, float)) for x in v)):
            rows.append((key, v))
    return rows


@st.cache_data(max_entries=16, show_spinner=False)
def fleet_answer(_model, model_key: str, system_names: tuple[str, ...], rate: float, I: int, O: int, ttft_s: float,
                 tpot_s: float, disaggregation: str, engine: str | None, verify: int):
    """fleet.fleet(...) and its record (report.fleet_record, what `tokenmath fleet --json` prints),
    cached by the inputs (`model_key` names the model: the catalog name, or the upload's bytes)."""
    from tokenmath import fleet as fl
    from tokenmath import report as rp

    cat = catalog()
    result = fl.fleet(_model, [cat.system(n) for n in system_names], request_rate=rate, input_tokens=I, output_tokens=O,
                      slo=fl.Slo(ttft_p99_s=ttft_s, tpot_p99_s=tpot_s), disaggregation=disaggregation, engine=engine,
                      verify=verify)
    return result, rp.fleet_record(result)


def page_fleet(cat, model, system, dt, engine) -> None:
    st.header("Fleet: requests and tail-latency SLOs → hardware, chips and cost")
    st.caption("The fleet is sized on the **estimate** (the calibrated step model) and each candidate is checked in a "
               "simulation of the request stream: its TTFT and TPOT tails are simulated, not the bound. The FLOP lower "
               "bound beside it is the roofline's: no fleet of that hardware serves the rate on fewer chips.")
    lo = FLEET_BOUNDS
    with st.form("fleet_form"):
        c1, c2, c3 = st.columns(3)
        rate = c1.number_input("Request rate (requests/s)", *lo["rate"], 10.0, key="fleet_rate")
        I = c2.number_input("Input tokens per request", *lo["input"], 2000, step=500, key="fleet_input")
        O = c3.number_input("Output tokens per request", *lo["output"], 500, step=100, key="fleet_output")
        c4, c5, c6 = st.columns(3)
        ttft = c4.number_input("TTFT p99 SLO (s)", *lo["ttft_s"], 2.0, key="fleet_ttft")
        tpot_ms = c5.number_input("TPOT p99 SLO (ms)", *lo["tpot_ms"], 50.0, key="fleet_tpot")
        mode = c6.radio("Disaggregated prefill/decode", ["auto", "on", "off"], horizontal=True, key="fleet_mode")
        priced = sorted(n for n, s in cat.systems.items() if s.usd_per_chip_hour is not None)
        systems = st.multiselect("Systems", sorted(cat.systems), default=[n for n in FLEET_DEFAULT_SYSTEMS if n in cat.systems],
                                 key="fleet_systems", help=f"Priced in the catalog: {', '.join(priced)}.")
        verify = st.slider("Candidates to verify in simulation", *lo["verify"], 3, key="fleet_verify")
        st.form_submit_button("Size the fleet", type="primary")
    if not systems:
        raise TokenmathError("no systems chosen; pick at least one system to plan on")
    kept = st.session_state.get(KEPT_UPLOAD)
    key = model.name if not kept else f"upload:{kept[0]}:{hash(kept[1])}"
    with st.spinner(f"Sizing the fleet for {model.name} and simulating its tails…"):
        result, rec = fleet_answer(model, key, tuple(systems), float(rate), int(I), int(O), float(ttft),
                                   float(tpot_ms) / 1e3, mode, None if engine in (None, "generic") else engine, int(verify))
    best = rec["best"]
    slo = f"SLO {seconds(float(ttft))}", f"SLO {seconds(float(tpot_ms) / 1e3)}"
    if best is None:
        st.warning("No candidate met the SLOs in simulation; the closest are listed below.")
    else:
        sim = best.get("simulated") or {}
        c = st.columns(4)
        c[0].metric("chips (estimate)", f"{best['total_chips']:,.0f}")
        c[1].metric("$ per hour", fmt_figure("usd_per_hour", best.get("usd_per_hour")))
        c[2].metric(f"TTFT p99 (simulated; {slo[0]})", fmt_figure("ttft_p99_s", sim.get("ttft_p99_s")))
        c[3].metric(f"TPOT p99 (simulated; {slo[1]})", fmt_figure("tpot_p99_s", sim.get("tpot_p99_s")))
        pools = " + ".join(f"{p['replicas']} × {p['system']} TP{p['tp']} EP{p['ep']} PP{p['pp']}"
                           + ("" if p["role"] == "both" else f" ({p['role']})") for p in best["pools"])
        st.markdown(f"**Best: {best['mode']}**, {pools}. FLOP lower bound (roofline): "
                    f"{rec['flop_lower_bound_chips']:,.1f} chips.")
        st.caption(f"Estimate: {rec['estimate']}. {rec['mode_reason']}.")
        st.markdown("**Pools**")
        st.table([{"role": p["role"], "system": p["system"], "replicas": p["replicas"],
                   "layout": f"TP{p['tp']} EP{p['ep']} PP{p['pp']} = {p['chips_per_replica']} chips",
                   "batch ≤": f"{p['max_batch']:,}", "weights / KV": f"{p['weight_dtype']} / {p['kv_dtype']}",
                   "capacity per replica": fmt_figure("capacity_requests_per_s", p.get("capacity_requests_per_s")),
                   "$ per hour": fmt_figure("usd_per_hour", p.get("usd_per_hour"))} for p in best["pools"]])
    left, right = st.columns([2, 3])
    if best is not None:
        with left:
            lines = ["| the best fleet | |", "|---|---:|"]
            lines += [f"| {FLEET_LABELS.get(k, k.replace('_', ' '))} | {fmt_figure(k, v)} |" for k, v in flat_figures(best)]
            st.markdown("\n".join(lines))
    with right:
        if rec["candidates"]:
            st.markdown("**Every candidate simulated** (cheapest first)")
            rows = []
            for o in rec["candidates"]:
                s = o.get("simulated") or {}
                rows.append({"mode": o["mode"],
                             "pools": " + ".join(f"{p['replicas']}×{p['system']} TP{p['tp']}EP{p['ep']}PP{p['pp']}"
                                                 for p in o["pools"]),
                             "chips": f"{o['total_chips']:,.0f}", "$ per hour": fmt_figure("usd_per_hour", o.get("usd_per_hour")),
                             "TTFT p99": fmt_figure("ttft_p99_s", s.get("ttft_p99_s")),
                             "TPOT p99": fmt_figure("tpot_p99_s", s.get("tpot_p99_s")),
                             "meets the SLOs": fmt_figure("meets_slo", s.get("meets_slo"))})
            st.table(rows)
        if result.frontier:
            show(plots.fleet_frontier, result, chart_width="stretch")
    hooks(fleet_chips="none" if best is None else f"{best['total_chips']:.6g}",
          fleet_usd_per_hour="n/a" if best is None or best.get("usd_per_hour") is None else f"{best['usd_per_hour']:.6g}",
          fleet_ttft_p99_s="n/a" if best is None or not best.get("simulated") else f"{best['simulated']['ttft_p99_s']:.6g}",
          fleet_tpot_p99_s="n/a" if best is None or not best.get("simulated") else f"{best['simulated']['tpot_p99_s']:.6g}")


# ---- Energy -------------------------------------------------------------------------------------

ENERGY_BOUNDS = {"pue": (1.0, 3.0), "capex": (0.0, 1e7), "cost_of_capital": (0.0, 0.5)}
# The core's assumptions name the CLI's flags; on the page, the control that sets the same figure.
PAGE_CONTROLS = {"--cost-of-capital": "the cost of capital above", "--pue": "the PUE above",
                 "--capex-usd-per-chip": "the capex above"}


def page_words(text: str) -> str:
    """An assumption or message in the page's words: 'give --pue' becomes 'set the PUE above'; a flag
    the page has no control for is named as the CLI's."""
    import re

    def one(m):
        flag = m.group(1)
        return f"set {PAGE_CONTROLS[flag]}" if flag in PAGE_CONTROLS else f"the CLI's {flag} sets it"

    return re.sub(r"give (--[a-z0-9-]+)", one, text)


def page_energy(cat, model, system, dt, engine) -> None:
    st.header("Energy: watts, joules per token, and owning vs renting")
    c1, c2 = st.columns(2)
    batch = c1.select_slider("Batch B (sequences)", BATCHES, value=256, key="energy_batch")
    context = c2.select_slider("Context L (tokens)", CONTEXTS, value=4096, key="energy_context")
    fac_default = en.facility()
    pue = st.number_input("PUE (facility power ÷ IT power)", *ENERGY_BOUNDS["pue"], float(fac_default.pue), 0.01,
                          key="energy_pue")
    try:
        power = en.chip_power(system)
    except TokenmathError:
        st.warning(f"{system.name} has no published board power in the catalog or energy.toml, so its watts and its "
                   "cost of ownership cannot be computed here; pick another system.")
        hooks(joules_per_token="n/a", owned_usd_per_chip_hour="n/a")
        return
    fac = en.facility(pue=None if abs(pue - fac_default.pue) < 1e-9 else pue)
    chips = replica_chips(model, system, context, batch, dtypes=dt)
    prof = profile_for(engine, system)
    if model.is_totals_only:  # no layout: the lecture's roofline on ideal sharding, as `tokenmath energy` does
        e = None
        bound = ee = en.energy_of(tm.step_time(model, system, batch, context, chips=chips, dtypes=dt), system,
                                  power=power, fac=fac, level="facility")
    else:  # `tokenmath energy`: the estimate on the replica's layout; the bound of the same pass beside it
        from tokenmath.estimate import replica
        from tokenmath.profiles import ROOFLINE_PROFILE

        rep = replica(model, system, batch, context, chips=chips, dtypes=dt)
        e = estimate(model, system, batch, context, prof=prof, layout=rep.layout, dt=dt)
        ee = en.energy_of_pass(e, system, power=power, fac=fac, level="facility")  # the page has a PUE control
        bound = en.energy_of_pass(estimate(model, system, batch, context, prof=ROOFLINE_PROFILE, layout=rep.layout,
                                           dt=dt), system, power=power, fac=fac, level="facility")
    what = "roofline bound" if e is None else "estimate"
    st.subheader(f"{model.name} on {chips} × {system.name}, B = {batch:,}, L = {context:,}")
    c = st.columns(4)
    c[0].metric(f"J per token ({what})", f"{sig(ee.joules_per_token, 3)}")
    c[1].metric(f"at the facility, × PUE ({what})", si(ee.watts, "W"))
    c[2].metric(f"per chip at the facility ({what})", si(ee.watts / chips, "W"))
    c[3].metric(f"tokens/s per MW ({what})", f"{sig(ee.tokens_per_s_per_mw, 4)}")
    if e is None:
        no_estimate_note(model)
    per = lambda x: f"{float(x) / chips:,.0f} W"  # noqa: E731
    rows = ["| watts by cause | per chip (" + what + ") | replica (" + what + ") | per chip (roofline bound) |",
            "|---|---:|---:|---:|"]
    for k in charts.CAUSES:
        rows.append(f"| {k} | {per(ee.parts_w[k])} | {si(float(ee.parts_w[k]), 'W')} | {per(bound.parts_w[k])} |")
    rows.append(f"| **at the facility (× PUE)** | **{per(ee.facility_watts)}** | **{si(ee.facility_watts, 'W')}** | "
                f"**{per(bound.facility_watts)}** |")
    st.markdown("\n".join(rows))
    st.caption(f"By level, per chip ({what}): the accelerator board draws {ee.chip_w:,.0f} W (busy {ee.u_compute:.0%} "
               f"compute, {ee.u_memory:.0%} memory over the {seconds(ee.step_s)} step), {ee.chip_w + power.host_w:,.0f} W with "
               f"its share of the host (at the wall), {ee.facility_watts / chips:,.0f} W at the facility (× PUE {fac.pue:g}). At the roofline bound's "
               f"{seconds(bound.step_s)} step the same pass draws {bound.chip_w:,.0f} W per board and "
               f"{sig(bound.joules_per_token, 3)} J/token.")
    for a in power.assumptions:
        st.caption(f"Assumption: {page_words(a)}")
    bars = [(f"estimate\n{seconds(ee.step_s)} step", {k: float(v) / chips for k, v in ee.parts_w.items()})] if e else []
    bars.append((f"roofline bound\n{seconds(bound.step_s)} step", {k: float(v) / chips for k, v in bound.parts_w.items()}))
    show(charts.watts_by_cause, bars, title=f"{model.name} on {system.name}: watts per chip by cause")

    st.subheader(f"Owning vs renting a {system.name} chip")
    c1, c2, c3, c4 = st.columns(4)
    u = c1.slider("Utilisation (share of hours busy)", 0.0, 1.0, 0.7, 0.05, key="energy_utilisation")
    capex = c2.number_input("Capex per chip ($; 0 = the sourced figure)", *ENERGY_BOUNDS["capex"], 0.0, 1000.0,
                            key="energy_capex")
    coc = c3.number_input("Cost of capital (per year; 0.1 = 10 %)", *ENERGY_BOUNDS["cost_of_capital"],
                          float(fac_default.cost_of_capital), 0.01, key="energy_coc")
    names = sorted(cat.prices)
    sheet_name = c4.selectbox("Compare with an API price sheet", names, index=names.index("deepseek-r1"),
                              key="energy_sheet")
    fac = en.facility(pue=fac.pue if fac.pue != fac_default.pue else None,
                      cost_of_capital=None if coc == fac_default.cost_of_capital else coc)
    tau = batch / chips if e is None else en.busy_tokens_of(e)  # a busy hour is this pass, as `tco --model` says
    try:
        t = en.tco(system, capex_usd=capex or None, utilisation=u, fac=fac, power=power, busy_tokens_per_chip=tau)
    except TokenmathError as err:
        if capex or "capex" not in str(err):
            raise
        st.info(f"No sourced capex for {system.name}: enter a purchase price per chip above to compare owning with "
                "renting.")
        hooks(joules_per_token=f"{ee.joules_per_token:.6g}", watts=f"{ee.watts:.6g}", owned_usd_per_chip_hour="n/a")
        return
    rent = t.rental_usd_per_chip_hour
    c = st.columns(3)
    c[0].metric(f"owning, at {t.utilisation:.0%} busy", f"${t.usd_per_chip_hour:,.3f}/chip-h")
    c[1].metric("renting (catalog)", "n/a" if rent is None else f"${rent:,.2f}/chip-h")
    c[2].metric("owned ÷ rented", "n/a" if rent is None else f"{t.usd_per_chip_hour / rent:.2f}×")
    st.markdown("\n".join([
        "| part of owning | $ per chip-hour | from |", "|---|---:|---|",
        f"| capital | {t.capex_usd_per_chip_hour:,.3f} | ${t.capex_usd:,.0f} × CRF {t.capital_recovery_factor:.4f} at "
        f"{fac.cost_of_capital:.0%} over {fac.years:g} years |",
        f"| electricity | {t.power_usd_per_chip_hour:,.3f} | {t.average_chip_w:,.0f} W chip (average at {t.utilisation:.0%} busy)"
        f" + {power.host_w:,.0f} W host, × PUE {fac.pue:g} × ${fac.usd_per_kwh:g}/kWh |",
        f"| facility | {t.facility_usd_per_chip_hour:,.3f} | ${fac.facility_usd_per_kw_month:g}/kW-month on the provisioned "
        "IT power |",
        f"| **total** | **{t.usd_per_chip_hour:,.3f}** | |"]))
    for a in fac.assumptions:
        st.caption(f"Assumption: {page_words(a)}")
    sheet = cat.price_sheet(sheet_name)
    grid = np.linspace(0.0, 1.0, 41)
    owned = np.array([en.tco(system, capex_usd=capex or None, utilisation=x, fac=fac, power=power,
                             busy_tokens_per_chip=tau).usd_per_chip_hour for x in grid])
    api = u_star = owned_mtok = None
    if e is not None:
        tps = float(e.tokens_per_s_per_chip)
        u_star = en.breakeven_utilisation(t, tokens_per_s_per_chip=tps, api_usd_per_mtok=sheet.output_usd_per_mtok)
        owned_mtok = t.usd_per_chip_hour / (tps * t.utilisation * 3600 / 1e6) if t.utilisation > 0 else None
        api = grid * tps * 3600 / 1e6 * sheet.output_usd_per_mtok  # the API's price of the tokens the chip makes
        st.markdown(f"Against **{sheet.name}** (${sheet.output_usd_per_mtok:g} per million output tokens): {model.name} at "
                    f"B = {batch:,}, L = {context:,} makes **{tps:,.0f} tokens/s per chip** (estimate, {e.label}); owned at "
                    f"{t.utilisation:.0%} busy that is **{'—' if owned_mtok is None else f'${sig(owned_mtok, 4)}'}** per million "
                    "tokens; " + ("owning never beats the API's price." if u_star is None else
                                  f"owning beats the API above **{u_star:.1%}** utilisation."))
    else:
        no_estimate_note(model)
    show(charts.own_vs_rent, grid, owned, rental_usd_per_h=rent, api_usd_per_h=api, breakeven=u_star, utilisation=u,
         api_label=f"buying its tokens from {sheet.name} (estimate's tokens/s)",
         title=f"{system.name}: $ per chip-hour against utilisation")
    hooks(joules_per_token=f"{ee.joules_per_token:.6g}", watts=f"{ee.watts:.6g}",
          bound_joules_per_token=f"{bound.joules_per_token:.6g}", owned_usd_per_chip_hour=f"{t.usd_per_chip_hour:.6g}",
          breakeven_utilisation="none" if u_star is None else f"{u_star:.6g}", energy_chips=f"{chips}")


def main() -> None:
    st.set_page_config(page_title="tokenmath blackboard", layout="wide")
    keep_sidebar_state()
    page = st.sidebar.radio("Page", PAGES, key="page")
    try:
        cat = catalog()
        model, system, dt, engine = pick_model_system(cat, page)
        {"Batch": page_batch, "Context": page_context, "Fast/slow mode": page_fast, "Client": page_client,
         "Layout": page_layout,
         "Prices": page_prices, "Training": page_training, "Fleet": page_fleet,
         "Energy": page_energy}[page](cat, model, system, dt, engine)
    except TokenmathError as e:
        st.error(str(e))
    except Exception as e:  # the page boundary: one sentence, never a stack trace or a server path
        log.warning("blackboard page %r failed: %s", page, type(e).__name__, exc_info=True)  # server log only
        st.error(f"The {page} page could not be computed for these inputs ({type(e).__name__}); "
                 "try other values or another model.")


main()
