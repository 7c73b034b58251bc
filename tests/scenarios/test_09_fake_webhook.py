"""Scenario 9: an attacker posts a fake ``finished`` IPN (or a fake BTCPay
``InvoiceSettled`` webhook) to steal keys.

The HMAC verification (SHA-512 for NOWPayments, SHA-256 for BTCPay) fails, nothing
changes, nothing is fulfilled; the webhook is logged with ``signature_valid`` false. The
answer is a 401 (400 for a signed body that is not a webhook), never a 500 (deviations
#5, #6).
"""

from __future__ import annotations

import pytest
from providers import PaymentSide, post_webhook
from steps import (
    admin_order,
    advance,
    assert_seen,
    get_order,
    kinguin_calls,
    mail_files,
    place_order,
    webhook_log,
)

from support.servers import RunningServer


def test_fake_finished_ipn_gets_nothing(server: RunningServer, provider: PaymentSide) -> None:
    order = place_order(server, ("hollow-knight", 1))
    payment = provider.open(server, order)
    attempts = provider.forgeries(server, payment["id"], payment["pay_amount"])
    for body, headers in attempts:
        answer = post_webhook(server, provider.name, body, headers)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "bad_signature"

    advance(server, 5)  # give the worker every chance
    seen = get_order(server, order)
    assert_seen(seen, "waiting", "waiting", provider_status=provider.waiting_status)
    assert admin_order(server, order.id)["jobs"] == []
    assert kinguin_calls(server) == []
    assert mail_files(server) == []
    log = webhook_log(server)
    assert len(log) == len(attempts)
    assert {(row["signature_valid"], row["outcome"]) for row in log} == {(0, "rejected")}
    # The provider's genuine webhooks still work afterwards.
    assert all(code == 200 for code in provider.pay(server, payment["id"]))
    assert get_order(server, order)["status"] in {"paid", "fulfilled"}


@pytest.mark.parametrize(
    "body",
    [b'{"payment_status": "finished"', b"[]", b'{"payment_status":"finished"}', b""],
    ids=["truncated", "array", "no-payment-id", "empty"],
)
def test_signed_garbage_is_400(server: RunningServer, provider: PaymentSide, body: bytes) -> None:
    answer = post_webhook(server, provider.name, body, provider.signed(server, body))
    assert answer.status_code == 400, answer.text
    assert "error" in answer.json()
    assert [(r["signature_valid"], r["outcome"]) for r in webhook_log(server)] == [(1, "rejected")]
