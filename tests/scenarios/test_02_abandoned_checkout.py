"""Scenario 2: the customer opens the widget, closes the tab and never pays.

The sweeper expires ``created`` and ``waiting`` orders 60 minutes after creation, and
their payment records fail (docs/seed-deviations.md #3); ``confirming`` orders are never
swept: money was seen on chain.
"""

from __future__ import annotations

from providers import PaymentSide
from steps import (
    advance,
    assert_seen,
    get_order,
    kinguin_calls,
    mail_files,
    place_order,
)

from support.servers import RunningServer


def test_abandoned_order_expires_after_sixty_minutes(
    server: RunningServer, provider: PaymentSide
) -> None:
    order = place_order(server, ("counter-strike-source", 1))
    provider.open(server, order)
    never_opened = place_order(server, ("gift-card-10", 1))
    # 0 min: waiting for the payment.
    assert_seen(get_order(server, order), "waiting", "waiting")
    assert_seen(get_order(server, never_opened), "created", None)

    # 59 min: the sweeper runs and leaves it alone.
    passed = advance(server, 3540)
    assert passed["swept"] == []
    assert_seen(get_order(server, order), "waiting", "waiting")
    assert_seen(get_order(server, never_opened), "created", None)

    # 60 min: expired, payment record failed; the customer sees "Order expired".
    passed = advance(server, 61)
    assert sorted(passed["swept"]) == sorted([order.id, never_opened.id])
    seen = get_order(server, order)
    assert_seen(seen, "expired", "failed")
    assert seen["status_text"] == "Order expired"
    assert_seen(get_order(server, never_opened), "expired", None)

    # The customer can no longer complete it: no new payment, a new checkout is needed.
    refused = server.http.post(f"/api/orders/{never_opened.id}/payment", headers=never_opened.auth)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "invalid_state"
    again = server.http.post(f"/api/orders/{order.id}/payment", headers=order.auth)
    assert again.status_code == 200  # the same, now failed, payment: nothing new to pay
    assert again.json()["payment"]["status"] == "failed"

    # Swept once only; nothing was bought, nothing mailed.
    assert advance(server, 3600)["swept"] == []
    assert_seen(get_order(server, order), "expired", "failed")
    assert kinguin_calls(server) == []
    assert mail_files(server) == []


def test_confirming_order_is_never_swept(server: RunningServer, provider: PaymentSide) -> None:
    order = place_order(server, ("counter-strike-source", 1))
    payment = provider.open(server, order)
    provider.seen(server, payment["id"])
    assert advance(server, 3 * 3600)["swept"] == []
    assert_seen(get_order(server, order), "confirming", "waiting")


def test_provider_expires_the_payment_window(server: RunningServer, provider: PaymentSide) -> None:
    order = place_order(server, ("counter-strike-source", 1))
    payment = provider.open(server, order)
    answered = server.http.post(f"/sandbox/payments/{payment['id']}/expire")
    assert answered.status_code == 200, answered.text
    assert [w["answered"] for w in provider.deliveries(answered.json())] == [200]
    seen = get_order(server, order)
    assert_seen(seen, "expired", "failed", provider_status=provider.expired_status)
    assert advance(server, 3601)["swept"] == []  # already expired: nothing to sweep
    assert kinguin_calls(server) == []
