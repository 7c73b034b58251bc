"""bitloot's HTTP API, independent of any web framework.

A server (FastAPI, Flask, anything) turns its request into an ``HttpRequest``, calls
``ShopApi.handle`` and writes the ``HttpResponse`` back: parsing, validation, errors and
response shapes live here once, so every server speaks the same contract
(``docs/api.md``). Bad input is answered with ``{"error": {"code", "message"}}`` and a
4xx status, never a 500, and changes nothing.

What a server must do itself: read at most ``MAX_BODY_BYTES`` of a body (refusing by its
``Content-Length`` before reading, and stopping a chunked upload at the limit) and set
``HttpRequest.body_too_large`` when it stopped; and write a streamed answer one chunk at
a time, waiting ``HttpResponse.stream_interval`` seconds between chunks (``paced`` does
that for a server that gives each request a thread of its own). Nothing here sleeps.
"""

from __future__ import annotations

import functools
import gzip
import hmac
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

from bitloot_core.chart import TERMINAL, Flag, OrderStatus
from bitloot_core.errors import BitlootError, InvalidInput, NotFound, Unauthorized
from bitloot_core.payment_uri import coin, payment_uri
from bitloot_core.values import JobState, Order, Payment

if TYPE_CHECKING:
    from bitloot_adapters.bootstrap import Shop

_log = logging.getLogger("bitloot.http")

MAX_BODY_BYTES: Final = 64 * 1024
MAX_OUTAGE_FAILURES: Final = 100
# A sandbox payment's amount, in the pay currency: far above any order, far below what
# would overflow the sandbox's arithmetic.
MAX_SANDBOX_AMOUNT: Final = Decimal(10**12)
JSON: Final = "application/json"
SSE_POLL_SECONDS: Final = 0.5
SSE_MAX_SECONDS: Final = 30 * 60.0
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


def json_response(
    status: int, data: object, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    return HttpResponse(status=status, body=body.encode(), headers=headers or {})


def error_response(status: int, code: str, message: str) -> HttpResponse:
    return json_response(status, {"error": {"code": code, "message": message}})


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(type(value).__name__)


# --- shapes ---------------------------------------------------------------------------------


def payment_json(payment: Payment | None) -> dict[str, object] | None:
    if payment is None:
        return None
    return {
        "id": payment.id,
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


# --- request parsing ------------------------------------------------------------------------


class BodyTooLarge(InvalidInput):
    """A request body over ``MAX_BODY_BYTES``: 413 on every route, webhooks included."""

    code = "body_too_large"
    status_hint = 413

    def __init__(self) -> None:
        super().__init__(f"the body is larger than {MAX_BODY_BYTES} bytes")


def body_too_large(request: HttpRequest) -> bool:
    return request.body_too_large or len(request.body) > MAX_BODY_BYTES


def _json_body(request: HttpRequest, *, optional: bool = False) -> dict[str, Any]:
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


def _order_lines(data: Mapping[str, Any]) -> list[tuple[str, int]]:
    items = data.get("items")
    if not isinstance(items, list) or not items:
        raise InvalidInput("items must be a non-empty list", code="invalid_items")
    lines = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidInput("each item must be an object", code="invalid_items")
        product_id, quantity = item.get("product_id"), item.get("quantity", 1)
        if not isinstance(product_id, str):
            raise InvalidInput("product_id must be a string", code="invalid_items")
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise InvalidInput("quantity must be an integer", code="invalid_quantity")
        lines.append((product_id, quantity))
    return lines


def _token(request: HttpRequest) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.query.get("token")


def _decimal_field(data: Mapping[str, Any], name: str) -> Decimal | None:
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


# --- routing --------------------------------------------------------------------------------

Handler = Callable[["ShopApi", HttpRequest, dict[str, str]], HttpResponse]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    name: str


def _route(method: str, template: str) -> Callable[[Handler], Handler]:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)

    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, re.compile(f"^{regex}$"), handler, template))
        return handler

    return register


ROUTES: list[Route] = []


class ShopApi:
    """Dispatches ``HttpRequest``s to the shop; one instance per running shop."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        self.checkout = shop.checkout

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in ROUTES:
            found = route.pattern.match(path)
            if found and route.method == method:
                return route, found.groupdict()
        return None

    def handle(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        matched = self.match(request.method, request.path)
        if matched is None:
            known_path = any(r.pattern.match(request.path) for r in ROUTES)
            response = (
                error_response(405, "method_not_allowed", "method not allowed")
                if known_path
                else error_response(404, "not_found", "no such resource")
            )
            name = "unmatched"
        else:
            route, params = matched
            name = route.name
            try:
                if body_too_large(request):
                    if route.handler is webhook:
                        # Audited as a bad signature; the body is not kept.
                        self.checkout.handle_ipn(b"", {})
                    raise BodyTooLarge  # noqa: TRY301 - answered like any refusal below
                response = route.handler(self, request, params)
            except BitlootError as exc:
                response = error_response(exc.status_hint, exc.code, exc.message)
            except Exception:  # noqa: BLE001 - a bug must still get the error shape
                # A bug, not bad input: the traceback goes to the operator's log (route
                # template only, never the request's path or body), the caller gets the
                # contract's error shape.
                _log.exception("unhandled error in %s %s", request.method, name)
                response = error_response(500, "internal_error", "internal server error")
        self.shop.metrics.request(
            request.method, name, response.status, time.perf_counter() - started
        )
        return response

    # --- auth ---------------------------------------------------------------------------

    def require_admin(self, request: HttpRequest) -> None:
        token = _token(request) if "authorization" in request.headers else None
        expected = self.shop.settings.admin_token
        if not token or not hmac.compare_digest(token.encode(), expected.encode()):
            raise Unauthorized("the admin token is missing or wrong")

    def require_sandbox(self) -> None:
        if self.shop.sandbox is None:
            raise NotFound("the sandbox is off")


# --- customer API ---------------------------------------------------------------------------


@_route("GET", "/healthz")
def healthz(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del request, params
    return json_response(200, {"status": "ok", "sandbox": api.shop.sandbox is not None})


@_route("GET", "/metrics")
def metrics(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del request, params
    body, content_type = api.shop.metrics.render()
    return HttpResponse(status=200, body=body, content_type=content_type)


@_route("GET", "/api/products")
def products(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del request, params
    return json_response(
        200,
        [
            {
                "id": view.product.id,
                "name": view.product.name,
                "price": view.product.price,
                "currency": view.product.currency,
                "source": view.product.source,
                "available": view.available,
            }
            for view in api.checkout.list_products()
        ],
    )


@_route("POST", "/api/orders")
def create_order(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    data = _json_body(request)
    email = data.get("email")
    if not isinstance(email, str):
        raise InvalidInput("email must be a string", code="invalid_email")
    created = api.checkout.create_order(
        email=email,
        items=_order_lines(data),
        idempotency_key=request.headers.get("idempotency-key"),
    )
    body = order_json(created.order, None) | {"access_token": created.access_token}
    return json_response(200 if created.replayed else 201, body)


@_route("GET", "/api/orders/{order_id}")
def get_order(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    view = api.checkout.get_order(params["order_id"], _token(request))
    return json_response(200, order_json(view.order, view.payment))


@_route("POST", "/api/orders/{order_id}/payment")
def open_payment(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    opened = api.checkout.open_payment(params["order_id"], _token(request))
    return json_response(201 if opened.created else 200, {"payment": payment_json(opened.payment)})


@_route("POST", "/api/orders/{order_id}/items/{item_id}/reveal")
def reveal(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    revealed = api.checkout.reveal(params["order_id"], params["item_id"], _token(request))
    return json_response(
        200, {"url": revealed.url, "urls": list(revealed.urls), "expires_at": revealed.expires_at}
    )


@_route("GET", "/keys/{signed}")
def key(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del request
    secret, content_type = api.shop.open_key(params["signed"])
    return HttpResponse(
        status=200,
        body=secret,
        content_type=content_type,
        headers={"cache-control": "no-store", "x-content-type-options": "nosniff"},
    )


@_route("POST", "/webhooks/nowpayments")
def webhook(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    result = api.checkout.handle_ipn(request.body, request.headers)
    if result.status_code >= HTTPStatus.BAD_REQUEST:
        return error_response(result.status_code, result.code, result.reason)
    return json_response(200, {"ok": True, "outcome": result.outcome, "reason": result.reason})


@_route("GET", "/api/orders/{order_id}/events")
def events(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    order_id, token = params["order_id"], _token(request)
    api.checkout.get_order(order_id, token)  # authorise before streaming
    return HttpResponse(
        status=200,
        content_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        stream=_status_stream(api, order_id, token),
        stream_interval=SSE_POLL_SECONDS,
    )


def _status_stream(api: ShopApi, order_id: str, token: str | None) -> Iterator[bytes]:
    """One chunk per poll of the order: a ``status`` event when it changed, else a
    keep-alive comment (``:``); the stream ends once the order can change no more.

    It never sleeps: the server waits ``SSE_POLL_SECONDS`` between chunks. The comment
    is how a server learns a client went away (the write fails), so an abandoned stream
    ends within a poll.
    """
    last: tuple[object, ...] | None = None
    started = time.monotonic()
    prefix = b"retry: 2000\n\n"  # sent with the first poll's event
    while time.monotonic() - started < SSE_MAX_SECONDS:
        view = api.checkout.get_order(order_id, token)
        state = (
            view.order.status,
            view.order.flags,
            view.payment and view.payment.status,
            tuple(i.delivered for i in view.order.items),
        )
        if state != last:
            last = state
            payload = json.dumps(
                order_json(view.order, view.payment), separators=(",", ":"), default=_json_default
            )
            yield prefix + f"event: status\ndata: {payload}\n\n".encode()
            prefix = b""
        else:
            yield b":\n\n"
        if view.order.status in TERMINAL:
            return  # nothing automatic changes it now; the page polls for admin changes


# --- admin API ------------------------------------------------------------------------------


def _enum_query(request: HttpRequest, name: str, enum: type[Any]) -> Any:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return enum(raw)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise InvalidInput(f"{name} must be one of {allowed}", code=f"invalid_{name}") from None


@_route("GET", "/api/admin/orders")
def admin_orders(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    api.require_admin(request)
    orders = api.checkout.list_orders(
        status=_enum_query(request, "status", OrderStatus), flag=_enum_query(request, "flag", Flag)
    )
    return json_response(200, [order_json(o, None) for o in orders])


@_route("GET", "/api/admin/orders/{order_id}")
def admin_order(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    api.require_admin(request)
    view = api.checkout.admin_order(params["order_id"])
    payment = next((p for p in view.payments if p.id == view.order.payment_id), None)
    return json_response(
        200,
        order_json(view.order, payment)
        | {
            "audit": [
                {"at": a.at, "action": a.action, "detail": a.detail, "actor": a.actor}
                for a in view.audit
            ],
            "webhooks": [
                {
                    "received_at": w.received_at,
                    "outcome": w.outcome,
                    "reason": w.reason,
                    "signature_valid": w.signature_valid,
                    "provider_status": w.provider_status,
                    "payment_id": w.payment_id,
                    "body_sha256": w.body_sha256,
                }
                for w in view.webhooks
            ],
            "jobs": [_job_json(j) for j in view.jobs],
            "reveals": [
                {"item_id": r.item_id, "at": r.at, "expires_at": r.expires_at} for r in view.reveals
            ],
        },
    )


def _job_json(job: Any) -> dict[str, object]:
    return {
        "key": job.key,
        "kind": job.kind,
        "order_id": job.order_id,
        "state": job.state,
        "attempts": job.attempts,
        "run_at": job.run_at,
        "last_error": job.last_error,
    }


@_route("POST", "/api/admin/orders/{order_id}/retry-fulfillment")
def admin_retry(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    api.require_admin(request)
    order = api.checkout.retry_fulfillment(params["order_id"])
    return json_response(200, order_json(order, None))


@_route("POST", "/api/admin/orders/{order_id}/resend-email")
def admin_resend_email(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    api.require_admin(request)
    order = api.checkout.resend_email(params["order_id"])
    return json_response(200, order_json(order, None))


@_route("POST", "/api/admin/orders/{order_id}/resolve")
def admin_resolve(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    api.require_admin(request)
    data = _json_body(request)
    action, note = data.get("action"), data.get("note", "")
    if not isinstance(action, str):
        raise InvalidInput("action must be 'fulfill' or 'refund'", code="invalid_action")
    if not isinstance(note, str):
        raise InvalidInput("note must be a string", code="invalid_note")
    order = api.checkout.resolve(params["order_id"], action=action, note=note)
    return json_response(200, order_json(order, None))


@_route("POST", "/api/admin/products/{product_id}/keys")
def admin_pool_keys(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    api.require_admin(request)
    keys = _json_body(request).get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise InvalidInput("keys must be a list of strings", code="invalid_keys")
    added = api.checkout.add_pool_keys(params["product_id"], keys)
    return json_response(201, {"added": added})


@_route("GET", "/api/admin/jobs")
def admin_jobs(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    api.require_admin(request)
    jobs = api.checkout.list_jobs(state=_enum_query(request, "state", JobState))
    return json_response(200, [_job_json(j) for j in jobs])


# --- sandbox control ------------------------------------------------------------------------


@_route("POST", "/sandbox/payments/{payment_id}/pay")
def sandbox_pay(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    api.require_sandbox()
    amount = _decimal_field(_json_body(request, optional=True), "amount")
    if amount is not None and not 0 < amount < MAX_SANDBOX_AMOUNT:
        raise InvalidInput(
            f"amount must be more than zero and below {MAX_SANDBOX_AMOUNT}", code="invalid_amount"
        )
    return json_response(200, api.shop.sandbox_pay(params["payment_id"], amount))


@_route("POST", "/sandbox/payments/{payment_id}/fail")
def sandbox_fail(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del request
    api.require_sandbox()
    return json_response(200, api.shop.sandbox_send(params["payment_id"], "fail"))


@_route("POST", "/sandbox/payments/{payment_id}/expire")
def sandbox_expire(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del request
    api.require_sandbox()
    return json_response(200, api.shop.sandbox_send(params["payment_id"], "expire"))


@_route("POST", "/sandbox/clock/advance")
def sandbox_clock(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    api.require_sandbox()
    seconds = _decimal_field(_json_body(request), "seconds")
    if seconds is None or seconds > 366 * 86400:
        raise InvalidInput("seconds must be between 0 and one year", code="invalid_seconds")
    return json_response(200, api.shop.advance_clock(seconds))


@_route("POST", "/sandbox/kinguin/outage")
def sandbox_outage(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    api.require_sandbox()
    failures = _json_body(request).get("failures")
    if (
        isinstance(failures, bool)
        or not isinstance(failures, int)
        or not 0 <= failures <= MAX_OUTAGE_FAILURES
    ):
        raise InvalidInput(
            f"failures must be an integer from 0 to {MAX_OUTAGE_FAILURES}", code="invalid_failures"
        )
    return json_response(200, api.shop.kinguin_outage(failures))


# --- the customer page ----------------------------------------------------------------------

PAGE_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# Text compresses; PNG already is.
COMPRESSED_TYPES: Final = frozenset({".html", ".js", ".css", ".svg"})
_PAGE_FILE = re.compile(r"^[A-Za-z0-9_-]+\.(html|js|css|svg|png)$")


def _page_file(api: ShopApi, request: HttpRequest, name: str) -> HttpResponse:
    page_dir = api.shop.page_dir
    if page_dir is None or not _PAGE_FILE.match(name) or not (page_dir / name).is_file():
        raise NotFound(f"no page file {name!r}")
    path = page_dir / name
    body = path.read_bytes()
    headers = {"cache-control": "no-cache", "vary": "accept-encoding"}
    if path.suffix in COMPRESSED_TYPES and _accepts_gzip(request):
        body = _gzipped(body)
        headers["content-encoding"] = "gzip"
    return HttpResponse(
        status=200, body=body, content_type=PAGE_TYPES[path.suffix], headers=headers
    )


def _accepts_gzip(request: HttpRequest) -> bool:
    """Whether ``Accept-Encoding`` allows gzip: named (or ``*``) without ``q=0``."""
    weights: dict[str, bool] = {}
    for part in request.headers.get("accept-encoding", "").split(","):
        coding, _, params = part.strip().lower().partition(";")
        quality = params.strip().removeprefix("q=").strip() if "q=" in params else "1"
        try:
            weights[coding.strip()] = float(quality) > 0
        except ValueError:
            weights[coding.strip()] = False
    return weights.get("gzip", weights.get("*", False))


@functools.lru_cache(maxsize=32)
def _gzipped(body: bytes) -> bytes:
    # mtime=0: the same file compresses to the same bytes (stable ETags, caches).
    return gzip.compress(body, compresslevel=9, mtime=0)


@_route("GET", "/")
def page(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    return _page_file(api, request, "index.html")


@_route("GET", "/order/{order_id}")
def order_page(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    return _page_file(api, request, "index.html")


@_route("GET", "/static/{name}")
def static(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    return _page_file(api, request, params["name"])


@_route("GET", "/api/orders/{order_id}/qr.svg")
def payment_qr(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    import segno  # noqa: PLC0415 - only the example servers install it

    view = api.checkout.get_order(params["order_id"], _token(request))
    if view.payment is None:
        raise NotFound("the order has no payment yet")
    payment = view.payment
    # A coin with no standard URI gets a code of the bare address, which its wallets scan.
    uri = payment_uri(payment.pay_currency, payment.pay_address, payment.pay_amount)
    out = io.BytesIO()
    segno.make(uri or payment.pay_address, error="m").save(out, kind="svg", scale=4, border=2)
    return HttpResponse(status=200, body=out.getvalue(), content_type="image/svg+xml")
