"""Frozen values: orders, items, payments, jobs, audit entries.

Values are validated on construction and changed with ``dataclasses.replace``, never by
mutation. Money is ``Decimal``; time is an aware UTC ``datetime``. Don't subclass these.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from bitloot_core.chart import Flag, JobKind, OrderStatus, PaymentStatus


def require_utc(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() != timedelta(0):
        raise ValueError(f"{name} must be an aware UTC datetime, got {value!r}")


def require_money(name: str, value: Decimal) -> None:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise TypeError(f"{name} must be a finite Decimal, got {value!r}")


class ProductSource(enum.StrEnum):
    KINGUIN = "kinguin"
    CUSTOM = "custom"


@dataclass(frozen=True, slots=True, kw_only=True)
class Product:
    id: str
    name: str
    price: Decimal
    currency: str
    source: ProductSource
    # Kinguin's productId for ``kinguin`` products; unused for custom ones.
    supplier_ref: str | None = None

    def __post_init__(self) -> None:
        require_money("price", self.price)
        if self.price <= 0:
            raise ValueError("price must be positive")
        if self.source is ProductSource.KINGUIN and not self.supplier_ref:
            raise ValueError("a kinguin product needs its supplier_ref (Kinguin productId)")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveredKey:
    """A key stored in the vault: ``ref`` names it there; the key itself is never here."""

    ref: str
    content_type: str = "text/plain"


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderItem:
    id: str
    product_id: str
    name: str
    quantity: int
    unit_price: Decimal
    source: ProductSource
    supplier_ref: str | None = None
    keys: tuple[DeliveredKey, ...] = ()

    def __post_init__(self) -> None:
        require_money("unit_price", self.unit_price)
        if self.quantity < 1:
            raise ValueError("quantity must be at least 1")

    @property
    def delivered(self) -> bool:
        return len(self.keys) >= self.quantity

    @property
    def total(self) -> Decimal:
        return self.unit_price * self.quantity


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    id: str
    email: str
    currency: str
    items: tuple[OrderItem, ...]
    created_at: datetime
    updated_at: datetime
    # sha256 hex of the access token; the token itself is never stored.
    access_token_hash: str
    status: OrderStatus = OrderStatus.CREATED
    flags: frozenset[Flag] = frozenset()
    version: int = 1
    # The payment currently bound to the order (None until one is opened): a payment is
    # identified by its provider and the provider's id for it.
    payment_id: str | None = None
    payment_provider: str | None = None

    def __post_init__(self) -> None:
        require_utc("created_at", self.created_at)
        require_utc("updated_at", self.updated_at)
        if not self.items:
            raise ValueError("an order needs at least one item")

    @property
    def total(self) -> Decimal:
        return sum((item.total for item in self.items), Decimal(0))

    def item(self, item_id: str) -> OrderItem | None:
        return next((i for i in self.items if i.id == item_id), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Payment:
    """The payment record: our status beside the provider's raw status and amounts."""

    id: str
    order_id: str
    status: PaymentStatus
    provider_status: str
    # The payment provider's name (``PaymentProvider.name``) that holds this payment; with
    # ``id`` (the provider's id for it) it identifies the payment.
    provider: str = "nowpayments"
    price_amount: Decimal
    price_currency: str
    pay_amount: Decimal
    pay_currency: str
    pay_address: str
    created_at: datetime
    updated_at: datetime
    actually_paid: Decimal = Decimal(0)
    valid_until: datetime | None = None
    version: int = 1

    def __post_init__(self) -> None:
        require_money("price_amount", self.price_amount)
        require_money("pay_amount", self.pay_amount)
        require_money("actually_paid", self.actually_paid)
        require_utc("created_at", self.created_at)
        require_utc("updated_at", self.updated_at)


__all__ = [
    "AuditEntry",
    "DeliveredKey",
    "EmailRecord",
    "IdempotencyRecord",
    "Job",
    "JobKind",
    "JobState",
    "OpenedPayment",
    "Order",
    "OrderItem",
    "OutgoingEmail",
    "Payment",
    "Product",
    "ProductSource",
    "Reveal",
    "SuppliedKey",
    "WebhookLogEntry",
    "WebhookOutcome",
    "require_money",
    "require_utc",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenedPayment:
    """What the payment gateway answers when a payment is created."""

    payment_id: str
    provider_status: str
    pay_address: str
    pay_amount: Decimal
    pay_currency: str
    price_amount: Decimal
    price_currency: str
    valid_until: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SuppliedKey:
    """A key as a supplier or pool hands it over (the secret itself, in memory only)."""

    product_ref: str
    secret: bytes = field(repr=False)
    content_type: str = "text/plain"
    # The supplier's text as sent, when ``secret`` was decoded from it (an image key's
    # base64): kept so a key is never lost to a decoding the supplier did not document.
    raw: str | None = field(default=None, repr=False)


class JobState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """An outbox row: unique ``key``, attempts, backoff and a lease."""

    key: str
    kind: JobKind
    order_id: str
    state: JobState
    attempts: int
    run_at: datetime
    created_at: datetime
    lease_until: datetime | None = None
    last_error: str | None = None
    version: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    order_id: str | None
    at: datetime
    action: str
    detail: str
    actor: str = "system"


class WebhookOutcome(enum.StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookLogEntry:
    """Every IPN received, whatever became of it."""

    received_at: datetime
    body_sha256: str
    signature_valid: bool
    outcome: WebhookOutcome
    reason: str
    payment_id: str | None = None
    order_id: str | None = None
    provider_status: str | None = None
    dedupe_key: str | None = None
    # The payment provider it came from (None: no provider of ours, or a supplier's).
    provider: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class IdempotencyRecord:
    scope: str
    fingerprint: str
    order_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailRecord:
    order_id: str
    kind: str
    message_id: str
    to: str
    created_at: datetime
    sent_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reveal:
    order_id: str
    item_id: str
    at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingEmail:
    message_id: str
    to: str
    subject: str
    text: str
    html: str
