"""NOWPayments as a payment provider: its status table, webhook and payment parser.

The wire format (HMAC-SHA512 signatures over Node's JSON text, the IPN body and its
limits) is the ``ipn`` module beside this one, whose names are re-exported here; this
module turns it into the neutral values of the provider seam. NOWPayments' IPNs carry
the whole payment, so a webhook never needs a re-read, and the payment JSON its API
answers has the IPN's shape, so one parser serves both (``parse_payment``, used by the
adapter's client).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from bitloot_core.chart import PaymentKind
from bitloot_core.errors import BadSignature
from bitloot_core.providers import PaymentUpdate, ProviderStatus, WebhookNotice
from bitloot_core.providers.nowpayments.ipn import (
    Ipn,
    canonical_json,
    dedupe_key,
    matching_secret,
    parse_ipn,
    verify_ipn_signature,
)

__all__ = [
    "NAME",
    "SIGNATURE_HEADER",
    "STATUSES",
    "Ipn",
    "NowPayments",
    "canonical_json",
    "dedupe_key",
    "matching_secret",
    "parse_ipn",
    "parse_payment",
    "update_of",
    "verify_ipn_signature",
]

NAME: Final = "nowpayments"
SIGNATURE_HEADER: Final = "x-nowpayments-sig"

K = PaymentKind

# The seed's 10-row table: provider status -> what it means for the payment.
STATUSES: Final = MappingProxyType(
    {
        "waiting": ProviderStatus(
            kind=K.WAITING, description="Invoice created, waiting for payment"
        ),
        "confirming": ProviderStatus(
            kind=K.CONFIRMING, description="Payment detected, awaiting confirmations"
        ),
        "sending": ProviderStatus(
            kind=K.CONFIRMING, description="Transaction broadcasting to blockchain"
        ),
        "confirmed": ProviderStatus(
            kind=K.CONFIRMED, description="Blockchain confirmed, not yet finished"
        ),
        "finished": ProviderStatus(
            kind=K.PAID, description="Payment complete, fulfillment triggered"
        ),
        "partially_paid": ProviderStatus(
            kind=K.PAID, description="Customer sent less than required"
        ),
        "underpaid": ProviderStatus(kind=K.PAID, description="Equivalent to partially_paid"),
        "expired": ProviderStatus(kind=K.EXPIRED, description="Payment window expired"),
        "refunded": ProviderStatus(
            kind=K.REFUNDED, description="Admin-initiated refund (rare): reaches any order"
        ),
        "failed": ProviderStatus(kind=K.FAILED, description="Payment rejected/failed"),
    }
)


def update_of(event: Ipn) -> PaymentUpdate:
    """The neutral update an IPN (or the API's payment JSON) says."""
    row = STATUSES.get(event.payment_status)
    return PaymentUpdate(
        provider=NAME,
        payment_id=event.payment_id,
        provider_status=event.payment_status,
        kind=None if row is None else row.kind,
        dedupe_key=dedupe_key(event),
        actually_paid=event.actually_paid,
        order_id=event.order_id,
        parent_payment_id=event.parent_payment_id,
        price_amount=event.price_amount,
        price_currency=event.price_currency,
        pay_amount=event.pay_amount,
        pay_currency=event.pay_currency,
        updated_at=event.updated_at,
    )


def parse_payment(raw_body: bytes) -> PaymentUpdate:
    """``GET /payment/{id}``'s JSON as an update; raises ``MalformedWebhook`` if unusable."""
    return update_of(parse_ipn(raw_body))


@dataclass(frozen=True, slots=True, kw_only=True)
class NowPayments:
    """The NOWPayments provider, holding the IPN secret its webhooks are signed with.

    During a rotation ``previous_ipn_secret`` is accepted beside it; a webhook it signed
    says so (``WebhookNotice.signed_with``), so the webhook log shows when the old secret
    stopped being used."""

    ipn_secret: str = field(repr=False)
    name: str = NAME
    previous_ipn_secret: str | None = field(default=None, repr=False)

    @property
    def statuses(self) -> Mapping[str, ProviderStatus]:
        return STATUSES

    def read_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> WebhookNotice:
        signature = _header(headers, SIGNATURE_HEADER)
        keys = [self.ipn_secret]
        if self.previous_ipn_secret:
            keys.append(self.previous_ipn_secret)
        matched = matching_secret(raw_body, signature, keys)
        if matched is None:
            raise BadSignature("bad signature")
        update = update_of(parse_ipn(raw_body))
        return WebhookNotice(
            payment_id=update.payment_id,
            dedupe_key=update.dedupe_key,
            update=update,
            signed_with=None if matched == 0 else "previous",
        )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None
