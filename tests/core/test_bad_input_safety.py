"""Bad input is a refusal, never a crash: lone surrogates in signed IPNs, and email
addresses that would reach more than one recipient."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from checkout_kit import Kit, ipn_body, sign
from test_service import order_and_pay, status_of

from bitloot_core.chart import OrderStatus, PaymentStatus
from bitloot_core.errors import InvalidInput
from bitloot_core.testing import MemoryTx
from bitloot_core.values import Payment, WebhookOutcome


@pytest.mark.parametrize("field", ["order_description", "pay_address", "payment_status"])
def test_a_signed_ipn_with_a_lone_surrogate_is_refused_and_logged(kit: Kit, field: str) -> None:
    created, payment = order_and_pay(kit)
    body = ipn_body(payment, "finished").replace(
        f'"{field}":'.encode(), f'"{field}":"\\ud800","x_{field}":'.encode(), 1
    )
    result = kit.checkout.handle_ipn(body, sign(body))
    assert result.outcome is WebhookOutcome.REJECTED
    assert result.code == "malformed_webhook"
    assert "surrogate" in result.reason
    assert status_of(kit, created) == (OrderStatus.WAITING, PaymentStatus.WAITING)
    # Written to the webhook log, as any webhook is (signed, so signature_valid).
    [logged] = kit.store._tables.webhooks
    assert (logged.outcome, logged.signature_valid) == (WebhookOutcome.REJECTED, True)


def test_a_surrogate_pair_is_an_ordinary_character(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    body = ipn_body(payment, "finished", order_description="gift \\ud83c\\udf81")
    body = body.replace(b"\\\\u", b"\\u")
    assert kit.checkout.handle_ipn(body, sign(body)).outcome is WebhookOutcome.APPLIED
    assert status_of(kit, created)[0] is OrderStatus.PAID


@pytest.mark.parametrize(
    "email",
    [
        "postmaster,x@evil.com",
        'a<b>"c@x.com',
        "a@b.com, c@d.com",
        "a@b.com;c@d.com",
        "Name <a@b.com>",
        '"quoted"@example.com',
        "a(comment)@example.com",
        "a@[127.0.0.1]",
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a@-example.com",
        "a@example..com",
        "a\\b@example.com",
        "a:b@example.com",
    ],
)
def test_an_email_naming_anything_but_one_plain_address_is_refused(kit: Kit, email: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        kit.checkout.create_order(email=email, items=[("hades", 1)])
    assert refused.value.code == "invalid_email"
    assert kit.checkout.list_orders() == []


@pytest.mark.parametrize(
    "email", ["a@b.co", "first.last+tag@sub.example.com", "o'brien@example.ie", "x_y-z@a-b.io"]
)
def test_plain_addresses_are_accepted(kit: Kit, email: str) -> None:
    assert kit.checkout.create_order(email=email, items=[("hades", 1)]).order.email == email


class _BrokenStoreFor:
    """The kit's store, failing in an unforeseen way on the update of one payment."""

    def __init__(self, kit: Kit, payment_id: str) -> None:
        self.inner, self.payment_id = kit.store, payment_id

    @contextmanager
    def transaction(self) -> Iterator[object]:
        with self.inner.transaction() as tx:
            yield _BrokenTx(tx, self.payment_id)


class _BrokenTx:
    def __init__(self, tx: MemoryTx, payment_id: str) -> None:
        self._tx, self._payment_id = tx, payment_id

    def __getattr__(self, name: str) -> object:
        return getattr(self._tx, name)

    def update_payment(self, payment: Payment) -> Payment:
        if payment.id == self._payment_id:
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        return self._tx.update_payment(payment)


def test_one_bad_record_does_not_abort_a_reconciliation_pass(kit: Kit) -> None:
    _, bad = order_and_pay(kit)
    lone, lone_payment = order_and_pay(kit)
    good, good_payment = order_and_pay(kit)
    kit.gateway.payments[bad.id] = ipn_body(bad, "finished")
    kit.gateway.payments[lone_payment.id] = ipn_body(
        lone_payment, "finished", pay_address="\ud800"
    ).replace(b"\\\\ud800", b"\\ud800")
    kit.gateway.payments[good_payment.id] = ipn_body(good_payment, "finished")
    kit.clock.advance(timedelta(minutes=15))
    kit.checkout._store = _BrokenStoreFor(kit, bad.id)
    results = kit.checkout.reconcile()
    assert [r.order_id for r in results] == [good.order.id]
    assert status_of(kit, good)[0] is OrderStatus.PAID
    assert status_of(kit, lone)[0] is OrderStatus.WAITING
    assert kit.observer.names().count("reconcile_failed") == 2


def test_one_bad_record_does_not_abort_a_sweep(kit: Kit) -> None:
    _, bad = order_and_pay(kit)
    good, _ = order_and_pay(kit)
    kit.gateway.payments[bad.id] = ipn_body(bad, "finished")
    kit.clock.advance(timedelta(hours=1))
    kit.checkout._store = _BrokenStoreFor(kit, bad.id)
    assert kit.checkout.sweep() == [good.order.id]
