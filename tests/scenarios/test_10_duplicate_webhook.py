"""Scenario 10: NOWPayments misses our 200 and sends the same IPN again.

A repeat is recognised by (payment_id, payment_status, actually_paid) (deviation #4):
acknowledged with 200 and not applied; no second fulfillment, no second email, and the
webhook log shows each repeat.
"""

from __future__ import annotations

from steps import (
    admin_order,
    assert_seen,
    checkout,
    get_order,
    ipns_sent,
    jobs_of,
    kinguin_orders_placed,
    mail_files,
    post_ipn,
    provider_pay,
    settle,
    wait_for,
)

from support.servers import RunningServer


def test_every_ipn_twice_is_processed_once(server: RunningServer) -> None:
    order, payment = checkout(server, ("stardew-valley", 1))
    deliveries = provider_pay(server, payment["id"], duplicate=True)
    assert [d["status"] for d in deliveries] == [
        status
        for status in ("waiting", "confirming", "confirmed", "sending", "finished")
        for _ in range(2)
    ]
    assert [d["answered"] for d in deliveries] == [200] * 10

    wait_for(server, order, "fulfilled")
    view = settle(server, order)
    outcomes = [w["outcome"] for w in view["webhooks"]]
    assert outcomes[1::2] == ["duplicate"] * 5
    assert "duplicate" not in outcomes[0::2]
    assert outcomes[-2:] == ["applied", "duplicate"]  # `finished` applied once

    # Later retries of the very same signed bodies: acknowledged, not applied.
    for sent in ipns_sent(server, payment["id"]):
        answer = post_ipn(server, sent.body, sent.signature)
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
    assert len(admin_order(server, order.id)["webhooks"]) == 20
