"""BTCPay Server as a payment provider: its webhook check, its status table, its invoices.

BTCPay's webhooks say that something happened to an invoice, not where the invoice now
stands: they carry no amounts, arrive out of order (redeliveries, manual resends) and
repeat. So a webhook is only a trigger: ``read_webhook`` checks ``BTCPay-Sig`` (HMAC-SHA256
of the raw body under the webhook's secret, compared in constant time), keeps the
delivery's ``originalDeliveryId`` (the same on every retry and redelivery) as the key that
recognises a repeat, and answers a notice without an update, which makes the service
re-read the invoice through the gateway. What the invoice's ``(status,
additionalStatus)`` then means is ``STATUSES``, one row per pair; the event type never
decides (``EVENTS`` lists the ones that ask for a re-read; any other type, such as a
payout's, is acknowledged and ignored).

A late payment and a short payment end like NOWPayments' ones: an invoice that expired
with part of the money (``Expired/PaidPartial``) is money that arrived short; one paid in
full after it expired (``Expired/PaidLate``) is money that arrived, which the chart holds
for an admin on an order that expired meanwhile. A late payment counts only once every
payment of it is confirmed; until then it is still confirming.

The adapter's client (``bitloot_adapters.btcpay``) reads the invoice and its payment
method and hands them here as an ``Invoice``; ``update_of`` turns that into the neutral
update. Standard library only, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from bitloot_core.chart import PaymentKind
from bitloot_core.errors import BadSignature, MalformedWebhook
from bitloot_core.providers import PaymentUpdate, ProviderStatus, WebhookNotice
from bitloot_core.providers.webhook_json import holds_surrogate

__all__ = [
    "EVENTS",
    "NAME",
    "SIGNATURE_HEADER",
    "STATUSES",
    "BtcPay",
    "Invoice",
    "provider_status",
    "sign",
    "update_of",
]

NAME: Final = "btcpay"
SIGNATURE_HEADER: Final = "btcpay-sig"
MAX_WEBHOOK_BYTES: Final = 64 * 1024
_SIGNATURE_PREFIX: Final = "sha256="
_MAX_ID: Final = 128
# A late payment whose money is not all confirmed yet (BTCPay shows it as PaidLate at once).
UNCONFIRMED: Final = "unconfirmed"

K = PaymentKind

# (status, additionalStatus) of a freshly read invoice -> what it means for the payment.
# The key is "Status" or "Status/AdditionalStatus" (additionalStatus "None" left out).
STATUSES: Final = MappingProxyType(
    {
        "New": ProviderStatus(kind=K.WAITING, description="Invoice created, waiting for payment"),
        # Money arrived, so the order is no longer abandoned (the sweeper leaves it): the
        # invoice stays open for the rest, and its expiry makes the order underpaid.
        "New/PaidPartial": ProviderStatus(
            kind=K.CONFIRMING, description="Part paid; the invoice stays open for the rest"
        ),
        "Processing": ProviderStatus(
            kind=K.CONFIRMING, description="Paid in full, awaiting confirmations"
        ),
        "Processing/PaidOver": ProviderStatus(
            kind=K.CONFIRMING, description="Paid over, awaiting confirmations"
        ),
        "Settled": ProviderStatus(kind=K.PAID, description="Paid and confirmed"),
        "Settled/PaidOver": ProviderStatus(kind=K.PAID, description="Paid over and confirmed"),
        "Settled/Marked": ProviderStatus(
            kind=K.PAID, description="Marked settled by the merchant; the amounts decide"
        ),
        "Expired": ProviderStatus(kind=K.EXPIRED, description="Expired with nothing paid"),
        "Expired/PaidPartial": ProviderStatus(
            kind=K.PAID, description="Expired with part paid: the money arrived short"
        ),
        f"Expired/PaidLate/{UNCONFIRMED}": ProviderStatus(
            kind=K.CONFIRMING, description="Paid after expiry, awaiting confirmations"
        ),
        "Expired/PaidLate": ProviderStatus(
            kind=K.PAID, description="Paid after expiry and confirmed: held for an admin"
        ),
        "Invalid": ProviderStatus(
            kind=K.FAILED, description="Payment did not confirm in the monitoring window"
        ),
        "Invalid/PaidOver": ProviderStatus(
            kind=K.FAILED, description="Paid over but never confirmed"
        ),
        "Invalid/Marked": ProviderStatus(
            kind=K.FAILED, description="Marked invalid by the merchant"
        ),
    }
)

# Webhook types that ask for a re-read of their invoice (the invoice decides, not the type).
EVENTS: Final = MappingProxyType(
    {
        "InvoiceCreated": "An invoice was created",
        "InvoiceReceivedPayment": "A payment was seen (afterExpiration: after the invoice expired)",
        "InvoicePaymentSettled": "A payment was confirmed",
        "InvoiceProcessing": "Paid in full, awaiting confirmations",
        "InvoiceSettled": "Paid and confirmed, or marked settled",
        "InvoiceExpired": "The invoice expired (partiallyPaid: with part paid)",
        "InvoiceExpiredPaidPartial": "The invoice expired with part paid (BTCPay 2.1.2+)",
        "InvoicePaidAfterExpiration": "Paid in full after expiry (BTCPay 2.1.2+)",
        "InvoiceInvalid": "Never confirmed, or marked invalid",
    }
)


def sign(secret: str, raw_body: bytes) -> str:
    """The ``BTCPay-Sig`` value of ``raw_body`` under ``secret``."""
    return _SIGNATURE_PREFIX + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Invoice:
    """A freshly read invoice and its payment method, as the client parsed them.

    ``paid`` and ``due`` are in the payment method's currency (``pay_currency``): what
    arrived, and the invoice's whole amount in it; ``amount`` is in the invoice currency.
    ``confirmed`` is whether every payment received is confirmed.
    """

    id: str
    status: str
    additional_status: str
    amount: Decimal
    currency: str
    paid: Decimal
    due: Decimal
    pay_currency: str
    confirmed: bool
    order_id: str | None = None


def provider_status(invoice: Invoice) -> str:
    """The invoice's row name in ``STATUSES`` (``Settled``, ``Expired/PaidLate``, ...)."""
    name = invoice.status
    if invoice.additional_status not in ("", "None"):
        name += "/" + invoice.additional_status
    if name == "Expired/PaidLate" and not invoice.confirmed:
        name += "/" + UNCONFIRMED
    return name


def update_of(invoice: Invoice) -> PaymentUpdate:
    """The neutral update a freshly read invoice says (unknown pairs: ``kind`` None)."""
    status = provider_status(invoice)
    row = STATUSES.get(status)
    paid = format(invoice.paid.normalize(), "f")
    return PaymentUpdate(
        provider=NAME,
        payment_id=invoice.id,
        provider_status=status,
        kind=None if row is None else row.kind,
        # The same state read twice (a reconcile after a webhook) is one update.
        dedupe_key=f"{NAME}:{invoice.id}:{status}:{paid}",
        actually_paid=invoice.paid,
        order_id=invoice.order_id,
        price_amount=invoice.amount,
        price_currency=invoice.currency.lower(),
        pay_amount=invoice.due,
        pay_currency=invoice.pay_currency.lower(),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BtcPay:
    """The BTCPay Server provider, holding the secret of the store's webhook."""

    webhook_secret: str = field(repr=False)
    name: str = NAME

    @property
    def statuses(self) -> Mapping[str, ProviderStatus]:
        return STATUSES

    def read_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> WebhookNotice:
        if not self._signed(raw_body, _header(headers, SIGNATURE_HEADER)):
            raise BadSignature("bad signature")
        body = _load(raw_body)
        event = body.get("type")
        if not isinstance(event, str) or not event:
            raise MalformedWebhook("the webhook has no type", field="type")
        if event not in EVENTS:
            # Payouts, payment requests, ...: a store webhook on "everything" sends them.
            # Answered 200, or BTCPay (before 2.3.4) would send them again for an hour.
            reason = f"not an invoice event: {event[:40]!r}"
            return WebhookNotice(payment_id="", dedupe_key="", update=None, ignore=reason)
        invoice_id = _id(body, "invoiceId")
        # The first delivery's id, kept by every retry and redelivery (1.x misspelt it).
        delivery = next(
            (
                _id(body, name)
                for name in ("originalDeliveryId", "orignalDeliveryId", "deliveryId")
                if body.get(name) is not None
            ),
            None,
        )
        if delivery is None:
            raise MalformedWebhook("the webhook has no delivery id", field="deliveryId")
        return WebhookNotice(
            payment_id=invoice_id, dedupe_key=f"{NAME}:delivery:{delivery}", update=None
        )

    def _signed(self, raw_body: bytes, signature: str | None) -> bool:
        if not self.webhook_secret or signature is None or len(raw_body) > MAX_WEBHOOK_BYTES:
            return False
        expected = sign(self.webhook_secret, raw_body).encode()
        # Hex case carries no secret; anything not ASCII cannot match.
        given = signature.strip().lower().encode("ascii", "replace")
        return hmac.compare_digest(given, expected)


def _load(raw_body: bytes) -> dict[str, object]:
    try:
        body = json.loads(raw_body)
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8; absurd nesting
        raise MalformedWebhook("the webhook body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise MalformedWebhook("the webhook body is not a JSON object")
    if holds_surrogate(body):
        raise MalformedWebhook("the webhook body holds a lone surrogate (not text)")
    return body


def _id(body: Mapping[str, object], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_ID or not value.isprintable():
        raise MalformedWebhook(f"the webhook's {name} is not an id", field=name)
    return value


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None
