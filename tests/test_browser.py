"""Open every page of the built HTML book in headless Chromium and check what a reader would see.

Per page: no console errors, equations rendered by MathJax (bundled: the browser has no
network), every figure image loaded, animation controls present where the chapter has an
animation, and on notebook pages a launch button pointing at Colab. A screenshot of each page
is saved under the test's temporary directory.

On every page, the ``_toc.yml`` pages and the pages Sphinx generates (index, module index,
search) alike: MathJax is loaded and, once it has finished, no raw TeX is left anywhere in the
page's text (navigation, header and title included), every image has alt text that describes it
rather than naming its file, and no table shows as a paragraph of pipes. The three detectors are
tested themselves on small HTML snippets, so that they provably flag what they are meant to flag.

On one chapter, at a phone's width and at a desktop's: the menu button opens and closes the
chapter list, and the page shows one search control.

The HTML is taken from ``$POLYBOOK_HTML`` if set, else from ``_build/html`` (``.ci/run`` builds
it first), else built into a temporary folder. Skipped, with the reason, when Playwright or
Chromium is missing.
"""

from __future__ import annotations

import functools
import json
import http.server
import os
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
# Pages Sphinx writes beside the toc pages; whichever of them the build produces is checked too.
GENERATED_PAGES = ["genindex", "py-modindex", "search"]

# Raw TeX in the text a reader sees, once MathJax has finished: returns [{where, block, text}]
# (the page region, the start of the paragraph or other block, the text) for every text node
# outside rendered maths (mjx-container), scripts, styles, code, pre, textarea and notebook source
# cells (.cell_input) that still holds a TeX delimiter \( \) \[ \] or $$, an inline $...$, a TeX
# command (\frac, \mathrm, \lVert, ...) or a ^{ or _{ group. An inline $...$ needs a character
# after the opening $ that is neither a space nor a digit, a non-space before the closing $ and no
# digit after it (Pandoc's rule, plus: a $ before a digit is money), so that prose with dollar
# amounts ("$5 to $10", "US$ 3") is not flagged while an unrendered $n^2/(4m)$ is; maths that
# starts with a digit is still caught by its commands or ^{ groups. The page's <title> (the
# browser tab) is plain text that MathJax never renders, so it is not part of the check.
RAW_TEX_JS = r"""
() => {
  const skip = "script, style, noscript, template, textarea, pre, code, mjx-container, .cell_input";
  const patterns = [
    /\\[()[\]]/,
    /\$\$[^$]+\$\$/,
    /(^|[^\\$])\$(?![\s$\d])[^$\n]{1,200}?[^\s$\\]\$(?![\d$])/,
    /(^|[^\\$])\$[^\s$\d]\$(?![\d$])/,
    /\\(?:[a-zA-Z]{2,}|[,;!{}])/,
    /[\^_]\{/,
  ];
  const hits = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || el.closest(skip)) continue;
    const text = node.textContent;
    if (patterns.some((p) => p.test(text))) {
      const region = el.closest("nav, header, footer, aside, h1, h2, h3, h4, main, article");
      const where = region ? region.tagName.toLowerCase() + (region.id ? "#" + region.id : "") : "body";
      const block = el.closest("p, li, dt, dd, td, th, h1, h2, h3, h4, h5, h6, a, div") || el;
      hits.push({ where: where, block: block.textContent.trim().replace(/\s+/g, " ").slice(0, 60),
                  text: text.trim().slice(0, 120) });
    }
  }
  return hits;
}
"""

# Images without a description: no alt attribute, an empty one, or one that only names the file
# (equal to the src, to its file name, or a path or file name such as "figure.png"). No image is
# exempt: the theme shows no logo here (``logo: ""``) and its icons are Font Awesome glyphs, not
# <img>; the one theme image, the Colab launch button's logo, has the alt text "Colab logo".
MISSING_ALT_JS = r"""
() => [...document.querySelectorAll("img")].filter((img) => {
  const alt = (img.getAttribute("alt") || "").trim();
  const src = img.getAttribute("src") || "";
  const file = src.split(/[?#]/)[0].split("/").pop();
  return !alt || alt === src || alt === file
    || /\.(png|jpe?g|gif|svg|webp|avif)$/i.test(alt) || /^\S*[\/\\]\S*$/.test(alt);
}).map((img) => (img.getAttribute("src") || "(no src)").slice(0, 80) + " alt=" + JSON.stringify(img.getAttribute("alt")))
"""


# Tables that did not render: a Markdown pipe table that the parser refused (a header with more
# cells than the rule under it, say from an unescaped | inside a cell) stays a paragraph of pipes.
# Returns the start of every <p>, outside code, with a line that is a table's rule: cells of three
# or more hyphens, or of the dashes Sphinx's smart quotes make of them, between pipes.
PIPE_TABLE_JS = r"""
() => {
  const cell = String.raw`[ \t]*:?(?:-{3,}|[\u2013\u2014]+):?[ \t]*`;
  const rule = new RegExp(String.raw`^[ \t]*\|?(?:${cell}\|)+(?:${cell})?$`);
  return [...document.querySelectorAll("p")]
    .filter((p) => !p.closest("pre, code") && p.textContent.split("\n").some((line) => rule.test(line)))
    .map((p) => p.textContent.trim().replace(/\s+/g, " ").slice(0, 80));
}
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def built_html(tmp_path_factory):
    html = Path(os.environ.get("POLYBOOK_HTML") or ROOT / "_build" / "html")
    if not all((html / f"{p}.html").exists() for p in PAGES):
        out = tmp_path_factory.mktemp("book")
        jb = Path(sys.executable).with_name("jupyter-book")
        subprocess.run([str(jb), "build", "--path-output", str(out), str(ROOT)], check=True, capture_output=True)
        html = out / "_build" / "html"
    assert (html / "index.html").exists(), f"no built book in {html}"
    return html


@pytest.fixture(scope="module")
def site(built_html):
    html = built_html
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


def open_page(browser, url: str, errors: list[str]):
    """A new tab showing ``url``, with console errors, page errors and failed requests sent to ``errors``."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None)
    page.goto(url, wait_until="networkidle")
    return page


def check_every_page(page, page_name: str) -> None:
    """What holds on every page: MathJax loaded and finished, no raw TeX left, every image described,
    every table rendered."""
    # MathJax on every page, not only where the body has an equation: TeX in the navigation, the
    # header or the title shows on every page. Fails when the assets policy of
    # _ext/polybook_sphinx.py is back to Sphinx's default ("per_page").
    has_mathjax = page.evaluate("() => [...document.scripts].some(s => /mathjax/i.test(s.src))")
    assert has_mathjax, "MathJax is not loaded on this page: TeX in its navigation or title would stay raw"
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20000)
    page.evaluate("() => MathJax.startup.promise")

    # Fails when any text a reader sees still holds TeX: a title or toc entry with $...$ that was
    # not typeset, an equation MathJax could not render, TeX glued into prose as plain text.
    raw = page.evaluate(RAW_TEX_JS)
    assert not raw, f"raw TeX left in the page text: {raw}"

    # Fails when an image has no alt text or one that is only its file name or path.
    undescribed = page.evaluate(MISSING_ALT_JS)
    assert not undescribed, f"images without a description in their alt text: {undescribed}"

    # Fails when a table shows as a paragraph of pipes instead of a table.
    unrendered = page.evaluate(PIPE_TABLE_JS)
    assert not unrendered, f"tables printed as paragraphs of pipes: {unrendered}"


@pytest.mark.parametrize("page_name", PAGES)
def test_page_renders_for_a_reader(page_name, site, browser, shots):
    source = next((ROOT / f"{page_name}{ext}" for ext in (".ipynb", ".md") if (ROOT / f"{page_name}{ext}").exists()))
    text = source.read_text()
    errors: list[str] = []
    page = open_page(browser, f"{site}/{page_name}.html", errors)

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
    check_every_page(page, page_name)

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

    # Exercises: each solution is folded behind a "Show the solution" toggle, closed when the page
    # opens, and one click shows it; the chapter links its exercises-only notebook. Fails when a
    # solution cell lost its hide-input tag (its code would show) or the toggle does not open.
    if source.suffix == ".ipynb":
        solutions = sum("solution" in c["metadata"].get("tags", []) for c in json.loads(text)["cells"])
        folded = page.locator("div.tag_solution details")
        assert folded.count() == solutions, f"{folded.count()} folded solutions on the page, {solutions} in the notebook"
        if solutions:
            assert page.evaluate("() => [...document.querySelectorAll('div.tag_solution details')].every(d => !d.open)")
            assert not folded.first.locator("pre").is_visible(), "a solution is visible before it is asked for"
            toggle = folded.first.locator("summary")
            assert toggle.inner_text().strip().startswith("Show the solution")
            toggle.click()
            assert folded.first.locator("pre").is_visible(), "clicking the toggle does not show the solution"
            assert any(h.endswith(f"/exercises/{source.name}") for h in hrefs), "no link to the exercises-only notebook"

    page.screenshot(path=str(shots / f"{page_name.replace('/', '_')}.png"), full_page=False)
    page.close()
    assert not errors, f"console errors: {errors}"


@pytest.mark.parametrize("page_name", GENERATED_PAGES)
def test_generated_page_renders_for_a_reader(page_name, built_html, site, browser, shots):
    if not (built_html / f"{page_name}.html").exists():
        pytest.skip(f"this build has no {page_name}.html")
    errors: list[str] = []
    page = open_page(browser, f"{site}/{page_name}.html", errors)
    check_every_page(page, page_name)
    page.screenshot(path=str(shots / f"{page_name}.png"), full_page=False)
    page.close()
    assert not errors, f"console errors: {errors}"


# The menu button of the article header (the primary-sidebar toggle) on a chapter, at a phone's
# width and at a desktop's. On a phone the chapter list is hidden until the button opens it, and
# its links must then take a tap; on a desktop the list shows and the button hides it. The page
# shows one search control, not the theme's own plus a second bar above it. Fails when the theme
# pair renders pydata-sphinx-theme's header above the book theme's (sphinx-book-theme 1.3.0 with
# pydata-sphinx-theme 0.17.1): its hidden button takes the click handler and this one does nothing.
MENU_PAGE = "book/collisions"
CHAPTER_LINKS = ".bd-sidebar-primary a.reference.internal:visible"
VISIBLE_SEARCH_JS = r"""
() => [...document.querySelectorAll(".search-button-field, .search-button")].filter((e) => {
  const r = e.getBoundingClientRect();
  return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== "hidden";
}).length
"""


@pytest.mark.parametrize("width, height, shown_before", [(390, 844, False), (1366, 900, True)],
                         ids=["phone", "desktop"])
def test_menu_button_toggles_the_chapter_list(width, height, shown_before, site, browser, shots):
    errors: list[str] = []
    page = browser.new_page(viewport={"width": width, "height": height})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{site}/{MENU_PAGE}.html", wait_until="networkidle")
    links = page.locator(CHAPTER_LINKS)
    state = "shown" if shown_before else "hidden"
    assert (links.count() > 0) == shown_before, f"at {width} px the chapter list should start {state}"
    buttons = page.locator(".primary-toggle:visible")
    assert buttons.count() == 1, f"{buttons.count()} visible menu buttons at {width} px"
    buttons.click()
    if shown_before:
        sync_api.expect(links, f"at {width} px the menu button does not hide the chapter list").to_have_count(0)
    else:
        sync_api.expect(links.first, f"at {width} px the menu button does not open the chapter list").to_be_visible()
    page.screenshot(path=str(shots / f"menu-{width}px.png"), full_page=False)
    if not shown_before:
        # The opened list takes a tap: its first link leads to its page.
        target = links.first.get_attribute("href").split("#")[0]
        links.first.click(timeout=5000)
        page.wait_for_url(f"**/{target}", timeout=5000)
    page.close()
    assert not errors, f"page errors: {errors}"


@pytest.mark.parametrize("width, height", [(390, 844), (1366, 900)], ids=["phone", "desktop"])
def test_header_shows_one_search(width, height, site, browser):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(f"{site}/{MENU_PAGE}.html", wait_until="networkidle")
    searches = page.evaluate(VISIBLE_SEARCH_JS)
    page.close()
    assert searches == 1, f"{searches} search boxes or buttons visible at {width} px, expected one"


# The detectors on their own: each snippet is shown in a blank tab, and the detector must flag it
# exactly when it is marked True. The flagged snippets are what a page without MathJax shows.
RAW_TEX_CASES = [
    ("<nav><a href='#'>Collisions: the $n^2/(4m)$ law</a></nav>", True),
    ("<nav><a href='#'>Collisions: the <span class='math'>\\(n^2/(4m)\\)</span> law</a></nav>", True),
    ("<header><h1>The law \\[ E = \\frac{n^2}{4m} \\]</h1></header>", True),
    ("<main><p>Width for $$m \\ge n$$ and more.</p></main>", True),
    ("<main><p>The weights \\mathrm{ReLU}(W) grow.</p></main>", True),
    ("<main><p>Norm W_{ik} and x^{2} stay.</p></main>", True),
    ("<main><p>One feature $i$ alone.</p></main>", True),
    ("<main><p>A GPU costs $2 an hour, a CPU $0.10; spend $5 to $10, or US$ 3.</p></main>", False),
    ("<main><p>Rendered: <mjx-container class='MathJax'><mjx-assistive-mml>n^{2}/(4m) \\frac{1}{2}"
     "</mjx-assistive-mml></mjx-container> is fine.</p></main>", False),
    ("<main><pre>print(f\"${x}$ \\frac{a}{b}\")</pre><p>Use <code>$n^2$</code> in code.</p>"
     "<div class='cell_input'><div>W_{ik} = $x$</div></div></main>", False),
    ("<main><p>Plain prose with no maths (n = 32, m = 128).</p><script>var a = '$x^{2}$';</script></main>", False),
]


def detect(browser, html: str, detector_js: str) -> list:
    """What a page-level detector finds in a small HTML snippet."""
    page = browser.new_page()
    page.set_content(f"<!doctype html><html><body>{html}</body></html>")
    found = page.evaluate(detector_js)
    page.close()
    return found


@pytest.mark.parametrize("html, flagged", RAW_TEX_CASES)
def test_raw_tex_detector(html, flagged, browser):
    hits = detect(browser, html, RAW_TEX_JS)
    assert bool(hits) == flagged, f"detector said {hits} for {html}"


MISSING_ALT_CASES = [
    ("<img src='figure.png'>", True),
    ("<img src='figure.png' alt=''>", True),
    ("<img src='figure.png' alt='   '>", True),
    ("<img src='../_images/abc.png' alt='../_images/abc.png'>", True),
    ("<img src='../_images/abc.png' alt='abc.png'>", True),
    ("<img src='../_images/abc.png' alt='Figure.SVG'>", True),
    ("<img src='../_images/abc.png' alt='_images/abc'>", True),
    ("<img src='../_images/abc.png' alt='Polysemantic neurons against width m: the count falls like 1/m.'>", False),
    ("<img src='../_static/images/logo_colab.png' alt='Colab logo'>", False),
]


PIPE_TABLE_CASES = [
    ("<p>| w | mean |cos| of pairs |\n|---|---|\n| 16 | 0.12 |</p>", True),
    ("<p>| w | mean |cos| of pairs |\n|\u2014|\u2014|\n| 16 | 0.12 |</p>", True),
    ("<p>| a |\n| :---: |</p>", True),
    ("<p>a | b\n--- | ---\n1 | 2</p>", True),
    ("<table><tr><th>w</th><th>mean |cos|</th></tr><tr><td>16</td><td>0.12</td></tr></table>", False),
    ("<pre>| a | b |\n|---|---|</pre><p>Use <code>|---|</code> under the header.</p>", False),
    ("<p>The mean |cos| between features is 0.10 \u2014 small | but not zero.</p>", False),
    ("<p>A rule --- then more prose.</p>", False),
]


@pytest.mark.parametrize("detector, html, flagged",
                         [("MISSING_ALT_JS", h, f) for h, f in MISSING_ALT_CASES]
                         + [("PIPE_TABLE_JS", h, f) for h, f in PIPE_TABLE_CASES])
def test_missing_alt_and_pipe_table_detectors(detector, html, flagged, browser):
    # Fails when a detector misses what it is meant to flag, or flags what it is meant to pass.
    bad = detect(browser, html, globals()[detector])
    assert bool(bad) == flagged, f"{detector} said {bad} for {html}"


def test_verdict_words_are_marked_and_references_are_labelled_as_cited(site, browser):
    # Fails when a row of the verdict table has no marked verdict word in its second column (the
    # column a phone shows beside the claim), or the bibliography labels its entries with alpha keys
    # ("LTS+23") that a reader cannot match to the text's "Lecomte et al. [2023]".
    errors: list[str] = []
    page = open_page(browser, f"{site}/book/intro.html", errors)
    rows = page.evaluate(
        "() => [...document.querySelectorAll('#the-verdict-up-front table tbody tr')].map(tr =>"
        " tr.children[1].querySelector('.verdict-word') ? tr.children[1].innerText.trim() : null)")
    assert len(rows) >= 17 and all(rows), f"verdict cells without a marked word: {rows}"
    page.close()
    page = open_page(browser, f"{site}/book/bibliography.html", errors)
    text = page.inner_text("article")
    assert "Lecomte et al., 2023" in text and "Elhage et al., 2022" in text, text[:500]
    assert "LTS+23" not in text and "EHO+22" not in text, text[:500]
    page.close()
    assert not errors, f"console errors: {errors}"
