"""Thin command-line entry points; see :mod:`canetlib.cli`."""
