"""What the package promises about its dependencies.

The ``bitloot`` command runs on the base install (no ``server`` or ``s3`` extra); nothing
in production imports the test doubles; every base dependency is imported by the code.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
# What the extras bring (server: the example servers and metrics; s3: the R2 vault).
EXTRAS_MODULES = (
    "prometheus_client",
    "fastapi",
    "starlette",
    "uvicorn",
    "flask",
    "werkzeug",
    "django",
    "segno",
    "boto3",
    "botocore",
)
# Installed with a dependency of another name: the import name it gives.
IMPORT_NAMES = {"pynacl": "nacl", "sqlite-utils": "sqlite_utils", "psycopg-pool": "psycopg_pool"}

BLOCKER = f"""
import sys

BLOCKED = {set(EXTRAS_MODULES)!r}


class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not installed)", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
"""


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.fixture
def base_install(tmp_path: Path) -> dict[str, str]:
    """An environment where the extras' modules cannot be imported, as on a base install.

    A ``sitecustomize`` on ``PYTHONPATH`` makes every import of them fail before the
    program starts.
    """
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")}
    env["PYTHONPATH"] = str(site)
    return env


def _bitloot(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "bitloot"
    return subprocess.run(  # noqa: S603 - the project's own console script
        [str(script), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_blocker_blocks(base_install: dict[str, str], tmp_path: Path) -> None:
    for module in ("prometheus_client", "fastapi", "flask"):
        probe = subprocess.run(  # noqa: S603
            [sys.executable, "-c", f"import {module}"],
            env=base_install,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert probe.returncode == 1
        assert "not installed" in probe.stderr


def test_bitloot_command_runs_without_the_extras(
    base_install: dict[str, str], tmp_path: Path
) -> None:
    helped = _bitloot(base_install, tmp_path, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "orders" in helped.stdout
    data = tmp_path / "data"
    # Read commands need a shop's data dir: migrate starts one.
    started = _bitloot(base_install, tmp_path, "--data-dir", str(data), "migrate")
    assert started.returncode == 0, started.stderr
    listed = _bitloot(base_install, tmp_path, "--data-dir", str(data), "--json", "orders")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == "[]"
    jobs = _bitloot(base_install, tmp_path, "--data-dir", str(data), "jobs")
    assert jobs.returncode == 0, jobs.stderr
    assert (data / "bitloot.db").is_file()


def test_production_code_does_not_import_the_test_doubles() -> None:
    paths = [*sorted((SRC / "bitloot_adapters").rglob("*.py")), *(ROOT / "examples").glob("*.py")]
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in paths
        for name in _imports(path)
        if name == "bitloot_core.testing" or name.startswith("bitloot_core.testing.")
    ]
    assert offenders == []
    assert len(paths) > 20, "the check looked at the adapters and examples"


def test_every_base_dependency_is_imported_by_the_code() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    imported = {name.split(".")[0] for path in sorted(SRC.rglob("*.py")) for name in _imports(path)}
    names = [
        dep.split(">")[0].split("=")[0].split("[")[0].strip() for dep in project["dependencies"]
    ]
    unused = [name for name in names if IMPORT_NAMES.get(name, name) not in imported]
    assert unused == []
    assert names, "the check read the dependencies"


def _declared(requirements: list[str]) -> set[str]:
    names = {req.split(">")[0].split("=")[0].split("[")[0].strip() for req in requirements}
    return {IMPORT_NAMES.get(name, name) for name in names}


def test_every_third_party_import_is_a_declared_dependency() -> None:
    """A module the code imports is installed by the base package or by an extra.

    Without this a dependency can be dropped from pyproject.toml while the code still
    imports it, and only a clean install finds out.
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = _declared(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared |= _declared(extra)
    declared |= set(EXTRAS_MODULES) | {"psycopg_pool"}
    ours = {"bitloot_core", "bitloot_adapters"}
    imported = {name.split(".")[0] for path in sorted(SRC.rglob("*.py")) for name in _imports(path)}
    third_party = sorted(imported - set(sys.stdlib_module_names) - ours - {"__future__"})
    undeclared = [name for name in third_party if name not in declared]
    assert undeclared == []
    assert "sqlite_utils" in third_party, "the check saw the store's imports"
