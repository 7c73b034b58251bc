"""The payment provider seam: what the core needs from each payment provider.

A provider is a pure module of the core (standard library only, no I/O). It knows its
own wire format and its own statuses, and speaks to the rest of the core only through
the neutral values here:

- ``PaymentProvider.read_webhook`` verifies a webhook's signature and parses it into a
  ``WebhookNotice``: the payment it is about, the key that recognises a repeated
  delivery, and either the whole ``PaymentUpdate`` (NOWPayments' IPNs carry everything)
  or ``None``, meaning "re-read the payment through the gateway" (a provider whose
  webhooks carry no amounts, such as BTCPay Server's). A genuine webhook about nothing
  the shop keeps is a notice with ``ignore`` set: acknowledged, logged, not applied.
- A ``PaymentUpdate`` is the provider's word on a payment, in every provider's terms:
  a ``PaymentKind`` from the provider's status table (``statuses``), the amounts, and the
  fields that bind it to our order. The chart sees only the generic payment event made
  from it (``bitloot_core.chart.payment_event``).
- The adapter's client for the provider (the ``PaymentGateway`` port) answers
  ``get_payment`` with a ``PaymentUpdate`` built by the provider module's own parser.

See docs/providers.md for adding one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from bitloot_core.chart import PaymentKind

__all__ = ["PaymentProvider", "PaymentUpdate", "ProviderStatus", "WebhookNotice"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderStatus:
    """One row of a provider's status table: what its raw status means."""

    kind: PaymentKind
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentUpdate:
    """A provider's word on one payment, in terms every provider shares.

    ``kind`` is ``None`` for a status the provider's table does not know: the update is
    then logged and ignored. ``dedupe_key`` recognises the same word said again; amounts
    are exact ``Decimal``s in the pay currency (``actually_paid``) and the price currency
    (``price_amount``); currencies are lowercase.
    """

    provider: str
    payment_id: str
    provider_status: str
    kind: PaymentKind | None
    dedupe_key: str
    actually_paid: Decimal = Decimal(0)
    order_id: str | None = None
    # A repeated deposit names the payment it tops up.
    parent_payment_id: str | None = None
    price_amount: Decimal | None = None
    price_currency: str | None = None
    pay_amount: Decimal | None = None
    pay_currency: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookNotice:
    """A verified webhook: which payment, how to recognise a repeat, and what it says.

    ``update`` is ``None`` when the webhook does not carry the payment's state: the
    service then re-reads the payment through the provider's gateway.
    """

    payment_id: str
    dedupe_key: str
    update: PaymentUpdate | None
    # Why a genuine webhook is about nothing the shop keeps (say, BTCPay's payout events):
    # it is then acknowledged and logged as ignored, so the provider does not send it
    # again. None: a webhook about a payment.
    ignore: str | None = None
    # Which of the provider's secrets signed it, when not the current one: "previous"
    # during a secret rotation. The webhook log records it.
    signed_with: str | None = None


class PaymentProvider(Protocol):
    """A payment provider's pure half. Instances hold their webhook secret."""

    @property
    def name(self) -> str:
        """Its name on payment records and in the webhook path (``/webhooks/{name}``)."""
        ...

    @property
    def statuses(self) -> Mapping[str, ProviderStatus]:
        """Its status table: raw status -> meaning (for the decision and the docs)."""
        ...

    def read_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> WebhookNotice:
        """Verify and parse one webhook.

        Raises ``BadSignature`` when the signature does not verify (checked first, on the
        raw bytes) and ``MalformedWebhook`` when a signed body is not a usable webhook.
        Must raise nothing else, whatever it is given.
        """
        ...
