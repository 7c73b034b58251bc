"""BTCPay Server's provider module: its webhook check, its status table, and its webhooks
driving a checkout through re-reads of the invoice."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from decimal import Decimal

import pytest
from checkout_kit import CATALOGUE, IPN_SECRET, SIGNING_KEY
from hypothesis import given, settings
from hypothesis import strategies as st

from bitloot_core.chart import Flag, OrderStatus, PaymentKind, PaymentStatus
from bitloot_core.errors import BadSignature, MalformedWebhook, ProviderUnavailable
from bitloot_core.providers import PaymentUpdate
from bitloot_core.providers.btcpay import (
    EVENTS,
    STATUSES,
    BtcPay,
    Invoice,
    provider_status,
    sign,
    update_of,
)
from bitloot_core.service import Checkout, CheckoutConfig, ProviderSetup
from bitloot_core.testing import (
    FakeGateway,
    FakeSupplier,
    MemoryStore,
    MemoryVault,
    RecordingMailer,
    SequentialIds,
    SettableClock,
)
from bitloot_core.values import OpenedPayment, WebhookOutcome

SECRET = "btcpay-webhook-secret"
PROVIDER = BtcPay(webhook_secret=SECRET)
DUE = Decimal("0.00031045")


def webhook(event: str = "InvoiceSettled", invoice_id: str = "Inv1", **fields: object) -> bytes:
    body = {
        "deliveryId": "D2",
        "webhookId": "W1",
        "originalDeliveryId": "D1",
        "isRedelivery": False,
        "type": event,
        "timestamp": 1_700_000_000,
        "storeId": "S1",
        "invoiceId": invoice_id,
        "metadata": {"orderId": "o1"},
        **fields,
    }
    return json.dumps({k: v for k, v in body.items() if v is not None}, indent=2).encode()


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "BTCPay-Sig": sign(secret, body)}


def invoice(status: str = "New", additional: str = "None", **changes: object) -> Invoice:
    base = Invoice(
        id="Inv1",
        status=status,
        additional_status=additional,
        amount=Decimal("19.99"),
        currency="USD",
        paid=Decimal(0),
        due=DUE,
        pay_currency="BTC",
        confirmed=True,
        order_id="o1",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# --- the webhook check ------------------------------------------------------------------


def test_a_signed_webhook_asks_for_a_re_read_keyed_on_its_original_delivery() -> None:
    body = webhook()
    notice = PROVIDER.read_webhook(body, signed(body))
    assert (notice.payment_id, notice.dedupe_key, notice.update) == (
        "Inv1",
        "btcpay:delivery:D1",
        None,
    )


def test_header_name_and_hex_case_do_not_matter() -> None:
    body = webhook()
    upper = {"btcpay-sig": "sha256=" + sign(SECRET, body).removeprefix("sha256=").upper()}
    assert PROVIDER.read_webhook(body, upper).payment_id == "Inv1"


@pytest.mark.parametrize(
    ("headers", "provider"),
    [
        ({}, PROVIDER),
        ({"BTCPay-Sig": sign("another-secret", webhook())}, PROVIDER),
        ({"BTCPay-Sig": sign(SECRET, webhook()).removeprefix("sha256=")}, PROVIDER),
        ({"BTCPay-Sig": "sha256=é" + "0" * 63}, PROVIDER),
        ({"BTCPay-Sig": sign("", webhook())}, BtcPay(webhook_secret="")),
        ({"X-Nowpayments-Sig": sign(SECRET, webhook())}, PROVIDER),
    ],
    ids=["missing", "other-secret", "no-prefix", "not-ascii", "empty-secret", "other-header"],
)
def test_a_webhook_without_our_signature_is_refused(
    headers: dict[str, str], provider: BtcPay
) -> None:
    with pytest.raises(BadSignature):
        provider.read_webhook(webhook(), headers)


def test_the_signature_covers_the_exact_bytes() -> None:
    body = webhook()
    reformatted = json.dumps(json.loads(body)).encode()
    with pytest.raises(BadSignature):
        PROVIDER.read_webhook(reformatted, signed(body))


def test_an_oversized_body_is_not_checked() -> None:
    body = webhook(padding="x" * 70_000)
    with pytest.raises(BadSignature):
        PROVIDER.read_webhook(body, signed(body))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (json.dumps({"type": ["InvoiceSettled"]}).encode(), "no type"),
        (json.dumps({"type": ""}).encode(), "no type"),
        (webhook(invoice_id=""), "invoiceId"),
        (webhook(invoice_id="a\nb"), "invoiceId"),
        (webhook(invoice_id="x" * 129), "invoiceId"),
        (webhook(originalDeliveryId=None, deliveryId=None), "no delivery id"),
        (webhook(originalDeliveryId=7), "originalDeliveryId"),
        (webhook().replace(b'"type"', b'"x":"\\ud800","type"', 1), "lone surrogate"),
    ],
    ids=[
        "utf8",
        "array",
        "deep",
        "type-list",
        "empty-type",
        "empty-id",
        "newline-id",
        "long-id",
        "no-delivery",
        "number-delivery",
        "lone-surrogate",
    ],
)
def test_a_signed_body_that_is_no_invoice_webhook_is_malformed(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedWebhook, match=reason):
        BtcPay(webhook_secret=SECRET).read_webhook(body[:60_000], signed(body[:60_000]))


def test_an_event_about_no_invoice_is_acknowledged_and_ignored() -> None:
    body = json.dumps({"type": "PayoutCreated", "deliveryId": "D9", "payoutId": "P1"}).encode()
    notice = PROVIDER.read_webhook(body, signed(body))
    assert notice.ignore == "not an invoice event: 'PayoutCreated'"
    assert notice.update is None


def test_old_servers_delivery_ids_are_read() -> None:
    misspelt = webhook(originalDeliveryId=None, orignalDeliveryId="Old1")
    assert PROVIDER.read_webhook(misspelt, signed(misspelt)).dedupe_key.endswith(":Old1")
    first_only = webhook(originalDeliveryId=None)
    assert PROVIDER.read_webhook(first_only, signed(first_only)).dedupe_key.endswith(":D2")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300) | st.builds(webhook, st.sampled_from(sorted(EVENTS))))
def test_any_signed_body_is_a_notice_or_malformed(body: bytes) -> None:
    try:
        notice = PROVIDER.read_webhook(body, signed(body))
    except MalformedWebhook:
        return
    assert notice.update is None
    assert notice.ignore is None
    assert notice.dedupe_key.startswith("btcpay:delivery:")


def test_the_secret_stays_out_of_the_repr() -> None:
    assert SECRET not in repr(PROVIDER)
    assert PROVIDER.statuses is STATUSES


# --- the status table -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "row", "kind"),
    [
        (invoice("New"), "New", PaymentKind.WAITING),
        (invoice("New", "PaidPartial"), "New/PaidPartial", PaymentKind.CONFIRMING),
        (invoice("Processing"), "Processing", PaymentKind.CONFIRMING),
        (invoice("Processing", "PaidOver"), "Processing/PaidOver", PaymentKind.CONFIRMING),
        (invoice("Settled", ""), "Settled", PaymentKind.PAID),
        (invoice("Settled", "PaidOver"), "Settled/PaidOver", PaymentKind.PAID),
        (invoice("Settled", "Marked"), "Settled/Marked", PaymentKind.PAID),
        (invoice("Expired"), "Expired", PaymentKind.EXPIRED),
        (invoice("Expired", "PaidPartial"), "Expired/PaidPartial", PaymentKind.PAID),
        (
            invoice("Expired", "PaidLate", confirmed=False),
            "Expired/PaidLate/unconfirmed",
            PaymentKind.CONFIRMING,
        ),
        (invoice("Expired", "PaidLate"), "Expired/PaidLate", PaymentKind.PAID),
        (invoice("Invalid"), "Invalid", PaymentKind.FAILED),
        (invoice("Invalid", "PaidOver"), "Invalid/PaidOver", PaymentKind.FAILED),
        (invoice("Invalid", "Marked"), "Invalid/Marked", PaymentKind.FAILED),
        (invoice("Complete", "Strange"), "Complete/Strange", None),
    ],
)
def test_each_invoice_state_has_its_row(state: Invoice, row: str, kind: PaymentKind | None) -> None:
    assert provider_status(state) == row
    assert update_of(state).kind is kind


def test_every_row_of_the_table_is_reachable_from_an_invoice_state() -> None:
    reached = set()
    for row in STATUSES:
        status, _, rest = row.partition("/")
        additional, _, unconfirmed = rest.partition("/")
        state = invoice(status, additional or "None", confirmed=not unconfirmed)
        reached.add(provider_status(state))
    assert reached == set(STATUSES)


def test_an_update_carries_the_invoice_amounts_and_binding() -> None:
    update = update_of(invoice("Settled", paid=Decimal("0.00031045000")))
    assert update == PaymentUpdate(
        provider="btcpay",
        payment_id="Inv1",
        provider_status="Settled",
        kind=PaymentKind.PAID,
        dedupe_key="btcpay:Inv1:Settled:0.00031045",
        actually_paid=Decimal("0.00031045000"),
        order_id="o1",
        price_amount=Decimal("19.99"),
        price_currency="usd",
        pay_amount=DUE,
        pay_currency="btc",
    )


# --- webhooks driving a checkout --------------------------------------------------------


@dataclass
class FakeBtcPay:
    """The gateway half: one invoice whose state the test moves, read on every webhook."""

    state: Invoice = field(default_factory=invoice)
    down: bool = False
    reads: int = 0

    def create_payment(self, **fields: str) -> OpenedPayment:
        self.state = replace(self.state, order_id=fields["order_id"])
        return OpenedPayment(
            payment_id=self.state.id,
            provider_status="New",
            pay_address="bcrt1qsandbox",
            pay_amount=DUE,
            pay_currency="btc",
            price_amount=self.state.amount,
            price_currency="usd",
        )

    def get_payment(self, payment_id: str) -> PaymentUpdate:
        assert payment_id == self.state.id
        self.reads += 1
        if self.down:
            raise ProviderUnavailable("BTCPay is down")
        return update_of(self.state)

    def move(self, status: str, additional: str = "None", **changes: object) -> None:
        self.state = replace(
            self.state,
            status=status,
            additional_status=additional,
            **changes,  # type: ignore[arg-type]
        )


@dataclass
class Shop:
    checkout: Checkout
    btcpay: FakeBtcPay
    clock: SettableClock
    order_id: str = ""
    token: str = ""
    deliveries: int = 0

    def open(self) -> None:
        created = self.checkout.create_order(email="e@example.com", items=[("hades", 1)])
        self.order_id, self.token = created.order.id, created.access_token
        opened = self.checkout.open_payment(self.order_id, self.token, provider="btcpay")
        assert opened.payment.provider == "btcpay"

    def send(self, event: str, *, delivery: str | None = None) -> WebhookOutcome:
        self.deliveries += 1
        body = webhook(event, originalDeliveryId=delivery or f"D{self.deliveries}")
        return self.checkout.handle_webhook("btcpay", body, signed(body)).outcome

    def order(self) -> tuple[OrderStatus, frozenset[Flag], PaymentStatus]:
        view = self.checkout.get_order(self.order_id, self.token)
        assert view.payment is not None
        return view.order.status, view.order.flags, view.payment.status


@pytest.fixture
def shop() -> Shop:
    btcpay = FakeBtcPay()
    clock = SettableClock()
    checkout = Checkout(
        store=MemoryStore(),
        supplier=FakeSupplier(),
        vault=MemoryVault(SIGNING_KEY),
        mailer=RecordingMailer(),
        clock=clock,
        config=CheckoutConfig(
            ipn_secret=IPN_SECRET, signing_key=SIGNING_KEY, public_url="https://shop.example"
        ),
        new_id=SequentialIds("id"),
        gateway=FakeGateway(),
        providers=[ProviderSetup(provider=PROVIDER, gateway=btcpay)],
    )
    for product in CATALOGUE:
        checkout.save_product(product)
    made = Shop(checkout=checkout, btcpay=btcpay, clock=clock)
    made.open()
    return made


def test_a_settled_invoice_pays_the_order(shop: Shop) -> None:
    shop.btcpay.move("Processing", paid=DUE, confirmed=False)
    assert shop.send("InvoiceProcessing") is WebhookOutcome.APPLIED
    assert shop.order() == (OrderStatus.CONFIRMING, frozenset(), PaymentStatus.WAITING)
    shop.btcpay.move("Settled", confirmed=True)
    assert shop.send("InvoiceSettled") is WebhookOutcome.APPLIED
    assert shop.order() == (OrderStatus.PAID, frozenset(), PaymentStatus.FINISHED)


def test_a_redelivery_is_a_duplicate_and_a_stale_event_cannot_move_the_order_back(
    shop: Shop,
) -> None:
    shop.btcpay.move("Settled", paid=DUE)
    assert shop.send("InvoiceSettled", delivery="first") is WebhookOutcome.APPLIED
    assert shop.send("InvoiceSettled", delivery="first") is WebhookOutcome.DUPLICATE
    # An older event arriving late: the invoice read now still says Settled.
    assert shop.send("InvoiceReceivedPayment") is WebhookOutcome.IGNORED
    assert shop.btcpay.reads == 3
    assert shop.order()[0] is OrderStatus.PAID


def test_a_part_payment_keeps_the_invoice_open_then_expiry_makes_it_short(shop: Shop) -> None:
    shop.btcpay.move("New", "PaidPartial", paid=DUE / 2)
    assert shop.send("InvoiceReceivedPayment") is WebhookOutcome.APPLIED
    # Money was seen: the order is no longer abandoned, whatever the sweeper finds.
    assert shop.order() == (OrderStatus.CONFIRMING, frozenset(), PaymentStatus.WAITING)
    shop.clock.advance(shop.checkout.config.order_ttl * 2)
    assert shop.checkout.sweep() == []
    assert shop.order()[0] is OrderStatus.CONFIRMING
    shop.btcpay.move("Expired", "PaidPartial")
    assert shop.send("InvoiceExpired") is WebhookOutcome.APPLIED
    assert shop.order() == (OrderStatus.UNDERPAID, frozenset(), PaymentStatus.UNDERPAID)


def test_a_full_payment_after_expiry_is_held_once_confirmed(shop: Shop) -> None:
    shop.btcpay.move("Expired")
    assert shop.send("InvoiceExpired") is WebhookOutcome.APPLIED
    assert shop.order() == (OrderStatus.EXPIRED, frozenset(), PaymentStatus.FAILED)
    shop.btcpay.move("Expired", "PaidLate", paid=DUE, confirmed=False)
    assert shop.send("InvoicePaidAfterExpiration") is WebhookOutcome.IGNORED
    assert shop.order()[1] == frozenset()
    shop.btcpay.move("Expired", "PaidLate", confirmed=True)
    assert shop.send("InvoicePaymentSettled") is WebhookOutcome.APPLIED
    assert shop.order() == (
        OrderStatus.EXPIRED,
        frozenset({Flag.PAID_LATE}),
        PaymentStatus.FINISHED,
    )


def test_an_invoice_that_never_confirms_fails_the_order(shop: Shop) -> None:
    shop.btcpay.move("Invalid", paid=DUE)
    assert shop.send("InvoiceInvalid") is WebhookOutcome.APPLIED
    assert shop.order() == (OrderStatus.FAILED, frozenset(), PaymentStatus.FAILED)


def test_a_webhook_for_another_apps_invoice_is_unbound(shop: Shop) -> None:
    shop.btcpay.move("Settled", paid=DUE, order_id="someone-elses")
    body = webhook("InvoiceSettled")
    result = shop.checkout.handle_webhook("btcpay", body, signed(body))
    assert result.code == "unbound_webhook"
    assert shop.order()[0] is OrderStatus.WAITING


def test_a_payout_event_is_answered_ignored_without_a_re_read(shop: Shop) -> None:
    body = json.dumps({"type": "PayoutApproved", "deliveryId": "D7"}).encode()
    result = shop.checkout.handle_webhook("btcpay", body, signed(body))
    assert (result.outcome, result.code) == (WebhookOutcome.IGNORED, "ok")
    assert "not an invoice event" in result.reason
    assert shop.btcpay.reads == 0
    assert shop.order()[0] is OrderStatus.WAITING


def test_a_failed_re_read_is_refused_and_a_redelivery_applies_it(shop: Shop) -> None:
    shop.btcpay.move("Settled", paid=DUE)
    shop.btcpay.down = True
    body = webhook("InvoiceSettled")
    refused = shop.checkout.handle_webhook("btcpay", body, signed(body))
    assert (refused.outcome, refused.code) == (WebhookOutcome.REJECTED, "provider_unavailable")
    shop.btcpay.down = False
    again = shop.checkout.handle_webhook("btcpay", body, signed(body))
    assert again.outcome is WebhookOutcome.APPLIED


def test_reconcile_reads_the_invoice_once_per_state(shop: Shop) -> None:
    shop.btcpay.move("Processing", paid=DUE, confirmed=False)
    shop.clock.advance(shop.checkout.config.reconcile_after)
    assert [r.outcome for r in shop.checkout.reconcile()] == [WebhookOutcome.APPLIED]
    shop.clock.advance(shop.checkout.config.reconcile_after)
    assert [r.outcome for r in shop.checkout.reconcile()] == [WebhookOutcome.DUPLICATE]
