"""Regenerate the README's screenshots of the blackboard (Batch, Layout, Fleet and Energy pages) with
headless Debian Chromium: `.venv/bin/python scripts/screenshots.py` (needs `apt-get install chromium`).
Each page is shot once its script run has finished and its charts have loaded."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync"]
# (page, the hidden test hook that marks it drawn, file, viewport height)
SHOTS = (("Batch", "step-s", "batch.png", 1250), ("Layout", "fits", "layout.png", 1100),
         ("Fleet", "fleet-chips", "fleet.png", 1500), ("Energy", "joules-per-token", "energy.png", 2350))


def settle(page, timeout_ms: int = 120_000) -> None:
    """Wait until Streamlit's script run has finished and every image on the page has loaded."""
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", state="attached",
                           timeout=timeout_ms)
    page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=timeout_ms)


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("tokenmath")
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    OUT.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            for _ in range(60):
                try:
                    page.goto(f"http://127.0.0.1:{port}", timeout=5000)
                    page.wait_for_selector("#step-s", state="attached", timeout=30_000)  # a hidden test hook
                    break
                except Exception:
                    time.sleep(1)
            for name, hook, filename, height in SHOTS:
                page.set_viewport_size({"width": 1400, "height": height})
                page.get_by_text(name, exact=True).click()
                page.wait_for_selector(f"#{hook}", state="attached", timeout=120_000)
                settle(page)
                page.screenshot(path=str(OUT / filename))
                written.append(OUT / filename)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    print("wrote", *written)


if __name__ == "__main__":
    main()
