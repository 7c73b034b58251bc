"""Issue 7: a Kinguin product is never bought above its sale price without the admin.

The supplier asks more than the order line's sale price: nothing is bought, the order
stays ``paid`` with ``price_guard``; the admin approves the purchase once (audited) or
refunds it (chart rule 16).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from checkout_kit import Kit, make_kit, send_ipn

from bitloot_core import chart
from bitloot_core.chart import Effect, Flag, OrderEvent, OrderStatus
from bitloot_core.errors import InvalidState

S, E = OrderStatus, OrderEvent
HADES_REF = "kg-1002"  # sold at 19.99


def paid_order(kit: Kit, quantity: int = 1) -> str:
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", quantity)])
    payment = kit.checkout.open_payment(created.order.id, created.access_token).payment
    send_ipn(kit, payment, "finished")
    return created.order.id


def guarded(kit: Kit) -> str:
    kit.supplier.prices[HADES_REF] = Decimal("20.00")
    order_id = paid_order(kit)
    assert [r.outcome for r in kit.checkout.run_due_jobs()] == ["dead"]
    return order_id


@pytest.mark.parametrize(("asked", "bought"), [(Decimal("19.99"), True), (Decimal("20.00"), False)])
def test_the_sale_price_is_the_most_paid_for_a_key(asked: Decimal, bought: bool) -> None:
    kit = make_kit()
    kit.supplier.prices[HADES_REF] = asked
    order_id = paid_order(kit, quantity=2)
    kit.checkout.run_due_jobs()
    order = kit.checkout.admin_order(order_id).order
    assert (order_id in kit.supplier.orders) is bought
    if bought:
        assert order.status is S.FULFILLED
    else:
        assert (order.status, order.flags) == (S.PAID, {Flag.PRICE_GUARD})
        assert kit.checkout.list_orders(flag=Flag.PRICE_GUARD) == [order]
        assert kit.supplier.calls == [order_id], "not retried on its own"


def test_the_admin_approves_the_purchase_once() -> None:
    kit = make_kit()
    order_id = guarded(kit)
    approved = kit.checkout.resolve(order_id, action="fulfill", note="price checked")
    assert (approved.status, approved.flags) == (S.PAID, {Flag.PRICE_APPROVED, Flag.MARKED})
    with pytest.raises(InvalidState):
        kit.checkout.resolve(order_id, action="fulfill", note="again")
    with pytest.raises(InvalidState):
        kit.checkout.resolve(order_id, action="refund", note="too late")
    kit.checkout.run_due_jobs()
    view = kit.checkout.admin_order(order_id)
    assert view.order.status is S.FULFILLED
    assert kit.supplier.calls == [order_id, order_id]
    decisions = [a.detail for a in view.audit if a.action == "admin_fulfill"]
    assert decisions == ["price checked", "paid -> paid"]  # the decision, then the move


def test_the_admin_refunds_instead() -> None:
    kit = make_kit()
    order_id = guarded(kit)
    with pytest.raises(InvalidState):
        kit.checkout.retry_fulfillment(order_id)  # a retry would only meet the price again
    refunded = kit.checkout.resolve(order_id, action="refund", note="money returned")
    assert (refunded.status, refunded.flags) == (S.FAILED, {Flag.MARKED, Flag.REFUNDED})
    kit.checkout.run_due_jobs()
    assert order_id not in kit.supplier.orders


def test_the_chart_rules_of_the_price_guard() -> None:
    held = chart.apply(S.PAID, frozenset(), E.FULFILLMENT_PRICE_GUARD)
    assert (held.status, held.flags, held.effects) == (S.PAID, {Flag.PRICE_GUARD}, ())
    assert chart.JOBS[chart.JobKind.FULFILL].gives_up("price_guard") is E.FULFILLMENT_PRICE_GUARD
    approve = chart.apply(S.PAID, frozenset({Flag.PRICE_GUARD}), E.ADMIN_FULFILL)
    assert approve.effects == (Effect.ENQUEUE_FULFILLMENT,)
    assert not chart.apply(S.PAID, frozenset(), E.ADMIN_FULFILL).applied
    # An admin fulfill that enters paid enqueues the purchase once, not twice.
    late = chart.apply(S.UNDERPAID, frozenset(), E.ADMIN_FULFILL)
    assert late.effects == (Effect.ENQUEUE_FULFILLMENT,)
