"""Many hosts on one PostgreSQL: 3 example servers and 2 ``bitloot worker`` processes.

Each process has a data dir of its own (standing in for a host) and shares only the
database, the environment's secrets, the SMTP server and the providers: NOWPayments and
Kinguin are the loopback sandboxes in this process (as in ``test_worker_crash``), keys go
to the database vault, mail over SMTP to an aiosmtpd server here.

50 orders are made through the servers in turn: 40 paid in full, 5 short, 5 left to
expire. Their IPNs (every status twice, the last one three times: 510 deliveries) are
shuffled and posted round-robin to the three servers by twelve clients at once. A third
of the way in, server 2 is stopped and started again; what it did not answer 200 is sent
again afterwards, as NOWPayments does. Kinguin is slow at first (3 s per key), so when
two Kinguin orders have been placed both workers are mid-fulfillment: worker A is then
killed with SIGKILL and Kinguin made quick; worker B takes A's job over when its lease
(2 s) runs out.

Afterwards: every order in its right final status; one Kinguin order and one email per
paid order and none for the others; every IPN answered 200 is in the webhook log; no 5xx
from any server but the restarted one.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from realkit import CATALOGUE, Sandboxes, live_env, sandboxes, sign, wait_for
from realkit import ipn_body as signed_body

from bitloot_adapters.clock import SystemClock
from bitloot_adapters.postgres_store import PostgresStore
from bitloot_core.chart import OrderStatus
from bitloot_core.values import Payment
from support.servers import EXAMPLES, free_port

BITLOOT = Path(sys.executable).with_name("bitloot")
SERVERS = 3
CLIENTS = 12
KINDS = ["full"] * 40 + ["short"] * 5 + ["expired"] * 5
SEQUENCES = {
    "full": ("waiting", "confirming", "confirmed", "sending", "finished"),
    "short": ("waiting", "confirming", "partially_paid"),
    "expired": ("waiting", "confirming", "expired"),
}
EXPECTED = {
    "full": OrderStatus.FULFILLED,
    "short": OrderStatus.UNDERPAID,
    "expired": OrderStatus.EXPIRED,
}
SLOW_KEYS = 3.0


class Host:
    """One process on a data dir of its own; ``start``/``stop`` as often as wanted."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], root: Path) -> None:
        self.name, self.command, self.env, self.root = name, command, env, root
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.root / f"{self.name}-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(  # noqa: S603  our own scripts, fixed arguments
            self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def running(host: Host) -> Iterator[Host]:
    host.start()
    try:
        yield host
    finally:
        host.stop()


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not come up")
        time.sleep(0.1)


def server_hosts(ports: list[int], env: dict[str, str], root: Path) -> list[Host]:
    """The example FastAPI server on each port, each on a data dir of its own."""
    return [
        Host(
            f"server{n}",
            [
                *(sys.executable, str(EXAMPLES / "fastapi_server.py"), "--port", str(port)),
                *("--data-dir", str(root / f"server{n}"), "--no-worker"),
            ],
            env,
            root,
        )
        for n, port in enumerate(ports)
    ]


def worker_command(data_dir: Path) -> list[str]:
    return [str(BITLOOT), "--data-dir", str(data_dir), "worker", "--poll", "0.05"]


def bodies_for(kind: str, payment: Payment) -> list[bytes]:
    paid = {
        "full": payment.pay_amount,
        "short": (payment.pay_amount * Decimal("0.8")).quantize(Decimal("1e-8")),
        "expired": Decimal(0),
    }[kind]
    sequence = SEQUENCES[kind]
    bodies = [signed_body(payment, s, Decimal(0) if s == "waiting" else paid) for s in sequence]
    return [*bodies, *bodies, bodies[-1]]


def make_orders(
    http: httpx.Client, urls: list[str], store: PostgresStore
) -> tuple[dict[str, str], list[bytes]]:
    """The orders (id: kind), made and opened through the servers in turn, and their IPNs
    shuffled."""
    orders: dict[str, str] = {}
    bodies: list[bytes] = []
    for n, kind in enumerate(KINDS):
        url = urls[n % SERVERS]
        item = {"product_id": "stardew-valley", "quantity": 1}
        made = http.post(
            f"{url}/api/orders", json={"email": f"buyer{n}@example.com", "items": [item]}
        )
        assert made.status_code == 201, made.text
        order = made.json()
        opened = http.post(
            f"{url}/api/orders/{order['id']}/payment",
            headers={"authorization": f"Bearer {order['access_token']}"},
        )
        assert opened.status_code in {200, 201}, opened.text
        orders[order["id"]] = kind
        with store.transaction() as tx:
            (payment,) = tx.list_payments(order_id=order["id"])
        bodies += bodies_for(kind, payment)
    random.Random(509).shuffle(bodies)
    return orders, bodies


def wait_settled(store: PostgresStore, orders: dict[str, str], messages: list[bytes]) -> None:
    """Until every order is in its final status and every paid one's email has come."""

    def statuses() -> dict[str, OrderStatus | None]:
        with store.transaction() as tx:
            return {o: getattr(tx.get_order(o), "status", None) for o in orders}

    expected = {o: EXPECTED[kind] for o, kind in orders.items()}
    wait_for(lambda: statuses() == expected, timeout=120, what="every order's final status")
    paid = [o for o, kind in orders.items() if kind == "full"]
    wait_for(lambda: len(messages) >= len(paid), timeout=60, what="the emails")
    time.sleep(1)  # a duplicate email, were there one, would have had time to arrive


def check_after(
    pg_url: str,
    orders: dict[str, str],
    sandbox: Sandboxes,
    messages: list[bytes],
    answers: list[tuple[int, bytes, int | None]],
) -> None:
    """One Kinguin order and one email per paid order, none for the others; every IPN
    answered 200 logged; one fulfillment job per paid order, one of them taken over."""
    for order_id, kind in orders.items():
        want = 1 if kind == "full" else 0
        assert len(sandbox.kinguin_orders(order_id)) == want, order_id
        assert len([m for m in messages if order_id.encode() in m]) == want, order_id
    paid = sorted(o for o, kind in orders.items() if kind == "full")
    assert len(messages) == len(paid)
    acknowledged = {hashlib.sha256(b).hexdigest() for _, b, s in answers if s == 200}
    with PostgresStore(pg_url, pool_size=1) as after, after.transaction() as tx:
        logged = {w.body_sha256 for o in orders for w in tx.list_webhooks(o)}
        fulfill = [j for j in tx.list_jobs() if j.key.startswith("fulfill:")]
    assert acknowledged <= logged
    assert sorted(j.order_id for j in fulfill) == paid
    # The job the killed worker held was leased again by the other one.
    assert max(j.attempts for j in fulfill) >= 2


@pytest.mark.slow
def test_three_servers_and_two_workers_on_one_database(
    pg_url: str, smtp: tuple[Any, int], tmp_path: Path
) -> None:
    recorder, smtp_port = smtp
    messages: list[bytes] = recorder.messages
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")}
    ports = [free_port() for _ in range(SERVERS)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    with (
        sandboxes(SystemClock(), key_delay=SLOW_KEYS) as sandbox,
        PostgresStore(pg_url, pool_size=2) as store,
        ExitStack() as hosts,
    ):
        env = clean | live_env(
            sandbox,
            urls[0],
            database_url=pg_url,
            smtp_url=f"smtp://127.0.0.1:{smtp_port}",
            job_lease_seconds="2",
        )
        with store.transaction() as tx:
            for product in CATALOGUE:
                tx.upsert_product(product)
        servers = [
            hosts.enter_context(running(host)) for host in server_hosts(ports, env, tmp_path)
        ]
        for url in urls:
            wait_up(url)
        http = httpx.Client(timeout=30)
        hosts.callback(http.close)
        orders, bodies = make_orders(http, urls, store)
        assert len(bodies) >= 500

        workers = [
            hosts.enter_context(running(Host(name, worker_command(tmp_path / name), env, tmp_path)))
            for name in ("workerA", "workerB")
        ]

        answers: list[tuple[int, bytes, int | None]] = []
        lock = threading.Lock()

        def deliver(n: int, body: bytes) -> None:
            headers = {"content-type": "application/json", **sign(body)}
            try:
                status: int | None = http.post(
                    f"{urls[n % SERVERS]}/webhooks/nowpayments", content=body, headers=headers
                ).status_code
            except httpx.TransportError:
                status = None  # the restarted server was down: the provider sends it again
            with lock:
                answers.append((n % SERVERS, body, status))

        with ThreadPoolExecutor(CLIENTS) as pool:
            flood = [pool.submit(deliver, n, body) for n, body in enumerate(bodies)]
            wait_for(lambda: len(answers) >= len(bodies) // 3, timeout=120, what="a third")
            servers[2].stop()
            servers[2].start()
            placed = lambda: sum(bool(sandbox.placements(o)) for o in orders)  # noqa: E731
            wait_for(lambda: placed() >= 2, timeout=60, what="both workers mid-fulfillment")
            killed = workers[0].process
            assert killed is not None
            os.kill(killed.pid, signal.SIGKILL)
            assert killed.wait(timeout=10) == -signal.SIGKILL
            sandbox.supplier.key_delay = 0.0
            for delivery in flood:
                delivery.result()
        wait_up(urls[2])

        missed = [(n, body) for n, (_, body, status) in enumerate(answers) if status != 200]
        assert any(answers[n][0] == 2 for n, _ in missed)  # the restart was under traffic
        for n, body in missed:
            deliver(n, body)
        assert all(status == 200 for _, _, status in answers[len(bodies) :])
        errors = {(server, status) for server, _, status in answers if (status or 500) >= 500}
        assert {server for server, _ in errors} <= {2}, errors

        wait_settled(store, orders, messages)

    check_after(pg_url, orders, sandbox, messages, answers)
