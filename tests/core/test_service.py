"""The Checkout service end to end in memory: every seed scenario, decided by the core."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from checkout_kit import IPN_SECRET, Kit, ipn_body, make_kit, send_ipn, sign

from bitloot_core import idempotency, tokens
from bitloot_core.chart import Flag, OrderStatus, PaymentStatus
from bitloot_core.errors import (
    IdempotencyConflict,
    InvalidInput,
    InvalidState,
    KeysPending,
    KeyUrlRejected,
    NotFound,
    PoolEmpty,
    SupplierError,
)
from bitloot_core.service import CreatedOrder
from bitloot_core.values import JobState, Payment, WebhookOutcome


def order_and_pay(
    kit: Kit, items: list[tuple[str, int]] | None = None
) -> tuple[CreatedOrder, Payment]:
    created = kit.checkout.create_order(
        email="buyer@example.com", items=items or [("elden-ring", 1)]
    )
    opened = kit.checkout.open_payment(created.order.id, created.access_token)
    return created, opened.payment


def status_of(kit: Kit, created: CreatedOrder) -> tuple[OrderStatus, PaymentStatus | None]:
    view = kit.checkout.get_order(created.order.id, created.access_token)
    return view.order.status, view.payment.status if view.payment else None


def run_jobs(kit: Kit) -> list[str]:
    return [run.outcome for run in kit.checkout.run_due_jobs()]


# Scenario 1 -------------------------------------------------------------------------------


def test_happy_path(kit: Kit) -> None:
    created = kit.checkout.create_order(email="buyer@example.com", items=[("elden-ring", 1)])
    assert status_of(kit, created) == (OrderStatus.CREATED, None)
    payment = kit.checkout.open_payment(created.order.id, created.access_token).payment
    assert status_of(kit, created) == (OrderStatus.WAITING, PaymentStatus.WAITING)
    assert kit.gateway.created[0]["price_amount"] == "59.99"
    assert kit.gateway.created[0]["ipn_callback_url"] == "https://shop.example/webhooks/nowpayments"

    assert send_ipn(kit, payment, "confirming").outcome is WebhookOutcome.APPLIED
    assert status_of(kit, created) == (OrderStatus.CONFIRMING, PaymentStatus.WAITING)
    assert send_ipn(kit, payment, "finished").outcome is not WebhookOutcome.REJECTED
    assert status_of(kit, created) == (OrderStatus.PAID, PaymentStatus.FINISHED)

    # Fulfillment, then the completion email it enqueued, in one pass of the worker.
    assert run_jobs(kit) == ["done", "done"]
    assert status_of(kit, created) == (OrderStatus.FULFILLED, PaymentStatus.FINISHED)
    assert len(kit.mailer.sent) == 1
    email = kit.mailer.sent[0]
    assert email.to == "buyer@example.com"
    assert kit.checkout.order_page_url(created.order.id) in email.text
    assert "View keys" in email.html

    item = created.order.items[0]
    revealed = kit.checkout.reveal(created.order.id, item.id, created.access_token)
    ref = kit.checkout.check_key_token(revealed.url.removeprefix("memory://keys/"))
    secret, _ = kit.vault.read(ref)
    assert secret.startswith(b"KEY-kg-1001-")
    assert kit.supplier.calls == [created.order.id]


# Scenario 2 -------------------------------------------------------------------------------


def test_abandoned_order_expires_after_sixty_minutes(kit: Kit) -> None:
    created, _ = order_and_pay(kit)
    kit.clock.advance(timedelta(minutes=59, seconds=59))
    assert kit.checkout.sweep() == []
    kit.clock.advance(timedelta(seconds=1))
    assert kit.checkout.sweep() == [created.order.id]
    assert status_of(kit, created) == (OrderStatus.EXPIRED, PaymentStatus.FAILED)
    assert kit.checkout.sweep() == []


def test_order_without_payment_expires_too(kit: Kit) -> None:
    created = kit.checkout.create_order(email="a@example.com", items=[("hades", 1)])
    kit.clock.advance(timedelta(hours=1))
    assert kit.checkout.sweep() == [created.order.id]
    assert status_of(kit, created) == (OrderStatus.EXPIRED, None)


def test_configurable_expiry() -> None:
    kit = make_kit(order_ttl=timedelta(minutes=15))
    created, _ = order_and_pay(kit)
    kit.clock.advance(timedelta(minutes=15))
    assert kit.checkout.sweep() == [created.order.id]


def test_confirming_order_is_not_swept(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, "confirming")
    kit.clock.advance(timedelta(hours=5))
    assert kit.checkout.sweep() == []
    assert status_of(kit, created)[0] is OrderStatus.CONFIRMING


def test_late_payment_after_expiry_is_held_for_the_admin(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    kit.clock.advance(timedelta(hours=1))
    kit.checkout.sweep()
    assert send_ipn(kit, payment, "finished").outcome is WebhookOutcome.APPLIED
    order = kit.checkout.get_order(created.order.id, created.access_token).order
    assert order.status is OrderStatus.EXPIRED
    assert Flag.PAID_LATE in order.flags
    assert status_of(kit, created)[1] is PaymentStatus.FINISHED, "the money did arrive"
    assert run_jobs(kit) == []
    assert [o.id for o in kit.checkout.list_orders(flag=Flag.PAID_LATE)] == [created.order.id]

    kit.checkout.resolve(created.order.id, action="fulfill", note="customer paid late")
    assert run_jobs(kit) == ["done", "done"]  # fulfillment, then its email
    order = kit.checkout.get_order(created.order.id, created.access_token).order
    assert order.status is OrderStatus.FULFILLED
    assert Flag.MARKED in order.flags
    assert Flag.PAID_LATE not in order.flags
    audit = [a.action for a in kit.checkout.admin_order(created.order.id).audit]
    assert "admin_fulfill" in audit


# Scenario 3 -------------------------------------------------------------------------------


def test_underpayment_is_final_without_keys(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    short = payment.pay_amount * Decimal("0.8")
    send_ipn(kit, payment, "partially_paid", short)
    assert status_of(kit, created) == (OrderStatus.UNDERPAID, PaymentStatus.UNDERPAID)
    # More IPNs change nothing; no fulfillment is ever queued.
    send_ipn(kit, payment, "confirming", short)
    assert status_of(kit, created) == (OrderStatus.UNDERPAID, PaymentStatus.UNDERPAID)
    assert run_jobs(kit) == []
    assert kit.supplier.calls == []


def test_finished_for_less_than_due_is_underpaid(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, "finished", payment.pay_amount - Decimal("0.00000001"))
    assert status_of(kit, created) == (OrderStatus.UNDERPAID, PaymentStatus.UNDERPAID)


def test_underpay_tolerance_accepts_a_small_shortfall() -> None:
    kit = make_kit(underpay_tolerance_percent=Decimal(1))
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, "partially_paid", payment.pay_amount * Decimal("0.995"))
    assert status_of(kit, created) == (OrderStatus.PAID, PaymentStatus.FINISHED)
    created2, payment2 = order_and_pay(kit)
    send_ipn(kit, payment2, "partially_paid", payment2.pay_amount * Decimal("0.98"))
    assert status_of(kit, created2)[0] is OrderStatus.UNDERPAID


def test_admin_refunds_an_underpaid_order(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, "partially_paid", payment.pay_amount / 2)
    order = kit.checkout.resolve(created.order.id, action="refund", note="refunded by hand")
    assert order.status is OrderStatus.FAILED
    assert {Flag.REFUNDED, Flag.MARKED} <= order.flags
    with pytest.raises(InvalidState):
        kit.checkout.resolve(created.order.id, action="fulfill", note="")
    with pytest.raises(InvalidInput):
        kit.checkout.resolve(created.order.id, action="explode", note="")


def test_overpayment_is_flagged(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, "finished", payment.pay_amount * 2)
    order = kit.checkout.get_order(created.order.id, created.access_token).order
    assert order.status is OrderStatus.PAID
    assert Flag.OVERPAID in order.flags


# Scenario 4 -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["failed", "refunded"])
def test_failed_payment(kit: Kit, status: str) -> None:
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, status)
    assert status_of(kit, created) == (OrderStatus.FAILED, PaymentStatus.FAILED)
    assert run_jobs(kit) == []
    # A payment that still arrives is held for the admin, never fulfilled on its own.
    send_ipn(
        kit, payment, "finished", payment_id=int(payment.id) + 1, parent_payment_id=int(payment.id)
    )
    order = kit.checkout.get_order(created.order.id, created.access_token).order
    refunded = {Flag.REFUNDED} if status == "refunded" else set()
    assert (order.status, order.flags) == (OrderStatus.FAILED, {Flag.PAID_LATE, *refunded})
    assert run_jobs(kit) == []


def test_provider_expiry(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, "expired")
    assert status_of(kit, created) == (OrderStatus.EXPIRED, PaymentStatus.FAILED)


# Scenario 5 -------------------------------------------------------------------------------


def test_slow_confirmations_step_by_step(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    steps = [
        ("waiting", (OrderStatus.WAITING, PaymentStatus.WAITING)),
        ("confirming", (OrderStatus.CONFIRMING, PaymentStatus.WAITING)),
        ("confirmed", (OrderStatus.CONFIRMING, PaymentStatus.CONFIRMED)),
        ("sending", (OrderStatus.CONFIRMING, PaymentStatus.CONFIRMED)),
        ("finished", (OrderStatus.PAID, PaymentStatus.FINISHED)),
    ]
    for provider_status, expected in steps:
        send_ipn(kit, payment, provider_status)
        assert status_of(kit, created) == expected, provider_status
    view = kit.checkout.get_order(created.order.id, created.access_token)
    assert view.payment is not None
    assert view.payment.provider_status == "finished"


# Scenario 6 -------------------------------------------------------------------------------


def test_double_click_returns_the_same_order(kit: Kit) -> None:
    first = kit.checkout.create_order(
        email="a@example.com", items=[("hades", 1)], idempotency_key="checkout-key-0001"
    )
    again = kit.checkout.create_order(
        email="A@Example.com ", items=[("hades", 1)], idempotency_key="checkout-key-0001"
    )
    assert again.order.id == first.order.id
    assert again.access_token == first.access_token
    assert again.replayed
    assert not first.replayed
    with pytest.raises(IdempotencyConflict):
        kit.checkout.create_order(
            email="a@example.com", items=[("hades", 2)], idempotency_key="checkout-key-0001"
        )
    other = kit.checkout.create_order(
        email="b@example.com", items=[("hades", 1)], idempotency_key="checkout-key-0001"
    )
    assert other.order.id != first.order.id
    assert len(kit.checkout.list_orders()) == 2


def test_idempotency_key_is_forgotten_after_retention(kit: Kit) -> None:
    first = kit.checkout.create_order(
        email="a@example.com", items=[("hades", 1)], idempotency_key="retention-key-0001"
    )
    kit.clock.advance(timedelta(hours=24))
    assert kit.checkout.create_order(
        email="a@example.com", items=[("hades", 1)], idempotency_key="retention-key-0001"
    ).replayed, "exactly 24 h old still replays"
    kit.clock.advance(timedelta(microseconds=1))
    later = kit.checkout.create_order(
        email="a@example.com", items=[("hades", 2)], idempotency_key="retention-key-0001"
    )
    assert later.order.id != first.order.id
    again = kit.checkout.create_order(
        email="a@example.com", items=[("hades", 2)], idempotency_key="retention-key-0001"
    )
    assert again.order.id == later.order.id


def test_opening_the_payment_twice_returns_the_same_payment(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    again = kit.checkout.open_payment(created.order.id, created.access_token)
    assert not again.created
    assert again.payment.id == payment.id
    assert len(kit.gateway.created) == 1


# Scenario 7 -------------------------------------------------------------------------------


def test_fulfilled_order_never_goes_back(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, "finished")
    run_jobs(kit)
    for stale in [
        "finished",
        "confirmed",
        "confirming",
        "waiting",
        "failed",
        "expired",
        "partially_paid",
    ]:
        result = send_ipn(kit, payment, stale, payment.pay_amount + Decimal("0.00000001"))
        assert result.outcome is not WebhookOutcome.REJECTED
        assert status_of(kit, created)[0] is OrderStatus.FULFILLED, stale
    assert kit.checkout.sweep() == []


# Scenario 8 and 10 ------------------------------------------------------------------------


def test_exactly_one_email_and_one_fulfillment(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    for _ in range(3):
        send_ipn(kit, payment, "finished")
    for _ in range(5):
        run_jobs(kit)
    assert len(kit.mailer.sent) == 1
    assert kit.supplier.calls == [created.order.id]
    jobs = kit.checkout.list_jobs()
    assert sorted(j.key for j in jobs) == [
        f"completion_email:{created.order.id}",
        f"fulfill:{created.order.id}",
    ]


def test_duplicate_webhook_is_acknowledged_not_applied(kit: Kit) -> None:
    _, payment = order_and_pay(kit)
    first = send_ipn(kit, payment, "finished")
    second = send_ipn(kit, payment, "finished")
    assert (first.outcome, second.outcome) == (WebhookOutcome.APPLIED, WebhookOutcome.DUPLICATE)
    assert second.outcome is not WebhookOutcome.REJECTED


def test_a_later_status_of_the_same_payment_is_not_a_duplicate(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, "confirming")
    assert send_ipn(kit, payment, "finished").outcome is WebhookOutcome.APPLIED
    assert status_of(kit, created)[0] is OrderStatus.PAID


def test_email_is_retried_while_the_mail_server_is_down(kit: Kit) -> None:
    _, payment = order_and_pay(kit)
    send_ipn(kit, payment, "finished")
    kit.mailer.fail_next = 2
    assert run_jobs(kit) == ["done", "retry"]  # fulfilled; the email waits for the server
    kit.clock.advance(timedelta(seconds=1))
    assert run_jobs(kit) == ["retry"]
    kit.clock.advance(timedelta(seconds=2))
    assert run_jobs(kit) == ["done"]
    assert len(kit.mailer.sent) == 1


# Scenario 9 -------------------------------------------------------------------------------


def test_fake_webhook_changes_nothing(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    body = ipn_body(payment, "finished")
    forged = ipn_body(payment, "finished", actually_paid=payment.pay_amount * 10)
    assert kit.checkout.handle_ipn(forged, sign(body)).code == "bad_signature"
    assert status_of(kit, created)[0] is OrderStatus.WAITING
    assert run_jobs(kit) == []
    for headers in (
        {},
        {"x-nowpayments-sig": ""},
        sign(body, "wrong-secret"),
        {"x-nowpayments-sig": "é" * 128},
    ):
        result = kit.checkout.handle_ipn(body, headers)
        assert (result.outcome, result.code) == (WebhookOutcome.REJECTED, "bad_signature")
    tampered = body.replace(b'"actually_paid":0.0011998', b'"actually_paid":0.0011999')
    assert tampered != body
    assert kit.checkout.handle_ipn(tampered, sign(body)).code == "bad_signature"
    assert status_of(kit, created)[0] is OrderStatus.WAITING
    assert run_jobs(kit) == []
    rejected = [f for name, f in kit.observer.events if name == "ipn"]
    assert [f["reason"] for f in rejected] == ["bad_signature"] * 6
    # Re-serialised with the same content (a proxy adding spaces) is still genuine.
    reformatted = body.replace(b'"finished"', b'"finished" ')
    assert kit.checkout.handle_ipn(reformatted, sign(body)).outcome is not WebhookOutcome.REJECTED
    webhooks = kit.checkout.admin_order(created.order.id).webhooks
    assert [w.outcome for w in webhooks] == [WebhookOutcome.APPLIED]


def test_malformed_but_signed_webhook_is_400(kit: Kit) -> None:
    body = b'{"payment_status": "finished"'
    result = kit.checkout.handle_ipn(body, sign(body))
    assert (result.outcome, result.code) == (WebhookOutcome.REJECTED, "malformed_webhook")


def test_ipn_replayed_against_another_order_is_refused(kit: Kit) -> None:
    first, payment1 = order_and_pay(kit)
    second, _ = order_and_pay(kit, [("hades", 1)])
    # A genuine, signed IPN of the first payment, pointed at the second order.
    result = send_ipn(kit, payment1, "finished", order_id=second.order.id)
    assert (result.outcome, result.code) == (WebhookOutcome.REJECTED, "unbound_webhook")
    result = send_ipn(kit, payment1, "finished", price_amount=1)
    assert result.code == "unbound_webhook"
    result = send_ipn(kit, payment1, "finished", payment_id=999, parent_payment_id=None)
    assert result.code == "unbound_webhook"
    assert status_of(kit, first)[0] is OrderStatus.WAITING
    assert status_of(kit, second)[0] is OrderStatus.WAITING
    # Refused IPNs show in the admin view of the order whose payment they name.
    refused = kit.checkout.admin_order(first.order.id).webhooks
    assert [w.outcome for w in refused] == [WebhookOutcome.REJECTED] * 2
    assert kit.checkout.admin_order(second.order.id).webhooks == []


def test_repeated_deposit_names_the_parent_payment(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    result = send_ipn(kit, payment, "finished", payment_id=777, parent_payment_id=int(payment.id))
    assert result.outcome is WebhookOutcome.APPLIED
    assert status_of(kit, created)[0] is OrderStatus.PAID


def test_unknown_provider_status_is_ignored_with_200(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    result = send_ipn(kit, payment, "wrong_asset_confirmed")
    assert result.outcome is WebhookOutcome.IGNORED
    assert status_of(kit, created)[0] is OrderStatus.WAITING
    webhooks = kit.checkout.admin_order(created.order.id).webhooks
    assert webhooks[-1].outcome is WebhookOutcome.IGNORED


# Scenario 11 ------------------------------------------------------------------------------


def test_multi_item_order(kit: Kit) -> None:
    created, payment = order_and_pay(kit, [("elden-ring", 1), ("hades", 2), ("celeste", 1)])
    assert created.order.total == Decimal("59.99") + 2 * Decimal("19.99") + Decimal("9.99")
    assert payment.price_amount == created.order.total
    send_ipn(kit, payment, "finished")
    run_jobs(kit)
    run_jobs(kit)
    order = kit.checkout.get_order(created.order.id, created.access_token).order
    assert [len(item.keys) for item in order.items] == [1, 2, 1]
    hades = order.items[1]
    revealed = kit.checkout.reveal(order.id, hades.id, created.access_token)
    assert len(revealed.urls) == 2
    secrets = {kit.vault.read(k.ref)[0] for k in hades.keys}
    assert all(s.startswith(b"KEY-kg-1002-") for s in secrets)
    assert len(secrets) == 2
    assert len(kit.mailer.sent) == 1
    assert kit.mailer.sent[0].text.count("View keys") == 4


# Scenario 12 ------------------------------------------------------------------------------


def test_custom_product_from_the_pool(kit: Kit) -> None:
    assert kit.checkout.add_pool_keys("shop-gift", ["GIFT-1", "GIFT-2"]) == 2
    created, payment = order_and_pay(kit, [("shop-gift", 1)])
    send_ipn(kit, payment, "finished")
    assert run_jobs(kit) == ["done", "done"]  # fulfillment, then its email
    order = kit.checkout.get_order(created.order.id, created.access_token).order
    assert order.status is OrderStatus.FULFILLED
    assert kit.vault.read(order.items[0].keys[0].ref)[0] == b"GIFT-1"
    assert kit.supplier.calls == []
    views = {v.product.id: v.available for v in kit.checkout.list_products()}
    assert views["shop-gift"] is True


def test_empty_pool_fails_clearly_and_is_not_retried(kit: Kit) -> None:
    # The order's reserved key went back when it expired, and another order took it;
    # then its payment arrived late and the admin fulfilled it.
    kit.checkout.add_pool_keys("shop-gift", ["GIFT-1"])
    created, payment = order_and_pay(kit, [("shop-gift", 1)])
    kit.clock.advance(timedelta(hours=1))
    kit.checkout.sweep()
    _, other = order_and_pay(kit, [("shop-gift", 1)])
    send_ipn(kit, other, "finished")
    run_jobs(kit)
    send_ipn(kit, payment, "finished")
    kit.checkout.resolve(created.order.id, action="fulfill", note="paid late")
    runs = kit.checkout.run_due_jobs()
    assert [r.outcome for r in runs] == ["dead"]
    assert runs[0].error is not None
    assert PoolEmpty.code in runs[0].error
    order = kit.checkout.get_order(created.order.id, created.access_token).order
    assert order.status is OrderStatus.PAID
    assert Flag.FULFILLMENT_FAILED in order.flags
    assert [j.key for j in kit.checkout.list_jobs(state=JobState.DEAD)] == [
        f"fulfill:{created.order.id}"
    ]

    kit.checkout.add_pool_keys("shop-gift", ["GIFT-9"])
    kit.checkout.retry_fulfillment(created.order.id)
    assert run_jobs(kit) == ["done", "done"]  # fulfillment, then its email
    order = kit.checkout.get_order(created.order.id, created.access_token).order
    assert order.status is OrderStatus.FULFILLED
    assert Flag.FULFILLMENT_FAILED not in order.flags


def test_pool_keys_only_for_custom_products(kit: Kit) -> None:
    with pytest.raises(InvalidInput):
        kit.checkout.add_pool_keys("hades", ["X"])
    with pytest.raises(NotFound):
        kit.checkout.add_pool_keys("nope", ["X"])
    with pytest.raises(InvalidInput):
        kit.checkout.add_pool_keys("shop-gift", [" "])


# Scenario 13 ------------------------------------------------------------------------------


def test_supplier_outage_backs_off_and_recovers_on_attempt_four(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    kit.supplier.outage(3)
    send_ipn(kit, payment, "finished")
    start = kit.clock.now()
    assert run_jobs(kit) == ["retry"]
    job = kit.checkout.list_jobs()[0]
    assert job.run_at - start == timedelta(seconds=1)
    for delay, outcomes in [(1, ["retry"]), (2, ["retry"]), (4, ["done", "done"])]:
        kit.clock.advance(timedelta(seconds=delay) - timedelta(microseconds=1))
        assert run_jobs(kit) == [], "not due before the backoff"
        kit.clock.advance(timedelta(microseconds=1))
        assert run_jobs(kit) == outcomes
    assert status_of(kit, created)[0] is OrderStatus.FULFILLED
    assert len(kit.supplier.calls) == 4


def test_supplier_outage_exhausts_retries_then_admin_retry(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    kit.supplier.outage(5)
    send_ipn(kit, payment, "finished")
    outcomes = []
    for _ in range(5):
        outcomes += run_jobs(kit)
        kit.clock.advance(timedelta(seconds=16))
    assert outcomes == ["retry", "retry", "retry", "retry", "dead"]
    order = kit.checkout.get_order(created.order.id, created.access_token).order
    assert (order.status, Flag.FULFILLMENT_FAILED in order.flags) == (OrderStatus.PAID, True)
    kit.checkout.retry_fulfillment(created.order.id)
    assert run_jobs(kit) == ["done", "done"]  # fulfillment, then its email
    assert status_of(kit, created)[0] is OrderStatus.FULFILLED
    with pytest.raises(InvalidState):
        kit.checkout.retry_fulfillment(created.order.id)


def test_non_retryable_supplier_error_goes_straight_to_dead(kit: Kit) -> None:
    _, payment = order_and_pay(kit)
    kit.supplier.outage(1, SupplierError("balance too low", kind="InsufficientBalance"))
    send_ipn(kit, payment, "finished")
    assert run_jobs(kit) == ["dead"]


def test_an_adapter_bug_is_retried_not_fatal(kit: Kit) -> None:
    _, payment = order_and_pay(kit)
    kit.supplier.outage(1, RuntimeError("boom"))
    send_ipn(kit, payment, "finished")
    runs = kit.checkout.run_due_jobs()
    assert runs[0].outcome == "retry"
    assert runs[0].error is not None
    assert "RuntimeError" in runs[0].error


def test_a_crashed_workers_job_is_taken_again_after_its_lease(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, "finished")
    # A worker leased the job and died: simulate by leasing without running.
    with kit.store.transaction() as tx:
        job = tx.due_jobs(kit.clock.now(), 1)[0]
        lease_until = kit.clock.now() + timedelta(minutes=2)
        tx.update_job(replace(job, state=JobState.RUNNING, lease_until=lease_until))
    assert run_jobs(kit) == []
    kit.clock.advance(timedelta(minutes=2))
    assert run_jobs(kit) == ["done", "done"]  # fulfillment, then its email
    assert status_of(kit, created)[0] is OrderStatus.FULFILLED


# Scenario 14 ------------------------------------------------------------------------------


def test_customer_returns_to_the_current_status(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    send_ipn(kit, payment, "finished")
    run_jobs(kit)
    # Later, from another device, with only the order id and token from the email link.
    view = kit.checkout.get_order(created.order.id, created.access_token)
    assert view.order.status is OrderStatus.FULFILLED


# Scenario 15 ------------------------------------------------------------------------------


def test_key_reveal_urls_expire_after_three_hours_and_can_be_renewed(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    item = created.order.items[0]
    with pytest.raises(InvalidState):
        kit.checkout.reveal(created.order.id, item.id, created.access_token)
    send_ipn(kit, payment, "finished")
    run_jobs(kit)
    first = kit.checkout.reveal(created.order.id, item.id, created.access_token)
    assert first.expires_at == kit.clock.now() + timedelta(hours=3)
    same_instant = kit.checkout.reveal(created.order.id, item.id, created.access_token)
    assert same_instant.url != first.url, "every reveal hands out a new URL"
    token = first.url.removeprefix("memory://keys/")
    kit.clock.advance(timedelta(hours=3))
    with pytest.raises(KeyUrlRejected) as expired:
        kit.checkout.check_key_token(token)
    assert expired.value.code == "url_expired"
    second = kit.checkout.reveal(created.order.id, item.id, created.access_token)
    assert second.url != first.url
    assert kit.checkout.check_key_token(second.url.removeprefix("memory://keys/")).startswith(
        "orders/"
    )
    with pytest.raises(KeyUrlRejected) as invalid:
        kit.checkout.check_key_token(token[:-2] + "xx")
    assert invalid.value.code == "url_invalid"
    assert len(kit.checkout.admin_order(created.order.id).reveals) == 3


def test_order_access_needs_its_token(kit: Kit) -> None:
    created, _ = order_and_pay(kit)
    for bad in (
        None,
        "",
        "x" * 5000,
        tokens.order_access_token(secret=b"z" * 32, order_id=created.order.id),
    ):
        with pytest.raises(NotFound):
            kit.checkout.get_order(created.order.id, bad)
    with pytest.raises(NotFound):
        kit.checkout.reveal(created.order.id, created.order.items[0].id, "wrong")
    with pytest.raises(NotFound):
        kit.checkout.get_order("no-such-order", created.access_token)


# Bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "items", "code"),
    [
        ("not-an-email", [("hades", 1)], "invalid_email"),
        ("a\x00b@example.com", [("hades", 1)], "invalid_email"),
        ("j\u00f6rg@example.com", [("hades", 1)], "invalid_email"),
        (42, [("hades", 1)], "invalid_email"),
        ("a@example.com", [], "invalid_items"),
        ("a@example.com", [("hades", 0)], "invalid_quantity"),
        ("a@example.com", [("hades", -1)], "invalid_quantity"),
        ("a@example.com", [("hades", 91)], "too_many_units"),
        ("a@example.com", [("hades", 50), ("hades", 41)], "too_many_units"),
        ("a@example.com", [("hades", 2**70)], "too_many_units"),
        ("a@example.com", [("hades", True)], "invalid_quantity"),
        ("a@example.com", [("hades", "1")], "invalid_quantity"),
        ("a@example.com", [("", 1)], "invalid_items"),
        ("a@example.com", [(f"p{i}", 1) for i in range(11)], "invalid_items"),
        ("a@example.com", [("no-such-product", 1)], "unknown_product"),
    ],
)
def test_bad_order_input_is_refused_and_changes_nothing(
    kit: Kit, email: object, items: object, code: str
) -> None:
    with pytest.raises((InvalidInput, NotFound)) as raised:
        kit.checkout.create_order(email=email, items=items)  # type: ignore[arg-type]
    assert raised.value.code == code
    assert raised.value.status_hint in {400, 404}
    assert kit.checkout.list_orders() == []


def test_a_line_may_hold_more_than_nine_units_and_an_order_ninety(kit: Kit) -> None:
    # Kinguin sells 9 of one offer per request and 90 units per order: the supplier client
    # splits a larger line, so the shop takes up to 90 units in one order.
    created = kit.checkout.create_order(email="a@example.com", items=[("hades", 60), ("hades", 30)])

    assert [item.quantity for item in created.order.items] == [90]


def test_bad_idempotency_key(kit: Kit) -> None:
    for key in ("", "x" * 15, "x" * 256, "line\nbreak-and-more-text"):
        with pytest.raises(InvalidInput) as raised:
            kit.checkout.create_order(
                email="a@example.com", items=[("hades", 1)], idempotency_key=key
            )
        assert raised.value.code == "invalid_idempotency_key"
    assert kit.checkout.list_orders() == []


def test_idempotency_keys_are_stored_only_hashed(kit: Kit) -> None:
    key = "secret-checkout-key-0001"
    created = kit.checkout.create_order(
        email="a@example.com", items=[("hades", 1)], idempotency_key=key
    )
    scope = idempotency.scope(" A@Example.com", key)
    assert scope == hashlib.sha256(b"a@example.com\n" + key.encode()).hexdigest()
    with kit.store.transaction() as tx:
        record = tx.get_idempotency(scope)
    assert record is not None
    assert record.order_id == created.order.id
    assert key not in record.scope


def test_payment_cannot_be_opened_for_an_expired_order(kit: Kit) -> None:
    created = kit.checkout.create_order(email="a@example.com", items=[("hades", 1)])
    kit.clock.advance(timedelta(hours=2))
    kit.checkout.sweep()
    with pytest.raises(InvalidState):
        kit.checkout.open_payment(created.order.id, created.access_token)
    assert kit.gateway.created == []


# Reconciliation ---------------------------------------------------------------------------


def test_reconcile_asks_the_provider_when_ipns_stop(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    kit.gateway.payments[payment.id] = ipn_body(payment, "finished")
    assert kit.checkout.reconcile() == []  # too early: IPNs may still come
    kit.clock.advance(timedelta(minutes=15))
    results = kit.checkout.reconcile()
    assert [r.outcome for r in results] == [WebhookOutcome.APPLIED]
    assert status_of(kit, created)[0] is OrderStatus.PAID
    assert kit.checkout.admin_order(created.order.id).webhooks[-1].reason.startswith("reconcile")


def test_reconcile_survives_a_provider_error(kit: Kit) -> None:
    _, payment = order_and_pay(kit)
    kit.gateway.payments[payment.id] = b"not json"
    kit.clock.advance(timedelta(minutes=30))
    assert kit.checkout.reconcile() == []
    assert "reconcile_failed" in kit.observer.names()


def test_secret_is_not_in_the_config_repr() -> None:
    kit = make_kit()
    assert IPN_SECRET not in repr(kit.checkout.config)


def test_keys_three_hours_late_are_waited_for_without_using_up_attempts(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    polls = 3 * 60 // 5  # three hours of polls every 5 minutes
    kit.supplier.outage(polls, KeysPending("keys not yet delivered"))
    send_ipn(kit, payment, "finished")
    outcomes = []
    for _ in range(polls):
        outcomes += run_jobs(kit)
        (job,) = kit.checkout.list_jobs()
        assert job.attempts == 0, "waiting used up an attempt"
        assert job.state is JobState.PENDING
        kit.clock.advance(timedelta(minutes=5))
    assert outcomes == ["waiting"] * polls
    assert run_jobs(kit) == ["done", "done"]  # fulfillment, then its one email
    assert status_of(kit, created)[0] is OrderStatus.FULFILLED
    assert len(kit.mailer.sent) == 1
    audit = [e.action for e in kit.checkout.admin_order(created.order.id).audit]
    assert audit.count("keys_pending") == 1, "one audit entry per wait, not per poll"


def test_a_wait_longer_than_the_limit_fails_like_any_attempt(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    kit.supplier.outage(1000, KeysPending("keys not yet delivered"))
    send_ipn(kit, payment, "finished")
    assert run_jobs(kit) == ["waiting"]
    kit.clock.advance(timedelta(days=3))
    outcomes = []
    for _ in range(5):
        outcomes += run_jobs(kit)
        kit.clock.advance(timedelta(seconds=16))
    assert outcomes == ["retry", "retry", "retry", "retry", "dead"]
    order = kit.checkout.get_order(created.order.id, created.access_token).order
    assert Flag.FULFILLMENT_FAILED in order.flags


def test_a_pre_order_waits_past_the_regular_limit(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    kit.supplier.outage(2, KeysPending("pre-order not released", preorder=True))
    send_ipn(kit, payment, "finished")
    assert run_jobs(kit) == ["waiting"]
    kit.clock.advance(timedelta(days=30))
    assert run_jobs(kit) == ["waiting"]
    kit.clock.advance(timedelta(minutes=5))
    assert run_jobs(kit) == ["done", "done"]
    assert status_of(kit, created)[0] is OrderStatus.FULFILLED


def test_the_admin_sees_the_orders_waiting_for_keys_longest_first(kit: Kit) -> None:
    release = kit.clock.now() + timedelta(days=20)
    preorder = KeysPending(
        "not yet", supplier_orders=("K1", "K2"), preorder=True, release_at=release
    )
    first, first_payment = order_and_pay(kit)
    kit.supplier.outage(1, preorder)
    send_ipn(kit, first_payment, "finished")
    assert run_jobs(kit) == ["waiting"]
    began = kit.clock.now()
    kit.clock.advance(timedelta(minutes=1))
    second, second_payment = order_and_pay(kit)
    kit.supplier.outage(1, KeysPending("not yet"))
    send_ipn(kit, second_payment, "finished")
    assert run_jobs(kit) == ["waiting"]
    kit.clock.advance(timedelta(minutes=10))
    kit.supplier.outage(1, preorder)
    kit.supplier.outage(1, KeysPending("not yet"))
    assert run_jobs(kit) == ["waiting", "waiting"]  # a poll each; the waits keep their start

    waits = kit.checkout.waiting_for_keys()

    assert [w.order_id for w in waits] == [first.order.id, second.order.id]
    assert waits[0].since == began
    assert waits[0].supplier_orders == ("K1", "K2")
    assert (waits[0].preorder, waits[0].release_at) == (True, release)
    assert waits[0].status is OrderStatus.PAID
    assert waits[0].next_poll > kit.clock.now()
    assert waits[0].last_error.startswith("keys_pending:")
    assert (waits[1].supplier_orders, waits[1].preorder, waits[1].release_at) == ((), False, None)
    kit.clock.advance(timedelta(minutes=5))
    assert run_jobs(kit) == ["done", "done", "done", "done"]
    assert kit.checkout.waiting_for_keys() == []


def test_the_suppliers_webhook_wakes_a_waiting_fulfillment(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    kit.supplier.outage(1, KeysPending("keys not yet delivered"))
    send_ipn(kit, payment, "finished")
    assert run_jobs(kit) == ["waiting"]
    kit.clock.advance(timedelta(seconds=30))
    assert run_jobs(kit) == [], "not due before the next poll"

    assert kit.checkout.wake_fulfillment(created.order.id)

    assert run_jobs(kit) == ["done", "done"]
    assert status_of(kit, created)[0] is OrderStatus.FULFILLED
    assert not kit.checkout.wake_fulfillment(created.order.id), "nothing left to wake"
    assert not kit.checkout.wake_fulfillment("no-such-order")


def test_waking_a_job_already_due_keeps_it_due(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    kit.supplier.outage(1, KeysPending("keys not yet delivered"))
    send_ipn(kit, payment, "finished")
    assert run_jobs(kit) == ["waiting"]
    kit.clock.advance(timedelta(minutes=6))
    assert kit.checkout.wake_fulfillment(created.order.id)
    assert run_jobs(kit) == ["done", "done"]


def test_an_admin_retry_after_a_too_long_wait_starts_a_new_wait(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    kit.supplier.outage(1000, KeysPending("keys not yet delivered"))
    send_ipn(kit, payment, "finished")
    kit.clock.advance(timedelta(days=3))
    for _ in range(5):
        run_jobs(kit)
        kit.clock.advance(timedelta(seconds=16))
    kit.checkout.retry_fulfillment(created.order.id)
    assert run_jobs(kit) == ["waiting"]


def test_a_supplier_webhook_wakes_the_fulfillment_once_and_is_logged(kit: Kit) -> None:
    created, payment = order_and_pay(kit)
    order_id = created.order.id
    kit.supplier.outage(1, KeysPending("keys not yet delivered"))
    send_ipn(kit, payment, "finished")
    assert run_jobs(kit) == ["waiting"]

    found = kit.checkout.supplier_webhook(
        external_id=order_id, status="completed", dedupe_key="K1:completed:t1", body_sha256="a"
    )
    again = kit.checkout.supplier_webhook(
        external_id=order_id, status="completed", dedupe_key="K1:completed:t1", body_sha256="a"
    )

    assert (found, again) == (order_id, order_id)
    assert run_jobs(kit) == ["done", "done"]
    log = kit.checkout.admin_order(order_id).webhooks
    outcomes = [(e.outcome, e.provider_status) for e in log if e.payment_id is None]
    assert outcomes == [
        (WebhookOutcome.APPLIED, "completed"),
        (WebhookOutcome.DUPLICATE, "completed"),
    ]
    audit = [e.action for e in kit.checkout.admin_order(order_id).audit]
    assert audit.count("fulfillment_woken") == 1


def test_a_supplier_webhook_for_a_product_bought_on_its_own_names_our_order(kit: Kit) -> None:
    created, _ = order_and_pay(kit)
    order_id = created.order.id

    found = kit.checkout.supplier_webhook(
        external_id=f"{order_id}-5c9b5f6b2539", status="processing", dedupe_key="d", body_sha256="b"
    )
    unknown = kit.checkout.supplier_webhook(
        external_id="someone-else", status="completed", dedupe_key="e", body_sha256="c"
    )
    bare = kit.checkout.supplier_webhook(
        external_id="nodash", status="completed", dedupe_key="f", body_sha256="c"
    )
    part = kit.checkout.supplier_webhook(
        external_id=f"{order_id}-part2", status="processing", dedupe_key="g", body_sha256="d"
    )
    own_part = kit.checkout.supplier_webhook(
        external_id=f"{order_id}-5c9b5f6b2539-part3",
        status="processing",
        dedupe_key="h",
        body_sha256="e",
    )

    assert (found, unknown, bare) == (order_id, None, None)
    assert (part, own_part) == (order_id, order_id)
