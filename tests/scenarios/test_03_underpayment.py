"""Scenario 3: the customer sends 80 % of the amount due.

The order and its payment record become ``underpaid`` and stay so for every automatic
event: no refund, no keys. (Only an audited admin decision moves it: deviation #10,
exercised in test_beyond_seed.py.)
"""

from __future__ import annotations

from decimal import Decimal

from steps import (
    admin_list,
    admin_order,
    advance,
    assert_seen,
    checkout,
    get_order,
    kinguin_calls,
    mail_files,
    pay,
    reveal,
    send_ipn,
)

from support.servers import RunningServer


def test_underpaid_order_gets_no_keys_forever(server: RunningServer) -> None:
    order, payment = checkout(server, ("stardew-valley", 1))
    due = Decimal(payment["pay_amount"])
    sent = (due * Decimal("0.8")).quantize(Decimal("1e-8"))

    ipns = pay(server, payment["id"], sent)
    assert [i["status"] for i in ipns] == ["waiting", "confirming", "partially_paid"]
    assert all(i["answered"] == 200 for i in ipns)
    seen = get_order(server, order)
    assert_seen(seen, "underpaid", "underpaid", provider_status="partially_paid")
    assert Decimal(seen["payment"]["actually_paid"]) == sent

    # Forever: time passes, the provider repeats itself, even says `finished` for the same
    # short amount; nothing changes and nothing is bought, mailed or revealed.
    advance(server, 2 * 3600)
    assert send_ipn(server, payment["id"], "confirmed", actually_paid=sent).status_code == 200
    assert send_ipn(server, payment["id"], "finished", actually_paid=sent).status_code == 200
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
