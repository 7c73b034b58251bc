"""Kinguin as it really behaves, through the example servers: keys hours late, its
order.status webhook, out of stock, and the sandbox controls for them."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

from flow import (
    STARDEW,
    admin_order,
    advance,
    assert_error,
    buy,
    create_order,
    get_order,
    open_payment,
    pay,
    wait_for,
)

from bitloot_adapters.sandbox import KinguinProduct
from bitloot_core.values import Product, ProductSource
from support.servers import RunningServer

THREE_HOURS = 3 * 3600


def fulfillment_job(server: RunningServer, order_id: str) -> dict[str, Any]:
    jobs = [j for j in admin_order(server, order_id)["jobs"] if j["kind"] == "fulfill"]
    assert len(jobs) == 1, jobs
    job: dict[str, Any] = jobs[0]
    return job


def paid_and_waiting(server: RunningServer, delay: int = THREE_HOURS) -> dict[str, Any]:
    """A Stardew Valley order, paid, whose Kinguin keys are ``delay`` seconds away."""
    response = server.http.post("/sandbox/kinguin/key-delay", json={"seconds": delay})
    assert response.status_code == 200, response.text
    order = create_order(server, STARDEW)
    payment = open_payment(server, order)
    assert [i["answered"] for i in pay(server, payment["id"])] == [200] * 5
    deadline = time.monotonic() + 15
    while "keys_pending" not in str(fulfillment_job(server, order["id"])["last_error"]):
        assert time.monotonic() < deadline, fulfillment_job(server, order["id"])
        time.sleep(0.05)
    return order


def waiting_orders(server: RunningServer) -> list[dict[str, Any]]:
    response = server.http.get("/api/admin/waiting", headers=server.admin)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def emails(server: RunningServer) -> int:
    return len(list((server.shop.settings.data_dir / "mail").glob("*.eml")))


def test_keys_three_hours_late_end_in_one_fulfilled_order_and_one_email(
    server: RunningServer,
) -> None:
    order = paid_and_waiting(server)

    for _ in range(5):  # an hour and a quarter of polls: none uses up an attempt
        advance(server, 15 * 60)
        job = fulfillment_job(server, order["id"])
        assert (job["state"], job["attempts"]) == ("pending", 0), job
    assert get_order(server, order)["status"] == "paid"
    (waiting,) = waiting_orders(server)
    (kinguin_order,) = server.http.get("/sandbox/kinguin/orders").json()
    assert waiting["order_id"] == order["id"]
    assert waiting["supplier_orders"] == [kinguin_order["order_id"]]
    assert (waiting["preorder"], waiting["release_at"]) == (False, None)
    assert waiting["since"] < waiting["next_poll"]
    advance(server, THREE_HOURS)

    fulfilled = wait_for(server, order, "fulfilled")
    assert fulfilled["flags"] == []
    deadline = time.monotonic() + 10
    while emails(server) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert emails(server) == 1
    assert len(server.shop.sandbox.supplier.orders) == 1  # type: ignore[union-attr]
    assert waiting_orders(server) == []


def test_the_kinguin_webhook_wakes_fulfillment_before_the_next_poll(
    server: RunningServer,
) -> None:
    order = paid_and_waiting(server, delay=120)
    sandbox = server.shop.sandbox
    assert sandbox is not None
    # The keys arrive two minutes on; the next poll is five minutes after the first try.
    sandbox.clock.advance(timedelta(seconds=150))
    time.sleep(0.5)  # the worker thread runs every 0.05 s: nothing is due
    assert get_order(server, order)["status"] == "paid"
    (sent,) = [w for w in sandbox.supplier.send_webhooks() if w.status == "completed"]

    assert sent.answered == 204
    wait_for(server, order, "fulfilled")
    audit = [e["action"] for e in admin_order(server, order["id"])["audit"]]
    assert "fulfillment_woken" in audit


def test_moving_the_sandbox_clock_delivers_the_keys_and_the_webhook_by_itself(
    server: RunningServer,
) -> None:
    order = paid_and_waiting(server, delay=120)
    sandbox = server.shop.sandbox
    assert sandbox is not None

    # Two and a half minutes on: the keys are there, the next poll is minutes away; the
    # clock's move alone sends Kinguin's webhook, which wakes the fulfillment.
    advance(server, 150)

    wait_for(server, order, "fulfilled")  # the shop's clock stays minutes from the poll
    assert [(w.status, w.answered) for w in sandbox.supplier.webhooks] == [("completed", 204)]
    audit = [e["action"] for e in admin_order(server, order["id"])["audit"]]
    assert "fulfillment_woken" in audit
    assert fulfillment_job(server, order["id"])["attempts"] == 1


def test_the_kinguin_webhook_needs_the_secret_and_is_deduplicated(server: RunningServer) -> None:
    secret = server.shop.settings.kinguin_webhook_secret
    assert secret
    body = json.dumps(
        {
            "orderId": "K1",
            "orderExternalId": "nobody",
            "status": "completed",
            "updatedAt": "2026-01-01T00:00:00Z",
        }
    ).encode()
    headers = {"x-event-name": "order.status", "content-type": "application/json"}

    wrong = server.http.post("/webhooks/kinguin", content=body, headers=headers)
    good = server.http.post(
        "/webhooks/kinguin", content=body, headers=headers | {"x-event-secret": secret}
    )
    malformed = server.http.post(
        "/webhooks/kinguin", content=b"{}", headers=headers | {"x-event-secret": secret}
    )

    assert_error(wrong, 401, "bad_signature")
    assert (good.status_code, good.content) == (204, b"")
    assert_error(malformed, 400, "malformed_webhook")


def test_out_of_stock_buys_nothing_and_holds_the_order_for_the_admin(
    server: RunningServer,
) -> None:
    stock = server.http.post("/sandbox/kinguin/stock", json={"product_id": STARDEW, "qty": 0})
    assert stock.status_code == 200, stock.text
    order = create_order(server, STARDEW)
    payment = open_payment(server, order)
    pay(server, payment["id"])

    held = wait_for(server, order, until=lambda o: "product_unavailable" in o["flags"])

    assert (held["status"], held["flags"]) == ("paid", ["product_unavailable"])
    job = fulfillment_job(server, order["id"])
    assert job["state"] == "dead"
    assert "product_unavailable" in job["last_error"]
    assert server.shop.sandbox is not None
    assert server.shop.sandbox.supplier.orders == []


def test_sandbox_kinguin_controls_refuse_bad_input(server: RunningServer) -> None:
    assert_error(server.http.post("/sandbox/kinguin/key-delay", json={"seconds": -1}), 400)
    assert_error(
        server.http.post("/sandbox/kinguin/stock", json={"product_id": STARDEW, "qty": -1}), 400
    )
    assert_error(
        server.http.post("/sandbox/kinguin/stock", json={"product_id": "nope", "qty": 1}), 404
    )


def test_twenty_keys_of_one_game_are_bought_nine_at_a_time(server: RunningServer) -> None:
    fulfilled = buy(server, STARDEW, quantity=20)

    assert fulfilled["status"] == "fulfilled"
    assert fulfilled["items"][0]["quantity"] == 20
    orders = server.http.get("/sandbox/kinguin/orders").json()
    placed = sorted((o["order_external_id"], o["products"][0]["qty"]) for o in orders)
    oid = fulfilled["id"]
    assert placed == [(oid, 9), (f"{oid}-part2", 9), (f"{oid}-part3", 2)]


def test_an_order_over_ninety_units_is_refused(server: RunningServer) -> None:
    response = server.http.post(
        "/api/orders",
        json={"email": "a@example.com", "items": [{"product_id": STARDEW, "quantity": 91}]},
    )

    assert_error(response, 400, "too_many_units")


def test_a_pre_order_waits_for_its_release_shown_to_the_admin(server: RunningServer) -> None:
    sandbox = server.shop.sandbox
    assert sandbox is not None
    release = sandbox.clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    release += timedelta(days=10)
    sandbox.supplier.add_product(
        KinguinProduct(
            product_id="5c9b00000000000000000001",
            kinguin_id=90001,
            name="Coming Soon Steam CD Key",
            price=Decimal("20.00"),
            release_at=release,
        )
    )
    server.shop.checkout.save_product(
        Product(
            id="coming-soon",
            name="Coming Soon",
            price=Decimal("25.00"),
            currency="usd",
            source=ProductSource.KINGUIN,
            supplier_ref="5c9b00000000000000000001",
        )
    )
    order = create_order(server, "coming-soon", quantity=2)
    payment = open_payment(server, order)
    pay(server, payment["id"])
    deadline = time.monotonic() + 15
    while not waiting_orders(server):
        assert time.monotonic() < deadline, fulfillment_job(server, order["id"])
        time.sleep(0.05)

    (waiting,) = waiting_orders(server)
    assert waiting["order_id"] == order["id"]
    assert waiting["preorder"] is True
    assert waiting["release_at"] == release.isoformat().replace("+00:00", "Z")
    (placed,) = server.http.get("/sandbox/kinguin/orders").json()
    assert placed["order_external_id"] == f"{order['id']}-5c9b00000000000000000001"
    advance(server, 9 * 24 * 3600)  # a day before the release: still waiting
    assert get_order(server, order)["status"] == "paid"
    assert fulfillment_job(server, order["id"])["attempts"] == 0

    advance(server, 24 * 3600)

    fulfilled = wait_for(server, order, "fulfilled")
    assert fulfilled["flags"] == []
    assert waiting_orders(server) == []
