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
- A verdict word pasted into a page (``{glue:text}`` of a ``verdict_*_word``) gets a class naming
  it, ``verdict-word verdict-holds`` and so on, so the stylesheet can mark and colour it: the
  verdict table is scanned by its words.
"""

from __future__ import annotations

import html
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


def setup(app):
    # MathJax (and the assets of any other extension that asks the policy) on every page, not
    # only on the pages with an equation in their body.
    app.set_html_assets_policy("always")
    app.add_js_file(None, body=MODE_SCRIPT, priority=1)
    # Late, after the themes have added their own scripts to the page.
    app.connect("html-page-context", _dedupe_scripts, priority=990)
    app.connect("html-page-context", _drop_cdn_font_awesome)
    app.connect("html-page-context", _mark_verdict_words)
    app.connect("doctree-resolved", _alt_text_for_animations)
    app.connect("build-finished", _prune_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
