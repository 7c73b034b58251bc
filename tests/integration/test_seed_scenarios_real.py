"""The seed scenarios at the service level, on real parts.

A real SQLite file, NOWPayments and Kinguin sandboxes over loopback HTTP, signed IPNs
POSTed by the sandbox to the shop's webhook, keys encrypted in the file vault and read
back through their reveal URLs, emails as ``.eml`` files (or through a real SMTP server).
Time moves only when a test moves the shared settable clock.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from realkit import (
    BUYER,
    IPN_SECRET,
    POOL_KEYS,
    PRODUCTS,
    SENDER,
    RealKit,
    ipn_body,
    parse_email,
    real_kit,
    sign,
    text_of,
)

from bitloot_adapters.mailers import SmtpMailer
from bitloot_adapters.sqlite_store import SqliteStore
from bitloot_core.chart import Flag, OrderStatus, PaymentStatus
from bitloot_core.errors import KeyUrlRejected, NotFound, SoldOut
from bitloot_core.values import JobState, WebhookOutcome

FULL_IPNS = ["waiting", "confirming", "confirmed", "sending", "finished"]
KINGUIN_SERIAL = re.compile(r"[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}")


def answered(deliveries) -> list[tuple[str, int | None]]:
    return [(d.status, d.answered) for d in deliveries]


def token_of(kit: RealKit, url: str) -> str:
    assert url.startswith(f"{kit.shop.url}/keys/"), url
    return url.removeprefix(f"{kit.shop.url}/keys/")


# Scenario 1: happy path ---------------------------------------------------------------------


def test_happy_path_kinguin_and_pool_keys(kit: RealKit) -> None:
    created = kit.order([("counter-strike-source", 1), ("gift-card-10", 1)])
    assert kit.statuses(created) == (OrderStatus.CREATED, None)

    payment = kit.checkout.open_payment(created.order.id, created.access_token).payment
    assert kit.statuses(created) == (OrderStatus.WAITING, PaymentStatus.WAITING)
    (call,) = kit.payments.calls
    sent = json.loads(call.body, parse_float=Decimal)
    assert (call.method, call.path, call.status) == ("POST", "/v1/payment", 201)
    assert sent["price_amount"] == Decimal("14.99")
    assert sent["order_id"] == created.order.id
    assert sent["ipn_callback_url"] == kit.shop.webhook_url

    assert answered(kit.pay(payment)) == [(s, 200) for s in FULL_IPNS]
    assert kit.statuses(created) == (OrderStatus.PAID, PaymentStatus.FINISHED)
    assert kit.job(f"fulfill:{created.order.id}").state is JobState.PENDING

    # One worker pass: the fulfillment, then the completion email it enqueued.
    assert kit.run_jobs() == ["done", "done"]
    assert kit.statuses(created) == (OrderStatus.FULFILLED, PaymentStatus.FINISHED)
    assert kit.run_jobs() == []

    (kinguin_order,) = kit.sandbox.kinguin_orders(created.order.id)
    assert [p["productId"] for p in kinguin_order["products"]] == [
        PRODUCTS["counter-strike-source"].supplier_ref
    ]
    (supplied,) = kit.kinguin_client().order_keys(kinguin_order["orderId"])

    (message,) = kit.emails()
    assert message["To"] == BUYER
    assert kit.checkout.order_page_url(created.order.id) in text_of(message)

    kinguin_item, pool_item = created.order.items
    revealed = {}
    for item in (kinguin_item, pool_item):
        reveal = kit.checkout.reveal(created.order.id, item.id, created.access_token)
        over_http = kit.http.get(reveal.url)
        assert over_http.status_code == 200
        secret, content_type = kit.vault.open(token_of(kit, reveal.url), kit.clock.now())
        assert over_http.content == secret
        assert content_type == "text/plain"
        revealed[item.product_id] = secret.decode()
    assert revealed["counter-strike-source"] == supplied["serial"]
    assert KINGUIN_SERIAL.fullmatch(revealed["counter-strike-source"])
    assert revealed["gift-card-10"] == POOL_KEYS[0]

    # Keys are encrypted at rest: no vault file holds a key's text.
    vault_bytes = b"".join(p.read_bytes() for p in (kit.data_dir / "vault").iterdir())
    for secret in revealed.values():
        assert secret.encode() not in vault_bytes


# Scenario 2: abandoned checkout -----------------------------------------------------------


def test_abandoned_order_expires_after_an_hour(kit: RealKit) -> None:
    created, payment = kit.buy([("stardew-valley", 1)])
    kit.clock.advance(timedelta(minutes=59, seconds=59))
    assert kit.checkout.sweep() == []
    kit.clock.advance(timedelta(seconds=1))
    assert kit.checkout.sweep() == [created.order.id]
    assert kit.statuses(created) == (OrderStatus.EXPIRED, PaymentStatus.FAILED)
    assert kit.checkout.sweep() == []

    # The customer pays anyway: the order stays expired, held for the admin.
    assert all(code == 200 for _, code in answered(kit.pay(payment)))
    order = kit.checkout.get_order(created.order.id, created.access_token).order
    assert (order.status, order.flags) == (OrderStatus.EXPIRED, {Flag.PAID_LATE})
    assert kit.run_jobs() == []
    assert kit.supplier.calls == []


# Scenario 3: underpayment -----------------------------------------------------------------


def test_underpayment_gives_no_keys(kit: RealKit) -> None:
    created, payment = kit.buy([("stardew-valley", 1)])
    short = (payment.pay_amount * Decimal("0.8")).quantize(Decimal("1e-8"))
    assert answered(kit.pay(payment, short)) == [
        ("waiting", 200),
        ("confirming", 200),
        ("partially_paid", 200),
    ]
    assert kit.statuses(created) == (OrderStatus.UNDERPAID, PaymentStatus.UNDERPAID)
    view = kit.checkout.get_order(created.order.id, created.access_token)
    assert view.payment is not None
    assert view.payment.actually_paid == short
    assert kit.run_jobs() == []
    assert kit.supplier.calls == []
    assert kit.email_files() == []


# Scenario 4: payment failed ---------------------------------------------------------------


def test_failed_payment(kit: RealKit) -> None:
    created, payment = kit.buy([("stardew-valley", 1)])
    assert answered(kit.payments.fail(payment.id)) == [("failed", 200)]
    assert kit.statuses(created) == (OrderStatus.FAILED, PaymentStatus.FAILED)
    assert kit.run_jobs() == []


# Scenario 5: slow confirmations -----------------------------------------------------------


def test_slow_confirmations_step_by_step(kit: RealKit) -> None:
    created, payment = kit.buy([("hollow-knight", 1)])
    kit.pay(payment)
    seen = [
        (a.provider_status, a.result.outcome, a.order_status, a.payment_status)
        for a in kit.shop.answers
    ]
    applied = WebhookOutcome.APPLIED
    assert seen == [
        ("waiting", WebhookOutcome.IGNORED, OrderStatus.WAITING, PaymentStatus.WAITING),
        ("confirming", applied, OrderStatus.CONFIRMING, PaymentStatus.WAITING),
        ("confirmed", applied, OrderStatus.CONFIRMING, PaymentStatus.CONFIRMED),
        ("sending", applied, OrderStatus.CONFIRMING, PaymentStatus.CONFIRMED),
        ("finished", applied, OrderStatus.PAID, PaymentStatus.FINISHED),
    ]
    view = kit.checkout.get_order(created.order.id, created.access_token)
    assert view.payment is not None
    assert view.payment.provider_status == "finished"


# Scenario 6: double click -----------------------------------------------------------------


def test_double_click_creates_one_order(kit: RealKit) -> None:
    first = kit.order([("stardew-valley", 1)], idempotency_key="double-click-0001")
    again = kit.order([("stardew-valley", 1)], idempotency_key="double-click-0001")
    assert (again.order.id, again.access_token, again.replayed) == (
        first.order.id,
        first.access_token,
        True,
    )
    opened = kit.checkout.open_payment(first.order.id, first.access_token)
    reopened = kit.checkout.open_payment(again.order.id, again.access_token)
    assert (opened.created, reopened.created) == (True, False)
    assert reopened.payment.id == opened.payment.id
    assert [o.id for o in kit.checkout.list_orders()] == [first.order.id]
    assert len(kit.payments.payment_ids) == 1


# Scenario 7: fulfillment race -------------------------------------------------------------


def test_stale_ipns_after_fulfillment_change_nothing(kit: RealKit) -> None:
    created, payment = kit.buy([("counter-strike-source", 1)])
    kit.pay(payment)
    kit.run_until_idle()
    assert kit.statuses(created) == (OrderStatus.FULFILLED, PaymentStatus.FINISHED)
    before = kit.checkout.get_order(created.order.id, created.access_token).order

    # NOWPayments sends everything again, then late failed and expired IPNs.
    for sent in kit.payments.events:
        response = kit.http.post(
            sent.url, content=sent.body, headers={"x-nowpayments-sig": sent.signature}
        )
        assert response.status_code == 200
    assert answered(kit.payments.fail(payment.id)) == [("failed", 200)]
    assert answered(kit.payments.expire(payment.id)) == [("expired", 200)]
    kit.clock.advance(timedelta(hours=2))
    assert kit.checkout.sweep() == []
    assert kit.checkout.reconcile() == []
    assert kit.run_jobs() == []

    after = kit.checkout.get_order(created.order.id, created.access_token).order
    assert (after.status, after.version, after.flags) == (
        OrderStatus.FULFILLED,
        before.version,
        before.flags,
    )
    outcomes = [a.result.outcome for a in kit.shop.answers[len(FULL_IPNS) :]]
    assert WebhookOutcome.APPLIED not in outcomes
    assert len(kit.sandbox.placements(created.order.id)) == 1


def test_payment_whose_ipns_were_lost_is_found_by_reconciliation(kit: RealKit) -> None:
    created, payment = kit.buy([("counter-strike-source", 1)])
    kit.shop.down = True
    assert {d.answered for d in kit.pay(payment)} == {503}
    kit.shop.down = False
    assert kit.statuses(created) == (OrderStatus.WAITING, PaymentStatus.WAITING)

    kit.clock.advance(timedelta(minutes=14))
    assert kit.checkout.reconcile() == [], "IPNs may still come"
    kit.clock.advance(timedelta(minutes=1))
    (result,) = kit.checkout.reconcile()
    assert (result.outcome, result.order_id) == (WebhookOutcome.APPLIED, created.order.id)
    assert kit.statuses(created) == (OrderStatus.PAID, PaymentStatus.FINISHED)
    assert [c.path for c in kit.payments.calls] == ["/v1/payment", f"/v1/payment/{payment.id}"]
    (logged,) = kit.checkout.admin_order(created.order.id).webhooks
    assert logged.reason.startswith("reconcile")

    # NOWPayments retries its IPNs later: acknowledged, nothing applied twice.
    for sent in kit.payments.events:
        response = kit.http.post(
            sent.url, content=sent.body, headers={"x-nowpayments-sig": sent.signature}
        )
        assert response.status_code == 200
    kit.run_until_idle()
    assert kit.statuses(created)[0] is OrderStatus.FULFILLED
    assert len(kit.sandbox.placements(created.order.id)) == 1
    assert len(kit.email_files()) == 1


# Scenario 8: one email --------------------------------------------------------------------


def test_one_email_file_however_often_the_job_runs(kit: RealKit) -> None:
    created, payment = kit.buy([("counter-strike-source", 1)])
    kit.pay(payment, duplicate=True)
    kit.run_until_idle()
    email_job = f"completion_email:{created.order.id}"
    assert kit.job(email_job).state is JobState.DONE
    # A worker whose lease ran out runs the email job again: nothing more is sent.
    rerun_job(kit, email_job)
    assert kit.run_jobs() == ["done"]
    assert len(kit.email_files()) == 1
    (message,) = kit.emails()
    assert message["Message-ID"] == f"<order-{created.order.id}-completed@127.0.0.1>"


def rerun_job(kit: RealKit, key: str) -> None:
    with kit.store.transaction() as tx:
        job = tx.get_job(key)
        assert job is not None
        tx.update_job(replace(job, state=JobState.PENDING, run_at=kit.clock.now()))


def test_one_email_through_a_real_smtp_server(tmp_path, smtp) -> None:
    recorder, port = smtp
    mailer = SmtpMailer("127.0.0.1", port, sender=SENDER, timeout=5)
    with real_kit(tmp_path / "data", mailer=mailer) as kit:
        created, payment = kit.buy([("counter-strike-source", 1), ("gift-card-10", 1)])
        kit.pay(payment, duplicate=True)
        kit.run_until_idle()
        for _ in range(3):
            rerun_job(kit, f"completion_email:{created.order.id}")
            assert kit.run_jobs() == ["done"]
        assert kit.email_files() == []
    (raw,) = recorder.messages
    message = parse_email(raw)
    assert message["Message-ID"] == f"<order-{created.order.id}-completed@127.0.0.1>"
    assert message["To"] == BUYER
    assert kit.checkout.order_page_url(created.order.id) in text_of(message)


# Scenario 9: fake webhook -----------------------------------------------------------------


def test_fake_webhook_is_refused_and_logged(kit: RealKit) -> None:
    created, payment = kit.buy([("counter-strike-source", 1)])
    before = kit.checkout.get_order(created.order.id, created.access_token).order
    genuine = ipn_body(payment, "finished", payment.pay_amount)
    forged = ipn_body(payment, "finished", payment.pay_amount * 10)
    attempts = [
        (forged, sign(forged, "attacker-secret")),
        (forged, sign(genuine)),
        (genuine, {}),
        (genuine, {"x-nowpayments-sig": "0" * 128}),
    ]
    for body, headers in attempts:
        response = kit.http.post(kit.shop.webhook_url, content=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["code"] == "bad_signature"

    after = kit.checkout.get_order(created.order.id, created.access_token).order
    assert (after.status, after.version) == (OrderStatus.WAITING, before.version)
    assert kit.run_jobs() == []
    assert kit.supplier.calls == []
    rows = kit.webhook_rows()
    assert [(r["signature_valid"], r["outcome"], r["order_id"]) for r in rows] == [
        (0, "rejected", None)
    ] * len(attempts)
    assert kit.checkout.admin_order(created.order.id).webhooks == []
    # The genuine secret still works: the refusals were about the signatures.
    assert (
        kit.checkout.handle_ipn(genuine, sign(genuine, IPN_SECRET)).outcome
        is WebhookOutcome.APPLIED
    )


# Scenario 10: duplicate webhook ------------------------------------------------------------


def test_duplicate_webhooks_fulfill_once(kit: RealKit) -> None:
    created, payment = kit.buy([("stardew-valley", 1)])
    deliveries = kit.pay(payment, duplicate=True)
    assert [d.status for d in deliveries] == [s for s in FULL_IPNS for _ in range(2)]
    assert {d.answered for d in deliveries} == {200}
    outcomes = [a.result.outcome for a in kit.shop.answers]
    assert outcomes[1::2] == [WebhookOutcome.DUPLICATE] * len(FULL_IPNS)
    jobs = kit.checkout.list_jobs()
    assert [j.key for j in jobs] == [f"fulfill:{created.order.id}"]
    kit.run_until_idle()
    assert kit.statuses(created)[0] is OrderStatus.FULFILLED
    assert len(kit.sandbox.placements(created.order.id)) == 1
    assert len(kit.sandbox.kinguin_orders(created.order.id)) == 1
    assert len(kit.email_files()) == 1


# Scenario 11: multi-item order ------------------------------------------------------------


def test_three_products_one_kinguin_order_one_email(kit: RealKit) -> None:
    names = ["counter-strike-source", "stardew-valley", "hollow-knight"]
    created, payment = kit.buy([(name, 1) for name in names])
    assert payment.price_amount == Decimal("31.97")
    kit.pay(payment)
    kit.run_until_idle()

    order = kit.checkout.get_order(created.order.id, created.access_token).order
    assert order.status is OrderStatus.FULFILLED
    assert [len(item.keys) for item in order.items] == [1, 1, 1]
    (kinguin_order,) = kit.sandbox.kinguin_orders(created.order.id)
    assert sorted((p["productId"], p["qty"]) for p in kinguin_order["products"]) == sorted(
        (PRODUCTS[name].supplier_ref, 1) for name in names
    )

    urls = set()
    for item in order.items:
        reveal = kit.checkout.reveal(order.id, item.id, created.access_token)
        secret, content_type = kit.vault.open(token_of(kit, reveal.url), kit.clock.now())
        if item.product_id == "hollow-knight":
            assert content_type == "image/png"
            assert secret.startswith(b"\x89PNG\r\n\x1a\n")
        else:
            assert KINGUIN_SERIAL.fullmatch(secret.decode())
        urls.add(reveal.url)
    assert len(urls) == 3

    (message,) = kit.emails()
    text = text_of(message)
    for item in order.items:
        assert f"{item.name} x1" in text
        assert f"#item-{item.id}" in text


# Scenario 12: custom product ---------------------------------------------------------------


def test_custom_products_claim_pool_keys_once_each(kit: RealKit) -> None:
    first, first_payment = kit.buy([("gift-card-10", 2)])
    second, second_payment = kit.buy([("gift-card-10", 1)])
    kit.pay(first_payment)
    kit.pay(second_payment)
    kit.run_until_idle()
    keys = []
    for created in (first, second):
        order = kit.checkout.get_order(created.order.id, created.access_token).order
        assert order.status is OrderStatus.FULFILLED
        reveal = kit.checkout.reveal(order.id, order.items[0].id, created.access_token)
        keys += [kit.vault.open(token_of(kit, url), kit.clock.now())[0] for url in reveal.urls]
    assert sorted(k.decode() for k in keys) == sorted(POOL_KEYS)
    assert kit.supplier.calls == []
    assert [
        p.available for p in kit.checkout.list_products() if p.product.id == "gift-card-10"
    ] == [False]


def test_sold_out_pool_refuses_the_order_and_buys_nothing(kit: RealKit) -> None:
    for items in ([("founders-pack", 1)], [("stardew-valley", 1), ("founders-pack", 1)]):
        with pytest.raises(SoldOut):
            kit.buy(items)
    assert kit.supplier.calls == []
    assert kit.checkout.list_orders() == []


def test_kinguin_and_pool_keys_in_one_order_after_a_restock(kit: RealKit) -> None:
    kit.checkout.add_pool_keys("founders-pack", ["FOUNDER-0001"])
    created, payment = kit.buy([("stardew-valley", 1), ("founders-pack", 1)])
    kit.pay(payment)
    kit.run_until_idle()
    order = kit.checkout.get_order(created.order.id, created.access_token).order
    assert (order.status, order.flags) == (OrderStatus.FULFILLED, frozenset())
    assert len(kit.sandbox.placements(created.order.id)) == 1
    assert len(kit.sandbox.kinguin_orders(created.order.id)) == 1
    pool_item = order.items[1]
    reveal = kit.checkout.reveal(order.id, pool_item.id, created.access_token)
    assert kit.http.get(reveal.url).content == b"FOUNDER-0001"
    assert len(kit.email_files()) == 1


# Scenario 14: mobile user leaves the app -------------------------------------------------


def test_order_state_persists_for_a_new_checkout_instance(kit: RealKit) -> None:
    created, payment = kit.buy([("counter-strike-source", 1)])
    kit.pay(payment)
    kit.run_until_idle()
    with SqliteStore(kit.db_path) as store:
        later = kit.new_checkout(store)
        view = later.get_order(created.order.id, created.access_token)
        assert (view.order.status, view.payment.status if view.payment else None) == (
            OrderStatus.FULFILLED,
            PaymentStatus.FINISHED,
        )
        assert (
            view.order.version
            == kit.checkout.get_order(created.order.id, created.access_token).order.version
        )
        reveal = later.reveal(created.order.id, created.order.items[0].id, created.access_token)
        secret, _ = kit.vault.open(token_of(kit, reveal.url), kit.clock.now())
        assert KINGUIN_SERIAL.fullmatch(secret.decode())


# Scenario 15: key reveal ------------------------------------------------------------------


def test_key_url_lasts_three_hours_and_a_new_one_can_be_asked_for(kit: RealKit) -> None:
    created, payment = kit.buy([("gift-card-10", 1)])
    kit.pay(payment)
    kit.run_until_idle()
    item = created.order.items[0]
    first = kit.checkout.reveal(created.order.id, item.id, created.access_token)
    assert first.expires_at == (kit.clock.now() + timedelta(hours=3)).replace(microsecond=0)
    kit.clock.advance(timedelta(hours=3) - timedelta(seconds=1))
    assert kit.http.get(first.url).content == POOL_KEYS[0].encode()

    kit.clock.advance(timedelta(seconds=1))
    expired = kit.http.get(first.url)
    assert (expired.status_code, expired.json()) == (403, {"code": "url_expired"})
    with pytest.raises(KeyUrlRejected) as rejected:
        kit.vault.open(token_of(kit, first.url), kit.clock.now())
    assert rejected.value.code == "url_expired"
    with pytest.raises(KeyUrlRejected, match="expired"):
        kit.checkout.check_key_token(token_of(kit, first.url))

    second = kit.checkout.reveal(created.order.id, item.id, created.access_token)
    assert second.url != first.url
    assert second.expires_at == (kit.clock.now() + timedelta(hours=3)).replace(microsecond=0)
    assert kit.http.get(second.url).content == POOL_KEYS[0].encode()
    tampered = token_of(kit, second.url)[:-2] + "AA"
    assert kit.http.get(f"{kit.shop.url}/keys/{tampered}").json() == {"code": "url_invalid"}
    reveals = kit.checkout.admin_order(created.order.id).reveals
    assert [r.expires_at for r in reveals] == [first.expires_at, second.expires_at]


def test_each_reveal_hands_out_a_new_url(kit: RealKit) -> None:
    created, payment = kit.buy([("gift-card-10", 1)])
    kit.pay(payment)
    kit.run_until_idle()
    item = created.order.items[0]
    first = kit.checkout.reveal(created.order.id, item.id, created.access_token)
    second = kit.checkout.reveal(created.order.id, item.id, created.access_token)
    assert second.url != first.url


def test_outsiders_reveal_nothing(kit: RealKit) -> None:
    created, payment = kit.buy([("gift-card-10", 1)])
    kit.pay(payment)
    kit.run_until_idle()
    other, _ = kit.buy([("gift-card-10", 1)])
    with pytest.raises(NotFound):
        kit.checkout.reveal(created.order.id, created.order.items[0].id, other.access_token)
    response = httpx.get(f"{kit.shop.url}/keys/not-a-token", timeout=5)
    assert response.status_code == 403
