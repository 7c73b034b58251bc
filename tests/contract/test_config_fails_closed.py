"""Configuration fails closed: a start the operator did not clearly ask for is refused.

The example scripts are run as the operator runs them (``python examples/..._server.py``,
a process of their own with a clean environment), so a refusal is the exit status and
message a person sees, and the demo's start with nothing configured is checked over real
HTTP. The admin-token and file-mode checks run against both servers in-process.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from flow import assert_error, create_order

from bitloot_adapters.settings import (
    KNOWN_VARIABLES,
    TOOL_VARIABLES,
    ConfigError,
    load_settings,
)
from support.servers import EXAMPLES, RunningServer, free_port, running_server

KINDS = ["fastapi", "flask"]
# Every interface: the refusals happen before anything listens.
PUBLIC_HOST = "0.0.0.0"  # noqa: S104
LIVE = {
    "BITLOOT_MODE": "live",
    "BITLOOT_NOWPAYMENTS_API_KEY": "np-live-key",
    "BITLOOT_NOWPAYMENTS_IPN_SECRET": "np-ipn-secret",
    "BITLOOT_KINGUIN_API_KEY": "kinguin-live-key",
    "BITLOOT_PUBLIC_URL": "https://shop.example",
    "BITLOOT_SMTP_URL": "smtp://127.0.0.1:2525",
}


def _clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")}
    return env | dict(extra)


def _start(kind: str, data_dir: Path, *args: str, env: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own example script
        [
            sys.executable,
            str(EXAMPLES / f"{kind}_server.py"),
            "--data-dir",
            str(data_dir),
            "--no-worker",
            *args,
        ],
        env=_clean_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def refusal(kind: str, data_dir: Path, *args: str, env: Mapping[str, str]) -> str:
    """Run the example server; it must exit 1 before serving. Returns its stderr."""
    process = _start(kind, data_dir, *args, env=env)
    try:
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 1, (out, err)
    assert "bitloot sandbox" not in out
    assert "bitloot live" not in out
    return err


@contextmanager
def started(kind: str, data_dir: Path, env: Mapping[str, str]) -> Iterator[str]:
    port = free_port()
    process = _start(kind, data_dir, "--host", "127.0.0.1", "--port", str(port), env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server
            process.kill()
            process.communicate()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


# --- unknown variables ----------------------------------------------------------------------


def test_a_misspelt_variable_stops_the_server_and_names_the_closest(
    kind: str, tmp_path: Path
) -> None:
    # The reproduction: the typo used to start a public sandbox that gives keys away.
    err = refusal(
        kind, tmp_path / "d", "--host", PUBLIC_HOST, env={"BITLOOT_NOWPAYMENTS_APIKEY": "typo"}
    )
    assert "unknown setting BITLOOT_NOWPAYMENTS_APIKEY" in err
    assert "did you mean BITLOOT_NOWPAYMENTS_API_KEY?" in err
    assert "typo" not in err  # the value may be a secret
    assert not (tmp_path / "d").exists()  # refused before anything is written


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("BITLOOT_ORDER_TTL_MINUTE", "BITLOOT_ORDER_TTL_MINUTES"),
        ("BITLOOT_ADMIN_TOKENS", "BITLOOT_ADMIN_TOKEN"),
        ("BITLOOT_PUBLICURL", "BITLOOT_PUBLIC_URL"),
        ("BITLOOT_ZZZZZZZZ", None),
    ],
)
def test_every_unknown_variable_is_a_config_error(
    tmp_path: Path, name: str, hint: str | None
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(data_dir=tmp_path / "d", env={name: "1"})
    message = str(raised.value)
    assert message.startswith(f"unknown setting {name}")
    if hint is None:
        assert "did you mean" not in message
    else:
        assert message.endswith(f"did you mean {hint}?")


def test_variables_of_other_programs_are_not_ours(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, env={"BITLOOTX": "1", "MY_BITLOOT_THING": "2"})
    assert settings.sandbox


# --- the mode ---------------------------------------------------------------------------------


def test_a_public_host_without_a_mode_is_refused(kind: str, tmp_path: Path) -> None:
    err = refusal(kind, tmp_path / "d", "--host", PUBLIC_HOST, env={})
    assert "BITLOOT_MODE" in err
    assert "live" in err
    assert "sandbox" in err


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.8.9.10"])
def test_loopback_defaults_to_the_sandbox(tmp_path: Path, host: str) -> None:
    assert load_settings(data_dir=tmp_path, host=host, env={}).sandbox


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "shop.example"])  # noqa: S104
def test_other_hosts_need_the_mode(tmp_path: Path, host: str) -> None:
    with pytest.raises(ConfigError, match="BITLOOT_MODE"):
        load_settings(data_dir=tmp_path / "d", host=host, env={})
    asked = load_settings(data_dir=tmp_path / "s", host=host, env={"BITLOOT_MODE": "sandbox"})
    assert asked.sandbox
    live = load_settings(data_dir=tmp_path / "l", host=host, env=LIVE)
    assert not live.sandbox


def test_a_mode_that_is_neither_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BITLOOT_MODE must be sandbox or live"):
        load_settings(data_dir=tmp_path, env={"BITLOOT_MODE": "production"})


@pytest.mark.parametrize(
    "name",
    [
        "BITLOOT_NOWPAYMENTS_API_KEY",
        "BITLOOT_NOWPAYMENTS_BASE_URL",
        "BITLOOT_KINGUIN_API_KEY",
        "BITLOOT_KINGUIN_BASE_URL",
    ],
)
def test_a_live_variable_in_sandbox_mode_is_refused(kind: str, tmp_path: Path, name: str) -> None:
    err = refusal(kind, tmp_path / "d", env={name: "https://x.example"})
    assert name in err
    assert "BITLOOT_MODE=live" in err


@pytest.mark.parametrize("missing", sorted(set(LIVE) - {"BITLOOT_MODE"}))
def test_a_missing_live_variable_in_live_mode_is_refused(
    kind: str, tmp_path: Path, missing: str
) -> None:
    env = {k: v for k, v in LIVE.items() if k != missing}
    err = refusal(kind, tmp_path / "d", "--host", PUBLIC_HOST, env=env)
    assert missing in err


def test_the_demo_starts_with_nothing_configured(kind: str, tmp_path: Path) -> None:
    with started(kind, tmp_path / "demo", env={}) as url:
        # The demo catalogue is seeded only in sandbox mode.
        assert httpx.get(f"{url}/api/products", timeout=10).json()


# --- the admin token and the files on disk ----------------------------------------------------


def test_the_admin_token_is_never_read_from_the_query(shared_server: RunningServer) -> None:
    s = shared_server
    token = s.shop.settings.admin_token
    for headers in ({}, {"authorization": "Basic eDp5"}, {"authorization": "Bearer"}):
        response = s.http.get("/api/admin/orders", params={"token": token}, headers=headers)
        assert_error(response, 401, "unauthorized")
    assert s.http.get("/api/admin/orders", headers=s.admin).status_code == 200


def test_the_data_dir_is_private(kind: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(kind, data) as s:
        create_order(s)
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        db_files = sorted(data.glob("bitloot.db*"))
        assert [f.name for f in db_files][:1] == ["bitloot.db"]
        for path in db_files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_an_old_world_readable_database_is_made_private(kind: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(kind, data) as s:
        create_order(s)
    (data / "bitloot.db").chmod(0o644)
    with running_server(kind, data):
        assert stat.S_IMODE((data / "bitloot.db").stat().st_mode) == 0o600


# --- the list of known variables stays whole --------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
# How the code reads a variable: ``PREFIX + "NAME"`` or the literal ``"BITLOOT_NAME"``.
_READ = re.compile(r'(?:PREFIX \+ "|"BITLOOT_)([A-Z][A-Z0-9_]+)"')


def test_every_variable_the_code_reads_is_known_and_documented() -> None:
    read: set[str] = set()
    for path in (ROOT / "src" / "bitloot_adapters").rglob("*.py"):
        read |= set(_READ.findall(path.read_text(encoding="utf-8")))
    # Names built from a table (the kept secrets) are read too.
    read |= {name.upper() for name in ("vault_key", "signing_key", "admin_token")}
    unknown = read - KNOWN_VARIABLES - TOOL_VARIABLES
    assert not unknown, f"read but not in KNOWN_VARIABLES: {sorted(unknown)}"
    docs = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    undocumented = [name for name in KNOWN_VARIABLES if f"BITLOOT_{name}`" not in docs]
    assert not undocumented, f"not in docs/configuration.md: {sorted(undocumented)}"
