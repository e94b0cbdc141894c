"""Typed ``key=value`` overrides and plain-dict round trips for frozen config dataclasses.

:class:`Settings` is the base of :class:`canetlib.configs.TrainConfig` and
:class:`canetlib.configs.PretrainConfig`: ``override(["lr=0.001"])`` (the
command line's ``--set lr=0.001``) parses every value by its field's type
(:func:`parse_value`), ``to_dict``/``from_dict`` give the plain dict a checkpoint
stores (``torch.load(weights_only=True)`` reads it back), ``mismatch`` lists the
fields that differ between a checkpoint's run and a resumed one.
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Union

from typing_extensions import Self


class Settings:
    """Shared helpers of frozen config dataclasses: typed ``key=value`` overrides,
    validated copies and plain-dict round trips."""

    #: fields that may differ between a checkpoint and ``--resume`` (see :meth:`mismatch`)
    RUN_CONTROL: ClassVar[frozenset[str]] = frozenset()

    def override(self, assignments: Iterable[str]) -> Self:
        """A copy with ``key=value`` assignments applied (values parsed by field type)."""
        changes: dict[str, Any] = {}
        hints = typing.get_type_hints(type(self))
        names = [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]
        for item in assignments:
            key, sep, text = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep:
                raise ValueError(f"--set expects key=value, got {item!r}")
            if key not in names:
                raise ValueError(f"unknown setting {key!r} for {type(self).__name__}; "
                                 f"valid keys: {', '.join(names)}")
            changes[key] = parse_value(text.strip(), hints[key], key)
        return self.replace(**changes)

    def replace(self, **changes: Any) -> Self:
        """``dataclasses.replace`` that validates the result."""
        new = dataclasses.replace(self, **changes)  # type: ignore[type-var]
        new.validate()
        return new

    def validate(self) -> None:  # pragma: no cover - overridden
        """Raise ``ValueError`` on an impossible combination."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) that ``torch.load(weights_only=True)`` accepts."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def mismatch(self, other: Self) -> list[str]:
        """Fields (other than :attr:`RUN_CONTROL` ones) whose values differ, as ``key: a != b``."""
        diffs = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.name in self.RUN_CONTROL:
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a != b:
                diffs.append(f"{f.name}: checkpoint {b!r} != requested {a!r}")
        return diffs

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}")
        kw = {k: _coerce(v, hints[k]) for k, v in data.items()}
        obj = cls(**kw)
        obj.validate()
        return obj


# --------------------------------------------------------------------------- parsing

_NONE = {"none", "null", "~", ""}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _split_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else Union[tuple(args)]), True  # noqa: UP007
    return tp, False


def parse_value(text: str, tp: Any, key: str = "value") -> Any:
    """Parse command-line ``text`` into the field type ``tp`` (clear error on failure)."""
    base, optional = _split_optional(tp)
    if optional and text.lower() in _NONE:
        return None
    try:
        if base is bool:
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError("expected true/false")
        if base is int:
            return int(text)
        if base is float:
            return float(text)
        if base is str:
            return text
        if typing.get_origin(base) is tuple:
            (item, *_rest) = typing.get_args(base)
            stripped = text.strip("()[] ")
            parts = [p.strip().strip("'\"") for p in stripped.split(",") if p.strip()]
            return tuple(parse_value(p, item, key) for p in parts)
    except ValueError as err:
        raise ValueError(f"bad value {text!r} for {key} ({_type_name(tp)}): {err}") from None
    return ast.literal_eval(text)  # pragma: no cover - no other field types


def _coerce(value: Any, tp: Any) -> Any:
    """Lists back to tuples when a checkpoint's plain dict is read."""
    base, _ = _split_optional(tp)
    if isinstance(value, list) and typing.get_origin(base) is tuple:
        return tuple(value)
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


__all__ = ["Settings", "parse_value"]
