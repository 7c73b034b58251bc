"""A stand-in for a BTCPay Server store that speaks Greenfield and sends signed webhooks.

Serve it with ``SandboxServer``; point ``BtcPayClient`` at ``server.url``.

Greenfield (store-scoped routes, ``Authorization: token <key>``; errors in BTCPay's
shapes: ``{code, message}`` objects, 401 ``unauthenticated``, 403 ``missing-permission``
for another store, 404 ``invoice-not-found``, and validation failures as a 422 array of
``{path, message}``):

- ``POST /api/v1/stores/{store}/invoices``: Standard invoices only; amounts are decimal
  strings, times unix seconds, ``expirationMinutes`` an integer, ``paymentTolerance`` a
  number in 0-100; converts at a fixed rate per currency (crypto amount rounded up to
  8 decimals); answers 200 with ``InvoiceData``.
- ``GET .../invoices[?orderId=]``, ``GET .../invoices/{id}``,
  ``GET .../invoices/{id}/payment-methods``, ``POST .../invoices/{id}/status`` (marking).
- ``POST/GET .../webhooks``, ``DELETE .../webhooks/{id}``,
  ``POST .../webhooks/{id}/deliveries/{delivery}/redeliver``.

Invoices move as BTCPay's invoice watcher moves them: a full payment makes a ``New``
invoice ``Processing`` and, once confirmed, ``Settled``; a short one leaves it ``New`` +
``PaidPartial``; expiry gives ``Expired`` (+ ``PaidPartial``); a payment after expiry
gives ``Expired`` + ``PaidLate`` (never ``Settled``); ``Processing`` that does not confirm
becomes ``Invalid``; a double spend drops ``Processing`` back to ``New`` without a
webhook. Lightning payments are settled on receipt (``InvoicePaymentSettled`` first).

Control, as Python methods (and over HTTP under ``/sandbox/``): ``pay`` (full by
default, or any amount; ``confirm=False`` leaves it waiting for a block), ``confirm``,
``expire``, ``fail``, ``double_spend``, ``redeliver``, ``outage``. (``InvoiceCreated``
is not sent: the shop opened the invoice and knows.) Webhooks go to every
registered webhook whose events match, one at a time in event order, as BTCPay sends
them: indented JSON, ``BTCPay-Sig: sha256=<hex HMAC-SHA256 of the exact bytes>``, a new
``deliveryId`` per attempt and the first attempt's ``originalDeliveryId`` on every retry
and redelivery. Fault injection: ``duplicate`` (each event redelivered at once),
``shuffle`` (a seeded random order), ``retry_delays`` (automatic redelivery after a 5xx,
408, 429 or no answer, BTCPay's schedule compressed), ``redeliver`` (an old event again,
after newer ones).

The API key and webhook secrets are never echoed in a response, except the secret in
the answer that creates a webhook, as BTCPay does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, ROUND_UP, Decimal
from typing import Any, NamedTuple, get_args

import httpx

from bitloot_adapters.btcpay import normalise_method
from bitloot_adapters.clock import SystemClock
from bitloot_adapters.sandbox.faults import FaultPlan, OutageMode
from bitloot_adapters.sandbox.server import Route, SandboxRequest, SandboxResponse, dispatch
from bitloot_adapters.sandbox.wire import decimal_or_none, read_json
from bitloot_core.ports import Clock

__all__ = [
    "BTCPAY_RATES",
    "BtcPayCall",
    "BtcPaySandbox",
    "SentWebhook",
    "WebhookDelivery",
    "btcpay_signature",
]

BTCPAY_RATES: Mapping[str, Decimal] = {
    # The price of one BTC in the invoice currency, as BTCPay's ``rate`` reads.
    "USD": Decimal("64392.23"),
    "EUR": Decimal("59318.40"),
    "GBP": Decimal("50871.15"),
}

_SATOSHI = Decimal("1e-8")
_CENT = Decimal("0.01")
_METHODS = ("BTC-CHAIN", "BTC-LN")
_SPEED_POLICIES = ("HighSpeed", "MediumSpeed", "LowMediumSpeed", "LowSpeed")
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_RETRIED = frozenset({408, 429})
_SERVER_ERROR = 500
_API = "/api/v1/stores/(?P<store_id>[^/]+)"


def btcpay_signature(secret: str, body: bytes) -> str:
    """The ``BTCPay-Sig`` header value for ``body`` under ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookDelivery(NamedTuple):
    """One webhook sent: its type and what the receiver answered (``None``: no answer)."""

    type: str
    answered: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SentWebhook:
    delivery_id: str
    original_delivery_id: str
    webhook_id: str
    invoice_id: str
    type: str
    url: str
    body: bytes
    signature: str
    is_redelivery: bool
    answered: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BtcPayCall:
    """One API call the sandbox received: the body as sent, and the status it answered."""

    method: str
    path: str
    body: bytes
    status: int


@dataclass(slots=True, kw_only=True)
class _Payment:
    id: str
    method: str
    received: int
    value: Decimal
    destination: str
    status: str  # Processing, Settled or Invalid


@dataclass(slots=True, kw_only=True)
class _Invoice:
    id: str
    amount: Decimal
    currency: str
    metadata: dict[str, Any]
    checkout: dict[str, Any]
    created: int
    expires: int
    monitoring_until: int
    rate: Decimal
    due: Decimal  # in BTC, before any payment
    methods: tuple[str, ...]
    tolerance: Decimal
    status: str = "New"
    additional: str = "None"
    payments: list[_Payment] = field(default_factory=list)

    def paid(self) -> Decimal:
        return sum((p.value for p in self.payments if p.status != "Invalid"), Decimal(0))

    def paid_in_full(self) -> bool:
        return self.paid() >= self.due * (100 - self.tolerance) / 100

    def destination(self, method: str) -> str:
        digest = hashlib.sha256(f"{self.id}:{method}".encode()).hexdigest()
        if method == "BTC-LN":
            return "lnbcrt" + digest[:60]
        return "bcrt1q" + digest[:38]


@dataclass(slots=True, kw_only=True)
class _Webhook:
    id: str
    url: str
    secret: str
    enabled: bool = True
    automatic_redelivery: bool = True
    # None: every event.
    events: frozenset[str] | None = None

    def wants(self, event_type: str) -> bool:
        return self.enabled and (self.events is None or event_type in self.events)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Event:
    """One event for one webhook: the body without its per-attempt ids."""

    webhook_id: str
    original_delivery_id: str
    invoice_id: str
    type: str
    fields: Mapping[str, Any]


class SandboxRefused(Exception):
    """A control action the invoice's state does not allow (BTCPay would never do it)."""


class BtcPaySandbox:
    def __init__(
        self,
        *,
        api_key: str,
        store_id: str,
        http: httpx.Client,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        clock: Clock | None = None,
        rates: Mapping[str, Decimal] = BTCPAY_RATES,
        seed: int = 0,
        stall_seconds: float = 0.5,
        webhook_timeout: float = 5.0,
        retry_delays: Sequence[float] = (),
    ) -> None:
        """``webhook_url`` registers a webhook at once (every event) with ``webhook_secret``.

        ``retry_delays``: the waits before each automatic redelivery of a failed webhook
        (BTCPay: 10 s, 1 min, then 6 x 10 min); none by default, so a control call never
        sleeps unless a test asks for it.
        """
        self._api_key = api_key
        self._store_id = store_id
        self._http = http
        self._clock: Clock = clock or SystemClock()
        self._rates = {currency.upper(): rate for currency, rate in rates.items()}
        self._random = random.Random(seed)  # noqa: S311  ids and test orders, guarding nothing
        self._stall_seconds = stall_seconds
        self._webhook_timeout = webhook_timeout
        self._retry_delays = tuple(retry_delays)
        self._faults = FaultPlan(frozenset(get_args(OutageMode)))
        self._lock = threading.Lock()
        # Webhooks leave one at a time, in event order, as BTCPay's per-webhook queue does.
        self._sending = threading.Lock()
        self._stopping = threading.Event()
        self._invoices: dict[str, _Invoice] = {}
        self._webhooks: dict[str, _Webhook] = {}
        self._events: dict[str, _Event] = {}
        self._sent: list[SentWebhook] = []
        self._calls: list[BtcPayCall] = []
        self._routes = self._api_routes() + self._control_routes()
        if webhook_url is not None:
            self.register_webhook(webhook_url, secret=webhook_secret)

    def _api_routes(self) -> tuple[Route, ...]:
        invoice = _API + "/invoices/(?P<invoice_id>[^/]+)"
        webhook = _API + "/webhooks/(?P<webhook_id>[^/]+)"
        return (
            Route("POST", re.compile(_API + "/invoices/?"), self._create_invoice),
            Route("GET", re.compile(_API + "/invoices/?"), self._list_invoices),
            Route("GET", re.compile(invoice), self._get_invoice),
            Route("GET", re.compile(invoice + "/payment-methods"), self._get_payment_methods),
            Route("POST", re.compile(invoice + "/status"), self._mark_invoice),
            Route("POST", re.compile(_API + "/webhooks/?"), self._create_webhook),
            Route("GET", re.compile(_API + "/webhooks/?"), self._list_webhooks),
            Route("DELETE", re.compile(webhook), self._delete_webhook),
            Route(
                "POST",
                re.compile(webhook + "/deliveries/(?P<delivery_id>[^/]+)/redeliver"),
                self._redeliver_route,
            ),
        )

    def _control_routes(self) -> tuple[Route, ...]:
        actions = "pay|confirm|expire|fail|double-spend"
        return (
            Route(
                "POST",
                re.compile(f"/sandbox/invoices/(?P<invoice_id>[^/]+)/(?P<action>{actions})"),
                self._control_invoice,
            ),
            Route(
                "POST",
                re.compile("/sandbox/deliveries/(?P<delivery_id>[^/]+)/redeliver"),
                self._control_redeliver,
            ),
            Route("POST", re.compile("/sandbox/outage"), self._control_outage),
        )

    # -- control -----------------------------------------------------------------------

    @property
    def webhooks(self) -> list[SentWebhook]:
        """Every webhook attempt so far, in sending order."""
        with self._lock:
            return list(self._sent)

    @property
    def calls(self) -> list[BtcPayCall]:
        """Every Greenfield call (under ``/api/v1/``) received so far."""
        with self._lock:
            return list(self._calls)

    @property
    def invoice_ids(self) -> list[str]:
        with self._lock:
            return list(self._invoices)

    def invoice_state(self, invoice_id: str) -> tuple[str, str]:
        """``(status, additionalStatus)`` of an invoice."""
        with self._lock:
            invoice = self._invoice(invoice_id)
            return invoice.status, invoice.additional

    def register_webhook(
        self,
        url: str,
        *,
        secret: str | None = None,
        events: frozenset[str] | None = None,
        automatic_redelivery: bool = True,
    ) -> tuple[str, str]:
        """Register a webhook as the store's settings page does: ``(id, secret)``."""
        with self._lock:
            webhook = _Webhook(
                id=self._new_id(),
                url=url,
                secret=secret or self._new_id(),
                events=events,
                automatic_redelivery=automatic_redelivery,
            )
            self._webhooks[webhook.id] = webhook
            return webhook.id, webhook.secret

    def outage(
        self,
        failures: int,
        mode: OutageMode = "503",
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """The next ``failures`` API calls (matching ``method`` and ``path`` prefix) fail."""
        self._faults.outage(failures, mode, method=method, path=path)

    def pay(
        self,
        invoice_id: str,
        amount: Decimal | None = None,
        *,
        method: str = "BTC-CHAIN",
        confirm: bool = True,
        duplicate: bool = False,
        shuffle: bool = False,
    ) -> list[WebhookDelivery]:
        """Pay ``amount`` in BTC (default: what is still due) and send the webhooks.

        On chain, ``confirm`` also mines the block that settles the payment; without it
        the invoice waits in ``Processing`` for ``confirm``. Lightning settles at once.
        """
        with self._lock:
            invoice = self._invoice(invoice_id)
            method = normalise_method(method)
            if method not in invoice.methods:
                raise SandboxRefused(f"invoice {invoice_id} does not offer {method}")
            value = invoice.due - invoice.paid() if amount is None else amount
            if amount is None and value <= 0:
                raise SandboxRefused(f"nothing is due on invoice {invoice_id}")
            if not value.is_finite() or value <= 0:
                raise ValueError("a payment amount must be positive")
            events = self._receive(invoice, method, value.quantize(_SATOSHI, ROUND_HALF_UP))
            if confirm:
                events += self._settle_payments(invoice)
            if shuffle:
                self._random.shuffle(events)
        return self._deliver(events, duplicate=duplicate)

    def confirm(self, invoice_id: str) -> list[WebhookDelivery]:
        """A block confirms every pending payment of the invoice."""
        with self._lock:
            events = self._settle_payments(self._invoice(invoice_id))
        return self._deliver(events)

    def expire(self, invoice_id: str) -> list[WebhookDelivery]:
        """The invoice's timer runs out (only a ``New`` invoice expires)."""
        with self._lock:
            invoice = self._invoice(invoice_id)
            if invoice.status != "New":
                raise SandboxRefused(f"a {invoice.status} invoice does not expire")
            partial = invoice.additional == "PaidPartial"
            invoice.status = "Expired"
            events = [self._event(invoice, "InvoiceExpired", partiallyPaid=partial)]
            if partial:
                events.append(self._event(invoice, "InvoiceExpiredPaidPartial"))
        return self._deliver(events)

    def fail(self, invoice_id: str) -> list[WebhookDelivery]:
        """The invoice becomes ``Invalid``: a ``Processing`` one that never confirmed (the
        monitoring window closed), or any other the merchant marks invalid."""
        with self._lock:
            invoice = self._invoice(invoice_id)
            if invoice.status == "Processing":
                invoice.status = "Invalid"
                events = [self._event(invoice, "InvoiceInvalid", manuallyMarked=False)]
            else:
                events = self._mark(invoice, "Invalid")
        return self._deliver(events)

    def double_spend(self, invoice_id: str) -> None:
        """Every unconfirmed payment is replaced: ``Processing`` falls back to ``New``.

        BTCPay sends no webhook for this; only reading the invoice shows it.
        """
        with self._lock:
            invoice = self._invoice(invoice_id)
            for payment in invoice.payments:
                if payment.status == "Processing":
                    payment.status = "Invalid"
            if invoice.status == "Processing" and not invoice.paid_in_full():
                invoice.status = "New"
                invoice.additional = "PaidPartial" if invoice.paid() > 0 else "None"

    def redeliver(self, delivery_id: str) -> WebhookDelivery:
        """Send the event of an earlier delivery again, with a new delivery id."""
        with self._lock:
            sent = next((s for s in self._sent if s.delivery_id == delivery_id), None)
            if sent is None:
                raise LookupError(f"no sandbox webhook delivery {delivery_id!r}")
            event = self._events[sent.original_delivery_id]
        with self._sending:
            return self._attempt(event, redelivery=True, retry=False)

    def close(self) -> None:
        """Cut short any redelivery wait (the server closing)."""
        self._stopping.set()

    # -- the invoice watcher ------------------------------------------------------------

    def _receive(self, invoice: _Invoice, method: str, value: Decimal) -> list[_Event]:
        after_expiration = invoice.status in ("Expired", "Invalid")
        lightning = method == "BTC-LN"
        payment = _Payment(
            id=self._payment_id(invoice, method),
            method=method,
            received=self._now(),
            value=value,
            destination=invoice.destination(method),
            status="Settled" if lightning else "Processing",
        )
        invoice.payments.append(payment)
        received = self._payment_event(invoice, "InvoiceReceivedPayment", payment, after_expiration)
        # A Lightning payment is stored already settled, which BTCPay announces first.
        events = (
            [self._payment_event(invoice, "InvoicePaymentSettled", payment, after_expiration)]
            if lightning
            else []
        )
        events.append(received)
        events += self._evaluate(invoice)
        return events

    def _evaluate(self, invoice: _Invoice) -> list[_Event]:
        """What BTCPay's watcher does after a payment changed (not the timers)."""
        if invoice.additional == "Marked":
            return []
        full = invoice.paid_in_full()
        over = invoice.paid() > invoice.due
        if invoice.status == "Expired":
            if invoice.additional != "PaidLate" and full:
                invoice.additional = "PaidLate"
                return [self._event(invoice, "InvoicePaidAfterExpiration")]
            if invoice.additional == "None":
                invoice.additional = "PaidPartial"
            return []
        if invoice.status == "New":
            if not full:
                invoice.additional = "PaidPartial"
                return []
            invoice.status = "Processing"
            invoice.additional = "PaidOver" if over else "None"
            events = [self._event(invoice, "InvoiceProcessing", overPaid=over)]
            return events + self._settle_if_confirmed(invoice)
        if invoice.status == "Processing":
            invoice.additional = "PaidOver" if over else invoice.additional
        return []

    def _settle_payments(self, invoice: _Invoice) -> list[_Event]:
        after_expiration = invoice.status in ("Expired", "Invalid")
        events = []
        for payment in invoice.payments:
            if payment.status == "Processing":
                payment.status = "Settled"
                events.append(
                    self._payment_event(invoice, "InvoicePaymentSettled", payment, after_expiration)
                )
        return events + self._settle_if_confirmed(invoice)

    def _settle_if_confirmed(self, invoice: _Invoice) -> list[_Event]:
        confirmed = all(p.status != "Processing" for p in invoice.payments)
        if invoice.status != "Processing" or not confirmed:
            return []
        invoice.status = "Settled"
        over = invoice.additional == "PaidOver"
        return [self._event(invoice, "InvoiceSettled", manuallyMarked=False, overPaid=over)]

    def _mark(self, invoice: _Invoice, status: str) -> list[_Event]:
        """Merchant marking, as BTCPay allows it (its ``InvoiceState`` rules)."""
        marked = invoice.additional == "Marked"
        allowed = invoice.status in ("New", "Processing", "Expired") or (
            marked and invoice.status != status
        )
        if status == "Settled":
            allowed = allowed or invoice.status == "Invalid"
        if not allowed:
            raise SandboxRefused(f"a {invoice.status} invoice cannot be marked {status}")
        invoice.status, invoice.additional = status, "Marked"
        if status == "Settled":
            return [self._event(invoice, "InvoiceSettled", manuallyMarked=True, overPaid=False)]
        return [self._event(invoice, "InvoiceInvalid", manuallyMarked=True)]

    # -- webhooks ------------------------------------------------------------------------

    def _event(self, invoice: _Invoice, event_type: str, **extra: Any) -> _Event:
        """The event for the first webhook that wants it; ``_deliver`` fans it out."""
        return _Event(
            webhook_id="",
            original_delivery_id="",
            invoice_id=invoice.id,
            type=event_type,
            fields={
                "timestamp": self._now(),
                "storeId": self._store_id,
                "invoiceId": invoice.id,
                "metadata": dict(invoice.metadata),
                **extra,
            },
        )

    def _payment_event(
        self, invoice: _Invoice, event_type: str, payment: _Payment, after_expiration: bool
    ) -> _Event:
        return self._event(
            invoice,
            event_type,
            afterExpiration=after_expiration,
            paymentMethodId=payment.method,
            payment=_payment_json(payment),
        )

    def _deliver(self, events: list[_Event], *, duplicate: bool = False) -> list[WebhookDelivery]:
        """Send each event to every webhook that wants it, one at a time, in order."""
        with self._lock:
            bound = [
                replace(event, webhook_id=webhook.id, original_delivery_id=self._new_id())
                for event in events
                for webhook in self._webhooks.values()
                if webhook.wants(event.type)
            ]
            for event in bound:
                self._events[event.original_delivery_id] = event
        deliveries = []
        with self._sending:
            for event in bound:
                deliveries.append(self._attempt(event, redelivery=False, retry=True))
                if duplicate:
                    deliveries.append(self._attempt(event, redelivery=True, retry=True))
        return deliveries

    def _attempt(self, event: _Event, *, redelivery: bool, retry: bool) -> WebhookDelivery:
        """One delivery, then BTCPay's automatic redeliveries while it failed."""
        delays = iter(self._retry_delays if retry else ())
        while True:
            answered, automatic = self._post(event, redelivery=redelivery)
            failed = answered is None or answered in _RETRIED or answered >= _SERVER_ERROR
            delay = next(delays, None) if failed and automatic else None
            if delay is None or self._stopping.wait(delay):
                return WebhookDelivery(event.type, answered)
            redelivery = True

    def _post(self, event: _Event, *, redelivery: bool) -> tuple[int | None, bool]:
        """Sign and send one attempt under the webhook's current secret and URL."""
        with self._lock:
            webhook = self._webhooks.get(event.webhook_id)
            delivery_id = event.original_delivery_id if not redelivery else self._new_id()
        if webhook is None:
            return None, False
        envelope = {
            "deliveryId": delivery_id,
            "webhookId": webhook.id,
            "originalDeliveryId": event.original_delivery_id,
            "isRedelivery": redelivery,
            "type": event.type,
            **event.fields,
        }
        # BTCPay sends indented JSON; the signature covers exactly these bytes.
        body = json.dumps(envelope, indent=2, default=_decimal_text).encode()
        signature = btcpay_signature(webhook.secret, body)
        try:
            response = self._http.post(
                webhook.url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "BTCPay-Sig": signature,
                    "User-Agent": "BTCPayServer/2.4 (bitloot sandbox)",
                },
                timeout=self._webhook_timeout,
            )
        except httpx.HTTPError:
            answered: int | None = None
        else:
            answered = response.status_code
        sent = SentWebhook(
            delivery_id=delivery_id,
            original_delivery_id=event.original_delivery_id,
            webhook_id=webhook.id,
            invoice_id=event.invoice_id,
            type=event.type,
            url=webhook.url,
            body=body,
            signature=signature,
            is_redelivery=redelivery,
            answered=answered,
        )
        with self._lock:
            self._sent.append(sent)
        return answered, webhook.automatic_redelivery

    # -- helpers -------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock.now().timestamp())

    def _new_id(self) -> str:
        return _base58(self._random.randbytes(16))

    def _payment_id(self, invoice: _Invoice, method: str) -> str:
        seed = f"{invoice.id}:{method}:{len(invoice.payments)}".encode()
        txid = hashlib.sha256(seed).hexdigest()
        return txid if method == "BTC-LN" else f"{txid}-0"

    def _invoice(self, invoice_id: str) -> _Invoice:
        invoice = self._invoices.get(invoice_id)
        if invoice is None:
            raise LookupError(f"no sandbox invoice {invoice_id!r}")
        return invoice

    # -- HTTP --------------------------------------------------------------------------

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        not_found = _error(404, "not-found", "Not found")
        if not request.path.startswith("/api/v1/"):
            return dispatch(request, self._routes, not_found)
        response = self._api_call(request, not_found)
        call = BtcPayCall(
            method=request.method, path=request.path, body=request.body, status=response.status
        )
        with self._lock:
            self._calls.append(call)
        return response

    def _api_call(self, request: SandboxRequest, not_found: SandboxResponse) -> SandboxResponse:
        fault = self._faults.take(request.method, request.path)
        if fault is None:
            return self._authorised(request) or dispatch(request, self._routes, not_found)
        if fault == "slow":
            handled = self._authorised(request) or dispatch(request, self._routes, not_found)
            return replace(handled, stall=self._stall_seconds)
        if fault == "timeout":
            return SandboxResponse(status=504, content_type="text/plain", stall=self._stall_seconds)
        if fault == "429":
            return _error(429, "too-many-requests", "Too many requests")
        return SandboxResponse(
            status=int(fault), content_type="text/html", body=b"<html>Bad Gateway</html>"
        )

    def _authorised(self, request: SandboxRequest) -> SandboxResponse | None:
        """None when the key is ours and the path names our store; else the refusal."""
        given = request.header("authorization") or ""
        match = re.fullmatch(r"(?i:token|bearer)\s+(\S+)", given.strip())
        key = match.group(1) if match else ""
        # An empty api_key accepts any key (a shared sandbox, ``bitloot sandbox``).
        accepted = (
            bool(key)
            if not self._api_key
            else hmac.compare_digest(key.encode(), self._api_key.encode())
        )
        if not accepted:
            return _error(
                401, "unauthenticated", "Authentication is required for accessing this endpoint"
            )
        store = re.match(_API, request.path)
        if store is not None and store.group("store_id") != self._store_id:
            return SandboxResponse(
                status=403,
                body=_json(
                    {
                        "code": "missing-permission",
                        "message": "Insufficient API Permissions. "
                        "Please use an API key with permission: btcpay.store.canviewinvoices",
                        "missingPermission": "btcpay.store.canviewinvoices",
                    }
                ),
            )
        return None

    def _create_invoice(self, request: SandboxRequest, store_id: str) -> SandboxResponse:
        del store_id
        body = read_json(request.body)
        if not isinstance(body, dict):
            return _invalid("", "The request body must be a JSON object")
        problems = _invoice_request_problems(body, self._rates)
        if problems:
            return SandboxResponse(status=422, body=_json(problems))
        currency = str(body.get("currency") or "USD").strip().upper()
        if currency not in self._rates:
            return _error(400, "generic-error", f"Currency {currency} has no rate in this store")
        amount = decimal_or_none(body["amount"])
        if amount is None or amount <= 0:
            return _error(400, "generic-error", "The sandbox only creates priced invoices")
        checkout = body.get("checkout") or {}
        methods = tuple(
            normalise_method(m) for m in checkout.get("paymentMethods") or ("BTC-CHAIN",)
        )
        now = self._now()
        expiration = int(checkout.get("expirationMinutes") or 15)
        monitoring = int(checkout.get("monitoringMinutes") or 1440)
        rate = self._rates[currency]
        amount = amount.quantize(_CENT, ROUND_HALF_UP)
        with self._lock:
            invoice = _Invoice(
                id=self._new_id(),
                amount=amount,
                currency=currency,
                metadata=dict(body.get("metadata") or {}),
                checkout={
                    "speedPolicy": checkout.get("speedPolicy") or "MediumSpeed",
                    "paymentMethods": list(methods),
                    "defaultPaymentMethod": checkout.get("defaultPaymentMethod") or methods[0],
                    "lazyPaymentMethods": bool(checkout.get("lazyPaymentMethods", False)),
                    "expirationMinutes": expiration,
                    "monitoringMinutes": monitoring,
                    # A JSON number in BTCPay (a percentage, not money).
                    "paymentTolerance": float(checkout.get("paymentTolerance") or 0),
                    "redirectURL": checkout.get("redirectURL"),
                    "redirectAutomatically": bool(checkout.get("redirectAutomatically", False)),
                    "defaultLanguage": checkout.get("defaultLanguage"),
                },
                created=now,
                expires=now + expiration * 60,
                monitoring_until=now + (expiration + monitoring) * 60,
                rate=rate,
                due=(amount / rate).quantize(_SATOSHI, ROUND_UP),
                methods=methods,
                tolerance=Decimal(checkout.get("paymentTolerance") or 0),
            )
            self._invoices[invoice.id] = invoice
            answer = self._invoice_json(invoice, request)
        return SandboxResponse(status=200, body=_json(answer))

    def _list_invoices(self, request: SandboxRequest, store_id: str) -> SandboxResponse:
        del store_id
        order_id = request.query.get("orderId")
        with self._lock:
            found = [
                self._invoice_json(invoice, request)
                for invoice in reversed(self._invoices.values())
                if order_id is None or invoice.metadata.get("orderId") == order_id
            ]
        return SandboxResponse(status=200, body=_json(found))

    def _get_invoice(
        self, request: SandboxRequest, store_id: str, invoice_id: str
    ) -> SandboxResponse:
        del store_id
        with self._lock:
            invoice = self._invoices.get(invoice_id)
            if invoice is None:
                return _invoice_not_found()
            return SandboxResponse(status=200, body=_json(self._invoice_json(invoice, request)))

    def _get_payment_methods(
        self, request: SandboxRequest, store_id: str, invoice_id: str
    ) -> SandboxResponse:
        del request, store_id
        with self._lock:
            invoice = self._invoices.get(invoice_id)
            if invoice is None:
                return _invoice_not_found()
            return SandboxResponse(status=200, body=_json(_payment_methods_json(invoice)))

    def _mark_invoice(
        self, request: SandboxRequest, store_id: str, invoice_id: str
    ) -> SandboxResponse:
        del store_id
        body = read_json(request.body)
        status = body.get("status") if isinstance(body, dict) else None
        if status not in ("Settled", "Invalid"):
            return _invalid("Status", "Status can only be Settled or Invalid")
        with self._lock:
            invoice = self._invoices.get(invoice_id)
            if invoice is None:
                return _invoice_not_found()
            try:
                events = self._mark(invoice, str(status))
            except SandboxRefused as exc:
                return _invalid("Status", str(exc))
            answer = self._invoice_json(invoice, request)
        self._deliver(events)
        return SandboxResponse(status=200, body=_json(answer))

    def _create_webhook(self, request: SandboxRequest, store_id: str) -> SandboxResponse:
        del store_id
        body = read_json(request.body)
        if not isinstance(body, dict):
            return _invalid("", "The request body must be a JSON object")
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return _invalid("Url", "Invalid Url")
        authorized = body.get("authorizedEvents") or {}
        events = None
        if isinstance(authorized, dict) and authorized.get("everything") is False:
            events = frozenset(str(e) for e in authorized.get("specificEvents") or ())
        secret = body.get("secret")
        webhook_id, secret = self.register_webhook(
            url,
            secret=secret if isinstance(secret, str) and secret else None,
            events=events,
            automatic_redelivery=body.get("automaticRedelivery") is not False,
        )
        with self._lock:
            answer = _webhook_json(self._webhooks[webhook_id])
        # The one answer that carries the secret, as in BTCPay.
        return SandboxResponse(status=200, body=_json({**answer, "secret": secret}))

    def _list_webhooks(self, request: SandboxRequest, store_id: str) -> SandboxResponse:
        del request, store_id
        with self._lock:
            answer = [_webhook_json(webhook) for webhook in self._webhooks.values()]
        return SandboxResponse(status=200, body=_json(answer))

    def _delete_webhook(
        self, request: SandboxRequest, store_id: str, webhook_id: str
    ) -> SandboxResponse:
        del request, store_id
        with self._lock:
            if self._webhooks.pop(webhook_id, None) is None:
                return _error(404, "webhook-not-found", "The webhook was not found")
        return SandboxResponse(status=200, body=b"")

    def _redeliver_route(
        self, request: SandboxRequest, store_id: str, webhook_id: str, delivery_id: str
    ) -> SandboxResponse:
        del request, store_id
        with self._lock:
            known = any(
                s.delivery_id == delivery_id and s.webhook_id == webhook_id for s in self._sent
            )
        if not known:
            return _error(404, "webhookdelivery-not-found", "The webhook delivery was not found")
        self.redeliver(delivery_id)
        with self._lock:
            newest = self._sent[-1].delivery_id
        return SandboxResponse(status=200, body=_json(newest))

    def _invoice_json(self, invoice: _Invoice, request: SandboxRequest) -> dict[str, Any]:
        host = request.header("host") or "127.0.0.1"
        paid = (invoice.paid() * invoice.rate).quantize(_CENT, ROUND_HALF_UP)
        return {
            "id": invoice.id,
            "storeId": self._store_id,
            "amount": invoice.amount,
            "paidAmount": paid,
            "currency": invoice.currency,
            "type": "Standard",
            "checkoutLink": f"http://{host}/i/{invoice.id}",
            "createdTime": invoice.created,
            "expirationTime": invoice.expires,
            "monitoringExpiration": invoice.monitoring_until,
            "status": invoice.status,
            "additionalStatus": invoice.additional,
            "availableStatusesForManualMarking": _markable(invoice),
            "archived": False,
            "metadata": invoice.metadata,
            "checkout": invoice.checkout,
            "receipt": {"enabled": True, "showQR": True, "showPayments": True},
        }

    # -- HTTP control -------------------------------------------------------------------

    def _control_invoice(
        self, request: SandboxRequest, invoice_id: str, action: str
    ) -> SandboxResponse:
        body = read_json(request.body) if request.body else {}
        if not isinstance(body, dict):
            return _error(400, "invalid-request", "Request body must be a JSON object")
        try:
            if action == "pay":
                amount = None if body.get("amount") is None else decimal_or_none(body["amount"])
                if body.get("amount") is not None and (amount is None or amount <= 0):
                    return _error(400, "invalid-request", '"amount" must be positive')
                deliveries = self.pay(
                    invoice_id,
                    amount,
                    method=str(body.get("method") or "BTC-CHAIN"),
                    confirm=body.get("confirm") is not False,
                    duplicate=bool(body.get("duplicate")),
                    shuffle=bool(body.get("shuffle")),
                )
            elif action == "double-spend":
                self.double_spend(invoice_id)
                deliveries = []
            else:
                act = {"confirm": self.confirm, "expire": self.expire, "fail": self.fail}[action]
                deliveries = act(invoice_id)
        except LookupError as exc:
            return _error(404, "invoice-not-found", str(exc))
        except SandboxRefused as exc:
            return _error(409, "invalid-state", str(exc))
        answer = {"webhooks": [delivery._asdict() for delivery in deliveries]}
        return SandboxResponse(status=200, body=_json(answer))

    def _control_redeliver(self, request: SandboxRequest, delivery_id: str) -> SandboxResponse:
        del request
        try:
            delivery = self.redeliver(delivery_id)
        except LookupError as exc:
            return _error(404, "webhookdelivery-not-found", str(exc))
        return SandboxResponse(status=200, body=_json({"webhooks": [delivery._asdict()]}))

    def _control_outage(self, request: SandboxRequest) -> SandboxResponse:
        body = read_json(request.body)
        failures = body.get("failures") if isinstance(body, dict) else None
        mode = body.get("mode", "503") if isinstance(body, dict) else None
        if not isinstance(failures, int) or failures < 0 or mode not in get_args(OutageMode):
            return _error(400, "invalid-request", "expected {failures: N, mode?}")
        self._faults.outage(failures, str(mode))
        return SandboxResponse(status=200, body=_json({"pending": self._faults.pending}))


# --- shapes -----------------------------------------------------------------------------


def _invoice_request_problems(
    body: Mapping[str, Any], rates: Mapping[str, Decimal]
) -> list[dict[str, str]]:
    """BTCPay's validation problems with a create-invoice body, as ``{path, message}``."""
    del rates  # a missing rate is a generic error, not a validation problem
    problems: list[dict[str, str]] = []
    amount = body.get("amount")
    parsed = decimal_or_none(amount)
    if amount is not None and (parsed is None or parsed < 0):
        problems.append({"path": "Amount", "message": "Amount must be a positive number"})
    if body.get("currency") is not None and not isinstance(body["currency"], str):
        problems.append({"path": "Currency", "message": "Currency must be a string"})
    if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
        problems.append({"path": "Metadata", "message": "Metadata must be a JSON object"})
    checkout = body.get("checkout")
    if checkout is None:
        return problems
    if not isinstance(checkout, dict):
        return [*problems, {"path": "Checkout", "message": "Checkout must be a JSON object"}]
    return problems + _checkout_problems(checkout)


def _checkout_problems(checkout: Mapping[str, Any]) -> list[dict[str, str]]:
    problems: list[dict[str, str]] = []
    minutes = checkout.get("expirationMinutes")
    if minutes is not None and (not _is_int(minutes) or minutes < 1):
        problems.append(
            {
                "path": "Checkout.Expiration",
                "message": "Expiration time must be at least 30 seconds",
            }
        )
    monitoring = checkout.get("monitoringMinutes")
    if monitoring is not None and (not _is_int(monitoring) or monitoring < 0):
        problems.append(
            {"path": "Checkout.Monitoring", "message": "Monitoring time must be positive"}
        )
    tolerance = checkout.get("paymentTolerance")
    if tolerance is not None and (
        isinstance(tolerance, bool | str)
        or decimal_or_none(tolerance) is None
        or not 0 <= Decimal(tolerance) <= 100  # noqa: PLR2004  a percentage
    ):
        problems.append(
            {
                "path": "Checkout.PaymentTolerance",
                "message": "PaymentTolerance can only be between 0 and 100 percent",
            }
        )
    methods = checkout.get("paymentMethods")
    if methods is not None:
        if not isinstance(methods, list) or not methods:
            problems.append(
                {"path": "Checkout.PaymentMethods", "message": "Invalid payment methods"}
            )
        else:
            problems += [
                {"path": f"Checkout.PaymentMethods[{index}]", "message": "Invalid payment method"}
                for index, method in enumerate(methods)
                if not isinstance(method, str) or normalise_method(method) not in _METHODS
            ]
    policy = checkout.get("speedPolicy")
    if policy is not None and policy not in _SPEED_POLICIES:
        problems.append({"path": "Checkout.SpeedPolicy", "message": "Invalid speed policy"})
    return problems


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _payment_methods_json(invoice: _Invoice) -> list[dict[str, Any]]:
    paid_total = invoice.paid()
    answer = []
    for method in invoice.methods:
        destination = invoice.destination(method)
        scheme = (
            "lightning:" + destination
            if method == "BTC-LN"
            else (f"bitcoin:{destination}?amount={format(invoice.due, 'f')}")
        )
        mine = [p for p in invoice.payments if p.method == method and p.status != "Invalid"]
        answer.append(
            {
                "paymentMethodId": method,
                "currency": "BTC",
                "destination": destination,
                "paymentLink": scheme,
                "rate": invoice.rate,
                "amount": invoice.due,
                "paymentMethodPaid": sum((p.value for p in mine), Decimal(0)),
                "totalPaid": paid_total,
                "due": invoice.due - paid_total,
                "paymentMethodFee": Decimal("0E-8"),
                "activated": True,
                "payments": [_payment_json(p) for p in mine],
                "additionalData": {},
            }
        )
    return answer


def _payment_json(payment: _Payment) -> dict[str, Any]:
    return {
        "id": payment.id,
        "receivedDate": payment.received,
        "value": payment.value,
        "fee": Decimal("0E-8"),
        "status": payment.status,
        "destination": payment.destination,
    }


def _webhook_json(webhook: _Webhook) -> dict[str, Any]:
    events = sorted(webhook.events) if webhook.events is not None else []
    return {
        "id": webhook.id,
        "enabled": webhook.enabled,
        "automaticRedelivery": webhook.automatic_redelivery,
        "url": webhook.url,
        "authorizedEvents": {"everything": webhook.events is None, "specificEvents": events},
    }


def _markable(invoice: _Invoice) -> list[str]:
    marked = invoice.additional == "Marked"
    settle = invoice.status in ("New", "Processing", "Expired", "Invalid") or (
        marked and invoice.status != "Settled"
    )
    invalid = invoice.status in ("New", "Processing", "Expired") or (
        marked and invoice.status != "Invalid"
    )
    return [name for name, ok in (("Settled", settle), ("Invalid", invalid)) if ok]


def _base58(raw: bytes) -> str:
    number = int.from_bytes(raw, "big")
    digits = ""
    while number:
        number, rest = divmod(number, 58)
        digits = _BASE58[rest] + digits
    return digits or _BASE58[0]


def _decimal_text(value: object) -> str:
    """BTCPay writes every decimal as a string, at the scale it holds."""
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=_decimal_text).encode()


def _error(status: int, code: str, message: str) -> SandboxResponse:
    return SandboxResponse(status=status, body=_json({"code": code, "message": message}))


def _invalid(path: str, message: str) -> SandboxResponse:
    return SandboxResponse(status=422, body=_json([{"path": path, "message": message}]))


def _invoice_not_found() -> SandboxResponse:
    return _error(404, "invoice-not-found", "The invoice was not found")
