"""The ports the ``Checkout`` service talks through. Adapters match them structurally.

Nothing here performs I/O; these are only shapes. ``bitloot_core.testing`` has in-memory
implementations of every port, and ``bitloot_adapters`` the real ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from bitloot_core.chart import Flag, OrderStatus
from bitloot_core.providers import PaymentUpdate
from bitloot_core.values import (
    AuditEntry,
    EmailRecord,
    IdempotencyRecord,
    Job,
    JobState,
    OpenedPayment,
    Order,
    OutgoingEmail,
    Payment,
    Product,
    Reveal,
    SuppliedKey,
    WebhookLogEntry,
)


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware UTC datetime."""
        ...


class StoreTx(Protocol):
    """One transaction. Writes become visible together on commit, or not at all.

    Inserts that must be unique return False instead of inserting a duplicate; updates
    are compare-and-set on ``version`` and raise ``ConcurrentUpdate`` when it moved.
    """

    # Products and the custom key pool.
    def get_product(self, product_id: str) -> Product | None: ...
    def list_products(self) -> list[Product]: ...
    def upsert_product(self, product: Product) -> None: ...
    def add_pool_keys(self, product_id: str, refs: Sequence[str]) -> int:
        """Add vault refs of shop-owned keys to a product's pool; returns how many."""
        ...

    def pool_size(self, product_id: str) -> int: ...
    def claim_pool_key(self, product_id: str, claimed_by: str) -> str | None:
        """Take one unclaimed key's vault ref for ``claimed_by`` (idempotent per claimant)."""
        ...

    def release_pool_keys(self, claimed_by_prefix: str) -> int:
        """Put back every key whose claimant starts with ``claimed_by_prefix``; how many."""
        ...

    # Orders and payments.
    def get_order(self, order_id: str) -> Order | None: ...
    def insert_order(self, order: Order) -> None: ...
    def update_order(self, order: Order) -> Order:
        """Store ``order`` if the stored version is ``order.version``; returns it bumped."""
        ...

    def list_orders(
        self,
        *,
        status: OrderStatus | None = None,
        flag: Flag | None = None,
        created_before: datetime | None = None,
        statuses: frozenset[OrderStatus] | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> list[Order]:
        """Orders matching every filter given, oldest first (``newest_first``: the most
        recent ``limit`` orders, newest first)."""
        ...

    def count_orders_by_status(self) -> dict[OrderStatus, int]: ...
    def get_payment(self, provider: str, payment_id: str) -> Payment | None:
        """The payment ``provider`` knows as ``payment_id`` (ids are the provider's own)."""
        ...

    def list_payments(self, *, order_id: str | None = None) -> list[Payment]: ...
    def insert_payment(self, payment: Payment) -> None: ...
    def update_payment(self, payment: Payment) -> Payment: ...

    # Idempotency keys and the webhook log.
    def get_idempotency(self, scope: str) -> IdempotencyRecord | None: ...
    def insert_idempotency(self, record: IdempotencyRecord) -> bool: ...
    def delete_idempotency_before(self, cutoff: datetime) -> int: ...
    def claim_ipn(self, dedupe_key: str, at: datetime) -> bool:
        """True the first time ``dedupe_key`` is seen."""
        ...

    def log_webhook(self, entry: WebhookLogEntry) -> None: ...
    def list_webhooks(self, order_id: str) -> list[WebhookLogEntry]: ...

    # The job outbox.
    def enqueue_job(self, job: Job) -> bool: ...
    def get_job(self, key: str) -> Job | None: ...
    def update_job(self, job: Job) -> Job: ...
    def due_jobs(self, now: datetime, limit: int) -> list[Job]:
        """Pending jobs with ``run_at <= now``, and running ones whose lease ran out."""
        ...

    def list_jobs(
        self, *, state: JobState | None = None, order_id: str | None = None
    ) -> list[Job]: ...

    # Emails, audit trail, reveals.
    def insert_email(self, record: EmailRecord) -> bool: ...
    def get_email(self, order_id: str, kind: str) -> EmailRecord | None: ...
    def mark_email_sent(self, order_id: str, kind: str, at: datetime) -> None: ...
    def add_audit(self, entry: AuditEntry) -> None: ...
    def list_audit(self, order_id: str) -> list[AuditEntry]: ...
    def record_reveal(self, reveal: Reveal) -> None: ...
    def list_reveals(self, order_id: str) -> list[Reveal]: ...


class Store(Protocol):
    def transaction(self) -> AbstractContextManager[StoreTx]:
        """A read-modify-write transaction (``BEGIN IMMEDIATE`` in SQLite).

        Transactions do not nest; an exception inside rolls everything back.
        """
        ...


class PaymentGateway(Protocol):
    """The I/O half of one payment provider (its pure half is a ``PaymentProvider``)."""

    def create_payment(
        self,
        *,
        order_id: str,
        price_amount: str,
        price_currency: str,
        pay_currency: str,
        ipn_callback_url: str,
        description: str,
    ) -> OpenedPayment: ...
    def get_payment(self, payment_id: str) -> PaymentUpdate:
        """The provider's current word on a payment, as the neutral update its provider
        module parses (``bitloot_core.providers``): to reconcile a missed webhook, to
        check before the sweeper expires an order, and to read a payment whose webhooks
        carry no amounts. Raises ``ProviderError``/``ProviderUnavailable`` (or
        ``MalformedWebhook`` for an answer that cannot be parsed).
        """
        ...


class KeySupplier(Protocol):
    def fulfill(
        self,
        *,
        order_id: str,
        lines: Sequence[tuple[str, int]],
        max_prices: Mapping[str, Decimal] | None = None,
    ) -> list[SuppliedKey]:
        """Buy ``(product_ref, quantity)`` lines for ``order_id`` and return every key.

        ``max_prices`` (per product_ref, per unit; None: no limit) is the most the shop
        pays: when the supplier asks more for any line, raise ``PriceGuard`` and buy
        nothing.

        Must never buy twice for one ``order_id``: look the order up by its external id
        before placing it again. Raises ``SupplierUnavailable`` (retry later) or
        ``SupplierError`` (an admin must look).
        """
        ...


class KeyVault(Protocol):
    def put(self, ref: str, secret: bytes, content_type: str) -> None:
        """Store ``secret`` encrypted under ``ref``; putting the same ref again is a no-op."""
        ...

    def url_for(self, ref: str, expires_at: datetime, now: datetime, nonce: str = "") -> str:
        """A URL from which the key can be fetched until ``expires_at``.

        ``nonce`` (letters, digits, ``_`` and ``-``) makes each URL distinct: the service
        passes a fresh one per reveal, so every reveal hands out a new URL.
        """
        ...


class Mailer(Protocol):
    def send(self, message: OutgoingEmail) -> None:
        """Return once the server accepted the message; raise otherwise."""
        ...


__all__ = [
    "Clock",
    "KeySupplier",
    "KeyVault",
    "Mailer",
    "Observer",
    "PaymentGateway",
    "Store",
    "StoreTx",
]


class Observer(Protocol):
    """Receives what happened (for logs and metrics); must not raise."""

    def observe(self, event: str, /, **fields: object) -> None: ...
