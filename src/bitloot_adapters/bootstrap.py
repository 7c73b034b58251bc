"""The composition root: the one place that builds a running shop from settings.

``build_shop(settings)`` wires the store (SQLite in the data dir, or PostgreSQL when
``BITLOOT_DATABASE_URL`` is set), the payment providers' clients (one line each in
``PROVIDERS``) and Kinguin's (or, in sandbox mode, the sandbox servers on loopback), the
vault, the mailer, logging and
metrics into a ``Checkout``. Every part can be given instead (``store=``, ``gateway=``,
``supplier=``, ``vault=``, ``mailer=``, ``clock=``, ...), typed on the core's ports, so a
host application or a test swaps one part and keeps the rest of the wiring. Nothing
happens at import time, and no live object is a default argument.

Who makes a part closes it: ``Shop.close`` closes what ``build_shop`` made (its HTTP
client, store, vault, sandbox servers) and leaves the parts it was given to the caller.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast, runtime_checkable

import attrs
import httpx

from bitloot_adapters.btcpay import BtcPayClient
from bitloot_adapters.clock import OffsetClock, SystemClock
from bitloot_adapters.email_template import TemplateEmail
from bitloot_adapters.http_api.pages import PACKAGED_PAGE
from bitloot_adapters.kinguin import KinguinClient
from bitloot_adapters.logs import FanOut, LogObserver
from bitloot_adapters.mailers import FileMailer, SmtpMailer
from bitloot_adapters.nowpayments import NowPaymentsClient
from bitloot_adapters.sandbox import (
    DEFAULT_PRODUCTS,
    AdjustableClock,
    BtcPaySandbox,
    KinguinSandbox,
    NowPaymentsSandbox,
    SandboxControls,
    SandboxServer,
)
from bitloot_adapters.sandbox.controls import SandboxPanel
from bitloot_adapters.sandbox.ids import first_payment_id, fresh_seed
from bitloot_adapters.sandbox.remote import RemoteSandbox
from bitloot_adapters.settings import HOW_TO_SWITCH, ConfigError, Settings
from bitloot_adapters.shop_mode import ModeMismatchError, claim_database, mode_of
from bitloot_adapters.sqlite_store import SqliteStore
from bitloot_adapters.vault_db import DatabaseVault
from bitloot_adapters.vault_file import FileVault
from bitloot_adapters.worker import Worker, WorkerThread
from bitloot_core.chart import OrderStatus
from bitloot_core.errors import NotFound
from bitloot_core.ports import (
    Clock,
    KeySupplier,
    KeyVault,
    Mailer,
    Observer,
    PaymentGateway,
    Store,
)
from bitloot_core.providers.btcpay import BtcPay
from bitloot_core.providers.nowpayments import NowPayments
from bitloot_core.service import Checkout, CheckoutConfig, ProviderSetup
from bitloot_core.values import Product, ProductSource

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from bitloot_adapters.postgres_store import PostgresStore
    from bitloot_adapters.vault_db import SealedKeyStore
    from bitloot_adapters.vault_s3 import S3Vault


# The demo catalogue: Kinguin products (bought from the sandbox supplier) and shop-owned
# products with a key pool, one of them empty to show the failure path.
_SANDBOX_KINGUIN = {p.name: p.product_id for p in DEFAULT_PRODUCTS}
DEMO_PRODUCTS = (
    Product(
        id="counter-strike-source",
        name="Counter-Strike: Source",
        price=Decimal("4.99"),
        currency="usd",
        source=ProductSource.KINGUIN,
        supplier_ref=_SANDBOX_KINGUIN["Counter-Strike: Source Steam CD Key"],
    ),
    Product(
        id="stardew-valley",
        name="Stardew Valley",
        price=Decimal("11.99"),
        currency="usd",
        source=ProductSource.KINGUIN,
        supplier_ref=_SANDBOX_KINGUIN["Stardew Valley Steam CD Key"],
    ),
    Product(
        id="hollow-knight",
        name="Hollow Knight (gift card image)",
        price=Decimal("14.99"),
        currency="usd",
        source=ProductSource.KINGUIN,
        supplier_ref=_SANDBOX_KINGUIN["Hollow Knight Steam Gift Card"],
    ),
    Product(
        id="gift-card-10",
        name="bitloot gift card $10",
        price=Decimal("10.00"),
        currency="usd",
        source=ProductSource.CUSTOM,
    ),
    Product(
        id="founders-pack",
        name="Founder's pack (sold out)",
        price=Decimal("15.00"),
        currency="usd",
        source=ProductSource.CUSTOM,
    ),
)
# Reserved while a payment is open (sold_out beyond): enough for a demo with many carts.
DEMO_POOLS = {"gift-card-10": 100}
# The sandbox re-sends an IPN the shop did not take (no answer, or a 5xx), as NOWPayments
# does, after these waits in seconds.
SANDBOX_IPN_RETRIES = (2.0, 10.0, 30.0, 60.0)


class Metrics(Protocol):
    """What the shop's metrics do: observe the checkout, time requests, render a scrape."""

    def observe(self, event: str, /, **fields: object) -> None: ...
    def request(self, method: str, route: str, status: int, seconds: float) -> None: ...
    def render(self) -> tuple[bytes, str]: ...


class NoMetrics:
    """Metrics off: counts nothing; ``GET /metrics`` answers 404.

    For the ``bitloot`` command (nothing scrapes it) and for installs without
    prometheus-client (the ``server`` extra).
    """

    def observe(self, event: str, /, **fields: object) -> None:
        del event, fields

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        del method, route, status, seconds

    def render(self) -> tuple[bytes, str]:
        raise NotFound("metrics are off (they need prometheus-client, the server extra)")


@runtime_checkable
class KeyFiles(Protocol):
    """A vault that serves revealed keys itself, at the shop's ``/keys/{signed}``."""

    def open(self, token: str, now: datetime) -> tuple[bytes, str]: ...


class Shop:
    """A running shop: the checkout, its worker and metrics; the sandbox's controls when on."""

    def __init__(
        self,
        *,
        settings: Settings,
        checkout: Checkout,
        store: Store,
        vault: KeyVault,
        clock: Clock,
        metrics: Metrics,
        sandbox: SandboxPanel | None,
        page_dir: Traversable | None,
        worker: Worker,
        closers: tuple[Callable[[], None], ...] = (),
    ) -> None:
        self.settings = settings
        self.checkout = checkout
        self.store = store
        self.vault = vault
        self.clock = clock
        self.metrics = metrics
        self.sandbox = sandbox
        self.page_dir = page_dir
        self.worker = worker
        self._closers = closers
        self._thread: WorkerThread | None = None

    @property
    def generated_admin_token(self) -> str | None:
        """The admin token when this start generated it (the first start in its data
        dir), for the entry point to show once; None when it was kept or came from the
        environment. The token authorises ``/api/admin/*`` (``Authorization: Bearer``)."""
        return self.settings.admin_token if self.settings.admin_token_generated else None

    def start_worker(self, *, poll_seconds: float = 0.5) -> None:
        """Run the worker (due jobs, the sweeper, reconciliation) in a daemon thread of
        this process, every ``poll_seconds``; ``close`` stops it. Skip it when a
        ``bitloot worker`` process runs the jobs instead."""
        if self._thread is not None:
            raise RuntimeError("the worker is already running")
        self._thread = WorkerThread(self.worker, poll_seconds=poll_seconds)
        self._thread.start()

    def open_key(self, token: str) -> tuple[bytes, str]:
        if not isinstance(self.vault, KeyFiles):
            raise NotFound("keys are served by the object store's own signed URLs")
        return self.vault.open(token, self.clock.now())

    def close(self) -> None:
        """Stop the worker (waiting for its pass to end), then close what ``build_shop``
        made: the sandboxes, the HTTP client, the store and the vault. Parts given to
        ``build_shop`` are left open, for their owner to close."""
        if self._thread is not None:
            self._thread.stop()
        for close in self._closers:
            close()


def _mailer(settings: Settings) -> Mailer:
    if settings.smtp_url:
        return SmtpMailer.from_url(settings.smtp_url, sender=settings.mail_from)
    if settings.mail_dir is None and not settings.sandbox:
        raise ConfigError(
            "a live shop needs a mail server (smtp_url), or a mail_dir set on purpose: "
            "otherwise completion emails reach no customer"
        )
    return FileMailer(settings.mail_dir or settings.data_dir / "mail", sender=settings.mail_from)


def open_store(settings: Settings) -> SqliteStore | PostgresStore:
    """The store settings name, migrated to this bitloot's schema; the caller closes it.

    Every process runs the migrations as it opens the store; processes starting together
    take turns (SQLite's write lock, PostgreSQL's advisory lock), so each runs once.
    """
    if settings.database_url is None:
        return SqliteStore(
            settings.data_dir / "bitloot.db",
            synchronous="NORMAL" if settings.sqlite_synchronous == "NORMAL" else "FULL",
        )
    try:
        # Imported here: psycopg is only needed (the "postgres" extra) for PostgreSQL.
        from bitloot_adapters.postgres_store import PostgresStore  # noqa: PLC0415
    except ImportError:
        raise ConfigError(
            "BITLOOT_DATABASE_URL needs the postgres extra: pip install 'bitloot[postgres]'"
        ) from None
    store = PostgresStore(
        settings.database_url,
        pool_size=settings.database_pool_size,
        connect_timeout=settings.database_timeout.total_seconds(),
    )
    try:
        claim_database(
            store, mode_of(settings.sandbox), where="the database", how_to_switch=HOW_TO_SWITCH
        )
    except ModeMismatchError as exc:
        store.close()
        raise ConfigError(str(exc)) from None
    return store


def _vault(settings: Settings, store: Store) -> FileVault | DatabaseVault | S3Vault:
    if settings.vault_kind == "database":
        if not isinstance(store, (SqliteStore, *_postgres_store_type())):
            raise ConfigError("the database vault needs the shop's SQLite or PostgreSQL store")
        return DatabaseVault(
            cast("SealedKeyStore", store),
            key=settings.vault_key,
            signing_key=settings.signing_key,
            base_url=settings.public_url,
        )
    if settings.s3 is None or settings.vault_kind == "file":
        return FileVault(
            settings.data_dir / "vault",
            key=settings.vault_key,
            signing_key=settings.signing_key,
            base_url=settings.public_url,
        )
    # Imported here: boto3 is only needed (the "s3" extra) when the S3/R2 vault is used.
    from bitloot_adapters.vault_s3 import S3Vault, make_r2_client  # noqa: PLC0415

    s3 = settings.s3
    client = make_r2_client(
        s3.account_id, s3.access_key_id, s3.secret_access_key, endpoint_url=s3.endpoint_url
    )
    return S3Vault(client, bucket=s3.bucket)


def _metrics(store: Store) -> Metrics:
    try:
        # Imported here: prometheus-client comes with the "server" extra.
        from bitloot_adapters.metrics import ShopMetrics  # noqa: PLC0415
    except ImportError:
        return NoMetrics()
    return ShopMetrics(lambda: _count_orders(store))


def _config(settings: Settings, completion_email: TemplateEmail | None) -> CheckoutConfig:
    return CheckoutConfig(
        signing_key=settings.signing_key,
        public_url=settings.public_url,
        pay_currency=settings.pay_currency,
        order_ttl=settings.order_ttl,
        key_url_ttl=settings.key_url_ttl,
        underpay_tolerance_percent=settings.underpay_tolerance_percent,
        job_lease=settings.job_lease,
        shop_name=settings.shop_name,
        completion_email=completion_email,
    )


def _seed_demo_catalogue(checkout: Checkout, store: Store) -> None:
    with store.transaction() as tx:
        new = [p for p in DEMO_PRODUCTS if tx.get_product(p.id) is None]
        for product in new:
            tx.upsert_product(product)
    for product in new:
        count = DEMO_POOLS.get(product.id, 0)
        if count:
            checkout.add_pool_keys(
                product.id, [f"GIFT-{secrets.token_hex(4).upper()}" for _ in range(count)]
            )


def _with_sandbox_webhook_secret(settings: Settings) -> Settings:
    """The sandbox's Kinguin signs its webhooks with a secret made for this start."""
    if not settings.sandbox or settings.kinguin_webhook_secret is not None:
        return settings
    return attrs.evolve(settings, kinguin_webhook_secret=secrets.token_urlsafe(24))


def _nowpayments(settings: Settings, http: httpx.Client, url: str) -> ProviderSetup:
    client = NowPaymentsClient(http, api_key=settings.nowpayments_api_key, base_url=url)
    provider = NowPayments(
        ipn_secret=settings.ipn_secret, previous_ipn_secret=settings.ipn_secret_previous
    )
    return ProviderSetup(provider=provider, gateway=client)


def _btcpay(settings: Settings, http: httpx.Client, url: str) -> ProviderSetup:
    store = settings.btcpay
    if store is None:
        raise ConfigError("BTCPay Server needs its settings (BITLOOT_BTCPAY_*)")
    client = BtcPayClient(
        http,
        base_url=url,
        api_key=store.api_key,
        store_id=store.store_id,
        # The invoice stays open as long as the order does (BTCPay's default is 15 min):
        # its expiry then never comes before the order's, so money arriving after it is
        # on an order the shop has expired too, and is held as paid late.
        expiration_minutes=max(1, int(settings.order_ttl.total_seconds() // 60)),
    )
    return ProviderSetup(provider=BtcPay(webhook_secret=store.webhook_secret), gateway=client)


# Each payment provider the shop can run: how to make it from the settings, an HTTP
# client and its API's base URL. Adding a provider adds one line here.
PROVIDERS: Mapping[str, Callable[[Settings, httpx.Client, str], ProviderSetup]] = {
    "nowpayments": _nowpayments,
    "btcpay": _btcpay,
}


def _payment_providers(
    settings: Settings, http: httpx.Client, urls: Mapping[str, str], gateway: PaymentGateway | None
) -> list[ProviderSetup]:
    """The providers settings name, the default first; ``gateway`` replaces NOWPayments'."""
    setups = [PROVIDERS[name](settings, http, urls[name]) for name in settings.payment_providers]
    return [
        ProviderSetup(provider=setup.provider, gateway=gateway)
        if gateway is not None and setup.provider.name == "nowpayments"
        else setup
        for setup in setups
    ]


def _live_urls(settings: Settings) -> dict[str, str]:
    return {
        "nowpayments": settings.nowpayments_base_url or "https://api.nowpayments.io/v1",
        "btcpay": settings.btcpay.url if settings.btcpay is not None else "",
        "kinguin": settings.kinguin_base_url or "https://gateway.kinguin.net/esa/api",
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class _Sandboxes:
    """The sandbox servers a sandbox shop runs on loopback, and their base URLs."""

    clock: AdjustableClock
    payments: NowPaymentsSandbox
    btcpay: BtcPaySandbox | None
    supplier: KinguinSandbox
    servers: tuple[SandboxServer, ...]
    urls: dict[str, str]


def _sandbox_clock(clock: Clock | None) -> AdjustableClock:
    if clock is None:
        return OffsetClock()
    if isinstance(clock, AdjustableClock):
        return clock
    raise TypeError("a sandbox shop's clock must be an AdjustableClock (it has advance)")


def _start_sandboxes(settings: Settings, http: httpx.Client, clock: AdjustableClock) -> _Sandboxes:
    # Fresh ids on every start: a restarted sandbox must not reuse the shop's payment ids.
    payments = NowPaymentsSandbox(
        api_key=settings.nowpayments_api_key,
        ipn_secret=settings.ipn_secret,
        http=http,
        clock=clock,
        first_payment_id=first_payment_id(),
        seed=fresh_seed(),
        retry_delays=SANDBOX_IPN_RETRIES,
    )
    supplier = KinguinSandbox(
        api_key=settings.kinguin_api_key,
        seed=fresh_seed(),
        key_delay=1.0,
        clock=clock,
        http=http,
        webhook_url=f"{settings.public_url}/webhooks/kinguin",
        webhook_secret=settings.kinguin_webhook_secret,
    )
    servers: tuple[SandboxServer, ...] = (
        SandboxServer(payments).start(),
        SandboxServer(supplier).start(),
    )
    urls = {"nowpayments": f"{servers[0].url}/v1", "kinguin": servers[1].url}
    btcpay = None
    if settings.btcpay is not None:
        btcpay = BtcPaySandbox(
            api_key=settings.btcpay.api_key,
            store_id=settings.btcpay.store_id,
            http=http,
            clock=clock,
            webhook_url=f"{settings.public_url}/webhooks/btcpay",
            webhook_secret=settings.btcpay.webhook_secret,
            seed=fresh_seed(),
        )
        server = SandboxServer(btcpay).start()
        servers += (server,)
        urls["btcpay"] = server.url
    return _Sandboxes(
        clock=clock, payments=payments, btcpay=btcpay, supplier=supplier, servers=servers, urls=urls
    )


def _shared_sandbox_urls(base: str) -> dict[str, str]:
    return {
        "nowpayments": f"{base}/nowpayments/v1",
        "kinguin": f"{base}/kinguin",
        "btcpay": f"{base}/btcpay",
    }


def _random_fraction() -> float:
    return secrets.randbelow(1_000_001) / 1_000_000


def _new_id() -> str:
    return secrets.token_hex(8)


def build_shop(
    settings: Settings,
    *,
    store: Store | None = None,
    gateway: PaymentGateway | None = None,
    supplier: KeySupplier | None = None,
    vault: KeyVault | None = None,
    mailer: Mailer | None = None,
    clock: Clock | None = None,
    observer: Observer | None = None,
    metrics: Metrics | None = None,
    http: httpx.Client | None = None,
    config: CheckoutConfig | None = None,
    new_id: Callable[[], str] | None = None,
    page_dir: Path | None = None,
    providers: Sequence[ProviderSetup] | None = None,
) -> Shop:
    """Wire a shop from ``settings``; each part given replaces the one settings would make.

    In sandbox mode the sandbox servers start on loopback (on the given clock, which must
    then be an ``AdjustableClock``, or on an ``OffsetClock``) and the demo catalogue is
    seeded. ``observer`` receives the checkout's events besides the logs and metrics;
    ``config`` replaces the ``CheckoutConfig`` made from settings; ``http`` is the client
    the provider clients (and the sandbox's IPNs) go through. ``providers`` replaces the
    payment providers settings would make; ``gateway`` replaces NOWPayments' client only.
    ``page_dir`` replaces the customer page and console the package ships.
    """
    # What this call makes, it closes (in this order): sandbox servers, then the HTTP
    # client they post IPNs through, then the store and the vault.
    sandboxes: _Sandboxes | None = None
    made: list[Callable[[], None]] = []
    # Before anything opens: a bad email template stops the start.
    template = settings.email_template_dir
    completion_email = TemplateEmail.load(template) if template and config is None else None
    if store is None:
        # First: a database of the other mode stops the start before anything runs.
        opened = open_store(settings)
        made.append(opened.close)
        store = opened
    if http is None:
        http = httpx.Client(timeout=httpx.Timeout(10.0))
        made.insert(0, http.close)
    settings = _with_sandbox_webhook_secret(settings)
    remote_clock: AdjustableClock | None = None
    if settings.sandbox and settings.sandbox_url is not None:
        # A shared `bitloot sandbox`: its APIs under one URL, nothing started here.
        remote_clock = _sandbox_clock(clock)
        clock, urls = remote_clock, _shared_sandbox_urls(settings.sandbox_url)
    elif settings.sandbox:
        sandboxes = _start_sandboxes(settings, http, _sandbox_clock(clock))
        clock, urls = sandboxes.clock, sandboxes.urls
    else:
        clock = clock or SystemClock()
        urls = _live_urls(settings)
    if vault is None:
        made_vault = _vault(settings, store)
        if not isinstance(made_vault, FileVault | DatabaseVault):
            made.append(made_vault.close)
        vault = made_vault
    metrics = metrics or _metrics(store)
    observers: list[Observer] = [LogObserver(), metrics]
    if observer is not None:
        observers.append(observer)
    checkout = Checkout(
        store=store,
        providers=providers or _payment_providers(settings, http, urls, gateway),
        supplier=supplier
        or KinguinClient(
            http,
            api_key=settings.kinguin_api_key,
            base_url=urls["kinguin"],
            # The sandbox delivers keys after a second; poll it often so the demo is quick.
            poll_interval=0.25 if settings.sandbox else 2.0,
            # Waiting for late keys costs no attempt: a short poll in a call is enough.
            key_wait=2.0 if settings.sandbox else 20.0,
        ),
        vault=vault,
        mailer=mailer or _mailer(settings),
        clock=clock,
        config=config or _config(settings, completion_email),
        new_id=new_id or _new_id,
        random=_random_fraction,
        observer=FanOut(*observers),
    )
    worker = Worker(checkout, clock)
    controls: SandboxPanel | None = None
    closers = list(made)
    if remote_clock is not None and settings.sandbox_url is not None:
        controls = RemoteSandbox(settings.sandbox_url, http=http, clock=remote_clock, worker=worker)
        _seed_demo_catalogue(checkout, store)
    if sandboxes is not None:
        controls = SandboxControls(
            payments=sandboxes.payments,
            btcpay=sandboxes.btcpay,
            supplier=sandboxes.supplier,
            servers=sandboxes.servers,
            clock=sandboxes.clock,
            worker=worker,
        )
        closers[:0] = [*(server.close for server in sandboxes.servers), sandboxes.payments.close]
        _seed_demo_catalogue(checkout, store)
    return Shop(
        settings=settings,
        checkout=checkout,
        store=store,
        vault=vault,
        clock=clock,
        metrics=metrics,
        sandbox=controls,
        page_dir=PACKAGED_PAGE if page_dir is None else page_dir,
        worker=worker,
        closers=tuple(closers),
    )


def _postgres_store_type() -> tuple[type, ...]:
    try:
        from bitloot_adapters.postgres_store import PostgresStore  # noqa: PLC0415
    except ImportError:
        return ()
    return (PostgresStore,)


def _count_orders(store: Store) -> dict[OrderStatus, int]:
    with store.transaction() as tx:
        return tx.count_orders_by_status()


__all__ = [
    "DEMO_PRODUCTS",
    "PROVIDERS",
    "KeyFiles",
    "Metrics",
    "NoMetrics",
    "Shop",
    "build_shop",
    "open_store",
]
