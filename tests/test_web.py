"""The blackboard (issue 8): every page through Streamlit's AppTest, numbers equal to the CLI's
--json, and one end-to-end test in a real headless Chromium driven by Playwright."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

import tokenmath as tm
from tokenmath.cli import app as cli
from tokenmath.web import APP

CAT = tm.load_catalog()
PAGES = ("Batch", "Context", "Fast/slow mode", "Layout", "Prices", "Training")
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
    at.sidebar.radio(key="page").set_value("Batch").run()  # the choices survive the trip
    assert at.sidebar.selectbox(key="model").value == "llama-3.1-8b"
    assert at.sidebar.selectbox(key="system").value == "h200-sxm"
    assert "llama-3.1-8b" in at.caption[1].value or "h200-sxm" in at.caption[1].value


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
    at = fresh("Batch")
    for batch in (1, 64, 4096):
        at.select_slider(key="batch").set_value(batch).run()
        shown = float(span(at, "step-s"))
        # the blackboard draws the lecture's closed-form roofline (ideal sharding over the chips, every
        # expert read); `tokenmath step` answers with the estimate and the bound of its layout (issue 21)
        ctx = at.select_slider(key="batch_context").value
        st_ = tm.step_time(CAT.model("deepseek-v3"), CAT.system("gb200-nvl72"), batch, ctx, chips=72)
        assert shown == pytest.approx(st_.step_s, rel=1e-5)
    assert "memory bound" in at.info[0].value.lower() or "compute bound" in at.info[0].value.lower()


def test_context_and_training_pages_match_the_cli(opened):
    at = fresh("Context")
    rec = cli_json("balance", "--model", "deepseek-v3", "--system", "gb200-nvl72")
    assert span(at, "l-star") == f"{rec['balance_context']:,.0f} tokens"
    at.toggle(key="sparse").set_value(True).run()
    assert span(at, "l-star").startswith("none")
    at = opened("Training")
    rec = cli_json("train", "overtrain", "--active-params", "100G", "--tokens-per-s", "50M", "--lifetime-days", "60.875")
    assert span(at, "overtrain") == f"{rec['overtraining_factor']:,.1f}"


def test_layout_page_sliders():
    at = fresh("Layout")
    assert span(at, "fits") == "yes"
    at.select_slider(key="pp").set_value(4).run()
    assert not at.exception and not at.error
    at.select_slider(key="ep").set_value(256).run()  # across racks: still renders, says so
    assert not at.exception


@pytest.mark.parametrize("model", sorted(CAT.models))
def test_every_model_on_the_batch_and_layout_pages(model):
    at = fresh("Layout", system="h200-sxm", model=model)
    for page in ("Layout", "Batch"):
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
    assert "Traceback" not in body and "site-packages" not in body and str(Path.home()) not in body
    assert alert.strip() and "\n" not in alert.strip(), alert
    st_ = tm.step_time(CAT.model("deepseek-v3"), CAT.system("gb200-nvl72"), batch, context, chips=chips)  # the bound it draws
    assert shown == pytest.approx(st_.step_s, rel=1e-5)
    assert (ARTIFACTS / "e2e-batch.png").stat().st_size > 20_000
    for name, _ in SCREENSHOT_PAGES:
        assert (ARTIFACTS / f"page-{slug(name)}.png").stat().st_size > 20_000, name


SCREENSHOT_PAGES = (("Batch", "step-s"), ("Context", "l-star"), ("Fast/slow mode", "price-multiplier"),
                    ("Layout", "fits"), ("Prices", "kv-implied"), ("Training", "overtrain"))


def slug(name: str) -> str:
    return re.sub(r"[^a-z]+", "-", name.lower()).strip("-")


def test_serve_binds_localhost_by_default():
    res = CliRunner().invoke(cli, ["serve", "--help"])
    assert "127.0.0.1" in res.stdout
    res = CliRunner().invoke(cli, ["serve", "--port", "0"])
    assert res.exit_code == 2 and "--port" in res.stderr
