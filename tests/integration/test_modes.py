"""Sandbox and live can't be mixed up: every entry point refuses a data dir of the other
mode before it writes anything, and says which mode it runs in. A restarted sandbox shop
opens payments again (its sandbox never reuses a payment id the shop already has).

The servers and the worker run as the processes an operator starts: the example scripts
and the ``bitloot`` console script, with a clean environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))

from flow import GIFT_CARD, create_order, open_payment, pay, wait_for

from bitloot_adapters.settings import load_settings
from support.servers import EXAMPLES, free_port, running_server

BITLOOT = Path(sys.executable).with_name("bitloot")
CLOSED = "http://127.0.0.1:9"
LIVE = {
    "BITLOOT_MODE": "live",
    "BITLOOT_NOWPAYMENTS_API_KEY": "np-live-key",
    "BITLOOT_NOWPAYMENTS_IPN_SECRET": "np-ipn-secret",
    "BITLOOT_KINGUIN_API_KEY": "kinguin-live-key",
    "BITLOOT_NOWPAYMENTS_BASE_URL": f"{CLOSED}/v1",
    "BITLOOT_KINGUIN_BASE_URL": CLOSED,
    "BITLOOT_PUBLIC_URL": "https://shop.example",
    "BITLOOT_SMTP_URL": "smtp://127.0.0.1:9",
}


def clean_env(**env: str) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")}
    return kept | env


def entry_points(data_dir: Path) -> dict[str, list[str]]:
    port = str(free_port())
    server = ["--data-dir", str(data_dir), "--port", port, "--no-worker"]
    return {
        "fastapi": [sys.executable, str(EXAMPLES / "fastapi_server.py"), *server],
        "flask": [sys.executable, str(EXAMPLES / "flask_server.py"), *server],
        "django": [sys.executable, str(EXAMPLES / "django_server.py"), *server],
        "worker": [str(BITLOOT), "--data-dir", str(data_dir), "worker", "--once"],
        "orders": [str(BITLOOT), "--data-dir", str(data_dir), "orders"],
    }


def files_in(data_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(data_dir.iterdir()) if p.is_file()}


@pytest.mark.parametrize("entry", ["fastapi", "flask", "django", "worker", "orders"])
def test_a_live_data_dir_refuses_a_sandbox_start(tmp_path: Path, entry: str) -> None:
    """The reported accident: the live variables forgotten, on the live shop's data dir."""
    data_dir = tmp_path / "live"
    load_settings(data_dir=data_dir, env=LIVE)
    before = files_in(data_dir)
    done = subprocess.run(  # noqa: S603 - our own scripts, fixed arguments
        entry_points(data_dir)[entry],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert f"the data dir {data_dir} belongs to a live-mode shop" in done.stderr
    assert "this process is in sandbox mode" in done.stderr
    assert "BITLOOT_MODE=live" in done.stderr
    # Nothing written: no sandbox secrets beside the live ones, no mail, no database.
    assert files_in(data_dir) == before
    assert sorted(p.name for p in data_dir.iterdir()) == ["mode", "secrets.json", "secrets.lock"]


@pytest.mark.parametrize("entry", ["flask", "worker"])
def test_a_sandbox_data_dir_refuses_a_live_start(tmp_path: Path, entry: str) -> None:
    data_dir = tmp_path / "demo"
    load_settings(data_dir=data_dir, env={})
    before = files_in(data_dir)
    done = subprocess.run(  # noqa: S603 - our own scripts, fixed arguments
        entry_points(data_dir)[entry],
        env=clean_env(**LIVE),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "belongs to a sandbox-mode shop, and this process is in live mode" in done.stderr
    assert files_in(data_dir) == before


@contextmanager
def started(command: list[str], env: dict[str, str]) -> Iterator[tuple[subprocess.Popen, str]]:
    """A server process and its start banner (stdout up to the data dir line)."""
    with subprocess.Popen(  # noqa: S603 - our own scripts, fixed arguments
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            assert process.stdout is not None
            banner = ""
            while "data dir:" not in banner:
                line = process.stdout.readline()
                assert line, f"the server exited before its banner: {banner!r}"
                banner += line
            yield process, banner
        finally:
            process.terminate()
            process.wait(timeout=15)


def healthz(port: str) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while True:
        try:
            answer: dict[str, object] = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        else:
            return answer


@pytest.mark.parametrize(("mode", "env"), [("sandbox", {}), ("live", LIVE)])
def test_a_server_prints_its_mode_and_healthz_shows_it(
    tmp_path: Path, mode: str, env: dict[str, str]
) -> None:
    command = entry_points(tmp_path / "data")["flask"]
    port = command[command.index("--port") + 1]
    with started(command, clean_env(**env)) as (_, banner):
        assert banner.startswith(f"bitloot {mode} mode")
        assert healthz(port)["mode"] == mode


def test_the_worker_prints_its_mode(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    load_settings(data_dir=data_dir, env=LIVE)
    command = [str(BITLOOT), "--data-dir", str(data_dir), "worker", "--poll", "0.1"]
    with subprocess.Popen(  # noqa: S603 - our own script, fixed arguments
        command, env=clean_env(**LIVE), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
        finally:
            process.terminate()
            process.wait(timeout=15)
    assert first == f"worker worker running in live mode on {data_dir} (Ctrl-C stops)\n"


def test_a_restarted_sandbox_shop_opens_payments_after_each_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    seen: set[str] = set()
    for _ in range(3):
        with running_server("fastapi", data_dir) as server:
            order = create_order(server, GIFT_CARD)
            payment = open_payment(server, order)
            assert payment["id"] not in seen
            seen.add(payment["id"])
            assert {ipn["answered"] for ipn in pay(server, payment["id"])} == {200}
            wait_for(server, order, "fulfilled")


def test_the_worker_that_starts_a_data_dir_prints_the_admin_token_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    command = [str(BITLOOT), "--data-dir", str(data_dir), "worker", "--once"]
    runs = [
        subprocess.run(  # noqa: S603 - our own script, fixed arguments
            command, env=clean_env(), capture_output=True, text=True, timeout=60, check=True
        )
        for _ in range(2)
    ]
    token = load_settings(data_dir=data_dir, env={}).admin_token
    assert f"admin token (generated, kept in the data dir): {token}\n" in runs[0].stdout
    assert "admin token" not in runs[1].stdout
    assert token not in runs[1].stdout + runs[1].stderr
