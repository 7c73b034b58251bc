"""Scenario 4: the transaction fails on chain; NOWPayments sends ``failed``."""

from __future__ import annotations

from steps import (
    admin_order,
    advance,
    assert_seen,
    checkout,
    fail,
    get_order,
    kinguin_calls,
    mail_files,
    place_order,
    send_ipn,
)

from support.servers import RunningServer


def test_failed_payment_fails_the_order(server: RunningServer) -> None:
    order, payment = checkout(server, ("hollow-knight", 1))
    assert send_ipn(server, payment["id"], "confirming").status_code == 200
    assert_seen(get_order(server, order), "confirming", "waiting")

    ipns = fail(server, payment["id"])
    assert ipns == [{"status": "failed", "answered": 200}]
    seen = get_order(server, order)
    assert_seen(seen, "failed", "failed", provider_status="failed")
    assert seen["status_text"] == "Payment failed"

    # Terminal: later IPNs and time change nothing; nothing is bought or mailed.
    assert send_ipn(server, payment["id"], "confirmed").status_code == 200
    advance(server, 2 * 3600)
    assert_seen(get_order(server, order), "failed", "failed")
    assert admin_order(server, order.id)["jobs"] == []
    assert kinguin_calls(server) == []
    assert mail_files(server) == []

    # The customer starts again with a new order.
    again = place_order(server, ("hollow-knight", 1))
    assert again.id != order.id
    assert_seen(get_order(server, again), "created", None)
