"""The notebooks a Colab link opens read in Colab as the chapters read on the web.

Colab renders CommonMark and maths, none of the book's MyST markup. The Colab editions
(``colab/book/*.ipynb``) and the exercises-only notebooks (``exercises/*.ipynb``) are written by
``scripts/make_colab_editions.py`` with the markup resolved (``scripts/book_markup.py``). Here:
they are current, every notebook that a Colab link (the HTML's launch button, a chapter's note,
README) opens holds no book markup, every glued value the prose shows is in its edition, and the
editions have the chapters' code. That they run top to bottom in Colab's package versions is
checked by the Colab-runtime test (``tests/test_colab.py``), which executes the editions.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/(?P<org>[^/\s\"')]+)/(?P<repo>[^/\s\"')]+)/blob/"
                        r"(?P<branch>[^/\s\"')]+)/(?P<path>[^\s\"')#?]+\.ipynb)")


sys.path.insert(0, str(ROOT / "scripts"))
bm = importlib.import_module("book_markup")
make = importlib.import_module("make_colab_editions")
colab_runtime = importlib.import_module("colab_runtime")

BOOK = bm.Book(ROOT)
CHAPTERS = make.chapters(ROOT)  # book/superposition, ..., book/reproduce


def _nb(path: Path) -> dict:
    return json.loads(path.read_text())


def _html_is_current() -> bool:
    """Whether _build/html was built after the last change to the configuration and the chapters."""
    info = HTML / ".buildinfo"
    if not info.exists():
        return False
    sources = [ROOT / "_config.yml", ROOT / "_toc.yml", *ROOT.glob("book/*.ipynb"), *ROOT.glob("book/*.md")]
    return info.stat().st_mtime >= max(p.stat().st_mtime for p in sources)


def colab_links() -> dict[str, set[str]]:
    """{repository path: where it is linked from} of every notebook a Colab link of the book opens."""
    links: dict[str, set[str]] = {}
    repo = BOOK.base  # only to fail early if _config.yml has no GitHub repository
    assert repo
    config = (ROOT / "_config.yml").read_text()
    book_path = re.search(r"(?m)^[ \t]+path_to_book:[ \t]*\"?([^\"\s]*)\"?", config).group(1).strip("/")
    for doc in CHAPTERS:  # the launch button of each notebook page: <path_to_book>/<page>.ipynb
        links.setdefault(f"{book_path}/{doc}.ipynb".lstrip("/"), set()).add(f"launch button of {doc}")

    def scan(text: str, where: str) -> None:
        for m in COLAB_LINK.finditer(text):
            if re.search(r"/[A-Z]+\.ipynb$", m["path"]):  # README's pattern, .../exercises/CHAPTER.ipynb
                continue
            links.setdefault(m["path"], set()).add(where)

    for nb_path in sorted(ROOT.glob("book/*.ipynb")):
        for text in bm.markdown_texts(_nb(nb_path)):
            scan(text, str(nb_path.relative_to(ROOT)))
    for md in [ROOT / "README.md", *ROOT.glob("book/*.md")]:
        scan(md.read_text(), str(md.relative_to(ROOT)))
    for target in list(links):  # the notebooks the editions link to (exercises-only <-> chapter edition)
        if (ROOT / target).exists():
            for text in bm.markdown_texts(_nb(ROOT / target)):
                scan(text, target)
    if _html_is_current():
        for page in sorted(HTML.rglob("*.html")):
            scan(page.read_text(errors="replace"), str(page.relative_to(ROOT)))
    return links


# --------------------------------------------------------------------------------------------- current


def test_editions_are_current():
    # Fails when a chapter changed and its edition or exercises-only notebook was not rewritten.
    assert make.main(["--check"]) == 0, "run: python scripts/make_colab_editions.py"


def _copy_book(tmp: Path) -> Path:
    for name in ("_toc.yml", "_config.yml"):
        shutil.copy2(ROOT / name, tmp / name)
    for folder in ("book", "colab", "exercises"):
        shutil.copytree(ROOT / folder, tmp / folder, ignore=shutil.ignore_patterns("results", "__pycache__"))
    return tmp


def test_the_check_fails_on_a_stale_edition(tmp_path, capsys):
    # Fails if the check passes a copy of the book where a chapter's text, or a value it glues, changed
    # after its editions were written, or where an edition is missing.
    root = _copy_book(tmp_path)
    assert make.main(["--check"], root) == 0
    chapter = root / "book" / "collisions.ipynb"
    nb = _nb(chapter)
    cell = next(c for c in nb["cells"] if c["cell_type"] == "markdown" and "{glue:text}" in bm.source(c))
    cell["source"] = bm.source(cell).replace(" ", "  ", 1)
    chapter.write_text(bm.render(nb))
    capsys.readouterr()
    assert make.main(["--check"], root) == 1
    out = capsys.readouterr().out
    assert "stale: colab/book/collisions.ipynb" in out and "stale: exercises/collisions.ipynb" in out, out

    make.main([], root)  # current again; now change one glued value only
    assert make.main(["--check"], root) == 0
    nb = _nb(chapter)
    out_cell = next(o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"] if bm.is_glue_output(o))
    key = next(k for k in out_cell["data"])
    out_cell["data"][key] = "12345.678"
    chapter.write_text(bm.render(nb))
    capsys.readouterr()
    assert make.main(["--check"], root) == 1
    assert "stale: colab/book/collisions.ipynb" in capsys.readouterr().out

    (root / "colab" / "book" / "noise.ipynb").unlink()
    assert make.main(["--check"], root) == 1
    assert "stale: colab/book/noise.ipynb" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------- no markup


def test_no_book_markup_in_any_notebook_a_colab_link_opens():
    # Fails if any notebook that a Colab link opens (launch button, a chapter's note, README, the
    # built HTML when it is current) holds a role, directive, target or equation label, or does not exist.
    links = colab_links()
    expected = {f"colab/{d}.ipynb" for d in CHAPTERS} | {f"exercises/{p.name}" for p in ROOT.glob("book/*.ipynb")
                                                          if (ROOT / "exercises" / p.name).exists()}
    assert expected <= set(links), f"not linked: {sorted(expected - set(links))}"
    missing = sorted(p for p in links if not (ROOT / p).exists())
    assert not missing, f"Colab links open notebooks that do not exist: {missing} (from {[links[p] for p in missing]})"
    counts = {p: bm.notebook_markup(_nb(ROOT / p)) for p in sorted(links)}
    total = sum(sum(c.values()) for c in counts.values())
    html = "with" if _html_is_current() else "without (not current)"
    print(f"\nbook markup in the {len(links)} notebooks that Colab links open ({html} the built HTML's links): {total}")
    assert total == 0, {p: c for p, c in counts.items() if c}


def test_the_markup_count_finds_each_kind_in_the_chapters():
    # Fails if the count misses a kind of markup the chapters use (then a 0 above would mean nothing).
    found: dict[str, int] = {}
    for nb_path in ROOT.glob("book/*.ipynb"):
        for kind, n in bm.notebook_markup(_nb(nb_path)).items():
            found[kind] = found.get(kind, 0) + n
    for kind in ("role", "target", "equation label", "directive fence", "closing colon fence", "directive option"):
        assert found.get(kind, 0) > 0, f"no {kind} counted in the chapters: {found}"
    sample = ("{glue:text}`x` and {cite:t}`k` and `{code}` in code\n(lab)=\n$$\na\n$$ (eq)\n"
              ":::{admonition} T\n:class: tip\n\nbody\n:::\n```python\n{eq}`not-counted`\n```\n")
    assert bm.count_markup(sample) == {"role": 2, "target": 1, "equation label": 1, "directive fence": 1,
                                       "closing colon fence": 1, "directive option": 1}


def _colab_html(text: str) -> str:
    """``text`` rendered as Colab renders a text cell (CommonMark, tables, dollar maths), code and maths taken out."""
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    md = MarkdownIt("commonmark").enable("table").use(dollarmath_plugin, allow_space=True, double_inline=True)
    out = re.sub(r"<code>.*?</code>", "", md.render(text), flags=re.S)
    return re.sub(r'<(span|div) class="math[^"]*">.*?</\1>', "", out, flags=re.S)


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("colab/book/*.ipynb"),
                                                                          *ROOT.glob("exercises/*.ipynb")]))
def test_the_resolved_markdown_renders_in_a_commonmark_renderer(path):
    # Fails if what the editions write shows as raw syntax in a CommonMark renderer: a bold value or
    # a link left as ``**`` or ``](``, an escaped citation bracket with no link, a role.
    for text in bm.markdown_texts(_nb(ROOT / path)):
        shown = _colab_html(text)
        for pattern in (r"\*\*", r"\]\(", r"\{[\w:]+\}", r"\\\["):
            m = re.search(pattern, shown)
            assert m is None, f"{path}: {shown[max(m.start() - 80, 0):m.end() + 80]!r}"


# --------------------------------------------------------------------------------------------- glued values


@pytest.mark.parametrize("doc", CHAPTERS)
def test_every_glued_value_the_prose_shows_is_in_its_editions(doc):
    # Fails if a number the chapter's text shows through {glue:text} is missing from the same cell of
    # its Colab edition or of its exercises-only notebook, or no committed output glues it.
    chapter = _nb(ROOT / f"{doc}.ipynb")
    assert make.missing_glued_values(chapter, _nb(make.edition_path(doc)), doc, BOOK) == []
    exercises = ROOT / "exercises" / f"{Path(doc).name}.ipynb"
    if exercises.exists():
        assert make.missing_glued_values(chapter, _nb(exercises), doc, BOOK) == []


def test_a_missing_glued_value_is_found():
    # Fails if an edition that lost a value, or a chapter whose prose shows a value no output glues,
    # passes the check.
    doc = "book/collisions"
    chapter = _nb(ROOT / f"{doc}.ipynb")
    ed = make.edition(chapter, doc, BOOK)
    glued = bm.glued_values(chapter)
    i, cell = next((i, c) for i, c in enumerate(chapter["cells"]) if c["cell_type"] == "markdown"
                   and "{glue:text}`bday_23`" in bm.source(c))
    value = bm.format_glued(glued["bday_23"])
    ed_cell = next(c for c in ed["cells"] if c["id"] == cell["id"])
    ed_cell["source"] = bm.source(ed_cell).replace(value, "?")
    problems = make.missing_glued_values(chapter, ed, doc, BOOK)
    assert len(problems) == 1 and "bday_23" in problems[0] and problems[0].startswith(f"cell {i}:"), problems

    for c in chapter["cells"]:  # the glue output taken away: the edition cannot be written, the check says why
        if c["cell_type"] == "code":
            c["outputs"] = [o for o in c["outputs"] if o.get("metadata", {}).get("scrapbook", {}).get("name") != "bday_23"]
    with pytest.raises(ValueError, match="glued value 'bday_23' is not in the committed outputs"):
        make.edition(chapter, doc, BOOK)
    assert any("'bday_23' is shown in the text but no committed output glues it" in p
               for p in make.missing_glued_values(chapter, ed, doc, BOOK))


# --------------------------------------------------------------------------------------------- the same code


@pytest.mark.parametrize("doc", CHAPTERS)
def test_an_edition_has_its_chapters_cells_and_code(doc):
    # Fails if an edition's cells are not the chapter's one for one with the same code (the Colab run
    # compares the executed edition's outputs with the chapter's cell by cell), or it shows a glue record.
    chapter, ed = _nb(ROOT / f"{doc}.ipynb"), _nb(make.edition_path(doc))
    assert [(c["cell_type"], c.get("id")) for c in ed["cells"]] == [(c["cell_type"], c.get("id")) for c in chapter["cells"]]
    for a, b in zip(chapter["cells"], ed["cells"]):
        if a["cell_type"] == "code":
            assert bm.source(a) == bm.source(b)
            assert not any(bm.is_glue_output(o) for o in b["outputs"])
    assert "numbers in the text" in bm.source(next(c for c in ed["cells"] if c["cell_type"] == "markdown"))


def _bound_names(code: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _used_names(code: str) -> set[str]:
    return {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _python(cell: dict) -> str:
    return "\n".join(l for l in bm.source(cell).splitlines() if not l.lstrip().startswith(("%", "!")))


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "exercises").glob("*.ipynb")))
def test_an_exercises_only_notebook_runs_as_its_chapter_does(name):
    # The Colab run executes the chapter's edition whole, and of the exercises-only notebook only the
    # setup, exercise and check cells. The rest of it runs as the chapter does if its code cells are the
    # chapter's less the solutions, and no other cell uses a name a solution defines.
    # Fails if that is not so (a later cell calling the reader's unsolved function would raise in Colab).
    chapter, exercises = _nb(ROOT / "book" / name), _nb(ROOT / "exercises" / name)
    want = [bm.source(c) for c in chapter["cells"] if c["cell_type"] == "code" and "solution" not in bm.tags(c)]
    assert [bm.source(c) for c in exercises["cells"] if c["cell_type"] == "code"] == want
    solved = set().union(*[_bound_names(_python(c)) for c in chapter["cells"] if "solution" in bm.tags(c)])
    bound: set[str] = set()  # what the cells so far (and this one) define, exercise cells left out
    for c in exercises["cells"]:
        if c["cell_type"] != "code" or {"exercise", "exercise-check"} & set(bm.tags(c)):
            continue
        bound |= _bound_names(_python(c))
        used = (_used_names(_python(c)) & solved) - bound
        assert not used, f"{name}: a cell uses {sorted(used)}, which only a solution defines: {bm.source(c)[:200]!r}"


def test_the_colab_run_executes_the_editions():
    # Fails if the Colab-runtime script would execute something else than the editions, or its check of
    # an exercises-only run passes a check that printed something else than "not solved yet".
    for doc in CHAPTERS:
        assert colab_runtime.edition_of(ROOT / f"{doc}.ipynb") == make.edition_path(doc)
    source = (ROOT / "scripts" / "colab_runtime.py").read_text()
    assert "edition_of(nb_path), copy)" in source and "make_colab_editions.py\", \"--check\"" in source
    nb = _nb(ROOT / "exercises" / "collisions.ipynb")
    kept = colab_runtime.exercise_cells(nb["cells"])
    assert [c for c in kept if "exercise-check" in bm.tags(c)] and not any("solution" in bm.tags(c) for c in kept)


# --------------------------------------------------------------------------------------------- as the HTML


def test_resolving_each_kind_of_markup():
    # Fails if a kind of markup is resolved otherwise than the issue of the HTML: values, author-year
    # citations linking to the paper, links to the published pages, equation numbers, quotes for admonitions.
    text = ("(birthday)=\n## Title\n\n{glue:text}`v` and {glue:text}`v:.1f`; {cite}`lecomte2023polysemanticity`; "
            "{cite:t}`elhage2022superposition`; {doc}`noise`; {doc}`the noise chapter <noise>`; "
            "{ref}`which-neuron-wins`; {eq}`exact`, {eq}`eq-noise-loss`.\n\n$$\nx = 1\n$$ (exact)\n\n"
            ":::{admonition} Exercise: one\n:class: tip\n\nBody $a$.\n\nMore.\n:::\n")
    out = bm.resolve(text, BOOK, "book/collisions", {"v": "0.6875"})
    base = BOOK.base
    n_exact, n_loss = BOOK.equations["exact"][1], BOOK.equations["eq-noise-loss"][1]
    assert out == (
        f"## Title\n\n**0.6875** and **0.7**; \\[[Lecomte et al., 2023](https://arxiv.org/abs/2312.03096)\\]; "
        f"Elhage et al. \\[[2022](https://transformer-circuits.pub/2022/toy_model/index.html)\\]; "
        f"[{BOOK.titles['book/noise']}]({base}book/noise.html); [the noise chapter]({base}book/noise.html); "
        f"[{BOOK.labels['which-neuron-wins'][1]}]({base}{BOOK.labels['which-neuron-wins'][0]}.html#which-neuron-wins); ({n_exact}), "
        f"[({n_loss})]({base}book/noise.html#equation-eq-noise-loss).\n\n$$\nx = 1 \\tag{{{n_exact}}}\n$$\n\n"
        f"> **Exercise: one**\n>\n> Body $a$.\n>\n> More.\n"), out
    assert base == "https://polybook.github.io/polybook/"
    with pytest.raises(ValueError, match="no Colab form"):
        bm.resolve("{unknownrole}`x`", BOOK, "book/collisions", {})
    with pytest.raises(ValueError, match="not a labelled equation"):
        bm.resolve("{eq}`nope`", BOOK, "book/collisions", {})


@pytest.mark.skipif(not _html_is_current(), reason="_build/html is missing or older than the sources")
def test_numbers_and_links_are_the_htmls():
    # Fails if an equation number differs from the one the built HTML shows, or a link of an edition to
    # the HTML book names a page or an anchor that the built HTML lacks.
    for doc in BOOK.documents:
        page = HTML / f"{doc}.html"
        shown = [int(n) for n in re.findall(r'class="eqno">\((\d+)\)', page.read_text())]
        assert shown == sorted(n for d, n in BOOK.equations.values() if d == doc), doc
    for path in [*ROOT.glob("colab/book/*.ipynb"), *ROOT.glob("exercises/*.ipynb")]:
        for text in bm.markdown_texts(_nb(path)):
            for page, anchor in re.findall(re.escape(BOOK.base) + r"([^)#\s]+\.html)(?:#([^)\s]+))?", text):
                assert (HTML / page).exists(), f"{path.name}: {page}"
                if anchor:
                    assert f'id="{anchor}"' in (HTML / page).read_text(), f"{path.name}: {page}#{anchor}"
