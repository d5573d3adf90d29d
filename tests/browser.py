"""A real browser for the viewer's tests: Debian's chromium (setup.sh installs it), driven headless by playwright.

pip's playwright cannot download its own browsers here, so it is pointed at the system's chromium. Where either is
missing, the tests that need them skip and say why. Each test module launches one browser (a module-scoped
fixture) and gives every test a fresh context. Screenshots go to a temporary directory, or to
$RESGRAPH_SCREENSHOTS where set (docs/viewer_screenshots.py sets it to docs/img/viewer).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("RESGRAPH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Headless, as root in a container, and quiet: no GPU, no QUIC, no first-run, update, sync or background requests.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 900}


def launch():
    """(playwright, browser), the browser with a fresh profile; skips where playwright or chromium is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (`pip install -e '.[dev]'`); the browser tests need it")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no chromium at {CHROMIUM} (setup.sh installs Debian's `chromium`; $RESGRAPH_CHROMIUM names "
                    "another); the browser tests need it")
    manager = sync_playwright().start()
    try:   # playwright gives each launch a fresh temporary profile (user-data-dir)
        browser = manager.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    except Exception as exc:  # noqa: BLE001
        manager.stop()
        pytest.skip(f"chromium at {CHROMIUM} does not start under playwright: {str(exc).splitlines()[0]}")
    return manager, browser


@pytest.fixture(scope="module")
def browser():
    """One browser for the test module that imports this fixture."""
    manager, launched = launch()
    yield launched
    launched.close()
    manager.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where the module's screenshots go."""
    return screenshot_dir(tmp_path_factory)


def screenshot_dir(tmp_path_factory) -> Path:
    where = os.environ.get("RESGRAPH_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        return Path(where)
    return tmp_path_factory.mktemp("screenshots")


def pixel_spread(png: bytes) -> float:
    """The standard deviation of the grey levels of a PNG: about 0 for a blank (one-colour) page."""
    from PIL import Image, ImageStat

    image = Image.open(io.BytesIO(png)).convert("L")
    return ImageStat.Stat(image).stddev[0]


def save_screenshot(page, directory: Path, name: str) -> bytes:
    """Screenshot the page to directory/name, and check it is not blank."""
    png = page.screenshot()
    (directory / name).write_bytes(png)
    spread = pixel_spread(png)
    assert spread > 8, f"{name} looks blank (grey-level spread {spread:.1f})"
    return png
