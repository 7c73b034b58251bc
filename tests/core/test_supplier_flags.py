"""Issue 14: an unavailable product and a canceled supplier order each raise their own
flag for the admin (not ``fulfillment_failed``), and each has its own resolutions."""

from __future__ import annotations

import pytest
from checkout_kit import Kit, make_kit, send_ipn

from bitloot_core import chart
from bitloot_core.chart import Effect, Flag, OrderEvent, OrderStatus
from bitloot_core.errors import InvalidState, ProductUnavailable, SupplierOrderCanceled
from bitloot_core.values import JobState

S, E = OrderStatus, OrderEvent
UNAVAILABLE = frozenset({Flag.PRODUCT_UNAVAILABLE})
CANCELED = frozenset({Flag.SUPPLIER_ORDER_CANCELED})


def paid_order(kit: Kit) -> tuple[str, str]:
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", 1)])
    payment = kit.checkout.open_payment(created.order.id, created.access_token).payment
    send_ipn(kit, payment, "finished")
    return created.order.id, created.access_token


@pytest.mark.parametrize(
    ("error", "flag"),
    [
        (ProductUnavailable("out of stock", kind="HttpClient"), Flag.PRODUCT_UNAVAILABLE),
        (SupplierOrderCanceled("canceled by Kinguin"), Flag.SUPPLIER_ORDER_CANCELED),
    ],
)
def test_the_supplier_refusal_raises_its_own_flag(error: Exception, flag: Flag) -> None:
    kit = make_kit()
    order_id, _ = paid_order(kit)
    kit.supplier.outage(1, error)
    assert [r.outcome for r in kit.checkout.run_due_jobs()] == ["dead"]
    order = kit.checkout.admin_order(order_id).order
    assert (order.status, order.flags) == (S.PAID, {flag})
    assert kit.checkout.list_orders(flag=flag) == [order]
    assert kit.supplier.calls == [order_id], "tried once: neither is retried automatically"


def test_an_unavailable_product_is_retried_by_the_admin_once_restocked() -> None:
    kit = make_kit()
    order_id, _ = paid_order(kit)
    kit.supplier.outage(1, ProductUnavailable("out of stock"))
    kit.checkout.run_due_jobs()
    retried = kit.checkout.retry_fulfillment(order_id)
    assert retried.flags == frozenset()
    assert [r.outcome for r in kit.checkout.run_due_jobs()] == ["done", "done"]
    assert kit.checkout.admin_order(order_id).order.status is S.FULFILLED


def test_a_canceled_supplier_order_is_not_bought_again_but_refunded() -> None:
    kit = make_kit()
    order_id, _ = paid_order(kit)
    kit.supplier.outage(1, SupplierOrderCanceled("canceled by Kinguin"))
    kit.checkout.run_due_jobs()
    with pytest.raises(InvalidState):
        kit.checkout.retry_fulfillment(order_id)
    jobs = kit.checkout.list_jobs()
    assert [j.state for j in jobs] == [JobState.DEAD], "no re-buy under the same id"
    refunded = kit.checkout.resolve(order_id, action="refund", note="money returned")
    assert (refunded.status, refunded.flags) == (S.FAILED, {Flag.MARKED, Flag.REFUNDED})
    assert kit.supplier.calls == [order_id]


def test_a_paid_order_without_a_supplier_flag_cannot_be_refunded_by_resolve() -> None:
    kit = make_kit()
    order_id, _ = paid_order(kit)
    with pytest.raises(InvalidState):
        kit.checkout.resolve(order_id, action="refund", note="")


def test_the_flags_are_chart_rules() -> None:
    unavailable = chart.apply(S.PAID, frozenset(), E.FULFILLMENT_UNAVAILABLE)
    assert (unavailable.status, unavailable.flags) == (S.PAID, UNAVAILABLE)
    canceled = chart.apply(S.PAID, frozenset(), E.FULFILLMENT_CANCELED)
    assert (canceled.status, canceled.flags) == (S.PAID, CANCELED)
    assert chart.JOBS[chart.JobKind.FULFILL].gives_up("product_unavailable") is (
        E.FULFILLMENT_UNAVAILABLE
    )
    assert chart.JOBS[chart.JobKind.FULFILL].gives_up("supplier_order_canceled") is (
        E.FULFILLMENT_CANCELED
    )
    assert chart.JOBS[chart.JobKind.FULFILL].gives_up("supplier_error") is (E.FULFILLMENT_EXHAUSTED)
    assert chart.JOBS[chart.JobKind.COMPLETION_EMAIL].gives_up("product_unavailable") is (
        E.EMAIL_EXHAUSTED
    )


def test_the_admin_resolutions_are_table_entries() -> None:
    retried = chart.apply(S.PAID, UNAVAILABLE, E.ADMIN_RETRY_FULFILLMENT)
    assert (retried.applied, retried.flags, retried.effects) == (
        True,
        frozenset(),
        (Effect.ENQUEUE_FULFILLMENT,),
    )
    refused = chart.apply(S.PAID, CANCELED, E.ADMIN_RETRY_FULFILLMENT)
    assert not refused.applied
    assert "supplier_order_canceled" in refused.reason
    for flags in (UNAVAILABLE, CANCELED, UNAVAILABLE | CANCELED):
        refund = chart.apply(S.PAID, flags, E.ADMIN_REFUND)
        assert (refund.status, refund.flags) == (S.FAILED, {Flag.MARKED, Flag.REFUNDED})
        assert Effect.ENQUEUE_FULFILLMENT not in refund.effects
    assert not chart.apply(S.PAID, frozenset(), E.ADMIN_REFUND).applied
    assert not chart.apply(S.PAID, frozenset({Flag.FULFILLMENT_FAILED}), E.ADMIN_REFUND).applied
