"""Without Chromium (or axe-core) the browser tests skip on a developer's machine, but a
CI run (``CI=true``) fails instead: .ci/run installs them, so missing means broken."""

from __future__ import annotations

import pytest

from support.needs import missing


def test_a_missing_tool_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium is missing"):
        missing("chromium is missing")


@pytest.mark.parametrize("value", ["true", "TRUE", "True"])
def test_a_missing_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=r"chromium is missing.*must run"):
        missing("chromium is missing")
