"""The core stays pure (standard library only), and the generated docs are current."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import bitloot_core
from bitloot_core import chart_docs

CORE = Path(bitloot_core.__file__).parent
ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_core_imports_only_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"bitloot_core", "__future__"}
    offenders = [
        f"{path.name}: {name}"
        for path in sorted(CORE.rglob("*.py"))
        for name in imported_modules(path)
        if name.split(".")[0] not in allowed
    ]
    assert offenders == []
    assert len(list(CORE.glob("*.py"))) > 10, "the check looked at the core's modules"


def test_core_does_not_read_the_clock_or_randomness() -> None:
    banned = (
        "datetime.now(",
        "datetime.utcnow(",
        "time.time(",
        "random.",
        "secrets.",
        "os.urandom",
    )
    found = [
        f"{path.name}: {needle}"
        for path in sorted(CORE.rglob("*.py"))
        for needle in banned
        if needle in path.read_text(encoding="utf-8")
    ]
    assert found == []


def test_state_chart_doc_is_current() -> None:
    committed = (ROOT / "docs" / "state-chart.md").read_text(encoding="utf-8")
    assert committed == chart_docs.render(), "run `make docs` to regenerate docs/state-chart.md"


def test_state_chart_doc_names_every_transition() -> None:
    text = chart_docs.render()
    for (status, event), rule in chart_docs.TRANSITIONS.items():
        any_of = [" or ".join(sorted(rule.requires_any))] if rule.requires_any else []
        forbids = [f"not {flag}" for flag in sorted(rule.forbids)]
        needs = " ".join([*sorted(rule.requires), *any_of, *forbids]) or "-"
        assert f"| `{status}` | `{event}` | {needs} | `{rule.target}` |" in text
