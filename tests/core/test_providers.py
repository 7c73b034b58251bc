"""The payment provider seam: several providers side by side, webhooks that re-read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from checkout_kit import IPN_SECRET, SIGNING_KEY, ipn_body, make_kit, send_ipn, sign

from bitloot_core.chart import OrderStatus, PaymentKind, PaymentStatus
from bitloot_core.errors import BadSignature, InvalidInput, MalformedWebhook, ProviderUnavailable
from bitloot_core.providers import PaymentUpdate, ProviderStatus, WebhookNotice, nowpayments
from bitloot_core.providers.nowpayments import NowPayments
from bitloot_core.service import Checkout, CheckoutConfig, ProviderSetup
from bitloot_core.testing import FakeGateway, MemoryStore, SequentialIds, SettableClock
from bitloot_core.values import OpenedPayment, WebhookOutcome

STATUSES = {
    "New": ProviderStatus(kind=PaymentKind.WAITING, description="invoice created"),
    "Settled": ProviderStatus(kind=PaymentKind.PAID, description="paid"),
}


@dataclass(frozen=True)
class ReReading:
    """A provider whose webhooks carry only the payment id and a delivery id."""

    name: str = "rereading"

    @property
    def statuses(self) -> Mapping[str, ProviderStatus]:
        return STATUSES

    def read_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> WebhookNotice:
        if headers.get("sig") != "ok":
            raise BadSignature("bad signature")
        payment_id, _, delivery = raw_body.decode().partition(":")
        if not delivery:
            raise MalformedWebhook("no delivery id")
        return WebhookNotice(payment_id=payment_id, dedupe_key=delivery, update=None)


class ReReadingGateway:
    def __init__(self, name: str = "rereading") -> None:
        self.name = name
        self.status = "New"
        self.paid = Decimal(0)
        self.down = False
        self.opened: list[str] = []

    def create_payment(self, **fields: str) -> OpenedPayment:
        self.opened.append(fields["ipn_callback_url"])
        return OpenedPayment(
            payment_id="777",
            provider_status="New",
            pay_address="addr",
            pay_amount=Decimal(1),
            pay_currency="btc",
            price_amount=Decimal(fields["price_amount"]),
            price_currency=fields["price_currency"],
        )

    def get_payment(self, payment_id: str) -> PaymentUpdate:
        if self.down:
            raise ProviderUnavailable("down")
        return PaymentUpdate(
            provider=self.name,
            payment_id=payment_id,
            provider_status=self.status,
            kind=STATUSES[self.status].kind,
            dedupe_key=f"{payment_id}:{self.status}",
            actually_paid=self.paid,
            order_id=self.order_id,
            price_amount=Decimal("19.99"),
            price_currency="usd",
        )

    order_id = ""


def two_provider_kit() -> tuple[object, ReReadingGateway]:
    kit = make_kit()
    gateway = ReReadingGateway()
    kit.checkout._providers["rereading"] = ProviderSetup(provider=ReReading(), gateway=gateway)
    return kit, gateway


def test_a_provider_whose_webhooks_carry_no_amounts_is_re_read() -> None:
    kit, gateway = two_provider_kit()
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", 1)])
    gateway.order_id = created.order.id
    payment = kit.checkout.open_payment(
        created.order.id, created.access_token, provider="rereading"
    ).payment
    assert payment.provider == "rereading"
    assert gateway.opened == ["https://shop.example/webhooks/rereading"]
    gateway.status, gateway.paid = "Settled", Decimal(1)
    result = kit.checkout.handle_webhook("rereading", b"777:delivery-1", {"sig": "ok"})
    assert result.outcome is WebhookOutcome.APPLIED
    assert kit.checkout.get_order(created.order.id, created.access_token).order.status is (
        OrderStatus.PAID
    )
    # The same delivery again is a duplicate, by the provider's own dedupe key.
    again = kit.checkout.handle_webhook("rereading", b"777:delivery-1", {"sig": "ok"})
    assert again.outcome is WebhookOutcome.DUPLICATE


def test_a_nowpayments_ipn_naming_another_providers_payment_is_unbound() -> None:
    kit, gateway = two_provider_kit()
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", 1)])
    gateway.order_id = created.order.id
    payment = kit.checkout.open_payment(
        created.order.id, created.access_token, provider="rereading"
    ).payment
    result = send_ipn(kit, payment, "finished")
    assert result.code == "unbound_webhook"
    # A payment is its provider's: NOWPayments has no payment 777 of ours.
    assert "no nowpayments payment of ours" in result.reason
    body = ipn_body(payment, "finished")
    assert kit.checkout.handle_webhook("nowpayments", body, sign(body)).code == "unbound_webhook"


def test_webhook_refusals_carry_their_reason_codes() -> None:
    kit, gateway = two_provider_kit()
    assert kit.checkout.handle_webhook("paypal", b"x", {}).code == "unknown_provider"
    assert kit.checkout.handle_webhook("rereading", b"x:1", {}).code == "bad_signature"
    assert kit.checkout.handle_webhook("rereading", b"x", {"sig": "ok"}).code == (
        "malformed_webhook"
    )
    assert kit.checkout.handle_ipn(b"{}", {}).code == "bad_signature"
    gateway.down = True
    result = kit.checkout.handle_webhook("rereading", b"777:2", {"sig": "ok"})
    assert (result.outcome, result.code) == (WebhookOutcome.REJECTED, "provider_unavailable")


def test_an_unknown_provider_cannot_open_a_payment() -> None:
    kit, _ = two_provider_kit()
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", 1)])
    with pytest.raises(InvalidInput) as caught:
        kit.checkout.open_payment(created.order.id, created.access_token, provider="paypal")
    assert caught.value.code == "unknown_provider"
    assert kit.checkout.provider_names == ("nowpayments", "rereading")


def test_a_payment_whose_provider_is_gone_is_not_swept() -> None:
    kit, gateway = two_provider_kit()
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", 1)])
    gateway.order_id = created.order.id
    kit.checkout.open_payment(created.order.id, created.access_token, provider="rereading")
    del kit.checkout._providers["rereading"]
    kit.clock.advance(timedelta(hours=2))
    assert kit.checkout.sweep() == []
    assert ("sweep_failed", {"payment_id": "777", "error": "invalid_state"}) in (
        kit.observer.events
    )


def test_providers_are_configured_side_by_side() -> None:
    config = CheckoutConfig(ipn_secret=IPN_SECRET, signing_key=SIGNING_KEY, public_url="https://s")
    parts = {
        "store": MemoryStore(),
        "supplier": None,
        "vault": None,
        "mailer": None,
        "clock": None,
        "config": config,
        "new_id": SequentialIds(),
    }
    with pytest.raises(ValueError, match="needs a payment provider"):
        Checkout(**parts)  # type: ignore[arg-type]
    nowpayments = ProviderSetup(provider=NowPayments(ipn_secret="s"), gateway=FakeGateway())
    with pytest.raises(ValueError, match="share a name"):
        Checkout(**parts, providers=[nowpayments, nowpayments])  # type: ignore[arg-type]
    checkout = Checkout(**parts, providers=[nowpayments])  # type: ignore[arg-type]
    assert checkout.provider_names == ("nowpayments",)


def test_the_sweeper_fails_the_payment_record_through_its_table() -> None:
    kit = make_kit()
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", 1)])
    kit.checkout.open_payment(created.order.id, created.access_token)
    kit.clock.advance(timedelta(hours=2))
    assert kit.checkout.sweep() == [created.order.id]
    view = kit.checkout.get_order(created.order.id, created.access_token)
    assert view.payment is not None
    assert view.payment.status is PaymentStatus.FAILED


def test_the_nowpayments_provider_shows_its_status_table() -> None:
    assert NowPayments(ipn_secret="s").statuses is nowpayments.STATUSES
    assert "secret" not in repr(NowPayments(ipn_secret="secret"))


def test_two_providers_may_use_the_same_payment_id() -> None:
    kit, first = two_provider_kit()
    second = ReReadingGateway(name="other")
    kit.checkout._providers["other"] = ProviderSetup(
        provider=ReReading(name="other"), gateway=second
    )
    orders = [kit.checkout.create_order(email="e@example.com", items=[("hades", 1)]) for _ in "ab"]
    for created, (name, gateway) in zip(
        orders, [("rereading", first), ("other", second)], strict=True
    ):
        gateway.order_id = created.order.id
        opened = kit.checkout.open_payment(created.order.id, created.access_token, provider=name)
        assert (opened.payment.provider, opened.payment.id) == (name, "777")
    # The second provider's payment 777 settles; the first provider's is untouched.
    second.status, second.paid = "Settled", Decimal(1)
    result = kit.checkout.handle_webhook("other", b"777:d-1", {"sig": "ok"})
    assert (result.outcome, result.order_id) == (WebhookOutcome.APPLIED, orders[1].order.id)
    views = [kit.checkout.get_order(c.order.id, c.access_token) for c in orders]
    assert [v.order.status for v in views] == [OrderStatus.WAITING, OrderStatus.PAID]
    assert [(v.payment.provider, v.payment.status) for v in views if v.payment] == [
        ("rereading", PaymentStatus.WAITING),
        ("other", PaymentStatus.FINISHED),
    ]


def test_the_webhook_log_records_the_provider() -> None:
    kit, gateway = two_provider_kit()
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", 1)])
    gateway.order_id = created.order.id
    kit.checkout.open_payment(created.order.id, created.access_token, provider="rereading")
    kit.checkout.handle_webhook("rereading", b"777:delivery-1", {"sig": "ok"})
    kit.checkout.handle_webhook("rereading", b"777:delivery-2", {"sig": "forged"})
    kit.checkout.handle_webhook("paypal", b"777:delivery-3", {"sig": "ok"})
    logged = kit.checkout.admin_order(created.order.id).webhooks
    assert [(w.provider, w.outcome) for w in logged] == [("rereading", WebhookOutcome.IGNORED)]
    with kit.store.transaction() as tx:
        every = tx.t.webhooks  # the refused ones name no order
    assert [(w.provider, w.reason[:13]) for w in every] == [
        ("rereading", "ipn: New on w"),
        ("rereading", "bad signature"),
        (None, "no payment pr"),
    ]


def test_a_shop_without_nowpayments_needs_no_ipn_secret() -> None:
    # The IPN secret is NOWPayments' own, held by its provider: a shop that takes payments
    # with another provider only configures that one.
    config = CheckoutConfig(signing_key=SIGNING_KEY, public_url="https://shop.example")
    gateway = ReReadingGateway()
    parts = {
        "store": MemoryStore(),
        "supplier": None,
        "vault": None,
        "mailer": None,
        "clock": SettableClock(),
        "config": config,
        "new_id": SequentialIds(),
    }
    checkout = Checkout(  # type: ignore[arg-type]
        **parts, providers=[ProviderSetup(provider=ReReading(), gateway=gateway)]
    )
    assert checkout.provider_names == ("rereading",)
    assert checkout.handle_ipn(b"{}", {}).code == "unknown_provider"
    # The NOWPayments shorthand (a gateway alone) still needs the secret, and says so.
    with pytest.raises(ValueError, match="ipn_secret"):
        Checkout(**parts, gateway=FakeGateway())  # type: ignore[arg-type]
