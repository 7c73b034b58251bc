"""axe-core (from the npm registry, installed by ``make test``) run inside the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from support.needs import missing

AXE_JS = (
    Path(__file__).resolve().parents[1] / "browser" / "node_modules" / "axe-core" / "axe.min.js"
)
# WCAG 2.1 A and AA, plus label-in-name (tagged experimental, so off unless named): the
# accessible name of a control must contain the words it shows.
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "rules": {"label-content-name-mismatch": {"enabled": True}},
    "resultTypes": ["violations"],
}


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """The page's axe violations now: ``[{id, impact, help, nodes: [target, ...]}]``."""
    if not AXE_JS.is_file():
        missing(f"{AXE_JS} is missing: run `make test` (it installs axe-core with npm ci)")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE_JS))
    result: dict[str, Any] = page.evaluate(
        "async (options) => axe.run(document, options)", AXE_OPTIONS
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]],
        }
        for v in result["violations"]
    ]


def assert_no_violations(page: Page, where: str) -> None:
    violations = axe_violations(page)
    assert violations == [], f"axe on {where}: {violations}"
