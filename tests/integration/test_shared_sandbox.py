"""``bitloot sandbox`` as its own process, shared by a shop's server and its worker.

The sandbox runs as the console script; the shop is the FastAPI example in this process
(no worker of its own) and ``bitloot worker`` in another, both on one data dir, both
pointed at the sandbox by ``BITLOOT_SANDBOX_URL``. The worker buys from the shared
sandbox's Kinguin: exactly one Kinguin order, visible through the sandbox's controls.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))

from flow import STARDEW, create_order, open_payment, pay, wait_for
from realkit import (
    BUYER,
    CATALOGUE,
    KINGUIN_API_KEY,
    NOWPAYMENTS_API_KEY,
    ShopServer,
    live_env,
)
from realkit import IPN_SECRET as KIT_IPN_SECRET

from bitloot_adapters.bootstrap import build_shop
from bitloot_adapters.sandbox import SandboxServer
from bitloot_adapters.sandbox.remote import RemoteSandbox
from bitloot_adapters.sandbox.standalone import SandboxConfigError, shared_sandbox
from bitloot_adapters.settings import load_settings
from support.servers import free_port, running_server

BITLOOT = Path(sys.executable).with_name("bitloot")
IPN_SECRET = "shared-sandbox-ipn-secret"


def clean_env(**env: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")} | env


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


@contextmanager
def process(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with (
        log.open("wb") as output,
        subprocess.Popen(  # noqa: S603 - our own console script, fixed arguments
            command, env=env, stdout=output, stderr=subprocess.STDOUT
        ) as running,
    ):
        try:
            yield running
        finally:
            running.terminate()
            running.wait(timeout=15)


@pytest.fixture
def sandbox_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    command = [str(BITLOOT), "sandbox", "--port", str(port)]
    env = clean_env(BITLOOT_NOWPAYMENTS_IPN_SECRET=IPN_SECRET)
    with process(command, env, tmp_path / "sandbox.log"):
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url)
        yield url


def test_a_server_and_a_worker_share_one_sandbox(tmp_path: Path, sandbox_url: str) -> None:
    data_dir = tmp_path / "data"
    env = {"BITLOOT_SANDBOX_URL": sandbox_url, "BITLOOT_NOWPAYMENTS_IPN_SECRET": IPN_SECRET}
    with running_server("fastapi", data_dir, env, worker=False) as shop:
        assert isinstance(shop.shop.sandbox, RemoteSandbox)
        worker = [str(BITLOOT), "--data-dir", str(data_dir), "worker", "--poll", "0.1"]
        with process(worker, clean_env(**env), tmp_path / "worker.log"):
            order = create_order(shop, STARDEW)
            payment = open_payment(shop, order)
            # The shop's control route relays to the shared sandbox, which sends its IPNs
            # to the shop's callback URL.
            ipns = pay(shop, payment["id"])
            assert {ipn["answered"] for ipn in ipns} == {200}
            assert wait_for(shop, order, "fulfilled", timeout=30)["status"] == "fulfilled"
        placed = httpx.get(f"{sandbox_url}/sandbox/kinguin/orders").json()
        assert [o["order_external_id"] for o in placed] == [order["id"]]
        assert len(placed[0]["keys"]) == 1
        # The shop's own control route shows the same, relayed.
        assert shop.http.get("/sandbox/kinguin/orders").json() == placed


def test_the_sandbox_needs_the_ipn_secret(tmp_path: Path) -> None:
    done = subprocess.run(  # noqa: S603 - our own console script, fixed arguments
        [str(BITLOOT), "sandbox", "--port", str(free_port())],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "BITLOOT_NOWPAYMENTS_IPN_SECRET is required" in done.stderr
    with pytest.raises(SandboxConfigError):
        shared_sandbox({}, http=httpx.Client())


@pytest.mark.parametrize(
    ("env", "accepted", "refused"),
    [
        ({}, ["any-key", "another"], [""]),
        (
            {"BITLOOT_NOWPAYMENTS_API_KEY": "np-k", "BITLOOT_KINGUIN_API_KEY": "kg-k"},
            ["np-k"],
            ["any-key", ""],
        ),
    ],
)
def test_any_api_key_is_accepted_unless_one_is_set(
    env: dict[str, str], accepted: list[str], refused: list[str]
) -> None:
    with httpx.Client(timeout=10) as http:
        app = shared_sandbox({"BITLOOT_NOWPAYMENTS_IPN_SECRET": IPN_SECRET, **env}, http=http)
        try:
            with SandboxServer(app) as server:
                kinguin_key = env.get("BITLOOT_KINGUIN_API_KEY")
                for key in accepted:
                    np = http.get(
                        f"{server.url}/nowpayments/v1/payment/1", headers={"x-api-key": key}
                    )
                    assert np.json()["code"] == "PAYMENT_NOT_FOUND"
                    kg = http.get(
                        f"{server.url}/kinguin/v1/balance",
                        headers={"x-api-key": kinguin_key or key},
                    )
                    assert kg.status_code == 200
                for key in refused:
                    np = http.get(
                        f"{server.url}/nowpayments/v1/payment/1", headers={"x-api-key": key}
                    )
                    assert np.status_code == 403
                    kg = http.get(f"{server.url}/kinguin/v1/balance", headers={"x-api-key": key})
                    assert kg.status_code == 401
        finally:
            app.close()


def test_kinguin_latency_is_a_control(tmp_path: Path) -> None:
    with httpx.Client(timeout=10) as http:
        app = shared_sandbox({"BITLOOT_NOWPAYMENTS_IPN_SECRET": IPN_SECRET}, http=http)
        try:
            with SandboxServer(app) as server:

                def balance_seconds() -> float:
                    started = time.monotonic()
                    answer = http.get(
                        f"{server.url}/kinguin/v1/balance", headers={"x-api-key": "k"}
                    )
                    assert answer.status_code == 200
                    return time.monotonic() - started

                slow = http.post(f"{server.url}/sandbox/kinguin/latency", json={"seconds": 1})
                assert slow.json() == {"seconds": "1"}
                assert balance_seconds() >= 1
                http.post(f"{server.url}/sandbox/kinguin/latency", json={"seconds": 0})
                assert balance_seconds() < 0.5
                bad = http.post(f"{server.url}/sandbox/kinguin/latency", json={"seconds": -1})
                assert bad.status_code == 400
                assert http.get(f"{server.url}/sandbox/kinguin/orders").json() == []
                missing = http.post(f"{server.url}/sandbox/payments/42/pay")
                assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
        finally:
            app.close()


def test_a_live_shops_integration_tests_use_the_shared_sandbox(tmp_path: Path) -> None:
    """A live-mode shop pointed at the sandbox through the base-URL variables, with its
    own API keys (the sandbox set to accept exactly those), sells a Kinguin key."""
    sandbox_env = {
        "BITLOOT_NOWPAYMENTS_IPN_SECRET": KIT_IPN_SECRET,
        "BITLOOT_NOWPAYMENTS_API_KEY": NOWPAYMENTS_API_KEY,
        "BITLOOT_KINGUIN_API_KEY": KINGUIN_API_KEY,
    }
    with httpx.Client(timeout=10) as http:
        shared = shared_sandbox(sandbox_env, http=http)
        try:
            with SandboxServer(shared) as sandbox, ShopServer() as server:
                urls = SimpleNamespace(
                    payments_url=f"{sandbox.url}/nowpayments", supplier_url=f"{sandbox.url}/kinguin"
                )
                env = live_env(urls, server.url, mail_dir=str(tmp_path / "mail"))  # type: ignore[arg-type]
                shop = build_shop(load_settings(data_dir=tmp_path / "data", env=env))
                try:
                    assert (shop.settings.mode, shop.sandbox) == ("live", None)
                    server.attach(shop.checkout, shop.store, shop.vault, shop.clock)  # type: ignore[arg-type]
                    for product in CATALOGUE:
                        shop.checkout.save_product(product)
                    created = shop.checkout.create_order(email=BUYER, items=[(STARDEW, 1)])
                    order_id = created.order.id
                    payment = shop.checkout.open_payment(order_id, created.access_token).payment
                    paid = http.post(f"{sandbox.url}/sandbox/payments/{payment.id}/pay")
                    assert {ipn["answered"] for ipn in paid.json()["ipns"]} == {200}
                    deadline = time.monotonic() + 20
                    while shop.checkout.admin_order(order_id).order.status != "fulfilled":
                        assert time.monotonic() < deadline, "never fulfilled"
                        shop.worker.run_once()
                        time.sleep(0.1)
                finally:
                    shop.close()
                placed = http.get(f"{sandbox.url}/sandbox/kinguin/orders").json()
                assert [o["order_external_id"] for o in placed] == [order_id]
        finally:
            shared.close()
