"""Open every page of the built HTML book in headless Chromium and check what a reader would see.

Per page: no console errors, equations rendered by MathJax (bundled: the browser has no
network), every figure image loaded, animation controls present where the chapter has an
animation, and on notebook pages a launch button pointing at Colab. A screenshot of each page
is saved under the test's temporary directory.

The HTML is taken from ``_build/html`` (``.ci/run`` builds it first) or built into a temporary
folder. Skipped, with the reason, when Playwright or Chromium is missing.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if CHROMIUM is None:
    pytest.skip("Chromium is not installed (Debian: apt-get install chromium)", allow_module_level=True)


def toc_pages() -> list[str]:
    """Every document of ``_toc.yml`` in reading order, e.g. ``book/intro``."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections"))
            for part in entry.get("parts", []) if isinstance(entry, dict) else []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return pages


PAGES = toc_pages()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    html = ROOT / "_build" / "html"
    if not all((html / f"{p}.html").exists() for p in PAGES):
        out = tmp_path_factory.mktemp("book")
        jb = Path(sys.executable).with_name("jupyter-book")
        subprocess.run([str(jb), "build", "--path-output", str(out), str(ROOT)], check=True, capture_output=True)
        html = out / "_build" / "html"
    assert (html / "index.html").exists(), f"no built book in {html}"
    handler = functools.partial(_QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")


@pytest.mark.parametrize("page_name", PAGES)
def test_page_renders_for_a_reader(page_name, site, browser, shots):
    source = next((ROOT / f"{page_name}{ext}" for ext in (".ipynb", ".md") if (ROOT / f"{page_name}{ext}").exists()))
    text = source.read_text()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None)
    page.goto(f"{site}/{page_name}.html", wait_until="networkidle")

    # Equations: MathJax finished and left no raw TeX delimiters in the rendered math.
    has_math = "$" in text or "{math}" in text
    if has_math:
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20000)
        page.evaluate("() => MathJax.startup.promise")
        assert page.locator("mjx-container").count() > 0, "no equation was rendered"
        raw = page.evaluate(
            "() => [...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container')).length"
        )
        assert raw == 0, f"{raw} equations left as raw TeX"

    # Figures: every image has loaded with a real size.
    broken = page.evaluate(
        "() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80))"
    )
    assert not broken, f"images that did not load: {broken}"
    if source.suffix == ".ipynb" and '"image/png"' in text:
        assert page.locator("img").count() > 0, "the notebook has figures but the page shows none"

    # Animations exported with to_jshtml(): the play controls and the frame slider exist.
    if "Animation" in text and "to_jshtml" in text:
        assert page.locator("div.animation input[type=range]").count() > 0, "animation slider missing"
        assert page.locator("div.animation button").count() >= 3, "animation buttons missing"

    # Notebook chapters have a launch button to Colab.
    if source.suffix == ".ipynb":
        hrefs = page.evaluate("() => [...document.querySelectorAll('a')].map(a => a.href)")
        assert any("colab.research.google.com" in h for h in hrefs), "no Colab launch button"

    page.screenshot(path=str(shots / f"{page_name.replace('/', '_')}.png"), full_page=False)
    page.close()
    assert not errors, f"console errors: {errors}"
