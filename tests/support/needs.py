"""What a test does when a tool it needs is not installed."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(what: str) -> NoReturn:
    """Skip on a developer's machine without ``what``; in CI (``CI=true``), fail: a CI
    run that skipped the browser tests would pass without having checked the page."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} (CI=true: these tests must run, not skip)", pytrace=False)
    pytest.skip(what)
