"""Write the Colab editions: every notebook a Colab link opens, with the book's markup resolved.

    python scripts/make_colab_editions.py           # (re)write colab/book/*.ipynb and exercises/*.ipynb
    python scripts/make_colab_editions.py --check   # exit 1, naming them, if any is missing or stale

Colab shows a notebook's Markdown as CommonMark with maths, so the book's MyST markup (glued
numbers, citations, cross-references, equation labels, admonitions, targets) would be raw text
there. ``scripts/book_markup.py`` resolves it; this script applies it to

- each notebook of the book (``_toc.yml``), written to ``colab/<path>``: the same cells, code
  and outputs as the chapter, with every Markdown cell and Markdown output resolved, a note under
  the title (the page in the HTML book; the numbers in the text are the book's run, the reader's
  run prints its own), and the outputs that only record a glued value left out. The HTML's
  launch button opens these (``path_to_book: colab`` in ``_config.yml``);
- the exercises-only notebooks, ``exercises/*.ipynb``, which ``scripts/make_exercises.py`` writes
  (run here too, so one command writes every notebook a Colab link opens).

``tests/test_colab_editions.py`` checks that they are current, carry no markup and every glued
value; ``scripts/colab_runtime.py`` executes the editions (not the chapters) in Colab's versions.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import book_markup as bm  # noqa: E402
import make_exercises  # noqa: E402

ROOT = bm.ROOT
OUT = ROOT / "colab"
COMMAND = "python scripts/make_colab_editions.py"


def edition_path(doc: str, root: Path = ROOT) -> Path:
    """Where the Colab edition of document ``doc`` (``book/noise``) is written."""
    return root / "colab" / f"{doc}.ipynb"


def chapters(root: Path = ROOT) -> list[str]:
    """The book's notebooks (documents), in ``_toc.yml`` order."""
    return [d for d in bm.toc_documents(root) if (root / f"{d}.ipynb").exists()]


def note(book: bm.Book, doc: str) -> str:
    return (f"> *The Colab edition of [this chapter of the polybook]({book.page(doc)}). The numbers in the text "
            f"are those of the book's own run; when you run the cells, they print your run's.*\n")


def edition(nb: dict, doc: str, book: bm.Book) -> dict:
    """The Colab edition of notebook ``nb`` (document ``doc``)."""
    glued = bm.glued_values(nb)
    out = copy.deepcopy(nb)
    first = True
    for cell in out["cells"]:
        if cell["cell_type"] == "markdown":
            text = bm.resolve(bm.source(cell), book, doc, glued)
            if first:
                text = text.rstrip("\n") + "\n\n" + note(book, doc)
                first = False
            cell["source"] = text.splitlines(keepends=True)
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if "text/markdown" in data:
                data["text/markdown"] = bm.resolve(bm.joined(data["text/markdown"]), book, doc, glued).splitlines(keepends=True)
        if cell["cell_type"] == "code":
            cell["outputs"] = [o for o in cell["outputs"] if not bm.is_glue_output(o)]
    return out


def editions(root: Path = ROOT, book: bm.Book | None = None) -> dict[Path, str]:
    """{path: text} of every chapter's edition."""
    book = book or bm.Book(root)
    return {edition_path(doc, root): bm.render(edition(json.loads((root / f"{doc}.ipynb").read_text()), doc, book))
            for doc in chapters(root)}


def missing_glued_values(chapter: dict, ed: dict, doc: str, book: bm.Book) -> list[str]:
    """Each glued value that the chapter's prose shows and its edition's same cell does not.

    Independent of how ``edition`` writes a cell: it counts, per Markdown cell, how often each
    value is shown in the chapter (its ``{glue:text}`` roles) and how often the edition's cell
    holds that text.
    """
    glued, problems = bm.glued_values(chapter), []
    by_id = {c.get("id"): c for c in ed["cells"]}
    for i, cell in enumerate(chapter["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        shown: dict[str, list[str]] = {}
        for m in bm.ROLE.finditer(bm.source(cell)):
            if m["name"] not in ("glue:text", "glue"):
                continue
            ref_doc, key = m["body"].split("::", 1) if "::" in m["body"] else (None, m["body"])
            key, _, spec = key.partition(":")
            values = glued if ref_doc is None else book.glued(bm._resolve_doc(doc, ref_doc).removesuffix(".ipynb"))
            if key not in values:
                problems.append(f"cell {i}: {key!r} is shown in the text but no committed output glues it")
                continue
            shown.setdefault(bm.format_glued(values[key], spec), []).append(key)
        other = by_id.get(cell.get("id"))
        text = bm.source(other) if other is not None and other["cell_type"] == "markdown" else ""
        for value, keys in shown.items():
            if text.count(value) < len(keys):
                problems.append(f"cell {i}: {', '.join(sorted(set(keys)))} = {value!r} shown {len(keys)}x in the chapter, "
                                f"{text.count(value)}x in the edition")
    return problems


def targets(root: Path = ROOT) -> dict[Path, str]:
    """{path: text} of every notebook a Colab link opens: the editions and the exercises-only notebooks."""
    book = bm.Book(root)
    return editions(root, book) | make_exercises.targets(book)


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report missing or stale notebooks")
    args = parser.parse_args(argv)
    try:
        found = targets(root)
    except ValueError as exc:  # markup with no Colab form, or a value the committed outputs lack
        print(f"cannot write the Colab editions: {exc}", file=sys.stderr)
        return 1
    status = bm.write_or_check(found, args.check, COMMAND, root)
    left = {path: bm.notebook_markup(json.loads(text)) for path, text in found.items()}
    print(f"book markup left in the {len(found)} notebooks: {sum(sum(c.values()) for c in left.values())}")
    return status


if __name__ == "__main__":
    sys.exit(main())
