"""Command-line overrides and plain-dict round trips for frozen config dataclasses.

:class:`Settings` is the base of :class:`canetlib.training.configs.TrainConfig` and
:class:`canetlib.training.configs.PretrainConfig`. The command line's values are parsed by
`tyro <https://brentyi.github.io/tyro/>`_ from the fields' types, the config at hand
being the defaults: ``override(["lr=0.001"])`` (``train --set lr=0.001``) and
``parse_flags(["--lr", "0.001"])`` (``train --lr 0.001``) return a validated copy,
:meth:`Settings.flags_help` is the fields' ``--help``. Three spellings are ours
(:func:`_registry`): ``true``/``false`` (``yes``/``no``, ``on``/``off``, ``1``/``0``) for a
bool, ``none`` for an optional field's ``None``, and ``8,16,16,16`` for a tuple.
``to_dict``/``from_dict`` give the plain dict a checkpoint stores
(``torch.load(weights_only=True)`` reads it back; :func:`plain_dict`), ``mismatch`` lists
the fields that differ between a checkpoint's run and a resumed one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import re
import textwrap
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from typing_extensions import Self

from canetlib.model.config import plain_dict

if typing.TYPE_CHECKING:
    import tyro


class Settings:
    """Shared helpers of frozen config dataclasses: command-line overrides (tyro),
    validated copies and plain-dict round trips."""

    #: fields that may differ between a checkpoint and ``--resume`` (see :meth:`mismatch`)
    RUN_CONTROL: ClassVar[frozenset[str]] = frozenset()
    #: options a stored config may hold with the value given here only (:meth:`from_dict`)
    RETIRED: ClassVar[Mapping[str, Any]] = {}
    #: options added after runs were stored, each with the value those runs used (:meth:`from_dict`)
    ADDED: ClassVar[Mapping[str, Any]] = {}

    def override(self, assignments: Iterable[str]) -> Self:
        """A validated copy with ``key=value`` assignments applied (``--set key=value``).

        ``key`` is a field name (``-`` or ``_``); tyro parses ``value`` by the field's type.

        Raises:
            ValueError: not ``key=value``, an unknown key (the valid ones listed), a value
                the field's type refuses (naming the key), or an invalid result.
        """
        names = [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]
        flags: list[tuple[str, str, str]] = []  # (key, value, flag)
        for item in assignments:
            key, sep, text = item.partition("=")
            key, text = key.strip().replace("-", "_"), text.strip()
            if not sep:
                raise ValueError(f"--set expects key=value, got {item!r}")
            if key not in names:
                raise ValueError(f"unknown setting {key!r} for {type(self).__name__}; "
                                 f"valid keys: {', '.join(names)}")
            flags.append((key, text, f"--{key.replace('_', '-')}={text}"))
        if not flags:
            return self.replace()
        try:
            return self.parse_flags([flag for _, _, flag in flags])
        except _ParseError:
            for key, text, flag in flags:  # name the first assignment that tyro refuses
                try:
                    self.parse_flags([flag], validate=False)
                except _ParseError as err:
                    reason = str(err).removeprefix(f"bad value for {flag.split('=')[0]}: ")
                    raise ValueError(f"bad value {text!r} for {key}: {reason}") from None
            raise  # pragma: no cover - each assignment parses alone, so together as well

    def parse_flags(self, args: Sequence[str], *, validate: bool = True) -> Self:
        """A copy with command-line flags applied (``["--lr", "0.001", "--fusion", "none"]``:
        one flag per field, named as in :meth:`flags_help`), parsed by tyro.

        Raises:
            ValueError: an unknown flag or a value the field's type refuses (tyro's message
                in one line), or (``validate``) an invalid result.
        """
        err, out = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                new = _tyro_cli(type(self), self, list(args))
        except SystemExit as exit_:
            message = _one_line(err.getvalue() or out.getvalue()) or f"tyro: exit {exit_.code}"
            if message.startswith("Unrecognized options"):
                message += f" (not fields of {type(self).__name__}: see `train --help`)"
            raise _ParseError(message) from None
        if validate:
            new.validate()
        return new

    def flags_help(self) -> str:
        """The fields as command-line flags, each with its type, help and default (this
        config's value): tyro's ``--help``, its usage and ``-h`` lines left out."""
        out = io.StringIO()
        with contextlib.suppress(SystemExit), contextlib.redirect_stdout(out):
            _tyro_cli(type(self), self, ["--help"], description="")
        lines = _unframe(out.getvalue())
        lines = lines[next(i for i, line in enumerate(lines) if "-h, --help" in line) + 1:]
        return textwrap.indent(textwrap.dedent("\n".join(lines)), "  ")

    def replace(self, **changes: Any) -> Self:
        """``dataclasses.replace`` that validates the result."""
        new = dataclasses.replace(self, **changes)  # type: ignore[type-var]
        new.validate()
        return new

    def validate(self) -> None:  # pragma: no cover - overridden
        """Raise ``ValueError`` on an impossible combination."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) that ``torch.load(weights_only=True)`` accepts."""
        return plain_dict(self)

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
    def from_dict(cls, data: Mapping[str, Any], source: str = "this run") -> Self:
        """Inverse of :meth:`to_dict` (lists back to tuples), validated.

        A :attr:`RETIRED` option is dropped when it holds its present value; a missing
        :attr:`ADDED` option gets the value the stored run used.

        Raises:
            RetiredOptionError: a :attr:`RETIRED` option with another value (names ``source``).
            ValueError: an unknown key or an invalid config.
        """
        data = dict(data)
        for key, present in cls.RETIRED.items():
            if key in data and (value := data.pop(key)) != present:
                raise RetiredOptionError(
                    f"{source} was trained with the experiment option {key}={value!r}, which "
                    f"canetlib does not have; only {key}={present!r}, what canetlib does, can "
                    "be read")
        for key, then in cls.ADDED.items():
            data.setdefault(key, then)
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}")
        obj = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
        obj.validate()
        return obj


class RetiredOptionError(ValueError):
    """A stored config holds an experiment option that canetlib does not have."""


class _ParseError(ValueError):
    """tyro refused the command line (its message, in one line)."""


def _unframe(text: str) -> list[str]:
    """tyro's output without its frame: box sides, rules and empty lines left out (it draws
    boxes in Unicode or ASCII, or only rules, depending on its version and the stream)."""
    lines = [re.sub(r"^\s*[|\u2502] ?|\s*[|\u2502]\s*$", "", line).rstrip()
             for line in text.splitlines()]
    return [line for line in lines if line.strip("-\u2500\u256d\u256e\u2570\u256f ")]


def _one_line(text: str) -> str:
    """tyro's framed error message (title, message, help) as its message in one line."""
    lines = _unframe(text)
    body = " ".join(" ".join(lines[1:]).split())  # lines[0] is the title ("Value error")
    body = re.split(r" ?(?:Got errors:|Argument helptext:|For full helptext|Perhaps you)", body)[0]
    return re.sub(r"^Error parsing (--\S+):", r"bad value for \1:", body)


def _tyro_cli(cls: type[Any], default: Any, args: list[str], **kwargs: Any) -> Any:
    """``tyro.cli`` on a config class, ``default`` its defaults; a bool field takes a value
    (``--pretrained false``, as ``--set pretrained=false`` needs), spelled as :func:`_registry`
    says."""
    import tyro

    return tyro.cli(cls, default=default, args=args, prog="train",
                    config=(tyro.conf.FlagConversionOff,), registry=_registry(), **kwargs)


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NONE = ("none", "null", "~", "")


@functools.cache
def _registry() -> tyro.constructors.ConstructorRegistry:
    """tyro's parsing with three spellings of ``--set``'s values: bools and ``None`` in any
    case (``true``, ``none``) and tuples with commas (``8,16,16,16``, ``(block2,block3)``;
    spaces work too)."""
    from tyro.constructors import (
        ConstructorRegistry,
        PrimitiveConstructorSpec,
        PrimitiveTypeInfo,
    )

    registry = ConstructorRegistry()

    def bool_from(args: list[str]) -> bool:
        if args[0].lower() in _TRUE + _FALSE:
            return args[0].lower() in _TRUE
        raise ValueError(f"expected true or false, got {args[0]!r}")

    def none_from(args: list[str]) -> None:
        if args[0].lower() not in _NONE:
            raise ValueError(f"expected none, got {args[0]!r}")

    @registry.primitive_rule
    def bool_and_none(info: PrimitiveTypeInfo) -> PrimitiveConstructorSpec | None:
        if info.type is bool:
            return PrimitiveConstructorSpec(
                nargs=1, metavar="{true,false}", instance_from_str=bool_from,
                is_instance=lambda x: isinstance(x, bool),
                str_from_instance=lambda x: ["true" if x else "false"])
        if info.type is type(None):
            return PrimitiveConstructorSpec(
                nargs=1, metavar="{none}", instance_from_str=none_from,
                is_instance=lambda x: x is None, str_from_instance=lambda x: ["none"])
        return None

    @registry.primitive_rule
    def comma_tuple(info: PrimitiveTypeInfo) -> PrimitiveConstructorSpec | None:
        args = typing.get_args(info.type)
        if info.type_origin is not tuple or len(args) != 2 or args[1] is not Ellipsis:
            return None
        item = ConstructorRegistry.get_primitive_spec(PrimitiveTypeInfo.make(args[0],
                                                                             info.markers))
        if not isinstance(item, PrimitiveConstructorSpec) or item.nargs != 1:
            return None  # pragma: no cover - no such field

        def from_str(texts: list[str]) -> tuple[Any, ...]:
            parts = [p.strip().strip("'\"") for t in texts for p in t.strip("()[] ").split(",")]
            return tuple(item.instance_from_str([p]) for p in parts if p)

        return PrimitiveConstructorSpec(
            nargs="*", metavar=f"{item.metavar},...", instance_from_str=from_str,
            is_instance=lambda x: isinstance(x, tuple) and all(item.is_instance(i) for i in x),
            str_from_instance=lambda x: [",".join(s for i in x for s in item.str_from_instance(i))])

    return registry


__all__ = ["RetiredOptionError", "Settings"]
