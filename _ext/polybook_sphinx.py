"""Small fixes to the HTML the book's theme stack produces, so a reader's console stays clean.

- sphinx-thebe's inline configuration script ends up twice on every page, and the second
  ``const THEBE_JS_URL`` is a JavaScript error: keep one copy of each script per page.
- On a first visit the theme reads an empty colour mode from local storage and logs an error
  before falling back to "auto": start from "auto" instead.
- Matplotlib's ``to_jshtml()`` animations link Font Awesome 4 from a CDN for their button icons;
  the theme already bundles Font Awesome (whose ``fa`` classes the buttons use), so drop the
  link: the page then needs no network.
- Those animations show their frames in an ``<img>`` without alt text, and myst-nb applies a cell's
  ``"mystnb": {"image": {"alt": ...}}`` metadata to image outputs only: give the animation's
  ``<img>`` the same alt text, so a figure drawn as an animation is described like any other.
- Sphinx's mathjax extension loads MathJax only on pages whose body has an equation, yet the
  sidebar, the header and the page title can show TeX on any page (a chapter title with
  ``$...$`` in the navigation of the API page, of the index or of the search page): load it on
  every page. ``sphinx-mathjax-offline`` points ``mathjax_path`` at its bundled copy, which it
  copies into ``_static/mathjax`` for every build, so no page needs the network for it.
- That copy is the whole MathJax distribution (about 24 MB: every combined component, the SVG
  output, the speech rules), while the pages load one component, ``tex-chtml.js``. After the build
  only what that component can load is kept (:data:`MATHJAX_KEEP`): itself, the TeX extensions its
  ``autoload`` and ``require`` fetch on demand, the CHTML fonts, and the menu's accessibility
  extensions with the speech rules they load when a reader turns them on.
- The text cites "Lecomte et al. [2023]" (``bibtex_reference_style: author_year``), but the
  bibliography's default labels are alpha keys such as [LTS+23], which a reader cannot match to
  the citation. The style ``polybook`` (``bibtex_default_style``) labels each entry as the text
  cites it: "Lecomte et al., 2023".
- Figures stay legible on a narrow screen. A figure is drawn at ``polybook.plots.FIGURE_DPI``
  with ``polybook.plots.TICK_LABEL_PT`` tick labels, and a browser shrinks it to the text column:
  on a phone every figure's tick labels would fall below 8 px. Every figure of a cell output
  (and every ``to_jshtml()`` animation) gets an inline ``min-width``, the width at which its tick
  labels show at :data:`MIN_TICK_PX`, from the PNG's own width and dpi (its ``pHYs`` chunk, which
  matplotlib always writes); the stylesheet lets a cell output scroll sideways, so on a narrow
  screen a figure shrinks to that width and then pans.
- A verdict word pasted into a page (``{glue:text}`` of a ``verdict_*_word``) gets a class naming
  it, ``verdict-word verdict-holds`` and so on, so the stylesheet can mark and colour it: the
  verdict table is scanned by its words.
"""

from __future__ import annotations

import base64
import html
import math
import re
import shutil
from pathlib import Path

from docutils import nodes
from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle

CDN_FONT_AWESOME = re.compile(r'<link rel="stylesheet"\s+href="https://[^"]*font-awesome[^"]*\.css">\s*')

ANIMATION_IMG = re.compile(r'<img id="_anim_img[0-9a-f]*"')

MODE_SCRIPT = (
    "try { if (!localStorage.getItem('mode')) { localStorage.setItem('mode', 'auto'); } "
    "document.documentElement.dataset.mode = localStorage.getItem('mode'); } catch (e) {}"
)


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        attrs = getattr(js, "attributes", {}) or {}  # an inline script has filename None or ""
        key = (str(getattr(js, "filename", js) or ""), tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def _drop_cdn_font_awesome(app, pagename, templatename, context, doctree):
    body = context.get("body")
    if body and "font-awesome" in body:
        context["body"] = CDN_FONT_AWESOME.sub("", body)


def _alt_text_for_animations(app, doctree, docname):
    for cell in doctree.findall(nodes.container):
        if cell.get("nb_element") != "cell_code":
            continue
        alt = ((cell.get("cell_metadata") or {}).get("mystnb") or {}).get("image", {}).get("alt")
        if not alt:
            continue
        for raw in cell.findall(nodes.raw):
            text = raw.astext()
            if ANIMATION_IMG.search(text):
                text = ANIMATION_IMG.sub(lambda m: f'{m.group(0)} alt="{html.escape(alt)}"', text)
                raw.replace(raw[0], nodes.Text(text))


class AuthorYearLabels(BaseLabelStyle):
    """Bibliography labels as the text cites: "Elhage et al., 2022", "Smith and Jones, 2020"."""

    def format_labels(self, sorted_entries):
        labels = [self._label(entry) for entry in sorted_entries]
        for label in labels:
            yield label

    @staticmethod
    def _label(entry) -> str:
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [" ".join(p.last_names) for p in people]
        if not names:
            who = entry.key
        elif len(names) == 1:
            who = names[0]
        elif len(names) == 2:
            who = f"{names[0]} and {names[1]}"
        else:
            who = f"{names[0]} et al."
        year = entry.fields.get("year")
        return f"{who}, {year}" if year else who


class AuthorYearStyle(PlainStyle):
    """The plain style with :class:`AuthorYearLabels`."""

    default_label_style = AuthorYearLabels


register_plugin("pybtex.style.formatting", "polybook", AuthorYearStyle)


#: The verdict words (``polybook.verdicts.WORDS``) and the class each gets in the HTML.
VERDICT_CLASSES = {"holds": "holds", "holds with a correction": "correction", "does not hold here": "fails",
                   "depends on the optimiser": "optimiser", "unfinished": "unfinished", "untested": "untested",
                   "a finding": "finding"}
VERDICT_SPAN = re.compile(r'<span class="pasted-text">(' + "|".join(map(re.escape, VERDICT_CLASSES)) + r')</span>')


def _mark_verdict_words(app, pagename, templatename, context, doctree):
    body = context.get("body")
    if body and "pasted-text" in body:
        context["body"] = VERDICT_SPAN.sub(
            lambda m: f'<span class="pasted-text verdict-word verdict-{VERDICT_CLASSES[m.group(1)]}">{m.group(1)}</span>',
            body)


#: What ``tex-chtml.js`` can load, relative to ``_static/mathjax``; the rest of the copy is removed.
MATHJAX_KEEP = ("tex-chtml.js", "input/tex/extensions", "output/chtml/fonts/woff-v2", "a11y", "sre", "ui")


def _prune_mathjax(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    root = Path(app.outdir) / "_static" / "mathjax"
    if not (root / "tex-chtml.js").is_file():
        return  # MathJax from elsewhere (a CDN): nothing copied, nothing to prune
    keep = [root / k for k in MATHJAX_KEEP]
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        inside = any(path == k or k in path.parents for k in keep)
        above = any(path in k.parents for k in keep)
        if inside or above:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


#: The smallest tick label, in CSS pixels, a figure is shown with (below it digits blur on a phone).
MIN_TICK_PX = 8

ANIMATION_FIRST_FRAME = re.compile(r'frames\[0\] = "data:image/png;base64,([^"]+)"')
IMG_TAG = re.compile(r"<img\b[^>]*>")
IMG_SRC = re.compile(r'\bsrc="([^"]*)"')
IMG_STYLE = re.compile(r'\bstyle="')


def legible_width(data: bytes) -> int | None:
    """The width in CSS pixels at which a figure's tick labels show at :data:`MIN_TICK_PX`, never more
    than the PNG's own width (a figure drawn too small is not blown up: it stays too small, and
    tests/test_browser.py says so); None for a PNG without a resolution."""
    from polybook.plots import TICK_LABEL_PT, png_width_and_dpi

    width, dpi = png_width_and_dpi(data)
    if not dpi:
        return None
    tick_px = TICK_LABEL_PT * dpi / 72  # at the PNG's own size
    return min(width, math.ceil(width * MIN_TICK_PX / tick_px))


def _in_cell_output(node) -> bool:
    while node is not None:
        if isinstance(node, nodes.container) and node.get("nb_element") == "cell_code_output":
            return True
        node = node.parent
    return False


def _min_width_for_animations(app, doctree, docname):
    # The animation's <img> gets the width of its first frame's legibility limit; its frames are
    # base64 PNGs in the same output.
    for raw in doctree.findall(nodes.raw):
        text = raw.astext()
        if not ANIMATION_IMG.search(text) or not _in_cell_output(raw):
            continue
        frame = ANIMATION_FIRST_FRAME.search(text)
        if not frame:
            continue
        # the base64 text is split over lines ending in a backslash (JavaScript line continuations)
        width = legible_width(base64.b64decode(re.sub(r"[^A-Za-z0-9+/=]", "", frame.group(1))))
        if width:
            text = ANIMATION_IMG.sub(lambda m: f'{m.group(0)} style="min-width: {width}px"', text)
            raw.replace(raw[0], nodes.Text(text))


def _min_width_for_figures(app, pagename, templatename, context, doctree):
    # The HTML writer has already pointed each image node's uri at its copy (../_images/...); its
    # source is the candidate the image collector found (myst-nb's _build/jupyter_execute/...).
    body = context.get("body")
    if doctree is None or not body or "<img" not in body:
        return
    widths = {}
    for image in doctree.findall(nodes.image):
        source = (image.get("candidates") or {}).get("*")
        if not source or not source.lower().endswith(".png") or not _in_cell_output(image):
            continue
        path = Path(app.srcdir, source)
        width = legible_width(path.read_bytes()) if path.is_file() else None
        if width:
            widths[image["uri"]] = width

    def styled(match):
        tag = match.group(0)
        src = IMG_SRC.search(tag)
        width = widths.get(html.unescape(src.group(1))) if src else None
        if width is None:
            return tag
        if IMG_STYLE.search(tag):  # a width or height given in the notebook: keep it, add the floor
            return IMG_STYLE.sub(f'style="min-width: {width}px; ', tag, count=1)
        return tag.replace("<img ", f'<img style="min-width: {width}px" ', 1)

    if widths:
        context["body"] = IMG_TAG.sub(styled, body)


def setup(app):
    # MathJax (and the assets of any other extension that asks the policy) on every page, not
    # only on the pages with an equation in their body.
    app.set_html_assets_policy("always")
    app.add_js_file(None, body=MODE_SCRIPT, priority=1)
    # Late, after the themes have added their own scripts to the page.
    app.connect("html-page-context", _dedupe_scripts, priority=990)
    app.connect("html-page-context", _drop_cdn_font_awesome)
    app.connect("html-page-context", _mark_verdict_words)
    app.connect("html-page-context", _min_width_for_figures)
    app.connect("doctree-resolved", _alt_text_for_animations)
    app.connect("doctree-resolved", _min_width_for_animations)
    app.connect("build-finished", _prune_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
