"""The book's MyST markup turned into the Markdown that Colab renders; shared by the scripts that
write the notebooks a Colab link opens (``make_colab_editions.py``, ``make_exercises.py``).

Colab renders CommonMark with tables and ``$...$`` / ``$$...$$`` maths, nothing of MyST. So:

- ``{glue:text}`key` `` (also ``doc.ipynb::key`` and ``key:format``) becomes the value that the
  committed run glued, formatted as myst-nb formats it, in bold as the HTML shows it;
- ``{cite}`` / ``{cite:t}`` become author-year text linking to the paper (from ``book/references.bib``),
  as the HTML writes them: "[Lecomte et al., 2023]" and "Elhage et al. [2022]";
- ``{doc}`` / ``{ref}`` become links to the published HTML page and anchor, titled as the HTML
  titles them (the explicit title, else the page's or the section's heading);
- ``{eq}`` becomes the equation's number as the HTML shows it, ``(8)``: the book numbers its
  labelled equations in one sequence, in ``_toc.yml`` order; a labelled ``$$ ... $$ (label)``
  keeps its number as ``\\tag{8}``;
- ``:::{admonition} Title`` fences become block quotes with a bold title; ``(label)=`` targets
  disappear.

``count_markup`` counts what is left; every notebook a Colab link opens must count 0.
"""

from __future__ import annotations

import json
import re
import sys
from ast import literal_eval
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------------- patterns

ROLE = re.compile(r"\{(?P<name>[\w:.-]+)\}`(?P<body>[^`]*)`")
TARGET = re.compile(r"^\((?P<label>[^()\s]+)\)=[ \t]*\n?", re.M)
# ``$$ ... $$ (label)``: a display equation that the book numbers.
LABELLED_EQ = re.compile(r"\$\$(?P<body>(?:(?!\$\$).)+?)\$\$[ \t]*\((?P<label>[^()\s]+)\)", re.S)
# ```{math}\n:label: x\n...``` (not used by the book today, but numbered like the above if it is).
MATH_DIRECTIVE_LABEL = re.compile(r"^(`{3,}|:{3,})\{math\}[^\n]*\n(?:[ \t]*:[\w-]+:[^\n]*\n)*?[ \t]*:label:[ \t]*(?P<label>\S+)", re.M)
ADMONITION = re.compile(r"^(?P<fence>:{3,}|`{3,})\{(?P<kind>[\w-]+)\}[ \t]*(?P<title>[^\n]*)\n"
                        r"(?P<options>(?:[ \t]*:[\w-]+:[^\n]*\n)*)(?P<body>.*?)^(?P=fence)[ \t]*$", re.S | re.M)
ADMONITION_TITLES = {"note": "Note", "tip": "Tip", "warning": "Warning", "important": "Important",
                     "caution": "Caution", "attention": "Attention", "danger": "Danger", "error": "Error",
                     "hint": "Hint", "seealso": "See also"}
HEADING = re.compile(r"^(?P<level>#{1,6})[ \t]+(?P<title>.+?)[ \t]*#*[ \t]*$", re.M)

#: Every piece of MyST markup that Colab would show as raw text (for ``count_markup``).
MARKUP = {
    "role": ROLE,
    "target": TARGET,
    "equation label": re.compile(r"\$\$[ \t]*\([^()\s]+\)"),
    "directive fence": re.compile(r"^[ \t>]*(?::{3,}|`{3,})[ \t]*\{[\w:-]+\}", re.M),
    "closing colon fence": re.compile(r"^[ \t>]*:{3,}[ \t]*$", re.M),
    "directive option": re.compile(r"^[ \t>]*:(?:class|label|name|dropdown|open|align|width):", re.M),
    "substitution": re.compile(r"\{\{[^{}\n]+\}\}"),
    "myst comment": re.compile(r"^%[^\n]*$", re.M),
    "block break": re.compile(r"^\+\+\+[^\n]*$", re.M),
}
FENCED_CODE = re.compile(r"^(?P<f>`{3,}|~{3,})(?!\s*\{)[^\n]*\n.*?^(?P=f)[ \t]*$", re.S | re.M)


def count_markup(text: str) -> dict[str, int]:
    """How many pieces of each kind of MyST markup ``text`` holds (code blocks and spans left out)."""
    text = FENCED_CODE.sub("", text)
    # code spans go, roles (a code span right after ``{name}``) stay: read left to right
    text = re.sub(r"(\{[\w:.-]+\})?`[^`\n]*`", lambda m: m.group(0) if m.group(1) else "", text)
    counts = {}
    for kind, pattern in MARKUP.items():
        n = len(pattern.findall(text))
        if n:
            counts[kind] = n
    return counts


def notebook_markup(nb: dict) -> dict[str, int]:
    """``count_markup`` over a notebook's Markdown cells and its Markdown outputs, summed."""
    total: dict[str, int] = {}
    for text in markdown_texts(nb):
        for kind, n in count_markup(text).items():
            total[kind] = total.get(kind, 0) + n
    return total


def markdown_texts(nb: dict) -> list[str]:
    """Every Markdown text of a notebook that Colab renders: Markdown cells and text/markdown outputs."""
    out = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            out.append(source(cell))
        for o in cell.get("outputs", []):
            if "text/markdown" in o.get("data", {}):
                out.append(joined(o["data"]["text/markdown"]))
    return out


# --------------------------------------------------------------------------------------------- notebooks


def joined(value) -> str:
    return "".join(value) if isinstance(value, list) else value


def source(cell: dict) -> str:
    return joined(cell["source"])


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def render(nb: dict) -> str:
    """A notebook as the JSON the scripts write (and compare when checking)."""
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def glued_values(nb: dict) -> dict[str, str]:
    """{name: text/plain} of every value a notebook's committed run glued (myst-nb's hidden outputs)."""
    values = {}
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook")
            if meta and "name" in meta:
                prefix = meta.get("mime_prefix", "application/papermill.record/")
                data = o.get("data", {})
                if prefix + "text/plain" in data:
                    values[meta["name"]] = joined(data[prefix + "text/plain"])
    return values


def is_glue_output(output: dict) -> bool:
    """An output that only records a glued value (nothing a reader sees, in the HTML or anywhere)."""
    data = output.get("data", {})
    return bool(data) and "scrapbook" in output.get("metadata", {}) and all(
        k.startswith(output["metadata"]["scrapbook"].get("mime_prefix", "application/papermill.record/")) for k in data)


def format_glued(text: str, spec: str = "") -> str:
    """A glued text/plain value as ``{glue:text}`` shows it (myst-nb's format_plain_text)."""
    try:
        value = literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    if spec == "":
        return str(value)
    kind = spec[-1]
    if kind == "s":
        value = str(value)
    elif kind in "bcdoxX":
        value = int(value)
    elif kind in "eEfFgGn%":
        value = float(value)
    return format(value, spec)


def write_or_check(targets: dict[Path, str], check: bool, command: str, root: Path = ROOT) -> int:
    """Write each file whose text differs (or, with ``check``, only name it); exit status 1 if checking found any."""
    stale = []
    for target, text in targets.items():
        if target.exists() and target.read_text() == text:
            continue
        stale.append(target)
        if not check:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    for path in stale:
        print(f"{'stale' if check else 'wrote'}: {path.relative_to(root)}")
    if check and stale:
        print(f"run: {command}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------------------------- the book


def toc_documents(root: Path = ROOT) -> list[str]:
    """The book's documents (``book/intro``, ``book/superposition``, ...) in ``_toc.yml`` order."""
    toc = (root / "_toc.yml").read_text()
    return re.findall(r"^\s*(?:-\s*)?(?:root|file):\s*(\S+)", toc, re.M)


def html_base(root: Path = ROOT) -> str:
    """Where the HTML book is published: the GitHub Pages site of ``repository: url:`` in ``_config.yml``."""
    config = (root / "_config.yml").read_text()
    m = re.search(r"(?m)^repository:\s*\n(?:[ \t]+.*\n)*?[ \t]+url:[ \t]*https://github\.com/([^/\s]+)/([^/\s]+?)/?$", config)
    if not m:
        raise SystemExit("no GitHub repository url in _config.yml")
    return f"https://{m.group(1).lower()}.github.io/{m.group(2)}/"


def colab_url(path: str, root: Path = ROOT) -> str:
    """The Colab address of a notebook of the repository (``path`` relative to its root), branch as configured."""
    config = (root / "_config.yml").read_text()
    m = re.search(r"(?m)^repository:\s*\n(?:[ \t]+.*\n)*?[ \t]+url:[ \t]*https://github\.com/([^/\s]+)/([^/\s]+?)/?$", config)
    branch = re.search(r"(?m)^repository:\s*\n(?:[ \t]+.*\n)*?[ \t]+branch:[ \t]*(\S+)", config)
    return (f"https://colab.research.google.com/github/{m.group(1)}/{m.group(2)}/blob/"
            f"{branch.group(1) if branch else 'main'}/{path}")


def document_texts(root: Path, doc: str) -> list[str]:
    """A document's Markdown texts in reading order: a notebook's Markdown cells, or a .md file whole."""
    nb_path = root / f"{doc}.ipynb"
    if nb_path.exists():
        return [source(c) for c in json.loads(nb_path.read_text())["cells"] if c["cell_type"] == "markdown"]
    md_path = root / f"{doc}.md"
    return [md_path.read_text()] if md_path.exists() else []


def parse_bib(text: str) -> dict[str, dict[str, str]]:
    """A BibTeX file as {key: {field: value}} (the simple form references.bib is written in)."""
    entries = {}
    for m in re.finditer(r"@\w+\{([^,\s]+),(.*?)\n\}", text, re.S):
        fields = {f.lower(): v.strip() for f, v in re.findall(r"(\w+)\s*=\s*\{((?:[^{}]|\{[^{}]*\})*)\}", m.group(2))}
        entries[m.group(1)] = fields
    return entries


def author_year(entry: dict[str, str]) -> tuple[str, str]:
    """("Lecomte et al.", "2023") as the book's author-year style writes an entry."""
    names = [a.strip() for a in re.split(r"\s+and\s+", entry.get("author", "")) if a.strip()]
    last = [n.split(",")[0].strip() if "," in n else n.split()[-1] for n in names]
    last = [re.sub(r"[{}]", "", n) for n in last]
    who = last[0] + " et al." if len(last) > 2 else " and ".join(last)
    return who, entry.get("year", "n.d.")


@dataclass
class Book:
    """What resolving a document's markup needs to know about the whole book."""

    root: Path = ROOT
    glue_cache: dict[str, dict[str, str]] = field(default_factory=dict)

    @cached_property
    def documents(self) -> list[str]:
        return toc_documents(self.root)

    @cached_property
    def base(self) -> str:
        return html_base(self.root)

    @cached_property
    def bib(self) -> dict[str, dict[str, str]]:
        return parse_bib((self.root / "book" / "references.bib").read_text())

    @cached_property
    def equations(self) -> dict[str, tuple[str, int]]:
        """{label: (document, number)}: labelled equations numbered in one sequence in toc order."""
        found, number = {}, 0
        for doc in self.documents:
            for text in document_texts(self.root, doc):
                labels = [(m.start(), m.group("label")) for m in LABELLED_EQ.finditer(text)]
                labels += [(m.start(), m.group("label")) for m in MATH_DIRECTIVE_LABEL.finditer(text)]
                for _, label in sorted(labels):
                    number += 1
                    found[label] = (doc, number)
        return found

    @cached_property
    def titles(self) -> dict[str, str]:
        """{document: its title (first level-1 heading)}."""
        out = {}
        for doc in self.documents:
            for text in document_texts(self.root, doc):
                m = re.search(r"^# (.+?)\s*$", text, re.M)
                if m:
                    out[doc] = m.group(1)
                    break
        return out

    @cached_property
    def labels(self) -> dict[str, tuple[str, str]]:
        """{label: (document, section title)} for every ``(label)=`` target followed by a heading."""
        out = {}
        for doc in self.documents:
            for text in document_texts(self.root, doc):
                for m in TARGET.finditer(text):
                    heading = HEADING.match(text[m.end():].lstrip("\n"))
                    if heading is None:
                        raise ValueError(f"{doc}: target ({m['label']})= is not followed by a heading")
                    out[m["label"]] = (doc, heading["title"])
        return out

    def glued(self, doc: str) -> dict[str, str]:
        if doc not in self.glue_cache:
            self.glue_cache[doc] = glued_values(json.loads((self.root / f"{doc}.ipynb").read_text()))
        return self.glue_cache[doc]

    def page(self, doc: str, anchor: str = "") -> str:
        return f"{self.base}{doc}.html" + (f"#{anchor}" if anchor else "")


def _resolve_doc(current: str, target: str) -> str:
    if target.startswith("/"):
        return target.lstrip("/")
    parts = current.split("/")[:-1]
    for piece in target.split("/"):
        if piece == "..":
            parts.pop()
        elif piece != ".":
            parts.append(piece)
    return "/".join(parts)


def _title_and_target(body: str) -> tuple[str | None, str]:
    m = re.fullmatch(r"(?P<title>.*?)\s*<(?P<target>[^<>]+)>", body, re.S)
    return (m["title"], m["target"]) if m else (None, body.strip())


def resolve(text: str, book: Book, doc: str, glued: dict[str, str] | None = None) -> str:
    """``text`` (Markdown of document ``doc``) with every piece of book markup resolved for Colab."""
    glued = book.glued(doc) if glued is None else glued
    problems = []

    def role(m: re.Match) -> str:
        name, body = m["name"], m["body"]
        if name in ("glue:text", "glue"):
            ref_doc, key = (body.split("::", 1) if "::" in body else (None, body))
            key, _, spec = key.partition(":")
            values = glued if ref_doc is None else book.glued(_resolve_doc(doc, ref_doc).removesuffix(".ipynb"))
            if key not in values:
                problems.append(f"glued value {key!r} is not in the committed outputs")
                return m.group(0)
            return f"**{format_glued(values[key], spec)}**"  # bold, as the HTML shows a glued value
        if name in ("cite", "cite:p", "cite:t"):
            parts = []
            for key in [k.strip() for k in body.split(",")]:
                if key not in book.bib:
                    problems.append(f"citation {key!r} is not in references.bib")
                    return m.group(0)
                who, year = author_year(book.bib[key])
                url = book.bib[key].get("url") or (f"https://doi.org/{book.bib[key]['doi']}" if "doi" in book.bib[key] else "")
                # as the HTML writes them: "Elhage et al. [2022]" and "[Lecomte et al., 2023]"
                label = year if name == "cite:t" else f"{who}, {year}"
                linked = f"[{label}]({url})" if url else label
                parts.append(f"{who} \\[{linked}\\]" if name == "cite:t" else linked)
            return ", ".join(parts) if name == "cite:t" else "\\[" + "; ".join(parts) + "\\]"
        if name == "doc":
            title, target = _title_and_target(body)
            target_doc = _resolve_doc(doc, target)
            if target_doc not in book.titles:
                problems.append(f"{{doc}} target {target!r} is not a page of the book")
                return m.group(0)
            return f"[{title or book.titles[target_doc]}]({book.page(target_doc)})"
        if name == "ref":
            title, label = _title_and_target(body)
            if label not in book.labels:
                problems.append(f"{{ref}} label {label!r} is not a section target of the book")
                return m.group(0)
            target_doc, heading = book.labels[label]
            return f"[{title or heading}]({book.page(target_doc, label)})"
        if name == "eq":
            if body not in book.equations:
                problems.append(f"{{eq}} label {body!r} is not a labelled equation of the book")
                return m.group(0)
            target_doc, number = book.equations[body]
            return f"({number})" if target_doc == doc else f"[({number})]({book.page(target_doc, 'equation-' + body)})"
        if name == "math":
            return f"${body}$"
        problems.append(f"role {{{name}}} has no Colab form")
        return m.group(0)

    out = ROLE.sub(role, text)

    def equation(m: re.Match) -> str:
        number = book.equations[m["label"]][1]
        body = m["body"].rstrip()
        return f"$${body} \\tag{{{number}}}\n$$" if "\n" in m["body"] else f"$${body} \\tag{{{number}}}$$"

    out = LABELLED_EQ.sub(equation, out)
    out = TARGET.sub("", out)

    def admonition(m: re.Match) -> str:
        kind, title = m["kind"], m["title"].strip()
        if kind != "admonition":
            if kind not in ADMONITION_TITLES:
                problems.append(f"directive {{{kind}}} has no Colab form")
                return m.group(0)
            title = title or ADMONITION_TITLES[kind]
        body = m["body"].strip("\n")
        lines = [f"**{title}**", ""] + body.splitlines()
        return "\n".join(("> " + line).rstrip() for line in lines)

    while True:  # innermost first, so nested fences become nested quotes
        new = ADMONITION.sub(admonition, out)
        if new == out:
            break
        out = new
    if problems:
        raise ValueError(f"{doc}: " + "; ".join(dict.fromkeys(problems)))
    return out
