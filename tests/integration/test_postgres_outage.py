"""PostgreSQL restarting under a flood of IPNs: 503 while it is gone, nothing acknowledged
lost, and the pool reconnecting by itself.

The FastAPI example server runs in this process on a cluster of the test's own (so
stopping it disturbs no other test), with ``BITLOOT_DATABASE_TIMEOUT_SECONDS=1``: a
request that finds no connection answers 503 after a second. Eight clients post signed
IPNs (every status of a full payment, twice each, shuffled); after the first hundred
answers the database is stopped (``fast``: every session is cut, in-flight transactions
roll back) and started again two seconds later while the flood goes on. Then, as
NOWPayments does, every IPN not answered 200 is sent again.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))

from flow import FULL_PAYMENT, STARDEW, create_order, ipn_body, open_payment, sign

from support.postgres import PgCluster, start_cluster
from support.servers import RunningServer, postgres_env, running_server

ORDERS = 40
CLIENTS = 8
STOP_AFTER = 100
DOWN_SECONDS = 2.0


@pytest.fixture
def own_cluster(pg_cluster: PgCluster) -> Iterator[PgCluster]:
    """A cluster of this test's own (``pg_cluster`` first: it skips or fails without one)."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


def deliveries(server: RunningServer) -> list[bytes]:
    bodies = []
    for _ in range(ORDERS):
        payment_id = open_payment(server, create_order(server, STARDEW))["id"]
        pay_amount = json.loads(ipn_body(server, payment_id))["pay_amount"]
        for status in FULL_PAYMENT:
            paid = 0 if status == "waiting" else pay_amount
            bodies += [ipn_body(server, payment_id, payment_status=status, actually_paid=paid)] * 2
    random.Random(9).shuffle(bodies)
    return bodies


def test_a_restarting_database_answers_503_and_loses_nothing_acknowledged(
    own_cluster: PgCluster, tmp_path: Path
) -> None:
    env = {**postgres_env(own_cluster.new_database()), "BITLOOT_DATABASE_TIMEOUT_SECONDS": "1"}
    with running_server("fastapi", tmp_path / "data", env, worker=False) as server:
        bodies = deliveries(server)
        answered: list[tuple[bytes, int]] = []
        lock = threading.Lock()
        enough = threading.Event()
        http = httpx.Client(base_url=server.url, timeout=30)

        def deliver(body: bytes) -> None:
            headers = {"content-type": "application/json", "x-nowpayments-sig": sign(server, body)}
            status = http.post("/webhooks/nowpayments", content=body, headers=headers).status_code
            with lock:
                answered.append((body, status))
                if len(answered) >= STOP_AFTER:
                    enough.set()

        with ThreadPoolExecutor(CLIENTS) as pool:
            flood = [pool.submit(deliver, body) for body in bodies]
            assert enough.wait(60)
            own_cluster.stop("fast")
            time.sleep(DOWN_SECONDS)
            own_cluster.start()
            for delivery in flood:
                delivery.result()

        statuses = {status for _, status in answered}
        assert statuses <= {200, 503}, statuses
        assert 503 in statuses  # the outage was seen, as a retryable answer
        # NOWPayments sends again what was not acknowledged: the pool has reconnected.
        retried = [body for body, status in answered if status != 200]
        for body in retried:
            deliver(body)
        http.close()
        assert {status for _, status in answered[len(bodies) :]} == {200}

        acknowledged = {hashlib.sha256(body).hexdigest() for body, s in answered if s == 200}
        logged = {row["body_sha256"] for row in server.rows("SELECT body_sha256 FROM webhooks")}
        assert acknowledged <= logged  # every IPN answered 200 is in the database
        orders = server.rows("SELECT status FROM orders")
        payments = server.rows("SELECT status FROM payments")
        assert [o["status"] for o in orders] == ["paid"] * ORDERS
        assert [p["status"] for p in payments] == ["finished"] * ORDERS
        jobs = server.rows("SELECT key FROM jobs WHERE key LIKE 'fulfill:%'")
        assert len(jobs) == ORDERS
