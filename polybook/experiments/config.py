"""One base for every experiment's config: fields are checked from their declarations.

A config is a frozen dataclass. Its fields say what they hold by their type
(``int``, ``float``, ``bool``, ``str``, ``tuple[int, ...]``, ``tuple[float, ...]``, ...) and,
where the default rule does not fit, by :func:`param`. :class:`ExperimentConfig` checks every
field on construction, so a config cannot exist with a bad value; a config adds only the rules
that tie fields together (:meth:`ExperimentConfig.check`).

The default rules: an integer is at least 1, a number is finite and at least 0, a text is one
of its ``choices``, a tuple is non-empty (``param(..., unique=True)``: and repeats no value). The fields every experiment shares are ruled once, in
:data:`COMMON`: ``lr`` (above 0), ``optimizer`` (one of ``polybook.train.OPTIMIZERS``) and
``seed`` (``0..2^62``); any field named ``*_lr`` or ``*_steps`` follows ``lr`` or ``steps``.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

from .. import _validate as check
from ..train import OPTIMIZERS

__all__ = ["ExperimentConfig", "param"]


def param(default: Any, *, minimum: float | None = None, maximum: float | None = None, strict: bool = False,
          choices: tuple[str, ...] | None = None, empty: bool = False, unique: bool = False) -> Any:
    """A config field with its own bounds: ``minimum``/``maximum`` (``strict``: above the minimum),
    ``choices`` for text, ``empty`` to allow an empty tuple, ``unique`` to refuse a tuple that repeats
    a value (where each value names an entry of the results, such as a width)."""
    rule = {k: v for k, v in dict(minimum=minimum, maximum=maximum, strict=strict, choices=choices,
                                  empty=empty, unique=unique).items() if v is not None and v is not False}
    return dataclasses.field(default=default, metadata={"rule": rule})


#: Rules of the fields many experiments share, by name (a field's own :func:`param` wins).
COMMON: dict[str, dict] = {
    "lr": {"strict": True},
    "optimizer": {"choices": OPTIMIZERS},
}


def _rule(name: str, meta: dict) -> dict:
    if "rule" in meta:
        return meta["rule"]
    if name in COMMON:
        return COMMON[name]
    if name.endswith("_lr"):
        return COMMON["lr"]
    return {}


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_one(name: str, kind: Any, value: Any, rule: dict) -> None:
    """Check ``value`` of field ``name`` against its declared type ``kind`` and ``rule``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        kind = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    lo, hi = rule.get("minimum"), rule.get("maximum")
    if name == "seed":
        check.seed(name, value)
    elif kind is bool:
        if not isinstance(value, bool):
            check.fail(name, value, "True or False")
    elif kind is int:
        check.integer(name, value, **({"minimum": int(lo)} if lo is not None else {}),
                      **({"maximum": int(hi)} if hi is not None else {}))
    elif kind is float:
        check.number(name, value, lo if lo is not None else 0.0, strict=rule.get("strict", False),
                     **({"maximum": hi} if hi is not None else {}))
    elif kind is str:
        check.choice(name, value, rule["choices"])
    elif origin is tuple:
        item = args[0]
        if item is int:
            if rule.get("empty") and value == ():
                return
            check.integers(name, value, **({"minimum": int(lo)} if lo is not None else {}),
                           **({"maximum": int(hi)} if hi is not None else {}))
        else:
            what = {float: "numbers", bool: "true/false values", str: "names"}[item]
            if not isinstance(value, tuple) or (not value and not rule.get("empty")):
                check.fail(name, value, f"a non-empty tuple of {what}")
            for v in value:
                _check_one(name, item, v, rule)
        if rule.get("unique") and len(set(value)) < len(value):
            check.fail(name, value, "a tuple without repeated values")
    else:  # pragma: no cover - a config declared a type this base does not know
        raise TypeError(f"{name}: polybook configs hold int, float, bool, str and tuples of them, not {kind}")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Base of every experiment's config: checks each field from its declaration on construction.

    Raises ``ValueError: <field> must be <allowed>, got <value>`` for the first bad field.
    Subclasses add :meth:`check` for rules between fields, and give their estimates:
    :meth:`peak_bytes` (memory at the peak on a device) and :meth:`flops` (work of the whole run).
    """

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            _check_one(f.name, hints[f.name], getattr(self, f.name), _rule(f.name, f.metadata))
        self.check()

    def check(self) -> None:
        """Rules between fields (each subclass's own); the fields one by one are checked already."""

    def peak_bytes(self, device: Any) -> int:
        """Estimated peak memory of the run on ``device``, in bytes."""
        raise NotImplementedError

    def flops(self) -> float:
        """Floating-point operations of the whole run (for a time estimate)."""
        raise NotImplementedError

    def capped(self, steps: int) -> ExperimentConfig:
        """This config with every step count (``steps`` and ``*_steps`` fields) capped at ``steps``."""
        changes = {f.name: min(getattr(self, f.name), steps) for f in dataclasses.fields(self)
                   if (f.name == "steps" or f.name.endswith("_steps")) and check.is_int(getattr(self, f.name))}
        return dataclasses.replace(self, **changes)
