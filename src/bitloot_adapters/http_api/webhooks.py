"""Webhooks: the payment provider's IPN is handed to the checkout as received; Kinguin's
``order.status`` wakes a waiting fulfillment."""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Final

from bitloot_adapters.http_api.shapes import (
    HttpRequest,
    HttpResponse,
    error_response,
    json_response,
)
from bitloot_adapters.kinguin_webhook import receive_kinguin_webhook
from bitloot_core.errors import RateLimited
from bitloot_core.service import IpnResult
from bitloot_core.values import WebhookOutcome

if TYPE_CHECKING:
    from bitloot_adapters.http_api.api import ShopApi


# Why a webhook was refused -> the status that tells the provider whether to send it again.
_WEBHOOK_REFUSALS: Final = {
    "bad_signature": HTTPStatus.UNAUTHORIZED,
    "unknown_provider": HTTPStatus.NOT_FOUND,
    "provider_unavailable": HTTPStatus.SERVICE_UNAVAILABLE,
    "provider_error": HTTPStatus.BAD_GATEWAY,
}


def webhook_status(result: IpnResult) -> int:
    """The HTTP status answering a payment webhook that came to ``result``."""
    if result.outcome is WebhookOutcome.REJECTED:
        return _WEBHOOK_REFUSALS.get(result.code, HTTPStatus.BAD_REQUEST)
    return HTTPStatus.OK


def throttle(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> None:
    """Raise ``RateLimited`` for an unsigned webhook from a client past its budget of
    rejected ones. Cheap and without I/O (a signature check), so a server may run it before
    the request takes a thread: a flood then costs a signature check per body, no write
    and no thread a genuine IPN would wait for. A correctly signed webhook always passes."""
    wait = api.limits.webhook_rejects.wait(f"address {api.client(request)}")
    if wait is not None and not api.checkout.webhook_signed(
        params["provider"], request.body, request.headers
    ):
        raise RateLimited(f"too many rejected webhooks; try again in {wait} s", retry_after=wait)


def webhook(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    throttle(api, request, params)
    result = api.checkout.handle_webhook(params["provider"], request.body, request.headers)
    if result.outcome is WebhookOutcome.REJECTED:
        if result.code == "bad_signature":
            api.limits.webhook_rejects.take(f"address {api.client(request)}")
        return error_response(webhook_status(result), result.code, result.reason)
    return json_response(200, {"ok": True, "outcome": result.outcome, "reason": result.reason})


def webhook_too_large(api: ShopApi, params: dict[str, str]) -> None:
    """A webhook over the body limit is audited as a bad signature; its body is not kept."""
    api.checkout.handle_webhook(params["provider"], b"", {})


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
