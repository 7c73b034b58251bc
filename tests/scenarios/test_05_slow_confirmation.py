"""Scenario 5: confirmations take half an hour; the customer keeps refreshing.

The seed's table, with the documented differences: the provider's ``waiting`` IPN leaves
the order ``waiting`` (deviation #1: no money was seen yet); the payment record follows
the mapping table, ``waiting`` while ``confirming``/``sending`` and ``confirmed`` once
confirmed, with the provider's word kept in ``provider_status`` (deviation #2). Every
refresh right after an IPN already shows it. BTCPay plays the same half hour: its
invoice is ``Processing`` until a block settles it.
"""

from __future__ import annotations

from providers import NowPaymentsSide, PaymentSide
from steps import (
    advance,
    assert_seen,
    get_order,
    ipns_sent,
    place_order,
    run_jobs,
    send_ipn,
)

from support.servers import RunningServer


def test_each_refresh_shows_the_current_step(stepped: RunningServer, provider: PaymentSide) -> None:
    server = stepped
    order = place_order(server, ("counter-strike-source", 1))
    payment = provider.open(server, order)
    assert_seen(get_order(server, order), "waiting", "waiting")

    if isinstance(provider, NowPaymentsSide):
        # Sent, not yet seen on chain: "Waiting for payment...".
        assert send_ipn(server, payment["id"], "waiting").json()["outcome"] == "ignored"
        assert_seen(get_order(server, order), "waiting", "waiting", provider_status="waiting")
    advance(server, 10 * 60)
    assert_seen(get_order(server, order), "waiting", "waiting")

    # Seen on chain, not confirmed: "Payment confirming...".
    provider.seen(server, payment["id"])
    seen = get_order(server, order)
    assert_seen(seen, "confirming", "waiting", provider_status=provider.seen_status)

    # Thirty minutes and more of refreshing: still confirming, never swept as abandoned.
    for _ in range(7):
        advance(server, 10 * 60)
        assert_seen(get_order(server, order), "confirming", "waiting")

    if isinstance(provider, NowPaymentsSide):
        # More confirmations, then the broadcast of the payout.
        assert send_ipn(server, payment["id"], "confirmed").json()["outcome"] == "applied"
        seen = get_order(server, order)
        assert_seen(seen, "confirming", "confirmed", provider_status="confirmed")
        send_ipn(server, payment["id"], "sending")
        assert_seen(get_order(server, order), "confirming", "confirmed")

    # Full confirmations (NOWPayments sends its whole sequence, the earlier steps repeats,
    # `finished` new; BTCPay settles the invoice). "Payment confirmed!".
    answered = provider.confirm(server, payment["id"])
    assert answered
    assert all(code == 200 for code in answered)
    if isinstance(provider, NowPaymentsSide):
        assert ipns_sent(server, payment["id"])[-1].status == "finished"
    assert_seen(get_order(server, order), "paid", "finished", provider_status=provider.paid_status)

    assert run_jobs(server)[0]["outcome"] == "done"
    assert_seen(get_order(server, order), "fulfilled", "finished")
