"""The page of ``gpuanalogy serve`` in a real headless Chromium (Debian's), driven by
Playwright: two small images in, a level preview and the final A' seen, the zip downloaded and
checked, a second job cancelled, and a truncated upload's one-line error shown."""
from __future__ import annotations

import io
import shutil
import tempfile
import time
import zipfile

import pytest

from web_server import QUICK, picture, serving, truncated

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _browser_or_skip():
    """(playwright, browser context) or a one-line skip saying why there is no browser."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (make test installs it with apt-get "
                    "as root or by sudo -n; here it could not)")
    pytest.importorskip("starlette", reason="the web extra is missing: pip install -e '.[web]'")
    manager = sync_playwright().start()
    try:
        context = manager.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="chromium-profile-"), executable_path=CHROMIUM,
            headless=True, args=FLAGS, accept_downloads=True,
            viewport={"width": 1280, "height": 900})
    except Error as error:
        manager.stop()
        pytest.skip(f"chromium does not start here: {str(error).splitlines()[0]}")
    return manager, context


@pytest.fixture(scope="module")
def browser():
    manager, context = _browser_or_skip()
    yield context
    context.close()
    manager.stop()


def _loaded(page, selector: str, timeout: float) -> None:
    """Wait until the image ``selector`` is on the page and decoded (polled from here: the
    page's Content-Security-Policy forbids the string evaluation wait_for_function uses)."""
    image = page.locator(selector)
    image.wait_for(timeout=timeout)
    deadline = time.monotonic() + timeout / 1000
    while not image.evaluate("i => i.complete && i.naturalWidth > 0"):
        assert time.monotonic() < deadline, f"{selector} never loaded"
        page.wait_for_timeout(100)


def _settings(page, **values: str) -> None:
    for name, value in {**QUICK, **values}.items():
        page.fill(f"#option-{name}", value)


def test_the_page_runs_downloads_cancels_and_refuses(browser, tmp_path):
    from playwright.sync_api import expect

    a, b_prime = picture(tmp_path / "a.png", 0), picture(tmp_path / "b.png", 1)
    cut = truncated(tmp_path / "cut.png", picture(tmp_path / "noisy.png", 7, (96, 128)))
    with serving(tmp_path / "serve.log") as server:
        page = browser.new_page()
        page.goto(server.url + "/")
        page.wait_for_selector("#option-ratio")
        page.set_input_files("#file-a", str(a))
        page.set_input_files("#file-b_prime", str(b_prime))
        _settings(page)
        page.click("#start")

        _loaded(page, ".level[data-level='5'] img[alt^='A']", 120_000)
        _loaded(page, "#result-a_prime img", 120_000)
        assert page.locator(".level").count() == 5
        assert page.text_content("#job-state") == "done"
        with page.expect_download() as download:
            page.click("#download")
        archive = zipfile.ZipFile(io.BytesIO(open(download.value.path(), "rb").read()))
        names = sorted(archive.namelist())
        assert names == sorted(["a_prime.png", "b.png", "nnf_ab.npy", "nnf_ba.npy",
                                "nnf_ab.png", "nnf_ba.png", "sheet.png", "run.json"]
                               + [f"level{lv}_{side}.png" for lv in range(1, 6)
                                  for side in ("a_prime", "b")])
        shown = page.eval_on_selector("#result-a_prime img", "i => i.src")
        assert page.request.get(shown).body() == archive.read("a_prime.png")

        _settings(page, lbfgs_iters="40")
        page.click("#start")
        page.wait_for_selector("#job-state[data-state='running']", timeout=60_000)
        page.click("#cancel")
        page.wait_for_selector("#job-state[data-state='cancelled']", timeout=120_000)
        assert page.locator("#jobs .job[data-state='cancelled']").count() == 1

        page.set_input_files("#file-a", str(cut))
        page.click("#start")
        expect(page.locator("#error")).to_contain_text("cut.png", timeout=30_000)
        error = page.text_content("#error")
        assert error.startswith("cut.png: cannot decode image data (file truncated or "
                                "corrupt)"), error
        assert "\n" not in error
        assert page.locator("#jobs .job").count() == 2   # the refused upload made no job
        page.close()
