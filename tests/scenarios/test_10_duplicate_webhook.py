"""Scenario 10: the provider misses our 200 and sends the same webhook again.

A repeat is recognised by (payment_id, payment_status, actually_paid) for NOWPayments
(deviation #4), by the original delivery id for BTCPay:
acknowledged with 200 and not applied; no second fulfillment, no second email, and the
webhook log shows each repeat.
"""

from __future__ import annotations

from providers import NowPaymentsSide, PaymentSide, post_webhook
from steps import (
    admin_order,
    assert_seen,
    get_order,
    jobs_of,
    kinguin_orders_placed,
    mail_files,
    place_order,
    settle,
    wait_for,
)

from support.servers import RunningServer


def test_every_ipn_twice_is_processed_once(server: RunningServer, provider: PaymentSide) -> None:
    order = place_order(server, ("stardew-valley", 1))
    payment = provider.open(server, order)
    sends = provider.webhooks_per_payment
    assert provider.pay_twice(server, payment["id"]) == [200] * (2 * sends)

    wait_for(server, order, "fulfilled")
    view = settle(server, order)
    outcomes = [w["outcome"] for w in view["webhooks"]]
    assert outcomes[1::2] == ["duplicate"] * sends
    assert "duplicate" not in outcomes[0::2]
    if isinstance(provider, NowPaymentsSide):
        assert outcomes[-2:] == ["applied", "duplicate"]  # `finished` applied once

    # Later retries of the very same signed bodies: acknowledged, not applied.
    replayed = provider.sent(server, payment["id"])
    assert len(replayed) == 2 * sends
    for body, headers in replayed:
        answer = post_webhook(server, provider.name, body, headers)
        assert answer.status_code == 200
        assert answer.json()["outcome"] == "duplicate"
    settle(server, order)

    assert_seen(get_order(server, order), "fulfilled", "finished")
    jobs = jobs_of(server, order.id)
    assert {kind: job["attempts"] for kind, job in jobs.items()} == {
        "fulfill": 1,
        "completion_email": 1,
    }
    assert kinguin_orders_placed(server, order.id) == 1
    assert len(mail_files(server)) == 1
    assert len(admin_order(server, order.id)["webhooks"]) == 4 * sends
