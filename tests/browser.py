"""A headless Chromium for the diagram tests and the README pictures.

The browser is the system's (Debian's `chromium` package; `.ci/run` installs it), driven by
Playwright, which is told where it is and never downloads one. `browser()` returns None, with
the reason, when either is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/lib/chromium/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    env = os.environ.get("NNSPEC_CHROMIUM")
    for path in ((env,) if env else ()) + CANDIDATES:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found


def unavailable() -> str | None:
    """Why no browser can be driven here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the `playwright` package is not installed (pip install -e '.[dev]')"
    if chromium_path() is None:
        return "no Chromium executable (on Debian: apt-get install chromium)"
    return None


@contextlib.contextmanager
def browser():
    """A launched Chromium (Playwright `Browser`). Playwright gives every launch a fresh, temporary
    profile directory (it refuses a `--user-data-dir` flag); HOME points at a fresh one too."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="nnspec-chromium-")
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium_path(), headless=True,
                                  args=FLAGS,
                                  env={**os.environ, "HOME": profile})
            try:
                yield b
            finally:
                b.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(b, path_in: str, png: str, width: int = 1200, height: int = 800, full_page: bool = True,
               selector: str | None = None, click: str | None = None) -> None:
    """Open a local file (no network: every other request is refused) and save a PNG of it."""
    page = b.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
               else route.abort())
    if path_in.endswith(".svg"):  # a bare SVG document has no page to measure: show it inline in one
        with open(path_in, encoding="utf-8") as fh:
            page.set_content('<!DOCTYPE html><html><body style="margin:0">' + fh.read() + "</body></html>")
    else:
        page.goto("file://" + os.path.abspath(path_in))
    if click:
        page.click(click)
    if selector:
        page.locator(selector).screenshot(path=png)
    else:
        page.screenshot(path=png, full_page=full_page)
    page.close()
