"""Test doubles for every port, shipped so host applications can test with them too.

``MemoryStore`` keeps everything in dictionaries behind one lock; a transaction works on a
copy and publishes it on success, so a failed transaction leaves nothing behind, like a
rolled-back database transaction. The other fakes record what they were asked to do.
Nothing here performs I/O.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bitloot_core.chart import Flag, OrderStatus
from bitloot_core.errors import (
    ConcurrentUpdate,
    MailerUnavailable,
    PriceGuard,
    ProviderError,
    SupplierUnavailable,
)
from bitloot_core.providers import PaymentUpdate
from bitloot_core.providers.nowpayments import canonical_json, parse_payment
from bitloot_core.tokens import mint_key_token
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


@dataclass
class _Tables:
    products: dict[str, Product] = field(default_factory=dict)
    pool: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    # Keyed by (provider, payment id): a payment's identity.
    payments: dict[tuple[str, str], Payment] = field(default_factory=dict)
    idempotency: dict[str, IdempotencyRecord] = field(default_factory=dict)
    ipn_keys: dict[str, datetime] = field(default_factory=dict)
    webhooks: list[WebhookLogEntry] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    emails: dict[tuple[str, str], EmailRecord] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)
    reveals: list[Reveal] = field(default_factory=list)


class MemoryTx:
    """A transaction over a private copy of the tables."""

    def __init__(self, tables: _Tables) -> None:
        self.t = tables

    # products and pool
    def get_product(self, product_id: str) -> Product | None:
        return self.t.products.get(product_id)

    def list_products(self) -> list[Product]:
        return sorted(self.t.products.values(), key=lambda p: p.id)

    def upsert_product(self, product: Product) -> None:
        self.t.products[product.id] = product

    def add_pool_keys(self, product_id: str, refs: Sequence[str]) -> int:
        # A ref names one key: it joins one pool once, whatever the product.
        known = {ref for pool in self.t.pool.values() for ref, _ in pool}
        new = list(dict.fromkeys(ref for ref in refs if ref not in known))
        self.t.pool.setdefault(product_id, []).extend((ref, None) for ref in new)
        return len(new)

    def pool_size(self, product_id: str) -> int:
        return sum(1 for _, claimant in self.t.pool.get(product_id, []) if claimant is None)

    def claim_pool_key(self, product_id: str, claimed_by: str) -> str | None:
        pool = self.t.pool.get(product_id, [])
        for ref, claimant in pool:
            if claimant == claimed_by:
                return ref
        for index, (ref, claimant) in enumerate(pool):
            if claimant is None:
                pool[index] = (ref, claimed_by)
                return ref
        return None

    def release_pool_keys(self, claimed_by_prefix: str) -> int:
        released = 0
        for pool in self.t.pool.values():
            for index, (ref, claimant) in enumerate(pool):
                if claimant is not None and claimant.startswith(claimed_by_prefix):
                    pool[index] = (ref, None)
                    released += 1
        return released

    # orders and payments
    def get_order(self, order_id: str) -> Order | None:
        return self.t.orders.get(order_id)

    def insert_order(self, order: Order) -> None:
        if order.id in self.t.orders:
            raise ConcurrentUpdate(f"order {order.id} exists")
        self.t.orders[order.id] = order

    def update_order(self, order: Order) -> Order:
        current = self.t.orders.get(order.id)
        if current is None or current.version != order.version:
            raise ConcurrentUpdate(f"order {order.id} changed")
        stored = replace(order, version=order.version + 1)
        self.t.orders[order.id] = stored
        return stored

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
        found = [
            o
            for o in self.t.orders.values()
            if (status is None or o.status is status)
            and (statuses is None or o.status in statuses)
            and (flag is None or flag in o.flags)
            and (created_before is None or o.created_at <= created_before)
        ]
        found.sort(key=lambda o: o.created_at)  # stable: ties keep insertion order
        if newest_first:
            found.reverse()
        return found[:limit]

    def count_orders_by_status(self) -> dict[OrderStatus, int]:
        counts = dict.fromkeys(OrderStatus, 0)
        for order in self.t.orders.values():
            counts[order.status] += 1
        return counts

    def get_payment(self, provider: str, payment_id: str) -> Payment | None:
        return self.t.payments.get((provider, payment_id))

    def list_payments(self, *, order_id: str | None = None) -> list[Payment]:
        return [p for p in self.t.payments.values() if order_id is None or p.order_id == order_id]

    def insert_payment(self, payment: Payment) -> None:
        key = (payment.provider, payment.id)
        if key in self.t.payments:
            raise ConcurrentUpdate(f"payment {payment.id} exists")
        self.t.payments[key] = payment

    def update_payment(self, payment: Payment) -> Payment:
        key = (payment.provider, payment.id)
        current = self.t.payments.get(key)
        if current is None or current.version != payment.version:
            raise ConcurrentUpdate(f"payment {payment.id} changed")
        stored = replace(payment, version=payment.version + 1)
        self.t.payments[key] = stored
        return stored

    # idempotency and webhooks
    def get_idempotency(self, scope: str) -> IdempotencyRecord | None:
        return self.t.idempotency.get(scope)

    def insert_idempotency(self, record: IdempotencyRecord) -> bool:
        if record.scope in self.t.idempotency:
            return False
        self.t.idempotency[record.scope] = record
        return True

    def delete_idempotency_before(self, cutoff: datetime) -> int:
        old = [k for k, r in self.t.idempotency.items() if r.created_at < cutoff]
        for key in old:
            del self.t.idempotency[key]
        return len(old)

    def claim_ipn(self, dedupe_key: str, at: datetime) -> bool:
        if dedupe_key in self.t.ipn_keys:
            return False
        self.t.ipn_keys[dedupe_key] = at
        return True

    def log_webhook(self, entry: WebhookLogEntry) -> None:
        self.t.webhooks.append(entry)

    def list_webhooks(self, order_id: str) -> list[WebhookLogEntry]:
        return [w for w in self.t.webhooks if w.order_id == order_id]

    # jobs
    def enqueue_job(self, job: Job) -> bool:
        if job.key in self.t.jobs:
            return False
        self.t.jobs[job.key] = job
        return True

    def get_job(self, key: str) -> Job | None:
        return self.t.jobs.get(key)

    def update_job(self, job: Job) -> Job:
        current = self.t.jobs.get(job.key)
        if current is None or current.version != job.version:
            raise ConcurrentUpdate(f"job {job.key} changed")
        stored = replace(job, version=job.version + 1)
        self.t.jobs[job.key] = stored
        return stored

    def due_jobs(self, now: datetime, limit: int) -> list[Job]:
        due = [
            j
            for j in self.t.jobs.values()
            if (j.state is JobState.PENDING and j.run_at <= now)
            or (j.state is JobState.RUNNING and j.lease_until is not None and j.lease_until <= now)
        ]
        due.sort(key=lambda j: (j.run_at, j.key))
        return due[:limit]

    def list_jobs(self, *, state: JobState | None = None, order_id: str | None = None) -> list[Job]:
        return sorted(
            (
                j
                for j in self.t.jobs.values()
                if (state is None or j.state is state)
                and (order_id is None or j.order_id == order_id)
            ),
            key=lambda j: (j.created_at, j.key),
        )

    # emails, audit, reveals
    def insert_email(self, record: EmailRecord) -> bool:
        key = (record.order_id, record.kind)
        if key in self.t.emails:
            return False
        self.t.emails[key] = record
        return True

    def get_email(self, order_id: str, kind: str) -> EmailRecord | None:
        return self.t.emails.get((order_id, kind))

    def mark_email_sent(self, order_id: str, kind: str, at: datetime) -> None:
        record = self.t.emails[order_id, kind]
        if record.sent_at is None:
            self.t.emails[order_id, kind] = replace(record, sent_at=at)

    def add_audit(self, entry: AuditEntry) -> None:
        self.t.audit.append(entry)

    def list_audit(self, order_id: str) -> list[AuditEntry]:
        return [a for a in self.t.audit if a.order_id == order_id]

    def record_reveal(self, reveal: Reveal) -> None:
        self.t.reveals.append(reveal)

    def list_reveals(self, order_id: str) -> list[Reveal]:
        return [r for r in self.t.reveals if r.order_id == order_id]


class MemoryStore:
    """An in-memory ``Store``: serialised transactions with all-or-nothing commits."""

    def __init__(self) -> None:
        self._tables = _Tables()
        self._lock = threading.Lock()
        self._inside = threading.local()

    @contextmanager
    def transaction(self) -> Iterator[MemoryTx]:
        """Transactions do not nest (as in SQLite): a nested one raises ``RuntimeError``."""
        if getattr(self._inside, "active", False):
            raise RuntimeError("transactions do not nest")
        with self._lock:
            self._inside.active = True
            try:
                work = copy.deepcopy(self._tables)
                yield MemoryTx(work)
                self._tables = work
            finally:
                self._inside.active = False


class SettableClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when


class SequentialIds:
    """Predictable ids (``prefix-1``, ``prefix-2``, …) for readable tests."""

    def __init__(self, prefix: str = "id") -> None:
        self._counter = itertools.count(1)
        self._prefix = prefix
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            return f"{self._prefix}-{next(self._counter)}"


class FakeGateway:
    """A NOWPayments gateway that opens payments in memory and remembers their JSON.

    ``payments`` holds each payment's JSON as the provider would answer it; a test sets
    it to what the provider should say next. ``get_payment`` parses it with the
    NOWPayments provider's own parser, as the real client does. ``valid_until`` is the
    payment window the next payments are opened with (None: the provider names none).
    """

    def __init__(self, *, rate: Decimal = Decimal("0.00002"), pay_currency: str = "btc") -> None:
        self.rate = rate
        self.pay_currency = pay_currency
        self.created: list[dict[str, str]] = []
        self.payments: dict[str, bytes] = {}
        self.valid_until: datetime | None = None
        self._ids = itertools.count(5800567260)

    def create_payment(
        self,
        *,
        order_id: str,
        price_amount: str,
        price_currency: str,
        pay_currency: str,
        ipn_callback_url: str,
        description: str,
    ) -> OpenedPayment:
        self.created.append(
            {
                "order_id": order_id,
                "price_amount": price_amount,
                "price_currency": price_currency,
                "pay_currency": pay_currency,
                "ipn_callback_url": ipn_callback_url,
                "description": description,
            }
        )
        payment_id = str(next(self._ids))
        opened = OpenedPayment(
            payment_id=payment_id,
            provider_status="waiting",
            pay_address=f"fake-address-{payment_id}",
            pay_amount=(Decimal(price_amount) * self.rate).quantize(Decimal("0.00000001")),
            pay_currency=pay_currency,
            price_amount=Decimal(price_amount),
            price_currency=price_currency,
            valid_until=self.valid_until,
        )
        # Until a test says otherwise, the provider reports the payment still waiting.
        self.payments[payment_id] = canonical_json(
            {
                "actually_paid": 0,
                "order_id": order_id,
                "pay_address": opened.pay_address,
                "pay_amount": opened.pay_amount,
                "pay_currency": pay_currency,
                "payment_id": int(payment_id),
                "payment_status": "waiting",
                "price_amount": opened.price_amount,
                "price_currency": price_currency,
            }
        ).encode()
        return opened

    def get_payment(self, payment_id: str) -> PaymentUpdate:
        """The payment as the provider would answer ``GET /payment/{id}``."""
        if payment_id not in self.payments:
            raise ProviderError(f"payment {payment_id} not found", status=404)
        return parse_payment(self.payments[payment_id])


class FakeSupplier:
    """A key supplier that hands out numbered keys, never twice per order.

    ``fail_next`` makes the next calls raise ``SupplierUnavailable`` (or the given error);
    ``prices`` is what it asks per product_ref (``PriceGuard`` above ``max_prices``).
    """

    def __init__(self) -> None:
        self.prices: dict[str, Decimal] = {}
        self.orders: dict[str, list[SuppliedKey]] = {}
        self.calls: list[str] = []
        self.fail_next: list[Exception] = []
        self._serial = itertools.count(1)

    def fulfill(
        self,
        *,
        order_id: str,
        lines: Sequence[tuple[str, int]],
        max_prices: Mapping[str, Decimal] | None = None,
    ) -> list[SuppliedKey]:
        self.calls.append(order_id)
        if self.fail_next:
            raise self.fail_next.pop(0)
        if order_id not in self.orders:
            for ref, _ in lines:
                asked, limit = self.prices.get(ref), (max_prices or {}).get(ref)
                if asked is not None and limit is not None and asked > limit:
                    raise PriceGuard(f"{ref} costs {asked}, the limit is {limit}")
            self.orders[order_id] = [
                SuppliedKey(product_ref=ref, secret=f"KEY-{ref}-{next(self._serial)}".encode())
                for ref, quantity in lines
                for _ in range(quantity)
            ]
        return list(self.orders[order_id])

    def outage(self, failures: int, error: Exception | None = None) -> None:
        self.fail_next.extend(
            [error or SupplierUnavailable("supplier returned 503", status=503)] * failures
        )


class MemoryVault:
    """Keeps keys in a dict; URLs are ``memory://`` with a signed token."""

    def __init__(self, signing_key: bytes) -> None:
        self._signing_key = signing_key
        self.keys: dict[str, tuple[bytes, str]] = {}

    def put(self, ref: str, secret: bytes, content_type: str) -> None:
        self.keys.setdefault(ref, (secret, content_type))

    def url_for(self, ref: str, expires_at: datetime, now: datetime, nonce: str = "") -> str:
        del now
        token = mint_key_token(
            secret=self._signing_key, ref=ref, expires_at=expires_at, nonce=nonce
        )
        return f"memory://keys/{token}"

    def read(self, ref: str) -> tuple[bytes, str]:
        return self.keys[ref]


class RecordingMailer:
    """Keeps every accepted message; ``fail_next`` simulates a server that is down."""

    def __init__(self) -> None:
        self.sent: list[OutgoingEmail] = []
        self.fail_next = 0

    def send(self, message: OutgoingEmail) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise MailerUnavailable("the mail server is down")
        self.sent.append(message)


class RecordingObserver:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def observe(self, event: str, /, **fields: object) -> None:
        self.events.append((event, fields))

    def names(self) -> list[str]:
        return [name for name, _ in self.events]
