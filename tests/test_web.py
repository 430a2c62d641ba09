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
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    if model:
        at.sidebar.selectbox(key="model").set_value(model)
    if system:
        at.sidebar.selectbox(key="system").set_value(system)
    at.sidebar.radio(key="page").set_value(page).run()
    return at


def span(at, key):
    for md in at.markdown:
        m = re.search(rf"id='{key}'>([^<]*)<", md.value)
        if m:
            return m.group(1)
    raise AssertionError(f"no element {key!r} on the page")


from conftest import cli_json  # noqa: E402


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(page):
    at = fresh(page)
    assert not at.exception and not at.error


def test_batch_page_matches_the_cli_and_moves_with_the_slider():
    at = fresh("Batch")
    for batch in (1, 64, 4096):
        at.select_slider(key="batch").set_value(batch).run()
        shown = float(span(at, "step-s"))
        rec = cli_json("step", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--batch", str(batch),
                       "--context", str(at.select_slider(key="batch_context").value), "--chips", "72",
                       "--allow-overflow", "--efficiency", "roofline")  # the blackboard draws the bound
        assert shown == pytest.approx(rec["step_s"], rel=1e-5)
    assert "memory bound" in at.info[0].value.lower() or "compute bound" in at.info[0].value.lower()


def test_context_and_training_pages_match_the_cli():
    at = fresh("Context")
    rec = cli_json("balance", "--model", "deepseek-v3", "--system", "gb200-nvl72")
    assert span(at, "l-star") == f"{rec['balance_context']:,.0f} tokens"
    at.toggle(key="sparse").set_value(True).run()
    assert span(at, "l-star").startswith("none")
    at = fresh("Training")
    rec = cli_json("train", "overtrain", "--active-params", "100G", "--tokens-per-s", "50M", "--lifetime-days", "60.875")
    assert span(at, "overtrain") == f"{rec['overtraining_factor']:,.1f}"


def test_layout_page_sliders():
    at = fresh("Layout")
    assert span(at, "fits") == "yes"
    at.select_slider(key="pp").set_value(4).run()
    assert not at.exception and not at.error
    at.select_slider(key="ep").set_value(256).run()  # across racks: still renders, says so
    assert not at.exception


def test_every_model_on_the_batch_and_layout_pages():
    at = fresh("Batch", system="h200-sxm")
    for model in sorted(CAT.models):
        at.sidebar.selectbox(key="model").set_value(model)
        for page in ("Batch", "Layout"):
            at.sidebar.radio(key="page").set_value(page).run()
            assert not at.exception, (model, page)
            assert not at.error or "does not fit" in at.error[0].value or "do not divide" in at.error[0].value, \
                (model, page, at.error[0].value)


def test_every_system_on_the_batch_page():
    at = fresh("Batch", model="llama-3.1-8b")
    for system in sorted(CAT.systems):
        at.sidebar.selectbox(key="system").set_value(system).run()
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


def test_end_to_end_in_a_real_browser():
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
                    page.wait_for_selector("#step-s", timeout=30_000)
                    break
                except Exception:
                    if time.time() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(1)
            before = page.inner_text("#step-s")
            slider = page.get_by_role("slider").nth(1)  # context, then batch
            slider.focus()
            for _ in range(4):
                page.keyboard.press("ArrowRight")
            page.wait_for_function(f"document.querySelector('#step-s') && document.querySelector('#step-s').innerText != '{before}'",
                                   timeout=30_000)
            time.sleep(0.5)
            batch = int(page.inner_text("#batch-value"))
            shown = float(page.inner_text("#step-s"))
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "e2e-batch.png"), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert batch != 1024
    rec = cli_json("step", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--batch", str(batch), "--context", "4100",
                   "--chips", "72", "--allow-overflow", "--efficiency", "roofline")  # the blackboard draws the bound
    assert shown == pytest.approx(rec["step_s"], rel=1e-5)
    assert (ARTIFACTS / "e2e-batch.png").stat().st_size > 20_000


def test_serve_binds_localhost_by_default():
    res = CliRunner().invoke(cli, ["serve", "--help"])
    assert "127.0.0.1" in res.stdout
    res = CliRunner().invoke(cli, ["serve", "--port", "0"])
    assert res.exit_code == 2 and "--port" in res.stderr
