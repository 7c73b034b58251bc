"""The BTCPay Server Greenfield client: invoices over an injected ``httpx.Client``.

One store, one API key (``Authorization: token <key>``), store-scoped routes only (the
store-less aliases exist only from BTCPay 2.4). Calls:

- ``create_invoice``: ``POST /api/v1/stores/{store}/invoices`` with the order id in
  ``metadata.orderId`` and the checkout options the shop depends on (methods activated at
  once so the address exists, the shop's speed policy, tolerance and expiry);
- ``find_invoices``: ``GET .../invoices?orderId=...`` (BTCPay does not keep order ids
  unique, so opening a payment again reuses an invoice that is still ``New``);
- ``get_invoice``: ``GET .../invoices/{id}``, the source of truth for the status;
- ``get_payment_methods``: ``GET .../invoices/{id}/payment-methods``, the address, the
  amount due in crypto and what was paid;
- ``create_payment``: the three above as the shop opens a payment (``OpenedPayment``);
- ``get_payment``: the invoice and its payment method read again, as the core's BTCPay
  provider (``bitloot_core.providers.btcpay``) understands them: what every webhook,
  the reconciler and the sweeper ask.

Rules this module keeps:

- Money never passes through a float: amounts go out as decimal strings (as BTCPay
  wants) and come back as ``Decimal`` parsed from the JSON text, whatever their scale.
- Every transport failure and every error answer becomes one of our errors in one place,
  ``_send``: timeouts, connection errors, 5xx, 408 and 429 are ``ProviderUnavailable``;
  the provider's ``{code, message}`` object and its ``[{path, message}]`` validation array
  are ``ProviderError`` carrying the code (``validation`` for the array) and the status.
- Enums stay open: a status this module does not know is passed on as text, never an
  error. Unknown JSON keys are ignored; the 1.x field names are read too.
- The API key travels only in the ``Authorization`` header, never in a message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeVar
from urllib.parse import quote

import httpx

from bitloot_adapters import transport
from bitloot_core.errors import InvalidInput, ProviderError, ProviderUnavailable
from bitloot_core.providers import PaymentUpdate
from bitloot_core.providers.btcpay import Invoice, update_of
from bitloot_core.values import OpenedPayment

__all__ = [
    "BtcPayClient",
    "BtcPayInvoice",
    "BtcPayPayment",
    "BtcPayPaymentMethod",
    "normalise_method",
]

_T = TypeVar("_T", dict[str, Any], list[Any])
_KINDS: Final[dict[type, str]] = {dict: "an object", list: "an array"}
_MESSAGE_LIMIT: Final = 300
_PRICE_LIMIT: Final = Decimal("1e15")
_MAX_DECIMALS: Final = 18
_RETRYABLE: Final = frozenset({408, 429})
_SERVER_ERROR: Final = 500
# BTCPay 1.x spelled the payment method ids differently; 2.x still parses the old ones.
_LEGACY_METHODS: Final = {
    "BTC": "BTC-CHAIN",
    "BTC_ONCHAIN": "BTC-CHAIN",
    "BTC-ONCHAIN": "BTC-CHAIN",
    "BTC-LIGHTNINGNETWORK": "BTC-LN",
    "BTC_LIGHTNINGLIKE": "BTC-LN",
    "BTC-LIGHTNINGLIKE": "BTC-LN",
    "BTC-LNURLPAY": "BTC-LNURL",
}


def normalise_method(method: str) -> str:
    """A payment method id in its 2.x spelling (``BTC`` is ``BTC-CHAIN``)."""
    upper = method.strip().upper()
    return _LEGACY_METHODS.get(upper, upper)


@dataclass(frozen=True, slots=True, kw_only=True)
class BtcPayInvoice:
    """The parts of BTCPay's ``InvoiceData`` the shop reads."""

    id: str
    store_id: str
    status: str
    additional_status: str
    amount: Decimal
    currency: str
    checkout_link: str
    created_at: datetime
    expires_at: datetime
    monitoring_until: datetime | None = None
    # Net paid in the invoice currency (BTCPay 2.1.2+); None from older servers.
    paid_amount: Decimal | None = None
    order_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class BtcPayPayment:
    id: str
    received_at: datetime
    value: Decimal
    fee: Decimal
    status: str
    destination: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BtcPayPaymentMethod:
    """One way to pay an invoice: where, how much in that currency, and what came in."""

    payment_method_id: str
    currency: str
    destination: str
    payment_link: str
    rate: Decimal
    amount: Decimal
    paid: Decimal
    total_paid: Decimal
    # Negative when overpaid.
    due: Decimal
    activated: bool
    payments: tuple[BtcPayPayment, ...] = ()


class BtcPayClient:
    """Creates and reads invoices of one BTCPay store. Thread-safe as ``httpx`` is."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        base_url: str,
        api_key: str,
        store_id: str,
        payment_method: str = "BTC-CHAIN",
        speed_policy: str = "MediumSpeed",
        expiration_minutes: int | None = None,
        payment_tolerance: Decimal = Decimal(0),
        timeout: float = 10.0,
    ) -> None:
        if not api_key:
            raise ValueError("a BTCPay API key is required")
        if not store_id:
            raise ValueError("a BTCPay store id is required")
        if not base_url:
            raise ValueError("the BTCPay server URL is required")
        if expiration_minutes is not None and expiration_minutes < 1:
            raise ValueError("expiration_minutes must be at least 1")
        if not Decimal(0) <= payment_tolerance <= Decimal(100):
            raise ValueError("payment_tolerance is a percentage between 0 and 100")
        self._http = http
        self._api_key = api_key
        self._store_path = f"/api/v1/stores/{quote(store_id, safe='')}"
        self._base_url = base_url.rstrip("/")
        self._method = normalise_method(payment_method)
        self._speed_policy = speed_policy
        self._expiration_minutes = expiration_minutes
        self._tolerance = payment_tolerance
        self._timeout = httpx.Timeout(timeout)

    def __repr__(self) -> str:
        return f"BtcPayClient(base_url={self._base_url!r})"

    # --- the calls ----------------------------------------------------------------------

    def create_invoice(
        self,
        *,
        order_id: str,
        amount: str,
        currency: str,
        description: str = "",
        redirect_url: str | None = None,
    ) -> BtcPayInvoice:
        """``POST .../invoices``: a Standard invoice of ``amount`` (a decimal string)."""
        if not order_id:
            raise InvalidInput("an order id is required")
        metadata: dict[str, str] = {"orderId": order_id}
        if description:
            metadata["itemDesc"] = description
        checkout: dict[str, object] = {
            "speedPolicy": self._speed_policy,
            "paymentMethods": [self._method],
            "defaultPaymentMethod": self._method,
            # Activated at once: the shop shows the address without a hosted page.
            "lazyPaymentMethods": False,
        }
        if self._expiration_minutes is not None:
            checkout["expirationMinutes"] = self._expiration_minutes
        if redirect_url is not None:
            checkout["redirectURL"] = redirect_url
        body = {
            "amount": _price_text(amount),
            "currency": currency.upper(),
            "metadata": metadata,
            "additionalSearchTerms": [order_id],
        }
        response = self._send(
            "POST", "/invoices", content=_invoice_request(body, checkout, self._tolerance)
        )
        return _invoice(_json(response, dict))

    def find_invoices(self, order_id: str) -> list[BtcPayInvoice]:
        """``GET .../invoices?orderId=``: this order's invoices (newest first)."""
        if not order_id:
            raise InvalidInput("an order id is required")
        response = self._send("GET", "/invoices", params={"orderId": order_id})
        return [_invoice(_as_object(item)) for item in _json(response, list)]

    def get_invoice(self, invoice_id: str) -> BtcPayInvoice:
        """``GET .../invoices/{id}``."""
        response = self._send("GET", f"/invoices/{_segment(invoice_id)}")
        return _invoice(_json(response, dict))

    def get_payment_methods(self, invoice_id: str) -> tuple[BtcPayPaymentMethod, ...]:
        """``GET .../invoices/{id}/payment-methods``: one entry per method offered."""
        response = self._send("GET", f"/invoices/{_segment(invoice_id)}/payment-methods")
        return tuple(_payment_method(_as_object(item)) for item in _json(response, list))

    def create_payment(
        self,
        *,
        order_id: str,
        price_amount: str,
        price_currency: str,
        pay_currency: str = "btc",
        ipn_callback_url: str = "",
        description: str = "",
    ) -> OpenedPayment:
        """Open the order's payment: its ``New`` invoice if one exists, else a new one.

        BTCPay sends webhooks to the store's registered URL, so ``ipn_callback_url`` is
        not sent. ``pay_currency`` must be the configured method's currency.
        """
        del ipn_callback_url  # webhooks are registered per store, not per invoice
        reusable = [i for i in self.find_invoices(order_id) if i.status == "New"]
        invoice = (
            reusable[0]
            if reusable
            else self.create_invoice(
                order_id=order_id,
                amount=price_amount,
                currency=price_currency,
                description=description,
            )
        )
        method = self.payment_method_of(invoice.id)
        if method.currency.lower() != pay_currency.lower():
            raise ProviderError(
                f"BTCPay offers {method.currency} for {method.payment_method_id}, "
                f"not {pay_currency}"
            )
        return OpenedPayment(
            payment_id=invoice.id,
            provider_status=invoice.status,
            pay_address=method.destination,
            pay_amount=method.amount,
            pay_currency=method.currency.lower(),
            price_amount=invoice.amount,
            price_currency=invoice.currency.lower(),
            valid_until=invoice.expires_at,
        )

    def get_payment(self, payment_id: str) -> PaymentUpdate:
        """The invoice's current state as the core's BTCPay provider reads it.

        ``paid`` is what arrived through every method, in the configured method's
        currency; ``confirmed`` is whether every payment that still counts is settled.
        """
        invoice = self.get_invoice(payment_id)
        methods = self.get_payment_methods(payment_id)
        method = next((m for m in methods if m.payment_method_id == self._method), None)
        if method is None:
            raise ProviderError(f"BTCPay did not offer {self._method} on invoice {payment_id}")
        counted = [p for m in methods for p in m.payments if p.status != "Invalid"]
        return update_of(
            Invoice(
                id=invoice.id,
                status=invoice.status,
                additional_status=invoice.additional_status,
                amount=invoice.amount,
                currency=invoice.currency,
                paid=method.total_paid,
                due=method.amount,
                pay_currency=method.currency,
                confirmed=all(p.status == "Settled" for p in counted),
                order_id=invoice.order_id,
            )
        )

    def payment_method_of(self, invoice_id: str) -> BtcPayPaymentMethod:
        """The configured payment method of an invoice (refused when it is not offered)."""
        for method in self.get_payment_methods(invoice_id):
            if method.payment_method_id == self._method:
                if not method.activated or not method.destination:
                    raise ProviderError(f"BTCPay has not activated {self._method} yet")
                return method
        raise ProviderError(f"BTCPay did not offer {self._method} on invoice {invoice_id}")

    # --- the one place errors are translated --------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        what = f"BTCPay {method} {path}"
        response = transport.request(
            self._http,
            method,
            self._base_url + self._store_path + path,
            api_key=("Authorization", f"token {self._api_key}"),
            what=what,
            unavailable=ProviderUnavailable,
            failure=ProviderError,
            content=content,
            params=params,
            timeout=self._timeout,
        )
        status = response.status_code
        if response.is_success:
            return response
        code, message = self._error_details(response)
        text = f"{what} answered {status}: {message}"
        if status in _RETRYABLE or status >= _SERVER_ERROR:
            raise ProviderUnavailable(text, provider_code=code, status=status)
        raise ProviderError(text, provider_code=code, status=status)

    def _error_details(self, response: httpx.Response) -> tuple[str | None, str]:
        """BTCPay's error code and message, scrubbed of our API key.

        A generic error is ``{code, message}`` (a 403 adds ``missingPermission``); a
        validation error is an array of ``{path, message}`` (422, though the spec says 400).
        """
        code: str | None = None
        message = response.reason_phrase or "error"
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if isinstance(body, dict):
            code = body["code"] if isinstance(body.get("code"), str) else None
            message = str(body.get("message") or message)
            if isinstance(body.get("missingPermission"), str):
                message = f"{message} ({body['missingPermission']})"
        elif isinstance(body, list):
            code = "validation"
            problems = [
                f"{item.get('path') or '-'}: {item.get('message') or 'invalid'}"
                for item in body
                if isinstance(item, dict)
            ]
            message = "; ".join(problems) or message
        return code, self._scrub(message)[:_MESSAGE_LIMIT]

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "[api key]")


# --- writing ----------------------------------------------------------------------------


def _invoice_request(
    body: Mapping[str, object], checkout: Mapping[str, object], tolerance: Decimal
) -> bytes:
    """The create-invoice JSON. ``paymentTolerance`` is the one number BTCPay reads as a
    JSON number (a double), so it is written from its decimal text, not through a float;
    every money field is a string."""
    number = format(tolerance.normalize(), "f")
    checkout_text = json.dumps(checkout, separators=(",", ":"))[:-1]
    checkout_text += f',"paymentTolerance":{number}}}'
    return (
        json.dumps(body, separators=(",", ":"))[:-1] + f',"checkout":{checkout_text}}}'
    ).encode()


def _price_text(amount: str) -> str:
    """``amount`` (a positive decimal string) as plain decimal text, every digit kept."""
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError) as exc:
        raise InvalidInput(f"price amount {amount!r} is not a decimal number") from exc
    if not value.is_finite() or value <= 0:
        raise InvalidInput(f"price amount {amount!r} must be a positive finite number")
    exponent = value.as_tuple().exponent
    if value >= _PRICE_LIMIT or (isinstance(exponent, int) and exponent < -_MAX_DECIMALS):
        raise InvalidInput(f"price amount {amount!r} is out of range")
    return format(value, "f")


def _segment(invoice_id: str) -> str:
    if not invoice_id:
        raise InvalidInput("an invoice id is required")
    return quote(invoice_id, safe="")


# --- reading ----------------------------------------------------------------------------


def _json(response: httpx.Response, kind: type[_T]) -> _T:
    try:
        body = json.loads(response.content, parse_float=Decimal)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ProviderError(
            "BTCPay answered with a body that is not JSON", status=response.status_code
        ) from exc
    if not isinstance(body, kind):
        raise ProviderError(
            f"BTCPay answered with JSON that is not {_KINDS[kind]}",
            status=response.status_code,
        )
    return body


def _as_object(item: object) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ProviderError("BTCPay answered with a list entry that is not an object")
    return item


def _invoice(body: Mapping[str, Any]) -> BtcPayInvoice:
    try:
        metadata = _object_field(body, "metadata")
        order_id = metadata.get("orderId")
        return BtcPayInvoice(
            id=_text(body, "id"),
            store_id=_text(body, "storeId"),
            status=_text(body, "status"),
            additional_status=_optional_text(body, "additionalStatus") or "None",
            amount=_amount(body, "amount"),
            currency=_text(body, "currency"),
            checkout_link=_optional_text(body, "checkoutLink") or "",
            created_at=_time(body, "createdTime"),
            expires_at=_time(body, "expirationTime"),
            monitoring_until=(
                _time(body, "monitoringExpiration")
                if body.get("monitoringExpiration") is not None
                else None
            ),
            paid_amount=(
                _amount(body, "paidAmount") if body.get("paidAmount") is not None else None
            ),
            order_id=order_id if isinstance(order_id, str) and order_id else None,
            metadata=metadata,
        )
    except (TypeError, ValueError, InvalidOperation) as exc:
        raise ProviderError(f"BTCPay answered with a malformed invoice: {exc}") from exc


def _payment_method(body: Mapping[str, Any]) -> BtcPayPaymentMethod:
    try:
        payments = _list_field(body, "payments")
        return BtcPayPaymentMethod(
            payment_method_id=normalise_method(
                _first_text(body, "paymentMethodId", "paymentMethod")
            ),
            currency=_first_text(body, "currency", "cryptoCode"),
            destination=_optional_text(body, "destination") or "",
            payment_link=_optional_text(body, "paymentLink") or "",
            rate=_amount(body, "rate"),
            amount=_amount(body, "amount"),
            paid=_amount(body, "paymentMethodPaid"),
            total_paid=_amount(body, "totalPaid"),
            due=_amount(body, "due", signed=True),
            activated=body.get("activated") is not False,
            payments=tuple(_payment(_as_object(item)) for item in payments),
        )
    except (TypeError, ValueError, InvalidOperation) as exc:
        raise ProviderError(f"BTCPay answered with a malformed payment method: {exc}") from exc


def _payment(body: Mapping[str, Any]) -> BtcPayPayment:
    return BtcPayPayment(
        id=_text(body, "id"),
        received_at=_time(body, "receivedDate"),
        value=_amount(body, "value"),
        fee=_amount(body, "fee") if body.get("fee") is not None else Decimal(0),
        status=_text(body, "status"),
        destination=_optional_text(body, "destination") or "",
    )


def _object_field(body: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name) or {}
    if not isinstance(value, dict):
        raise TypeError(f"{name} is not an object")
    return value


def _list_field(body: Mapping[str, Any], name: str) -> list[Any]:
    value = body.get(name) or []
    if not isinstance(value, list):
        raise TypeError(f"{name} is not a list")
    return value


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if isinstance(value, str) and value:
        return value
    raise ValueError(f"{name} is missing or not a string")


def _first_text(body: Mapping[str, Any], *names: str) -> str:
    for name in names:
        if body.get(name) is not None:
            return _text(body, name)
    raise ValueError(f"{names[0]} is missing")


def _optional_text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{name} is not a string")


def _amount(body: Mapping[str, Any], name: str, *, signed: bool = False) -> Decimal:
    value = body.get(name)
    if isinstance(value, bool):
        raise TypeError(f"{name} is not a number")
    # BTCPay writes decimals as strings; numbers are read too, never through a float.
    if isinstance(value, Decimal | int):
        amount = Decimal(value)
    elif isinstance(value, str):
        amount = Decimal(value.strip())
    else:
        raise TypeError(f"{name} is missing or not a number")
    if not amount.is_finite() or (amount < 0 and not signed):
        raise ValueError(f"{name} is not a usable amount")
    return amount


def _time(body: Mapping[str, Any], name: str) -> datetime:
    value = body.get(name)
    # Unix seconds; BTCPay never sends fractions, but a Decimal would be read exactly.
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TypeError(f"{name} is missing or not a unix time")
    return datetime.fromtimestamp(int(value), tz=UTC)
