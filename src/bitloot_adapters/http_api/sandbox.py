"""The sandbox's control routes (only while the shop runs in sandbox mode): pay, fail or
expire a sandbox payment, move the clock, make Kinguin fail. They drive the shop's
``SandboxControls``; the route table answers 404 when the sandbox is off."""

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


def sandbox_pay(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    amount = decimal_field(json_body(request, optional=True), "amount")
    if amount is not None and not 0 < amount < MAX_SANDBOX_AMOUNT:
        raise InvalidInput(
            f"amount must be more than zero and below {MAX_SANDBOX_AMOUNT}", code="invalid_amount"
        )
    return json_response(200, api.sandbox.pay(params["payment_id"], amount))


def sandbox_fail(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del request
    return json_response(200, api.sandbox.send(params["payment_id"], "fail"))


def sandbox_expire(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del request
    return json_response(200, api.sandbox.send(params["payment_id"], "expire"))


def sandbox_clock(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    seconds = decimal_field(json_body(request), "seconds")
    if seconds is None or seconds > MAX_CLOCK_SECONDS:
        raise InvalidInput("seconds must be between 0 and one year", code="invalid_seconds")
    return json_response(200, api.sandbox.advance_clock(seconds))


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
