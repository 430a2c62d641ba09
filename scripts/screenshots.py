"""Regenerate the README's screenshots of the blackboard (Batch and Layout pages) with headless
Debian Chromium: `.venv/bin/python scripts/screenshots.py` (needs `apt-get install chromium`)."""

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


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("tokenmath")
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    OUT.mkdir(parents=True, exist_ok=True)
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
            time.sleep(1.5)
            page.screenshot(path=str(OUT / "batch.png"))
            page.get_by_text("Layout", exact=True).click()
            page.wait_for_selector("#fits", state="attached", timeout=30_000)
            time.sleep(1.5)
            page.screenshot(path=str(OUT / "layout.png"))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    print("wrote", OUT / "batch.png", OUT / "layout.png")


if __name__ == "__main__":
    main()
