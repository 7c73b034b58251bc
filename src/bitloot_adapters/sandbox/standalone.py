"""``bitloot sandbox``: the sandboxes as a process of their own, shared by shop processes.

As stripe-mock serves Stripe's users, one sandbox serves any number of shop processes
(servers and workers) on one port:

- ``/nowpayments/v1/...``: the NOWPayments API (``BITLOOT_NOWPAYMENTS_BASE_URL`` of a
  live-mode shop, or found through ``BITLOOT_SANDBOX_URL`` by a sandbox-mode one);
- ``/kinguin/...``: the Kinguin API (``BITLOOT_KINGUIN_BASE_URL``);
- ``/btcpay/...``: the BTCPay Greenfield API, when ``BITLOOT_BTCPAY_STORE_ID`` is set;
- ``/sandbox/...``: the control routes, the same as a sandbox-mode shop's;
- ``/healthz``.

IPNs are signed with ``BITLOOT_NOWPAYMENTS_IPN_SECRET`` (required: the shops must verify
them with the same secret) and sent to the callback URL each payment was opened with,
from the sandbox's own thread, retried while unanswered. Any API key is accepted unless
``BITLOOT_NOWPAYMENTS_API_KEY`` / ``BITLOOT_KINGUIN_API_KEY`` (/ ``BITLOOT_BTCPAY_API_KEY``)
name the one to accept. Kinguin sends no webhooks here: the shops poll it. Everything is
kept in memory; ids are fresh on every start (never one an earlier start handed out).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, cast

import httpx

from bitloot_adapters.clock import OffsetClock
from bitloot_adapters.http_api.routes import ROUTES, Access
from bitloot_adapters.http_api.shapes import HttpRequest, HttpResponse, error_response
from bitloot_adapters.sandbox.btcpay import BtcPaySandbox
from bitloot_adapters.sandbox.controls import SandboxControls
from bitloot_adapters.sandbox.ids import first_payment_id, fresh_seed
from bitloot_adapters.sandbox.kinguin import KinguinSandbox
from bitloot_adapters.sandbox.nowpayments import NowPaymentsSandbox
from bitloot_adapters.sandbox.server import SandboxApp, SandboxRequest, SandboxResponse
from bitloot_core.errors import BitlootError

if TYPE_CHECKING:
    from bitloot_adapters.http_api.api import ShopApi
    from bitloot_core.values import Product

__all__ = ["IPN_RETRIES", "SandboxConfigError", "SharedSandbox", "shared_sandbox"]

PREFIX: Final = "BITLOOT_"
# NOWPayments re-sends an IPN the shop did not take: after these waits, in seconds.
IPN_RETRIES: Final = (2.0, 10.0, 30.0, 60.0)
_CONTROL_ROUTES: Final = tuple(route for route in ROUTES if route.access is Access.SANDBOX)


class SandboxConfigError(Exception):
    """A missing or malformed variable of ``bitloot sandbox``; the message names it."""


class _NoCatalogue:
    """The stock route maps a shop's product id to Kinguin's; here ids are Kinguin's."""

    def list_products(self) -> list[Product]:
        return []


@dataclasses.dataclass
class _ControlHost:
    """What the shop's sandbox route handlers use of ``ShopApi``."""

    sandbox: SandboxControls
    checkout: _NoCatalogue = dataclasses.field(default_factory=_NoCatalogue)


class SharedSandbox:
    """The app ``bitloot sandbox`` serves; ``close`` stops its IPN deliveries."""

    def __init__(
        self,
        *,
        payments: NowPaymentsSandbox,
        supplier: KinguinSandbox,
        btcpay: BtcPaySandbox | None,
        clock: OffsetClock,
    ) -> None:
        self.payments = payments
        self.supplier = supplier
        self.btcpay = btcpay
        self.clock = clock
        self.controls = SandboxControls(
            payments=payments,
            supplier=supplier,
            btcpay=btcpay,
            servers=(),
            clock=clock,
            worker=None,
        )
        self._mounts: tuple[tuple[str, SandboxApp], ...] = (
            ("/nowpayments", payments),
            ("/kinguin", supplier),
            *((("/btcpay", btcpay),) if btcpay is not None else ()),
        )
        self._host = _ControlHost(self.controls)

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        for prefix, app in self._mounts:
            if request.path.startswith(prefix + "/"):
                return app.handle(dataclasses.replace(request, path=request.path[len(prefix) :]))
        if request.path == "/healthz" and request.method == "GET":
            return _answer(HttpResponse(status=200, body=b'{"status":"ok","mode":"sandbox"}'))
        return _answer(self._control(request))

    def _control(self, request: SandboxRequest) -> HttpResponse:
        http_request = HttpRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=request.body,
            # ?wait=0: a shop relaying from a single-threaded server cannot take the IPNs
            # until its relayed request ends.
            concurrent=request.query.get("wait") != "0",
        )
        for route in _CONTROL_ROUTES:
            found = route.pattern.match(request.path)
            if found is None:
                continue
            if route.method != request.method:
                return error_response(405, "method_not_allowed", "method not allowed")
            try:
                # The handlers read only ``sandbox`` and ``checkout.list_products``.
                return route.handler(cast("ShopApi", self._host), http_request, found.groupdict())
            except BitlootError as exc:
                return error_response(exc.status_hint, exc.code, exc.message)
        return error_response(404, "not_found", "no such resource")

    def close(self) -> None:
        self.payments.close()


def _answer(response: HttpResponse) -> SandboxResponse:
    return SandboxResponse(
        status=response.status, body=response.body, content_type=response.content_type
    )


def shared_sandbox(env: Mapping[str, str], *, http: httpx.Client) -> SharedSandbox:
    """The sandboxes as ``bitloot sandbox`` runs them, configured by ``env``."""
    ipn_secret = env.get(PREFIX + "NOWPAYMENTS_IPN_SECRET", "").strip()
    if not ipn_secret:
        raise SandboxConfigError(
            f"{PREFIX}NOWPAYMENTS_IPN_SECRET is required: the sandbox signs its IPNs with it, "
            "and every shop using the sandbox must be given the same"
        )
    clock = OffsetClock()
    payments = NowPaymentsSandbox(
        api_key=env.get(PREFIX + "NOWPAYMENTS_API_KEY", ""),
        ipn_secret=ipn_secret,
        http=http,
        clock=clock,
        first_payment_id=first_payment_id(),
        seed=fresh_seed(),
        retry_delays=IPN_RETRIES,
    )
    supplier = KinguinSandbox(
        api_key=env.get(PREFIX + "KINGUIN_API_KEY", ""),
        key_delay=1.0,
        clock=clock,
        seed=fresh_seed(),
    )
    btcpay = None
    store_id = env.get(PREFIX + "BTCPAY_STORE_ID", "")
    if store_id:
        btcpay = BtcPaySandbox(
            api_key=env.get(PREFIX + "BTCPAY_API_KEY", ""),
            store_id=store_id,
            http=http,
            clock=clock,
            seed=fresh_seed(),
        )
    return SharedSandbox(payments=payments, supplier=supplier, btcpay=btcpay, clock=clock)


def wait_for_stop(stop: threading.Event) -> None:
    """Block until ``stop`` is set (by a signal handler)."""
    while not stop.wait(0.5):
        pass
