"""Write the exercises-only notebooks: each chapter with its solutions removed, for Colab.

    python scripts/make_exercises.py           # (re)write exercises/<chapter>.ipynb
    python scripts/make_exercises.py --check   # exit 1, naming them, if any is missing or stale

A chapter's exercise is four cells: the statement (markdown, tag ``exercise``), the function to
write (code, ``exercise``), the solution (code, ``solution``) and the check (code,
``exercise-check``). The exercises-only notebook drops every ``solution`` cell and every output,
replaces the chapter's note on its exercises (tag ``exercises-link``) with one pointing back to
the chapter, and writes MyST admonitions as plain headings, which Colab renders. Everything else,
the setup cell included, stays, so the notebook runs top to bottom; an unsolved exercise's check
prints "not solved yet".
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "exercises"
CHAPTER_URL = "https://colab.research.google.com/github/polybook/polybook/blob/main/book/{}.ipynb"
ADMONITION = re.compile(r"^:::\{admonition\} (?P<title>[^\n]*)\n(?::class: [^\n]*\n)?\n?(?P<body>.*?)\n?:::\s*$", re.S)


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def chapters_with_exercises() -> list[Path]:
    """The chapter notebooks that pose exercises, in file-name order."""
    return [p for p in sorted((ROOT / "book").glob("*.ipynb"))
            if any("exercise-check" in tags(c) for c in json.loads(p.read_text())["cells"])]


def plain_markdown(text: str) -> str:
    """A MyST admonition as a level-3 heading and its body; other text unchanged."""
    match = ADMONITION.match(text.strip("\n"))
    if not match:
        return text
    return f"### {match['title']}\n\n{match['body'].strip()}\n"


def exercises_only(nb: dict, chapter: str) -> dict:
    """``nb`` without solutions or outputs, with a note on where the solutions are."""
    title = next(line[2:].strip() for line in "".join(nb["cells"][0]["source"]).splitlines() if line.startswith("# "))
    note = (f"**Exercises only.** This is the chapter *{title}* with the solutions of its exercises removed. "
            f"Run the cells in order; each check prints \"not solved yet\" until you write its function, then a pass "
            f"or the first case where your function and polybook's disagree. The full chapter, solutions included, "
            f"is [here in Colab]({CHAPTER_URL.format(chapter)}).\n")
    cells = []
    for cell in nb["cells"]:
        if "solution" in tags(cell):
            continue
        cell = copy.deepcopy(cell)
        cell["metadata"].pop("execution", None)
        if "exercises-link" in tags(cell):
            cell["source"] = note.splitlines(keepends=True)
        elif cell["cell_type"] == "markdown" and "exercise" in tags(cell):
            cell["source"] = plain_markdown("".join(cell["source"])).splitlines(keepends=True)
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cells.append(cell)
    out = copy.deepcopy(nb)
    out["cells"] = cells
    return out


def render(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report missing or stale notebooks")
    args = parser.parse_args(argv)
    stale = []
    for path in chapters_with_exercises():
        target = OUT / path.name
        text = render(exercises_only(json.loads(path.read_text()), path.stem))
        if target.exists() and target.read_text() == text:
            continue
        stale.append(target.relative_to(ROOT))
        if not args.check:
            OUT.mkdir(exist_ok=True)
            target.write_text(text)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path}")
    if args.check and stale:
        print("run: python scripts/make_exercises.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
