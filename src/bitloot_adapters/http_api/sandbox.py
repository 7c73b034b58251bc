"""The sandbox's control routes (only while the shop runs in sandbox mode): pay, fail or
expire a sandbox payment, move the clock, make Kinguin fail. They drive the shop's
``SandboxControls``; the route table answers 404 when the sandbox is off.

Paying answers once the shop has answered the IPNs (``"answered": 200``), except on a
single-threaded server: there the IPNs go out just after the answer (``"answered":
null``), since the shop could not take them while this request waited."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Final

from bitloot_adapters.http_api.shapes import (
    HttpRequest,
    HttpResponse,
    decimal_field,
    json_body,
    json_response,
)
from bitloot_core.errors import InvalidInput

if TYPE_CHECKING:
    from bitloot_adapters.http_api.api import ShopApi

MAX_OUTAGE_FAILURES: Final = 100
# A sandbox payment's amount, in the pay currency: far above any order, far below what
# would overflow the sandbox's arithmetic.
MAX_SANDBOX_AMOUNT: Final = Decimal(10**12)
MAX_CLOCK_SECONDS: Final = 366 * 86400
MAX_SANDBOX_STOCK: Final = 1_000_000
MAX_PRODUCT_ID: Final = 100


def sandbox_pay(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    amount = decimal_field(json_body(request, optional=True), "amount")
    if amount is not None and not 0 < amount < MAX_SANDBOX_AMOUNT:
        raise InvalidInput(
            f"amount must be more than zero and below {MAX_SANDBOX_AMOUNT}", code="invalid_amount"
        )
    sent = api.sandbox.pay(params["payment_id"], amount, wait=request.concurrent)
    return json_response(200, sent)


def sandbox_fail(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    sent = api.sandbox.send(params["payment_id"], "fail", wait=request.concurrent)
    return json_response(200, sent)


def sandbox_expire(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    sent = api.sandbox.send(params["payment_id"], "expire", wait=request.concurrent)
    return json_response(200, sent)


def sandbox_clock(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    seconds = decimal_field(json_body(request), "seconds")
    if seconds is None or seconds > MAX_CLOCK_SECONDS:
        raise InvalidInput("seconds must be between 0 and one year", code="invalid_seconds")
    return json_response(200, api.sandbox.advance_clock(seconds, wait=request.concurrent))


def sandbox_outage(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    failures = json_body(request).get("failures")
    if (
        isinstance(failures, bool)
        or not isinstance(failures, int)
        or not 0 <= failures <= MAX_OUTAGE_FAILURES
    ):
        raise InvalidInput(
            f"failures must be an integer from 0 to {MAX_OUTAGE_FAILURES}", code="invalid_failures"
        )
    return json_response(200, api.sandbox.kinguin_outage(failures))


def sandbox_key_delay(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    seconds = decimal_field(json_body(request), "seconds")
    if seconds is None or not 0 <= seconds <= MAX_CLOCK_SECONDS:
        raise InvalidInput("seconds must be between 0 and one year", code="invalid_seconds")
    return json_response(200, api.sandbox.kinguin_key_delay(seconds))


MAX_LATENCY_SECONDS: Final = 600


def sandbox_latency(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    seconds = decimal_field(json_body(request), "seconds")
    if seconds is None or not 0 <= seconds <= MAX_LATENCY_SECONDS:
        raise InvalidInput(
            f"seconds must be between 0 and {MAX_LATENCY_SECONDS}", code="invalid_seconds"
        )
    return json_response(200, api.sandbox.kinguin_latency(seconds))


def sandbox_kinguin_orders(
    api: ShopApi, request: HttpRequest, params: dict[str, str]
) -> HttpResponse:
    del request, params
    return json_response(200, api.sandbox.kinguin_orders())


def sandbox_stock(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    data = json_body(request)
    product_id, qty = data.get("product_id"), data.get("qty")
    if not isinstance(product_id, str) or not 0 < len(product_id) <= MAX_PRODUCT_ID:
        raise InvalidInput("product_id must be a non-empty string", code="invalid_product")
    if isinstance(qty, bool) or not isinstance(qty, int) or not 0 <= qty <= MAX_SANDBOX_STOCK:
        raise InvalidInput(f"qty must be 0 to {MAX_SANDBOX_STOCK}", code="invalid_quantity")
    # Our product id or Kinguin's productId.
    product = next(
        (p.product for p in api.checkout.list_products() if p.product.id == product_id), None
    )
    ref = product.supplier_ref if product is not None and product.supplier_ref else product_id
    return json_response(200, api.sandbox.kinguin_stock(ref, qty))
