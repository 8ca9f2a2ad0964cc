"""Result records: strict JSON written atomically, sealed by a checksum, with their provenance.

A record is a dict: ``experiment``, ``scale``, ``config``, ``results``, ``provenance`` and
``checksum`` (SHA-256 of everything else, keys sorted). ``load_result`` refuses a file that
is missing, truncated, incomplete, edited or not strict JSON, always with a :class:`ResultError`
naming it; :func:`stored_result` finds the book's own records (or downloads them once, in a runtime
without the book's files, keeping nothing that fails its check).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["ResultError", "stored_result", "release_file", "config_hash"]


def _git(root: Path, *args: str) -> str | None:
    try:
        res = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def _source_state() -> dict:
    """polybook's own git revision and whether its tracked files differ from it.

    Only a checkout of polybook itself counts: the package's parent folder must be the top of a
    git work tree whose ``pyproject.toml`` names ``polybook`` (an installed copy sitting inside some
    other repository reports no revision rather than that repository's).
    """
    root = Path(__file__).resolve().parents[2]
    top = _git(root, "rev-parse", "--show-toplevel")
    try:
        ours = top is not None and Path(top).resolve() == root and 'name = "polybook"' in (root / "pyproject.toml").read_text()
    except OSError:
        ours = False
    if not ours:
        return {"git_revision": None, "git_dirty": None}
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no", "--", "polybook")
    return {"git_revision": _git(root, "rev-parse", "HEAD"), "git_dirty": None if dirty is None else bool(dirty)}


def _command_line() -> str | None:
    """How this process was started, when it was the polybook command line."""
    if Path(sys.argv[0]).name in ("__main__.py", "polybook"):
        return " ".join(["python -m polybook", *sys.argv[1:]])
    return None


class ResultError(ValueError):
    """A stored result file that is missing, truncated, edited or incomplete (names the file).

    Introduced in the book: :ref:`sparsification-speed` (chapter regularisation).
    """


def to_json(obj: Any) -> str:
    """Strict JSON (no ``NaN``/``Infinity`` literals, which most parsers reject).

    Raises ``ValueError`` naming the first non-finite number's place, e.g. ``results.loss[3]``.
    """
    def find(x: Any, where: str) -> str | None:
        if isinstance(x, float) and not math.isfinite(x):
            return where
        items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, (list, tuple)) else ()
        for k, v in items:
            hit = find(v, f"{where}.{k}" if isinstance(x, dict) else f"{where}[{k}]")
            if hit:
                return hit
        return None

    bad = find(obj, "record")
    if bad:
        raise ValueError(f"{bad} is not a finite number: the run produced NaN or infinity")
    return json.dumps(obj, indent=1, allow_nan=False) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder and a rename.

    A full disk, a kill or any error part-way leaves the previous ``path`` as it was.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _canonical(record: dict) -> bytes:
    body = {k: v for k, v in record.items() if k != "checksum"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def checksum(record: dict) -> str:
    """``"sha256:<hex>"`` of the record's content (every field but ``checksum`` itself, keys sorted)."""
    return "sha256:" + hashlib.sha256(_canonical(record)).hexdigest()


def config_hash(experiment: str, config: Any) -> str:
    """A short hash of an experiment's name and full config: pieces are reused only under the same one.

    Introduced in the book: :doc:`/book/reproduce` (chapter reproduce).
    """
    text = json.dumps({"experiment": experiment, "config": dataclasses.asdict(config)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


REQUIRED_FIELDS = ("experiment", "scale", "config", "results", "provenance", "checksum")


class _NotFinite(ValueError):
    """A ``NaN``/``Infinity`` literal, or a number too large for a float, in a file read strictly."""


def _refuse_constant(name: str) -> Any:
    raise _NotFinite(name)


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise _NotFinite(text)
    return x


def read_strict_json(path: Path) -> Any:
    """The JSON value in file ``path``, read as polybook writes it: UTF-8 strict JSON of finite numbers.

    Raises :class:`ResultError` naming the file, saying what is wrong: it cannot be read, is not
    UTF-8, holds ``NaN``/``Infinity`` (or a number no float holds), is nested too deeply, or is not
    valid JSON.
    """
    try:
        data = path.read_bytes()
    except (OSError, ValueError) as err:
        raise ResultError(f"{path}: cannot be read ({getattr(err, 'strerror', None) or err})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ResultError(f"{path}: is not UTF-8 text (byte {err.start})") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NotFinite as err:
        raise ResultError(f"{path}: holds {err}, which is not a finite number (strict JSON has no NaN or "
                          "Infinity)") from None
    except RecursionError:
        raise ResultError(f"{path}: is nested too deeply to be a result record") from None
    except ValueError as err:
        raise ResultError(f"{path}: is not valid JSON, perhaps truncated ({err})") from None


def sealed(record: dict) -> bool:
    """Whether ``record`` carries a ``checksum`` that matches its content (never raises)."""
    try:
        return record.get("checksum") == checksum(record)
    except (ValueError, TypeError, RecursionError):
        return False


def load_result(path: str | Path) -> dict:
    """Read and verify a ``result.json`` written by :func:`run_experiment` (a file or its folder).

    Raises :class:`ResultError` naming the file when it is missing, not UTF-8, not valid strict
    JSON (truncated; ``NaN`` or ``Infinity``; nested too deeply), lacks a field, or no longer
    matches its checksum (edited after it was written). It raises nothing else for any content.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "result.json"
    record = read_strict_json(path)
    if not isinstance(record, dict):
        raise ResultError(f"{path}: holds no result record")
    missing = [k for k in REQUIRED_FIELDS if k not in record]
    if missing:
        raise ResultError(f"{path}: lacks the field(s) {', '.join(missing)}")
    if not sealed(record):
        raise ResultError(f"{path}: does not match its checksum (edited or damaged after it was written)")
    return record


#: Environment variable: where :func:`stored_result` downloads a stored result that this copy of the
#: book lacks, as a URL prefix (``https://...`` or ``file://...``) followed by ``/FOLDER/result.json``.
#: By default the release's own files: ``raw.githubusercontent.com/<repository>/<tag>/book/results``.
RESULTS_URL_ENV = "POLYBOOK_RESULTS_URL"


def results_url() -> str:
    """The URL prefix :func:`stored_result` downloads from (see :data:`RESULTS_URL_ENV`)."""
    from .._release import REPOSITORY, TAG

    default = REPOSITORY.replace("https://github.com/", "https://raw.githubusercontent.com/") + f"/{TAG}/book/results"
    return os.environ.get(RESULTS_URL_ENV, "").strip() or default


def _local_release_file(name: str) -> Path | None:
    """``results/NAME`` (beside a notebook) or ``book/results/NAME`` (from the root), whichever exists."""
    return next((base / name for base in (Path("results"), Path("book") / "results") if (base / name).is_file()), None)


def _first_missing(folder: Path) -> Path | None:
    """The outermost of ``folder`` and its parents that does not exist yet (``None``: it exists)."""
    top = None
    for p in (folder, *folder.parents):
        if p.exists() or p.is_symlink():
            break
        top = p
    return top


def remove_new_folders(folder: Path, top: Path | None) -> None:
    """Remove ``folder`` and its parents up to ``top`` (what :func:`_first_missing` found), while empty.

    Only empty folders go: anything another program put there meanwhile stays, with its folders.
    """
    if top is None:
        return
    for p in (folder, *folder.parents):
        try:
            p.rmdir()
        except OSError:
            return
        if p == top:
            return


def release_file(name: str, timeout: float = 60.0) -> Path:
    """The file ``book/results/NAME`` of this copy of the book, or downloaded once from the release.

    Looks in ``results/`` (from the notebook's folder) and ``book/results/`` (from the root); otherwise
    downloads ``results_url()/NAME`` into ``results/NAME`` (written atomically) and returns that path.
    Raises :class:`ResultError` naming the URL when it cannot be read, or the file when it cannot be
    saved; then nothing is saved and no folder is left behind.

    Introduced in the book: :doc:`/book/reproduce` (chapter reproduce).
    """
    import http.client
    import urllib.request

    local = _local_release_file(name)
    if local is not None:
        return local
    url, dest = f"{results_url()}/{name}", Path("results") / name
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (OSError, ValueError, http.client.HTTPException) as err:
        raise ResultError(f"{dest}: not in this copy of the book, and {url} could not be read ({err})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ResultError(f"{url}: not UTF-8 text; nothing was saved") from None
    top = _first_missing(dest.parent)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(dest, text)
    except OSError as err:
        remove_new_folders(dest.parent, top)
        raise ResultError(f"{dest}: downloaded from {url} but could not be saved ({err.strerror or err})") from None
    return dest


def stored_result(folder: str, timeout: float = 60.0) -> dict:
    """The stored result ``book/results/FOLDER/result.json``, verified like ``load_result``.

    A chapter runs beside its results in a clone of the repository (``results/FOLDER`` from the
    notebook's folder, ``book/results/FOLDER`` from the root), but alone in Colab. There the file
    is downloaded once from ``results_url`` (the release the setup cell installed) into
    ``results/FOLDER/`` and verified by its checksum. Raises :class:`ResultError` naming the URL and
    the command that makes the result when the file is neither here nor downloadable.

    Introduced in the book: :ref:`sparsification-speed` (chapter regularisation).
    """
    name = f"{folder}/result.json"
    local = _local_release_file(name)
    if local is not None:  # this copy's own file: never deleted, even when it fails its check
        return load_result(local)
    top = _first_missing((Path("results") / name).parent)
    try:
        dest = release_file(name, timeout)
    except ResultError as err:
        raise ResultError(
            f"{err}; make it with `python -m polybook run EXPERIMENT --scale book --out results/{folder}` "
            "(the chapter names the experiment)"
        ) from None
    try:
        return load_result(dest)
    except BaseException:  # never cache a damaged copy (the next call downloads again), nor its folders
        dest.unlink(missing_ok=True)
        remove_new_folders(dest.parent, top)
        raise


