"""Scenario 5: confirmations take half an hour; the customer keeps refreshing.

The seed's table, with the documented differences: the provider's ``waiting`` IPN leaves
the order ``waiting`` (deviation #1: no money was seen yet); the payment record follows
the mapping table, ``waiting`` while ``confirming``/``sending`` and ``confirmed`` once
confirmed, with the provider's word kept in ``provider_status`` (deviation #2). Every
refresh right after an IPN already shows it.
"""

from __future__ import annotations

from steps import (
    advance,
    assert_seen,
    checkout,
    get_order,
    ipns_sent,
    pay,
    run_jobs,
    send_ipn,
)

from support.servers import RunningServer


def test_each_refresh_shows_the_current_step(stepped: RunningServer) -> None:
    server = stepped
    order, payment = checkout(server, ("counter-strike-source", 1))
    assert_seen(get_order(server, order), "waiting", "waiting")

    # Sent, not yet seen on chain: "Waiting for payment...".
    assert send_ipn(server, payment["id"], "waiting").json()["outcome"] == "ignored"
    assert_seen(get_order(server, order), "waiting", "waiting", provider_status="waiting")
    advance(server, 10 * 60)
    assert_seen(get_order(server, order), "waiting", "waiting")

    # One confirmation: "Payment confirming...".
    assert send_ipn(server, payment["id"], "confirming").json()["outcome"] == "applied"
    assert_seen(get_order(server, order), "confirming", "waiting", provider_status="confirming")

    # Thirty minutes and more of refreshing: still confirming, never swept as abandoned.
    for _ in range(7):
        advance(server, 10 * 60)
        assert_seen(get_order(server, order), "confirming", "waiting")

    # More confirmations, then the broadcast of the payout.
    assert send_ipn(server, payment["id"], "confirmed").json()["outcome"] == "applied"
    assert_seen(get_order(server, order), "confirming", "confirmed", provider_status="confirmed")
    send_ipn(server, payment["id"], "sending")
    assert_seen(get_order(server, order), "confirming", "confirmed")

    # Full confirmations: NOWPayments sends its whole sequence; the earlier steps are
    # repeats, `finished` is new. "Payment confirmed!".
    ipns = pay(server, payment["id"])
    assert [i["answered"] for i in ipns] == [200] * 5
    assert ipns_sent(server, payment["id"])[-1].status == "finished"
    assert_seen(get_order(server, order), "paid", "finished", provider_status="finished")

    assert run_jobs(server)[0]["outcome"] == "done"
    assert_seen(get_order(server, order), "fulfilled", "finished")
