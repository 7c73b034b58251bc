"""The package as a host app installs it: ``python -m build`` makes the sdist and the
wheel, and the wheel goes into a fresh virtual environment.

There: ``import bitloot_core`` loads nothing outside the standard library; ``bitloot
--help`` and ``bitloot orders`` work with the base dependencies alone (no framework
importable); then the ``server``, ``s3`` and ``postgres`` extras install what they
promise. Dependencies come from pip's configured index (this machine's mirror) with the
built wheel found locally; without an index the test is skipped (failed under CI).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import bitloot_core

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.needs import missing

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "src" / "bitloot_adapters" / "http_api" / "static"
VERSION = bitloot_core.__version__
# What each extra promises: the modules a host can then import.
EXTRAS = {
    "server": ["fastapi", "uvicorn", "flask", "django", "prometheus_client", "segno"],
    "s3": ["boto3"],
    "postgres": ["psycopg", "psycopg_pool"],
}
# The installed package's own page, through the WSGI app a host mounts (no page_dir).
SERVE_PAGE = """
import json, sys
from pathlib import Path
from wsgiref.util import setup_testing_defaults
from bitloot_adapters.bootstrap import build_shop
from bitloot_adapters.http_api import ShopApi
from bitloot_adapters.settings import load_settings

shop = build_shop(load_settings(data_dir=Path(sys.argv[1]), env={}))
app = ShopApi(shop).wsgi_app()
answers = {}
for path in ("/", "/admin", "/static/app.js"):
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda s, h, e=None: status.append(s)))
    answers[path] = [status[0], body.decode()]
shop.close()
print(json.dumps(answers))
"""
NEW_MODULES = """
import json, sys
before = set(sys.modules)
import bitloot_core
loaded = sorted(set(sys.modules) - before)
outside = [
    name for name in loaded
    if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] != "bitloot_core"
]
print(json.dumps(outside))
"""


def run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BITLOOT_", "PYTHON"))}
    return subprocess.run(  # noqa: S603 - fixed commands of this test
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend (hatchling) is the test group's, nothing fetched.
    built = run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT)
    assert built.returncode == 0, built.stdout + built.stderr
    return out


@pytest.fixture(scope="module")
def fresh(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with the wheel and its base dependencies only."""
    home = tmp_path_factory.mktemp("venv")
    venv.create(home, with_pip=True)
    python = home / "bin" / "python"
    installed = run(
        python, "-m", "pip", "install", "--quiet", "--find-links", dist, f"bitloot=={VERSION}"
    )
    if installed.returncode != 0:
        missing(f"the wheel's dependencies could not be installed: {installed.stderr[-500:]}")
    return home


def test_build_makes_an_sdist_and_a_typed_wheel_of_one_version(dist: Path) -> None:
    assert (dist / f"bitloot-{VERSION}.tar.gz").is_file()
    wheel = dist / f"bitloot-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"bitloot-{VERSION}.dist-info/METADATA").decode()
    assert {"bitloot_core/py.typed", "bitloot_adapters/py.typed"} <= names
    assert not any(name.startswith(("tests/", "examples/")) for name in names)
    # The customer page and the operator's console, every file of them.
    page = {f"bitloot_adapters/http_api/static/{path.name}" for path in PAGE.iterdir()}
    assert {"bitloot_adapters/http_api/static/index.html"} < page <= names
    assert f"Version: {VERSION}\n" in metadata
    assert "Classifier: Typing :: Typed" in metadata
    for extra in EXTRAS:
        assert f"Provides-Extra: {extra}" in metadata


def test_import_bitloot_core_loads_only_the_standard_library(fresh: Path) -> None:
    probe = run(fresh / "bin" / "python", "-c", NEW_MODULES, cwd=fresh)
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout) == []


def test_the_bitloot_command_works_on_the_base_install(fresh: Path, tmp_path: Path) -> None:
    for framework in ("fastapi", "flask", "django", "boto3", "psycopg"):
        absent = run(fresh / "bin" / "python", "-c", f"import {framework}", cwd=tmp_path)
        assert absent.returncode != 0, f"{framework} came with the base install"
    bitloot = fresh / "bin" / "bitloot"
    helped = run(bitloot, "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "orders" in helped.stdout
    data = tmp_path / "data"
    started = run(bitloot, "--data-dir", data, "migrate", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    listed = run(bitloot, "--data-dir", data, "--json", "orders", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    version = run(fresh / "bin" / "python", "-c", "import bitloot_core as c; print(c.__version__)")
    assert version.stdout.strip() == VERSION


def test_the_installed_package_serves_its_page(fresh: Path, tmp_path: Path) -> None:
    served = run(fresh / "bin" / "python", "-c", SERVE_PAGE, tmp_path / "data", cwd=tmp_path)
    assert served.returncode == 0, served.stderr[-2000:]
    answers = json.loads(served.stdout.splitlines()[-1])
    assert answers["/"] == ["200 OK", (PAGE / "index.html").read_text()]
    assert answers["/admin"] == ["200 OK", (PAGE / "admin.html").read_text()]
    assert answers["/static/app.js"] == ["200 OK", (PAGE / "app.js").read_text()]


def test_the_extras_install_what_they_promise(fresh: Path, dist: Path) -> None:
    python = fresh / "bin" / "python"
    extras = ",".join(EXTRAS)
    spec = f"bitloot[{extras}]=={VERSION}"
    installed = run(python, "-m", "pip", "install", "--quiet", "--find-links", dist, spec)
    if installed.returncode != 0:
        missing(f"the extras could not be installed: {installed.stderr[-500:]}")
    for extra, modules in EXTRAS.items():
        for module in modules:
            imported = run(python, "-c", f"import {module}")
            assert imported.returncode == 0, f"{extra}: {module}: {imported.stderr[-300:]}"
