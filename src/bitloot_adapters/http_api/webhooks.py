"""Payment providers' webhooks: the IPN is handed to the checkout as received."""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from bitloot_adapters.http_api.shapes import (
    HttpRequest,
    HttpResponse,
    error_response,
    json_response,
)

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
