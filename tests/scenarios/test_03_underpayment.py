"""Scenario 3: the customer sends 80 % of the amount due (NOWPayments closes the payment
at once; BTCPay keeps the invoice open for the rest until it expires).

The order and its payment record become ``underpaid`` and stay so for every automatic
event: no refund, no keys. (Only an audited admin decision moves it: deviation #10,
exercised in test_beyond_seed.py.)
"""

from __future__ import annotations

from decimal import Decimal

from providers import PaymentSide
from steps import (
    admin_list,
    admin_order,
    advance,
    assert_seen,
    get_order,
    kinguin_calls,
    mail_files,
    place_order,
    reveal,
)

from support.servers import RunningServer


def test_underpaid_order_gets_no_keys_forever(server: RunningServer, provider: PaymentSide) -> None:
    order = place_order(server, ("stardew-valley", 1))
    payment = provider.open(server, order)
    due = Decimal(payment["pay_amount"])
    sent = (due * Decimal("0.8")).quantize(Decimal("1e-8"))

    provider.pay_short(server, payment["id"], sent)
    seen = get_order(server, order)
    assert_seen(seen, "underpaid", "underpaid", provider_status=provider.short_status)
    assert Decimal(seen["payment"]["actually_paid"]) == sent

    # Forever: time passes, the provider says everything it said again; nothing changes
    # and nothing is bought, mailed or revealed.
    advance(server, 2 * 3600)
    replayed = provider.sent(server, payment["id"])
    assert replayed
    for body, headers in replayed:
        answer = server.http.post(f"/webhooks/{provider.name}", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
    advance(server, 24 * 3600)
    seen = get_order(server, order)
    assert_seen(seen, "underpaid", "underpaid")
    assert seen["flags"] == []
    assert not any(item["delivered"] for item in seen["items"])
    refused = reveal(server, order, seen["items"][0]["id"])
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "not_delivered"
    assert admin_order(server, order.id)["jobs"] == []
    assert kinguin_calls(server) == []
    assert mail_files(server) == []
    # The shop can find it to contact the customer.
    assert [o["id"] for o in admin_list(server, "orders", status="underpaid")] == [order.id]
