"""Scenario 4: the transaction fails on chain; NOWPayments sends ``failed``, BTCPay makes
the invoice ``Invalid``."""

from __future__ import annotations

from providers import PaymentSide
from steps import (
    admin_order,
    advance,
    assert_seen,
    get_order,
    kinguin_calls,
    mail_files,
    place_order,
)

from support.servers import RunningServer


def test_failed_payment_fails_the_order(server: RunningServer, provider: PaymentSide) -> None:
    order = place_order(server, ("hollow-knight", 1))
    payment = provider.open(server, order)
    provider.seen(server, payment["id"])
    assert_seen(get_order(server, order), "confirming", "waiting")

    answer = server.http.post(f"/sandbox/payments/{payment['id']}/fail")
    assert answer.status_code == 200, answer.text
    assert [w["answered"] for w in provider.deliveries(answer.json())] == [200]
    seen = get_order(server, order)
    assert_seen(seen, "failed", "failed", provider_status=provider.failed_status)
    assert seen["status_text"] == "Payment failed"

    # Terminal: the provider's earlier webhooks again and time change nothing; nothing
    # is bought or mailed.
    replayed = provider.sent(server, payment["id"])
    assert replayed
    for body, headers in replayed:
        answer = server.http.post(f"/webhooks/{provider.name}", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
    advance(server, 2 * 3600)
    assert_seen(get_order(server, order), "failed", "failed")
    assert admin_order(server, order.id)["jobs"] == []
    assert kinguin_calls(server) == []
    assert mail_files(server) == []

    # The customer starts again with a new order.
    again = place_order(server, ("hollow-knight", 1))
    assert again.id != order.id
    assert_seen(get_order(server, again), "created", None)
