"""Run every chapter the way a reader runs it in Colab: in Colab's package versions, installed fresh.

    python scripts/colab_runtime.py                    # build or reuse the venv, install, run every chapter
    python scripts/colab_runtime.py --fresh            # rebuild the venv from scratch first
    python scripts/colab_runtime.py --chapters noise   # only some chapters (names or book/NAME.ipynb;
                                                       # or COLAB_RUNTIME_CHAPTERS="noise reproduce")

What it does, in order:

1. Builds a virtual environment holding Colab's versions of what a chapter touches: polybook's
   dependencies (read from ``pyproject.toml``) and what runs a notebook (ipython, ipykernel,
   nbclient, nbformat, jupyter_client, jupyter_core, traitlets), with every package that these pull
   in pinned by the list of Colab's packages, ``tests/colab/pip-freeze-gpu.txt`` (a copy of Colab's
   published ``pip freeze``; ``tests/colab/README.md`` says where it comes from). Versions are read
   from that file, never written here.
2. **torch is the exception**: Colab's is a CUDA build (``torch==2.11.0+cu128`` in the copied list),
   which cannot be had here. The venv gets the CPU torch build of the environment running this
   script (``torch==2.13.0+cpu``, which pip finds on this machine's disk) in its place, and where
   that torch needs another version of one of its own dependencies than Colab has, that one
   package too; the output names each such stand-in.
3. Colab runs Python 3.13 (``tests/colab/os-info-gpu.txt``). The venv uses Colab's Python when an
   interpreter for it is found *and* the stand-in torch build exists for it; otherwise the Python
   running this script (3.11 here: the CPU torch 2.13.0 wheel on this machine is built for 3.11
   only). The output says which, and why.
4. Takes ``pip freeze``, installs polybook exactly as the chapters' setup cell does (it runs that
   cell, with ``POLYBOOK_SOURCE`` pointing at a copy of this checkout instead of the pinned release
   on GitHub), and takes ``pip freeze`` again. It fails if the install upgraded, downgraded,
   replaced or removed any package that was there, or brought in a package at another version than
   Colab's own; packages that Colab lacks are allowed and listed.
5. Executes every chapter (in ``_toc.yml`` order) top to bottom with nbclient, in a kernel of that
   venv, each notebook alone in an empty folder as in Colab (so no stored results next to it: the
   chapter downloads them, with ``POLYBOOK_RESULTS_URL`` pointing at this checkout's ``book/results``).
   What it executes is the chapter's **Colab edition** (``colab/book/NAME.ipynb``, what the launch
   button opens: the chapter's cells with its Markdown resolved, ``scripts/make_colab_editions.py``),
   after checking that every edition is current; so one execution covers the chapter and its
   edition. It fails if any cell raises, and prints each chapter's seconds.
   The **exercises-only notebooks** (``exercises/NAME.ipynb``) are the chapter's code cells less
   its solutions (``tests/test_colab_editions.py`` checks that, and that no other cell uses what a
   solution defines); their setup, exercise and check cells are executed here too, in the same
   kind of kernel, and every check must print "not solved yet".
6. **Another CPU.** The kernel runs as if on a CPU without AVX-512 (``EMULATED_CPU``: MKL limited
   to AVX2 and torch's own kernels to AVX2), and every cell's outputs are compared with the
   committed ones by nbval's own rules (``compare_with_committed``): its comment markers and tags,
   its stream merging, and its comparison of every output but images, metadata and widget ids.
   Glued values, which the book's build stores as hidden outputs and a plain runtime keeps in
   ``polybook.display.GLUED``, are compared by name. So this one extra execution checks both that
   the chapters run in Colab's versions and that their printed numbers reproduce on another CPU.

The venv is kept under ``_build/colab-runtime/`` and reused while the package list, the Python and
the torch build are unchanged (the packages polybook's install added are uninstalled again before
the next run); ``--fresh`` or a missing folder builds it anew, downloading only what pip's cache
lacks. A report is written to ``_build/colab-runtime/report.json``. Exit status 0 when everything
passed, 1 otherwise. ``tests/test_colab.py`` runs this script.
"""

from __future__ import annotations

import argparse
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
COLAB_DIR = ROOT / "tests" / "colab"
FREEZE_FILE = COLAB_DIR / "pip-freeze-gpu.txt"
OS_INFO_FILE = COLAB_DIR / "os-info-gpu.txt"
CACHE = ROOT / "_build" / "colab-runtime"
KERNEL_NAME = "polybook-colab-runtime"
# What executes a notebook, besides polybook's own dependencies (read from pyproject.toml).
KERNEL_STACK = ["ipython", "ipykernel", "nbclient", "nbformat", "jupyter_client", "jupyter_core", "traitlets"]
# Bump to rebuild every cached venv (when the way it is built changes).
BUILD_VERSION = "1"
CELL_TIMEOUT = 1800


# ---------------------------------------------------------------------------------------------
# Package lists


def canonical(name: str) -> str:
    """A distribution name as pip compares them (``Jupyter_Client`` -> ``jupyter-client``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_freeze(text: str) -> dict[str, str]:
    """``pip freeze`` output as {canonical name: the whole line}."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^(-e\s+)?([A-Za-z0-9][A-Za-z0-9._-]*)\s*(==|@)", line)
        if m:
            out[canonical(m.group(2))] = line
    return out


def pinned_version(line: str) -> str | None:
    """``X`` for a ``name==X`` line, None for a URL or editable line."""
    m = re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*==(\S+)$", line)
    return m.group(1) if m else None


def colab_packages() -> dict[str, str]:
    return parse_freeze(FREEZE_FILE.read_text())


def colab_python() -> str:
    """Colab's Python as ``major.minor`` (from ``Python 3.13.15`` in the os-info file)."""
    m = re.search(r"^Python (\d+)\.(\d+)", OS_INFO_FILE.read_text(), re.M)
    if not m:
        raise SystemExit(f"no 'Python X.Y' line in {OS_INFO_FILE}")
    return f"{m.group(1)}.{m.group(2)}"


def polybook_dependencies() -> list[str]:
    """The names of polybook's runtime dependencies, from pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib

        deps = tomllib.loads(text)["project"]["dependencies"]
    except ImportError:  # Python 3.10
        block = re.search(r"^dependencies\s*=\s*\[(.*?)\]", text, re.M | re.S).group(1)
        deps = re.findall(r'"([^"]+)"', block)
    return [re.match(r"[A-Za-z0-9._-]+", d).group(0) for d in deps]


def chapters() -> list[Path]:
    """The book's notebooks in ``_toc.yml`` order."""
    toc = (ROOT / "_toc.yml").read_text()
    files = re.findall(r"^\s*(?:-\s*)?(?:root|file):\s*(\S+)", toc, re.M)
    return [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").exists()]


def setup_cell(nb_path: Path) -> str:
    """The source of a notebook's setup cell (its first code cell)."""
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            src = cell["source"]
            return "".join(src) if isinstance(src, list) else src
    raise SystemExit(f"{nb_path}: no code cell")


# ---------------------------------------------------------------------------------------------
# Processes


def log(msg: str = "") -> None:
    print(msg, flush=True)


def clean_env(venv: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment without this process's virtual environment; ``venv``'s bin first on PATH."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "JUPYTER_PATH", "CONDA_PREFIX")}
    path = env.get("PATH", "").split(os.pathsep)
    if sys.prefix != sys.base_prefix:  # drop the running venv's bin folder
        path = [p for p in path if Path(p).resolve() != Path(sys.prefix, "bin").resolve()]
    if venv is not None:
        path.insert(0, str(venv / "bin"))
        env["JUPYTER_PATH"] = str(venv / "share" / "jupyter")
    env["PATH"] = os.pathsep.join(path)
    env["PYTHONNOUSERSITE"] = "1"
    env.update(extra)
    return env


def run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, quiet: bool = True) -> str:
    """Run ``cmd``; return its stdout. On failure print its output and stop."""
    proc = subprocess.run([str(c) for c in cmd], env=env or clean_env(), cwd=cwd, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if not quiet:
        log(proc.stdout.rstrip())
    if proc.returncode != 0:
        log(proc.stdout.rstrip())
        raise SystemExit(f"failed (exit {proc.returncode}): {' '.join(str(c) for c in cmd)}")
    return proc.stdout


def pip_lines(out: str) -> str:
    """pip's output less the warnings about unreachable index folders of this machine's pip config."""
    return "\n".join(l for l in out.splitlines() if "is ignored: it is neither a file nor a directory" not in l)


def freeze(py: Path) -> dict[str, str]:
    return parse_freeze(run([py, "-m", "pip", "freeze", "--all"], env=clean_env(py.parent.parent)))


def torch_version() -> str:
    """The torch build of the environment running this script (what the venv gets instead of Colab's)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return os.environ.get("COLAB_RUNTIME_TORCH") or version("torch")
    except PackageNotFoundError:
        raise SystemExit("torch is not installed here; set COLAB_RUNTIME_TORCH to the torch version to use")


def python_version(py: str | Path) -> str:
    return run([py, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"]).strip()


def torch_available(py: str, torch: str) -> bool:
    """Whether pip, run by ``py``, finds ``torch==<torch>`` for that Python (nothing is downloaded)."""
    proc = subprocess.run([py, "-m", "pip", "index", "versions", "torch"], env=clean_env(),
                          capture_output=True, text=True)
    m = re.search(r"^Available versions:\s*(.*)$", proc.stdout, re.M)
    return bool(m) and torch in [v.strip() for v in m.group(1).split(",")]


def choose_python(torch: str) -> tuple[str, str]:
    """(interpreter, why): Colab's Python if one is here and ``torch`` exists for it, else this one's."""
    want = colab_python()
    candidates = [os.environ.get("COLAB_RUNTIME_PYTHON"), shutil.which(f"python{want}")]
    pyenv = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(f"{pyenv}/versions/{want}.*/bin/python{want}"), reverse=True)
    tried = []
    for py in dict.fromkeys(c for c in candidates if c and "/shims/" not in c):  # pyenv's shims: see versions/
        if torch_available(py, torch):
            return py, f"Colab's Python {want}, for which torch {torch} exists"
        tried.append(py)
    here = sys._base_executable if hasattr(sys, "_base_executable") else sys.executable
    if tried:
        why = (f"Colab runs Python {want}, but torch {torch} (the CPU build standing in for Colab's) "
               f"has no build for it here (tried {', '.join(tried)}); using this script's Python instead")
    else:
        why = f"no Python {want} (Colab's) was found; using this script's Python instead"
    return here, why


# ---------------------------------------------------------------------------------------------
# The venv


def constraints_for(colab: dict[str, str], drop: set[str]) -> str:
    """Colab's pinned packages as a pip constraints file, without torch's family and ``drop``."""
    lines = []
    for name, line in sorted(colab.items()):
        ver = pinned_version(line)
        if ver is None or "+" in ver or name == "torch" or name in drop:
            continue  # URL installs, local (CUDA) builds, torch itself
        lines.append(line)
    return "\n".join(lines) + "\n"


TORCH_REQUIRES = r"""
import importlib.metadata as md, json
from pip._vendor.packaging.requirements import Requirement
out = []
for r in md.requires("torch") or []:
    req = Requirement(r)
    if req.marker is None or req.marker.evaluate({"extra": ""}):
        out.append([req.name, str(req.specifier)])
print(json.dumps(out))
"""


def build_venv(venv: Path, python: str, torch: str, roots: list[str], colab: dict[str, str]) -> dict:
    """Create ``venv`` with Colab's versions of ``roots`` and their dependencies; return what stands in."""
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    log(f"== building the Colab venv in {venv.relative_to(ROOT)}")
    run([python, "-m", "venv", venv])
    py = venv / "bin" / "python"
    env = clean_env(venv)
    constraints = venv / "colab-constraints.txt"
    constraints.write_text(constraints_for(colab, set()))
    start = time.perf_counter()
    run([py, "-m", "pip", "install", "-q", "-c", constraints, "pip"], env=env)

    # torch first, alone: the stand-in for Colab's CUDA build. Its own requirements decide which of
    # Colab's pins must give way (e.g. a newer setuptools for a newer torch).
    report = venv / "torch-install.json"
    run([py, "-m", "pip", "install", "-q", "--no-deps", "--report", report, f"torch=={torch}"], env=env)
    items = json.loads(report.read_text()).get("install", [])
    torch_from = items[0].get("download_info", {}).get("url", "?") if items else "already there"
    from_pip = json.loads(run([py, "-c", TORCH_REQUIRES], env=env))
    overrides = {}
    check = "from pip._vendor.packaging.specifiers import SpecifierSet as S; import sys; print(sys.argv[2] in S(sys.argv[1]))"
    for name, spec in from_pip:
        colab_ver = pinned_version(colab.get(canonical(name), ""))
        if colab_ver and spec and run([py, "-c", check, spec, colab_ver], env=env).strip() == "False":
            overrides[canonical(name)] = f"Colab has {colab_ver}; torch {torch} needs {name}{spec}"
    constraints.write_text(constraints_for(colab, set(overrides)))

    out = run([py, "-m", "pip", "install", "-q", "-c", constraints, f"torch=={torch}", *roots], env=env)
    if pip_lines(out).strip():
        log(pip_lines(out))
    run([py, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL_NAME,
         "--display-name", "Python 3 (polybook Colab runtime)"], env=env)
    log(f"   built in {time.perf_counter() - start:.0f} s")
    return {"torch_from": torch_from, "overrides": overrides}


def prepare_venv(fresh: bool) -> tuple[Path, dict]:
    """The Colab venv, built or reused, in its state before polybook; and how it was made."""
    colab = colab_packages()
    torch = torch_version()
    python, why = choose_python(torch)
    pyver = python_version(python)
    roots = list(dict.fromkeys(polybook_dependencies() + KERNEL_STACK))
    roots = [r for r in roots if canonical(r) != "torch"]
    key = hashlib.sha256(json.dumps([BUILD_VERSION, FREEZE_FILE.read_text(), python, pyver, torch, roots]).encode()).hexdigest()[:16]
    venv = CACHE / "venv"
    py = venv / "bin" / "python"
    meta_file = venv / "colab-runtime.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}

    if not fresh and meta.get("key") == key and py.exists():
        now = freeze(py)
        extra = sorted(set(now) - set(meta["base"]))
        if extra:  # what the last run's polybook install added
            run([py, "-m", "pip", "uninstall", "-y", *extra], env=clean_env(venv))
            now = freeze(py)
        if now == meta["base"]:
            log(f"== reusing the Colab venv in {venv.relative_to(ROOT)} (--fresh rebuilds it)")
        else:
            log("== the cached Colab venv has changed; rebuilding it")
            fresh = True
    else:
        fresh = True
    if fresh:
        made = build_venv(venv, python, torch, roots, colab)
        meta = {"key": key, "base": freeze(py), **made}
        meta_file.write_text(json.dumps(meta, indent=1))

    meta.update(python=python, python_version=pyver, python_why=why, torch=torch, roots=roots,
                colab_python=colab_python(), colab_torch=colab.get("torch", "(none)"))
    return venv, meta


def describe_venv(meta: dict, colab: dict[str, str]) -> list[str]:
    """Lines saying what the venv is, and every way in which it is not Colab."""
    lines = [f"Python: {meta['python_version']} ({meta['python']}): {meta['python_why']}",
             f"torch: {meta['torch']}, the CPU build, stands in for Colab's {meta['colab_torch']} "
             f"(installed from {meta['torch_from']})"]
    for name, why in sorted(meta["overrides"].items()):
        lines.append(f"also standing in for torch's sake: {name} ({why})")
    base = meta["base"]
    differ = [f"{base[n]} (Colab: {colab[n]})" for n in sorted(base) if n in colab and n != "torch"
              and n not in meta["overrides"] and base[n] != colab[n]]
    lacking = [base[n] for n in sorted(base) if n not in colab]
    if differ:
        lines.append("NOT at Colab's version: " + ", ".join(differ))
    if lacking:
        lines.append("in the venv but not in Colab: " + ", ".join(lacking))
    roots = [base.get(canonical(r), f"{r} (missing)") for r in meta["roots"]]
    lines.append("at Colab's versions: " + ", ".join(roots))
    return lines


# ---------------------------------------------------------------------------------------------
# Installing polybook as the setup cell does


def source_copy(dest: Path) -> Path:
    """A copy of the checkout's package sources (so that building it leaves nothing in the checkout)."""
    src = dest / "polybook-source"
    shutil.copytree(ROOT / "polybook", src / "polybook", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    return src


def compare_freezes(before: dict[str, str], after: dict[str, str], colab: dict[str, str]) -> tuple[list[str], list[str]]:
    """(problems, added): what the install changed that it must not, and what it added."""
    problems, added = [], []
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name), after.get(name)
        if b == a:
            continue
        if b is None:
            if name in colab and colab[name] != a:
                problems.append(f"{a} installed, but Colab has {colab[name]}: it would be replaced")
            else:
                added.append(a + ("" if name not in colab else " (Colab has it already)"))
        elif a is None:
            problems.append(f"{b} was removed")
        else:
            vb, va = pinned_version(b), pinned_version(a)
            verb = "replaced"
            if vb and va:
                verb = "upgraded" if _vkey(va) > _vkey(vb) else "downgraded"
            problems.append(f"{verb}: {b} -> {a}")
    return problems, added


def _vkey(v: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.+]", v))


# ---------------------------------------------------------------------------------------------
# Executing a chapter (this part runs inside the venv, with Colab's nbclient and nbformat)

PROBE = ("import json, sys, importlib.metadata as md\n"
         "from IPython.core.formatters import format_display_data as _fmt\n"
         "from polybook.display import GLUED as _glued\n"
         "print('COLAB-RUNTIME-PROBE ' + json.dumps({'executable': sys.executable, 'polybook_file': __import__('polybook').__file__, "
         "'glued': {k: _fmt(v)[0] for k, v in _glued.items()}, "
         "**{p: md.version(p) for p in ('ipython', 'ipykernel', 'ipywidgets', 'numpy', 'matplotlib', 'torch', 'polybook')}}))")

#: A CPU without AVX-512, emulated on this one: MKL limited to its AVX2 code and torch's own vector
#: kernels to AVX2. With polybook's reproducible mode (polybook._numerics) the outputs must not change.
EMULATED_CPU = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
#: Where myst-nb's ``glue`` puts a value it does not show (its outputs carry the name in metadata).
GLUE_PREFIX = "application/papermill.record/"


def execute_in_kernel(path: str, kernel: str, timeout: int, exercises_only: bool = False) -> int:
    """Execute the notebook at ``path`` in its folder with ``kernel``; print a JSON result line.
    With ``exercises_only``, only its ``exercise_cells``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    if exercises_only:
        nb.cells = exercise_cells(nb.cells)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel,
                            resources={"metadata": {"path": str(Path(path).parent)}})
    start = time.perf_counter()
    result = {"ok": True}
    try:
        client.execute()
    except CellExecutionError as exc:
        result = {"ok": False, "error": str(exc)}
    except Exception as exc:  # the kernel died, a timeout, ...
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    result["seconds"] = time.perf_counter() - start - _probe_seconds(nb)
    for out in nb.cells[-1].get("outputs", []):
        text = out.get("text", "")
        if text.startswith("COLAB-RUNTIME-PROBE "):
            result["probe"] = json.loads(text.split(" ", 1)[1])
    nb.cells.pop()
    nbformat.write(nb, path)
    print("COLAB-RUNTIME-RESULT " + json.dumps(result))
    return 0


def _probe_seconds(nb) -> float:
    from datetime import datetime

    t = nb.cells[-1].get("metadata", {}).get("execution", {})
    try:
        a, b = (datetime.fromisoformat(t[k].rstrip("Z")) for k in ("iopub.status.busy", "iopub.status.idle"))
        return (b - a).total_seconds()
    except (KeyError, ValueError):
        return 0.0


def compare_with_committed(committed: Path, executed: Path, glued: dict) -> list[str]:
    """The cells of ``executed`` whose outputs differ from ``committed``'s, by nbval's rules.

    Runs in this script's environment (which has nbval, as the test command's has). nbval's own
    functions decide which cells are compared (``# NBVAL_IGNORE_OUTPUT``, ``# NBVAL_SKIP`` and their
    tags), merge streams and compare outputs (every key but images, metadata, execution counts and
    widget ids). Outputs of ``glue(..., display=False)`` exist only where myst-nb is installed, so
    they are taken out of both sides and each is compared with the value the kernel glued under
    its name instead. Returns one message per differing cell (empty: everything reproduced).
    """
    import nbformat
    from nbval.plugin import IPyNbCell, coalesce_streams, find_comment_markers, find_metadata_tags, nocolors

    skip_compare = ("metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
                    "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg")

    def split_glue(outputs):
        shown, hidden = [], {}
        for out in outputs:
            data = out.get("data", {})
            if data and all(k.startswith(GLUE_PREFIX) for k in data):
                name = out.get("metadata", {}).get("scrapbook", {}).get("name")
                hidden[name] = {k[len(GLUE_PREFIX):]: v for k, v in data.items()}
            else:
                shown.append(out)
        return shown, hidden

    ref_nb, test_nb = nbformat.read(committed, as_version=4), nbformat.read(executed, as_version=4)
    problems = []
    for i, (ref, test) in enumerate(zip(ref_nb.cells, test_nb.cells)):
        if ref.cell_type != "code" or ref.execution_count is None:
            continue  # nbval compares only cells that were run when the notebook was committed
        options = dict(find_comment_markers(ref.source))
        options.update(find_metadata_tags(ref.metadata))
        if options.get("skip") or options.get("check", True) is False:
            continue
        ref_out, ref_glue = split_glue(coalesce_streams(ref.outputs))
        test_out, _ = split_glue(coalesce_streams(test.get("outputs", [])))
        cell = SimpleNamespace(colors=nocolors, sanitize=lambda x: x, comparison_traceback=[])
        cell.format_output_compare = lambda key, left, right, c=cell: c.comparison_traceback.append(
            f"mismatch {key!r}:\n  committed: {str(left)[:600]!r}\n  now:       {str(right)[:600]!r}")
        if not IPyNbCell.compare_outputs(cell, test_out, ref_out, skip_compare=skip_compare):
            problems.append(f"cell {i}: " + "\n".join(str(t) for t in cell.comparison_traceback))
        for name, want in ref_glue.items():
            got = {k: v for k, v in glued.get(name, {}).items() if k in want}
            want = {k: v for k, v in want.items() if k not in skip_compare}
            if {k: got.get(k) for k in want} != want:
                problems.append(f"cell {i}: glued {name!r} is {got.get('text/plain')!r}, committed {want.get('text/plain')!r}")
    if len(ref_nb.cells) != len(test_nb.cells):
        problems.append(f"{len(test_nb.cells)} cells executed, {len(ref_nb.cells)} committed")
    return problems


def edition_of(nb_path: Path) -> Path:
    """The Colab edition of a notebook of the book (``book/noise.ipynb`` -> ``colab/book/noise.ipynb``)."""
    return ROOT / "colab" / nb_path.relative_to(ROOT)


def run_chapter(py: Path, venv: Path, nb_path: Path, workdir: Path, polybook_source: Path,
                exercises: bool = False) -> dict:
    """Execute one chapter's Colab edition (or, with ``exercises``, the setup, exercise and check
    cells of its exercises-only notebook), alone in an empty folder, in the venv's kernel."""
    folder = workdir / (nb_path.stem + ("-exercises" if exercises else ""))
    folder.mkdir(parents=True)
    copy = folder / nb_path.name
    shutil.copy2(ROOT / "exercises" / nb_path.name if exercises else edition_of(nb_path), copy)
    # The chapter downloads the stored results it needs, as in Colab, from the checkout's copy of
    # the release's files (this machine has no network): polybook.experiments.stored_result.
    env = clean_env(venv, POLYBOOK_SOURCE=str(polybook_source), POLYBOOK_RESULTS_URL=(ROOT / "book" / "results").as_uri(),
                    **EMULATED_CPU)
    start = time.perf_counter()
    proc = subprocess.run([py, Path(__file__).resolve(), "--execute-in-kernel", copy, "--kernel", KERNEL_NAME]
                          + (["--exercises-only"] if exercises else []),
                          env=env, cwd=folder, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    lines = [l for l in proc.stdout.splitlines() if l.startswith("COLAB-RUNTIME-RESULT ")]
    if not lines:
        return {"ok": False, "seconds": wall, "error": proc.stdout[-4000:] or f"exit {proc.returncode}"}
    result = json.loads(lines[-1].split(" ", 1)[1])
    result["wall_seconds"] = wall
    if result["ok"] and exercises:
        result["differences"] = exercise_checks_unsolved(copy)
    elif result["ok"]:
        result["differences"] = compare_with_committed(nb_path, copy, result.get("probe", {}).get("glued", {}))
    return result


EXERCISE_CHECK_TEXT = re.compile(r"… \w+: not solved yet\. .*\n")


def exercise_cells(cells: list) -> list:
    """The cells of an exercises-only notebook that run without the reader: the code up to and
    including the one importing the checkers, then every exercise and check cell."""
    code = [c for c in cells if c["cell_type"] == "code"]
    first = next(k for k, c in enumerate(code) if "exercises as ex" in "".join(c["source"]))
    return [c for k, c in enumerate(code)
            if k <= first or {"exercise", "exercise-check"} & set(c.get("metadata", {}).get("tags", []))]


def exercise_checks_unsolved(executed: Path) -> list[str]:
    """What is wrong with an executed exercises-only notebook: a check that printed anything but
    "not solved yet" (every exercise is unsolved there), or too few checks."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    checks = [c for c in nb.cells if "exercise-check" in c.metadata.get("tags", [])]
    problems = [] if len(checks) >= 2 else [f"{len(checks)} exercise checks, expected at least 2"]
    for c in checks:
        out = "".join(o.get("text", "") for o in c.outputs)
        if not EXERCISE_CHECK_TEXT.fullmatch(out) or any(o.output_type == "error" for o in c.outputs):
            problems.append(f"check {c.source.strip()!r} printed {out[:300]!r}, not \"not solved yet\"")
    return problems


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="rebuild the Colab venv from scratch")
    parser.add_argument("--chapters", nargs="+", help="run only these chapters (names or paths)")
    parser.add_argument("--keep", action="store_true", help="keep the executed copies (their folder is printed)")
    parser.add_argument("--execute-in-kernel", help=argparse.SUPPRESS)
    parser.add_argument("--kernel", default=KERNEL_NAME, help=argparse.SUPPRESS)
    parser.add_argument("--exercises-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.execute_in_kernel:
        return execute_in_kernel(args.execute_in_kernel, args.kernel, CELL_TIMEOUT, args.exercises_only)

    colab = colab_packages()
    todo = chapters()
    names = args.chapters or os.environ.get("COLAB_RUNTIME_CHAPTERS", "").split()
    if names:
        want = {Path(c).stem for c in names}
        todo = [c for c in todo if c.stem in want]
        if len(todo) != len(want):
            raise SystemExit(f"unknown chapters: {sorted(want - {c.stem for c in todo})}")
    cells = {c.name: setup_cell(c) for c in chapters()}
    if len(set(cells.values())) != 1:
        raise SystemExit("the chapters' setup cells differ: run python scripts/sync_setup_cells.py")
    setup = next(iter(cells.values()))
    # What runs is the Colab editions: they must be the chapters' current ones.
    editions = subprocess.run([sys.executable, ROOT / "scripts" / "make_colab_editions.py", "--check"],
                              cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if editions.returncode != 0:
        log(editions.stdout.rstrip())
        raise SystemExit("the Colab editions are not the chapters' current ones: run python scripts/make_colab_editions.py")

    CACHE.mkdir(parents=True, exist_ok=True)
    lock = open(CACHE / "lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # one run at a time per checkout: they share the venv
    t0 = time.perf_counter()
    venv, meta = prepare_venv(args.fresh)
    py = venv / "bin" / "python"
    for line in describe_venv(meta, colab):
        log("   " + line)

    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="colab-runtime-") as tmp:
        tmp = Path(tmp)
        source = source_copy(tmp)
        before = freeze(py)
        log("== installing polybook as the setup cell does (POLYBOOK_SOURCE = a copy of this checkout)")
        start = time.perf_counter()
        proc = subprocess.run([py, "-c", setup], env=clean_env(venv, POLYBOOK_SOURCE=str(source)), cwd=tmp,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        install_seconds = time.perf_counter() - start
        log("   " + "\n   ".join(pip_lines(proc.stdout).strip().splitlines()))
        if proc.returncode != 0:
            failures.append(f"the setup cell failed (exit {proc.returncode})")
        after = freeze(py)
        problems, added = compare_freezes(before, after, colab)
        log(f"   took {install_seconds:.1f} s; it added: " + (", ".join(added) or "nothing"))
        for p in problems:
            log(f"   CHANGED A PACKAGE COLAB HAS: {p}")
        failures += [f"installing polybook {p}" for p in problems]

        results = {}
        if proc.returncode == 0:
            workdir = Path(tempfile.mkdtemp(prefix="colab-chapters-")) if args.keep else tmp / "chapters"
            log(f"== executing the Colab editions of {len(todo)} chapters in the venv's kernel, each alone in an empty "
                "folder, on an emulated AVX2 CPU (" + " ".join(f"{k}={v}" for k, v in EMULATED_CPU.items()) + "), and "
                "comparing every output with the chapter's committed one; then the exercises-only notebooks' "
                "setup, exercise and check cells")
            runs = [(p, False) for p in todo] + [(p, True) for p in todo if (ROOT / "exercises" / p.name).exists()]
            for nb_path, exercises in runs:
                res = run_chapter(py, venv, nb_path, workdir, source, exercises)
                name = ("exercises/" if exercises else "colab/book/") + nb_path.name
                results[name] = res
                status = "ok" if res["ok"] else "FAILED"
                if res.get("differences") and exercises:
                    status = f"CHECKS WRONG in {len(res['differences'])} cell(s)"
                    failures.append(f"{name}: its exercise checks did not all print 'not solved yet'")
                elif res.get("differences"):
                    status = f"OUTPUTS DIFFER in {len(res['differences'])} cell(s)"
                    failures.append(f"{name}: outputs differ from the committed ones of {nb_path.name} on an emulated AVX2 CPU")
                log(f"   {name:<34} {res['seconds']:7.1f} s  {status}")
                for diff in res.get("differences", []):
                    log("      " + "\n      ".join(diff.splitlines()))
                if not res["ok"]:
                    failures.append(f"{name} raised")
                    error = re.sub(r"\x1b\[[0-9;]*m", "", str(res.get("error", "")))  # IPython's colours
                    log("      " + "\n      ".join(error.strip().splitlines()[-40:]))
                probe = res.get("probe")
                if probe and not str(probe["executable"]).startswith(str(venv)):
                    failures.append(f"{name} ran in {probe['executable']}, not in the Colab venv")
                if probe and not str(probe["polybook_file"]).startswith(str(venv)):
                    failures.append(f"{name} imported polybook from {probe['polybook_file']}, not the installed copy")
            if args.keep:
                log(f"   executed copies: {workdir}")
            probes = [r["probe"] for r in results.values() if r.get("probe")]
            if probes:
                log("   in the kernel: " + ", ".join(f"{k} {v}" for k, v in probes[0].items() if k not in ("executable", "polybook_file", "glued")))

    total = sum(r["seconds"] for r in results.values())
    log(f"== chapters: {total:.0f} s in all; whole run {time.perf_counter() - t0:.0f} s")
    report = {
        "python": meta["python_version"], "python_why": meta["python_why"], "torch": meta["torch"],
        "colab_torch": meta["colab_torch"], "torch_from": meta["torch_from"], "overrides": meta["overrides"],
        "install_seconds": install_seconds, "added_by_polybook": added, "install_problems": problems,
        "emulated_cpu": EMULATED_CPU,
        "chapters": {k: {"ok": v["ok"], "seconds": round(v["seconds"], 1), "differences": v.get("differences", [])}
                     for k, v in results.items()},
        "failures": failures,
    }
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "report.json").write_text(json.dumps(report, indent=1))
    if failures:
        log("FAILED: " + "; ".join(failures))
        return 1
    log("passed: every chapter ran in Colab's package versions on an emulated AVX2 CPU and printed its committed "
        "outputs, and installing polybook changed none of Colab's packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
