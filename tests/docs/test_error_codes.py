"""docs/api.md lists every error code the HTTP API can answer, and no other.

The codes are read from the code itself: every ``BitlootError`` class's code, every
literal ``code="..."`` given to one (or to a webhook's ``IpnResult``), the key-URL
problems, and every literal code the HTTP layer and the example servers answer with. A
new code without a line in the doc fails here, and so does a doc line for a code gone.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import bitloot_adapters
import bitloot_core
from bitloot_core.errors import BitlootError
from bitloot_core.tokens import TokenProblem

ROOT = Path(__file__).resolve().parents[2]
API_DOC = ROOT / "docs" / "api.md"
# Literal codes in these answer HTTP requests directly.
# (Not the OpenAPI document's module: its schemas are data, not answers.)
HTTP_SOURCES = [
    *(
        path
        for path in (ROOT / "src" / "bitloot_adapters" / "http_api").glob("*.py")
        if path.name != "openapi.py"
    ),
    *(ROOT / "examples").glob("*.py"),
]
_DOC_ROW = re.compile(r"^\| `([a-z_]+)` \| ([0-9, ]+) \|", re.MULTILINE)


def _subclasses(cls: type[BitlootError]) -> Iterator[type[BitlootError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _error_classes() -> dict[str, type[BitlootError]]:
    for package in (bitloot_core, bitloot_adapters):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    return {cls.__name__: cls for cls in [BitlootError, *_subclasses(BitlootError)]}


def _literal_codes(path: Path, callees: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", getattr(node.func, "attr", None))
        if name == "error_response" and len(node.args) >= 2:
            code = node.args[1]
            if isinstance(code, ast.Constant) and isinstance(code.value, str):
                found.add(code.value)
        if name in callees:
            found.update(
                kw.value.value
                for kw in node.keywords
                if kw.arg == "code" and isinstance(kw.value, ast.Constant)
            )
    return found


def _code_tables(path: Path) -> set[str]:
    """The values of ``*_CODES`` dicts: the codes a server maps its framework's refusals to."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
        named = any(isinstance(t, ast.Name) and t.id.endswith("_CODES") for t in targets)
        value = getattr(node, "value", None)
        if named and isinstance(value, ast.Dict):
            found.update(v.value for v in value.values if isinstance(v, ast.Constant))
    return found


def codes_in_code() -> set[str]:
    classes = _error_classes()
    codes = {cls.code for cls in classes.values()}
    codes |= {problem.value for problem in TokenProblem}
    callees = {*classes, "IpnResult"}
    for path in (ROOT / "src").rglob("*.py"):
        codes |= _literal_codes(path, callees)
    for path in HTTP_SOURCES:
        codes |= _literal_codes(path, callees)
        codes |= _code_tables(path)
    # A webhook's outcome, not an error: "ok" is the code of an accepted webhook.
    return codes - {"ok"}


def codes_in_doc() -> set[str]:
    section = API_DOC.read_text(encoding="utf-8").split("## Error codes", 1)[1]
    section = section.split("\n## ", 1)[0]
    return {code for code, _ in _DOC_ROW.findall(section)}


def test_the_api_doc_lists_every_error_code_and_only_those() -> None:
    in_code, in_doc = codes_in_code(), codes_in_doc()
    assert "concurrent_update" in in_code
    assert in_code - in_doc == set(), "codes the API can answer that docs/api.md does not list"
    assert in_doc - in_code == set(), "codes docs/api.md lists that nothing answers"


def test_each_documented_status_is_the_errors_own() -> None:
    classes = _error_classes()
    # Classes that name their own code (KeyUrlRejected's come with each instance).
    statuses = {cls.code: cls.status_hint for cls in classes.values() if "code" in vars(cls)}
    section = API_DOC.read_text(encoding="utf-8").split("## Error codes", 1)[1]
    for code, documented in _DOC_ROW.findall(section.split("\n## ", 1)[0]):
        if code in statuses:
            assert str(statuses[code]) in documented, code
