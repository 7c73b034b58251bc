"""Kinguin's ``order.status`` webhook: verified, parsed, and handed to the checkout.

Kinguin sends ``{orderId, orderExternalId, status, updatedAt}`` with the headers
``X-Event-Name: order.status`` and ``X-Event-Secret`` (the configured secret itself, not
an HMAC), expects a 2xx answer with an empty body, and may deliver out of order. The
webhook is only a hint: it wakes the order's fulfillment, which asks Kinguin for the
truth, so a stale delivery changes nothing. Deliveries are deduplicated on (orderId,
status, updatedAt).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from bitloot_core.service import Checkout

__all__ = ["EVENT_NAME", "KinguinWebhookResult", "receive_kinguin_webhook"]

EVENT_NAME: Final = "order.status"
STATUSES: Final = frozenset({"processing", "completed", "canceled", "refunded"})
_MAX_FIELD: Final = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class KinguinWebhookResult:
    """The HTTP status to answer (2xx: an empty body), and why when refused."""

    status: int
    code: str = "ok"
    message: str = ""
    order_id: str | None = None


def receive_kinguin_webhook(
    checkout: Checkout, *, secret: str | None, body: bytes, headers: Mapping[str, str]
) -> KinguinWebhookResult:
    """Check, parse and apply one delivery; never raises for bad input."""
    lowered = {name.lower(): value for name, value in headers.items()}
    given = lowered.get("x-event-secret", "")
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        return KinguinWebhookResult(status=401, code="bad_signature", message="bad secret")
    if lowered.get("x-event-name") != EVENT_NAME:
        # order.complete is deprecated and others say nothing about keys: acknowledged.
        return KinguinWebhookResult(status=204)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    fields = [data.get(name) if isinstance(data, dict) else None for name in _NAMES]
    if not all(isinstance(value, str) and 0 < len(value) <= _MAX_FIELD for value in fields):
        return KinguinWebhookResult(
            status=400,
            code="malformed_webhook",
            message="expected {orderId, orderExternalId, status, updatedAt} as strings",
        )
    order_id, external_id, status, updated_at = (str(value) for value in fields)
    if status not in STATUSES:
        return KinguinWebhookResult(
            status=400, code="malformed_webhook", message=f"unknown status {status[:40]!r}"
        )
    ours = checkout.supplier_webhook(
        external_id=external_id,
        status=status,
        dedupe_key=f"kinguin:{order_id}:{status}:{updated_at}",
        body_sha256=hashlib.sha256(body).hexdigest(),
    )
    return KinguinWebhookResult(status=204, order_id=ours)


_NAMES: Final = ("orderId", "orderExternalId", "status", "updatedAt")
