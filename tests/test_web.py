"""The blackboard (issues 8 and 21): every page through Streamlit's AppTest, numbers equal to the
CLI's --json (the estimate to the CLI's estimate, the bound to its roofline), and one end-to-end test
in a real headless Chromium driven by Playwright."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

import tokenmath as tm
from tokenmath.cli import app as cli
from tokenmath.web import APP

CAT = tm.load_catalog()
PAGES = ("Batch", "Context", "Fast/slow mode", "Client", "Layout", "Prices", "Training", "Fleet", "Energy")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "out" / "test-artifacts"


def fresh(page="Batch", model=None, system=None):
    """A new session opened straight on `page`: the sidebar's page, model and system are preset in
    the session state (as a returning browser session has them), so the script runs once, not
    first on the Batch page and again on `page`. test_sidebar_shows_only_the_controls_a_page_uses
    moves the model, system and page widgets themselves."""
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["page"] = page
    if model:
        at.session_state["model"] = model
    if system:
        at.session_state["system"] = system
    return at.run()


@pytest.fixture(scope="module")
def opened():
    """opened(page): a fresh default session on `page`, built once and shared by the tests that only
    read it (they never move a widget on it)."""
    sessions = {}

    def get(page):
        if page not in sessions:
            sessions[page] = fresh(page)
        return sessions[page]

    return get


def span(at, key):
    for md in at.markdown:
        m = re.search(rf"id='{key}'>([^<]*)<", md.value)
        if m:
            return m.group(1)
    raise AssertionError(f"no element {key!r} on the page")


from conftest import cli_json  # noqa: E402


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(page, opened):
    at = opened(page)
    assert not at.exception and not at.error


@pytest.mark.parametrize("page", PAGES)
def test_test_hooks_are_hidden_from_people(page, opened):
    """The ids the tests read are display:none spans; no raw "step_s: ..." text reaches the page."""
    at = opened(page)
    hooks = [md.value for md in at.markdown if "id='" in md.value]
    assert hooks, page
    for h in hooks:
        assert h.startswith("<div style='display:none'>"), h
        assert all("style='display:none'" in part for part in h.split("<span")[1:]), h
    shown = " ".join(e.value for e in [*at.markdown, *at.caption] if "id='" not in e.value)
    assert not re.search(r"\b(step_s|batch|fits|overtrain|kv-implied)\s*:\*\*", shown)
    assert "**balance context L*:**" not in shown and "*balance context L:*" not in shown


def test_error_details_are_off_and_every_exception_is_one_sentence(monkeypatch):
    """The page boundary: any exception (not only TokenmathError) becomes one st.error sentence,
    with neither a stack trace nor the server's paths, and Streamlit's error details are off."""
    import streamlit as st

    from tokenmath import serving

    at = fresh("Batch")
    assert st.get_option("client.showErrorDetails") in ("none", False, "false")
    for exc in (RecursionError("maximum recursion depth exceeded"), ValueError("/home/secret/site-packages/x.py"),
                OverflowError("(34, 'Numerical result out of range')"), ZeroDivisionError("float division by zero"),
                KeyError("num_hidden_layers"), MemoryError()):
        def boom(*a, _e=exc, **k):
            raise _e

        monkeypatch.setattr(serving, "balance_batch", boom)
        at.select_slider(key="batch").set_value(64).run()
        assert not at.exception, exc
        assert len(at.error) == 1, exc
        msg = at.error[0].value
        assert type(exc).__name__ in msg and "Traceback" not in msg and "/" not in msg and "secret" not in msg
        assert msg.count(". ") == 0 and msg.endswith(".")
        monkeypatch.undo()
    at.select_slider(key="batch").set_value(128).run()
    assert not at.exception and not at.error


def test_slider_defaults_are_round(opened):
    at = opened("Batch")
    assert at.select_slider(key="batch_context").value == 4096 and at.select_slider(key="batch").value == 1024
    at = opened("Layout")
    assert at.select_slider(key="layout_context").value == 4096 and at.select_slider(key="layout_batch").value == 512
    at = opened("Prices")
    assert at.select_slider(key="prompt").value == 8192
    from tokenmath.web import app as _  # noqa: F401  (imports cleanly outside Streamlit)


def test_sidebar_shows_only_the_controls_a_page_uses():
    at = fresh("Batch")  # the sidebar's widgets moved by hand (fresh() presets them in the session state)
    at.sidebar.selectbox(key="model").set_value("llama-3.1-8b")
    at.sidebar.selectbox(key="system").set_value("h200-sxm").run()
    assert {w.key for w in at.sidebar.selectbox} >= {"model", "system", "weight", "kv"}
    at.sidebar.radio(key="page").set_value("Training").run()
    assert not at.exception and not at.error
    assert not at.sidebar.selectbox  # the training page uses no model, system or dtype
    at.sidebar.radio(key="page").set_value("Fleet").run()  # the fleet plans on the catalog: no system, no dtypes
    assert not at.exception and not at.error
    assert {w.key for w in at.sidebar.selectbox} == {"model", "engine"}
    at.sidebar.radio(key="page").set_value("Batch").run()  # the choices survive the trip
    assert at.sidebar.selectbox(key="model").value == "llama-3.1-8b"
    assert at.sidebar.selectbox(key="system").value == "h200-sxm"
    assert any("h200-sxm" in c.value for c in at.caption)
    assert span(at, "model-name") == "llama-3.1-8b"


GEMMA = Path(__file__).parent / "data" / "gemma-2-9b.json"


def test_sidebar_names_the_uploaded_model_and_forgets_it():
    """Issue 21: after a config.json upload the sidebar named the old catalog model while the pages
    computed the upload. Now it names the upload as the model in use (the catalog list greyed out),
    on every page that uses a model, until the upload is forgotten."""
    at = fresh("Batch")
    assert at.sidebar.selectbox(key="model").value == "deepseek-v3"
    at.sidebar.file_uploader[0].set_value((GEMMA.name, GEMMA.read_bytes(), "application/json")).run()
    assert not at.exception and not at.error
    side = " ".join(m.value for m in at.sidebar.markdown)
    assert "Model in use: **gemma-2-9b**" in side
    assert at.sidebar.selectbox(key="model").disabled  # the catalog name no longer reads as the model
    assert "replaced by the upload" in at.sidebar.selectbox(key="model").label
    assert span(at, "model-name") == "gemma-2-9b"
    for page in ("Training", "Energy", "Batch"):  # kept across a page with no sidebar, and named on the others
        at.sidebar.radio(key="page").set_value(page).run()
        assert not at.exception and not at.error, page
        if page != "Training":
            assert "Model in use: **gemma-2-9b**" in " ".join(m.value for m in at.sidebar.markdown), page
    assert span(at, "model-name") == "gemma-2-9b"
    at.sidebar.button(key="forget_upload").click().run()
    assert not at.exception and not at.error
    assert not at.sidebar.selectbox(key="model").disabled
    assert "Model in use" not in " ".join(m.value for m in at.sidebar.markdown)
    assert span(at, "model-name") == "deepseek-v3"
    assert at.sidebar.file_uploader[0].value is None  # the uploader is emptied too, not just the kept copy


def test_context_page_text_and_crossover_only_where_it_exists():
    at = fresh("Context")
    text = " ".join(md.value for md in at.markdown)
    assert "Balance context L\\* =" in text  # escaped: renders as "L*", not a markdown glitch
    assert span(at, "l-at-batch") != "none"  # the default batch (~3× B*) shows a crossover on the chart
    at.toggle(key="sparse").set_value(True).run()
    assert span(at, "l-star").startswith("none")
    at.select_slider(key="ctx_batch").set_value(256).run()  # below B*: the weight fetch binds at every L
    assert span(at, "l-at-batch") == "none"
    assert "no crossover" in " ".join(c.value for c in at.caption)


def test_layout_caption_agrees_with_the_chart():
    at = fresh("Layout")
    at.select_slider(key="pp").set_value(4).run()
    cap = " ".join(c.value for c in at.caption)
    assert "divides both the weights and the KV" in cap and "right bar" in cap
    model, system = CAT.model("deepseek-v3"), CAT.system("gb200-nvl72")
    from tokenmath import layout as lay

    ep, tp = at.select_slider(key="ep").value, at.select_slider(key="tp").value
    b, L = at.select_slider(key="layout_batch").value, at.select_slider(key="layout_context").value
    one = lay.layout_memory(model, system, lay.Layout(tp=tp, ep=ep, pp=1), b, L)
    four = lay.layout_memory(model, system, lay.Layout(tp=tp, ep=ep, pp=4), b, L)
    grown = lay.layout_memory(model, system, lay.Layout(tp=tp, ep=ep, pp=4), 4 * b, L)
    assert four.kv_bytes_per_chip == pytest.approx(one.kv_bytes_per_chip / 4)  # fixed B: KV / PP too
    assert four.weights_bytes_per_chip == pytest.approx(one.weights_bytes_per_chip / 4)
    assert grown.kv_bytes_per_chip == pytest.approx(one.kv_bytes_per_chip)  # B = PP·b: KV per chip unchanged


def _labels(fig):
    ax = fig.axes[0]
    return [t.get_text() for t in ax.get_legend().get_texts()], ax


def test_batch_charts_mark_the_choice_label_bstar_shade_overflow_and_keep_lines_visible():
    import matplotlib.pyplot as plt

    from tokenmath import plots, serving

    model, system = CAT.model("deepseek-v3"), CAT.system("h200-sxm")
    curve = serving.curve(model, system, over="batch", context=32768, chips=8, points=100)
    assert not curve.fits.all()
    s = tm.step_time(model, system, 64, 32768, chips=8)
    fig = plots.latency_vs_batch(curve, title="t", balance_batch=300.0, drain_s=0.02, mark=(64, s.step_s))
    labels, ax = _labels(fig)
    assert any(lab.startswith("balance batch B* = 300") for lab in labels)
    assert any(lab.startswith("does not fit in HBM") for lab in labels)
    assert any(lab.startswith("chosen B = 64") for lab in labels)
    dot = [ln for ln in ax.lines if ln.get_label().startswith("chosen")][0]
    assert dot.get_xdata()[0] == 64 and dot.get_ydata()[0] == pytest.approx(s.step_s * 1e3)
    step = [ln for ln in ax.lines if ln.get_label().startswith("step =")][0]
    parts = [ln for ln in ax.lines if ln.get_label().startswith(("compute", "weight", "KV"))]
    assert all(step.get_zorder() > p.get_zorder() and step.get_linewidth() < p.get_linewidth() for p in parts)
    assert step.get_linestyle() == "--"
    plt.close(fig)
    fig = plots.cost_vs_batch(curve, title="t", floor_usd_per_mtok=0.01, balance_batch=300.0, mark=(64, s.usd_per_mtok))
    labels, _ = _labels(fig)
    assert any(lab.startswith("chosen B = 64") for lab in labels) and any("does not fit" in lab for lab in labels)
    plt.close(fig)


def test_context_chart_draws_lstar_only_where_the_lines_cross():
    import matplotlib.pyplot as plt

    from tokenmath import kvcache, plots, serving

    system = CAT.system("gb200-nvl72")
    sparse = kvcache.with_sparse_attention(CAT.model("deepseek-v3"), 2048)
    curve = serving.curve(sparse, system, over="context", batch=256, chips=72, points=60)
    fig = plots.cost_vs_context(curve, title="t", crossover=5000.0)  # nothing crosses: no L* line
    labels, _ = _labels(fig)
    assert not any("cross" in lab for lab in labels)
    plt.close(fig)
    dense = CAT.model("deepseek-v3")
    LB = serving.balance_context(dense, system, 16384, chips=72)
    curve = serving.curve(dense, system, over="context", batch=16384, chips=72, points=60)
    fig = plots.cost_vs_context(curve, title="t", crossover=LB)
    labels, _ = _labels(fig)
    assert LB and any(lab.startswith("lines cross at L") for lab in labels)
    plt.close(fig)


def test_layout_chart_has_title_units_and_hbm_line():
    import matplotlib.pyplot as plt

    from tokenmath import layout as lay
    from tokenmath import plots

    model, system = CAT.model("deepseek-v3"), CAT.system("gb200-nvl72")
    m = lay.layout_memory(model, system, lay.Layout(tp=1, ep=64, pp=1), 512, 4096)
    fig = plots.layout_memory_per_chip([("EP64", m)], m.hbm_bytes_per_chip, title="memory per chip")
    labels, ax = _labels(fig)
    assert ax.get_title() == "memory per chip" and ax.get_ylabel() == "GB per chip"
    assert any(lab.startswith("HBM capacity") and "GB per chip" in lab for lab in labels)
    plt.close(fig)


def test_prices_chart_says_what_it_shows_and_formats_durations(opened):
    import matplotlib.pyplot as plt

    from tokenmath import plots

    at = opened("Prices")
    assert "deepseek-v3" in " ".join(h.value for h in at.subheader)
    fig = plots.cache_cost_vs_hold(CAT.model("deepseek-v3"), CAT.system("gb200-nvl72"), 8192, CAT.storage, title="t")
    labels, _ = _labels(fig)
    drains = [lab for lab in labels if "drain" in lab]
    assert drains and not any(re.search(r"\de[+-]\d", lab) for lab in drains), drains
    plt.close(fig)


def test_batch_page_matches_the_cli_and_moves_with_the_slider():
    """The page's estimate is `tokenmath step --json`'s (step_s, usd_per_mtok: the calibrated estimate)
    and its bound is the same command's roofline (its `roofline` key, and `--efficiency roofline`)."""
    at = fresh("Batch")
    for batch in (1, 64, 4096):
        at.select_slider(key="batch").set_value(batch).run()
        args = ("step", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--batch", str(batch),
                "--context", str(at.select_slider(key="batch_context").value), "--chips", "72", "--allow-overflow")
        rec = cli_json(*args)  # the answer: the estimate, with the bound beside it
        assert span(at, "estimate-label") == rec["estimate"] != "roofline"
        assert float(span(at, "step-s")) == pytest.approx(rec["step_s"], rel=1e-5)
        assert float(span(at, "usd-per-mtok")) == pytest.approx(rec["usd_per_mtok"], rel=1e-5)
        assert float(span(at, "bound-step-s")) == pytest.approx(rec["roofline"]["step_s"], rel=1e-5)
        assert float(span(at, "bound-usd-per-mtok")) == pytest.approx(rec["roofline"]["usd_per_mtok"], rel=1e-5)
        bound = cli_json(*args, "--efficiency", "roofline")
        assert float(span(at, "bound-step-s")) == pytest.approx(bound["step_s"], rel=1e-5)
    assert "memory bound" in at.info[0].value.lower() or "compute bound" in at.info[0].value.lower()
    assert at.info[0].value.startswith("Roofline")  # the bound's verdict says whose it is
    labels = [m.label for m in at.metric]
    assert labels[:3] == ["step time (estimate)", "tokens/s per chip (estimate)", "$ / Mtok (estimate)"]
    assert "roofline bound" in labels[3]
    table = " ".join(md.value for md in at.markdown)
    assert "**estimate** (calibrated" in table and "80 % band" in table and "roofline bound" in table


def test_batch_page_engine_profile_is_the_cli_engine():
    """The sidebar's engine profile is the CLI's --engine: the page's estimate equals
    `tokenmath step --engine vllm --json`'s."""
    at = fresh("Batch")
    at.sidebar.selectbox(key="engine").set_value("vllm").run()
    rec = cli_json("step", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--batch", "1024", "--context", "4096",
                   "--chips", "72", "--engine", "vllm")
    assert span(at, "estimate-label") == rec["estimate"] and "vllm" in rec["estimate"]
    assert float(span(at, "step-s")) == pytest.approx(rec["step_s"], rel=1e-5)


def test_invariant_a_totals_only_model_shows_the_bound_alone_and_says_so():
    """Invariant: a model defined by totals has no estimate (it needs the architecture); the page then
    shows the roofline bound in the estimate's place, labelled as the bound, with a sentence why."""
    at = fresh("Batch", model="lecture-moe-700b")
    assert not at.exception and not at.error
    assert span(at, "estimate-label") == "roofline" and span(at, "step-s") == span(at, "bound-step-s")
    assert all("(estimate)" not in m.label for m in at.metric)
    assert any("defined by totals only" in c.value for c in at.caption)


def test_layout_page_matches_the_cli():
    """The Layout page's estimate and bound are `tokenmath layout --json`'s step_s and roofline.step_s."""
    at = fresh("Layout")
    ep, pp, tp = (at.select_slider(key=k).value for k in ("ep", "pp", "tp"))
    b, L = at.select_slider(key="layout_batch").value, at.select_slider(key="layout_context").value
    rec = cli_json("layout", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--chips", str(ep * pp * tp),
                   "--ep", str(ep), "--pp", str(pp), "--tp", str(tp), "--batch", str(b), "--context", str(L))
    assert float(span(at, "step-s")) == pytest.approx(rec["step_s"], rel=1e-5)
    assert float(span(at, "bound-step-s")) == pytest.approx(rec["roofline"]["step_s"], rel=1e-5)
    assert "**Estimate**" in " ".join(md.value for md in at.markdown)


def test_context_and_training_pages_match_the_cli(opened):
    at = fresh("Context")
    rec = cli_json("balance", "--model", "deepseek-v3", "--system", "gb200-nvl72")
    assert span(at, "l-star") == f"{rec['balance_context']:,.0f} tokens"
    at.toggle(key="sparse").set_value(True).run()
    assert span(at, "l-star").startswith("none")
    at = opened("Training")
    rec = cli_json("train", "overtrain", "--active-params", "100G", "--tokens-per-s", "50M", "--lifetime-days", "60.875")
    assert span(at, "overtrain") == f"{rec['overtraining_factor']:,.1f}"


def test_client_page_matches_the_cli(opened):
    """The Client page is `tokenmath client` (the same facade call): its points, KV cap and the last
    point's TPOT and throughput per chip equal the CLI's --json; the arrivals control moves TTFT."""
    at = opened("Client")
    rec = cli_json("client", "--model", "deepseek-v3", "--system", "gb200-nvl72")
    top = rec["points"][-1]
    assert span(at, "client-points") == f"{len(rec['points'])}"
    assert span(at, "client-cap") == f"{rec['kv_cap_sequences']:.6g}"
    assert span(at, "client-tpot-at-cap") == f"{top['tpot_s']:.6g}"
    assert span(at, "client-tput-at-cap") == f"{top['output_tokens_per_s_per_chip']:.6g}"
    at = fresh("Client")
    at.select_slider(key="cl_out").set_value(2000).run()
    rec = cli_json("client", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--output-tokens", "2000")
    assert span(at, "client-tpot-at-cap") == f"{rec['points'][-1]['tpot_s']:.6g}"


def test_layout_page_sliders():
    at = fresh("Layout")
    assert span(at, "fits") == "yes"
    at.select_slider(key="pp").set_value(4).run()
    assert not at.exception and not at.error
    at.select_slider(key="ep").set_value(256).run()  # across racks: still renders, says so
    assert not at.exception


@pytest.mark.parametrize("model", sorted(CAT.models))
def test_every_model_on_the_batch_layout_and_energy_pages(model):
    at = fresh("Layout", system="h200-sxm", model=model)
    for page in ("Layout", "Batch", "Energy"):
        if page != "Layout":
            at.sidebar.radio(key="page").set_value(page).run()
        assert not at.exception, (model, page)
        assert not at.error or "does not fit" in at.error[0].value or "do not divide" in at.error[0].value, \
            (model, page, at.error[0].value)


@pytest.mark.parametrize("system", sorted(CAT.systems))
def test_every_system_on_the_batch_page(system):
    at = fresh("Batch", model="llama-3.1-8b", system=system)
    assert not at.exception, system
    if system == "rubin-nvl144":  # no BF16 FLOP/s published: one sentence, no crash
        assert "no FLOP/s for bf16" in at.error[0].value
    else:
        assert not at.error, (system, at.error[0].value)


FLEET_ARGS = ("fleet", "--model", "deepseek-v3", "--request-rate", "10", "--input-tokens", "2000", "--output-tokens",
              "500", "--ttft-p99-s", "2", "--tpot-p99-s", "0.05", "--systems", "b200,h100-sxm,h200-sxm,mi300x",
              "--verify", "3")


def test_fleet_page_matches_the_cli(opened):
    """The Fleet page's defaults (10 requests/s, 2,000 in / 500 out, TTFT p99 2 s, TPOT p99 50 ms, four
    systems) give `tokenmath fleet --json`'s best fleet: its chips, $/h and simulated p99 tails."""
    at = opened("Fleet")
    assert not at.exception and not at.error
    rec = cli_json(*FLEET_ARGS)
    best = rec["best"]
    assert float(span(at, "fleet-chips")) == pytest.approx(best["total_chips"], rel=1e-6)
    assert float(span(at, "fleet-usd-per-hour")) == pytest.approx(best["usd_per_hour"], rel=1e-5)
    assert float(span(at, "fleet-ttft-p99-s")) == pytest.approx(best["simulated"]["ttft_p99_s"], rel=1e-5)
    assert float(span(at, "fleet-tpot-p99-s")) == pytest.approx(best["simulated"]["tpot_p99_s"], rel=1e-5)
    text = " ".join(md.value for md in at.markdown)
    assert "$ per million output tokens" in text and "TTFT p99 (simulated)" in text  # each figure says what it is
    assert "FLOP lower bound (roofline)" in text


def test_fleet_page_form_reruns_and_says_one_sentence_when_nothing_meets_the_slos():
    at = fresh("Fleet")
    at.number_input(key="fleet_tpot").set_value(1.0)  # 1 ms per output token: no system decodes that fast
    at.form_submit_button[0].click().run()
    assert not at.exception
    assert len(at.error) == 1 and "\n" not in at.error[0].value.strip()
    at.number_input(key="fleet_tpot").set_value(50.0)
    at.multiselect(key="fleet_systems").set_value([])
    at.form_submit_button[0].click().run()
    assert not at.exception and len(at.error) == 1 and "pick at least one system" in at.error[0].value


def test_fleet_page_inputs_are_bounded():
    """Each input has a bound the widget enforces (the page's work stays small): the request rate, the
    lengths, the SLOs and the candidates to simulate."""
    at = fresh("Fleet")
    bounds = {"fleet_rate": 10_000.0, "fleet_input": 1_000_000, "fleet_output": 100_000, "fleet_ttft": 600.0,
              "fleet_tpot": 10_000.0}
    for key, most in bounds.items():
        w = at.number_input(key=key)
        assert w.max == most and w.min > 0, key
    assert at.slider(key="fleet_verify").max == 5


def test_invariant_fleet_figures_show_keys_the_page_does_not_know():
    """Invariant: the Fleet page lists every scalar of the best fleet's record (report.fleet_record),
    so keys the core adds (e.g. usd_per_mtok_all_tokens, a p99 interval) appear, each in its unit."""
    from tokenmath.web import app as web

    rec = {"total_chips": 12.0, "usd_per_mtok": 0.7, "usd_per_mtok_all_tokens": 0.09, "watts": 21976.0,
           "simulated": {"ttft_p99_s": 0.712, "ttft_p99_interval_s": [0.69, 0.74], "new_count": 3},
           "pools": [{"role": "both"}]}
    rows = dict(web.flat_figures(rec))
    assert set(rows) == {"total_chips", "usd_per_mtok", "usd_per_mtok_all_tokens", "watts", "simulated.ttft_p99_s",
                         "simulated.ttft_p99_interval_s", "simulated.new_count"}
    assert web.FLEET_LABELS["usd_per_mtok_all_tokens"] == "$ per million tokens, input + output"
    assert web.fmt_figure("usd_per_mtok_all_tokens", 0.09) == "$0.09/Mtok"
    assert web.fmt_figure("simulated.ttft_p99_interval_s", [0.69, 0.74]) == "690 ms – 740 ms"
    assert web.fmt_figure("watts", 21976.0) == "22 kW"
    assert web.fmt_figure("simulated.new_count", 3) == "3"


def test_energy_page_matches_the_cli(opened):
    """The Energy page is `tokenmath energy --level facility --json` (J/token and watts × PUE, on the estimate's
    step) and `tokenmath tco --json` (owned $/chip-hour; the utilisation above which owning beats the
    API's price sheet) for the same inputs."""
    at = opened("Energy")
    assert not at.exception and not at.error
    b, L = at.select_slider(key="energy_batch").value, at.select_slider(key="energy_context").value
    chips = span(at, "energy-chips")
    rec = cli_json("energy", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--batch", str(b), "--context", str(L),
                   "--chips", chips, "--level", "facility")
    assert rec["estimate"] != "roofline"
    assert float(span(at, "joules-per-token")) == pytest.approx(rec["joules_per_token"], rel=1e-5)
    assert float(span(at, "watts")) == pytest.approx(rec["watts"], rel=1e-5)
    bound = cli_json("energy", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--batch", str(b), "--context",
                     str(L), "--chips", chips, "--efficiency", "roofline", "--level", "facility")
    assert float(span(at, "bound-joules-per-token")) == pytest.approx(bound["joules_per_token"], rel=1e-5)
    tco = cli_json("tco", "--system", "gb200-nvl72", "--utilisation", "0.7", "--model", "deepseek-v3", "--price-sheet",
                   "deepseek-r1", "--batch", str(b), "--context", str(L))
    assert float(span(at, "owned-usd-per-chip-hour")) == pytest.approx(tco["usd_per_chip_hour"], rel=1e-5)
    be = tco["versus_api"]["breakeven_utilisation"]  # None where owning never beats the API's price
    if be is None:
        assert span(at, "breakeven-utilisation") == "none"
    else:
        assert float(span(at, "breakeven-utilisation")) == pytest.approx(be, rel=1e-5)
    text = " ".join(md.value for md in at.markdown)
    assert "per chip (estimate)" in text and "per chip (roofline bound)" in text
    assert "--" not in " ".join(c.value for c in at.caption)  # assumptions name the page's controls, not CLI flags


def test_energy_page_moves_with_its_controls():
    at = fresh("Energy")
    tco = float(span(at, "owned-usd-per-chip-hour"))
    at.slider(key="energy_utilisation").set_value(1.0).run()
    assert float(span(at, "owned-usd-per-chip-hour")) > tco  # more busy hours, more electricity
    at.number_input(key="energy_coc").set_value(0.1).run()
    b, L = at.select_slider(key="energy_batch").value, at.select_slider(key="energy_context").value
    rec = cli_json("tco", "--system", "gb200-nvl72", "--utilisation", "1", "--cost-of-capital", "0.1", "--model",
                   "deepseek-v3", "--price-sheet", "deepseek-r1", "--batch", str(b), "--context", str(L))
    assert float(span(at, "owned-usd-per-chip-hour")) == pytest.approx(rec["usd_per_chip_hour"], rel=1e-5)
    j = float(span(at, "joules-per-token"))
    at.number_input(key="energy_pue").set_value(1.2).run()
    assert float(span(at, "joules-per-token")) < j


@pytest.mark.parametrize("system", sorted(CAT.systems))
def test_every_system_on_the_energy_page(system):
    """Every system renders: where the catalog has no board power or no capex the page says so in one
    sentence (a warning or a note), never an error or a traceback."""
    at = fresh("Energy", model="llama-3.1-8b", system=system)
    assert not at.exception, system
    if system == "rubin-nvl144":  # no BF16 FLOP/s published: the sidebar's one sentence
        assert "no FLOP/s for bf16" in at.error[0].value
        return
    assert not at.error, (system, at.error[0].value)
    if span(at, "joules-per-token") == "n/a":
        assert "no published board power" in at.warning[0].value
    elif span(at, "owned-usd-per-chip-hour") == "n/a":
        assert "No sourced capex" in at.info[0].value


def test_charts_draw_the_estimate_over_the_labelled_bound():
    """The Batch page's charts: the estimate is the solid main line with its 80 % band shaded, the
    roofline's max is dashed and labelled "roofline bound", and B* and the cost floor say they are the
    roofline's. The estimate's line is the core's estimate at each batch (an invariant)."""
    import matplotlib.pyplot as plt

    from tokenmath import profiles, serving
    from tokenmath.estimate import estimate_pass
    from tokenmath.web import charts

    model, system = CAT.model("deepseek-v3"), CAT.system("gb200-nvl72")
    curve = serving.curve(model, system, over="batch", context=4096, chips=72, points=40)
    e = estimate_pass(model, system, curve.batch, 4096, 1.0, chips=72,
                      profile=profiles.choose("calibrated", system=system))
    est = {"step_s": e.step_s, "band": e.range_80["step_s"], "label": e.label}
    fig = charts.latency_vs_batch(curve, est, title="t", balance_batch=300.0, drain_s=0.02, mark=(64, 0.01))
    labels, ax = _labels(fig)
    line = [ln for ln in ax.lines if ln.get_label().startswith("estimate (calibrated")][0]
    assert line.get_linestyle() == "-" and line.get_ydata() == pytest.approx(np.asarray(e.step_s) * 1e3)
    bound = [ln for ln in ax.lines if ln.get_label().startswith("roofline bound")][0]
    assert bound.get_linestyle() == "--" and bound.get_ydata() == pytest.approx(curve.step_s * 1e3)
    assert "estimate's 80 % band" in labels
    assert any(lab.startswith("balance batch B* = 300") and lab.endswith("(roofline)") for lab in labels)
    assert any(lab.startswith("chosen B = 64") and lab.endswith("(estimate)") for lab in labels)
    plt.close(fig)
    est = {"usd_per_mtok": e.usd_per_mtok, "band": e.range_80["usd_per_mtok"], "label": e.label}
    fig = charts.cost_vs_batch(curve, est, title="t", floor_usd_per_mtok=0.03, balance_batch=300.0)
    labels, ax = _labels(fig)
    assert any(lab.startswith("roofline bound") for lab in labels) and any(lab.startswith("estimate (") for lab in labels)
    assert any(lab.startswith("cost floor") and lab.endswith("(roofline)") for lab in labels)
    plt.close(fig)


def test_every_chart_on_a_serving_page_draws_the_estimate(opened):
    """Batch, Context and Fast/slow mode draw the estimate over the bound; their text says which is which."""
    for page in ("Batch", "Context", "Fast/slow mode"):
        at = opened(page)
        text = " ".join(e.value for e in [*at.markdown, *at.caption, *at.info, *at.warning])
        assert "estimate" in text.lower() and "roofline" in text.lower(), page
    at = opened("Fast/slow mode")
    assert float(span(at, "est-price-multiplier")) > 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser_or_reason():
    if Path(CHROMIUM).exists():
        return None
    return f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium; .ci/run installs it)"


def settle(page, timeout_ms=60_000):
    """Wait until the app's script run has finished (Streamlit marks its root element) and every image
    on the page has loaded: what the fixed sleeps before a screenshot or a read used to wait for."""
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", state="attached",
                           timeout=timeout_ms)
    page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=timeout_ms)


def test_end_to_end_in_a_real_browser(tmp_path):
    """`tokenmath serve` on a free local port; headless Chromium moves the batch slider; the step
    time shown equals the CLI's for the batch now shown. Saves a screenshot as an artifact."""
    reason = browser_or_reason()
    if reason:
        if os.environ.get("CI") or os.environ.get("TOKENMATH_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)  # loud in the -ra summary; CI sets CI=true and fails instead
    from playwright.sync_api import sync_playwright

    port = free_port()
    exe = shutil.which("tokenmath") or str(Path(sys.executable).with_name("tokenmath"))
    proc = subprocess.Popen([exe, "serve", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            deadline = time.time() + 90
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}", timeout=10_000)
                    page.wait_for_selector("#step-s", state="attached", timeout=30_000)
                    break
                except Exception:
                    if time.time() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(1)
            assert not page.is_visible("#step-s")  # a test hook, not text for people
            assert "step_s" not in page.inner_text("body")
            before = page.text_content("#step-s")
            slider = page.get_by_role("slider").nth(1)  # context, then batch
            slider.focus()
            for _ in range(4):
                page.keyboard.press("ArrowRight")
            page.wait_for_function(f"document.querySelector('#step-s') && document.querySelector('#step-s').textContent != '{before}'",
                                   timeout=30_000)
            settle(page)
            batch = int(page.text_content("#batch-value"))
            context = int(page.text_content("#context-value"))
            chips = int(page.text_content("#chips-value"))
            shown = float(page.text_content("#step-s"))
            shown_bound = float(page.text_content("#bound-step-s"))
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "e2e-batch.png"), full_page=True)
            # every page, screenshotted tall enough to show its charts (artifacts to look at)
            page.set_viewport_size({"width": 1400, "height": 2600})
            for name, hook in SCREENSHOT_PAGES:
                page.get_by_text(name, exact=True).click()
                page.wait_for_selector(f"#{hook}", state="attached", timeout=60_000)
                settle(page)
                assert page.locator("[data-testid=stAlertContentError], [data-testid=stException]").count() == 0, name
                assert "Traceback" not in page.inner_text("body"), name
                page.screenshot(path=str(ARTIFACTS / f"page-{slug(name)}.png"))
            # an uploaded config survives a page that draws no sidebar (Training) and back
            page.get_by_text("Batch", exact=True).click()
            page.wait_for_selector("#step-s", state="attached", timeout=60_000)
            page.locator("input[type=file]").set_input_files(str(Path(__file__).parent / "data" / "gemma-2-9b.json"))
            page.wait_for_function("document.querySelector('#model-name') && "
                                   "document.querySelector('#model-name').textContent == 'gemma-2-9b'", timeout=60_000)
            page.get_by_text("Training", exact=True).click()
            page.wait_for_selector("#overtrain", state="attached", timeout=60_000)
            page.get_by_text("Batch", exact=True).click()
            page.wait_for_selector("#step-s", state="attached", timeout=60_000)
            settle(page)
            kept_name = page.text_content("#model-name")
            sidebar = page.inner_text("[data-testid=stSidebar]")
            # a malformed upload (a number JSON cannot hold, nesting 3,000 deep): one sentence, no stack trace
            bad = tmp_path / "bad-config.json"
            bad.write_text('{"num_hidden_layers": 1e400, "hidden_size": NaN, "x": ' + "[" * 3000 + "]" * 3000 + "}")
            page.locator("input[type=file]").set_input_files(str(bad))
            page.wait_for_selector("[data-testid=stAlertContentError]", timeout=60_000)
            settle(page)
            alert = page.inner_text("[data-testid=stAlertContentError]")
            body = page.inner_text("body")
            page.screenshot(path=str(ARTIFACTS / "page-bad-upload.png"))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert batch != 1024 and context == 4096
    assert kept_name == "gemma-2-9b"
    assert "Model in use: gemma-2-9b" in sidebar  # the sidebar names the upload, not the catalog's model
    assert "Traceback" not in body and "site-packages" not in body and str(Path.home()) not in body
    assert alert.strip() and "\n" not in alert.strip(), alert
    rec = cli_json("step", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--batch", str(batch), "--context",
                   str(context), "--chips", str(chips), "--allow-overflow")  # the estimate, the bound beside it
    assert shown == pytest.approx(rec["step_s"], rel=1e-5)
    assert shown_bound == pytest.approx(rec["roofline"]["step_s"], rel=1e-5)
    assert (ARTIFACTS / "e2e-batch.png").stat().st_size > 20_000
    for name, _ in SCREENSHOT_PAGES:
        assert (ARTIFACTS / f"page-{slug(name)}.png").stat().st_size > 20_000, name


SCREENSHOT_PAGES = (("Batch", "step-s"), ("Context", "l-star"), ("Fast/slow mode", "price-multiplier"),
                    ("Layout", "fits"), ("Prices", "kv-implied"), ("Training", "overtrain"), ("Fleet", "fleet-chips"),
                    ("Energy", "joules-per-token"))


def slug(name: str) -> str:
    return re.sub(r"[^a-z]+", "-", name.lower()).strip("-")


def test_serve_binds_localhost_by_default():
    res = CliRunner().invoke(cli, ["serve", "--help"])
    assert "127.0.0.1" in res.stdout
    res = CliRunner().invoke(cli, ["serve", "--port", "0"])
    assert res.exit_code == 2 and "--port" in res.stderr
