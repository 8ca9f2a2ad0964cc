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
import importlib
import json
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

from . import _validate as check
from .models import init_weights
from .metrics import polysemantic_neurons, polysemantic_neurons_by_mass, polysemantic_sign_pattern
from .theory import expected_polysemantic_exact, predicted_polysemantic
from .sweep import train_widths
from .train import OPTIMIZERS, TrainConfig, TrainResult, resolve_device, train

__all__ = [
    "Experiment",
    "EXPERIMENTS",
    "register",
    "CollisionsConfig",
    "run_experiment",
    "apply_overrides",
    "load_result",
    "replay_collisions",
    "SCALES",
]

SCALES = ("book", "paper")


@dataclass(frozen=True)
class Experiment:
    """A named experiment: its config type, one config per scale, and how to run it."""

    name: str
    summary: str
    scales: dict[str, Any]
    run: Callable[..., dict]  # run(config, device: torch.device, progress: bool) -> dict


#: Every named experiment, by name.
EXPERIMENTS: dict[str, Experiment] = {}


def register(name: str, summary: str, book: Any, paper: Any) -> Callable:
    """Decorator adding ``run(config, device, progress) -> dict`` to :data:`EXPERIMENTS`."""

    def wrap(run: Callable[..., dict]) -> Callable[..., dict]:
        EXPERIMENTS[name] = Experiment(name, summary, {"book": book, "paper": paper}, run)
        return run

    return wrap


# --------------------------------------------------------------------------- collisions


@dataclass(frozen=True)
class CollisionsConfig:
    """Train the L1-regularised autoencoder for each ``m`` and count polysemantic neurons.

    ``seed`` seeds the first ``m``; the ``j``-th ``m`` uses ``seed + j``. On a GPU all widths
    train in one batched program (:func:`polybook.sweep.train_widths`), on a CPU one after another;
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
        check.integer("seed", self.seed, minimum=0)

    def train_config(self, j: int) -> TrainConfig:
        """The :class:`~polybook.train.TrainConfig` of the ``j``-th ``m``."""
        return TrainConfig(
            n=self.n, m=self.m[j], instances=self.instances, steps=self.steps, lr=self.lr,
            optimizer=self.optimizer, l1=self.l1, weight_decay=self.weight_decay, seed=self.seed + j,
        )


@register(
    "collisions",
    "polysemantic neurons vs m for the L1 autoencoder, against n^2/(4m)",
    book=CollisionsConfig(),
    paper=CollisionsConfig(n=256, m=tuple(range(256, 4097, 256)), instances=16),
)
def run_collisions(cfg: CollisionsConfig, device: torch.device, progress: bool = True) -> dict:
    """Per ``m``: band-rule and by-mass counts per instance, their sign split, the predictions."""
    if device.type == "cpu":  # one loop per width: padding would only add work on a CPU
        runs = (train(cfg.train_config(j), device=str(device), progress=progress, desc=f"collisions m={m}")
                for j, m in enumerate(cfg.m))
    else:  # every width in one batched program (identical models, see polybook.sweep)
        runs = iter(train_widths(cfg.train_config(0), cfg.m, device=str(device), progress=progress))
    return summarise_collisions(cfg, runs)


def summarise_collisions(cfg: CollisionsConfig, runs: Iterable[TrainResult]) -> dict:
    """The ``results`` of the collisions experiment from its trained runs (one per ``m``)."""
    out: dict[str, list] = {k: [] for k in (
        "polysemantic", "polysemantic_by_mass", "mixed_sign", "same_sign", "predicted",
        "predicted_exact", "final_loss")}
    for m, res in zip(cfg.m, runs):
        signs = polysemantic_sign_pattern(res.W)
        out["polysemantic"].append(polysemantic_neurons(res.W).tolist())
        out["polysemantic_by_mass"].append(polysemantic_neurons_by_mass(res.W).tolist())
        out["mixed_sign"].append(signs[:, 0].tolist())
        out["same_sign"].append(signs[:, 1].tolist())
        out["predicted"].append(predicted_polysemantic(cfg.n, m))
        out["predicted_exact"].append(expected_polysemantic_exact(cfg.n, m))
        out["final_loss"].append(round(float(res.losses[-1].mean()), 6))
    return {"n": cfg.n, "m": list(cfg.m), **out}


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
_EXPERIMENT_MODULES: tuple[str, ...] = ("polybook.noise", "polybook.sparsification", "polybook.superposition")


def _load_all() -> None:
    for mod in _EXPERIMENT_MODULES:
        importlib.import_module(mod)


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


def _git_revision() -> str | None:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return rev.stdout.strip() or None if rev.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _command_line() -> str | None:
    """How this process was started, when it was the polybook command line."""
    if Path(sys.argv[0]).name in ("__main__.py", "polybook"):
        return " ".join(["python -m polybook", *sys.argv[1:]])
    return None


def get_experiment(name: str) -> Experiment:
    """The registered experiment ``name``; ``ValueError`` listing the known ones otherwise."""
    _load_all()
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(sorted(EXPERIMENTS))}")
    return EXPERIMENTS[name]


def run_experiment(
    name: str,
    scale: str = "book",
    overrides: Sequence[str] | dict[str, Any] = (),
    *,
    device: str = "auto",
    seed: int | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Run experiment ``name`` at ``scale`` and return its record.

    The record holds ``experiment``, ``scale``, ``config`` (every field), ``results`` (the
    experiment's numbers) and ``provenance`` (polybook, torch and Python versions, git revision,
    device, wall seconds, command line). With ``out`` it is also written to ``out/result.json``.
    """
    from . import __version__

    exp = get_experiment(name)
    check.choice("scale", scale, SCALES)
    config = apply_overrides(exp.scales[scale], overrides)
    if seed is not None:
        config = apply_overrides(config, {"seed": seed})
    dev = resolve_device(device)
    start = time.perf_counter()
    results = exp.run(config, dev, progress)
    record = {
        "experiment": name,
        "scale": scale,
        "config": dataclasses.asdict(config),
        "results": results,
        "provenance": {
            "polybook": __version__,
            "git_revision": _git_revision(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": str(dev) if dev.type != "cuda" else f"cuda ({torch.cuda.get_device_name(dev)})",
            "wall_seconds": round(time.perf_counter() - start, 2),
            "command": _command_line(),
        },
    }
    if out is not None:
        path = Path(out)
        path.mkdir(parents=True, exist_ok=True)
        (path / "result.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def load_result(path: str | Path) -> dict:
    """Read a ``result.json`` written by :func:`run_experiment` (a file or its folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "result.json"
    return json.loads(path.read_text())
