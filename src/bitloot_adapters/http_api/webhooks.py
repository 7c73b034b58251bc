"""Webhooks: the payment provider's IPN is handed to the checkout as received; Kinguin's
``order.status`` wakes a waiting fulfillment."""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from bitloot_adapters.http_api.shapes import (
    HttpRequest,
    HttpResponse,
    error_response,
    json_response,
)
from bitloot_adapters.kinguin_webhook import receive_kinguin_webhook

if TYPE_CHECKING:
    from bitloot_adapters.http_api.api import ShopApi


def webhook(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    result = api.checkout.handle_ipn(request.body, request.headers)
    if result.status_code >= HTTPStatus.BAD_REQUEST:
        return error_response(result.status_code, result.code, result.reason)
    return json_response(200, {"ok": True, "outcome": result.outcome, "reason": result.reason})


def webhook_too_large(api: ShopApi, params: dict[str, str]) -> None:
    """An IPN over the body limit is audited as a bad signature; its body is not kept."""
    del params
    api.checkout.handle_ipn(b"", {})


def kinguin_webhook(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    result = receive_kinguin_webhook(
        api.checkout,
        secret=api.shop.settings.kinguin_webhook_secret,
        body=request.body,
        headers=request.headers,
    )
    if result.status >= HTTPStatus.MULTIPLE_CHOICES:
        return error_response(result.status, result.code, result.message)
    return HttpResponse(status=result.status)  # Kinguin expects an empty body
