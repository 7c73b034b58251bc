"""Scenario 7: Kinguin delivers within seconds while the page keeps polling and late IPNs
arrive; a fulfilled order never goes back to ``paid``.

Polling only reads (deviation #18: only an IPN or reconciliation can mark an order paid),
and every IPN on a fulfilled order is acknowledged and ignored.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import httpx
from steps import (
    admin_order,
    assert_seen,
    checkout,
    get_order,
    kinguin_orders_placed,
    mail_files,
    pay,
    progress_only_forward,
    send_ipn,
    settle,
    wait_for,
)

from support.servers import RunningServer


def test_fulfilled_never_flickers_back_to_paid(server: RunningServer) -> None:
    assert server.shop.sandbox is not None
    server.shop.sandbox.supplier.key_delay = 1.0  # the demo's delivery time
    order, payment = checkout(server, ("counter-strike-source", 1))

    seen: list[str] = []
    stop = threading.Event()

    def poll() -> None:  # the customer's page, refreshing all the time
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                seen.append(get_order(server, order, client)["status"])
                stop.wait(0.02)

    page = threading.Thread(target=poll)
    page.start()
    try:
        pay(server, payment["id"])
        wait_for(server, order, "fulfilled")
        # Stale IPNs after delivery: new bodies (other amounts), so not dedupe repeats.
        due = Decimal(payment["pay_amount"])
        for status, paid in [
            ("finished", due + Decimal("0.00000001")),
            ("confirmed", due + Decimal("0.00000002")),
            ("confirming", due + Decimal("0.00000003")),
            ("finished", due),  # and an exact repeat, too
        ]:
            answer = send_ipn(server, payment["id"], status, actually_paid=paid)
            assert answer.status_code == 200
            assert answer.json()["outcome"] in {"ignored", "duplicate"}
            assert_seen(get_order(server, order), "fulfilled", "finished")
        settle(server, order)
    finally:
        stop.set()
        page.join(30)

    assert "fulfilled" in seen
    assert progress_only_forward(seen), seen
    assert seen[seen.index("fulfilled") :] == ["fulfilled"] * (len(seen) - seen.index("fulfilled"))
    final = get_order(server, order)
    assert_seen(final, "fulfilled", "finished")
    assert final["flags"] == []  # a stale larger amount raises no overpaid flag
    assert kinguin_orders_placed(server, order.id) == 1
    assert len(mail_files(server)) == 1
    webhooks = admin_order(server, order.id)["webhooks"]
    assert [w["outcome"] for w in webhooks[-4:]] == ["ignored", "ignored", "ignored", "duplicate"]
