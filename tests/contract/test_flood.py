"""A webhook flood over real HTTP on both servers: junk is refused cheaply and without a
write past its budget, and a genuine IPN sent in the middle of it is applied promptly."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from flow import bearer, create_order, ipn_body, open_payment, post_ipn, sign

from bitloot_core.providers.nowpayments.ipn import MAX_CANONICAL_BYTES
from support.servers import running_server

KINDS = ["fastapi", "flask"]
BUDGET = 20
CONNECTIONS = 8
# The costliest junk there was: 64 KiB of nested arrays under a made-up signature.
_UNIT = b"[" * 12 + b"1" + b"]" * 12
JUNK = b'{"a":[' + b",".join([_UNIT] * 2400) + b"]}"


@pytest.mark.parametrize("kind", KINDS)
def test_a_genuine_ipn_goes_through_a_junk_flood(kind: str, tmp_path: Path) -> None:
    assert 60 * 1024 < len(JUNK) <= 64 * 1024
    assert len(JUNK) > MAX_CANONICAL_BYTES
    env = {"BITLOOT_RATE_LIMIT_WEBHOOK_REJECTS_PER_MINUTE": str(BUDGET)}
    with running_server(kind, tmp_path / "data", env) as s:
        order = create_order(s)
        payment = open_payment(s, order)
        stop = threading.Event()
        answers: list[int] = []

        def flood() -> None:
            with httpx.Client(base_url=s.url, timeout=30) as client:
                while not stop.is_set():
                    response = client.post(
                        "/webhooks/nowpayments",
                        content=JUNK,
                        headers={"x-nowpayments-sig": "ab" * 64},
                    )
                    answers.append(response.status_code)

        threads = [threading.Thread(target=flood) for _ in range(CONNECTIONS)]
        for thread in threads:
            thread.start()
        try:
            # Until the budget is spent and the flood runs on 429s.
            deadline = time.monotonic() + 20
            while answers.count(429) < 2 * CONNECTIONS and time.monotonic() < deadline:
                time.sleep(0.05)
            body = ipn_body(s, payment["id"], payment_status="confirming")
            started = time.monotonic()
            response = post_ipn(s, body, sign(s, body))
            took = time.monotonic() - started
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert response.status_code == 200, response.text
        assert took < 2.0, took  # NOWPayments waits a few seconds at most
        status = s.http.get(f"/api/orders/{order['id']}", headers=bearer(order["access_token"]))
        assert status.json()["status"] == "confirming"
        # Junk got 401 until the budget ran out, 429 after; only the 401s were written.
        assert set(answers) == {401, 429}, set(answers)
        assert answers.count(401) <= BUDGET + CONNECTIONS
        assert answers.count(429) > answers.count(401)
        with sqlite3.connect(s.shop.settings.data_dir / "bitloot.db") as db:
            (logged,) = db.execute("SELECT count(*) FROM webhooks").fetchone()
        # The 401s, plus the sandbox's and the genuine IPN's rows.
        assert logged <= answers.count(401) + 2
