"""Choosing the payment provider: the list, the optional body of ``POST .../payment``, the
payment's provider in the order JSON, and the sandbox controls for each provider."""

from __future__ import annotations

from typing import Any

import pytest
from flow import assert_error, bearer, create_order, get_order, wait_for

from support.servers import RunningServer


@pytest.fixture
def server(shared_server: RunningServer) -> RunningServer:
    """One shop per server kind for this module: each test works on orders of its own."""
    return shared_server


def open_with(server: RunningServer, order: dict[str, Any], body: object) -> Any:
    return server.http.post(
        f"/api/orders/{order['id']}/payment", json=body, headers=bearer(order["access_token"])
    )


def test_the_shop_lists_its_providers_default_first(server: RunningServer) -> None:
    response = server.http.get("/api/payment-providers")
    assert response.status_code == 200
    assert response.json() == {
        "providers": [
            {"id": "nowpayments", "name": "NOWPayments"},
            {"id": "btcpay", "name": "BTCPay Server"},
        ]
    }


def test_a_btcpay_payment_is_opened_paid_and_fulfilled(server: RunningServer) -> None:
    order = create_order(server)
    opened = open_with(server, order, {"provider": "btcpay"})
    assert opened.status_code == 201, opened.text
    payment = opened.json()["payment"]
    assert (payment["provider"], payment["status"], payment["pay_currency"]) == (
        "btcpay",
        "waiting",
        "btc",
    )
    assert payment["pay_address"].startswith("bcrt1q")
    assert payment["uri"].startswith(f"bitcoin:{payment['pay_address']}?amount=")
    assert get_order(server, order)["payment"]["provider"] == "btcpay"

    # Asking again, even for another provider, answers the payment already opened.
    again = open_with(server, order, {"provider": "nowpayments"})
    assert again.status_code == 200
    assert again.json()["payment"]["id"] == payment["id"]

    paid = server.http.post(f"/sandbox/payments/{payment['id']}/pay", json={})
    assert paid.status_code == 200, paid.text
    webhooks = paid.json()["webhooks"]
    assert [w["type"] for w in webhooks] == [
        "InvoiceReceivedPayment",
        "InvoiceProcessing",
        "InvoicePaymentSettled",
        "InvoiceSettled",
    ]
    assert all(w["answered"] == 200 for w in webhooks)
    done = wait_for(server, order, "fulfilled")
    assert (done["payment"]["status"], done["payment"]["provider_status"]) == (
        "finished",
        "Settled",
    )
    assert done["payment"]["actually_paid"] == payment["pay_amount"]


def test_without_a_body_the_default_provider_opens_the_payment(server: RunningServer) -> None:
    order = create_order(server)
    response = server.http.post(
        f"/api/orders/{order['id']}/payment", headers=bearer(order["access_token"])
    )
    assert response.status_code == 201
    assert response.json()["payment"]["provider"] == "nowpayments"
    empty = create_order(server)
    assert open_with(server, empty, {}).json()["payment"]["provider"] == "nowpayments"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"provider": "paypal"}, "unknown_provider"),
        ({"provider": 7}, "unknown_provider"),
        ({"provider": ""}, "unknown_provider"),
        ({"provider": "x" * 41}, "unknown_provider"),
        (["btcpay"], "invalid_json"),
    ],
)
def test_a_provider_the_shop_does_not_run_is_refused_and_nothing_opens(
    server: RunningServer, body: object, code: str
) -> None:
    order = create_order(server)
    assert_error(open_with(server, order, body), 400, code)
    seen = get_order(server, order)
    assert (seen["status"], seen["payment"]) == ("created", None)


@pytest.mark.parametrize(
    ("action", "status", "events"),
    [
        ("fail", "failed", ["InvoiceInvalid"]),
        ("expire", "expired", ["InvoiceExpired"]),
    ],
)
def test_sandbox_fail_and_expire_work_for_btcpay(
    server: RunningServer, action: str, status: str, events: list[str]
) -> None:
    order = create_order(server)
    payment = open_with(server, order, {"provider": "btcpay"}).json()["payment"]
    response = server.http.post(f"/sandbox/payments/{payment['id']}/{action}")
    assert response.status_code == 200, response.text
    assert [w["type"] for w in response.json()["webhooks"]] == events
    assert wait_for(server, order, status)["payment"]["status"] == "failed"
    # BTCPay never expires an invoice twice: a move it would not make is a conflict.
    if action == "expire":
        again = server.http.post(f"/sandbox/payments/{payment['id']}/expire")
        assert_error(again, 409, "invalid_state")
