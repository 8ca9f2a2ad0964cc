"""Running an experiment: checks before the first step, resumable pieces, the record at the end.

Everything is checked before any training: the config, the estimated peak memory against what
the device has free, the output folder (which one run holds at a time). A sweep made of pieces
(the widths of ``collisions``) stores each piece as it finishes, sealed with its run's config hash
and a checksum; the same command resumes from them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock: output folders go unlocked there
    fcntl = None

from .. import _validate as check
from ..train import SMOKE_ENV, Diverged, resolve_device, smoke_steps
from .overrides import apply_overrides
from .records import (
    ResultError,
    _command_line,
    _first_missing,
    _source_state,
    checksum,
    config_hash,
    read_strict_json,
    remove_new_folders,
    sealed,
    to_json,
    write_atomic,
)
from .registry import declared, get_experiment

__all__ = ["estimate_time", "run_experiment"]


SCALES = ("book", "paper")


def _out_path(out: str | Path) -> Path:
    if not str(out).strip():
        raise ValueError(f"--out must be a folder polybook can create and write, got {str(out)!r} (an empty name)")
    return Path(out)


def _make_out_folder(out: str | Path) -> tuple[Path, Path | None]:
    """Create and test-write ``out``; return it and the outermost folder this call created (or ``None``)."""
    path = _out_path(out)
    what = f"--out must be a folder polybook can create and write, got {str(out)!r}"
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} (it exists and is not a folder)")
    top = _first_missing(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".polybook-write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        remove_new_folders(path, top)
        raise ValueError(f"{what} ({err.strerror or err})") from None
    return path, top


def check_out_folder(out: str | Path) -> Path:
    """Make sure ``out`` is a folder polybook can create and write, before any work is done.

    Raises ``ValueError`` (one line) for an empty name, an existing file, a device such as
    ``/dev/null``, or a place where a folder cannot be made or written (``/proc/x``, a read-only
    disk); then no folder it made is left behind.
    """
    return _make_out_folder(out)[0]


#: The lock file of an output folder (see ``folder_lock``).
LOCK_NAME = ".lock"


def _notice(text: str) -> None:
    print(f"polybook: {text}", file=sys.stderr)


def _lock_holder(lock: Path) -> str:
    """``pid N`` of the process holding ``lock`` (it writes its pid the moment it has the lock)."""
    for _ in range(50):
        try:
            text = lock.read_text().strip()
        except OSError:
            text = ""
        if text.isdigit():
            return f"pid {text}"
        time.sleep(0.01)
    return "pid unknown"


def _take_lock(folder: Path, warn: Callable[[str], None]) -> int | None:
    """Open and lock ``folder/.lock`` and write this process's pid in it; its descriptor (``None``: no locks here)."""
    lock = folder / LOCK_NAME
    for _ in range(10):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ValueError(f"--out must be a folder polybook can create and write, got {str(folder)!r} "
                             f"({err.strerror or err})") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ValueError(f"{folder} is in use by another polybook run ({_lock_holder(lock)}): wait for "
                                 "it to finish, or use another --out") from None
            except OSError as err:  # a file system without locks (some network disks)
                warn(f"cannot lock {folder} ({err.strerror or err}): make sure no other run uses it")
                os.close(fd)
                return None
            try:  # a run that finished as we opened the file has removed it: then try the new one
                mine = os.path.samestat(os.fstat(fd), os.stat(lock))
            except FileNotFoundError:
                mine = False
            if mine:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise ValueError(f"{folder}: other runs keep taking and leaving it; try again")


@contextlib.contextmanager
def folder_lock(folder: Path, warn: Callable[[str], None] = _notice) -> Iterator[None]:
    """Hold ``folder/.lock`` for the duration: an output folder belongs to one run at a time.

    The lock is the operating system's (``flock``), so it ends with its process however that
    ends; while held the file holds the holder's pid, and it is removed on release. A folder held
    by another run raises ``ValueError`` naming that run's pid. On a file system without locks
    (some network disks) ``warn`` says so and the run goes ahead unlocked.
    """
    fd = _take_lock(folder, warn) if fcntl is not None else None
    try:
        yield
    finally:
        if fd is not None:
            try:
                (folder / LOCK_NAME).unlink(missing_ok=True)  # while still held (see _take_lock)
            except OSError:
                pass
            os.close(fd)


#: The fields of a piece file, ``pieces/NAME.json``.
PIECE_FIELDS = ("name", "config_hash", "results", "checksum")


def _piece_file(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name) + ".json"


class Pieces:
    """The finished pieces of one run (e.g. the widths of a sweep), kept under ``folder/pieces``.

    Each piece is written (atomically) the moment it is finished, so an interrupted or crashed run
    loses only the piece in progress. ``folder/pieces/run.json`` names the experiment, the hash of
    its full config and the polybook version; a repeated command reuses the pieces, and a
    different config (or version) in the same folder is refused with a ``ValueError``. With
    ``folder=None`` the pieces live in memory only.

    Each piece file holds its ``name``, the ``config_hash`` of its run, its ``results`` and a
    ``checksum`` over them (as a record's). A file that is not such a piece of this very run
    (cut short, edited, of another config, of another shape, or any other ``*.json``) is never
    used: ``warn`` says so and the run makes that piece again.
    """

    def __init__(self, folder: str | Path | None, experiment: str = "", config: Any = None,
                 warn: Callable[[str], None] | None = None) -> None:
        from .. import __version__

        self.found: dict[str, dict] = {}
        self.made = 0
        self._asked: set[str] = set()
        self._put: set[str] = set()
        self.folder = None if folder is None else Path(folder) / "pieces"
        self._initial: set[str] = set()
        self.config_hash = None if config is None else config_hash(experiment, config)
        self._warn = warn if warn is not None else _notice
        if self.folder is None:
            return
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"{self.folder} must be the folder of finished pieces, but it is a file: use another "
                             "--out, or remove it")
        stamp = {"experiment": experiment, "config_hash": self.config_hash, "polybook": __version__}
        manifest = self.folder / "run.json"
        if manifest.exists():
            try:
                old = read_strict_json(manifest)
            except ResultError:
                old = None
            if old != stamp:
                raise ValueError(
                    f"{self.folder} holds pieces of a different run ({_describe(old)}; this one is "
                    f"{_describe(stamp)}): use another --out, or delete that folder to start over"
                )
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomic(manifest, json.dumps(stamp, indent=1) + "\n")
        for f in sorted(self.folder.glob("*.json")):
            if f.name == "run.json":
                continue
            name, results, why = self._read(f)
            if why is not None:
                self._warn(f"{f} {why}: ignored, the run makes that piece again")
                continue
            self.found[name] = results
        self._initial = set(self.found)

    def _read(self, f: Path) -> tuple[str | None, dict | None, str | None]:
        """``(name, results, None)`` for a sealed piece of this run in ``f``; ``(None, None, why)`` otherwise."""
        try:
            piece = read_strict_json(f)
        except ResultError as err:
            return None, None, str(err).removeprefix(f"{f}: ")
        shape = "is not a piece of this run (a piece holds its " + ", ".join(PIECE_FIELDS) + ")"
        if not isinstance(piece, dict) or not all(k in piece for k in PIECE_FIELDS):
            return None, None, shape
        if not sealed(piece):
            return None, None, "does not match its checksum (edited or damaged after it was written)"
        name, results = piece["name"], piece["results"]
        if not isinstance(name, str) or not isinstance(results, dict):
            return None, None, shape
        if piece["config_hash"] != self.config_hash:
            return None, None, (f"belongs to another run (config {str(piece['config_hash'])[:40]}; this run's is "
                                f"{self.config_hash})")
        if _piece_file(name) != f.name:
            return None, None, f"holds the piece {name[:40]!r}, whose file is {_piece_file(name)[:45]}"
        return name, results, None

    def get(self, name: str) -> dict | None:
        """The stored results of piece ``name``, or ``None`` when it is still to do."""
        self._asked.add(name)
        return self.found.get(name)

    @property
    def reused(self) -> int:
        """How many pieces asked for so far came from an earlier run."""
        return len(self._asked & self._initial)

    def put(self, name: str, results: dict) -> None:
        """Store finished piece ``name`` (sealed with its run's config hash and a checksum)."""
        if name in self._put:
            raise RuntimeError(f"piece {name!r} was made twice in one run: each piece of a run needs its own name")
        body = {"name": name, "config_hash": self.config_hash, "results": results}
        try:
            piece = {**body, "checksum": checksum(body)}
        except ValueError:
            to_json(body)  # names the first number that is not finite
            raise
        text = to_json(piece)
        self._put.add(name)
        self.found[name] = results
        self.made += 1
        if self.folder is not None:
            write_atomic(self.folder / _piece_file(name), text)


def _describe(stamp: Any) -> str:
    if not isinstance(stamp, dict):
        return "an unreadable run.json"
    return f"{stamp.get('experiment')!s}, config {stamp.get('config_hash')!s}, polybook {stamp.get('polybook')!s}"


#: A rough CPU rate used only when no calibration can be made (flop/s).
_FALLBACK_RATE = 5e10


def measured_rate(device: torch.device | str = "cpu", seconds: float = 0.3) -> float:
    """Floating-point operations per second of polybook's training step on ``device`` (a quick timing).

    The timed step is a batch of models of the size a paper-scale run trains on that kind of device
    (8 models of n = 128, m = 512 on a CPU; 16 of n = 256, m = 2048 on a GPU, where small products
    would time the launch latency instead of the arithmetic).
    """
    from ..models import init_weights, loss_and_grad

    dev = torch.device(device)
    b, n, m = (8, 128, 512) if dev.type == "cpu" else (16, 256, 2048)
    W = init_weights(b, n, m).to(dev)
    loss_and_grad(W, 1e-3)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        loss_and_grad(W, 1e-3)
        done += 1
        if dev.type == "cuda":
            torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return 4 * n**2 * m * b * done / elapsed if elapsed > 0 else _FALLBACK_RATE


def estimate_seconds(config: Any, device: torch.device | str = "cpu") -> float:
    """A rough runtime of ``config`` on ``device``: its flop count over a measured rate."""
    return config.flops() / measured_rate(device)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_time(items: Sequence[Any], scale: str = "paper", device: str = "auto") -> str:
    """One line that prices a chapter's training before it runs: each of ``items`` (an experiment's
    name, taken at ``scale``, or a config with a ``flops()`` method, shown by its class name) at
    its flop count over the rate of a short timed training step on ``device`` (``"auto"``: the GPU if
    there is one), and their total.

    The price covers the arithmetic of the training steps, which dominates every long paper-scale
    run; analysis and plotting come on top, and a short run of small models is bound by the fixed
    cost of each step instead, which the line then says. Under ``POLYBOOK_SMOKE_STEPS`` the price is still that of the full
    configs, and the line adds that this execution is capped and takes far less.

    >>> line = estimate_time(["collisions"], "book", device="cpu")
    >>> line.startswith("Training at book scale on cpu")
    True

    Introduced in the book: :doc:`/book/superposition` (chapter superposition).
    """
    check.choice("scale", scale, SCALES)
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or not items:
        raise ValueError(f"items must be a non-empty list of experiment names or configs, got {items!r}")
    dev = resolve_device(device)
    rate = measured_rate(dev)
    parts, total = [], 0.0
    for item in items:
        if isinstance(item, str):
            config, label = declared(item).scales[scale], item
        elif callable(getattr(item, "flops", None)):
            config, label = item, type(item).__name__
        else:
            raise ValueError(f"each item must be an experiment name or a config with flops(), got {item!r}")
        seconds = float(config.flops()) / rate
        total += seconds
        parts.append(f"{label} {_duration(seconds)}")
    line = (f"Training at {scale} scale on {dev.type}, at a measured {rate / 1e9:.3g} GFLOP/s: "
            f"{', '.join(parts)}; about {_duration(total)} in all")
    if dev.type == "cpu" and total > 600:
        line += " (a GPU runtime is far faster)"
    elif total < 600:
        line += " (arithmetic only: small models are bound by the fixed cost of each step, so expect longer)"
    if (cap := smoke_steps()) is not None:
        line += f". {SMOKE_ENV}={cap} caps every run at {cap} steps: this execution takes far less"
    return line + "."


def run_experiment(
    name: str,
    scale: str = "book",
    overrides: Sequence[str] | dict[str, Any] = (),
    *,
    device: str = "auto",
    seed: int | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> dict:
    """Run experiment ``name`` at ``scale`` and return its record.

    The record holds ``experiment``, ``scale``, ``config`` (every field), ``results`` (the
    experiment's numbers), ``provenance`` (polybook, torch and Python versions, polybook's git
    revision and whether its code was modified, device, the CPU arithmetic (``numerics``: MKL's
    reproducible mode and the CPU), wall seconds, command line, pieces
    reused) and ``checksum``. With ``out`` it is also written to ``out/result.json``.

    Everything is checked before the first step: the config, the estimated peak memory against
    what the device has free, and the output folder (created and test-written, and held: one run
    at a time, see ``folder_lock``); any problem raises ``ValueError``, and a folder this call
    made for a run it then refuses is removed again. A run whose loss or weights become NaN or
    infinite raises ``polybook.train.Diverged`` and writes nothing. With ``out``, an experiment made
    of pieces (the widths of ``collisions``) stores each as it finishes under ``out/pieces`` and a
    repeated call reuses those that are sealed pieces of this very config (see ``Pieces``).
    ``warn`` receives notices (an overwritten result, reused or ignored pieces, a long paper-scale
    run on a CPU); by default they go to stderr.

    Introduced in the book: :ref:`sparsification-speed` (chapter regularisation).
    """
    from ..train import check_fits

    say = warn if warn is not None else _notice
    exp = get_experiment(name)
    check.choice("scale", scale, SCALES)
    config = apply_overrides(exp.scales[scale], overrides)
    if seed is not None:
        config = apply_overrides(config, {"seed": seed})
    dev = resolve_device(device)
    if out is not None:
        _out_path(out)
    check_fits(config.peak_bytes(dev), dev, f"{name} at {scale} scale")
    if out is None:
        return _run(exp, scale, config, dev, progress, say, Pieces(None), None)
    path, top = _make_out_folder(out)
    with contextlib.ExitStack() as held:
        locked = False
        try:
            held.enter_context(folder_lock(path, say))
            locked = True
            pieces = Pieces(path if exp.resumable else None, name, config, warn=say)
        except BaseException:  # refused before training: remove what this call made, never more
            if locked and top is not None:
                (path / "pieces" / "run.json").unlink(missing_ok=True)
                remove_new_folders(path / "pieces", path / "pieces")
            held.close()
            remove_new_folders(path, top)
            raise
        return _run(exp, scale, config, dev, progress, say, pieces, path)


def _run(exp: Any, scale: str, config: Any, dev: torch.device, progress: bool, say: Callable[[str], None],
         pieces: Pieces, path: Path | None) -> dict:
    """Train, make the record and (with ``path``) write it: the part of :func:`run_experiment` after its checks."""
    from .. import __version__, _numerics

    name = exp.name
    if pieces.found:
        say(f"reusing {len(pieces.found)} finished piece(s) from {pieces.folder}")
    if scale == "paper" and dev.type == "cpu":
        est = estimate_seconds(config, dev)
        say(f"{name} at paper scale on the CPU: expect roughly {_duration(est)} (a GPU is far faster: --device cuda)")
    start = time.perf_counter()
    try:
        results = exp.run(config, dev, progress, pieces=pieces) if exp.resumable else exp.run(config, dev, progress)
    except Diverged as err:
        where = err.where if err.where and err.where.startswith(name) else f"{name} {err.where or ''}".strip()
        raise Diverged(where, err.detail, err.step, err.steps, err.instance) from None
    record = {
        "experiment": name,
        "scale": scale,
        "config": dataclasses.asdict(config),
        "results": results,
        "provenance": {
            "polybook": __version__,
            **_source_state(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": str(dev) if dev.type != "cuda" else f"cuda ({torch.cuda.get_device_name(dev)})",
            "numerics": _numerics.describe() if dev.type == "cpu" else "not bitwise reproducible across devices",
            "wall_seconds": round(time.perf_counter() - start, 2),
            "command": _command_line(),
            "pieces_reused": pieces.reused,
            **({"smoke_steps": cap} if (cap := smoke_steps()) is not None else {}),
        },
    }
    try:
        record["checksum"] = checksum(record)
        text = to_json(record)
    except ValueError as err:
        raise Diverged(name, f"produced a result that is not finite ({err}); lower lr", 0, 0, 0) from None
    if path is not None:
        target = path / "result.json"
        if target.exists():
            say(f"replacing the existing {target}")
        write_atomic(target, text)
    return record
