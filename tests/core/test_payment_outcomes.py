"""Every payment outcome reaches the order: refunds, second payments, foreign currencies
and a payment window that outlives the order's own TTL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

from checkout_kit import Kit, send_ipn
from test_service import order_and_pay, run_jobs, status_of

from bitloot_core.chart import Flag, OrderStatus, PaymentStatus
from bitloot_core.testing import MemoryTx
from bitloot_core.values import Payment, WebhookOutcome


def order_of(kit: Kit, order_id: str):
    return kit.checkout.admin_order(order_id).order


# Refunds ----------------------------------------------------------------------------------


def test_refund_after_paid_cancels_fulfillment(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, "finished")
    assert status_of(kit, created)[0] is OrderStatus.PAID
    result = send_ipn(kit, payment, "refunded")
    assert result.outcome is WebhookOutcome.APPLIED
    order = order_of(kit, created.order.id)
    assert (order.status, order.flags) == (OrderStatus.FAILED, {Flag.REFUNDED})
    # The fulfillment job enqueued on paid runs, finds nothing to do and buys nothing.
    run_jobs(kit)
    assert kit.supplier.calls == []
    assert kit.mailer.sent == []
    assert order_of(kit, created.order.id).status is OrderStatus.FAILED


def test_refund_while_the_purchase_is_in_flight_keeps_the_keys(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, "finished")
    real_fulfill = kit.supplier.fulfill

    def refunded_meanwhile(**kwargs: object):
        keys = real_fulfill(**kwargs)  # type: ignore[arg-type]
        send_ipn(kit, payment, "refunded")
        return keys

    kit.supplier.fulfill = refunded_meanwhile  # type: ignore[method-assign]
    run_jobs(kit)
    order = order_of(kit, created.order.id)
    assert (order.status, order.flags) == (OrderStatus.FAILED, {Flag.REFUNDED})
    assert all(item.delivered for item in order.items), "keys bought are kept for the admin"
    assert kit.mailer.sent == []
    audit = [a.action for a in kit.checkout.admin_order(created.order.id).audit]
    assert "fulfillment_cancelled" in audit


def test_refund_on_a_fulfilled_order_raises_the_flag(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, "finished")
    run_jobs(kit)
    assert send_ipn(kit, payment, "refunded").outcome is WebhookOutcome.APPLIED
    order = order_of(kit, created.order.id)
    assert (order.status, order.flags) == (OrderStatus.FULFILLED, {Flag.REFUNDED})
    assert all(item.delivered for item in order.items)
    assert [o.id for o in kit.checkout.list_orders(flag=Flag.REFUNDED)] == [created.order.id]


def test_refund_before_paid_fails_the_order_with_the_flag(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, "refunded")
    assert status_of(kit, created) == (OrderStatus.FAILED, PaymentStatus.FAILED)
    assert order_of(kit, created.order.id).flags == {Flag.REFUNDED}


def test_refund_of_a_late_payment_leaves_nothing_for_the_admin_to_fulfill(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    kit.clock.advance(timedelta(hours=1))
    kit.checkout.sweep()
    send_ipn(kit, payment, "finished")
    send_ipn(kit, payment, "refunded")
    order = order_of(kit, created.order.id)
    assert (order.status, order.flags) == (OrderStatus.EXPIRED, {Flag.REFUNDED})


# A second payment -------------------------------------------------------------------------


def test_a_child_payment_in_full_on_a_paid_order_is_flagged(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, "finished")
    child = {"payment_id": int(payment.id) + 7, "parent_payment_id": int(payment.id)}
    assert send_ipn(kit, payment, "finished", **child).outcome is WebhookOutcome.APPLIED
    order = order_of(kit, created.order.id)
    assert (order.status, order.flags) == (OrderStatus.PAID, {Flag.PAID_TWICE})
    run_jobs(kit)
    assert kit.supplier.calls == [created.order.id], "still one purchase"
    assert len(kit.mailer.sent) == 1


def test_paying_twice_into_one_payment_on_a_fulfilled_order_is_flagged(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, "finished")
    run_jobs(kit)
    send_ipn(kit, payment, "finished", actually_paid=payment.pay_amount * 2)
    order = order_of(kit, created.order.id)
    assert (order.status, order.flags) == (OrderStatus.FULFILLED, {Flag.PAID_TWICE})


def test_the_same_payment_reported_again_is_not_a_second_payment(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, "finished")
    # A later word on the same money (a bit more, as an overpayment) is not paid twice.
    send_ipn(kit, payment, "finished", actually_paid=payment.pay_amount + Decimal("0.00000001"))
    child = {"payment_id": int(payment.id) + 7, "parent_payment_id": int(payment.id)}
    send_ipn(kit, payment, "finished", actually_paid=payment.pay_amount / 2, **child)
    assert Flag.PAID_TWICE not in order_of(kit, created.order.id).flags


# A foreign pay currency -------------------------------------------------------------------


def test_ipn_in_another_pay_currency_is_refused_like_an_unbound_one(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    result = send_ipn(kit, payment, "finished", pay_currency="doge")
    assert result.outcome is WebhookOutcome.REJECTED
    assert result.code == "unbound_webhook"
    assert "pay_currency" in result.reason
    assert status_of(kit, created) == (OrderStatus.WAITING, PaymentStatus.WAITING)
    audit = [a.action for a in kit.checkout.admin_order(created.order.id).audit]
    assert audit[-1] == "ipn_refused"


# The payment window -----------------------------------------------------------------------


def test_a_payment_opened_at_minute_59_is_not_swept_while_payable(kit: Kit) -> None:
    created = kit.checkout.create_order(email="buyer@example.com", items=[("hades", 1)])
    kit.clock.advance(timedelta(minutes=59))
    kit.gateway.valid_until = kit.clock.now() + timedelta(minutes=20)
    payment = kit.checkout.open_payment(created.order.id, created.access_token).payment
    assert payment.valid_until == kit.clock.now() + timedelta(minutes=20)
    kit.clock.advance(timedelta(minutes=2))  # minute 61: past creation + TTL
    assert kit.checkout.sweep() == []
    send_ipn(kit, payment, "finished")
    order = order_of(kit, created.order.id)
    assert (order.status, order.flags) == (OrderStatus.PAID, frozenset())


def test_an_order_expires_once_its_payment_window_closed_too(kit: Kit) -> None:
    created = kit.checkout.create_order(email="buyer@example.com", items=[("hades", 1)])
    kit.clock.advance(timedelta(minutes=59))
    kit.gateway.valid_until = kit.clock.now() + timedelta(minutes=20)
    kit.checkout.open_payment(created.order.id, created.access_token)
    kit.clock.advance(timedelta(minutes=20) - timedelta(seconds=1))
    assert kit.checkout.sweep() == []
    kit.clock.advance(timedelta(seconds=1))
    assert kit.checkout.sweep() == [created.order.id]


def test_without_a_provider_window_the_payment_gets_the_order_ttl(kit: Kit) -> None:
    created = kit.checkout.create_order(email="buyer@example.com", items=[("hades", 1)])
    kit.clock.advance(timedelta(minutes=59))
    kit.checkout.open_payment(created.order.id, created.access_token)
    kit.clock.advance(timedelta(minutes=59))
    assert kit.checkout.sweep() == []
    kit.clock.advance(timedelta(minutes=1))
    assert kit.checkout.sweep() == [created.order.id]


class _RefundBeforeTransaction:
    """The kit's store, sending a refund IPN just before its ``at``-th transaction."""

    def __init__(self, kit: Kit, payment: Payment, at: int) -> None:
        self.kit, self.payment, self.inner = kit, payment, kit.store
        self.count, self.at, self.fired = 0, at, False

    @contextmanager
    def transaction(self) -> Iterator[MemoryTx]:
        self.count += 1
        if self.count == self.at:
            self.fired = True
            send_ipn(self.kit, self.payment, "refunded")
        with self.inner.transaction() as tx:
            yield tx


def test_refund_just_before_the_purchase_stops_it(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, "finished")
    # Transactions of a fulfillment: lease the job, read the order, then the fence.
    store = _RefundBeforeTransaction(kit, payment, at=3)
    kit.checkout._store = store
    run_jobs(kit)
    assert store.fired
    assert kit.supplier.calls == []
    order = order_of(kit, created.order.id)
    assert (order.status, order.flags) == (OrderStatus.FAILED, {Flag.REFUNDED})
    audit = [a.action for a in kit.checkout.admin_order(created.order.id).audit]
    assert "fulfillment_cancelled" in audit
