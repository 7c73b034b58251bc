"""Sandbox control routes, and their absence when the shop is not in sandbox mode."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from flow import (
    FULL_PAYMENT,
    GIFT_CARD,
    STARDEW,
    admin_orders,
    advance,
    assert_error,
    create_order,
    free_port_url,
    get_order,
    open_payment,
    pay,
    snapshot,
    wait_for,
)

from support.servers import RunningServer, running_server

SANDBOX_ROUTES = [
    ("/sandbox/payments/5800000001/pay", {}),
    ("/sandbox/payments/5800000001/pay", {"amount": "1"}),
    ("/sandbox/payments/5800000001/fail", None),
    ("/sandbox/payments/5800000001/expire", None),
    ("/sandbox/clock/advance", {"seconds": 3600}),
    ("/sandbox/kinguin/outage", {"failures": 3}),
    ("/sandbox/kinguin/latency", {"seconds": 1}),
]


def test_pay_in_full_sends_the_ipns_of_a_full_payment(server: RunningServer) -> None:
    order = create_order(server, GIFT_CARD)
    payment = open_payment(server, order)
    response = server.http.post(f"/sandbox/payments/{payment['id']}/pay")  # no body at all
    assert response.status_code == 200
    assert response.json()["ipns"] == [{"status": s, "answered": 200} for s in FULL_PAYMENT]
    done = wait_for(server, order, "fulfilled")
    assert done["payment"]["status"] == "finished"
    assert done["payment"]["provider_status"] == "finished"
    assert Decimal(done["payment"]["actually_paid"]) == Decimal(payment["pay_amount"])


def test_pay_short_makes_the_order_underpaid(server: RunningServer) -> None:
    order = create_order(server, STARDEW)
    payment = open_payment(server, order)
    short = str(Decimal(payment["pay_amount"]) - Decimal("0.00000100"))
    ipns = pay(server, payment["id"], short)
    assert ipns == [
        {"status": "waiting", "answered": 200},
        {"status": "confirming", "answered": 200},
        {"status": "partially_paid", "answered": 200},
    ]
    current = get_order(server, order)
    assert current["status"] == "underpaid"
    assert current["payment"]["status"] == "underpaid"
    assert current["payment"]["provider_status"] == "partially_paid"
    assert Decimal(current["payment"]["actually_paid"]) == Decimal(short)
    assert current["items"][0]["delivered"] is False


def test_fail_and_expire_send_one_ipn_each(server: RunningServer) -> None:
    failing = create_order(server, GIFT_CARD)
    failing_payment = open_payment(server, failing)
    response = server.http.post(f"/sandbox/payments/{failing_payment['id']}/fail")
    assert response.status_code == 200
    assert response.json()["ipns"] == [{"status": "failed", "answered": 200}]
    assert get_order(server, failing)["status"] == "failed"
    assert get_order(server, failing)["payment"]["status"] == "failed"

    expiring = create_order(server, GIFT_CARD)
    expiring_payment = open_payment(server, expiring)
    response = server.http.post(f"/sandbox/payments/{expiring_payment['id']}/expire")
    assert response.status_code == 200
    assert response.json()["ipns"] == [{"status": "expired", "answered": 200}]
    assert get_order(server, expiring)["status"] == "expired"


def test_clock_advance_lets_the_sweeper_expire_unpaid_orders(server: RunningServer) -> None:
    unopened = create_order(server, GIFT_CARD)
    opened = create_order(server, GIFT_CARD)
    payment = open_payment(server, opened)
    first = advance(server, 59 * 60)
    assert first["swept"] == []
    assert get_order(server, opened)["status"] == "waiting"
    second = advance(server, 2 * 60)
    assert sorted(second["swept"]) == sorted([unopened["id"], opened["id"]])
    moved = datetime.fromisoformat(second["now"]) - datetime.fromisoformat(first["now"])
    assert timedelta(minutes=2) <= moved < timedelta(minutes=3)
    assert get_order(server, unopened)["status"] == "expired"
    expired = get_order(server, opened)
    assert expired["status"] == "expired"
    assert expired["payment"]["id"] == payment["id"]
    assert expired["payment"]["status"] == "failed"
    assert {o["id"] for o in admin_orders(server, status="expired")} == {
        unopened["id"],
        opened["id"],
    }


def test_clock_advance_leaves_paid_orders_alone(server: RunningServer) -> None:
    order = create_order(server, GIFT_CARD)
    payment = open_payment(server, order)
    pay(server, payment["id"])
    wait_for(server, order, "fulfilled")
    assert advance(server, 5 * 3600)["swept"] == []
    assert get_order(server, order)["status"] == "fulfilled"


@pytest.mark.parametrize("action", ["pay", "fail", "expire"])
@pytest.mark.parametrize("payment_id", ["999", "nope", "0"])
def test_unknown_payment_is_404(shared_server: RunningServer, action, payment_id) -> None:
    response = shared_server.http.post(f"/sandbox/payments/{payment_id}/{action}")
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/sandbox/clock/advance", {}, "invalid_seconds"),
        ("/sandbox/clock/advance", {"seconds": -1}, "invalid_amount"),
        ("/sandbox/clock/advance", {"seconds": "soon"}, "invalid_amount"),
        ("/sandbox/clock/advance", {"seconds": True}, "invalid_amount"),
        ("/sandbox/clock/advance", {"seconds": "NaN"}, "invalid_amount"),
        ("/sandbox/clock/advance", {"seconds": "Infinity"}, "invalid_amount"),
        ("/sandbox/clock/advance", {"seconds": 10**12}, "invalid_seconds"),
        ("/sandbox/clock/advance", {"seconds": [1]}, "invalid_amount"),
        ("/sandbox/kinguin/outage", {}, "invalid_failures"),
        ("/sandbox/kinguin/outage", {"failures": -1}, "invalid_failures"),
        ("/sandbox/kinguin/outage", {"failures": 101}, "invalid_failures"),
        ("/sandbox/kinguin/outage", {"failures": "3"}, "invalid_failures"),
        ("/sandbox/kinguin/outage", {"failures": 2.5}, "invalid_failures"),
        ("/sandbox/kinguin/outage", {"failures": True}, "invalid_failures"),
    ],
)
def test_control_routes_refuse_bad_input(shared_server: RunningServer, path, body, code) -> None:
    before = advance(shared_server, 0)["now"]
    assert_error(shared_server.http.post(path, json=body), 400, code)
    after = advance(shared_server, 0)["now"]
    assert datetime.fromisoformat(after) - datetime.fromisoformat(before) < timedelta(minutes=1)


@pytest.mark.parametrize(
    "amount", [0, "0", "-1", "abc", "NaN", "Infinity", True, [1], {"x": 1}, "1e999999999"]
)
def test_pay_refuses_a_bad_amount(shared_server: RunningServer, amount) -> None:
    server = shared_server
    order = create_order(server, GIFT_CARD)
    payment = open_payment(server, order)
    before = snapshot(server)
    response = server.http.post(f"/sandbox/payments/{payment['id']}/pay", json={"amount": amount})
    assert response.status_code < 500
    assert_error(response, 400)
    assert snapshot(server) == before


@pytest.fixture(params=["fastapi", "flask"])
def live_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    """A shop configured for the real providers (pointed at a closed port): no sandbox."""
    closed = free_port_url()
    env = {
        "BITLOOT_MODE": "live",
        "BITLOOT_NOWPAYMENTS_API_KEY": "np-live-key",
        "BITLOOT_NOWPAYMENTS_IPN_SECRET": "np-ipn-secret",
        "BITLOOT_KINGUIN_API_KEY": "kinguin-live-key",
        "BITLOOT_NOWPAYMENTS_BASE_URL": f"{closed}/v1",
        "BITLOOT_KINGUIN_BASE_URL": closed,
        "BITLOOT_PUBLIC_URL": "https://shop.example",
        "BITLOOT_MAIL_DIR": str(tmp_path / "mail"),
    }
    with running_server(request.param, tmp_path / "data", env) as running:
        yield running


def test_sandbox_routes_are_404_outside_sandbox_mode(live_server: RunningServer) -> None:
    server = live_server
    assert server.shop.sandbox is None
    assert server.shop.settings.sandbox is False
    for path, body in SANDBOX_ROUTES:
        assert_error(server.http.post(path, json=body), 404, "not_found")
    assert_error(server.http.get("/sandbox/kinguin/orders"), 404, "not_found")
    assert server.http.get("/healthz").status_code == 200
    # The rest of the API is there; with no catalogue seeded there is nothing to buy.
    assert server.http.get("/api/products").json() == []
    response = server.http.post(
        "/api/orders", json={"email": "a@example.com", "items": [{"product_id": GIFT_CARD}]}
    )
    assert_error(response, 404, "unknown_product")
    assert server.http.get("/api/admin/orders", headers=server.admin).json() == []


def test_kinguin_orders_and_latency_controls(server: RunningServer) -> None:
    assert server.http.get("/sandbox/kinguin/orders").json() == []
    order = create_order(server, STARDEW)
    pay(server, open_payment(server, order)["id"])
    wait_for(server, order, "fulfilled")
    (placed,) = server.http.get("/sandbox/kinguin/orders").json()
    assert placed["order_external_id"] == order["id"]
    assert [p["productId"] for p in placed["products"]] != []
    assert len(placed["keys"]) == 1

    slow = server.http.post("/sandbox/kinguin/latency", json={"seconds": 1})
    assert slow.json() == {"seconds": "1"}
    assert server.shop.sandbox.supplier.latency == 1  # type: ignore[union-attr]
    server.http.post("/sandbox/kinguin/latency", json={"seconds": 0})
    assert server.shop.sandbox.supplier.latency == 0  # type: ignore[union-attr]
    for bad in ({"seconds": -1}, {"seconds": 601}, {}):
        assert server.http.post("/sandbox/kinguin/latency", json=bad).status_code == 400
