"""A Checkout wired with the shipped fakes, and helpers to write signed IPNs."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from decimal import Decimal

from bitloot_core.service import Checkout, CheckoutConfig
from bitloot_core.testing import (
    FakeGateway,
    FakeSupplier,
    MemoryStore,
    MemoryVault,
    RecordingMailer,
    RecordingObserver,
    SequentialIds,
    SettableClock,
)
from bitloot_core.values import Payment, Product, ProductSource

IPN_SECRET = "ipn-secret-for-tests"
SIGNING_KEY = b"k" * 32


@dataclass
class Kit:
    checkout: Checkout
    store: MemoryStore
    gateway: FakeGateway
    supplier: FakeSupplier
    vault: MemoryVault
    mailer: RecordingMailer
    clock: SettableClock
    observer: RecordingObserver


def make_kit(**config: object) -> Kit:
    store = MemoryStore()
    kit = Kit(
        checkout=None,  # type: ignore[arg-type]
        store=store,
        gateway=FakeGateway(),
        supplier=FakeSupplier(),
        vault=MemoryVault(SIGNING_KEY),
        mailer=RecordingMailer(),
        clock=SettableClock(),
        observer=RecordingObserver(),
    )
    kit.checkout = Checkout(
        store=store,
        gateway=kit.gateway,
        supplier=kit.supplier,
        vault=kit.vault,
        mailer=kit.mailer,
        clock=kit.clock,
        config=CheckoutConfig(
            ipn_secret=IPN_SECRET,
            signing_key=SIGNING_KEY,
            public_url="https://shop.example",
            **config,  # type: ignore[arg-type]
        ),
        new_id=SequentialIds("id"),
        observer=kit.observer,
    )
    for product in CATALOGUE:
        kit.checkout.save_product(product)
    return kit


CATALOGUE = (
    Product(
        id="elden-ring",
        name="Elden Ring",
        price=Decimal("59.99"),
        currency="usd",
        source=ProductSource.KINGUIN,
        supplier_ref="kg-1001",
    ),
    Product(
        id="hades",
        name="Hades",
        price=Decimal("19.99"),
        currency="usd",
        source=ProductSource.KINGUIN,
        supplier_ref="kg-1002",
    ),
    Product(
        id="celeste",
        name="Celeste",
        price=Decimal("9.99"),
        currency="usd",
        source=ProductSource.KINGUIN,
        supplier_ref="kg-1003",
    ),
    Product(
        id="shop-gift",
        name="Shop gift card",
        price=Decimal("10.00"),
        currency="usd",
        source=ProductSource.CUSTOM,
    ),
)


def ipn_body(
    payment: Payment, status: str, actually_paid: Decimal | None = None, **extra: object
) -> bytes:
    """An IPN body as NOWPayments sends it: sorted keys, compact, numbers as numbers."""
    paid = payment.pay_amount if actually_paid is None else actually_paid
    body: dict[str, object] = {
        "actually_paid": _number(Decimal(0) if status == "waiting" else paid),
        "fee": {"currency": payment.pay_currency, "depositFee": 0, "serviceFee": 0},
        "invoice_id": None,
        "order_description": None,
        "order_id": payment.order_id,
        "outcome_amount": _number(paid),
        "outcome_currency": payment.pay_currency,
        "parent_payment_id": None,
        "pay_address": payment.pay_address,
        "pay_amount": _number(payment.pay_amount),
        "pay_currency": payment.pay_currency,
        "payment_id": int(payment.id),
        "payment_status": status,
        "price_amount": _number(payment.price_amount),
        "price_currency": payment.price_currency,
        "purchase_id": "5172103429",
        "updated_at": 1765249461097,
    }
    body.update(extra)
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _number(value: Decimal) -> object:
    # The JSON text of these short decimal amounts is exact through float's repr; the
    # parser reads the text back as Decimal, which is what is under test.
    return int(value) if value == value.to_integral_value() else float(value)


def sign(body: bytes, secret: str = IPN_SECRET) -> dict[str, str]:
    return {"x-nowpayments-sig": hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()}


def send_ipn(
    kit: Kit, payment: Payment, status: str, actually_paid: Decimal | None = None, **extra: object
):
    body = ipn_body(payment, status, actually_paid, **extra)
    return kit.checkout.handle_ipn(body, sign(body))
