"""Optional extras (``pip install "canetlib[...]"``): one clear error when one is missing."""

from __future__ import annotations


class MissingExtraError(ImportError):
    """An optional package of a ``canetlib[...]`` extra is not installed."""


def missing_extra(package: str, extra: str, purpose: str) -> MissingExtraError:
    """The error for ``purpose`` lacking ``package`` (of the extra ``extra``)."""
    return MissingExtraError(f"{purpose} needs the {package} package, which is not installed: "
                             f'pip install "canetlib[{extra}]" (or pip install {package})')
