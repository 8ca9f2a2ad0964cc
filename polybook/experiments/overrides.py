"""``--set KEY=VALUE`` overrides: text parsed by the config field's declared type, then checked again."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any

__all__ = ["apply_overrides"]


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


