"""Choosing the payment provider: the list, the optional body of ``POST .../payment``, the
payment's provider in the order JSON, and the sandbox controls for each provider."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from flow import assert_error, bearer, create_order, get_order, wait_for

from bitloot_adapters.logs import configure_logging
from bitloot_core.providers.btcpay import sign
from support.servers import RunningServer, running_server


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
    # The invoice is open as long as the order (BITLOOT_ORDER_TTL_MINUTES, 60).
    window = datetime.fromisoformat(payment["valid_until"]) - datetime.fromisoformat(
        order["created_at"]
    )
    assert timedelta(minutes=59) <= window <= timedelta(minutes=61)
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


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    """The shop's structured logs, at DEBUG, in a buffer; the setup before it afterwards."""
    before = structlog.get_config()
    buffer = io.StringIO()
    configure_logging(stream=buffer, level=logging.DEBUG)
    yield buffer
    structlog.configure(**before)


def test_no_btcpay_secret_reaches_a_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, log_buffer: io.StringIO
) -> None:
    caplog.set_level(logging.DEBUG)
    with running_server("fastapi", tmp_path / "data") as server:
        store = server.shop.settings.btcpay
        assert store is not None
        assert server.shop.sandbox is not None
        sandbox = server.shop.sandbox.btcpay
        assert sandbox is not None
        order = create_order(server)
        payment = open_with(server, order, {"provider": "btcpay"}).json()["payment"]
        forged = b'{"type": "InvoiceSettled", "invoiceId": "x", "deliveryId": "d"}'
        forged_sig = sign("guessed-secret", forged)
        answer = server.http.post(
            "/webhooks/btcpay", content=forged, headers={"BTCPay-Sig": forged_sig}
        )
        assert answer.status_code == 401
        assert server.http.post(f"/sandbox/payments/{payment['id']}/pay").status_code == 200
        wait_for(server, order, "fulfilled")
        secrets = [store.api_key, store.webhook_secret, forged_sig]
        secrets += [sent.signature for sent in sandbox.webhooks]
    logged = log_buffer.getvalue() + caplog.text
    assert "payment_opened" in logged  # the logs were captured
    leaked = [secret for secret in secrets if secret in logged]
    assert leaked == [], f"{len(leaked)} secrets in the logs"


def test_a_signed_btcpay_event_about_no_invoice_is_answered_200(server: RunningServer) -> None:
    # A store webhook on "everything" also sends payouts; a 4xx would make BTCPay before
    # 2.3.4 send it again for an hour, holding up the invoice events behind it.
    store = server.shop.settings.btcpay
    assert store is not None
    body = b'{"type": "PayoutCreated", "deliveryId": "D1", "payoutId": "P1"}'
    answer = server.http.post(
        "/webhooks/btcpay", content=body, headers={"BTCPay-Sig": sign(store.webhook_secret, body)}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "ignored"
