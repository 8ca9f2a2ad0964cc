"""Write the exercises-only notebooks: each chapter with its solutions removed, for Colab.

    python scripts/make_exercises.py           # (re)write exercises/<chapter>.ipynb
    python scripts/make_exercises.py --check   # exit 1, naming them, if any is missing or stale

A chapter's exercise is four cells: the statement (markdown, tag ``exercise``), the function to
write (code, ``exercise``), the solution (code, ``solution``) and the check (code,
``exercise-check``). The exercises-only notebook drops every ``solution`` cell and every output,
replaces the chapter's note on its exercises (tag ``exercises-link``) with one pointing back to
the chapter's Colab edition, and resolves the book's markup (glued numbers, citations,
cross-references, admonitions, ...) into the Markdown Colab renders, as the Colab editions do
(``scripts/book_markup.py``; ``scripts/make_colab_editions.py`` runs this script too). Everything
else, the setup cell included, stays, so the notebook runs top to bottom; an unsolved exercise's
check prints "not solved yet".
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import book_markup as bm  # noqa: E402
from book_markup import render, tags  # noqa: E402,F401  (tests use make_exercises.tags)

ROOT = bm.ROOT
OUT = ROOT / "exercises"
COMMAND = "python scripts/make_exercises.py"


def chapters_with_exercises(root: Path = ROOT) -> list[Path]:
    """The chapter notebooks that pose exercises, in file-name order."""
    return [p for p in sorted((root / "book").glob("*.ipynb"))
            if any("exercise-check" in tags(c) for c in json.loads(p.read_text())["cells"])]


def exercises_only(nb: dict, chapter: str, book: bm.Book | None = None) -> dict:
    """``nb`` without solutions or outputs, with a note on where the solutions are, its markup resolved."""
    book = book or bm.Book(ROOT)
    doc = f"book/{chapter}"
    glued = bm.glued_values(nb)
    title = next(line[2:].strip() for line in bm.source(nb["cells"][0]).splitlines() if line.startswith("# "))
    note = (f"**Exercises only.** This is the chapter *{title}* with the solutions of its exercises removed. "
            f"Run the cells in order; each check prints \"not solved yet\" until you write its function, then a pass "
            f"or the first case where your function and polybook's disagree. The full chapter, solutions included, "
            f"is [here in Colab]({bm.colab_url(f'colab/{doc}.ipynb', book.root)}) and [in the HTML book]({book.page(doc)}); "
            f"the numbers in the text are from the book's own run.\n")
    cells = []
    for cell in nb["cells"]:
        if "solution" in tags(cell):
            continue
        cell = copy.deepcopy(cell)
        cell["metadata"].pop("execution", None)
        if "exercises-link" in tags(cell):
            cell["source"] = note.splitlines(keepends=True)
        elif cell["cell_type"] == "markdown":
            cell["source"] = bm.resolve(bm.source(cell), book, doc, glued).splitlines(keepends=True)
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cells.append(cell)
    out = copy.deepcopy(nb)
    out["cells"] = cells
    return out


def targets(book: bm.Book | None = None) -> dict[Path, str]:
    """{path: text} of every exercises-only notebook."""
    book = book or bm.Book(ROOT)
    return {book.root / "exercises" / p.name: render(exercises_only(json.loads(p.read_text()), p.stem, book))
            for p in chapters_with_exercises(book.root)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report missing or stale notebooks")
    args = parser.parse_args(argv)
    try:
        found = targets()
    except ValueError as exc:  # markup with no Colab form, or a value the committed outputs lack
        print(f"cannot write the exercises-only notebooks: {exc}", file=sys.stderr)
        return 1
    return bm.write_or_check(found, args.check, COMMAND)


if __name__ == "__main__":
    sys.exit(main())
