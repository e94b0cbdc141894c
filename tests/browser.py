"""What the browser tests share: the Chromium binary, its launch flags, and skip-or-fail.

Debian's ``chromium`` is used (``CHROMIUM`` names another binary, e.g. Chrome on a GitHub
runner); Playwright drives it, with no browser download. Where a tool is missing a test skips
with the reason, except under CI (``CI`` set), where it fails: CI must run every browser test.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterable

import pytest

#: headless flags for a closed network: no background requests, no sandbox as root
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str | None:
    """The Chromium binary to drive, or None where there is none."""
    candidates = [os.environ.get("CHROMIUM"), "/usr/bin/chromium", "/usr/lib/chromium/chromium",
                  shutil.which("chromium"), shutil.which("chromium-browser")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def missing(modules: Iterable[str]) -> str | None:
    """Why a browser test cannot run here (a module or Chromium missing), or None."""
    for module in ("playwright", *modules):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[test]')"
    if chromium() is None:
        return "no Chromium binary (apt-get install chromium, or set CHROMIUM)"
    return None


def require(*modules: str) -> None:
    """Skip where a tool is missing; under CI, fail instead."""
    reason = missing(modules)
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests: {reason}", pytrace=False)
    pytest.skip(reason)
