"""The ``Checkout`` service: the one entry point a host application calls.

It gathers inputs from the ports, asks the pure core what to do, and applies the answer
through the ports. It never touches a file, socket or clock itself: every such thing is
a port passed in. Each state change and the jobs it causes are written in one store
transaction (the outbox); work that talks to the outside world (supplier, vault, mailer)
runs outside any transaction, from those jobs, and is safe to repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from bitloot_core import chart, idempotency, rules, tokens
from bitloot_core.chart import Effect, Flag, OrderEvent, OrderStatus, PaymentStatus
from bitloot_core.errors import (
    AdapterError,
    BadSignature,
    BitlootError,
    ConcurrentUpdate,
    IdempotencyConflict,
    InvalidInput,
    InvalidState,
    KeysPending,
    KeyUrlRejected,
    MalformedWebhook,
    NotFound,
    PoolEmpty,
    SupplierError,
)
from bitloot_core.payments import binding_problem, decide_payment
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
from bitloot_core.providers import PaymentProvider, PaymentUpdate
from bitloot_core.providers.nowpayments import NowPayments
from bitloot_core.values import (
    AuditEntry,
    DeliveredKey,
    EmailRecord,
    IdempotencyRecord,
    Job,
    JobKind,
    JobState,
    Order,
    OrderItem,
    OutgoingEmail,
    Payment,
    Product,
    ProductSource,
    Reveal,
    WebhookLogEntry,
    WebhookOutcome,
)

MAX_ITEMS: Final = 10
MAX_QUANTITY: Final = 9
MAX_EMAIL_LENGTH: Final = 254
MAX_KEY_LENGTH: Final = 4096
MAX_NOTE_LENGTH: Final = 2000
MAX_PRODUCT_ID_LENGTH: Final = 100
MIN_SIGNING_KEY_BYTES: Final = 32
COMPLETION_EMAIL: Final = "completed"
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}$")
_CAS_RETRIES = 5


class _LeaseLost(Exception):
    """The job's lease ran out and another worker took the job over."""


@dataclass(slots=True)
class _Lease:
    """The job as this worker last leased it; renewing replaces ``job``."""

    job: Job


class _NullObserver:
    def observe(self, event: str, /, **fields: object) -> None:
        pass


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckoutConfig:
    """Secrets and rules the service needs; nothing here is read from the environment."""

    ipn_secret: str = field(repr=False)
    signing_key: bytes = field(repr=False)
    public_url: str
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
    shop_name: str = "bitloot"

    def __post_init__(self) -> None:
        if not self.ipn_secret.strip():
            raise ValueError("ipn_secret must not be empty")
        if len(self.signing_key) < MIN_SIGNING_KEY_BYTES:
            raise ValueError("signing_key must be at least 32 bytes")
        if not Decimal(0) <= self.underpay_tolerance_percent < Decimal(100):
            raise ValueError("underpay_tolerance_percent must be in [0, 100)")
        if self.key_url_ttl > timedelta(days=7) or self.key_url_ttl <= timedelta(0):
            raise ValueError("key_url_ttl must be between 1 second and 7 days")


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
class ProviderSetup:
    """A payment provider the shop takes payments with, and the gateway that reaches it."""

    provider: PaymentProvider
    gateway: PaymentGateway


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


class Checkout:
    """Create orders, open payments, apply IPNs, fulfil, email, reveal, sweep."""

    def __init__(
        self,
        *,
        store: Store,
        gateway: PaymentGateway | None = None,
        supplier: KeySupplier,
        vault: KeyVault,
        mailer: Mailer,
        clock: Clock,
        config: CheckoutConfig,
        new_id: Callable[[], str],
        random: Callable[[], float] = lambda: 1.0,
        observer: Observer | None = None,
        providers: Sequence[ProviderSetup] = (),
    ) -> None:
        """``gateway`` alone is NOWPayments' (with ``config.ipn_secret``); ``providers``
        lists every provider the shop runs side by side, the first being the default.
        """
        setups = list(providers)
        if gateway is not None:
            setups.insert(
                0,
                ProviderSetup(provider=NowPayments(ipn_secret=config.ipn_secret), gateway=gateway),
            )
        if not setups:
            raise ValueError("a Checkout needs a payment provider: pass gateway or providers")
        self._providers = {setup.provider.name: setup for setup in setups}
        if len(self._providers) != len(setups):
            raise ValueError("two payment providers share a name")
        self._default_provider = setups[0].provider.name
        self._store = store
        self._supplier = supplier
        self._vault = vault
        self._mailer = mailer
        self._clock = clock
        self._config = config
        self._new_id = new_id
        self._random = random
        self._observer: Observer = observer or _NullObserver()

    @property
    def config(self) -> CheckoutConfig:
        return self._config

    # --- catalogue ------------------------------------------------------------------------

    def list_products(self) -> list[ProductView]:
        with self._store.transaction() as tx:
            return [
                ProductView(product=p, available=self._available(tx, p)) for p in tx.list_products()
            ]

    @staticmethod
    def _available(tx: StoreTx, product: Product) -> bool:
        return product.source is ProductSource.KINGUIN or tx.pool_size(product.id) > 0

    def save_product(self, product: Product) -> None:
        with self._store.transaction() as tx:
            tx.upsert_product(product)

    def add_pool_keys(self, product_id: str, keys: Sequence[str], *, actor: str = "admin") -> int:
        """Put shop-owned keys in the vault and add them to the product's pool."""
        cleaned = [k.strip() for k in keys]
        if not cleaned or any(not k or len(k) > MAX_KEY_LENGTH for k in cleaned):
            raise InvalidInput("keys must be a non-empty list of non-empty strings")
        with self._store.transaction() as tx:
            product = tx.get_product(product_id)
        if product is None:
            raise NotFound(f"no product {product_id!r}")
        if product.source is not ProductSource.CUSTOM:
            raise InvalidInput("only custom products have a key pool", code="not_custom")
        refs = []
        for key in dict.fromkeys(cleaned):  # the same key twice in one upload counts once
            # Named after the key itself (keyed, so the name reveals nothing): uploading
            # a key again, after a timeout say, finds it in the pool instead of selling it
            # twice.
            digest = hmac.new(
                self._config.signing_key, f"pool-key:{product_id}\n{key}".encode(), "sha256"
            ).hexdigest()
            ref = f"pool/{product_id}/{digest[:32]}"
            self._vault.put(ref, key.encode(), "text/plain")
            refs.append(ref)
        with self._store.transaction() as tx:
            added = tx.add_pool_keys(product_id, refs)
            tx.add_audit(
                AuditEntry(
                    order_id=None,
                    at=self._clock.now(),
                    action="pool_keys_added",
                    detail=f"{added} keys for {product_id}",
                    actor=actor,
                )
            )
        return added

    # --- orders ---------------------------------------------------------------------------

    def create_order(
        self,
        *,
        email: str,
        items: Sequence[tuple[str, int]],
        idempotency_key: str | None = None,
    ) -> CreatedOrder:
        email = _check_email(email)
        lines = _check_lines(items)
        if idempotency_key is not None and not (
            0 < len(idempotency_key) <= idempotency.MAX_KEY_LENGTH and idempotency_key.isprintable()
        ):
            raise InvalidInput("Idempotency-Key must be 1-255 printable characters")
        now = self._clock.now()
        scope = idempotency.scope(email, idempotency_key) if idempotency_key else None
        fingerprint = idempotency.fingerprint(
            {"email": email.casefold(), "items": [[p, q] for p, q in lines]}
        )
        with self._store.transaction() as tx:
            if scope is not None:
                replay = self._idempotent_replay(tx, scope, fingerprint, now)
                if replay is not None:
                    return replay
            order = self._new_order(tx, email, lines, now)
            tx.insert_order(order)
            if scope is not None and not tx.insert_idempotency(
                IdempotencyRecord(
                    scope=scope, fingerprint=fingerprint, order_id=order.id, created_at=now
                )
            ):  # pragma: no cover - transactions are serialised; this rolls back if not
                raise ConcurrentUpdate("the Idempotency-Key was taken concurrently")
            self._audit(tx, order.id, "order_created", f"{len(order.items)} items, {order.total}")
        self._observer.observe("order_created", order_id=order.id)
        return CreatedOrder(order=order, access_token=self._access_token(order.id), replayed=False)

    def _idempotent_replay(
        self, tx: StoreTx, scope: str, fingerprint: str, now: datetime
    ) -> CreatedOrder | None:
        existing = tx.get_idempotency(scope)
        decision = idempotency.decide(
            existing,
            request_fingerprint=fingerprint,
            now=now,
            retention=self._config.idempotency_retention,
        )
        if decision.decision is idempotency.Decision.CONFLICT:
            raise IdempotencyConflict(
                "this Idempotency-Key was used with a different request", order_id=decision.order_id
            )
        if decision.decision is idempotency.Decision.REPLAY and decision.order_id is not None:
            order = self._order(tx, decision.order_id)
            return CreatedOrder(
                order=order, access_token=self._access_token(order.id), replayed=True
            )
        if existing is not None:
            tx.delete_idempotency_before(now - self._config.idempotency_retention)
        return None

    def _new_order(
        self, tx: StoreTx, email: str, lines: list[tuple[str, int]], now: datetime
    ) -> Order:
        items = []
        currencies = set()
        for product_id, quantity in lines:
            product = tx.get_product(product_id)
            if product is None:
                raise NotFound(f"no product {product_id!r}", code="unknown_product")
            currencies.add(product.currency)
            items.append(
                OrderItem(
                    id=self._new_id(),
                    product_id=product.id,
                    name=product.name,
                    quantity=quantity,
                    unit_price=product.price,
                    source=product.source,
                    supplier_ref=product.supplier_ref,
                )
            )
        if len(currencies) != 1:
            raise InvalidInput("all products in an order must share one currency")
        order_id = self._new_id()
        return Order(
            id=order_id,
            email=email,
            currency=currencies.pop(),
            items=tuple(items),
            created_at=now,
            updated_at=now,
            access_token_hash=tokens.hash_access_token(self._access_token(order_id)),
        )

    def _access_token(self, order_id: str) -> str:
        return tokens.order_access_token(secret=self._config.signing_key, order_id=order_id)

    def get_order(self, order_id: str, access_token: str | None) -> OrderView:
        with self._store.transaction() as tx:
            order = self._authorised_order(tx, order_id, access_token)
            payment = self._payment_of(tx, order)
        return OrderView(order=order, payment=payment)

    @staticmethod
    def _authorised_order(tx: StoreTx, order_id: str, access_token: str | None) -> Order:
        order = tx.get_order(order_id)
        # An unknown order and a wrong token look the same: ids are not enumerable.
        if order is None or not tokens.access_token_matches(access_token, order.access_token_hash):
            raise NotFound(f"no order {order_id!r} for this token")
        return order

    # --- payment --------------------------------------------------------------------------

    @property
    def provider_names(self) -> tuple[str, ...]:
        """The configured payment providers, the default first."""
        return tuple(self._providers)

    def open_payment(
        self, order_id: str, access_token: str | None, provider: str | None = None
    ) -> OpenedPaymentResult:
        """Open the order's payment with ``provider`` (default: the first configured).

        Asking again returns the payment already opened, whichever provider holds it.
        """
        setup = self._providers.get(provider or self._default_provider)
        if setup is None:
            raise InvalidInput(f"no payment provider {provider!r}", code="unknown_provider")
        with self._store.transaction() as tx:
            order = self._authorised_order(tx, order_id, access_token)
            existing = self._payment_of(tx, order)
            if existing is not None:
                return OpenedPaymentResult(payment=existing, created=False)
        if order.status is not OrderStatus.CREATED:
            raise InvalidState(f"an order in status {order.status} cannot open a payment")
        name = setup.provider.name
        opened = setup.gateway.create_payment(
            order_id=order.id,
            price_amount=str(order.total),
            price_currency=order.currency,
            pay_currency=self._config.pay_currency,
            ipn_callback_url=f"{self._config.public_url.rstrip('/')}/webhooks/{name}",
            description=f"{self._config.shop_name} order {order.id}",
        )
        now = self._clock.now()
        payment = Payment(
            id=opened.payment_id,
            order_id=order.id,
            status=PaymentStatus.WAITING,
            provider_status=opened.provider_status,
            provider=name,
            price_amount=opened.price_amount,
            price_currency=opened.price_currency.lower(),
            pay_amount=opened.pay_amount,
            pay_currency=opened.pay_currency.lower(),
            pay_address=opened.pay_address,
            valid_until=opened.valid_until,
            created_at=now,
            updated_at=now,
        )
        with self._store.transaction() as tx:
            current = self._order(tx, order.id)
            existing = self._payment_of(tx, current)
            if existing is not None:
                # Another request opened one meanwhile; keep that one, bound to the order.
                return OpenedPaymentResult(payment=existing, created=False)
            transition = chart.apply(current.status, current.flags, OrderEvent.PAYMENT_OPENED)
            if not transition.applied:
                raise InvalidState(f"an order in status {current.status} cannot open a payment")
            tx.insert_payment(payment)
            tx.update_order(
                replace(current, status=transition.status, payment_id=payment.id, updated_at=now)
            )
            self._audit(tx, order.id, "payment_opened", f"payment {payment.id}")
        self._observer.observe("payment_opened", order_id=order.id, payment_id=payment.id)
        return OpenedPaymentResult(payment=payment, created=True)

    # --- IPN ------------------------------------------------------------------------------

    def handle_ipn(self, raw_body: bytes, headers: Mapping[str, str]) -> IpnResult:
        """A NOWPayments IPN: ``handle_webhook("nowpayments", ...)``."""
        return self.handle_webhook("nowpayments", raw_body, headers)

    def handle_webhook(
        self, provider: str, raw_body: bytes, headers: Mapping[str, str]
    ) -> IpnResult:
        """Verify, parse, bind, dedupe and apply one webhook. Always logged; never raises."""
        now = self._clock.now()
        body_hash = _sha256(raw_body)
        setup = self._providers.get(provider)
        if setup is None:
            reason = f"no payment provider {provider[:40]!r}"
            return self._reject(
                now, body_hash, signature_valid=False, code="unknown_provider", reason=reason
            )
        try:
            notice = setup.provider.read_webhook(raw_body, headers)
        except BadSignature as exc:
            return self._reject(
                now, body_hash, signature_valid=False, code=exc.code, reason=exc.message
            )
        except MalformedWebhook as exc:
            return self._reject(
                now, body_hash, signature_valid=True, code=exc.code, reason=exc.message
            )
        update = notice.update
        if update is None:
            # The webhook only says that something happened: ask the provider what.
            try:
                update = setup.gateway.get_payment(notice.payment_id)
            except BitlootError as exc:
                self._observer.observe(
                    "reread_failed", payment_id=notice.payment_id, error=exc.code
                )
                reason = f"could not re-read payment {notice.payment_id}: {exc.message}"
                return self._reject(
                    now, body_hash, signature_valid=True, code=exc.code, reason=reason
                )
        return self._apply_update(
            update, dedupe=notice.dedupe_key, body_hash=body_hash, now=now, source="ipn"
        )

    def _reject(
        self,
        now: datetime,
        body_hash: str,
        *,
        signature_valid: bool,
        code: str,
        reason: str,
    ) -> IpnResult:
        with self._store.transaction() as tx:
            tx.log_webhook(
                WebhookLogEntry(
                    received_at=now,
                    body_sha256=body_hash,
                    signature_valid=signature_valid,
                    outcome=WebhookOutcome.REJECTED,
                    reason=reason,
                )
            )
        self._observer.observe("ipn", outcome="rejected", reason=code)
        return IpnResult(outcome=WebhookOutcome.REJECTED, reason=reason, code=code)

    def _apply_update(
        self, update: PaymentUpdate, *, dedupe: str, body_hash: str, now: datetime, source: str
    ) -> IpnResult:
        for _ in range(_CAS_RETRIES):
            try:
                return self._apply_update_once(
                    update, dedupe=dedupe, body_hash=body_hash, now=now, source=source
                )
            except ConcurrentUpdate:
                continue
        raise ConcurrentUpdate("the order kept changing under this IPN")  # pragma: no cover

    def _apply_update_once(
        self, event: PaymentUpdate, *, dedupe: str, body_hash: str, now: datetime, source: str
    ) -> IpnResult:
        with self._store.transaction() as tx:
            order, payment, problem = self._bound_order(tx, event)
            if problem is not None or order is None or payment is None:
                # Logged under the order whose payment it names, so its admin view shows it.
                subject = payment.order_id if payment is not None else None
                self._audit(tx, subject, "ipn_refused", f"payment {event.payment_id}: {problem}")
                result = IpnResult(
                    outcome=WebhookOutcome.REJECTED,
                    reason=f"IPN is not bound to an order of ours: {problem}",
                    code="unbound_webhook",
                    order_id=subject,
                )
            elif not tx.claim_ipn(dedupe, now):
                result = IpnResult(
                    outcome=WebhookOutcome.DUPLICATE,
                    reason="duplicate IPN: acknowledged, not applied",
                    order_id=order.id,
                )
            else:
                result = self._decide_and_store(tx, event, order, payment, now=now)
            tx.log_webhook(
                WebhookLogEntry(
                    received_at=now,
                    body_sha256=body_hash,
                    signature_valid=True,
                    outcome=result.outcome,
                    reason=f"{source}: {result.reason}",
                    payment_id=event.payment_id,
                    order_id=result.order_id,
                    provider_status=event.provider_status,
                    dedupe_key=dedupe,
                )
            )
        self._observer.observe(
            "ipn", outcome=str(result.outcome), reason=result.code, order_id=result.order_id
        )
        return result

    @staticmethod
    def _bound_order(
        tx: StoreTx, event: PaymentUpdate
    ) -> tuple[Order | None, Payment | None, str | None]:
        """The order and payment this IPN is about, and why it is not bound (None: bound)."""
        payment = tx.get_payment(event.payment_id)
        if payment is None and event.parent_payment_id is not None:
            payment = tx.get_payment(event.parent_payment_id)
        if payment is None:
            return None, None, "no payment of ours has this payment_id"
        order = tx.get_order(payment.order_id)
        if order is None:  # pragma: no cover - payments are only stored with their order
            return None, payment, "the payment's order is missing"
        return order, payment, binding_problem(event, order=order, payment=payment)

    def _decide_and_store(
        self, tx: StoreTx, event: PaymentUpdate, order: Order, payment: Payment, *, now: datetime
    ) -> IpnResult:
        decision = decide_payment(
            order,
            payment,
            event,
            tolerance_percent=self._config.underpay_tolerance_percent,
            now=now,
        )
        outcome = WebhookOutcome.APPLIED if decision.applied else WebhookOutcome.IGNORED
        if decision.applied:
            tx.update_payment(decision.payment)
            if decision.order is not order:
                tx.update_order(decision.order)
            self._enqueue(tx, order.id, decision.effects, now)
        self._audit(tx, order.id, f"ipn_{outcome}", decision.reason)
        return IpnResult(outcome=outcome, reason=decision.reason, order_id=order.id)

    def reconcile(self) -> list[IpnResult]:
        """Ask the provider about open payments whose IPNs stopped, and apply the answers."""
        cutoff = self._clock.now() - self._config.reconcile_after
        with self._store.transaction() as tx:
            stale = [
                payment
                for o in tx.list_orders(
                    statuses=frozenset({OrderStatus.WAITING, OrderStatus.CONFIRMING}), limit=500
                )
                if o.updated_at <= cutoff and (payment := self._payment_of(tx, o)) is not None
            ]
        answers = (self._ask_provider(payment, source="reconcile") for payment in stale)
        return [result for result in answers if result is not None]

    def _ask_provider(self, payment: Payment, *, source: str) -> IpnResult | None:
        """The provider's current word on a payment, applied like an IPN (None: no answer)."""
        setup = self._providers.get(payment.provider)
        try:
            if setup is None:
                raise InvalidState(f"payment provider {payment.provider!r} is not configured")
            update = setup.gateway.get_payment(payment.id)
        except BitlootError as exc:
            self._observer.observe(f"{source}_failed", payment_id=payment.id, error=exc.code)
            return None
        # Each answer at its own time: a pass over many payments takes a while.
        now = self._clock.now()
        return self._apply_update(
            update,
            dedupe=update.dedupe_key,
            body_hash=_sha256(update.dedupe_key.encode()),
            now=now,
            source=source,
        )

    # --- the outbox -----------------------------------------------------------------------

    def _enqueue(
        self, tx: StoreTx, order_id: str, effects: Sequence[Effect], now: datetime
    ) -> None:
        for effect in effects:
            kind = chart.JOB_FOR_EFFECT[effect]
            key = f"{kind}:{order_id}"
            job = Job(
                key=key,
                kind=kind,
                order_id=order_id,
                state=JobState.PENDING,
                attempts=0,
                run_at=now,
                created_at=now,
            )
            if not tx.enqueue_job(job):
                existing = tx.get_job(key)
                if existing is not None and existing.state is JobState.DEAD:
                    # A new start: the wait for keys is measured from here too.
                    tx.update_job(
                        replace(
                            existing,
                            state=JobState.PENDING,
                            attempts=0,
                            run_at=now,
                            created_at=now,
                        )
                    )

    def run_due_jobs(self, *, limit: int = 20, worker: str = "worker") -> list[JobRun]:
        """Run up to ``limit`` due jobs, one at a time. Safe to call from many workers.

        Each job is leased just before it runs (a lease taken for a whole batch would run
        out while the batch's first jobs run, and another worker would take the rest).
        """
        runs: list[JobRun] = []
        ran: set[str] = set()  # a job retried at once waits for the next pass
        for _ in range(limit):
            lease = self._lease_next(skip=ran)
            if lease is None:
                break
            ran.add(lease.job.key)
            runs.append(self._run_job(lease, worker))
        return runs

    def _lease_next(self, *, skip: set[str] | None = None) -> _Lease | None:
        now = self._clock.now()
        skip = skip or set()
        with self._store.transaction() as tx:
            for job in tx.due_jobs(now, len(skip) + 1):
                if job.key in skip:
                    continue
                running = replace(
                    job,
                    state=JobState.RUNNING,
                    attempts=job.attempts + 1,
                    lease_until=now + self._config.job_lease,
                )
                return _Lease(job=tx.update_job(running))
        return None

    def _renew(self, lease: _Lease) -> None:
        """Extend the lease before a step that talks to the outside world.

        If the lease was lost (it ran out and another worker took the job), stop here:
        the step must not run twice at once, above all not a purchase.
        """
        now = self._clock.now()
        with self._store.transaction() as tx:
            current = tx.get_job(lease.job.key)
            if current is None or current.version != lease.job.version:
                raise _LeaseLost
            lease.job = tx.update_job(replace(current, lease_until=now + self._config.job_lease))

    def _run_job(self, lease: _Lease, worker: str) -> JobRun:
        job = lease.job
        rule = chart.JOBS[job.kind]
        schedule: rules.RetrySchedule = getattr(self._config, rule.retries)
        self._observer.observe(
            "job_started", job=job.key, kind=str(job.kind), attempt=job.attempts, worker=worker
        )
        runners = {
            JobKind.FULFILL: self._fulfil,
            JobKind.COMPLETION_EMAIL: self._send_completion_email,
        }
        try:
            runners[job.kind](lease)
        except _LeaseLost:
            return JobRun(key=job.key, outcome="lost_lease")
        except BitlootError as exc:
            return self._job_failed(lease.job, exc, schedule)
        except Exception as exc:  # noqa: BLE001 - an adapter bug must not kill the worker
            failure = AdapterError(f"{type(exc).__name__} in {job.kind}")
            return self._job_failed(lease.job, failure, schedule)
        with self._store.transaction() as tx:
            current = tx.get_job(job.key)
            if current is None or current.version != lease.job.version:
                # The lease ran out and another worker owns the job now; its work was the
                # same (every step is safe to repeat), so there is nothing to undo.
                return JobRun(key=job.key, outcome="lost_lease")
            tx.update_job(replace(current, state=JobState.DONE, lease_until=None, last_error=None))
        self._observer.observe("job_done", job=job.key, attempt=job.attempts)
        return JobRun(key=job.key, outcome="done")

    def wake_fulfillment(self, order_id: str) -> bool:
        """Run the order's waiting fulfillment now (the supplier says its order moved).

        True when a pending fulfillment job was made due; anything else (no such order,
        fulfilled already, the job running) is left alone: waking is only a hint.
        """
        now = self._clock.now()
        with self._store.transaction() as tx:
            job = tx.get_job(f"{JobKind.FULFILL}:{order_id}")
            if job is None or job.state is not JobState.PENDING:
                return False
            if job.run_at > now:
                tx.update_job(replace(job, run_at=now))
            self._audit(tx, order_id, "fulfillment_woken", "the supplier's order moved")
        self._observer.observe("fulfillment_woken", order_id=order_id)
        return True

    def supplier_webhook(
        self, *, external_id: str, status: str, dedupe_key: str, body_sha256: str
    ) -> str | None:
        """A verified supplier webhook saying its order ``external_id`` moved to ``status``.

        Only a hint: fulfillment asks the supplier itself, so an old webhook arriving after
        a newer one changes nothing. Deduplicated on ``dedupe_key``; the first delivery
        wakes the order's waiting fulfillment. Logged as ``applied`` when it woke one,
        ``ignored`` when there was nothing to wake (or the order is none of ours),
        ``duplicate`` when seen before. Returns our order id (None: not ours).
        ``external_id`` is our order id, or ``ORDER-PRODUCT`` for a supplier order holding
        one product on its own.
        """
        now = self._clock.now()
        with self._store.transaction() as tx:
            head = external_id.rpartition("-")[0]
            candidates = (external_id, head) if head else (external_id,)
            order = next((o for c in candidates if (o := tx.get_order(c)) is not None), None)
            order_id = order.id if order is not None else None
            first = order is not None and tx.claim_ipn(f"supplier:{dedupe_key}", now)
        outcome = WebhookOutcome.IGNORED
        if order_id is not None and not first:
            outcome = WebhookOutcome.DUPLICATE
        elif order_id is not None and self.wake_fulfillment(order_id):
            outcome = WebhookOutcome.APPLIED
        with self._store.transaction() as tx:
            tx.log_webhook(
                WebhookLogEntry(
                    received_at=now,
                    body_sha256=body_sha256,
                    signature_valid=True,
                    outcome=outcome,
                    reason=f"supplier order {external_id} is {status}",
                    order_id=order_id,
                    provider_status=status,
                    dedupe_key=f"supplier:{dedupe_key}",
                )
            )
        self._observer.observe("supplier_webhook", outcome=str(outcome), order_id=order_id)
        return order_id

    def _keys_pending(self, job: Job, exc: KeysPending) -> JobRun | None:
        """Keep waiting for a supplier's keys without using up an attempt (None: too long)."""
        now = self._clock.now()
        limit = self._config.preorder_wait_limit if exc.preorder else self._config.key_wait_limit
        if now - job.created_at >= limit:
            return None
        error = f"{exc.code}: {exc.message}"
        with self._store.transaction() as tx:
            current = tx.get_job(job.key)
            if current is None or current.version != job.version:
                return JobRun(key=job.key, outcome="lost_lease", error=error)
            first = not (current.last_error or "").startswith(f"{exc.code}:")
            tx.update_job(
                replace(
                    current,
                    state=JobState.PENDING,
                    attempts=current.attempts - 1,  # waiting is not a failed attempt
                    run_at=now + self._config.key_poll_interval,
                    lease_until=None,
                    last_error=error,
                )
            )
            if first:  # once per wait, not once per poll
                self._audit(tx, job.order_id, "keys_pending", error)
        self._observer.observe("keys_pending", job=job.key, preorder=exc.preorder)
        return JobRun(key=job.key, outcome="waiting", error=error)

    def _job_failed(self, job: Job, exc: BitlootError, schedule: rules.RetrySchedule) -> JobRun:
        if isinstance(exc, KeysPending) and job.kind is JobKind.FULFILL:
            waiting = self._keys_pending(job, exc)
            if waiting is not None:
                return waiting
        now = self._clock.now()
        error = f"{exc.code}: {exc.message}"
        delay = schedule.delay_after(job.attempts, random_value=self._random())
        if not exc.retryable:
            delay = None
        with self._store.transaction() as tx:
            current = tx.get_job(job.key)
            if current is None or current.version != job.version:
                return JobRun(key=job.key, outcome="lost_lease", error=error)
            if delay is not None:
                tx.update_job(
                    replace(
                        current,
                        state=JobState.PENDING,
                        run_at=now + delay,
                        lease_until=None,
                        last_error=error,
                    )
                )
                outcome = "retry"
            else:
                tx.update_job(
                    replace(current, state=JobState.DEAD, lease_until=None, last_error=error)
                )
                self._transition(tx, job.order_id, chart.JOBS[job.kind].exhausted, now)
                outcome = "dead"
            self._audit(
                tx, job.order_id, f"job_{outcome}", f"{job.key} attempt {job.attempts}: {error}"
            )
        self._observer.observe(
            "job_failed",
            job=job.key,
            kind=str(job.kind),
            attempt=job.attempts,
            outcome=outcome,
            error=exc.code,
        )
        return JobRun(key=job.key, outcome=outcome, error=error)

    def _transition(self, tx: StoreTx, order_id: str, event: OrderEvent, now: datetime) -> Order:
        order = self._order(tx, order_id)
        transition = chart.apply(order.status, order.flags, event)
        if not transition.applied:  # pragma: no cover - callers check the status in this tx
            self._audit(tx, order_id, "event_ignored", f"{event} on {order.status}")
            return order
        updated = tx.update_order(
            replace(order, status=transition.status, flags=transition.flags, updated_at=now)
        )
        self._enqueue(tx, order_id, transition.effects, now)
        self._audit(tx, order_id, str(event), transition.reason)
        return updated

    # --- fulfillment ----------------------------------------------------------------------

    def _fulfil(self, lease: _Lease) -> None:
        order_id = lease.job.order_id
        with self._store.transaction() as tx:
            order = self._order(tx, order_id)
        if order.status is not OrderStatus.PAID:
            return  # fulfilled already (a job run again after a crash): nothing to do
        delivered = {item.id: item.keys for item in order.items if item.delivered}
        kinguin = [i for i in order.items if i.source is ProductSource.KINGUIN and not i.delivered]
        if kinguin:
            self._renew(lease)  # a purchase must never run on two workers at once
            delivered.update(self._fulfil_from_supplier(order, kinguin))
        for item in order.items:
            if item.source is ProductSource.CUSTOM and not item.delivered:
                delivered[item.id] = self._claim_from_pool(order, item)
        now = self._clock.now()
        with self._store.transaction() as tx:
            current = self._order(tx, order_id)
            if current.status is not OrderStatus.PAID:
                return  # another worker, which took over the job, fulfilled it meanwhile
            items = tuple(replace(i, keys=delivered.get(i.id, i.keys)) for i in current.items)
            tx.update_order(replace(current, items=items, updated_at=now))
            self._transition(tx, order_id, OrderEvent.FULFILLMENT_DONE, now)
        self._observer.observe("order_fulfilled", order_id=order_id)

    def _fulfil_from_supplier(
        self, order: Order, items: Sequence[OrderItem]
    ) -> dict[str, tuple[DeliveredKey, ...]]:
        wanted: dict[str, int] = {}
        for item in items:
            ref = item.supplier_ref or item.product_id
            wanted[ref] = wanted.get(ref, 0) + item.quantity
        keys = self._supplier.fulfil(order_id=order.id, lines=sorted(wanted.items()))
        by_product: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            by_product.setdefault(key.product_ref, []).append(index)
        result: dict[str, tuple[DeliveredKey, ...]] = {}
        for item in items:
            ref = item.supplier_ref or item.product_id
            indexes = by_product.get(ref, [])
            if len(indexes) < item.quantity:
                raise SupplierError(
                    f"supplier returned {len(indexes)} keys for {ref}, {item.quantity} ordered",
                    kind="MissingKeys",
                )
            taken, by_product[ref] = indexes[: item.quantity], indexes[item.quantity :]
            stored = []
            for n, index in enumerate(taken):
                vault_ref = f"orders/{order.id}/{item.id}/{n}"
                self._vault.put(vault_ref, keys[index].secret, keys[index].content_type)
                stored.append(DeliveredKey(ref=vault_ref, content_type=keys[index].content_type))
            result[item.id] = tuple(stored)
        return result

    def _claim_from_pool(self, order: Order, item: OrderItem) -> tuple[DeliveredKey, ...]:
        refs = []
        with self._store.transaction() as tx:
            for n in range(item.quantity):
                ref = tx.claim_pool_key(item.product_id, f"{order.id}/{item.id}/{n}")
                if ref is None:
                    raise PoolEmpty(f"the key pool of {item.product_id!r} is empty")
                refs.append(ref)
        return tuple(DeliveredKey(ref=ref) for ref in refs)

    # --- email ----------------------------------------------------------------------------

    def _send_completion_email(self, lease: _Lease) -> None:
        order_id = lease.job.order_id
        now = self._clock.now()
        with self._store.transaction() as tx:
            order = self._order(tx, order_id)
            record = tx.get_email(order_id, COMPLETION_EMAIL)
            if record is None:
                record = EmailRecord(
                    order_id=order_id,
                    kind=COMPLETION_EMAIL,
                    message_id=self._message_id(order_id),
                    to=order.email,
                    created_at=now,
                )
                tx.insert_email(record)
        if record.sent_at is not None:
            return
        self._renew(lease)
        self._mailer.send(self._completion_message(order, record.message_id))
        with self._store.transaction() as tx:
            tx.mark_email_sent(order_id, COMPLETION_EMAIL, self._clock.now())
            self._audit(tx, order_id, "email_sent", f"{COMPLETION_EMAIL} to the customer")
        self._observer.observe("email_sent", order_id=order_id, kind=COMPLETION_EMAIL)

    def _message_id(self, order_id: str) -> str:
        domain = self._config.public_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
        return f"<order-{order_id}-{COMPLETION_EMAIL}@{domain or 'bitloot.invalid'}>"

    def order_page_url(self, order_id: str) -> str:
        token = self._access_token(order_id)
        return f"{self._config.public_url.rstrip('/')}/order/{order_id}?token={token}"

    def _completion_message(self, order: Order, message_id: str) -> OutgoingEmail:
        link = self.order_page_url(order.id)
        lines = [f"- {i.name} x{i.quantity}: View keys {link}#item-{i.id}" for i in order.items]
        text = "\n".join(
            [
                "Thank you for your order.",
                "",
                f"Order {order.id}, total {order.total} {order.currency.upper()}:",
                *lines,
                "",
                f"View keys: {link}",
            ]
        )
        rows = "".join(
            f"<li>{_html(i.name)} &times;{i.quantity}: "
            f'<a href="{_html(link)}#item-{_html(i.id)}">View keys</a></li>'
            for i in order.items
        )
        html = (
            f"<p>Thank you for your order.</p><p>Order {_html(order.id)}, total "
            f"{order.total} {_html(order.currency.upper())}:</p><ul>{rows}</ul>"
            f'<p><a href="{_html(link)}">View keys</a></p>'
        )
        return OutgoingEmail(
            message_id=message_id,
            to=order.email,
            subject=f"Your {self._config.shop_name} keys (order {order.id})",
            text=text,
            html=html,
        )

    # --- reveal ---------------------------------------------------------------------------

    def reveal(self, order_id: str, item_id: str, access_token: str | None) -> RevealedKey:
        """A fresh signed URL for each key of a delivered item; every call is recorded."""
        now = self._clock.now()
        with self._store.transaction() as tx:
            order = self._authorised_order(tx, order_id, access_token)
            item = order.item(item_id)
            if item is None:
                raise NotFound(f"no item {item_id!r} in this order")
            if not item.delivered:
                raise InvalidState("this item has not been delivered yet", code="not_delivered")
            # Whole seconds: the signed URL carries its expiry in seconds.
            expires_at = (now + self._config.key_url_ttl).replace(microsecond=0)
            urls = tuple(
                self._vault.url_for(k.ref, expires_at, now, nonce=self._new_id()) for k in item.keys
            )
            tx.record_reveal(
                Reveal(order_id=order_id, item_id=item_id, at=now, expires_at=expires_at)
            )
            self._audit(tx, order_id, "key_revealed", f"item {item_id}")
        return RevealedKey(url=urls[0], urls=urls, expires_at=expires_at)

    def check_key_token(self, token: str) -> str:
        """The vault ref a key-URL token grants, or ``KeyUrlRejected``."""
        check = tokens.verify_key_token(
            secret=self._config.signing_key, token=token, now=self._clock.now()
        )
        if check.problem is not None or check.ref is None:
            raise KeyUrlRejected(str(check.problem or tokens.TokenProblem.INVALID))
        return check.ref

    # --- sweeper and admin ----------------------------------------------------------------

    def sweep(self) -> list[str]:
        """Expire abandoned orders (created/waiting older than the TTL); their payments fail.

        An order with a payment is expired only after the provider confirmed that nothing
        arrived: its answer is applied first, like an IPN, and an order it moved on (money
        on its way) is no longer abandoned. Without an answer, the order waits for the
        next sweep.
        """
        cutoff = self._clock.now() - self._config.order_ttl
        with self._store.transaction() as tx:
            candidates = [
                (order, self._payment_of(tx, order))
                for order in tx.list_orders(
                    statuses=rules.SWEEPABLE, created_before=cutoff, limit=1000
                )
            ]
        confirmed = {
            order.id
            for order, payment in candidates
            if payment is None or self._ask_provider(payment, source="sweep") is not None
        }
        now = self._clock.now()
        expired = []
        with self._store.transaction() as tx:
            # Read again: the provider's answers may have moved some orders on.
            for order in tx.list_orders(
                statuses=rules.SWEEPABLE, created_before=cutoff, limit=1000
            ):
                if order.id not in confirmed:
                    continue
                self._transition(tx, order.id, OrderEvent.SWEEP_EXPIRED, now)
                payment = self._payment_of(tx, order)
                if payment is not None:
                    # The provider confirmed no money arrived: the record follows its table.
                    event = OrderEvent.SWEEP_EXPIRED
                    status = chart.payment_status(
                        payment.status, event, chart.apply(order.status, order.flags, event)
                    )
                    tx.update_payment(replace(payment, status=status, updated_at=now))
                expired.append(order.id)
        if expired:
            self._observer.observe("swept", count=len(expired))
        return expired

    def admin_order(self, order_id: str) -> AdminOrderView:
        with self._store.transaction() as tx:
            order = self._order(tx, order_id)
            return AdminOrderView(
                order=order,
                payments=tx.list_payments(order_id=order_id),
                audit=tx.list_audit(order_id),
                webhooks=tx.list_webhooks(order_id),
                jobs=tx.list_jobs(order_id=order_id),
                reveals=tx.list_reveals(order_id),
            )

    def list_orders(
        self, *, status: OrderStatus | None = None, flag: Flag | None = None, limit: int = 100
    ) -> list[Order]:
        with self._store.transaction() as tx:
            return tx.list_orders(status=status, flag=flag, limit=limit)

    def list_jobs(self, *, state: JobState | None = None) -> list[Job]:
        with self._store.transaction() as tx:
            return tx.list_jobs(state=state)

    def retry_fulfillment(self, order_id: str, *, actor: str = "admin") -> Order:
        """Re-enqueue fulfillment of a paid order whose retries ran out."""
        now = self._clock.now()
        with self._store.transaction() as tx:
            order = self._order(tx, order_id)
            if order.status is not OrderStatus.PAID:
                raise InvalidState(f"only a paid order can be retried, this one is {order.status}")
            self._audit(tx, order_id, "admin_retry_fulfillment", "re-enqueued", actor=actor)
            return self._transition(tx, order_id, OrderEvent.ADMIN_RETRY_FULFILLMENT, now)

    def resend_email(self, order_id: str, *, actor: str = "admin") -> Order:
        """Re-enqueue the completion email of a fulfilled order whose email job died."""
        now = self._clock.now()
        with self._store.transaction() as tx:
            order = self._order(tx, order_id)
            if not chart.apply(order.status, order.flags, OrderEvent.ADMIN_RESEND_EMAIL).applied:
                msg = "only a fulfilled order whose completion email failed can be resent"
                raise InvalidState(msg)
            self._audit(tx, order_id, "admin_resend_email", "re-enqueued", actor=actor)
            return self._transition(tx, order_id, OrderEvent.ADMIN_RESEND_EMAIL, now)

    def resolve(self, order_id: str, *, action: str, note: str, actor: str = "admin") -> Order:
        """Admin decision on a held order: ``fulfill`` or ``refund``."""
        events = {"fulfill": OrderEvent.ADMIN_FULFILL, "refund": OrderEvent.ADMIN_REFUND}
        if action not in events:
            raise InvalidInput("action must be 'fulfill' or 'refund'", code="invalid_action")
        if not isinstance(note, str) or len(note) > MAX_NOTE_LENGTH:
            raise InvalidInput(f"note must be a string of at most {MAX_NOTE_LENGTH} characters")
        now = self._clock.now()
        with self._store.transaction() as tx:
            order = self._order(tx, order_id)
            # Only a held order (underpaid, or paid late): the chart's guards say which.
            if not chart.apply(order.status, order.flags, events[action]).applied:
                msg = f"only underpaid or paid-late orders can be resolved, not {order.status}"
                raise InvalidState(msg)
            self._audit(tx, order_id, f"admin_{action}", note or "-", actor=actor)
            return self._transition(tx, order_id, events[action], now)

    @staticmethod
    def _payment_of(tx: StoreTx, order: Order) -> Payment | None:
        """The payment bound to ``order`` (stored with it, so never missing once bound)."""
        return tx.get_payment(order.payment_id) if order.payment_id is not None else None

    @staticmethod
    def _order(tx: StoreTx, order_id: str) -> Order:
        order = tx.get_order(order_id)
        if order is None:
            raise NotFound(f"no order {order_id!r}")
        return order

    def _audit(
        self, tx: StoreTx, order_id: str | None, action: str, detail: str, *, actor: str = "system"
    ) -> None:
        tx.add_audit(
            AuditEntry(
                order_id=order_id, at=self._clock.now(), action=action, detail=detail, actor=actor
            )
        )


def _check_email(email: object) -> str:
    if not isinstance(email, str):
        raise InvalidInput("email must be a string", code="invalid_email")
    email = email.strip()
    # Printable ASCII only: control characters break mail headers, and non-ASCII
    # addresses need SMTPUTF8, which many mail servers refuse.
    plain = email.isascii() and email.isprintable()
    if not plain or len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email):
        raise InvalidInput("email is not a valid address", code="invalid_email")
    return email


def _check_lines(items: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    if not items:
        raise InvalidInput("an order needs at least one item", code="invalid_items")
    if len(items) > MAX_ITEMS:
        raise InvalidInput(f"an order holds at most {MAX_ITEMS} items", code="invalid_items")
    merged: dict[str, int] = {}
    for product_id, quantity in items:
        if not isinstance(product_id, str) or not 0 < len(product_id) <= MAX_PRODUCT_ID_LENGTH:
            raise InvalidInput("product_id must be a non-empty string", code="invalid_items")
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise InvalidInput("quantity must be an integer", code="invalid_quantity")
        if not 1 <= quantity <= MAX_QUANTITY:
            raise InvalidInput(f"quantity must be 1 to {MAX_QUANTITY}", code="invalid_quantity")
        merged[product_id] = merged.get(product_id, 0) + quantity
        if merged[product_id] > MAX_QUANTITY:
            raise InvalidInput(f"quantity must be 1 to {MAX_QUANTITY}", code="invalid_quantity")
    return list(merged.items())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _html(text: str) -> str:
    return html.escape(text, quote=True)


__all__ = [
    "AdminOrderView",
    "Checkout",
    "CheckoutConfig",
    "CreatedOrder",
    "IpnResult",
    "JobRun",
    "OpenedPaymentResult",
    "OrderView",
    "ProductView",
    "ProviderSetup",
    "RevealedKey",
]
