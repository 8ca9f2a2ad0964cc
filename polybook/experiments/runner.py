"""Running an experiment: checks before the first step, resumable pieces, the record at the end.

Everything is checked before any training: the config, the output folder, the estimated peak
memory against what the device has free. A sweep made of pieces (the widths of ``collisions``)
stores each piece as it finishes; the same command resumes from them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .. import _validate as check
from ..train import Diverged, resolve_device
from .overrides import apply_overrides
from .records import _command_line, _source_state, checksum, config_hash, to_json, write_atomic
from .registry import get_experiment

__all__ = ["run_experiment"]


SCALES = ("book", "paper")


#: Environment variable for the smoke test of the paper-scale switch: when set to ``k``, every
#: registered config (both scales) has each step count capped at ``k``, so a notebook or command
#: with ``--scale paper`` runs its whole code path in seconds. Its numbers mean nothing, and a
#: record made under it says so in its provenance. Never set it for a real run.
SMOKE_ENV = "POLYBOOK_SMOKE_STEPS"


def smoke_steps() -> int | None:
    """The step cap of :data:`SMOKE_ENV`, or ``None`` when it is not set."""
    text = os.environ.get(SMOKE_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{SMOKE_ENV} must be a positive integer when set, got {text!r}")
    return int(text)


def check_out_folder(out: str | Path) -> Path:
    """Make sure ``out`` is a folder polybook can create and write, before any work is done.

    Raises ``ValueError`` (one line) for an existing file, a device such as ``/dev/null``, or a
    place where a folder cannot be made or written (``/proc/x``, a read-only disk).
    """
    path = Path(out)
    what = f"--out must be a folder polybook can create and write, got {str(out)!r}"
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} (it exists and is not a folder)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".polybook-write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"{what} ({err.strerror or err})") from None
    return path


class Pieces:
    """The finished pieces of one run (e.g. the widths of a sweep), kept under ``folder/pieces``.

    Each piece is written (atomically) the moment it is finished, so an interrupted or crashed run
    loses only the piece in progress. ``folder/pieces/run.json`` names the experiment, the hash of
    its full config and the polybook version; a repeated command reuses the pieces, and a
    different config (or version) in the same folder is refused with a ``ValueError``. With
    ``folder=None`` the pieces live in memory only.
    """

    def __init__(self, folder: str | Path | None, experiment: str = "", config: Any = None) -> None:
        from .. import __version__

        self.found: dict[str, dict] = {}
        self.made = 0
        self._asked: set[str] = set()
        self.folder = None if folder is None else Path(folder) / "pieces"
        self._initial: set[str] = set()
        if self.folder is None:
            return
        stamp = {"experiment": experiment, "config_hash": config_hash(experiment, config), "polybook": __version__}
        manifest = self.folder / "run.json"
        if manifest.exists():
            try:
                old = json.loads(manifest.read_text())
            except (OSError, ValueError):
                old = None
            if old != stamp:
                raise ValueError(
                    f"{self.folder} holds pieces of a different run ({_describe(old)}; this one is "
                    f"{_describe(stamp)}): use another --out, or delete that folder to start over"
                )
            for f in sorted(self.folder.glob("*.json")):
                if f.name == "run.json":
                    continue
                try:
                    piece = json.loads(f.read_text())
                except ValueError:  # a piece cut short by a crash is simply made again
                    continue
                self.found[piece["name"]] = piece["results"]
            self._initial = set(self.found)
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomic(manifest, json.dumps(stamp, indent=1) + "\n")

    def get(self, name: str) -> dict | None:
        """The stored results of piece ``name``, or ``None`` when it is still to do."""
        self._asked.add(name)
        return self.found.get(name)

    @property
    def reused(self) -> int:
        """How many pieces asked for so far came from an earlier run."""
        return len(self._asked & self._initial)

    def put(self, name: str, results: dict) -> None:
        """Store finished piece ``name``."""
        text = to_json({"name": name, "results": results})
        self.found[name] = results
        self.made += 1
        if self.folder is not None:
            safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name)
            write_atomic(self.folder / f"{safe}.json", text)


def _describe(stamp: dict | None) -> str:
    if not isinstance(stamp, dict):
        return "an unreadable run.json"
    return f"{stamp.get('experiment')!s}, config {stamp.get('config_hash')!s}, polybook {stamp.get('polybook')!s}"


#: A rough CPU rate used only when no calibration can be made (flop/s).
_FALLBACK_RATE = 5e10


def measured_rate(device: torch.device | str = "cpu", seconds: float = 0.3) -> float:
    """Floating-point operations per second of polybook's training step on ``device`` (a quick timing)."""
    from ..models import init_weights, loss_and_grad

    dev = torch.device(device)
    W = init_weights(8, 128, 512).to(dev)
    loss_and_grad(W, 1e-3)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        loss_and_grad(W, 1e-3)
        done += 1
    if dev.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return 4 * 128**2 * 512 * 8 * done / elapsed if elapsed > 0 else _FALLBACK_RATE


def estimate_seconds(config: Any, device: torch.device | str = "cpu") -> float:
    """A rough runtime of ``config`` on ``device``: its flop count over a measured rate."""
    return config.flops() / measured_rate(device)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


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

    Everything is checked before the first step: the config, the output folder (created and
    test-written), and the estimated peak memory against what the device has free; any problem
    raises ``ValueError``. A run whose loss or weights become NaN or infinite raises
    ``polybook.train.Diverged`` and writes nothing. With ``out``, an experiment made of
    pieces (the widths of ``collisions``) stores each as it finishes under ``out/pieces`` and a
    repeated call reuses them. ``warn`` receives notices (an overwritten result, reused pieces,
    a long paper-scale run on a CPU); by default they go to stderr.

    Introduced in the book: :ref:`sparsification-speed` (chapter regularisation).
    """
    from .. import __version__, _numerics
    from ..train import check_fits

    say = warn if warn is not None else (lambda text: print(f"polybook: {text}", file=sys.stderr))
    exp = get_experiment(name)
    check.choice("scale", scale, SCALES)
    config = apply_overrides(exp.scales[scale], overrides)
    if seed is not None:
        config = apply_overrides(config, {"seed": seed})
    dev = resolve_device(device)
    path = None if out is None else check_out_folder(out)
    check_fits(config.peak_bytes(dev), dev, f"{name} at {scale} scale")
    pieces = Pieces(path if exp.resumable else None, name, config)
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


