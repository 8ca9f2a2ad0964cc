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

On every ``_toc.yml`` page, at a desktop's 1366 px and at a phone's 390 px, with every folded
code cell and solution opened: no code or output block is wider than the text column (figures may
pan sideways on a phone, and a table that cannot be narrower scrolls in its own frame: see
WIDE_BLOCKS_JS for why), every figure's tick labels show at 8 px or more (from the PNG's width and
dpi and the width the browser gives it), every explorer section shows a figure, and no cell output
is an empty box. These detectors are tested on snippets too.

On one chapter, at a phone's width and at a desktop's: the menu button opens and closes the
chapter list, and the page shows one search control.

The HTML is taken from ``$POLYBOOK_HTML`` if set, else from ``_build/html`` (``.ci/run`` builds
it first), else built into a temporary folder. Skipped, with the reason, when Playwright or
Chromium is missing.
"""

from __future__ import annotations

import base64
import functools
import json
import http.server
import os
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

from polybook.plots import TICK_LABEL_PT, png_width_and_dpi

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


# The two widths a reader brings: a desktop's and a phone's (an iPhone 12 to 15 in portrait).
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}

# Blocks wider than the text column (the article's content box): returns {too_wide, allowed}, each a
# list of {what, width, column, text}. Checked: every shown <pre> (code cells, text outputs,
# solutions, Markdown code blocks, the API page's examples), every cell output and every table in
# a cell output. A block is too wide when its box reaches past the column or its content scrolls
# sideways inside it (scrollWidth > clientWidth). Two exceptions, each reported under `allowed`:
# - Figures pan sideways on a phone (allow_figures): a figure is kept at least as wide as its tick
#   labels need to show at 8 px (an inline min-width from _ext/polybook_sphinx.py), and shrinking
#   it further would make them unreadable. Its cell output scrolls; the output itself stays in the
#   column, and nothing else in it may overflow. On a desktop a figure that pans is too wide.
# - A table of numbers that cannot be narrower: even at its narrowest (min-content: every cell
#   broken at every space) it is wider than the column, and breaking a number inside would misread
#   it. It scrolls in its own frame (the nearest ancestor that scrolls), which must stay in the
#   column. A table that is wide only because of its style is too wide.
WIDE_BLOCKS_JS = r"""
(allowFigures) => {
  const art = document.querySelector("article.bd-article");
  const style = getComputedStyle(art), box = art.getBoundingClientRect();
  const left = box.left + parseFloat(style.paddingLeft), right = box.right - parseFloat(style.paddingRight);
  const column = right - left;
  // Shown: laid out and not inside a closed <details> (whose content keeps a box in Chromium).
  const shown = (el) => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && el.checkVisibility();
  };
  const outside = (el) => { const r = el.getBoundingClientRect(); return r.left < left - 1 || r.right > right + 1; };
  const scrolls = (el) => /auto|scroll/.test(getComputedStyle(el).overflowX);
  // How wide an element's content is with some of its descendants taken out of the layout.
  const widthWithout = (el, aside) => {
    const displays = aside.map((e) => e.style.display);
    aside.forEach((e) => { e.style.display = "none"; });
    const width = el.scrollWidth;
    aside.forEach((e, i) => { e.style.display = displays[i]; });
    return width;
  };
  const text = (el) => {
    const words = (el.innerText || "").trim().replace(/\s+/g, " ");
    const img = el.querySelector("img");
    return (words || (img ? "figure: " + (img.alt || img.src) : el.tagName.toLowerCase())).slice(0, 70);
  };
  const entry = (what, el, width) =>
    ({ what: what, width: Math.round(width), column: Math.round(column), text: text(el) });
  const tooWide = [], allowed = [], framedTables = new Set();

  for (const table of art.querySelectorAll(".cell_output table")) {
    if (!shown(table)) continue;
    const width = table.getBoundingClientRect().width;
    if (width <= column + 1 && !outside(table)) continue;
    const before = table.style.width;
    table.style.width = "min-content";
    const narrowest = table.getBoundingClientRect().width;
    table.style.width = before;
    let frame = table.parentElement;
    while (frame && frame !== art && !scrolls(frame)) frame = frame.parentElement;
    if (narrowest > column + 1 && frame && frame !== art && !outside(frame)) {
      framedTables.add(table);
      allowed.push(entry("table, " + Math.round(narrowest) + " px at its narrowest", table, width));
    } else {
      tooWide.push(entry("table", table, width));
    }
  }

  for (const el of art.querySelectorAll("pre, .cell_output")) {
    if (!shown(el)) continue;
    if (el.scrollWidth <= el.clientWidth + 1 && !outside(el)) continue;
    if (el.matches(".cell_output") && !outside(el) && scrolls(el)) {
      // Set aside what may scroll (framed tables; figures on a phone) and measure again.
      const tables = [...el.querySelectorAll("table")].filter((t) => framedTables.has(t));
      if (widthWithout(el, tables) <= el.clientWidth + 1) continue;
      const figures = allowFigures ? [...el.querySelectorAll("img, div.animation")] : [];
      if (figures.length && widthWithout(el, tables.concat(figures)) <= el.clientWidth + 1) {
        allowed.push(entry("figure pans", el, el.scrollWidth));
        continue;
      }
    }
    const width = Math.max(el.scrollWidth, el.getBoundingClientRect().width);
    tooWide.push(entry(el.matches("pre") ? "pre" : "cell output", el, width));
  }
  return { too_wide: tooWide, allowed: allowed };
}
"""

# The page itself wider than the window: the reader would pan the whole page, text column and
# all, which no block check sees (an API signature, an equation or a word of inline code too long
# for the line). Returns the innermost elements that reach past the window's right edge.
PAGE_PANS_JS = r"""
() => {
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth <= width + 1) return [];
  const past = (e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.right > width + 1; };
  const found = [...document.body.querySelectorAll("*")].filter((e) => past(e) && ![...e.children].some(past))
    .slice(0, 8).map((e) => e.tagName.toLowerCase() + (typeof e.className === "string" && e.className
      ? "." + e.className.split(" ")[0] : "") + ": " + (e.innerText || "").trim().replace(/\s+/g, " ").slice(0, 60));
  return found.length ? found : ["the page is " + document.documentElement.scrollWidth + " px wide"];
}
"""

# Every figure of a cell output, animations included, as the browser shows it: [{src, shown, alt}],
# `shown` its rendered width in CSS pixels. Its tick labels' size is worked out in Python from the
# PNG (small_tick_labels).
FIGURES_JS = r"""
() => [...document.querySelectorAll("article .cell_output img")]
  .filter((img) => img.getBoundingClientRect().width > 0)
  .map((img) => ({ src: img.currentSrc || img.src, shown: img.getBoundingClientRect().width,
                   alt: (img.getAttribute("alt") || "").slice(0, 70) }))
"""

# Explorer sections: a section whose heading, after its number, starts with "Explore" ("Explore",
# "Explorer", "6. Explore"). Returns [{title, images}], `images` the number of loaded images in it:
# a static page has no kernel to drive the sliders, so it must show what the explorer draws.
EXPLORERS_JS = r"""
() => [...document.querySelectorAll("article section")].map((section) => {
  const heading = section.querySelector(":scope > h1, :scope > h2, :scope > h3, :scope > h4, :scope > h5, :scope > h6");
  const title = heading ? heading.textContent.replace(/#\s*$/, "").trim() : "";
  return { section: section, title: title };
}).filter((s) => /^(\d+(\.\d+)*\.?\s+)?Explore/.test(s.title)).map((s) => ({
  title: s.title.slice(0, 60),
  images: [...s.section.querySelectorAll("img")].filter((img) => img.complete && img.naturalWidth > 0).length,
}))
"""

# Cell outputs a reader sees as nothing: no visible text and no loaded image (or svg, canvas,
# video). A widget output with no widget state is one: the static page has no kernel to draw the
# widget, so it needs a text/html fallback that says what the cell does. Returns "heading: html".
EMPTY_OUTPUTS_JS = r"""
() => [...document.querySelectorAll("article .cell_output")].filter((out) =>
  !out.innerText.trim()
  && ![...out.querySelectorAll("img")].some((img) => img.complete && img.naturalWidth > 0)
  && !out.querySelector("svg, canvas, video")
).map((out) => {
  const section = out.closest("section");
  const heading = section && section.querySelector("h1, h2, h3, h4, h5, h6");
  const where = heading ? heading.textContent.replace(/#\s*$/, "").trim().slice(0, 50) : "(no section)";
  return where + ": " + out.innerHTML.trim().replace(/\s+/g, " ").slice(0, 80);
})
"""

# Opens every folded block (code cells folded behind "Show code cell source", solutions), so that
# what they hold is measured too.
OPEN_FOLDS_JS = "() => document.querySelectorAll('article details').forEach((d) => { d.open = true; })"

#: The smallest tick label, in CSS pixels, that a figure may be shown with.
MIN_TICK_PX = 8


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


def open_page(browser, url: str, errors: list[str], viewport: dict = DESKTOP):
    """A new tab showing ``url``, with console errors, page errors and failed requests sent to ``errors``."""
    page = browser.new_page(viewport=viewport)
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



def figure_png(src: str, built_html: Path | None) -> bytes | None:
    """The PNG an <img> shows: decoded from a data: URL (animation frames) or read from the built book."""
    if src.startswith("data:"):
        head, _, payload = src.partition(",")
        return base64.b64decode(payload) if head.startswith("data:image/png;base64") else None
    path = built_html / unquote(urlparse(src).path).lstrip("/") if built_html else None
    return path.read_bytes() if path and path.suffix.lower() == ".png" and path.is_file() else None


def small_tick_labels(page, built_html: Path | None) -> list[str]:
    """The figures on the page whose tick labels show below MIN_TICK_PX. A figure is drawn with
    TICK_LABEL_PT-point tick labels at the dpi written in its PNG, so they are
    TICK_LABEL_PT * dpi / 72 pixels tall at the PNG's own width, scaled by the width shown. A PNG
    without a pHYs chunk was not drawn by matplotlib (savefig always writes one): not checked."""
    small = []
    for figure in page.evaluate(FIGURES_JS):
        data = figure_png(figure["src"], built_html)
        width, dpi = png_width_and_dpi(data) if data else (0, None)
        if not dpi:
            continue
        tick_px = TICK_LABEL_PT * dpi / 72 * figure["shown"] / width
        if tick_px < MIN_TICK_PX - 0.01:
            small.append(f"{tick_px:.1f} px ({width} px at {dpi:.0f} dpi shown {figure['shown']:.0f} px wide): "
                         f"{figure['alt'] or figure['src'][:70]}")
    return small


def wait_for_mathjax(page) -> None:
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20000)
    page.evaluate("() => MathJax.startup.promise")


def check_layout(page, built_html: Path, phone: bool) -> None:
    """What a reader at this width must see, with every fold opened: no block wider than the text
    column (figures pan on a phone only), legible figures, explorers that show a figure and no empty
    cell output."""
    page.evaluate(OPEN_FOLDS_JS)
    width = page.viewport_size["width"]
    # Fails when a code cell, text output, solution or table runs past the text column or scrolls
    # sideways inside it (a line or a cell cut at the column's edge), or on a desktop a figure pans.
    blocks = page.evaluate(WIDE_BLOCKS_JS, phone)
    assert not blocks["too_wide"], f"at {width} px, blocks wider than the text column: {blocks['too_wide']}"
    # Fails when the whole page scrolls sideways at this width.
    pans = page.evaluate(PAGE_PANS_JS)
    assert not pans, f"at {width} px the page is wider than the window; past its edge: {pans}"
    # Fails when a figure is shown so narrow that its tick labels are below 8 px.
    small = small_tick_labels(page, built_html)
    assert not small, f"at {width} px, figures with tick labels below {MIN_TICK_PX} px: {small}"
    # Fails when an explorer section shows no image: without a kernel it shows nothing the explorer draws.
    blind = [s["title"] for s in page.evaluate(EXPLORERS_JS) if not s["images"]]
    assert not blind, f"explorer sections without an image: {blind}"
    # Fails when a cell output shows nothing (a widget without its text/html fallback).
    empty = page.evaluate(EMPTY_OUTPUTS_JS)
    assert not empty, f"cell outputs with no visible text and no image: {empty}"

@pytest.mark.parametrize("page_name", PAGES)
def test_page_renders_for_a_reader(page_name, built_html, site, browser, shots):
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
    check_layout(page, built_html, phone=False)
    page.close()
    assert not errors, f"console errors: {errors}"


@pytest.mark.parametrize("page_name", PAGES)
def test_page_reads_on_a_phone(page_name, built_html, site, browser, shots):
    errors: list[str] = []
    page = open_page(browser, f"{site}/{page_name}.html", errors, viewport=PHONE)
    wait_for_mathjax(page)
    page.screenshot(path=str(shots / f"{page_name.replace('/', '_')}-phone.png"), full_page=False)
    check_layout(page, built_html, phone=True)
    page.close()
    assert not errors, f"console errors at {PHONE['width']} px: {errors}"


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



def png(width: int, height: int = 4, dpi: float | None = 110) -> str:
    """A blank PNG of this size, with a pHYs chunk for ``dpi`` (none for None), as a data: URL."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    if dpi:
        data += chunk(b"pHYs", struct.pack(">IIB", round(dpi / 0.0254), round(dpi / 0.0254), 1))
    data += chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + b"\xff" * width for _ in range(height))))
    data += chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(data).decode()


def column(body: str, width: int = 300) -> str:
    """A snippet in a text column ``width`` px wide (with the article's padding), as on a book page."""
    return f"<article class='bd-article' style='width: {width}px; padding: 0 10px'>{body}</article>"


NUMBERS_ROW = "<tr>" + "".join(f"<td>{1000 + i}.{i:04d}</td>" for i in range(12)) + "</tr>"
WIDE_BLOCK_CASES = [
    # A code line past the column: cut (the browser's default white-space: pre).
    (column("<pre>" + "x = 1; " * 80 + "</pre>"), False, True),
    (column("<pre style='white-space: pre-wrap; overflow-wrap: anywhere'>" + "x = 1; " * 80 + "a" * 90 + "</pre>"),
     False, False),
    # A text output in a cell output that does not wrap, even on a phone.
    (column("<div class='cell_output' style='overflow-x: auto'><pre>after 30000 minibatch steps: "
            + "0.123 " * 60 + "</pre></div>"), True, True),
    # A figure kept at its legible width pans: allowed on a phone, too wide on a desktop.
    (column(f"<div class='cell_output' style='overflow-x: auto'><img src='{png(500)}' style='min-width: 400px;"
            " max-width: 100%' alt='a figure'></div>"), True, False),
    (column(f"<div class='cell_output' style='overflow-x: auto'><img src='{png(500)}' style='min-width: 400px;"
            " max-width: 100%' alt='a figure'></div>"), False, True),
    # ... but not a wide HTML block beside it.
    (column(f"<div class='cell_output' style='overflow-x: auto'><img src='{png(500)}' style='min-width: 400px;"
            " max-width: 100%' alt='a figure'><div style='width: 500px'>wide</div></div>"), True, True),
    # A figure that spills out of a cell output that does not scroll.
    (column(f"<div class='cell_output'><img src='{png(500)}' style='min-width: 400px' alt='a figure'></div>"
            "<p>after</p>"), True, True),
    # Twelve numbers a row cannot be narrower than the column: they scroll in their frame.
    (column("<div class='cell_output'><div style='overflow-x: auto'><table>" + NUMBERS_ROW * 2
            + "</table></div></div>"), False, False),
    # ... but not out of the column, without a frame.
    (column("<div class='cell_output'><table>" + NUMBERS_ROW * 2 + "</table></div>"), False, True),
    # A table of words that could wrap, held wide by its style.
    (column("<div class='cell_output'><div style='overflow-x: auto'><table style='width: 600px'><tr>"
            "<td>a few words</td><td>more words here</td></tr></table></div></div>"), False, True),
    (column("<div class='cell_output'><div style='overflow-x: auto'><table><tr><td>a few words</td>"
            "<td>more words here</td></tr></table></div></div>"), False, False),
    # A folded block is not shown, so not measured.
    (column("<details><summary>Show</summary><pre>" + "x = 1; " * 80 + "</pre></details>"), False, False),
]


@pytest.mark.parametrize("html, allow_figures, flagged", WIDE_BLOCK_CASES)
def test_wide_block_detector(html, allow_figures, flagged, browser):
    # Fails when the detector misses a block wider than the column or flags an allowed one.
    page = browser.new_page(viewport=DESKTOP)
    page.set_content(f"<!doctype html><html><body style='margin: 0'>{html}</body></html>")
    found = page.evaluate(WIDE_BLOCKS_JS, allow_figures)
    page.close()
    assert bool(found["too_wide"]) == flagged, f"detector said {found} for {html[:300]}"


PAGE_PANS_CASES = [
    ("<p>A <code>polybook.metrics.polysemantic_neurons_by_mass</code> name.</p>", 200, True),
    ("<p>A <code style='overflow-wrap: anywhere'>polybook.metrics.polysemantic_neurons_by_mass</code> name.</p>",
     200, False),
    ("<div style='overflow-x: auto'><div style='width: 3000px'>a wide figure in its frame</div></div>", 390, False),
    ("<div><div style='width: 3000px'>a wide block</div></div>", 390, True),
]


@pytest.mark.parametrize("html, width, flagged", PAGE_PANS_CASES)
def test_page_pans_detector(html, width, flagged, browser):
    # Fails when the detector misses a page wider than the window, or flags one that fits.
    page = browser.new_page(viewport={"width": width, "height": 600})
    page.set_content(f"<!doctype html><html><body>{html}</body></html>")
    found = page.evaluate(PAGE_PANS_JS)
    page.close()
    assert bool(found) == flagged, f"detector said {found} for {html} at {width} px"


TICK_CASES = [
    # 704 px at 110 dpi: 9 pt labels are 13.75 px at full size.
    (f"<img src='{png(704)}' alt='full size'>", 800, False),
    # Shrunk to a 300 px column: 5.9 px.
    (f"<img src='{png(704)}' style='max-width: 100%' alt='shrunk'>", 300, True),
    # Held at its legible width (704 * 8 / 13.75 = 410 px): 8 px, panning.
    (f"<img src='{png(704)}' style='min-width: 410px; max-width: 100%' alt='legible'>", 300, False),
    # Drawn at 50 dpi: 6.25 px even at full size.
    (f"<img src='{png(300, dpi=50)}' alt='low dpi'>", 800, True),
    # No pHYs chunk: not a matplotlib figure, not checked.
    (f"<img src='{png(704, dpi=None)}' style='max-width: 100%' alt='no dpi'>", 300, False),
]


@pytest.mark.parametrize("img, width, flagged", TICK_CASES)
def test_tick_label_detector(img, width, flagged, browser):
    # Fails when the tick label size from the PNG and the shown width misses a shrunk figure, or
    # flags one shown large enough.
    page = browser.new_page(viewport=DESKTOP)
    output = f"<div class='cell_output' style='overflow-x: auto'>{img}</div>"
    page.set_content(f"<!doctype html><html><body>{column(output, width)}</body></html>")
    small = small_tick_labels(page, None)
    page.close()
    assert bool(small) == flagged, f"detector said {small} for a {width} px column: {img[:60]}"


EXPLORER_CASES = [
    (f"<section><h2>Explore</h2><p>Sliders.</p><div class='cell_output'><img src='{png(40)}' alt='f'></div></section>",
     False),
    ("<section><h2><span class='section-number'>6. </span>Explore<a class='headerlink'>#</a></h2>"
     "<p>Sliders.</p></section>", True),
    ("<section><h2>Explorer</h2><div class='cell_output'><script type='application/vnd.jupyter.widget-view+json'>"
     "{}</script></div></section>", True),
    (f"<section><h2>Explorer</h2><section><h3>Default</h3><img src='{png(40)}' alt='f'></section></section>", False),
    ("<section><h2>Further reading</h2><p>No figure.</p></section>", False),
    ("<section><h2>Exploring the loss</h2><p>Not an explorer: no figure needed.</p></section>", False),
]

EMPTY_OUTPUT_CASES = [
    ("<div class='cell_output'><script type='application/vnd.jupyter.widget-view+json'>{}</script></div>", True),
    ("<div class='cell_output'><div class='output text_html'><p style='display: none'>hidden</p></div></div>", True),
    ("<div class='cell_output'><img src='missing.png' alt='a figure that did not load'></div>", True),
    ("<div class='cell_output'><script type='application/vnd.jupyter.widget-view+json'>{}</script>"
     "<p>In a live notebook the sliders redraw the figure above.</p></div>", False),
    (f"<div class='cell_output'><img src='{png(40)}' alt='a figure'></div>", False),
    ("<div class='cell_output'><pre>42</pre></div>", False),
]


@pytest.mark.parametrize("detector, html, flagged",
                         [("EXPLORERS_JS", h, f) for h, f in EXPLORER_CASES]
                         + [("EMPTY_OUTPUTS_JS", h, f) for h, f in EMPTY_OUTPUT_CASES])
def test_explorer_and_empty_output_detectors(detector, html, flagged, browser):
    # Fails when an explorer without a figure or an empty cell output goes unflagged, or a section
    # that is no explorer, or an output that shows something, is flagged.
    found = detect(browser, f"<article class='bd-article'>{html}</article>", globals()[detector])
    bad = [s for s in found if not s["images"]] if detector == "EXPLORERS_JS" else found
    assert bool(bad) == flagged, f"{detector} said {found} for {html[:200]}"
