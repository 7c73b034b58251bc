"""The NOWPayments REST client: the ``PaymentGateway`` port over an injected ``httpx.Client``.

Rules this module keeps:

- Money never passes through a float. The price goes out as a JSON number written from
  its decimal text; amounts come back as ``Decimal`` parsed from the JSON text.
- Every transport failure and every error answer becomes one of our errors in one place,
  ``_send``: timeouts, connection errors, 5xx and 429 are ``ProviderUnavailable`` (retry
  later); the provider's error JSON ``{"status":false,"statusCode":..,"code":..,
  "message":..}`` and any other refusal are ``ProviderError`` carrying the provider's code
  and the HTTP status; a success body we cannot read is a ``ProviderError`` too.
- The API key travels only in the ``x-api-key`` header. It never appears in an exception
  message, and nothing here logs.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import quote

import httpx

from bitloot_adapters import transport
from bitloot_core.errors import InvalidInput, ProviderError, ProviderUnavailable
from bitloot_core.providers import PaymentUpdate
from bitloot_core.providers.nowpayments import parse_payment
from bitloot_core.values import OpenedPayment

__all__ = ["DEFAULT_BASE_URL", "NowPaymentsClient"]

DEFAULT_BASE_URL: Final = "https://api.nowpayments.io/v1"

_MESSAGE_LIMIT: Final = 300
_PRICE_LIMIT: Final = Decimal("1e15")
_MAX_DECIMALS: Final = 18
_TOO_MANY_REQUESTS: Final = 429
_SERVER_ERROR: Final = 500


class NowPaymentsClient:
    """Creates and reads NOWPayments payments. Thread-safe as the ``httpx.Client`` is."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
    ) -> None:
        if not api_key:
            raise ValueError("a NOWPayments API key is required")
        self._http = http
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._timeout = httpx.Timeout(timeout)

    def __repr__(self) -> str:
        return f"NowPaymentsClient(base_url={self._base_url!r})"

    def create_payment(
        self,
        *,
        order_id: str,
        price_amount: str,
        price_currency: str,
        pay_currency: str,
        ipn_callback_url: str,
        description: str,
    ) -> OpenedPayment:
        """``POST /payment``: open a payment of ``price_amount`` (a decimal string)."""
        fields = {
            "price_currency": price_currency,
            "pay_currency": pay_currency,
            "ipn_callback_url": ipn_callback_url,
            "order_id": order_id,
            "order_description": description,
        }
        # json.dumps cannot print a Decimal as a number, so the body is assembled from the
        # exact decimal text and the dumped remaining fields.
        rest = json.dumps(fields, separators=(",", ":"))
        body = '{"price_amount":' + _json_number(price_amount) + "," + rest[1:]
        response = self._send("POST", "/payment", content=body.encode())
        return _opened_payment(_object(response))

    def get_payment(self, payment_id: str) -> PaymentUpdate:
        """``GET /payment/{id}``: the payment, read by the core's NOWPayments parser."""
        if not payment_id:
            raise InvalidInput("a payment id is required")
        response = self._send("GET", f"/payment/{quote(payment_id, safe='')}")
        _object(response)  # refuse a body that is not a JSON object
        return parse_payment(response.content)

    def _send(self, method: str, path: str, *, content: bytes | None = None) -> httpx.Response:
        """The one place where transport failures and error answers become our errors."""
        what = f"NOWPayments {method} {path}"
        response = transport.request(
            self._http,
            method,
            self._base_url + path,
            api_key=("x-api-key", self._api_key),
            what=what,
            unavailable=ProviderUnavailable,
            failure=ProviderError,
            content=content,
            timeout=self._timeout,
        )
        status = response.status_code
        if response.is_success:
            return response
        code, message = self._error_details(response)
        text = f"{what} answered {status}: {message}"
        if status == _TOO_MANY_REQUESTS or status >= _SERVER_ERROR:
            raise ProviderUnavailable(text, provider_code=code, status=status)
        raise ProviderError(text, provider_code=code, status=status)

    def _error_details(self, response: httpx.Response) -> tuple[str | None, str]:
        """The provider's error code and message, scrubbed of our API key."""
        code: str | None = None
        message = response.reason_phrase or "error"
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if isinstance(body, dict):
            if isinstance(body.get("code"), str):
                code = body["code"]
            if isinstance(body.get("message"), str):
                message = body["message"]
        return code, self._scrub(message)[:_MESSAGE_LIMIT]

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "[api key]")


def _json_number(amount: str) -> str:
    """``amount`` (a positive decimal string) as exact JSON number text."""
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError) as exc:
        raise InvalidInput(f"price_amount {amount!r} is not a decimal number") from exc
    if not value.is_finite() or value <= 0:
        raise InvalidInput(f"price_amount {amount!r} must be a positive finite number")
    exponent = value.as_tuple().exponent
    # Bounds that no price reaches keep the plain notation below short.
    if value >= _PRICE_LIMIT or (isinstance(exponent, int) and exponent < -_MAX_DECIMALS):
        raise InvalidInput(f"price_amount {amount!r} is out of range")
    return format(value, "f")  # plain notation, every digit kept


def _object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content, parse_float=Decimal)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ProviderError(
            "NOWPayments answered with a body that is not JSON", status=response.status_code
        ) from exc
    if not isinstance(body, dict):
        raise ProviderError(
            "NOWPayments answered with JSON that is not an object", status=response.status_code
        )
    return body


def _opened_payment(body: dict[str, Any]) -> OpenedPayment:
    try:
        return OpenedPayment(
            payment_id=_id(body, "payment_id"),
            provider_status=_text(body, "payment_status"),
            pay_address=_text(body, "pay_address"),
            pay_amount=_amount(body, "pay_amount"),
            pay_currency=_text(body, "pay_currency").lower(),
            price_amount=_amount(body, "price_amount"),
            price_currency=_text(body, "price_currency").lower(),
            valid_until=_time(body, "valid_until") or _time(body, "expiration_estimate_date"),
        )
    except (TypeError, ValueError, InvalidOperation) as exc:
        raise ProviderError(f"NOWPayments answered with a malformed payment: {exc}") from exc


def _id(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    # The create response has payment_id as a string, IPNs as a number: take both.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and value:
        return value
    raise ValueError(f"{name} is missing or not an id")


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if isinstance(value, str) and value:
        return value
    raise ValueError(f"{name} is missing or not a string")


def _amount(body: dict[str, Any], name: str) -> Decimal:
    value = body.get(name)
    if isinstance(value, bool):
        raise TypeError(f"{name} is not a number")
    if isinstance(value, Decimal | int):
        amount = Decimal(value)
    elif isinstance(value, str):
        amount = Decimal(value.strip())
    else:
        raise TypeError(f"{name} is missing or not a number")
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{name} is not a usable amount")
    return amount


def _time(body: dict[str, Any], name: str) -> datetime | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} is not an ISO 8601 time")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
