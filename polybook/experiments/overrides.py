"""``--set KEY=VALUE`` overrides: text parsed by the config field's declared type, then checked again."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any

__all__ = ["apply_overrides"]


#: What a tuple field's items are, for messages.
_ITEMS = {int: "integers", float: "numbers", bool: "true/false values", str: "names"}


def _coerce(field: str, text: str, kind: Any, empty: bool = False) -> Any:
    """Parse ``text`` as the type ``kind`` of config field ``field``.

    A tuple is comma-separated items, none of them empty (``m=64,,128`` is refused); an empty
    ``text`` is the empty tuple where the field allows one (``empty``) and refused elsewhere.
    """
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin is tuple:
        what = _ITEMS.get(args[0], "values")
        if not text.strip():
            if empty:
                return ()
            raise ValueError(f"{field} must be one or more comma-separated {what}, got an empty value")
        parts = text.split(",")
        if any(not part.strip() for part in parts):
            raise ValueError(f"{field} must be comma-separated {what} with no empty item, got {text!r}")
        try:
            return tuple(_coerce(field, part.strip(), args[0]) for part in parts)
        except ValueError:
            raise ValueError(f"{field} must be comma-separated {what}, got {text!r}") from None
    try:
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
        what = {int: "an integer", float: "a number", bool: "true or false"}.get(kind, f"a {kind}")
        raise ValueError(f"{field} must be {what}, got {text!r}") from None


def apply_overrides(config: Any, overrides: Sequence[str] | dict[str, Any] = ()) -> Any:
    """Return ``config`` with ``key=value`` strings (or a dict) applied, validated again.

    Each text is parsed by its field's declared type (lists comma-separated, see ``_coerce``).
    Raises ``ValueError`` (one line, naming the key) for an unknown key, listing the known ones,
    for a value its field cannot hold, and for whatever the config's own checks refuse.
    """
    hints = typing.get_type_hints(type(config))
    fields = {f.name: f for f in dataclasses.fields(config)}
    names = list(fields)
    changes: dict[str, Any] = {}
    items = overrides.items() if isinstance(overrides, dict) else [_split(o) for o in overrides]
    for key, value in items:
        if key not in names:
            raise ValueError(f"unknown key {key!r}; known keys: {', '.join(names)}")
        empty = bool(fields[key].metadata.get("rule", {}).get("empty"))
        changes[key] = _coerce(key, value, hints[key], empty) if isinstance(value, str) else value
    return dataclasses.replace(config, **changes)


def _split(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set wants key=value, got {item!r}")
    return key.strip(), value.strip()


