"""The one place that builds a running shop from settings.

``build_shop(settings)`` wires the SQLite store, the NOWPayments and Kinguin clients (or,
in sandbox mode, the sandbox servers on loopback), the vault, the mailer, logging and
metrics into a ``Checkout``, and starts a worker thread if asked. Nothing happens at
import time, and no live object is a default argument.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from bitloot_adapters.clock import OffsetClock, SystemClock
from bitloot_adapters.kinguin import KinguinClient
from bitloot_adapters.logs import FanOut, LogObserver
from bitloot_adapters.mailers import FileMailer, SmtpMailer
from bitloot_adapters.metrics import ShopMetrics
from bitloot_adapters.nowpayments import NowPaymentsClient
from bitloot_adapters.sandbox import (
    DEFAULT_PRODUCTS,
    KinguinSandbox,
    NowPaymentsSandbox,
    SandboxServer,
)
from bitloot_adapters.settings import Settings
from bitloot_adapters.sqlite_store import SqliteStore
from bitloot_adapters.vault_file import FileVault
from bitloot_adapters.worker import Pass, Worker, WorkerThread
from bitloot_core.chart import OrderStatus

if TYPE_CHECKING:
    from bitloot_adapters.vault_s3 import S3Vault
from bitloot_core.errors import NotFound
from bitloot_core.ports import Clock, Mailer
from bitloot_core.service import Checkout, CheckoutConfig
from bitloot_core.values import Product, ProductSource

SENDER = "bitloot <keys@bitloot.invalid>"

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
DEMO_POOLS = {"gift-card-10": 5}


@dataclass
class Sandbox:
    payments: NowPaymentsSandbox
    supplier: KinguinSandbox
    servers: tuple[SandboxServer, SandboxServer]
    clock: OffsetClock


class Shop:
    """A running shop: the checkout, its worker, metrics, and the sandbox when on."""

    def __init__(
        self,
        *,
        settings: Settings,
        checkout: Checkout,
        store: SqliteStore,
        vault: FileVault | S3Vault,
        clock: Clock,
        metrics: ShopMetrics,
        http: httpx.Client,
        sandbox: Sandbox | None,
        page_dir: Path | None,
    ) -> None:
        self.settings = settings
        self.checkout = checkout
        self.store = store
        self.vault = vault
        self.clock = clock
        self.metrics = metrics
        self.http = http
        self.sandbox = sandbox
        self.page_dir = page_dir
        self.worker = Worker(checkout, clock)
        self._thread: WorkerThread | None = None

    def start_worker(self, *, poll_seconds: float = 0.5) -> None:
        self._thread = WorkerThread(self.worker, poll_seconds=poll_seconds)
        self._thread.start()

    def open_key(self, token: str) -> tuple[bytes, str]:
        if not isinstance(self.vault, FileVault):
            raise NotFound("keys are served by the object store's own signed URLs")
        return self.vault.open(token, self.clock.now())

    # --- sandbox controls ---------------------------------------------------------------

    def _sandbox(self) -> Sandbox:
        if self.sandbox is None:
            raise NotFound("the sandbox is off")
        return self.sandbox

    def sandbox_pay(self, payment_id: str, amount: Decimal | None) -> dict[str, object]:
        deliveries = self._sandbox().payments.pay(self._known(payment_id), amount)
        return {"ipns": [{"status": d.status, "answered": d.answered} for d in deliveries]}

    def sandbox_send(self, payment_id: str, action: str) -> dict[str, object]:
        payments = self._sandbox().payments
        send = payments.fail if action == "fail" else payments.expire
        deliveries = send(self._known(payment_id))
        return {"ipns": [{"status": d.status, "answered": d.answered} for d in deliveries]}

    def _known(self, payment_id: str) -> str:
        if payment_id not in self._sandbox().payments.payment_ids:
            raise NotFound(f"no sandbox payment {payment_id!r}")
        return payment_id

    def advance_clock(self, seconds: Decimal) -> dict[str, object]:
        now = self._sandbox().clock.advance(float(seconds))
        done: Pass = self.worker.run_once(force_sweep=True)
        return {
            "now": now,
            "swept": done.swept,
            "jobs": [{"key": r.key, "outcome": r.outcome} for r in done.jobs],
        }

    def kinguin_outage(self, failures: int) -> dict[str, object]:
        """The next ``failures`` Kinguin calls fail with 503; replaces any pending outage."""
        supplier = self._sandbox().supplier
        supplier.clear_outage()
        if failures:
            supplier.outage(failures, mode="503")
        return {"failures": failures}

    def close(self) -> None:
        if self._thread is not None:
            self._thread.stop()
        if self.sandbox is not None:
            for server in self.sandbox.servers:
                server.close()
        self.http.close()
        self.store.close()
        if not isinstance(self.vault, FileVault):
            self.vault.close()


def _mailer(settings: Settings) -> Mailer:
    if settings.smtp_url:
        return SmtpMailer.from_url(settings.smtp_url, sender=SENDER)
    return FileMailer(settings.data_dir / "mail", sender=SENDER)


def _vault(settings: Settings) -> FileVault | S3Vault:
    if settings.s3 is None:
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


def _seed_demo_catalogue(checkout: Checkout, store: SqliteStore) -> None:
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


def build_shop(settings: Settings, *, page_dir: Path | None = None) -> Shop:
    """Wire a shop. In sandbox mode, start the sandbox servers and seed the demo catalogue."""
    http = httpx.Client(timeout=httpx.Timeout(10.0))
    clock: Clock
    sandbox: Sandbox | None = None
    if settings.sandbox:
        offset = OffsetClock()
        clock = offset
        payments = NowPaymentsSandbox(
            api_key=settings.nowpayments_api_key,
            ipn_secret=settings.ipn_secret,
            http=http,
            clock=offset,
        )
        supplier = KinguinSandbox(api_key=settings.kinguin_api_key, key_delay=1.0, clock=offset)
        servers = (SandboxServer(payments).start(), SandboxServer(supplier).start())
        sandbox = Sandbox(payments=payments, supplier=supplier, servers=servers, clock=offset)
        nowpayments_url, kinguin_url = f"{servers[0].url}/v1", servers[1].url
    else:
        clock = SystemClock()
        nowpayments_url = settings.nowpayments_base_url or "https://api.nowpayments.io/v1"
        kinguin_url = settings.kinguin_base_url or "https://gateway.kinguin.net/esa/api"
    store = SqliteStore(
        settings.data_dir / "bitloot.db",
        synchronous="NORMAL" if settings.sqlite_synchronous == "NORMAL" else "FULL",
    )
    vault = _vault(settings)
    metrics = ShopMetrics(lambda: _count_orders(store))
    checkout = Checkout(
        store=store,
        gateway=NowPaymentsClient(
            http, api_key=settings.nowpayments_api_key, base_url=nowpayments_url
        ),
        supplier=KinguinClient(
            http,
            api_key=settings.kinguin_api_key,
            base_url=kinguin_url,
            # The sandbox delivers keys after a second; poll it often so the demo is quick.
            poll_interval=0.25 if settings.sandbox else 2.0,
        ),
        vault=vault,
        mailer=_mailer(settings),
        clock=clock,
        config=CheckoutConfig(
            ipn_secret=settings.ipn_secret,
            signing_key=settings.signing_key,
            public_url=settings.public_url,
            pay_currency=settings.pay_currency,
            order_ttl=settings.order_ttl,
            key_url_ttl=settings.key_url_ttl,
            underpay_tolerance_percent=settings.underpay_tolerance_percent,
            job_lease=settings.job_lease,
        ),
        new_id=lambda: secrets.token_hex(8),
        random=lambda: secrets.randbelow(1_000_001) / 1_000_000,
        observer=FanOut(LogObserver(), metrics),
    )
    if settings.sandbox:
        _seed_demo_catalogue(checkout, store)
    return Shop(
        settings=settings,
        checkout=checkout,
        store=store,
        vault=vault,
        clock=clock,
        metrics=metrics,
        http=http,
        sandbox=sandbox,
        page_dir=page_dir,
    )


def _count_orders(store: SqliteStore) -> dict[OrderStatus, int]:
    with store.transaction() as tx:
        return tx.count_orders_by_status()


__all__ = ["DEMO_PRODUCTS", "Sandbox", "Shop", "build_shop"]
