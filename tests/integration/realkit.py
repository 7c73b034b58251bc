"""Real parts for the integration tests: SQLite on disk, sandboxes over loopback HTTP.

``real_kit(data_dir)`` wires a ``Checkout`` with ``build_shop``, as a host application
does, with nothing faked but time: ``SqliteStore`` on ``<data_dir>/bitloot.db``,
``NowPaymentsClient`` and ``KinguinClient`` speaking HTTP to the sandbox servers,
``FileVault`` and ``FileMailer`` (or a given mailer) under the data dir, and one
``SettableClock`` shared by the checkout and both sandboxes. The shop's own loopback
server (``ShopServer``) receives the sandbox's signed IPNs on ``POST
/webhooks/nowpayments`` and serves revealed keys on ``GET /keys/{token}``, as a host
application would.

The data dir is laid out as ``build_shop`` lays it out and ``live_env`` gives the
environment of a live-mode shop pointed at the same sandboxes, so the ``bitloot`` command
run on that data dir works on the very same shop.

``apply_ipns`` is the body of one process of the concurrent-IPN test; it lives here so a
"spawn" child can import it.
"""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import hashlib
import hmac
import io
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final, Self

import httpx
import structlog

from bitloot_adapters import cli
from bitloot_adapters.bootstrap import DEMO_PRODUCTS, NoMetrics, build_shop
from bitloot_adapters.http_api.webhooks import webhook_status
from bitloot_adapters.kinguin import KinguinClient
from bitloot_adapters.logs import FanOut
from bitloot_adapters.mailers import FileMailer
from bitloot_adapters.sandbox import (
    IpnDelivery,
    KinguinCall,
    KinguinSandbox,
    NowPaymentsSandbox,
    SandboxServer,
)
from bitloot_adapters.settings import load_settings
from bitloot_adapters.sqlite_store import SqliteStore
from bitloot_adapters.vault_file import FileVault
from bitloot_core import rules
from bitloot_core.chart import OrderStatus, PaymentStatus
from bitloot_core.errors import KeyUrlRejected, VaultError
from bitloot_core.ports import Clock, KeySupplier, KeyVault, Mailer, Observer, PaymentGateway
from bitloot_core.providers.nowpayments import canonical_json
from bitloot_core.service import Checkout, CheckoutConfig, CreatedOrder, IpnResult, JobRun
from bitloot_core.testing import (
    FakeGateway,
    FakeSupplier,
    MemoryVault,
    RecordingMailer,
    RecordingObserver,
    SequentialIds,
    SettableClock,
)
from bitloot_core.values import Job, Payment

# --- secrets every part of a test shop agrees on ------------------------------------------

IPN_SECRET: Final = "ipn-secret-integration-5e0c1f7a9b"
NOWPAYMENTS_API_KEY: Final = "np-api-key-integration-8d2b4a61"
KINGUIN_API_KEY: Final = "kg-api-key-integration-3f9e0c27"
VAULT_KEY: Final = hashlib.sha256(b"bitloot integration vault key").digest()
SIGNING_KEY: Final = hashlib.sha256(b"bitloot integration signing key").digest()
ADMIN_TOKEN: Final = "admin-token-integration-b7c1d9e4f2"
SENDER: Final = "bitloot <keys@bitloot.invalid>"
BUYER: Final = "buyer@example.com"

# --- the catalogue: the demo shop's (Kinguin products the sandbox sells, key pools) ------

CATALOGUE: Final = DEMO_PRODUCTS
PRODUCTS: Final = {p.id: p for p in CATALOGUE}
POOL_KEYS: Final = ("GIFT-7QX2-0001", "GIFT-7QX2-0002", "GIFT-7QX2-0003")
WEBHOOK_PATH: Final = "/webhooks/nowpayments"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def config_for(public_url: str, **overrides: Any) -> CheckoutConfig:
    """The test shop's config: retries without jitter, so their schedule is exact."""
    settings: dict[str, Any] = {
        "ipn_secret": IPN_SECRET,
        "signing_key": SIGNING_KEY,
        "public_url": public_url,
        "fulfillment_retries": rules.RetrySchedule(jitter=False),
        "email_retries": rules.RetrySchedule(attempts=20, cap=rules.EMAIL_RETRIES.cap),
    }
    settings.update(overrides)
    return CheckoutConfig(**settings)


# --- the shop's own HTTP server: IPN webhook and key URLs -----------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class IpnAnswer:
    """One IPN the shop server received, what it answered, and the order right after."""

    provider_status: str | None
    status_code: int
    result: IpnResult
    order_status: OrderStatus | None
    payment_status: PaymentStatus | None


@dataclass(slots=True)
class _Wiring:
    checkout: Checkout
    store: SqliteStore
    vault: FileVault
    clock: Clock


class _HttpServer(ThreadingHTTPServer):
    # Handler threads are joined on close: nothing outlives the server.
    daemon_threads = False
    block_on_close = True
    request_queue_size = 128

    def __init__(self, shop: ShopServer) -> None:
        super().__init__(("127.0.0.1", 0), _ShopHandler)
        self.shop = shop


class _ShopHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server: _HttpServer

    def do_POST(self) -> None:
        if self.path != WEBHOOK_PATH:
            self._answer(404, b'{"code":"not_found"}')
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, answer = self.server.shop.receive_ipn(body, headers)
        self._answer(status, answer)

    def do_GET(self) -> None:
        if not self.path.startswith("/keys/"):
            self._answer(404, b'{"code":"not_found"}')
            return
        status, answer, content_type = self.server.shop.open_key(self.path.removeprefix("/keys/"))
        self._answer(status, answer, content_type)

    def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  stdlib signature
        """Quiet: the server records what it answered."""


class ShopServer:
    """The host application's HTTP side, on loopback: IPNs in, key files out.

    Start it first (its URL is the shop's public URL), then ``attach`` the checkout.
    """

    def __init__(self) -> None:
        self._server = _HttpServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="shop"
        )
        self._wiring: _Wiring | None = None
        self._lock = threading.Lock()
        self._answers: list[IpnAnswer] = []
        # While set, the webhook answers 503 without looking: the shop is down.
        self.down = False

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def webhook_url(self) -> str:
        return self.url + WEBHOOK_PATH

    @property
    def answers(self) -> list[IpnAnswer]:
        with self._lock:
            return list(self._answers)

    def attach(
        self, checkout: Checkout, store: SqliteStore, vault: FileVault, clock: Clock
    ) -> None:
        self._wiring = _Wiring(checkout, store, vault, clock)

    def _wired(self) -> _Wiring:
        if self._wiring is None:
            raise RuntimeError("no checkout is attached to the shop server")
        return self._wiring

    def receive_ipn(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        if self.down:
            return 503, b'{"code":"unavailable"}'
        wiring = self._wired()
        result = wiring.checkout.handle_ipn(body, headers)
        order_status = payment_status = None
        if result.order_id is not None:
            with wiring.store.transaction() as tx:
                order = tx.get_order(result.order_id)
                payment = (
                    tx.get_payment(order.payment_provider, order.payment_id)
                    if order and order.payment_id and order.payment_provider
                    else None
                )
            order_status = order.status if order else None
            payment_status = payment.status if payment else None
        try:
            provider_status = json.loads(body).get("payment_status")
        except (ValueError, AttributeError):
            provider_status = None
        with self._lock:
            self._answers.append(
                IpnAnswer(
                    provider_status=provider_status,
                    status_code=webhook_status(result),
                    result=result,
                    order_status=order_status,
                    payment_status=payment_status,
                )
            )
        answer = {"outcome": str(result.outcome), "code": result.code}
        return webhook_status(result), json.dumps(answer).encode()

    def open_key(self, token: str) -> tuple[int, bytes, str]:
        wiring = self._wired()
        try:
            secret, content_type = wiring.vault.open(token, wiring.clock.now())
        except KeyUrlRejected as exc:
            return 403, json.dumps({"code": exc.code}).encode(), "application/json"
        except VaultError as exc:
            return 503, json.dumps({"code": exc.code}).encode(), "application/json"
        return 200, secret, content_type

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the sandboxes --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Sandboxes:
    payments: NowPaymentsSandbox
    supplier: KinguinSandbox
    payments_url: str
    supplier_url: str

    def placements(self, order_id: str) -> list[KinguinCall]:
        """Every successful ``POST /v2/order`` Kinguin received for ``order_id``."""
        return [
            call
            for call in self.supplier.calls
            if call.method == "POST"
            and call.path.rstrip("/") == "/v2/order"
            and call.order_external_id == order_id
            and call.status == 201
        ]

    def kinguin_orders(self, order_id: str) -> list[dict[str, Any]]:
        return [o for o in self.supplier.orders if o["orderExternalId"] == order_id]


@contextlib.contextmanager
def sandboxes(clock: Clock | None, *, key_delay: float = 0.0) -> Iterator[Sandboxes]:
    """Both sandboxes on loopback; IPNs go out through their own HTTP client."""
    with httpx.Client(timeout=10) as ipn_http:
        payments = NowPaymentsSandbox(
            api_key=NOWPAYMENTS_API_KEY, ipn_secret=IPN_SECRET, http=ipn_http, clock=clock
        )
        supplier = KinguinSandbox(api_key=KINGUIN_API_KEY, key_delay=key_delay, clock=clock)
        with SandboxServer(payments) as np_server, SandboxServer(supplier) as kg_server:
            yield Sandboxes(
                payments=payments,
                supplier=supplier,
                payments_url=np_server.url,
                supplier_url=kg_server.url,
            )


def live_env(sandbox: Sandboxes, public_url: str, **extra: str) -> dict[str, str]:
    """A live-mode shop's environment, pointed at the sandboxes, with the kit's secrets."""
    env = {
        "BITLOOT_MODE": "live",
        "BITLOOT_NOWPAYMENTS_API_KEY": NOWPAYMENTS_API_KEY,
        "BITLOOT_NOWPAYMENTS_BASE_URL": f"{sandbox.payments_url}/v1",
        "BITLOOT_NOWPAYMENTS_IPN_SECRET": IPN_SECRET,
        "BITLOOT_KINGUIN_API_KEY": KINGUIN_API_KEY,
        "BITLOOT_KINGUIN_BASE_URL": sandbox.supplier_url,
        "BITLOOT_VAULT_KEY": b64(VAULT_KEY),
        "BITLOOT_SIGNING_KEY": b64(SIGNING_KEY),
        "BITLOOT_ADMIN_TOKEN": ADMIN_TOKEN,
        "BITLOOT_PUBLIC_URL": public_url,
    }
    env.update({f"BITLOOT_{name.upper()}": value for name, value in extra.items()})
    return env


# --- the kit ------------------------------------------------------------------------------


@dataclass(kw_only=True)
class RealKit:
    data_dir: Path
    checkout: Checkout
    store: SqliteStore
    vault: FileVault
    mailer: Mailer
    clock: SettableClock
    observer: RecordingObserver
    sandbox: Sandboxes
    shop: ShopServer
    http: httpx.Client
    config: CheckoutConfig
    _observer: Observer = field(repr=False)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "bitloot.db"

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def payments(self) -> NowPaymentsSandbox:
        return self.sandbox.payments

    @property
    def supplier(self) -> KinguinSandbox:
        return self.sandbox.supplier

    def env(self, **extra: str) -> dict[str, str]:
        return live_env(self.sandbox, self.shop.url, **{"mail_dir": str(self.mail_dir), **extra})

    def kinguin_client(self) -> KinguinClient:
        return KinguinClient(
            self.http,
            api_key=KINGUIN_API_KEY,
            base_url=self.sandbox.supplier_url,
            poll_interval=0.05,
            key_wait=2,
        )

    def new_checkout(self, store: SqliteStore) -> Checkout:
        """Another checkout instance over the same parts, on ``store`` (a fresh connection).

        Wired by ``build_shop`` as the ``bitloot`` command wires it (the kit's live-mode
        settings, so the NOWPayments client the settings make talks to the sandbox),
        given the kit's own parts where the test needs to see into them.
        """
        settings = load_settings(data_dir=self.data_dir, env=self.env())
        shop = build_shop(
            settings,
            store=store,
            supplier=self.kinguin_client(),
            vault=self.vault,
            mailer=self.mailer,
            clock=self.clock,
            observer=self._observer,
            metrics=NoMetrics(),
            http=self.http,
            config=self.config,
            new_id=_new_id,
        )
        return shop.checkout

    # customer steps

    def order(
        self, items: Sequence[tuple[str, int]], *, idempotency_key: str | None = None
    ) -> CreatedOrder:
        return self.checkout.create_order(
            email=BUYER, items=list(items), idempotency_key=idempotency_key
        )

    def buy(self, items: Sequence[tuple[str, int]]) -> tuple[CreatedOrder, Payment]:
        """Create an order and open its payment (the widget), as the customer does."""
        created = self.order(items)
        payment = self.checkout.open_payment(created.order.id, created.access_token).payment
        return created, payment

    def pay(
        self,
        payment: Payment,
        amount: Decimal | None = None,
        *,
        duplicate: bool = False,
    ) -> list[IpnDelivery]:
        """The customer pays; the sandbox sends its signed IPNs to the shop over HTTP."""
        return self.payments.pay(payment.id, amount, duplicate=duplicate)

    def statuses(self, created: CreatedOrder) -> tuple[OrderStatus, PaymentStatus | None]:
        view = self.checkout.get_order(created.order.id, created.access_token)
        return view.order.status, view.payment.status if view.payment else None

    # the worker

    def run_jobs(self) -> list[str]:
        return [run.outcome for run in self.checkout.run_due_jobs()]

    def run_until_idle(self, max_passes: int = 10) -> list[JobRun]:
        runs: list[JobRun] = []
        for _ in range(max_passes):
            batch = self.checkout.run_due_jobs()
            if not batch:
                return runs
            runs.extend(batch)
        raise AssertionError(f"jobs still due after {max_passes} passes: {runs}")

    def job(self, key: str) -> Job:
        with self.store.transaction() as tx:
            job = tx.get_job(key)
        assert job is not None, key
        return job

    # what the shop leaves behind

    def email_files(self) -> list[Path]:
        return sorted(self.mail_dir.glob("*.eml")) if self.mail_dir.exists() else []

    def emails(self) -> list[EmailMessage]:
        return [parse_email(path.read_bytes()) for path in self.email_files()]

    def webhook_rows(self) -> list[dict[str, Any]]:
        """The webhook log as SQLite holds it, read over a connection of its own."""
        return webhook_rows(self.db_path)


def parse_email(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def webhook_rows(db_path: Path) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM webhooks ORDER BY seq")]


def _new_id() -> str:
    return os.urandom(8).hex()


@contextlib.contextmanager
def real_kit(
    data_dir: Path,
    *,
    mailer: Mailer | None = None,
    start: datetime | None = None,
    observer: Observer | None = None,
    **config: Any,
) -> Iterator[RealKit]:
    """A checkout on real parts; the clock starts at the real time unless ``start`` says."""
    data_dir.mkdir(parents=True, exist_ok=True)
    # Starting at the real time lets the `bitloot` command (live mode: system clock) and
    # this kit's settable clock agree on what is due.
    clock = SettableClock(start or datetime.now(UTC))
    recording = RecordingObserver()
    with contextlib.ExitStack() as stack:
        http = stack.enter_context(httpx.Client(timeout=10))
        sandbox = stack.enter_context(sandboxes(clock))
        shop = stack.enter_context(ShopServer())
        store = stack.enter_context(SqliteStore(data_dir / "bitloot.db"))
        vault = FileVault(
            data_dir / "vault", key=VAULT_KEY, signing_key=SIGNING_KEY, base_url=shop.url
        )
        chosen_mailer = mailer or FileMailer(data_dir / "mail", sender=SENDER)
        observers: Observer = recording if observer is None else FanOut(observer, recording)
        kit = RealKit(
            data_dir=data_dir,
            checkout=None,  # type: ignore[arg-type]  # set just below
            store=store,
            vault=vault,
            mailer=chosen_mailer,
            clock=clock,
            observer=recording,
            sandbox=sandbox,
            shop=shop,
            http=http,
            config=config_for(shop.url, **config),
            _observer=observers,
        )
        kit.checkout = kit.new_checkout(store)
        shop.attach(kit.checkout, store, vault, clock)
        for product in CATALOGUE:
            kit.checkout.save_product(product)
        kit.checkout.add_pool_keys("gift-card-10", list(POOL_KEYS))
        yield kit


# --- the bitloot command, in process ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CliResult:
    code: int
    out: str
    err: str


def run_cli(data_dir: Path, *args: str) -> CliResult:
    """``bitloot --data-dir DATA_DIR ARGS`` through ``cli.run``, reading ``os.environ``."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            code = cli.run(["--data-dir", str(data_dir), *args], out=out)
    finally:
        # The command configures structlog for itself (to the stderr it saw): undo that.
        structlog.reset_defaults()
    return CliResult(code, out.getvalue(), err.getvalue())


# --- IPN bodies as NOWPayments writes them --------------------------------------------------


def ipn_body(payment: Payment, status: str, actually_paid: Decimal) -> bytes:
    """An IPN for ``payment``: the provider's fields, key-sorted, numbers as JS prints them."""
    body: dict[str, Any] = {
        "actually_paid": actually_paid,
        "actually_paid_at_fiat": 0,
        "fee": {"currency": payment.pay_currency, "depositFee": 0, "serviceFee": 0},
        "invoice_id": None,
        "order_description": None,
        "order_id": payment.order_id,
        "outcome_amount": actually_paid,
        "outcome_currency": payment.pay_currency,
        "parent_payment_id": None,
        "pay_address": payment.pay_address,
        "pay_amount": payment.pay_amount,
        "pay_currency": payment.pay_currency,
        "payment_id": int(payment.id),
        "payment_status": status,
        "price_amount": payment.price_amount,
        "price_currency": payment.price_currency,
        "purchase_id": "5172103429",
        "updated_at": 1765249461097,
    }
    return canonical_json(body).encode()


def sign(body: bytes, secret: str = IPN_SECRET) -> dict[str, str]:
    return {"x-nowpayments-sig": hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()}


# --- one process of the concurrent-IPN test -------------------------------------------------


def fake_checkout(
    store: SqliteStore,
    clock: Clock,
    *,
    gateway: PaymentGateway | None = None,
    supplier: KeySupplier | None = None,
    vault: KeyVault | None = None,
    mailer: Mailer | None = None,
    prefix: str = "id",
) -> Checkout:
    """A checkout whose store is real and whose other ports are the shipped fakes."""
    return Checkout(
        store=store,
        gateway=gateway or FakeGateway(),
        supplier=supplier or FakeSupplier(),
        vault=vault or MemoryVault(SIGNING_KEY),
        mailer=mailer or RecordingMailer(),
        clock=clock,
        config=config_for("https://shop.example"),
        new_id=SequentialIds(prefix),
    )


def apply_ipns(
    db_path: str,
    deliveries: Sequence[bytes],
    barrier: Any,
    results: Any,
    index: int,
) -> None:
    """Build a checkout of its own on ``db_path`` and deliver every body, signed.

    Puts ``(index, [(status_code, outcome, code), ...], (started, ended))`` on
    ``results``, the times in wall-clock seconds; an exception out of ``handle_ipn`` (which
    must never raise) is reported as ``(None, name, text)``.
    """
    answers: list[tuple[int | None, str, str]] = []
    with SqliteStore(db_path) as store:
        checkout = fake_checkout(store, SettableClock(), prefix=f"p{index}")
        barrier.wait(timeout=60)
        started = time.time()
        for body in deliveries:
            try:
                result = checkout.handle_ipn(body, sign(body))
            except Exception as exc:  # noqa: BLE001  the test reports every kind
                answers.append((None, type(exc).__name__, str(exc)))
            else:
                answers.append((webhook_status(result), str(result.outcome), result.code))
        ended = time.time()
    results.put((index, answers, (started, ended)))


def wait_for(
    condition: Callable[[], object], *, timeout: float, what: str, poll: float = 0.01
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)
