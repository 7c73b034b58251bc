"""The customer's routes: products, orders, payments, reveals, key files, the status
stream and the payment QR code; and the health and metrics probes."""

from __future__ import annotations

import hmac
import io
import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from bitloot_adapters.http_api.shapes import (
    HttpRequest,
    HttpResponse,
    bearer_token,
    header_token,
    json_body,
    json_default,
    json_response,
    order_json,
    payment_json,
)
from bitloot_adapters.rate_limits import HeldStream
from bitloot_core.chart import TERMINAL
from bitloot_core.errors import InvalidInput, NotFound, RateLimited, Unauthorized
from bitloot_core.payment_uri import payment_uri

if TYPE_CHECKING:
    from collections.abc import Mapping

    from bitloot_adapters.http_api.api import ShopApi

SSE_POLL_SECONDS: Final = 0.5
SSE_MAX_SECONDS: Final = 30 * 60.0
STREAM_RETRY_SECONDS: Final = 5
MAX_PROVIDER_NAME: Final = 40


def healthz(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del request, params
    return json_response(
        200,
        {
            "status": "ok",
            "mode": api.shop.settings.mode,
            "sandbox": api.shop.sandbox is not None,
        },
    )


def metrics(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    expected = api.shop.settings.metrics_token
    if expected is not None:
        given = header_token(request) or ""
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized("the metrics token is missing or wrong")
    body, content_type = api.shop.metrics.render()
    return HttpResponse(status=200, body=body, content_type=content_type)


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


def create_order(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    api.limits.orders.check(f"address {api.client(request)}")
    data = json_body(request)
    email = data.get("email")
    if not isinstance(email, str):
        raise InvalidInput("email must be a string", code="invalid_email")
    api.limits.orders.check(f"email {email.strip().casefold()}")
    created = api.checkout.create_order(
        email=email,
        items=_order_lines(data),
        idempotency_key=request.headers.get("idempotency-key"),
    )
    # A replay shows the order as it is now, with its payment once one is open.
    payment = api.checkout.payments_of([created.order]).get(created.order.id)
    body = order_json(created.order, payment) | {"access_token": created.access_token}
    return json_response(200 if created.replayed else 201, body)


def get_order(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    view = api.checkout.get_order(params["order_id"], bearer_token(request))
    return json_response(200, order_json(view.order, view.payment))


# How the customer page names each payment provider; an unlisted one shows its own name.
PROVIDER_NAMES: Final = {"nowpayments": "NOWPayments", "btcpay": "BTCPay Server"}


def payment_providers(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    """The payment providers a customer can choose from, the default first."""
    del request, params
    names = api.checkout.provider_names
    return json_response(
        200, {"providers": [{"id": n, "name": PROVIDER_NAMES.get(n, n)} for n in names]}
    )


def open_payment(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    # Each order opens at most one provider payment, so the order limits bound payments
    # per email too; this bounds what one address can make the providers do.
    api.limits.payments.check(f"address {api.client(request)}")
    provider = json_body(request, optional=True).get("provider")
    if provider is not None and (
        not isinstance(provider, str) or not 0 < len(provider) <= MAX_PROVIDER_NAME
    ):
        raise InvalidInput("provider must be a provider's name", code="unknown_provider")
    opened = api.checkout.open_payment(params["order_id"], bearer_token(request), provider)
    return json_response(201 if opened.created else 200, {"payment": payment_json(opened.payment)})


def reveal(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    revealed = api.checkout.reveal(params["order_id"], params["item_id"], bearer_token(request))
    return json_response(
        200, {"url": revealed.url, "urls": list(revealed.urls), "expires_at": revealed.expires_at}
    )


def key(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del request
    secret, content_type = api.shop.open_key(params["signed"])
    return HttpResponse(
        status=200,
        body=secret,
        content_type=content_type,
        headers={"cache-control": "no-store", "x-content-type-options": "nosniff"},
    )


def events(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    order_id, token = params["order_id"], bearer_token(request)
    api.checkout.get_order(order_id, token)  # authorise before streaming
    slots = api.limits.streams
    if not slots.acquire(order_id):
        # Each stream holds a connection while it lasts; the page falls back to polling.
        raise RateLimited(
            "too many event streams are open (for this order, or in all)",
            retry_after=STREAM_RETRY_SECONDS,
        )
    return HttpResponse(
        status=200,
        content_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        stream=HeldStream(_status_stream(api, order_id, token), slots, order_id),
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
                order_json(view.order, view.payment), separators=(",", ":"), default=json_default
            )
            yield prefix + f"event: status\ndata: {payload}\n\n".encode()
            prefix = b""
        else:
            yield b":\n\n"
        if view.order.status in TERMINAL:
            return  # nothing automatic changes it now; the page polls for admin changes


def payment_qr(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    import segno  # noqa: PLC0415 - only the example servers install it

    view = api.checkout.get_order(params["order_id"], bearer_token(request))
    if view.payment is None:
        raise NotFound("the order has no payment yet")
    payment = view.payment
    # A coin with no standard URI gets a code of the bare address, which its wallets scan.
    uri = payment_uri(payment.pay_currency, payment.pay_address, payment.pay_amount)
    out = io.BytesIO()
    segno.make(uri or payment.pay_address, error="m").save(out, kind="svg", scale=4, border=2)
    return HttpResponse(status=200, body=out.getvalue(), content_type="image/svg+xml")
