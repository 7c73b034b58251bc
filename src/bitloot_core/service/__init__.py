"""The ``Checkout`` service: the one entry point a host application calls.

A thin facade: each method hands the call to the module of this package named by what
it does, with the shared ``Context`` (ports, configuration, clock):

    catalogue        products and shop-owned key pools
    ordering         orders, their access tokens, opening the payment
    payment_updates  provider webhooks and answers: verify, bind, dedupe, decide, store
    sweeping         expiring abandoned orders, reconciling quiet payments
    outbox           moving an order by the chart, with the jobs the move enqueues
    leases, jobs     the worker: leasing due jobs, running them, retries, giving up
    fulfillment      buying or claiming keys; waking a fulfillment that waits for keys
    emails           the one completion email
    reveal           signed, time-limited key URLs
    admin            looking into orders and jobs; audited decisions on held orders

It gathers inputs from the ports, asks the pure core what to do, and applies the answer
through the ports. It never touches a file, socket or clock itself: every such thing is
a port passed in. Each state change and the jobs it causes are written in one store
transaction (the outbox); work that talks to the outside world (supplier, vault, mailer)
runs outside any transaction, from those jobs, and is safe to repeat.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bitloot_core.chart import Flag, OrderStatus
from bitloot_core.ports import (
    Clock,
    KeySupplier,
    KeyVault,
    Mailer,
    Observer,
    PaymentGateway,
    Store,
)
from bitloot_core.providers.nowpayments import NowPayments
from bitloot_core.service import (
    admin,
    catalogue,
    emails,
    fulfillment,
    jobs,
    leases,
    ordering,
    payment_updates,
    reveal,
    sweeping,
    waiting,
)
from bitloot_core.service.context import (
    CheckoutConfig,
    CompletionEmail,
    CompletionFacts,
    Context,
    EmailContent,
    NullObserver,
    ProviderSetup,
)
from bitloot_core.service.results import (
    AdminOrderView,
    CreatedOrder,
    IpnResult,
    JobRun,
    KeysWait,
    OpenedPaymentResult,
    OrderView,
    ProductView,
    RevealedKey,
)
from bitloot_core.values import Job, JobState, Order, Payment, Product


def _shared(name: str) -> Any:
    """A port or setting of the ``Context``, reachable (and replaceable) on the facade.

    Tests swap a port on a running ``Checkout`` this way; every module sees the swap.
    """

    def get(self: Checkout) -> object:
        return getattr(self._ctx, name)

    def put(self: Checkout, value: object) -> None:
        setattr(self._ctx, name, value)

    return property(get, put)


class Checkout:
    """Create orders, open payments, apply IPNs, fulfill, email, reveal, sweep."""

    _store = _shared("store")
    _supplier = _shared("supplier")
    _vault = _shared("vault")
    _mailer = _shared("mailer")
    _clock = _shared("clock")
    _random = _shared("random")
    _observer = _shared("observer")
    _providers = _shared("providers")

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
            if config.ipn_secret is None:
                msg = "a gateway alone is NOWPayments', which needs config.ipn_secret"
                raise ValueError(msg)
            setups.insert(
                0,
                ProviderSetup(provider=NowPayments(ipn_secret=config.ipn_secret), gateway=gateway),
            )
        if not setups:
            raise ValueError("a Checkout needs a payment provider: pass gateway or providers")
        by_name = {setup.provider.name: setup for setup in setups}
        if len(by_name) != len(setups):
            raise ValueError("two payment providers share a name")
        self._ctx = Context(
            store=store,
            supplier=supplier,
            vault=vault,
            mailer=mailer,
            clock=clock,
            config=config,
            new_id=new_id,
            random=random,
            observer=observer or NullObserver(),
            providers=by_name,
            default_provider=setups[0].provider.name,
        )

    @property
    def config(self) -> CheckoutConfig:
        return self._ctx.config

    # --- catalogue ------------------------------------------------------------------------

    def list_products(self) -> list[ProductView]:
        return catalogue.list_products(self._ctx)

    def save_product(self, product: Product) -> None:
        catalogue.save_product(self._ctx, product)

    def save_products(self, products: Sequence[Product], *, actor: str = "admin") -> int:
        """The operator's catalogue change: every product or none, each audited."""
        return catalogue.save_products(self._ctx, products, actor=actor)

    def add_pool_keys(self, product_id: str, keys: Sequence[str], *, actor: str = "admin") -> int:
        """Put shop-owned keys in the vault and add them to the product's pool."""
        return catalogue.add_pool_keys(self._ctx, product_id, keys, actor=actor)

    # --- orders and payments --------------------------------------------------------------

    def create_order(
        self,
        *,
        email: str,
        items: Sequence[tuple[str, int]],
        idempotency_key: str | None = None,
    ) -> CreatedOrder:
        return ordering.create_order(
            self._ctx, email=email, items=items, idempotency_key=idempotency_key
        )

    def get_order(self, order_id: str, access_token: str | None) -> OrderView:
        return ordering.get_order(self._ctx, order_id, access_token)

    @property
    def provider_names(self) -> tuple[str, ...]:
        """The configured payment providers, the default first."""
        return tuple(self._ctx.providers)

    def open_payment(
        self, order_id: str, access_token: str | None, provider: str | None = None
    ) -> OpenedPaymentResult:
        """Open the order's payment with ``provider`` (default: the first configured).

        Asking again returns the payment already opened, whichever provider holds it.
        """
        return ordering.open_payment(self._ctx, order_id, access_token, provider)

    # --- payment updates ------------------------------------------------------------------

    def handle_ipn(self, raw_body: bytes, headers: Mapping[str, str]) -> IpnResult:
        """A NOWPayments IPN: ``handle_webhook("nowpayments", ...)``."""
        return self.handle_webhook("nowpayments", raw_body, headers)

    def handle_webhook(
        self, provider: str, raw_body: bytes, headers: Mapping[str, str]
    ) -> IpnResult:
        """Verify, parse, bind, dedupe and apply one webhook. Always logged; never raises."""
        return payment_updates.handle_webhook(self._ctx, provider, raw_body, headers)

    def webhook_signed(self, provider: str, raw_body: bytes, headers: Mapping[str, str]) -> bool:
        """Whether a webhook is correctly signed by ``provider``; checks only, logs nothing."""
        return payment_updates.webhook_signed(self._ctx, provider, raw_body, headers)

    def reconcile(self) -> list[IpnResult]:
        """Ask the provider about open payments whose IPNs stopped, and apply the answers."""
        return sweeping.reconcile(self._ctx)

    def sweep(self) -> list[str]:
        """Expire abandoned orders (created/waiting older than the TTL); their payments fail.

        An order with a payment is expired only after the provider confirmed that nothing
        arrived (see ``sweeping.sweep``).
        """
        return sweeping.sweep(self._ctx)

    # --- jobs and fulfillment -------------------------------------------------------------

    def run_due_jobs(self, *, limit: int = 20, worker: str = "worker") -> list[JobRun]:
        """Run up to ``limit`` due jobs, one at a time. Safe to call from many workers."""
        return jobs.run_due_jobs(self._ctx, limit=limit, worker=worker)

    def _lease_next(self) -> leases.Lease | None:
        return leases.lease_next(self._ctx)

    def _run_job(self, lease: leases.Lease, worker: str) -> JobRun:
        return jobs.run_job(self._ctx, lease, worker)

    def wake_fulfillment(self, order_id: str) -> bool:
        """Run the order's waiting fulfillment now (the supplier says its order moved)."""
        return fulfillment.wake_fulfillment(self._ctx, order_id)

    def supplier_webhook(
        self, *, external_id: str, status: str, dedupe_key: str, body_sha256: str
    ) -> str | None:
        """A verified supplier webhook: wakes the order's waiting fulfillment (only a
        hint); logged and deduplicated. Returns our order id (None: not ours)."""
        return fulfillment.supplier_webhook(
            self._ctx,
            external_id=external_id,
            status=status,
            dedupe_key=dedupe_key,
            body_sha256=body_sha256,
        )

    def order_page_url(self, order_id: str) -> str:
        return emails.order_page_url(self._ctx, order_id)

    # --- reveal ---------------------------------------------------------------------------

    def reveal(self, order_id: str, item_id: str, access_token: str | None) -> RevealedKey:
        """A fresh signed URL for each key of a delivered item; every call is recorded."""
        return reveal.reveal(self._ctx, order_id, item_id, access_token)

    def check_key_token(self, token: str) -> str:
        """The vault ref a key-URL token grants, or ``KeyUrlRejected``."""
        return reveal.check_key_token(self._ctx, token)

    # --- admin ----------------------------------------------------------------------------

    def admin_order(self, order_id: str) -> AdminOrderView:
        return admin.admin_order(self._ctx, order_id)

    def list_orders(
        self, *, status: OrderStatus | None = None, flag: Flag | None = None, limit: int = 100
    ) -> list[Order]:
        """The most recent ``limit`` orders matching the filters, newest first."""
        return admin.list_orders(self._ctx, status=status, flag=flag, limit=limit)

    def payments_of(self, orders: Sequence[Order]) -> dict[str, Payment]:
        """The current payment of each of ``orders`` that has one, by order id."""
        return admin.payments_of(self._ctx, orders)

    def list_jobs(self, *, state: JobState | None = None) -> list[Job]:
        return admin.list_jobs(self._ctx, state=state)

    def waiting_for_keys(self) -> list[KeysWait]:
        """Orders whose fulfillment waits for the supplier's keys now, longest first."""
        return waiting.waiting_for_keys(self._ctx)

    def retry_fulfillment(self, order_id: str, *, actor: str = "admin") -> Order:
        """Re-enqueue fulfillment of a paid order whose retries ran out."""
        return admin.retry_fulfillment(self._ctx, order_id, actor=actor)

    def resend_email(self, order_id: str, *, actor: str = "admin") -> Order:
        """Re-enqueue the completion email of a fulfilled order whose email job died."""
        return admin.resend_email(self._ctx, order_id, actor=actor)

    def resolve(self, order_id: str, *, action: str, note: str, actor: str = "admin") -> Order:
        """Admin decision on a held order: ``fulfill`` or ``refund``."""
        return admin.resolve(self._ctx, order_id, action=action, note=note, actor=actor)


__all__ = [
    "AdminOrderView",
    "Checkout",
    "CheckoutConfig",
    "CompletionEmail",
    "CompletionFacts",
    "CreatedOrder",
    "EmailContent",
    "IpnResult",
    "JobRun",
    "KeysWait",
    "OpenedPaymentResult",
    "OrderView",
    "ProductView",
    "ProviderSetup",
    "RevealedKey",
]
