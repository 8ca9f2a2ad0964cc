"""Fold the plumbing of the chapters, so that the HTML book shows the code that teaches.

    python scripts/fold_plumbing.py                  # every book/*.ipynb, in place
    python scripts/fold_plumbing.py book/noise.ipynb  # only these
    python scripts/fold_plumbing.py --check          # write nothing; exit 1 listing what it would change

The HTML book (jupyter-book, myst-nb) shows every code cell; a cell tagged ``hide-input`` is folded
behind a toggle with its output still shown. A reader should see short cells that teach: the calls
of the polybook API that compute a chapter's result, the exercises and the checks. The rest is
plumbing, and folds. This script

- tags ``hide-input`` every code cell that ``plumbing_reason`` calls plumbing and that is shown
  today. It never unfolds a cell: ``hide-input``, ``remove-input``, ``remove-cell`` and
  ``hide-cell`` stay where someone put them, on plumbing or not;
- moves nbval's comment markers into nbval's cell tags: a line ``# NBVAL_IGNORE_OUTPUT`` leaves the
  source and the cell gets the tag ``nbval-ignore-output`` (nbval reads either; the HTML shows the
  comment and hides the tag). ``NBVAL_SKIP``, ``NBVAL_CHECK_OUTPUT`` and ``NBVAL_RAISES_EXCEPTION``
  move the same way, to ``nbval-skip``, ``nbval-check-output`` and ``nbval-raises-exception``;
- changes nothing else: cell ids, other metadata, outputs and execution counts stay, and the file
  is written as nbformat writes it (``indent=1``, sorted keys, UTF-8, a trailing newline), so the
  diff shows only the new tags and the removed comment lines.

The Colab editions and the exercises-only notebooks copy the chapters' cells, tags included: after
folding, ``python scripts/make_colab_editions.py`` brings them up to date.

The rule set (``plumbing_reason``), applied to a code cell's source:

0. *Exempt*: cells tagged ``exercise``, ``exercise-check`` (the reader's task and its check: shown)
   and ``solution`` (folded behind "Show the solution" with their own tags, which stay as they are).
1. *Setup*: the cell installs packages (``pip install``, the ``# Setup`` cell of
   ``scripts/sync_setup_cells.py``) or is the chapter's import cell (three or more top-level
   ``import`` statements). The reader needs the imports only when running the notebook.
2. *Widget wiring*: the cell builds ipywidgets controls itself (``import ipywidgets``,
   ``widgets.interact(...)``). A one-line call of a polybook explorer (``cv.explorer()``) is
   not this: it shows how to open the explorer.
3. *Long*: more than ``MAX_SHOWN_LINES`` (15) non-blank lines, comments included. A long cell
   cannot be taken in at a glance, whatever it does; its output still shows. (A long computation
   that teaches reads better split into short cells; that is for the chapter's author.)
4. *Display*: at least ``MOSTLY`` (two thirds) of the cell's code lines (non-blank, not comments)
   only record or show results: ``glue(...)`` runs, ``print``/``display``/``Markdown``/
   ``markdown_table`` calls, statements that build text (f-strings, ``join``, lists of
   labels), and matplotlib drawing (``plt.*``, Axes and Figure methods such as ``ax.set_xlabel``,
   ``pb.plots.*``, ``*.plot_*(...)`` and ``*_figure(...)`` of polybook's views). A loop, ``if`` or
   ``def`` whose body is all of one such kind counts with its body. A cell that asserts is a
   check and is exempt from this rule (it prints what it tests; rule 3 still applies): the checks
   are part of what the chapter teaches.
5. *Helper definitions*: the cell is mostly definitions (``def``: at least half its code lines) and
   one of them draws or formats (its body is at least two thirds display lines, as in rule 4): a
   plotting or formatting helper, which a reader does not need to read to follow the chapter.

What is left shows: short cells that call the API, compute, train, and assert. The rules look at
source only (not at outputs), so a notebook without outputs (the exercises-only notebooks) is
classified as its chapter is. ``tests/test_folding.py`` checks that every chapter and every
notebook derived from one is folded by these rules, and unit-tests them on small cells.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MAX_SHOWN_LINES = 15  # rule 3: the most non-blank lines a shown cell has
MOSTLY = 2 / 3  # rules 4 and 5: the share of display lines that makes a cell (or a def) display plumbing

FOLD_TAG = "hide-input"
#: Tags that already keep a cell's code out of the reader's way (none of them is ever removed).
HIDDEN_TAGS = frozenset({"hide-input", "remove-input", "remove-cell", "hide-cell"})
#: Tags whose cells the rules leave alone (rule 0).
EXEMPT_TAGS = frozenset({"exercise", "exercise-check", "solution"})

#: nbval's comment markers and the cell tags nbval reads for them (nbval.plugin.metadata_tags).
NBVAL_MARKERS = {
    "NBVAL_IGNORE_OUTPUT": "nbval-ignore-output",
    "NBVAL_CHECK_OUTPUT": "nbval-check-output",
    "NBVAL_RAISES_EXCEPTION": "nbval-raises-exception",
    "NBVAL_SKIP": "nbval-skip",
}
NBVAL_LINE = re.compile(r"^[ \t]*#+[ \t]*(" + "|".join(NBVAL_MARKERS) + r")[ \t]*\r?\n?$")

# ------------------------------------------------------------------------------------ what draws

#: Methods of matplotlib's Axes, Figure, SubFigure and colorbars that a drawing cell calls.
DRAW_METHODS = frozenset("""
    plot scatter bar barh hist hist2d imshow matshow pcolormesh pcolor contour contourf errorbar
    fill_between fill_betweenx axhline axvline axhspan axvspan hlines vlines text annotate arrow
    loglog semilogx semilogy stairs stem pie boxplot violinplot quiver streamplot
    set set_xlabel set_ylabel set_title set_xlim set_ylim set_xscale set_yscale set_xticks set_yticks
    set_xticklabels set_yticklabels set_aspect set_facecolor set_visible set_label set_ticks
    legend colorbar suptitle supxlabel supylabel subplots subplot add_subplot add_axes add_gridspec
    subfigures subplot_mosaic tick_params grid twinx twiny invert_xaxis invert_yaxis axis
    tight_layout savefig get_legend_handles_labels get_xlim get_ylim secondary_xaxis secondary_yaxis
    label_outer margins autoscale locator_params
""".split())
#: Module names whose calls draw (``plt.show()``, ``mticker.FuncFormatter(...)``).
DRAW_MODULES = frozenset({"plt", "pyplot", "matplotlib", "mpl", "mticker", "mcolors", "mpatches", "plots"})

OUTPUT_FUNCS = frozenset({"print", "display", "Markdown", "HTML", "markdown_table"})
TEXT_FUNCS = frozenset({"str", "repr", "format", "markdown_table", "Markdown"})
TEXT_METHODS = frozenset({"join", "format", "ljust", "rjust", "center", "zfill", "replace", "strip", "rstrip", "lstrip"})
APPEND_METHODS = frozenset({"append", "extend", "insert"})

DISPLAY_KINDS = ("glue", "output", "draw")  # what rule 4 counts


def _call_name(call: ast.Call) -> tuple[str, list[str]]:
    """The called name (``set_xlabel``) and the names along its attribute chain (``["axes", "set_xlabel"]``)."""
    chain, f = [], call.func
    while isinstance(f, (ast.Attribute, ast.Call, ast.Subscript)):
        if isinstance(f, ast.Attribute):
            chain.append(f.attr)
            f = f.value
        elif isinstance(f, ast.Call):
            f = f.func
        else:
            f = f.value
    if isinstance(f, ast.Name):
        chain.append(f.id)
    chain.reverse()
    return (chain[-1] if chain else ""), chain


def _draws(call: ast.Call) -> bool:
    name, chain = _call_name(call)
    if len(chain) > 1 and name in DRAW_METHODS:
        return True
    if any(part in DRAW_MODULES for part in chain[:-1]):
        return True
    return name.startswith("plot_") or name.endswith(("_plot", "_figure", "_heatmap"))


def _is_text(node: ast.AST | None) -> bool:
    """Whether an expression builds text (for a table, a label or a printed line)."""
    if node is None:
        return False
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.Call):
        name, chain = _call_name(node)
        return (len(chain) > 1 and name in TEXT_METHODS) or (len(chain) == 1 and name in TEXT_FUNCS)
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Mod):
            return _is_text(node.left)
        return isinstance(node.op, ast.Add) and (_is_text(node.left) or _is_text(node.right))
    if isinstance(node, ast.IfExp):
        return _is_text(node.body) or _is_text(node.orelse)
    if isinstance(node, ast.BoolOp):
        return any(_is_text(v) for v in node.values)
    if isinstance(node, ast.Subscript):
        return _is_text(node.value)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return bool(node.elts) and 2 * sum(map(_is_text, node.elts)) > len(node.elts)
    if isinstance(node, ast.Dict):
        return bool(node.values) and 2 * sum(map(_is_text, node.values)) > len(node.values)
    if isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp)):
        return _is_text(node.elt)
    return False


def _leaf_kind(stmt: ast.stmt) -> str:
    """The kind of a simple statement: glue, output, draw, assert, import or code."""
    if isinstance(stmt, ast.Assert):
        return "assert"
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return "import"
    calls = [n for n in ast.walk(stmt) if isinstance(n, ast.Call)]
    if any(_draws(c) for c in calls):
        return "draw"
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        name, chain = _call_name(stmt.value)
        if name == "glue":
            return "glue"
        if len(chain) == 1 and name in OUTPUT_FUNCS:
            return "output"
        if len(chain) > 1 and name in APPEND_METHODS and any(_is_text(a) for a in stmt.value.args):
            return "output"
    if isinstance(stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return)) and _is_text(stmt.value):
        return "output"
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return "docstring"
    return "code"


_BODIES = ("body", "orelse", "finalbody", "handlers")


def _children(stmt: ast.stmt) -> list[ast.stmt]:
    kids = []
    for field in _BODIES:
        for s in getattr(stmt, field, []) or []:
            kids.extend(s.body if isinstance(s, ast.ExceptHandler) else [s])
    return kids


def _leaves(stmt: ast.stmt) -> list[str]:
    kids = _children(stmt)
    if not kids:
        return [_leaf_kind(stmt)]
    return [k for s in kids for k in _leaves(s) if k not in ("docstring", "pass")] or ["code"]


def _mark(stmt: ast.stmt, kinds: dict[int, str]) -> None:
    """Give every line of ``stmt`` a kind: a compound statement whose leaves are all of one kind
    takes that kind as a whole; otherwise its header lines are code and its body is marked inside."""
    leaves = set(_leaves(stmt))
    kids = _children(stmt)
    if len(leaves) == 1 or not kids:
        kind = leaves.pop() if len(leaves) == 1 else _leaf_kind(stmt)
        for line in range(stmt.lineno, stmt.end_lineno + 1):
            kinds.setdefault(line, kind)
        return
    for kid in kids:
        _mark(kid, kinds)
    for line in range(stmt.lineno, stmt.end_lineno + 1):
        kinds.setdefault(line, "code")  # headers (for ..., if ..., def ...) and else/except lines


@dataclass
class CellStats:
    """What the rules look at in one code cell."""

    lines: int  # non-blank lines, comments included
    code: int  # non-blank lines that are not comments
    kinds: dict[str, int]  # code lines by kind (glue, output, draw, assert, import, code, docstring)
    imports: int  # top-level import statements
    asserts: bool
    helper_defs: list[str]  # top-level defs whose body is mostly display lines
    def_lines: int  # code lines inside top-level defs
    parsed: bool

    @property
    def display(self) -> int:
        return sum(self.kinds.get(k, 0) for k in DISPLAY_KINDS)


def source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def strip_nbval_markers(text: str) -> tuple[str, list[str]]:
    """``text`` without its nbval comment lines, and the tags they stand for."""
    kept, found = [], []
    for line in text.splitlines(keepends=True):
        m = NBVAL_LINE.match(line)
        if m:
            found.append(NBVAL_MARKERS[m.group(1)])
        else:
            kept.append(line)
    out = "".join(kept)
    if found and not text.endswith("\n"):
        out = out.rstrip("\n")  # the marker was the last line: keep "no newline at the end"
    return out, found


def cell_stats(text: str) -> CellStats:
    text, _ = strip_nbval_markers(text)
    lines = text.splitlines()
    nonblank = [i + 1 for i, l in enumerate(lines) if l.strip()]
    comments = {i for i in nonblank if lines[i - 1].lstrip().startswith("#")}
    code_lines = [i for i in nonblank if i not in comments]
    try:
        tree = ast.parse(text)
    except SyntaxError:  # IPython magics or a syntax error: every code line is code
        return CellStats(len(nonblank), len(code_lines), {"code": len(code_lines)}, 0, False, [], 0, False)
    kinds: dict[int, str] = {}
    for stmt in tree.body:
        _mark(stmt, kinds)
    counts: dict[str, int] = {}
    for i in code_lines:
        k = kinds.get(i, "code")
        counts[k] = counts.get(k, 0) + 1
    helpers, def_lines = [], 0
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = [i for i in code_lines if stmt.lineno <= i <= stmt.end_lineno]
            def_lines += len(body)
            inner = [i for i in body if i > stmt.body[0].lineno - 1]  # the body, without the def line
            shown = sum(kinds.get(i) in DISPLAY_KINDS for i in inner)
            if inner and shown >= MOSTLY * len(inner):
                helpers.append(stmt.name)
    return CellStats(
        lines=len(nonblank),
        code=len(code_lines),
        kinds=counts,
        imports=sum(isinstance(s, (ast.Import, ast.ImportFrom)) for s in tree.body),
        asserts=any(isinstance(n, ast.Assert) for n in ast.walk(tree)),
        helper_defs=helpers,
        def_lines=def_lines,
        parsed=True,
    )


def plumbing_reason(cell: dict) -> str | None:
    """Why the rules call a code cell plumbing (a short sentence), or None when it teaches or is exempt.

    Looks at the source (without nbval's comment markers) and at the exempting tags only: whether the
    cell is folded today does not change the answer.
    """
    if cell.get("cell_type") != "code" or EXEMPT_TAGS & set(tags(cell)):
        return None
    text = source(cell)
    s = cell_stats(text)
    code = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
    if text.lstrip().startswith("# Setup") or re.search(r"\bpip\b.*\binstall\b", code):
        return "setup: installs packages"
    if s.imports >= 3:
        return f"setup: the import cell ({s.imports} imports)"
    if re.search(r"^\s*(import ipywidgets|from ipywidgets\b)|\b(widgets|ipywidgets)\.(interact|interactive|interact_manual)\b",
                 text, re.M):
        return "widget wiring: builds ipywidgets controls"
    if s.lines > MAX_SHOWN_LINES:
        return f"long: {s.lines} non-blank lines (more than {MAX_SHOWN_LINES})"
    if s.code and not s.asserts and s.display >= MOSTLY * s.code:
        top = max(DISPLAY_KINDS, key=lambda k: s.kinds.get(k, 0))
        what = {"glue": "glue() calls", "output": "printing and text formatting", "draw": "matplotlib drawing"}[top]
        return f"display: {s.display} of {s.code} code lines record or show results, mostly {what}"
    if s.helper_defs and 2 * s.def_lines >= s.code:
        return f"helper definitions: {', '.join(s.helper_defs)} draw or format"
    return None


def is_hidden(cell: dict) -> bool:
    return bool(HIDDEN_TAGS & set(tags(cell)))


# ------------------------------------------------------------------------------------ notebooks


def fold(nb: dict) -> list[str]:
    """Fold ``nb``'s shown plumbing and move its nbval markers into tags, in place; return what changed."""
    changes = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        text, found = strip_nbval_markers(source(cell))
        new_tags = []
        if found:
            cell["source"] = text.splitlines(keepends=True)
            new_tags += found
        reason = plumbing_reason(cell)
        if reason and not is_hidden(cell):
            new_tags.append(FOLD_TAG)
        new_tags = [t for t in dict.fromkeys(new_tags) if t not in tags(cell)]
        if new_tags:
            cell.setdefault("metadata", {}).setdefault("tags", []).extend(new_tags)
        if found or new_tags:
            what = [f"comment {', '.join(found)} -> tag"] if found else []
            what += [f"fold ({reason})"] if FOLD_TAG in new_tags else []
            first = next((l for l in text.splitlines() if l.strip()), "")[:60]
            changes.append(f"cell {i} [{first}]: {'; '.join(what)}")
    return changes


def problems(nb: dict) -> list[str]:
    """What the rules object to in ``nb`` as it is: shown plumbing and nbval comment markers."""
    out = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        text, markers = strip_nbval_markers(source(cell))
        first = next((l for l in text.splitlines() if l.strip()), "")[:60]
        if markers:
            out.append(f"cell {i} [{first}]: an nbval comment marker (use the cell tag)")
        reason = plumbing_reason(cell)
        if reason and not is_hidden(cell):
            out.append(f"cell {i} [{first}]: shown, but plumbing ({reason})")
    return out


def summary(nb: dict) -> dict:
    """Code cells shown, folded and removed, and the longest shown one (non-blank lines, cell index)."""
    shown, folded, removed, longest = 0, 0, 0, (0, None)
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        t = set(tags(cell))
        if t & {"remove-input", "remove-cell"}:
            removed += 1
        elif t & {"hide-input", "hide-cell"}:
            folded += 1
        else:
            shown += 1
            n = sum(1 for l in source(cell).splitlines() if l.strip())
            longest = max(longest, (n, i), key=lambda x: x[0])
    return {"shown": shown, "folded": folded, "removed": removed, "longest": longest}


def render(nb: dict) -> str:
    """A notebook as nbformat writes it (so an untouched notebook round-trips byte for byte)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def chapters(root: Path = ROOT) -> list[Path]:
    return sorted((root / "book").glob("*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 listing what would change")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every book/*.ipynb")
    args = parser.parse_args(argv)
    stale = 0
    for path in args.notebooks or chapters():
        text = path.read_text(encoding="utf-8")
        nb = json.loads(text)
        before = summary(nb)
        changes = fold(nb)
        after = summary(nb)
        name = path.relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
        (b_lines, b_cell), (a_lines, a_cell) = before["longest"], after["longest"]
        print(f"{name}: code cells shown/folded/removed {before['shown']}/{before['folded']}/{before['removed']}"
              f" -> {after['shown']}/{after['folded']}/{after['removed']}; longest shown cell {b_lines} lines"
              f" (cell {b_cell}) -> {a_lines} lines (cell {a_cell})")
        for c in changes:
            print(f"  {'would change' if args.check else 'changed'} {c}")
        if changes:
            stale += 1
            if not args.check:
                path.write_text(render(nb), encoding="utf-8")
    if args.check and stale:
        print(f"{stale} notebook(s) to fold: run python scripts/fold_plumbing.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
