"""Named experiments at two scales, and a runner that stores results with their provenance.

Each experiment is a frozen config dataclass (validated on construction), a ``book`` and a
``paper`` instance of it, and a ``run`` function returning plain JSON-able numbers. The command
line (``python -m polybook``) and the notebooks both go through :func:`run_experiment`, so a
number in the book can always be re-made with one command.

- ``book`` scale runs on 2 CPU cores inside CI;
- ``paper`` scale is the paper's own setting and wants a GPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import json
import math
import os
import platform
import subprocess
import sys
import time
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import _validate as check
from .models import init_weights
from .metrics import polysemantic_neurons, polysemantic_neurons_by_mass, polysemantic_sign_pattern
from .theory import expected_polysemantic_exact, predicted_polysemantic
from .sweep import train_widths
from .train import OPTIMIZERS, Diverged, TrainConfig, TrainResult, resolve_device, train, train_memory_bytes

__all__ = [
    "EXPERIMENTS",
    "get_experiment",
    "all_experiments",
    "ResultError",
    "config_hash",
    "run_experiment",
    "stored_result",
    "Experiment",
    "CollisionsConfig",
]

SCALES = ("book", "paper")


@dataclass(frozen=True)
class Experiment:
    """A named experiment: its config type, one config per scale, and how to run it.

    Introduced in the book: :doc:`/book/superposition` (chapter superposition).
    """

    name: str
    summary: str
    scales: dict[str, Any]
    run: Callable[..., dict]  # run(config, device: torch.device, progress: bool) -> dict


#: Every named experiment, by name.
#:
#: Introduced in the book: :doc:`/book/reproduce` (chapter reproduce).
EXPERIMENTS: dict[str, Experiment] = {}


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


def cap_steps(config: Any, steps: int) -> Any:
    """``config`` with every step count capped at ``steps`` (fields ``steps`` and ``*_steps``).

    A config whose step counts are derived (``SparsificationConfig``) provides ``capped(steps)``.
    """
    if hasattr(config, "capped"):
        return config.capped(steps)
    changes = {f.name: min(getattr(config, f.name), steps) for f in dataclasses.fields(config)
               if f.name == "steps" or f.name.endswith("_steps")}
    return dataclasses.replace(config, **changes)


def register(name: str, summary: str, book: Any, paper: Any) -> Callable:
    """Decorator adding ``run(config, device, progress) -> dict`` to :data:`EXPERIMENTS`."""

    def wrap(run: Callable[..., dict]) -> Callable[..., dict]:
        scales = {"book": book, "paper": paper}
        cap = smoke_steps()
        if cap is not None:
            scales = {k: cap_steps(v, cap) for k, v in scales.items()}
        EXPERIMENTS[name] = Experiment(name, summary, scales, run)
        return run

    return wrap


# --------------------------------------------------------------------------- collisions


@dataclass(frozen=True)
class CollisionsConfig:
    """Train the L1-regularised autoencoder for each ``m`` and count polysemantic neurons.

    Introduced in the book: :doc:`/book/collisions` (chapter collisions).

    ``seed`` seeds the first ``m``; the ``j``-th ``m`` uses ``seed + j``. On a GPU all widths
    train in one batched program (``polybook.sweep.train_widths``), on a CPU one after another;
    the models are the same either way.
    """

    n: int = 64
    m: tuple[int, ...] = (64, 128, 256, 512)
    instances: int = 16
    steps: int = 7500
    lr: float = 1e-3
    l1: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check.integer("n", self.n)
        check.integers("m", self.m)
        check.integer("instances", self.instances)
        check.integer("steps", self.steps)
        check.number("lr", self.lr, 0.0, strict=True)
        check.number("l1", self.l1)
        check.choice("optimizer", self.optimizer, OPTIMIZERS)
        check.number("weight_decay", self.weight_decay)
        check.seed("seed", self.seed)

    def train_config(self, j: int) -> TrainConfig:
        """The :class:`~polybook.train.TrainConfig` of the ``j``-th ``m``."""
        return TrainConfig(
            n=self.n, m=self.m[j], instances=self.instances, steps=self.steps, lr=self.lr,
            optimizer=self.optimizer, l1=self.l1, weight_decay=self.weight_decay, seed=self.seed + j,
        )

    def peak_bytes(self, device: torch.device) -> int:
        """Estimated peak memory: the widest width on a CPU, every width padded and batched elsewhere."""
        if device.type == "cpu":
            return max(train_memory_bytes(self.train_config(j)) for j in range(len(self.m)))
        batched = dataclasses.replace(self.train_config(0), m=max(self.m), instances=self.instances * len(self.m))
        return train_memory_bytes(batched)

    def flops(self) -> float:
        """Floating-point operations of the whole sweep (Gram forward and gradient, 4 n^2 m per step)."""
        return float(sum(4 * self.n**2 * m * self.instances * self.steps for m in self.m))


@register(
    "collisions",
    "polysemantic neurons vs m for the L1 autoencoder, against n^2/(4m)",
    book=CollisionsConfig(),
    paper=CollisionsConfig(n=256, m=tuple(range(256, 4097, 256)), instances=16),
)
def run_collisions(cfg: CollisionsConfig, device: torch.device, progress: bool = True,
                   pieces: Pieces | None = None) -> dict:
    """Per ``m``: band-rule and by-mass counts per instance, their sign split, the predictions.

    Each width is a piece: with ``pieces`` (see :class:`Pieces`) a finished width is stored as
    soon as it is done and skipped when the run is repeated.
    """
    pieces = Pieces(None) if pieces is None else pieces
    todo = [j for j, m in enumerate(cfg.m) if pieces.get(f"m={m}") is None]
    with tqdm(total=len(cfg.m), initial=len(cfg.m) - len(todo), desc="collisions widths", unit="width",
              disable=not progress or len(cfg.m) == 1, file=sys.stderr, leave=False) as bar:
        if device.type == "cpu":  # one loop per width: padding would only add work on a CPU
            for j in todo:
                res = train(cfg.train_config(j), device=str(device), progress=progress,
                            desc=f"collisions m={cfg.m[j]}")
                pieces.put(f"m={cfg.m[j]}", summarise_width(cfg.n, cfg.m[j], res))
                bar.update()
        elif todo:  # every width left in one batched program (identical models, see polybook.sweep)
            ms = [cfg.m[j] for j in todo]
            try:
                runs = train_widths(cfg.train_config(0), ms, seeds=[cfg.seed + j for j in todo],
                                    device=str(device), progress=progress)
            except Diverged as err:
                raise Diverged(f"collisions {err.where}", err.detail, err.step, err.steps, err.instance) from None
            for m, res in zip(ms, runs):
                pieces.put(f"m={m}", summarise_width(cfg.n, m, res))
                bar.update()
    return assemble_collisions(cfg, [pieces.get(f"m={m}") for m in cfg.m])


#: The per-width lists of a collisions record, in the order they are stored.
COLLISION_FIELDS = ("polysemantic", "polysemantic_by_mass", "mixed_sign", "same_sign", "predicted",
                    "predicted_exact", "final_loss")


def summarise_width(n: int, m: int, res: TrainResult) -> dict:
    """The collisions numbers of one trained width (one value or one list per instance per field)."""
    signs = polysemantic_sign_pattern(res.W)
    return {
        "polysemantic": polysemantic_neurons(res.W).tolist(),
        "polysemantic_by_mass": polysemantic_neurons_by_mass(res.W).tolist(),
        "mixed_sign": signs[:, 0].tolist(),
        "same_sign": signs[:, 1].tolist(),
        "predicted": predicted_polysemantic(n, m),
        "predicted_exact": expected_polysemantic_exact(n, m),
        "final_loss": round(float(res.losses[-1].mean()), 6),
    }


def assemble_collisions(cfg: CollisionsConfig, widths: Sequence[dict]) -> dict:
    """The ``results`` of the collisions experiment from its per-width summaries."""
    return {"n": cfg.n, "m": list(cfg.m), **{k: [w[k] for w in widths] for k in COLLISION_FIELDS}}


def summarise_collisions(cfg: CollisionsConfig, runs: Iterable[TrainResult]) -> dict:
    """The ``results`` of the collisions experiment from its trained runs (one per ``m``)."""
    return assemble_collisions(cfg, [summarise_width(cfg.n, m, res) for m, res in zip(cfg.m, runs)])


def replay_collisions(record: dict, widths: int = 1, instances: int = 2, device: str = "cpu") -> dict:
    """Re-train a cheap slice of a stored ``collisions`` record and return both counts.

    The slice is the first ``instances`` instances of the first ``widths`` widths, trained from the
    very same initial weights (the stored run's draw, sliced). Returns ``{"stored": [...],
    "replayed": [...]}``, one list of counts per width. On the device that made the record the
    two agree exactly; across devices float rounding may move a borderline weight across the band.
    """
    if record.get("experiment") != "collisions":
        raise ValueError(f"record must be a collisions result, got {record.get('experiment')!r}")
    cfg = CollisionsConfig(**{**record["config"], "m": tuple(record["config"]["m"])})
    out: dict[str, list] = {"stored": [], "replayed": []}
    for j in range(min(widths, len(cfg.m))):
        full = cfg.train_config(j)
        W0 = init_weights(full.instances, full.n, full.m, seed=full.seed)[:instances]
        res = train(dataclasses.replace(full, instances=W0.shape[0]), W0=W0, device=device, progress=False)
        out["stored"].append(record["results"]["polysemantic"][j][:instances])
        out["replayed"].append(polysemantic_neurons(res.W).tolist())
    return out


# --------------------------------------------------------------------------- experiments of other modules

#: Modules that register further experiments when imported (one per chapter that adds one).
_EXPERIMENT_MODULES: tuple[str, ...] = ("polybook.collisions", "polybook.noise", "polybook.sparsification", "polybook.superposition",
                                         "polybook.cooccurrence", "polybook.prevention", "polybook.beyond")


def _load_all() -> None:
    for mod in _EXPERIMENT_MODULES:
        importlib.import_module(mod)


def all_experiments() -> dict[str, Experiment]:
    """Every registered experiment by name, in name order (importing the chapter modules that register them).

    Introduced in the book: :doc:`/book/reproduce` (chapter reproduce).

    >>> "collisions" in all_experiments()
    True
    """
    _load_all()
    return {name: EXPERIMENTS[name] for name in sorted(EXPERIMENTS)}


# --------------------------------------------------------------------------- running and storing


def _coerce(field: str, text: str, kind: Any) -> Any:
    """Parse ``text`` as the type ``kind`` of config field ``field``."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    try:
        if origin is tuple:
            item = args[0]
            return tuple(_coerce(field, part, item) for part in text.split(",") if part.strip())
        if origin in (typing.Union, types.UnionType):
            if text.lower() == "none" and type(None) in args:
                return None
            return _coerce(field, text, next(a for a in args if a is not type(None)))
        if kind is bool:
            low = text.strip().lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no"):
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        return kind(text)
    except (ValueError, TypeError, StopIteration):
        if origin is tuple:
            what = "comma-separated integers" if args[0] is int else "comma-separated values"
        else:
            what = {int: "an integer", float: "a number", bool: "true or false"}.get(kind, f"a {kind}")
        raise ValueError(f"{field} must be {what}, got {text!r}") from None


def apply_overrides(config: Any, overrides: Sequence[str] | dict[str, Any] = ()) -> Any:
    """Return ``config`` with ``key=value`` strings (or a dict) applied, validated again.

    Raises ``ValueError`` naming an unknown key and listing the known ones.
    """
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    changes: dict[str, Any] = {}
    items = overrides.items() if isinstance(overrides, dict) else [_split(o) for o in overrides]
    for key, value in items:
        if key not in names:
            raise ValueError(f"unknown key {key!r}; known keys: {', '.join(names)}")
        changes[key] = _coerce(key, value, hints[key]) if isinstance(value, str) else value
    return dataclasses.replace(config, **changes)


def _split(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set wants key=value, got {item!r}")
    return key.strip(), value.strip()


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
    root = Path(__file__).resolve().parent.parent
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


def get_experiment(name: str) -> Experiment:
    """The registered experiment ``name``; ``ValueError`` listing the known ones otherwise.

    Introduced in the book: :doc:`/book/superposition` (chapter superposition).
    """
    _load_all()
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(sorted(EXPERIMENTS))}")
    return EXPERIMENTS[name]


# --------------------------------------------------------------------------- files: strict, atomic, checked


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
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    A full disk, a kill or any error part-way leaves the previous ``path`` as it was.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
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
        from . import __version__

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


# --------------------------------------------------------------------------- running


#: A rough CPU rate used only when no calibration can be made (flop/s).
_FALLBACK_RATE = 5e10


def measured_rate(device: torch.device | str = "cpu", seconds: float = 0.3) -> float:
    """Floating-point operations per second of polybook's training step on ``device`` (a quick timing)."""
    from .models import init_weights, loss_and_grad

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


def estimate_seconds(config: Any, device: torch.device | str = "cpu") -> float | None:
    """A rough runtime of ``config`` on ``device``: its flop count over a measured rate."""
    flops = getattr(config, "flops", None)
    return None if flops is None else flops() / measured_rate(device)


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
    from . import __version__, _numerics
    from .train import check_fits

    say = warn if warn is not None else (lambda text: print(f"polybook: {text}", file=sys.stderr))
    exp = get_experiment(name)
    check.choice("scale", scale, SCALES)
    config = apply_overrides(exp.scales[scale], overrides)
    if seed is not None:
        config = apply_overrides(config, {"seed": seed})
    dev = resolve_device(device)
    path = None if out is None else check_out_folder(out)
    if hasattr(config, "peak_bytes"):
        check_fits(config.peak_bytes(dev), dev, f"{name} at {scale} scale")
    resumable = "pieces" in inspect.signature(exp.run).parameters
    pieces = Pieces(path if resumable else None, name, config)
    if pieces.found:
        say(f"reusing {len(pieces.found)} finished piece(s) from {pieces.folder}")
    if scale == "paper" and dev.type == "cpu":
        est = estimate_seconds(config, dev)
        if est is not None:
            say(f"{name} at paper scale on the CPU: expect roughly {_duration(est)} (a GPU is far faster: --device cuda)")
    start = time.perf_counter()
    try:
        results = exp.run(config, dev, progress, pieces=pieces) if resumable else exp.run(config, dev, progress)
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


REQUIRED_FIELDS = ("experiment", "scale", "config", "results", "provenance", "checksum")


def load_result(path: str | Path) -> dict:
    """Read and verify a ``result.json`` written by :func:`run_experiment` (a file or its folder).

    Raises :class:`ResultError` naming the file when it is missing, not valid JSON (truncated),
    lacks a field, or no longer matches its checksum (edited after it was written).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "result.json"
    try:
        record = json.loads(path.read_text())
    except OSError as err:
        raise ResultError(f"{path}: cannot be read ({err.strerror or err})") from None
    except ValueError as err:
        raise ResultError(f"{path}: is not valid JSON, perhaps truncated ({err})") from None
    if not isinstance(record, dict):
        raise ResultError(f"{path}: holds no result record")
    missing = [k for k in REQUIRED_FIELDS if k not in record]
    if missing:
        raise ResultError(f"{path}: lacks the field(s) {', '.join(missing)}")
    if record["checksum"] != checksum(record):
        raise ResultError(f"{path}: does not match its checksum (edited or damaged after it was written)")
    return record


#: Environment variable: where :func:`stored_result` downloads a stored result that this copy of the
#: book lacks, as a URL prefix (``https://...`` or ``file://...``) followed by ``/FOLDER/result.json``.
#: By default the release's own files: ``raw.githubusercontent.com/<repository>/<tag>/book/results``.
RESULTS_URL_ENV = "POLYBOOK_RESULTS_URL"


def results_url() -> str:
    """The URL prefix :func:`stored_result` downloads from (see :data:`RESULTS_URL_ENV`)."""
    from ._release import REPOSITORY, TAG

    default = REPOSITORY.replace("https://github.com/", "https://raw.githubusercontent.com/") + f"/{TAG}/book/results"
    return os.environ.get(RESULTS_URL_ENV, "").strip() or default


#: The stored results released with the book (the folders of ``book/results``): what a runtime without
#: that folder (Colab) can fetch with :func:`stored_result` (``tests/test_stored_results.py`` keeps it current).
STORED_RESULTS = ("architectures", "collisions-n", "collisions-paper", "cooccurrence", "interventions",
                  "noise_width", "sae", "sparsification-paper", "winners")


def _local_release_file(name: str) -> Path | None:
    """``results/NAME`` (beside a notebook) or ``book/results/NAME`` (from the root), whichever exists."""
    return next((base / name for base in (Path("results"), Path("book") / "results") if (base / name).is_file()), None)


def release_file(name: str, timeout: float = 60.0) -> Path:
    """The file ``book/results/NAME`` of this copy of the book, or downloaded once from the release.

    Looks in ``results/`` (from the notebook's folder) and ``book/results/`` (from the root); otherwise
    downloads ``results_url()/NAME`` into ``results/NAME`` (written atomically) and returns that path.
    Raises :class:`ResultError` naming the URL when it cannot be read.
    """
    import urllib.request

    local = _local_release_file(name)
    if local is not None:
        return local
    url, dest = f"{results_url()}/{name}", Path("results") / name
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (OSError, ValueError) as err:
        raise ResultError(f"{dest}: not in this copy of the book, and {url} could not be read ({err})") from None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ResultError(f"{url}: not UTF-8 text; nothing was saved") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(dest, text)
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
    try:
        dest = release_file(name, timeout)
    except ResultError as err:
        raise ResultError(
            f"{err}; make it with `python -m polybook run EXPERIMENT --scale book --out results/{folder}` "
            "(the chapter names the experiment)"
        ) from None
    try:
        return load_result(dest)
    except ResultError:
        dest.unlink()  # never cache a damaged copy: the next call downloads again
        raise
