"""Screenshots of the page of ``gpuanalogy serve`` at two moments, for docs/.

Starts the server on a free port of 127.0.0.1, opens the page in Debian's headless Chromium
(Playwright), sends the demo pair (scikit-image's astronaut and Chelsea the cat, as ``gpuanalogy
demo`` does, with its settings), and saves the page while the levels come in and once the
job is done.

    python tools/web_screenshots.py [--out docs]

Writes ``web_running.png`` and ``web_done.png``.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from gpuanalogy.app.demo import DEMO_CONFIG, demo_pair

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def start_server() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "gpuanalogy", "serve", "--port", "0",
                                "--device", "cpu"], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    found = re.search(r"(http://\S+?)/ on ", line)
    if not found:
        process.kill()
        raise SystemExit(f"serve did not start: {line!r}")
    return process, found.group(1)


def wait_loaded(page, selector: str, seconds: float = 600) -> None:
    image = page.locator(selector)
    image.wait_for(timeout=seconds * 1000)
    deadline = time.monotonic() + seconds
    while not image.evaluate("i => i.complete && i.naturalWidth > 0"):
        if time.monotonic() > deadline:
            raise SystemExit(f"{selector} never loaded")
        page.wait_for_timeout(100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs", type=Path)
    args = parser.parse_args()
    a, b_prime, _ = demo_pair()
    folder = Path(tempfile.mkdtemp(prefix="web-screenshots-"))
    Image.fromarray(a).save(folder / "astronaut.png")
    Image.fromarray(b_prime).save(folder / "chelsea.png")
    process, url = start_server()
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(folder / "profile"), executable_path="/usr/bin/chromium", headless=True,
                args=FLAGS, viewport={"width": 1280, "height": 1000})
            page = context.new_page()
            page.goto(url + "/")
            page.wait_for_selector("#option-ratio")
            page.set_input_files("#file-a", str(folder / "astronaut.png"))
            page.set_input_files("#file-b_prime", str(folder / "chelsea.png"))
            page.select_option("#option-preset", "photo2style")
            page.fill("#option-ratio", str(DEMO_CONFIG.ratio))
            page.click("#start")
            wait_loaded(page, ".level[data-level='4'] img[alt^='B']")
            page.screenshot(path=str(args.out / "web_running.png"), full_page=True)
            wait_loaded(page, "#result-nnf_ba img")
            page.wait_for_timeout(500)
            page.screenshot(path=str(args.out / "web_done.png"), full_page=True)
            context.close()
    finally:
        process.terminate()
        process.wait()
    print(f"wrote {args.out / 'web_running.png'} and {args.out / 'web_done.png'}")


if __name__ == "__main__":
    main()
