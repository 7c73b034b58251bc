"""What every part of the checkout shares: the ports, the configuration and the clock.

``Context`` is built once by ``Checkout`` and handed to each module of this package;
the modules keep no state of their own. The helpers below are the few reads and writes
every module needs (an order by id, its payment, an audit line). Never performs I/O
itself: every such thing is a port held here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Final, Protocol

from bitloot_core import rules, tokens
from bitloot_core.errors import NotFound
from bitloot_core.ports import (
    Clock,
    KeySupplier,
    KeyVault,
    Mailer,
    Observer,
    PaymentGateway,
    Store,
    StoreTx,
)
from bitloot_core.providers import PaymentProvider
from bitloot_core.values import AuditEntry, Order, Payment

MIN_SIGNING_KEY_BYTES: Final = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailContent:
    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CompletionFacts:
    """What a completion email may say: the order and the links to its keys."""

    shop_name: str
    order: Order
    # The order page (it shows every key), and each item's place on it, by item id.
    order_url: str
    item_urls: Mapping[str, str]


class CompletionEmail(Protocol):
    """A shop's own completion email: subject, text and HTML from the facts given."""

    def __call__(self, facts: CompletionFacts, /) -> EmailContent: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckoutConfig:
    """Secrets and rules the service needs; nothing here is read from the environment.

    ``ipn_secret`` is NOWPayments' and is needed only by the NOWPayments shorthand
    (``Checkout(gateway=...)``); a provider passed in ``providers`` holds its own secret.
    """

    signing_key: bytes = field(repr=False)
    public_url: str
    ipn_secret: str | None = field(default=None, repr=False)
    pay_currency: str = "btc"
    order_ttl: timedelta = rules.ORDER_TTL
    key_url_ttl: timedelta = rules.KEY_URL_TTL
    underpay_tolerance_percent: Decimal = Decimal(0)
    idempotency_retention: timedelta = rules.IDEMPOTENCY_RETENTION
    fulfillment_retries: rules.RetrySchedule = rules.FULFILLMENT_RETRIES
    email_retries: rules.RetrySchedule = rules.EMAIL_RETRIES
    job_lease: timedelta = timedelta(minutes=2)
    key_poll_interval: timedelta = rules.KEY_POLL_INTERVAL
    key_wait_limit: timedelta = rules.KEY_WAIT_LIMIT
    preorder_wait_limit: timedelta = rules.PREORDER_WAIT_LIMIT
    reconcile_after: timedelta = timedelta(minutes=15)
    # How long one request may take to open an order's payment with the provider before
    # another may try (a request that died mid-call blocks the order this long).
    payment_opening_lease: timedelta = timedelta(minutes=1)
    shop_name: str = "bitloot"
    # Writes the completion email (subject, text, HTML) in place of the built-in one.
    completion_email: CompletionEmail | None = None

    def __post_init__(self) -> None:
        if self.ipn_secret is not None and not self.ipn_secret.strip():
            raise ValueError("ipn_secret must not be empty")
        if len(self.signing_key) < MIN_SIGNING_KEY_BYTES:
            raise ValueError("signing_key must be at least 32 bytes")
        if not Decimal(0) <= self.underpay_tolerance_percent < Decimal(100):
            raise ValueError("underpay_tolerance_percent must be in [0, 100)")
        if self.key_url_ttl > timedelta(days=7) or self.key_url_ttl <= timedelta(0):
            raise ValueError("key_url_ttl must be between 1 second and 7 days")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderSetup:
    """A payment provider the shop takes payments with, and the gateway that reaches it."""

    provider: PaymentProvider
    gateway: PaymentGateway


class NullObserver:
    def observe(self, event: str, /, **fields: object) -> None:
        pass


@dataclass(slots=True, kw_only=True)
class Context:
    """The ports and settings of one ``Checkout``.

    Not frozen: a test may swap a port on a running ``Checkout`` (a store that loses a
    compare-and-set, a slow supplier), and every module must see the swap.
    """

    store: Store
    supplier: KeySupplier
    vault: KeyVault
    mailer: Mailer
    clock: Clock
    config: CheckoutConfig
    new_id: Callable[[], str]
    random: Callable[[], float]
    observer: Observer
    # Every provider the shop runs, by name; the first is the default.
    providers: dict[str, ProviderSetup]
    default_provider: str

    def access_token(self, order_id: str) -> str:
        return tokens.order_access_token(secret=self.config.signing_key, order_id=order_id)

    def audit(
        self, tx: StoreTx, order_id: str | None, action: str, detail: str, *, actor: str = "system"
    ) -> None:
        tx.add_audit(
            AuditEntry(
                order_id=order_id, at=self.clock.now(), action=action, detail=detail, actor=actor
            )
        )


def order_of(tx: StoreTx, order_id: str) -> Order:
    order = tx.get_order(order_id)
    if order is None:
        raise NotFound(f"no order {order_id!r}")
    return order


def payment_of(tx: StoreTx, order: Order) -> Payment | None:
    """The payment bound to ``order`` (stored with it, so never missing once bound)."""
    if order.payment_id is None or order.payment_provider is None:
        return None
    return tx.get_payment(order.payment_provider, order.payment_id)
