"""The values ``Checkout`` answers with. Outcomes only: the HTTP layer maps them to
status codes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bitloot_core.chart import OrderStatus
from bitloot_core.values import (
    AuditEntry,
    Job,
    Order,
    Payment,
    Product,
    Reveal,
    WebhookLogEntry,
    WebhookOutcome,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatedOrder:
    order: Order
    access_token: str = field(repr=False)
    replayed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderView:
    order: Order
    payment: Payment | None


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenedPaymentResult:
    payment: Payment
    created: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class IpnResult:
    """What became of one webhook. ``code`` says why one was rejected:
    ``bad_signature``, ``malformed_webhook``, ``unbound_webhook``, ``unknown_provider``, or
    the error code of a failed re-read of the payment (``provider_unavailable``, ...).
    """

    outcome: WebhookOutcome
    reason: str
    code: str = "ok"
    order_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RevealedKey:
    url: str
    urls: tuple[str, ...]
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRun:
    key: str
    outcome: str
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminOrderView:
    order: Order
    payments: list[Payment]
    audit: list[AuditEntry]
    webhooks: list[WebhookLogEntry]
    jobs: list[Job]
    reveals: list[Reveal]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductView:
    product: Product
    available: bool
    # Unclaimed keys in a custom product's pool; None for a Kinguin product.
    stock: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KeysWait:
    """An order whose fulfillment waits for the supplier's keys (the admin's view)."""

    order_id: str
    email: str
    status: OrderStatus
    since: datetime  # when this wait began
    next_poll: datetime  # when the supplier is asked again (its webhook may wake it sooner)
    supplier_orders: tuple[str, ...]  # the supplier's own order ids
    preorder: bool
    release_at: datetime | None  # a pre-order's release, when the supplier says
    last_error: str
