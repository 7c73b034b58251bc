"""A stand-in for NOWPayments that speaks its REST API and sends signed IPNs.

Serve it with ``SandboxServer``; point ``NowPaymentsClient`` at ``f"{server.url}/v1"``.

REST (``x-api-key`` checked on the payment endpoints, errors in the provider's shape
``{"status":false,"statusCode":..,"code":..,"message":..}``):

- ``POST /v1/payment``: validates the body (``INVALID_REQUEST_PARAMS``), refuses amounts
  below ``min_price_amount`` (``AMOUNT_MINIMAL_ERROR``), converts at a fixed rate per pay
  currency (``pay_amount`` rounded up to 8 decimals), answers 201 with ``payment_id`` as
  a string, as the real API does.
- ``GET /v1/payment/{id}``: the payment, with the IPN's fields (``payment_id`` a number)
  and ``created_at`` / ``updated_at`` as ISO 8601, as the API (and its SDKs) have them.
- ``GET /v1/payment/``: the list (``limit``, ``page``, ``sortBy``, ``orderBy``,
  ``dateFrom``, ``dateTo``; ``{"data","limit","page","pagesCount","total"}``).
- ``GET /v1/currencies``, ``GET /v1/full-currencies``, ``GET /v1/min-amount``,
  ``GET /v1/estimate`` (at the sandbox's fixed rates), ``POST /v1/invoice``.
- ``GET /v1/status``: ``{"message":"OK"}``.

tests/sdk runs the official JavaScript client against these routes.

Control, as Python methods (and over HTTP under ``/sandbox/``): ``pay`` sends the IPNs of
a full payment (``waiting`` → ``confirming`` → ``confirmed`` → ``sending`` → ``finished``)
or a short one (``waiting`` → ``confirming`` → ``partially_paid``), optionally each twice
(``duplicate``) or in a seeded random order (``shuffle``); ``fail`` and ``expire`` send one
IPN each; ``outage`` plans failures. Every IPN is what NOWPayments sends: the provider's
fields, numbers as JSON numbers, ``updated_at`` in epoch milliseconds from the injected
clock, the body printed as Node's ``JSON.stringify`` of the key-sorted object, signed with
HMAC-SHA512 (hex, ``x-nowpayments-sig``) under the IPN secret.

The API key and IPN secret are never echoed in a response.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import random
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, ROUND_UP, Decimal
from typing import Any, Final, NamedTuple, get_args

import httpx

from bitloot_adapters.clock import SystemClock
from bitloot_adapters.sandbox.faults import FaultPlan, OutageMode
from bitloot_adapters.sandbox.outbox import Outbox
from bitloot_adapters.sandbox.server import Route, SandboxRequest, SandboxResponse, dispatch
from bitloot_adapters.sandbox.wire import decimal_or_none, json_body, read_json
from bitloot_core.ports import Clock
from bitloot_core.providers.nowpayments import canonical_json

__all__ = ["DEFAULT_RATES", "IpnDelivery", "NowPaymentsCall", "NowPaymentsSandbox", "SentIpn"]

DEFAULT_RATES: Mapping[str, Decimal] = {
    # Units of the pay currency per unit of the price currency, whatever that is.
    "btc": Decimal("0.0000105"),
    "eth": Decimal("0.00031"),
    "ltc": Decimal("0.0118"),
    "usdttrc20": Decimal("1.002"),
}

FULL_PAYMENT = ("waiting", "confirming", "confirmed", "sending", "finished")
SHORT_PAYMENT = ("waiting", "confirming", "partially_paid")

_SATOSHI = Decimal("1e-8")
_SERVICE_FEE = Decimal("0.005")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURRENCY = re.compile(r"[a-z0-9]{2,20}")
_REQUIRED = ("price_amount", "price_currency", "pay_currency")
_OPTIONAL_TEXT = ("ipn_callback_url", "order_id", "order_description", "purchase_id")


class IpnDelivery(NamedTuple):
    """One IPN: its status and what the receiver answered (``None``: unreachable, or not
    sent yet by a ``pay`` that did not wait)."""

    status: str
    answered: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SentIpn:
    payment_id: str
    status: str
    url: str
    body: bytes
    signature: str
    answered: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class NowPaymentsCall:
    """One API call the sandbox received: the body as sent, and the status it answered."""

    method: str
    path: str
    body: bytes
    status: int


@dataclass(slots=True, kw_only=True)
class _Payment:
    payment_id: int
    purchase_id: str
    order_id: str | None
    order_description: str | None
    price_amount: Decimal
    price_currency: str
    pay_amount: Decimal
    pay_currency: str
    pay_address: str
    ipn_callback_url: str | None
    created_at: datetime
    updated_at: datetime
    status: str = "waiting"
    actually_paid: Decimal = field(default_factory=Decimal)
    invoice_id: int | None = None


class NowPaymentsSandbox:
    def __init__(
        self,
        *,
        api_key: str,
        ipn_secret: str,
        http: httpx.Client,
        clock: Clock | None = None,
        rates: Mapping[str, Decimal] = DEFAULT_RATES,
        min_price_amount: Decimal = Decimal("0.5"),
        payment_window: timedelta = timedelta(minutes=20),
        first_payment_id: int = 5_800_000_001,
        seed: int = 0,
        stall_seconds: float = 0.5,
        ipn_timeout: float = 5.0,
        retry_delays: Sequence[float] = (),
    ) -> None:
        """``retry_delays``: the waits before each new attempt of an IPN that was not
        answered, or answered 5xx (NOWPayments retries; the default sends once)."""
        self._api_key = api_key
        self._ipn_key = ipn_secret.strip().encode()
        self._http = http
        self._clock: Clock = clock or SystemClock()
        self._rates = {currency.lower(): rate for currency, rate in rates.items()}
        self._min_price_amount = min_price_amount
        self._payment_window = payment_window
        self._ids = itertools.count(first_payment_id)
        self._random = random.Random(seed)  # noqa: S311  orders test IPNs, guards nothing
        self._stall_seconds = stall_seconds
        self._ipn_timeout = ipn_timeout
        self._faults = FaultPlan(frozenset(get_args(OutageMode)))
        self._lock = threading.Lock()
        self._payments: dict[int, _Payment] = {}
        self._invoices: set[int] = set()
        self._events: list[SentIpn] = []
        self._calls: list[NowPaymentsCall] = []
        self._outbox = Outbox(retry_delays=retry_delays, name="sandbox-nowpayments-ipns")
        self._routes = (
            Route("GET", re.compile(r"/v1/status"), self._status),
            Route("GET", re.compile(r"/v1/currencies"), self._currencies),
            Route("GET", re.compile(r"/v1/full-currencies"), self._full_currencies),
            Route("GET", re.compile(r"/v1/min-amount"), self._min_amount),
            Route("GET", re.compile(r"/v1/estimate"), self._estimate),
            Route("POST", re.compile(r"/v1/payment/?"), self._create_payment),
            Route("GET", re.compile(r"/v1/payment/?"), self._list_payments),
            Route("GET", re.compile(r"/v1/payment/(?P<payment_id>[^/]+)"), self._get_payment),
            Route("POST", re.compile(r"/v1/invoice/?"), self._create_invoice),
            Route(
                "POST",
                re.compile(r"/sandbox/payments/(?P<payment_id>[^/]+)/(?P<action>pay|fail|expire)"),
                self._control_payment,
            ),
            Route("POST", re.compile(r"/sandbox/outage"), self._control_outage),
        )

    # -- control -----------------------------------------------------------------------

    @property
    def events(self) -> list[SentIpn]:
        """Every IPN sent so far, in sending order."""
        with self._lock:
            return list(self._events)

    @property
    def calls(self) -> list[NowPaymentsCall]:
        """Every API call (under ``/v1/``) received so far."""
        with self._lock:
            return list(self._calls)

    @property
    def payment_ids(self) -> list[str]:
        with self._lock:
            return [str(payment_id) for payment_id in self._payments]

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
        payment_id: str,
        amount: Decimal | None = None,
        *,
        duplicate: bool = False,
        shuffle: bool = False,
        wait: float | None = None,
    ) -> list[IpnDelivery]:
        """Pay ``amount`` (default: the full ``pay_amount``) and send the IPNs that follow.

        The IPNs go out from the sandbox's own thread, in order; this waits up to
        ``wait`` seconds (None: as long as it takes) for their first attempts.
        """
        with self._lock:
            payment = self._payable(payment_id)
            paid = payment.pay_amount if amount is None else amount
            if not paid.is_finite() or paid <= 0:
                raise ValueError("a payment amount must be positive")
            statuses = FULL_PAYMENT if paid >= payment.pay_amount else SHORT_PAYMENT
            # Each status is a snapshot: `waiting` reports nothing paid yet.
            ipns = [
                self._ipn(payment, status, Decimal(0) if status == "waiting" else paid)
                for status in statuses
            ]
            payment.status, payment.actually_paid = statuses[-1], paid
            payment.updated_at = self._clock.now()
            if duplicate:
                ipns = [ipn for ipn in ipns for _ in range(2)]
            if shuffle:
                self._random.shuffle(ipns)
        return self._deliver(payment, ipns, wait)

    def fail(self, payment_id: str, *, wait: float | None = None) -> list[IpnDelivery]:
        """Send a ``failed`` IPN."""
        return self._single(payment_id, "failed", wait)

    def expire(self, payment_id: str, *, wait: float | None = None) -> list[IpnDelivery]:
        """Send an ``expired`` IPN."""
        return self._single(payment_id, "expired", wait)

    def close(self) -> None:
        """Stop sending: IPN retries still pending are dropped."""
        self._outbox.close()

    def ipn_body(self, payment_id: str) -> bytes:
        """The payment as ``GET /v1/payment/{id}`` and an IPN print it now."""
        with self._lock:
            payment = self._payment(payment_id)
            return self._ipn(payment, payment.status, payment.actually_paid)[1]

    def _single(self, payment_id: str, status: str, wait: float | None) -> list[IpnDelivery]:
        with self._lock:
            payment = self._payable(payment_id)
            payment.status = status
            payment.updated_at = self._clock.now()
            ipn = self._ipn(payment, status, payment.actually_paid)
        return self._deliver(payment, [ipn], wait)

    def _deliver(
        self, payment: _Payment, ipns: list[tuple[str, bytes]], wait: float | None
    ) -> list[IpnDelivery]:
        sending = self._outbox.send(
            [functools.partial(self._send, payment, status, body) for status, body in ipns]
        )
        return [
            IpnDelivery(status, answered)
            for (status, _), (_, answered) in zip(ipns, sending.wait(wait), strict=True)
        ]

    def _payment(self, payment_id: str) -> _Payment:
        payment = self._payments.get(int(payment_id)) if payment_id.isdigit() else None
        if payment is None:
            raise LookupError(f"no sandbox payment {payment_id!r}")
        return payment

    def _payable(self, payment_id: str) -> _Payment:
        payment = self._payment(payment_id)
        if payment.ipn_callback_url is None:
            raise LookupError(f"sandbox payment {payment_id} has no ipn_callback_url")
        return payment

    def _ipn(self, payment: _Payment, status: str, paid: Decimal) -> tuple[str, bytes]:
        service_fee = (paid * _SERVICE_FEE).quantize(_SATOSHI, ROUND_HALF_UP)
        updated_ms = (self._clock.now() - _EPOCH) // timedelta(milliseconds=1)
        body: dict[str, Any] = {
            "actually_paid": paid,
            "actually_paid_at_fiat": 0,
            "fee": {
                "currency": payment.pay_currency,
                "depositFee": 0,
                "serviceFee": service_fee,
                "withdrawalFee": 0,
            },
            "invoice_id": None,
            "order_description": payment.order_description,
            "order_id": payment.order_id,
            "outcome_amount": paid - service_fee,
            "outcome_currency": payment.pay_currency,
            "parent_payment_id": None,
            "pay_address": payment.pay_address,
            "pay_amount": payment.pay_amount,
            "pay_currency": payment.pay_currency,
            "payin_extra_id": None,
            "payment_extra_ids": None,
            "payment_id": payment.payment_id,
            "payment_status": status,
            "price_amount": payment.price_amount,
            "price_currency": payment.price_currency,
            "purchase_id": payment.purchase_id,
            "updated_at": updated_ms,
        }
        return status, canonical_json(body).encode()

    def _send(self, payment: _Payment, status: str, body: bytes) -> int | None:
        url = str(payment.ipn_callback_url)
        signature = hmac.new(self._ipn_key, body, hashlib.sha512).hexdigest()
        try:
            response = self._http.post(
                url,
                content=body,
                headers={"Content-Type": "application/json", "x-nowpayments-sig": signature},
                timeout=self._ipn_timeout,
            )
        except httpx.HTTPError:
            answered: int | None = None
        else:
            answered = response.status_code
        sent = SentIpn(
            payment_id=str(payment.payment_id),
            status=status,
            url=url,
            body=body,
            signature=signature,
            answered=answered,
        )
        with self._lock:
            self._events.append(sent)
        return answered

    # -- HTTP --------------------------------------------------------------------------

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if not request.path.startswith("/v1/"):
            return dispatch(request, self._routes, _error(404, "NOT_FOUND", "Not found"))
        response = self._api_call(request)
        call = NowPaymentsCall(
            method=request.method, path=request.path, body=request.body, status=response.status
        )
        with self._lock:
            self._calls.append(call)
        return response

    def _api_call(self, request: SandboxRequest) -> SandboxResponse:
        fault = self._faults.take(request.method, request.path)
        if fault is None:
            return dispatch(request, self._routes, _error(404, "NOT_FOUND", "Not found"))
        if fault == "slow":
            handled = dispatch(request, self._routes, _error(404, "NOT_FOUND", "Not found"))
            return replace(handled, stall=self._stall_seconds)
        if fault == "timeout":
            return SandboxResponse(status=504, content_type="text/plain", stall=self._stall_seconds)
        if fault == "429":
            return _error(429, "TOO_MANY_REQUESTS", "Too many requests")
        return _error(int(fault), "INTERNAL_ERROR", "Service temporarily unavailable")

    def _authorised(self, request: SandboxRequest) -> bool:
        given = request.header("x-api-key") or ""
        if not self._api_key:
            return bool(given)  # "" accepts any key, as a shared sandbox does
        return hmac.compare_digest(given.encode(), self._api_key.encode())

    def _status(self, _request: SandboxRequest) -> SandboxResponse:
        return SandboxResponse(status=200, body=json_body({"message": "OK"}))

    def _create_payment(self, request: SandboxRequest) -> SandboxResponse:
        if not self._authorised(request):
            return _error(403, "INVALID_API_KEY", "Invalid api key")
        body = read_json(request.body)
        if not isinstance(body, dict):
            return _error(400, "INVALID_REQUEST_PARAMS", "Request body must be a JSON object")
        problem = _payment_request_problem(body, self._rates)
        if problem is not None:
            return _error(400, "INVALID_REQUEST_PARAMS", problem)
        price_amount = decimal_or_none(body["price_amount"])
        if price_amount is None or price_amount < self._min_price_amount:
            return _error(400, "AMOUNT_MINIMAL_ERROR", "amountTo is too small")
        pay_currency = str(body["pay_currency"]).lower()
        now = self._clock.now()
        with self._lock:
            payment_id = next(self._ids)
            payment = _Payment(
                payment_id=payment_id,
                purchase_id=str(body.get("purchase_id") or payment_id - 600_000_000),
                order_id=body.get("order_id"),
                order_description=body.get("order_description"),
                price_amount=price_amount,
                price_currency=str(body["price_currency"]).lower(),
                pay_amount=(price_amount * self._rates[pay_currency]).quantize(_SATOSHI, ROUND_UP),
                pay_currency=pay_currency,
                pay_address=_address(pay_currency, payment_id),
                ipn_callback_url=body.get("ipn_callback_url"),
                created_at=now,
                updated_at=now,
            )
            self._payments[payment_id] = payment
        expires = _iso(now + self._payment_window)
        answer = {
            "payment_id": str(payment_id),
            "payment_status": payment.status,
            "pay_address": payment.pay_address,
            "price_amount": payment.price_amount,
            "price_currency": payment.price_currency,
            "pay_amount": payment.pay_amount,
            "amount_received": payment.pay_amount,
            "pay_currency": payment.pay_currency,
            "order_id": payment.order_id,
            "order_description": payment.order_description,
            "ipn_callback_url": payment.ipn_callback_url,
            "created_at": _iso(now),
            "updated_at": _iso(now),
            "purchase_id": payment.purchase_id,
            "smart_contract": None,
            "network": payment.pay_currency,
            "network_precision": None,
            "time_limit": None,
            "burning_percent": None,
            "expiration_estimate_date": expires,
            "is_fixed_rate": bool(body.get("is_fixed_rate", False)),
            "is_fee_paid_by_user": bool(body.get("is_fee_paid_by_user", False)),
            "valid_until": expires,
            "type": "crypto2crypto",
            "payin_extra_id": None,
        }
        return SandboxResponse(status=201, body=json_body(answer))

    def _get_payment(self, request: SandboxRequest, payment_id: str) -> SandboxResponse:
        """The payment as the API shows it: the IPN's fields, times as ISO 8601."""
        if not self._authorised(request):
            return _error(403, "INVALID_API_KEY", "Invalid api key")
        with self._lock:
            try:
                payment = self._payment(payment_id)
            except LookupError:
                return _error(404, "PAYMENT_NOT_FOUND", f"Payment {payment_id} not found")
            return SandboxResponse(status=200, body=json_body(self._api_payment(payment)))

    def _api_payment(self, payment: _Payment) -> dict[str, Any]:
        paid = payment.actually_paid
        fee = (paid * _SERVICE_FEE).quantize(_SATOSHI, ROUND_HALF_UP)
        return {
            "payment_id": payment.payment_id,
            "invoice_id": payment.invoice_id,
            "payment_status": payment.status,
            "pay_address": payment.pay_address,
            "payin_extra_id": None,
            "price_amount": payment.price_amount,
            "price_currency": payment.price_currency,
            "pay_amount": payment.pay_amount,
            "actually_paid": paid,
            "actually_paid_at_fiat": 0,
            "pay_currency": payment.pay_currency,
            "order_id": payment.order_id,
            "order_description": payment.order_description,
            "purchase_id": payment.purchase_id,
            "outcome_amount": paid - fee,
            "outcome_currency": payment.pay_currency,
            "payout_hash": None,
            "payin_hash": None,
            "created_at": _iso(payment.created_at),
            "updated_at": _iso(payment.updated_at),
            "burning_percent": None,
            "type": "crypto2crypto",
            "payment_extra_ids": None,
            "parent_payment_id": None,
        }

    # -- the rest of the API the official SDKs call ------------------------------------

    def _currencies(self, request: SandboxRequest) -> SandboxResponse:
        if not self._authorised(request):
            return _error(403, "INVALID_API_KEY", "Invalid api key")
        return SandboxResponse(status=200, body=json_body({"currencies": list(self._rates)}))

    def _full_currencies(self, request: SandboxRequest) -> SandboxResponse:
        if not self._authorised(request):
            return _error(403, "INVALID_API_KEY", "Invalid api key")
        currencies = [
            {
                "id": index,
                "code": code.upper(),
                "name": _CURRENCY_NAMES.get(code, code.upper()),
                "enable": True,
                "wallet_regex": _WALLET_PATTERNS.get(code, "^.+$"),
                "priority": index,
                "extra_id_exists": False,
                "extra_id_regex": None,
                "logo_url": f"/images/coins/{code}.svg",
                "track": True,
                "cg_id": _CURRENCY_NAMES.get(code, code).lower().split(" ")[0],
                "is_maxlimit": False,
                "network": _NETWORKS.get(code, code),
                "smart_contract": None,
                "network_precision": None,
            }
            for index, code in enumerate(self._rates, start=1)
        ]
        return SandboxResponse(status=200, body=json_body({"currencies": currencies}))

    def _convert(self, amount: Decimal, source: str, target: str) -> Decimal | None:
        """``amount`` of ``source`` in ``target`` at the sandbox's rates (a currency
        without a rate is the price currency); None when neither is known."""
        source_rate = self._rates.get(source, Decimal(1))
        target_rate = self._rates.get(target, Decimal(1))
        if source not in self._rates and target not in self._rates and source != target:
            return None
        return (amount * target_rate / source_rate).quantize(_SATOSHI, ROUND_HALF_UP)

    def _min_amount(self, request: SandboxRequest) -> SandboxResponse:
        if not self._authorised(request):
            return _error(403, "INVALID_API_KEY", "Invalid api key")
        source = request.query.get("currency_from", "").lower()
        target = request.query.get("currency_to", source).lower() or source
        if not _CURRENCY.fullmatch(source) or not _CURRENCY.fullmatch(target):
            return _error(400, "INVALID_REQUEST_PARAMS", '"currency_from" is required')
        minimum = self._convert(self._min_price_amount, "usd", source)
        if minimum is None or source not in self._rates:
            return _error(400, "INVALID_REQUEST_PARAMS", f"Currency {source} was not found")
        answer: dict[str, Any] = {
            "currency_from": source,
            "currency_to": target,
            "min_amount": minimum,
        }
        if request.query.get("fiat_equivalent"):
            fiat = request.query["fiat_equivalent"].lower()
            answer["fiat_equivalent"] = self._convert(minimum, source, fiat)
        return SandboxResponse(status=200, body=json_body(answer))

    def _estimate(self, request: SandboxRequest) -> SandboxResponse:
        if not self._authorised(request):
            return _error(403, "INVALID_API_KEY", "Invalid api key")
        amount = decimal_or_none(request.query.get("amount"))
        source = request.query.get("currency_from", "").lower()
        target = request.query.get("currency_to", "").lower()
        if amount is None or amount <= 0:
            return _error(400, "INVALID_REQUEST_PARAMS", '"amount" must be a positive number')
        if not _CURRENCY.fullmatch(source) or not _CURRENCY.fullmatch(target):
            return _error(400, "INVALID_REQUEST_PARAMS", "currency_from and currency_to required")
        estimated = self._convert(amount, source, target)
        if estimated is None:
            return _error(400, "INVALID_REQUEST_PARAMS", f"Currency {target} was not found")
        answer = {
            "currency_from": source,
            "amount_from": amount,
            "currency_to": target,
            "estimated_amount": estimated,
        }
        return SandboxResponse(status=200, body=json_body(answer))

    def _list_payments(self, request: SandboxRequest) -> SandboxResponse:
        if not self._authorised(request):
            return _error(403, "INVALID_API_KEY", "Invalid api key")
        query = request.query
        limit = _int_param(query.get("limit"), 10, 1, 500)
        page = _int_param(query.get("page"), 0, 0, 10**6)
        order_by = query.get("orderBy", "asc") or "asc"
        sort_by = query.get("sortBy", "created_at") or "created_at"
        since_ok, since = _date_param(query.get("dateFrom"))
        until_ok, until = _date_param(query.get("dateTo"))
        if (
            limit is None
            or page is None
            or order_by not in ("asc", "desc")
            or sort_by not in _SORTABLE
            or not (since_ok and until_ok)
        ):
            return _error(400, "INVALID_REQUEST_PARAMS", "Invalid request params")
        with self._lock:
            rows = [
                self._api_payment(p)
                for p in self._payments.values()
                if (since is None or p.created_at >= since)
                and (until is None or p.created_at <= until)
            ]
        rows.sort(
            key=lambda row: (str(row[sort_by]), row["payment_id"]), reverse=order_by == "desc"
        )
        answer = {
            "data": rows[page * limit : (page + 1) * limit],
            "limit": limit,
            "page": page,
            "pagesCount": -(-len(rows) // limit),
            "total": len(rows),
        }
        return SandboxResponse(status=200, body=json_body(answer))

    def _create_invoice(self, request: SandboxRequest) -> SandboxResponse:
        if not self._authorised(request):
            return _error(403, "INVALID_API_KEY", "Invalid api key")
        body = read_json(request.body)
        if not isinstance(body, dict):
            return _error(400, "INVALID_REQUEST_PARAMS", "Request body must be a JSON object")
        problem = _invoice_problem(body, self._rates)
        if problem is not None:
            return _error(400, "INVALID_REQUEST_PARAMS", problem)
        amount = decimal_or_none(body["price_amount"])
        currency, pay_currency = str(body["price_currency"]), body.get("pay_currency")
        now = self._clock.now()
        with self._lock:
            invoice_id = next(self._ids)
            self._invoices.add(invoice_id)
        answer = {
            "id": str(invoice_id),
            "token_id": hashlib.sha256(f"invoice:{invoice_id}".encode()).hexdigest()[:10],
            "order_id": body.get("order_id"),
            "order_description": body.get("order_description"),
            "price_amount": str(amount),
            "price_currency": currency.lower(),
            "pay_currency": str(pay_currency).lower() if pay_currency else None,
            "ipn_callback_url": body.get("ipn_callback_url"),
            "invoice_url": f"https://sandbox.nowpayments.io/payment/?iid={invoice_id}",
            "success_url": body.get("success_url"),
            "cancel_url": body.get("cancel_url"),
            "customer_email": None,
            "partially_paid_url": body.get("partially_paid_url"),
            "payout_currency": None,
            "created_at": _iso(now),
            "updated_at": _iso(now),
            "is_fixed_rate": bool(body.get("is_fixed_rate", False)),
            "is_fee_paid_by_user": bool(body.get("is_fee_paid_by_user", False)),
        }
        return SandboxResponse(status=200, body=json_body(answer))

    def _control_payment(
        self, request: SandboxRequest, payment_id: str, action: str
    ) -> SandboxResponse:
        body = read_json(request.body) if request.body else {}
        if not isinstance(body, dict):
            return _error(400, "INVALID_REQUEST_PARAMS", "Request body must be a JSON object")
        try:
            if action == "pay":
                amount = None if body.get("amount") is None else decimal_or_none(body["amount"])
                if body.get("amount") is not None and (amount is None or amount <= 0):
                    return _error(400, "INVALID_REQUEST_PARAMS", '"amount" must be positive')
                deliveries = self.pay(
                    payment_id,
                    amount,
                    duplicate=bool(body.get("duplicate")),
                    shuffle=bool(body.get("shuffle")),
                )
            else:
                deliveries = self.fail(payment_id) if action == "fail" else self.expire(payment_id)
        except LookupError as exc:
            return _error(404, "PAYMENT_NOT_FOUND", str(exc))
        answer = {"deliveries": [{"status": d.status, "answered": d.answered} for d in deliveries]}
        return SandboxResponse(status=200, body=json_body(answer))

    def _control_outage(self, request: SandboxRequest) -> SandboxResponse:
        body = read_json(request.body)
        failures = body.get("failures") if isinstance(body, dict) else None
        mode = body.get("mode", "503") if isinstance(body, dict) else None
        if not isinstance(failures, int) or failures < 0 or mode not in get_args(OutageMode):
            return _error(400, "INVALID_REQUEST_PARAMS", "expected {failures: N, mode?}")
        self._faults.outage(failures, str(mode))
        return SandboxResponse(status=200, body=json_body({"pending": self._faults.pending}))


def _payment_request_problem(body: Mapping[str, Any], rates: Mapping[str, Decimal]) -> str | None:
    """What is wrong with a create-payment body, in the provider's words; None if nothing."""
    missing = [name for name in _REQUIRED if body.get(name) in (None, "")]
    if missing:
        return f'"{missing[0]}" is required'
    amount = decimal_or_none(body["price_amount"])
    if amount is None or amount <= 0:
        return '"price_amount" must be a positive number'
    for name in ("price_currency", "pay_currency"):
        value = body[name]
        if not isinstance(value, str) or not _CURRENCY.fullmatch(value.lower()):
            return f'"{name}" must be a currency code'
    if body["pay_currency"].lower() not in rates:
        return f"Currency {body['pay_currency']} was not found"
    return _optional_fields_problem(body)


def _optional_fields_problem(body: Mapping[str, Any]) -> str | None:
    for name in _OPTIONAL_TEXT:
        if body.get(name) is not None and not isinstance(body[name], str):
            return f'"{name}" must be a string'
    url = body.get("ipn_callback_url")
    if url is not None and not url.startswith(("http://", "https://")):
        return '"ipn_callback_url" must be a valid uri'
    return None


_CURRENCY_NAMES: Final = {
    "btc": "Bitcoin",
    "eth": "Ethereum",
    "ltc": "Litecoin",
    "usdttrc20": "Tether USD (Tron)",
}
_NETWORKS: Final = {"btc": "btc", "eth": "eth", "ltc": "ltc", "usdttrc20": "trx"}
_WALLET_PATTERNS: Final = {
    "btc": "^(bc1|[13])[a-zA-HJ-NP-Z0-9]{25,62}$",
    "eth": "^(0x)[0-9A-Fa-f]{40}$",
    "ltc": "^(L|M|3|ltc1)[a-km-zA-HJ-NP-Z1-9]{26,42}$",
    "usdttrc20": "^T[1-9A-HJ-NP-Za-km-z]{33}$",
}
_SORTABLE: Final = frozenset(
    {
        "payment_id",
        "payment_status",
        "pay_address",
        "price_amount",
        "price_currency",
        "pay_amount",
        "actually_paid",
        "pay_currency",
        "order_id",
        "order_description",
        "purchase_id",
        "outcome_amount",
        "outcome_currency",
        "created_at",
        "updated_at",
    }
)


def _int_param(raw: str | None, default: int, low: int, high: int) -> int | None:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        return None
    return int(raw)


def _date_param(raw: str | None) -> tuple[bool, datetime | None]:
    """A ``dateFrom``/``dateTo`` (ISO date or time, UTC): (well formed, the time or None)."""
    if not raw:
        return True, None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return False, None
    return True, moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _invoice_problem(body: Mapping[str, Any], rates: Mapping[str, Decimal]) -> str | None:
    """What is wrong with a create-invoice body, in the provider's words; None if nothing."""
    amount = decimal_or_none(body.get("price_amount"))
    currency = body.get("price_currency")
    pay_currency = body.get("pay_currency")
    if amount is None or amount <= 0:
        return '"price_amount" is required'
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency.lower()):
        return '"price_currency" is required'
    if pay_currency is not None and str(pay_currency).lower() not in rates:
        return f"Currency {pay_currency} was not found"
    return _optional_fields_problem(body)


def _address(currency: str, payment_id: int) -> str:
    digest = hashlib.sha256(f"{currency}:{payment_id}".encode()).hexdigest()
    if currency == "btc":
        return "bc1q" + digest[:38]
    if currency in ("eth", "usdterc20"):
        return "0x" + digest[:40]
    return "T" + digest[:33]


def _iso(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _error(status: int, code: str, message: str) -> SandboxResponse:
    body = {"status": False, "statusCode": status, "code": code, "message": message}
    return SandboxResponse(status=status, body=json_body(body))
