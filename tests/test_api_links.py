"""The API page and the chapters link both ways.

*Public* is defined here, in code: a name is public when it is in the ``__all__`` of a module that
book/api.md documents (an ``.. automodule::`` there; autodoc shows exactly ``__all__``), or in
``polybook.__all__`` (the ``pb.X`` of the chapters, each documented in the module that defines it).
A public name is one a reader meets: some chapter's code uses it, or it is the class that a
function some chapter's code uses returns (``pb.train`` returns a ``TrainResult``). Its documentation says, with a
link Sphinx resolves, where the book introduces it: the first chapter in reading order that uses it.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import json
import re
import typing
from pathlib import Path

import pytest
import yaml
from sphinx.pycode import ModuleAnalyzer

import polybook

ROOT = Path(__file__).resolve().parent.parent

#: The one sentence, e.g. "Introduced in the book: :ref:`law-over-n` (chapter collisions)."
INTRODUCED = re.compile(r"Introduced in the book: :(ref|doc):`([^`]+)` \(chapter ([\w-]+)\)\.")


def chapters() -> list[Path]:
    """The chapter notebooks, in the reading order of _toc.yml."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    paths = (ROOT / (entry["file"] + ".ipynb") for entry in toc["chapters"])
    return [path for path in paths if path.exists()]


def documented_modules() -> list[str]:
    """The modules book/api.md documents, in its order."""
    return re.findall(r"^\.\. automodule:: (\S+)", (ROOT / "book" / "api.md").read_text(), re.M)


def code_cells(path: Path) -> list[str]:
    """The code cells of a notebook, with IPython magics and shell lines blanked out."""
    cells = []
    for cell in json.loads(path.read_text())["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] != "code" or source.lstrip().startswith("%%"):
            continue
        lines = source.splitlines()
        cells.append("\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines))
    return cells


def _is_module(module: str, name: str) -> bool:
    """Whether ``module.name`` is a module, as Python resolves it (``pb.train`` is the function)."""
    parent = importlib.import_module(module)
    if not hasattr(parent, name):
        try:
            importlib.import_module(f"{module}.{name}")  # a submodule not imported yet
        except ModuleNotFoundError:
            return False
    return inspect.ismodule(getattr(parent, name, None))


@functools.cache
def _imported(module: str) -> dict[str, tuple[str, str]]:
    """``{name: (module, name)}`` for what ``module`` imports, at its top level, from polybook."""
    tree = ast.parse(Path(importlib.import_module(module).__file__).read_text())
    found = {}
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:  # relative: resolved against the importing module's package
            package = module if Path(importlib.import_module(module).__file__).name == "__init__.py" else module.rpartition(".")[0]
            base = package.split(".")[:len(package.split(".")) - node.level + 1]
            source = ".".join(filter(None, [*base, node.module]))
        else:
            source = node.module or ""
        if source.split(".")[0] != "polybook":
            continue
        for alias in node.names:
            if not _is_module(source, alias.name):
                found[alias.asname or alias.name] = (source, alias.name)
    return found


def canonical(module: str, name: str) -> tuple[str, str]:
    """Where ``module.name`` is defined, following re-exports such as ``pb.train``."""
    while name in _imported(module):
        module, name = _imported(module)[name]
    return module, name


@functools.cache
def uses(path: Path) -> frozenset[tuple[str, str]]:
    """The names of polybook that a notebook's code cells use, as ``(defining module, name)``.

    Understands ``import polybook as pb`` then ``pb.name`` or ``pb.plots.name``, ``from polybook
    import collisions as co`` then ``co.name``, and ``from polybook.x import name``.
    """
    modules, found = {}, set()  # modules: local name -> the polybook module it stands for
    for source in code_cells(path):
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "polybook":
                        modules[alias.asname or "polybook"] = alias.name if alias.asname else "polybook"
            elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "polybook":
                for alias in node.names:
                    if _is_module(node.module, alias.name):
                        modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                    else:
                        found.add((node.module, alias.name))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            chain = []
            while isinstance(node, ast.Attribute):
                chain.insert(0, node.attr)
                node = node.value
            if not (isinstance(node, ast.Name) and node.id in modules):
                continue
            module = modules[node.id]
            for name in chain:
                if not _is_module(module, name):
                    found.add((module, name))
                    break
                module = f"{module}.{name}"
    names = {canonical(module, name) for module, name in found}
    return frozenset(names | {returned for used in names if (returned := _returns(*used))})


def _returns(module: str, name: str) -> tuple[str, str] | None:
    """The polybook class a function returns (by its annotation): a reader meets it as that result."""
    obj = getattr(importlib.import_module(module), name, None)
    if not inspect.isfunction(obj):
        return None
    try:
        ret = typing.get_type_hints(obj).get("return")
    except (NameError, TypeError):  # an annotation that does not evaluate: not a polybook class
        return None
    if inspect.isclass(ret) and ret.__module__.split(".")[0] == "polybook":
        return ret.__module__, ret.__name__
    return None


def first_user(public_name: tuple[str, str]) -> str | None:
    """The first chapter, in reading order, whose code uses the name (its file name without suffix)."""
    return next((path.stem for path in chapters() if public_name in uses(path)), None)


def labels() -> dict[str, str]:
    """``{label: chapter}`` for the MyST targets ``(label)=`` of the book's notebooks and pages."""
    found = {}
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                found.update(dict.fromkeys(re.findall(r"^\((\S+)\)=\s*$", "".join(cell["source"]), re.M), path.stem))
    for path in sorted((ROOT / "book").glob("*.md")):
        found.update(dict.fromkeys(re.findall(r"^\((\S+)\)=\s*$", path.read_text(), re.M), path.stem))
    return found


def public_names() -> list[tuple[str, str]]:
    """Every public name, as ``(module, name)``: the ``__all__`` of each module book/api.md documents."""
    return [(module, name) for module in documented_modules() for name in importlib.import_module(module).__all__]


def documentation(module: str, name: str) -> str:
    """What autodoc shows for a public name: its docstring, or the ``#:`` comment above a constant."""
    obj = getattr(importlib.import_module(module), name)
    if inspect.isfunction(obj) or inspect.isclass(obj):
        return obj.__doc__ or ""
    return "\n".join(ModuleAnalyzer.for_module(module).find_attr_docs().get(("", name), []))


# --------------------------------------------------------------------------- the scanner itself


def test_the_scanner_finds_the_names_a_notebook_uses_and_only_those(tmp_path):
    cells = [
        ("code", "%matplotlib inline\nimport polybook as pb\nfrom polybook import collisions as co"),
        ("code", "from polybook.experiments import EXPERIMENTS\npb.plots.use_style()\nres = pb.train(cfg)"),
        ("code", "rows = co.law_rows(record)\nlabel = 'pb.fourth_norm'\nres.W.abs()"),
        ("markdown", "The chapter text mentions `pb.winners` and `co.law_rows`."),
    ]
    notebook = tmp_path / "chapter.ipynb"
    notebook.write_text(json.dumps({"cells": [{"cell_type": kind, "source": text} for kind, text in cells]}))
    assert uses(notebook) == {
        ("polybook.experiments.registry", "EXPERIMENTS"),  # followed to where it is defined
        ("polybook.plots", "use_style"),
        ("polybook.train", "train"),  # pb.train is defined in polybook.train
        ("polybook.train", "TrainResult"),  # what pb.train returns: the reader meets it as res
        ("polybook.experiments.collisions", "law_rows"),  # a chapter module's re-export, followed
    }


def test_the_scanner_reads_the_chapters():
    first = chapters()[0]
    assert ("polybook.train", "device_report") in uses(first), f"{first.name}'s setup cell prints pb.device_report()"
    assert not any(("polybook.collisions", "no_such_function") in uses(path) for path in chapters())


# --------------------------------------------------------------------------- what is public


@pytest.mark.parametrize("module", documented_modules())
def test_every_documented_module_lists_its_public_names_in_all(module):
    names = getattr(importlib.import_module(module), "__all__", None)
    assert isinstance(names, list) and all(isinstance(name, str) for name in names), f"{module} needs a list __all__"
    assert len(set(names)) == len(names), f"{module}.__all__ repeats a name"
    missing = [name for name in names if not hasattr(importlib.import_module(module), name)]
    assert not missing, f"{module}.__all__ names what the module does not have: {missing}"
    imported = [name for name in names if canonical(module, name) != (module, name)]
    assert not imported, f"{module}.__all__ re-exports {imported}: document each name in its defining module"


def test_the_api_page_shows_exactly_each_modules_all():
    """A plain ``:members:`` documents ``__all__``; a list, exclusions or undocumented members would not."""
    text = (ROOT / "book" / "api.md").read_text()
    for module, options in re.findall(r"^\.\. automodule:: (\S+)\n((?:   :.*\n)*)", text, re.M):
        assert options.split() == [":members:"], f"book/api.md: {module} has options {options.split()}"


def test_every_top_level_name_is_public_in_its_defining_module():
    assert isinstance(polybook.__all__, list)
    for name in polybook.__all__:
        module, _ = canonical("polybook", name)
        assert hasattr(polybook, name), f"polybook.__all__ names pb.{name}, which does not exist"
        assert module in documented_modules(), f"pb.{name} comes from {module}, which book/api.md does not document"
        assert name in importlib.import_module(module).__all__, f"pb.{name} is not in {module}.__all__"


def test_every_public_name_is_used_by_a_chapter():
    used = set().union(*(uses(path) for path in chapters()))
    unused = [f"{module}.{name}" for module, name in public_names() if (module, name) not in used]
    assert not unused, f"public, but no chapter's code uses them (drop them from __all__): {unused}"


# --------------------------------------------------------------------------- the links back


def test_every_public_name_links_to_where_the_book_introduces_it():
    toc = {path.stem for path in chapters()}
    targets = labels()
    problems = []
    for module, name in public_names():
        doc = documentation(module, name)
        found = INTRODUCED.findall(doc)
        if doc.count("Introduced in") != 1 or len(found) != 1:
            problems.append(f"{module}.{name}: needs exactly one 'Introduced in the book: ...' sentence")
            continue
        (role, target, said), first = found[0], first_user((module, name))
        linked = targets.get(target) if role == "ref" else target.removeprefix("/book/")
        if role == "doc" and (not target.startswith("/book/") or linked not in toc):
            problems.append(f"{module}.{name}: :doc:`{target}` is not a chapter of _toc.yml")
        elif role == "ref" and linked is None:
            problems.append(f"{module}.{name}: no (label)= for :ref:`{target}` in the book")
        elif not linked == said == first:
            problems.append(f"{module}.{name}: links chapter {linked} (says {said}), first used in chapter {first}")
    assert not problems, "\n".join(problems)


def test_no_nitpick_exception_hides_a_public_name():
    """The book's _config.yml shows some internal types as plain text; a public name must stay a link."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    hidden = [
        f"{module}.{name}"
        for module, name in public_names()
        for _, pattern in config.get("nitpick_ignore_regex", [])
        if re.fullmatch(pattern, f"{module}.{name}") or re.fullmatch(pattern, name)
    ]
    assert not hidden, f"_config.yml nitpick_ignore_regex would hide broken links to: {hidden}"
