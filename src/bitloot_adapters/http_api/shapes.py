"""What goes over the wire: requests and responses, JSON shapes, errors, body parsing.

Every route speaks through these, so an order, a payment or an error looks the same
whichever route answers with it. Bad input raises ``InvalidInput`` (or ``BodyTooLarge``)
with its wire code; nothing here touches the shop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, overload

from bitloot_core.chart import OrderStatus
from bitloot_core.errors import BitlootError, InvalidInput
from bitloot_core.payment_uri import coin, payment_uri
from bitloot_core.values import Job, Order, Payment

MAX_BODY_BYTES: Final = 64 * 1024
JSON: Final = "application/json"
# Customer-facing wording of each status (the seed's words).
STATUS_TEXT: Final = {
    OrderStatus.CREATED: "Waiting for payment…",
    OrderStatus.WAITING: "Waiting for payment…",
    OrderStatus.CONFIRMING: "Payment confirming…",
    OrderStatus.PAID: "Payment confirmed!",
    OrderStatus.FULFILLED: "Payment confirmed!",
    OrderStatus.EXPIRED: "Order expired",
    OrderStatus.FAILED: "Payment failed",
    OrderStatus.UNDERPAID: "Underpaid — payment insufficient",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    # Header names in lower case.
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Set by a server that did not read the whole body because it is (or says it is)
    # larger than ``MAX_BODY_BYTES``: every route then answers 413 ``body_too_large``.
    body_too_large: bool = False
    # Whether the server answers other requests while this one runs. A single-threaded
    # one (wsgiref) cannot: the sandbox then sends its IPNs after answering the control
    # route, since the shop could not take them while the route waited.
    concurrent: bool = True
    # The socket's peer address ("" when the server does not say); rate limits key on it,
    # or on X-Forwarded-For when the peer is a trusted proxy.
    client: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)
    # Set for Server-Sent Events: the server streams these chunks instead of ``body``.
    # Each ``next()`` is quick (it reads the store, never sleeps); the server waits
    # ``stream_interval`` seconds between chunks, without holding a thread if it can.
    stream: Iterator[bytes] | None = None
    stream_interval: float = 0.0


def paced(stream: Iterator[bytes], interval: float) -> Iterator[bytes]:
    """``stream``'s chunks, sleeping ``interval`` seconds between them.

    For servers that give each request a thread of its own (werkzeug's threaded server):
    the sleep holds only that request's thread.
    """
    try:
        chunk = next(stream, None)
        while chunk is not None:
            yield chunk
            time.sleep(interval)
            chunk = next(stream, None)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


# --- answers --------------------------------------------------------------------------------


def json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(type(value).__name__)


def json_response(
    status: int, data: object, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=json_default)
    return HttpResponse(status=status, body=body.encode(), headers=headers or {})


@overload
def error_response(status: BitlootError, /) -> HttpResponse: ...
@overload
def error_response(status: int, code: str, message: str) -> HttpResponse: ...
def error_response(
    status: int | BitlootError, code: str | None = None, message: str | None = None
) -> HttpResponse:
    """``{"error": {"code", "message"}}`` with ``status``; or, given a ``BitlootError``,
    the answer ``ShopApi`` gives for it (its own status, code and message), for a host
    application that calls ``Checkout`` itself."""
    if isinstance(status, BitlootError):
        error = status
        return json_response(
            error.status_hint, {"error": {"code": error.code, "message": error.message}}
        )
    return json_response(status, {"error": {"code": code, "message": message}})


def payment_json(payment: Payment | None) -> dict[str, object] | None:
    if payment is None:
        return None
    return {
        "id": payment.id,
        "provider": payment.provider,
        "status": payment.status,
        "provider_status": payment.provider_status,
        "pay_address": payment.pay_address,
        "pay_amount": payment.pay_amount,
        "pay_currency": payment.pay_currency,
        "actually_paid": payment.actually_paid,
        "valid_until": payment.valid_until,
        "coin": _coin_json(payment.pay_currency),
        # The BIP21/EIP-681 URI a wallet opens, or null for a coin without a standard one.
        "uri": payment_uri(payment.pay_currency, payment.pay_address, payment.pay_amount),
    }


def _coin_json(code: str) -> dict[str, str]:
    paid = coin(code)
    return {"ticker": paid.ticker, "name": paid.name, "network": paid.network}


def order_json(order: Order, payment: Payment | None) -> dict[str, object]:
    return {
        "id": order.id,
        "status": order.status,
        "status_text": STATUS_TEXT[order.status],
        "email": order.email,
        "currency": order.currency,
        "total": order.total,
        "items": [
            {
                "id": item.id,
                "product_id": item.product_id,
                "name": item.name,
                "quantity": item.quantity,
                "unit_price": item.unit_price,
                "delivered": item.delivered,
            }
            for item in order.items
        ],
        "payment": payment_json(payment),
        "flags": sorted(order.flags),
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    }


def job_json(job: Job) -> dict[str, object]:
    return {
        "key": job.key,
        "kind": job.kind,
        "order_id": job.order_id,
        "state": job.state,
        "attempts": job.attempts,
        "run_at": job.run_at,
        "last_error": job.last_error,
    }


# --- reading requests -----------------------------------------------------------------------


class BodyTooLarge(InvalidInput):
    """A request body over ``MAX_BODY_BYTES``: 413 on every route, webhooks included."""

    code = "body_too_large"
    status_hint = 413

    def __init__(self) -> None:
        super().__init__(f"the body is larger than {MAX_BODY_BYTES} bytes")


def body_too_large(request: HttpRequest) -> bool:
    return request.body_too_large or len(request.body) > MAX_BODY_BYTES


def json_body(request: HttpRequest, *, optional: bool = False) -> dict[str, Any]:
    if body_too_large(request):
        raise BodyTooLarge
    if not request.body.strip():
        if optional:
            return {}
        raise InvalidInput("a JSON body is required", code="invalid_json")
    try:
        data = json.loads(request.body, parse_float=Decimal)
    except (ValueError, RecursionError):
        raise InvalidInput("the body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object", code="invalid_json")
    try:
        # JSON's \ud800 escapes can make strings that are not Unicode text (lone
        # surrogates): nothing downstream (SQLite, email) could store or send them.
        json.dumps(data, ensure_ascii=False, default=str).encode()
    except UnicodeEncodeError:
        raise InvalidInput(
            "the body has a string that is not valid Unicode", code="invalid_json"
        ) from None
    return data


def header_token(request: HttpRequest) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


def bearer_token(request: HttpRequest) -> str | None:
    """An order's access token: ``Authorization: Bearer`` first, else ``?token=`` (the
    page's ``EventSource`` cannot send headers). Never the admin token's way in."""
    return header_token(request) or request.query.get("token")


def decimal_field(data: Mapping[str, Any], name: str) -> Decimal | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise InvalidInput(f"{name} must be a decimal number", code="invalid_amount")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise InvalidInput(f"{name} must be a decimal number", code="invalid_amount") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidInput(f"{name} must be zero or more", code="invalid_amount")
    return amount


def enum_query(request: HttpRequest, name: str, enum: type[Any]) -> Any:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return enum(raw)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise InvalidInput(f"{name} must be one of {allowed}", code=f"invalid_{name}") from None
