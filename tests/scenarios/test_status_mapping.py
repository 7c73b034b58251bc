"""The seed's NOWPayments status mapping table, one signed IPN per row, over HTTP.

Each row is sent as the first IPN of a fresh order whose payment widget is open (the
order is ``waiting``: no IPN is bound to an order before its payment exists). Row
``waiting`` differs from the seed as documented (deviation #1): the order stays
``waiting`` instead of moving to ``confirming``. ``finished`` is sent for the full
amount, ``partially_paid`` and ``underpaid`` for half of it (deviation #8: the amount
decides). An unknown status is answered 200, audited, and changes nothing.

One server serves every row (each row has its own order); it runs no worker, so
``paid`` is seen before fulfillment moves it on.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from steps import admin_order, assert_seen, checkout, get_order, send_ipn

from support.servers import RunningServer, running_server

# NOWPayments status -> (order status, payment record status), as the seed's table says.
SEED_TABLE = {
    "waiting": ("confirming", "waiting"),
    "confirming": ("confirming", "waiting"),
    "sending": ("confirming", "waiting"),
    "confirmed": ("confirming", "confirmed"),
    "finished": ("paid", "finished"),
    "partially_paid": ("underpaid", "underpaid"),
    "underpaid": ("underpaid", "underpaid"),
    "expired": ("expired", "failed"),
    "refunded": ("failed", "failed"),
    "failed": ("failed", "failed"),
}
# docs/seed-deviations.md #1: a `waiting` IPN leaves a waiting order waiting.
DOCUMENTED = SEED_TABLE | {"waiting": ("waiting", "waiting")}
SHORT = {"partially_paid", "underpaid"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server("fastapi", tmp_path_factory.mktemp("mapping"), worker=False) as running:
        assert running.shop.sandbox is not None
        running.shop.sandbox.supplier.key_delay = 0.0
        yield running


@pytest.mark.parametrize("provider_status", list(SEED_TABLE))
def test_mapping_row(shared: RunningServer, provider_status: str) -> None:
    order, payment = checkout(shared, ("stardew-valley", 1))
    due = Decimal(payment["pay_amount"])
    paid = due / 2 if provider_status in SHORT else due
    answer = send_ipn(shared, payment["id"], provider_status, actually_paid=paid)
    assert answer.status_code == 200
    expected = answer.json()["outcome"]
    assert expected == ("ignored" if provider_status == "waiting" else "applied")

    status, payment_status = DOCUMENTED[provider_status]
    seen = get_order(shared, order)
    assert_seen(seen, status, payment_status, provider_status=provider_status)
    # docs/seed-deviations.md #25: a refund also raises its flag, whatever the status.
    assert seen["flags"] == (["refunded"] if provider_status == "refunded" else [])
    jobs = [job["kind"] for job in admin_order(shared, order.id)["jobs"]]
    assert jobs == (["fulfill"] if status == "paid" else [])


def test_unknown_status_is_acknowledged_and_ignored(shared: RunningServer) -> None:
    order, payment = checkout(shared, ("stardew-valley", 1))
    answer = send_ipn(shared, payment["id"], "wrong_asset_confirmed")
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "ignored"
    assert_seen(get_order(shared, order), "waiting", "waiting", provider_status="waiting")
    view = admin_order(shared, order.id)
    assert view["jobs"] == []
    assert [(w["provider_status"], w["outcome"]) for w in view["webhooks"]] == [
        ("wrong_asset_confirmed", "ignored")
    ]
    assert any("wrong_asset_confirmed" in a["detail"] for a in view["audit"])
