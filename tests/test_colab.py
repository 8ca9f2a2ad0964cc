"""The chapters run in Colab: they need only what polybook installs, their setup cells install a
pinned release without touching Colab's packages, and (the slow test) every chapter executes in a
fresh environment of Colab's package versions.

The slow test runs ``scripts/colab_runtime.py`` (see its docstring). It takes a few minutes: the
chapters are executed a second time there, besides nbval's run, in the form a Colab link opens
them: their Colab editions (``colab/book/``, see ``tests/test_colab_editions.py``), whose code is the
chapters' own; the exercises-only notebooks' setup, exercise and check cells run there too. Set ``POLYBOOK_SKIP_COLAB_RUNTIME=1``
to skip it in a quick local run; CI always runs it.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import polybook
from polybook import display as pb_display

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
COLAB_FREEZE = ROOT / "tests" / "colab" / "pip-freeze-gpu.txt"


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync = _load_script("sync_setup_cells")
colab_runtime = _load_script("colab_runtime")

# Importable names of polybook's dependencies (and what they bring: IPython comes with ipywidgets).
IMPORT_NAMES = {"torch": {"torch"}, "numpy": {"numpy"}, "matplotlib": {"matplotlib", "mpl_toolkits"},
                "tqdm": {"tqdm"}, "ipywidgets": {"ipywidgets", "IPython"}}


def _dependencies() -> list[Requirement]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(d) for d in project["dependencies"]]


def _allowed_imports() -> set[str]:
    allowed = set(sys.stdlib_module_names) | {"polybook"}
    for req in _dependencies():
        allowed |= IMPORT_NAMES.get(req.name, {req.name})
    return allowed


def _required_imports(tree: ast.AST) -> set[str]:
    """Top-level module names imported outside ``try: ... except ImportError`` (optional) blocks."""
    optional = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            h.type is None or "ImportError" in ast.unparse(h.type) or "ModuleNotFoundError" in ast.unparse(h.type)
            for h in node.handlers
        ):
            optional |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _code(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    lines = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            # IPython magics and shell escapes are not Python: leave them out of the parse.
            lines += [l for l in "".join(cell["source"]).splitlines() if not l.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


# --- the setup cell -----------------------------------------------------------------------------


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_is_the_generated_one(nb_path):
    nb = json.loads(nb_path.read_text())
    changes = sync.sync_notebook(nb, sync.setup_cell_source())
    assert not changes, f"{nb_path.name}: {changes}; run python scripts/sync_setup_cells.py"


def test_setup_cell_installs_the_pinned_release_and_keeps_torch():
    rel = sync.release()
    source = sync.setup_cell_source(rel)
    compile(source, "setup cell", "exec")
    assert f'"polybook @ git+{rel["REPOSITORY"]}@{rel["TAG"]}"' in source
    assert 'os.environ.get("POLYBOOK_SOURCE")' in source
    assert '"torch==" + importlib.metadata.version("torch")' in source  # pins the runtime's own torch
    assert "print(pb.device_report())" in source


def test_one_version_one_repository():
    rel = sync.release()
    assert polybook.__version__ == rel["VERSION"]
    assert rel["TAG"] == "v" + rel["VERSION"], "release tags are v<VERSION>"
    assert 'version = {attr = "polybook._release.VERSION"}' in (ROOT / "pyproject.toml").read_text()
    config = (ROOT / "_config.yml").read_text()
    assert sync.config_text(config, rel["REPOSITORY"]) == config, "run python scripts/sync_setup_cells.py"
    assert sync.main(["--check"]) == 0


# --- what the chapters need ---------------------------------------------------------------------


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_imports_only_what_polybook_installs(nb_path):
    needed = _required_imports(ast.parse(_code(nb_path)))
    assert not needed - _allowed_imports(), f"{nb_path.name} imports {sorted(needed - _allowed_imports())}"


@pytest.mark.parametrize("module", sorted((ROOT / "polybook").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT / "polybook")))
def test_package_imports_only_its_dependencies(module):
    needed = _required_imports(ast.parse(module.read_text()))
    assert not needed - _allowed_imports(), f"{module.name} imports {sorted(needed - _allowed_imports())}"


def test_dependency_bounds_keep_colabs_packages():
    colab = colab_runtime.parse_freeze(COLAB_FREEZE.read_text())
    for req in _dependencies():
        line = colab.get(colab_runtime.canonical(req.name))
        assert line is not None, f"Colab has no {req.name}"
        version = colab_runtime.pinned_version(line)
        assert req.specifier.contains(version, prereleases=True), (
            f"pyproject asks for {req}, Colab has {line}: installing polybook in Colab would replace it")


# --- polybook.display.glue ----------------------------------------------------------------------


def test_glue_is_myst_nbs_when_myst_nb_is_there(monkeypatch):
    myst_nb = pytest.importorskip("myst_nb")
    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda *a, **k: calls.append((a, k)))
    pb_display.glue("answer", 42, display=False)
    assert calls == [(("answer", 42), {"display": False})]
    assert pb_display.GLUED["answer"] == 42


def test_glue_without_myst_nb_shows_a_plain_output(monkeypatch):
    real_import = builtins.__import__

    def no_myst_nb(name, *args, **kwargs):
        if name == "myst_nb" or name.startswith("myst_nb."):
            raise ImportError("No module named 'myst_nb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_myst_nb)
    shown = []
    import IPython.display

    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.append(objs))
    pb_display.glue("hidden", 1.5, display=False)
    pb_display.glue("shown", "text")
    assert shown == [("text",)]
    assert pb_display.GLUED["hidden"] == 1.5 and pb_display.GLUED["shown"] == "text"


# --- the chapters in Colab's runtime ------------------------------------------------------------


def test_freeze_comparison_finds_every_change():
    colab = {"numpy": "numpy==2.1.3", "six": "six==1.17.0", "tqdm": "tqdm==4.67.3"}
    before = {"numpy": "numpy==2.1.3", "six": "six==1.17.0", "pip": "pip==24.1.2"}
    after = {"numpy": "numpy==2.2.0", "tqdm": "tqdm==4.60.0", "polybook": "polybook @ file:///x",
             "pip": "pip==24.1.2"}
    problems, added = colab_runtime.compare_freezes(before, after, colab)
    assert added == ["polybook @ file:///x"]
    assert problems == ["upgraded: numpy==2.1.3 -> numpy==2.2.0", "six==1.17.0 was removed",
                        "tqdm==4.60.0 installed, but Colab has tqdm==4.67.3: it would be replaced"]
    assert colab_runtime.compare_freezes(before, dict(before, numpy="numpy==2.0.0"), colab)[0] == [
        "downgraded: numpy==2.1.3 -> numpy==2.0.0"]


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("POLYBOOK_SKIP_COLAB_RUNTIME") == "1", reason="POLYBOOK_SKIP_COLAB_RUNTIME=1")
def test_every_chapter_runs_in_colabs_runtime(capsys):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "colab_runtime.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=3600)
    out = proc.stdout + proc.stderr
    with capsys.disabled():  # the chapter times and what the install added, in the test log
        print()
        for line in out.splitlines():
            print(f"[colab runtime] {line}")
    assert proc.returncode == 0, out[-8000:]


# --- the emulated-CPU comparison of the Colab run ---------------------------------------------------


def _glued_values(nb) -> dict:
    """What a kernel without myst-nb keeps in polybook.display.GLUED, read back from the committed glue outputs."""
    prefix = colab_runtime.GLUE_PREFIX
    return {out.metadata["scrapbook"]["name"]: {k[len(prefix):]: v for k, v in out.data.items()}
            for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
            if out.get("data") and all(k.startswith(prefix) for k in out.data)}


def test_the_emulated_cpu_comparison_passes_the_committed_outputs_and_fails_a_changed_one(tmp_path):
    import nbformat

    committed = ROOT / "book" / "collisions.ipynb"
    nb = nbformat.read(committed, as_version=4)
    glued = _glued_values(nb)
    assert glued, "the chapter glues values"
    copy = tmp_path / committed.name
    nbformat.write(nb, copy)
    assert colab_runtime.compare_with_committed(committed, copy, glued) == []

    # A printed number one digit off (what another CPU's rounding does): the comparison fails, naming the cell.
    i, out = next((i, o) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.execution_count
                  and "nbval-ignore-output" not in c.metadata.get("tags", []) for o in c.outputs
                  if o.output_type == "stream")
    out.text = out.text.replace("0", "1", 1) if "0" in out.text else out.text + "1"
    nbformat.write(nb, copy)
    problems = colab_runtime.compare_with_committed(committed, copy, glued)
    assert len(problems) == 1 and problems[0].startswith(f"cell {i}:")

    # A glued value (a number in the prose) that changed: also a failure, naming the key.
    name = next(iter(glued))
    changed = dict(glued, **{name: {"text/plain": "'changed'"}})
    problems = colab_runtime.compare_with_committed(committed, committed, changed)
    assert len(problems) == 1 and repr(name) in problems[0]
