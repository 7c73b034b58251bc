"""One error hierarchy for bitloot, split by who is at fault.

    BitlootError                      status_hint 500
    ├── BadRequest                    the caller sent bad input (4xx)
    │   ├── InvalidInput              400 invalid_input (and subclasses' own codes)
    │   ├── NotFound                  404 not_found
    │   ├── Unauthorized              401 unauthorized
    │   └── Conflict                  409 conflict
    │       ├── IdempotencyConflict   409 idempotency_conflict
    │       ├── InvalidState          409 invalid_state
    │       ├── SoldOut               409 sold_out: the pool holds fewer keys than ordered
    │       └── PaymentOpening        409 payment_opening: another request is opening it
    │   └── RateLimited               429 rate_limited (``retry_after`` seconds)
    ├── WebhookRejected               the provider's (or an attacker's) webhook is unusable
    │   ├── BadSignature              401 bad_signature
    │   └── MalformedWebhook          400 malformed_webhook
    ├── KeyUrlRejected                403 url_invalid / url_expired
    ├── ProviderError                 a payment provider call failed (502)
    │   └── ProviderUnavailable       retryable: timeouts, 5xx, 429
    ├── SupplierError                 a key supplier call failed, needs an admin (502)
    │   ├── SupplierUnavailable       retryable: timeouts, 5xx, 429, ResourceLock, OrderFailed
    │   │   └── KeysPending           the supplier holds the order, keys not delivered yet
    │   ├── ProductUnavailable        out of stock (or short of the quantity): no purchase
    │   ├── PriceGuard                the supplier asks more than the product's limit
    │   └── SupplierOrderCanceled     the supplier canceled or refunded its order
    ├── MailerError                   the mail server refused a message (502)
    │   └── MailerUnavailable         retryable: the server is down or busy
    ├── VaultError                    the key vault failed (retryable, 503)
    ├── AdapterError                  an adapter failed in an unforeseen way (retryable)
    │   └── StoreUnavailable          503 store_unavailable: the database is down or busy
    ├── PoolEmpty                     a custom product has no key left (not retryable)
    └── ConcurrentUpdate              a compare-and-set lost; the caller retries (409)

A webhook about someone else's order is not an error: it is answered with the outcome
``rejected`` and the code ``unbound_webhook`` (``IpnResult``).

Every error carries ``code`` (a snake_case wire code), ``status_hint`` (the HTTP status a
server should answer) and ``retryable`` (whether the worker should try again).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar


class BitlootError(Exception):
    code: ClassVar[str] = "internal_error"
    status_hint: ClassVar[int] = 500
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, code: str | None = None, **data: object) -> None:
        super().__init__(message)
        self.message = message
        self.data = data
        if code is not None:
            self.code = code  # type: ignore[misc]  # a finer wire code for this instance


class BadRequest(BitlootError):
    code = "bad_request"
    status_hint = 400


class InvalidInput(BadRequest):
    code = "invalid_input"
    status_hint = 400


class RateLimited(BadRequest):
    """Too many requests of one kind from one client (or for one email) this minute."""

    code = "rate_limited"
    status_hint = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


class NotFound(BadRequest):
    code = "not_found"
    status_hint = 404


class Unauthorized(BadRequest):
    code = "unauthorized"
    status_hint = 401


class Conflict(BadRequest):
    code = "conflict"
    status_hint = 409


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class InvalidState(Conflict):
    code = "invalid_state"


class SoldOut(Conflict):
    """A custom product's pool holds fewer free keys than the order needs."""

    code = "sold_out"


class PaymentOpening(Conflict):
    """Another request is opening the order's payment with the provider right now."""

    code = "payment_opening"


class WebhookRejected(BitlootError):
    code = "webhook_rejected"
    status_hint = 400


class BadSignature(WebhookRejected):
    code = "bad_signature"
    status_hint = 401


class MalformedWebhook(WebhookRejected):
    code = "malformed_webhook"
    status_hint = 400


class KeyUrlRejected(BitlootError):
    status_hint = 403

    def __init__(self, reason: str) -> None:
        super().__init__(f"the key URL is {reason.removeprefix('url_')}", code=reason)


class ProviderError(BitlootError):
    code = "provider_error"
    status_hint = 502

    def __init__(
        self, message: str, *, provider_code: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message, provider_code=provider_code, status=status)
        self.provider_code = provider_code
        self.status = status


class ProviderUnavailable(ProviderError):
    code = "provider_unavailable"
    status_hint = 503
    retryable = True


class SupplierError(BitlootError):
    code = "supplier_error"
    status_hint = 502

    def __init__(self, message: str, *, kind: str | None = None, status: int | None = None) -> None:
        super().__init__(message, kind=kind, status=status)
        self.kind = kind
        self.status = status


class SupplierUnavailable(SupplierError):
    code = "supplier_unavailable"
    status_hint = 503
    retryable = True


class KeysPending(SupplierUnavailable):
    """The supplier's order is placed and paid, its keys are not delivered yet.

    Waiting is not failing: the order waits for the keys (a pre-order until its release)
    without using up fulfillment attempts.
    """

    code = "keys_pending"

    def __init__(
        self,
        message: str,
        *,
        preorder: bool = False,
        kind: str | None = "KeysPending",
        supplier_orders: tuple[str, ...] = (),
        release_at: datetime | None = None,
    ) -> None:
        super().__init__(message, kind=kind)
        self.preorder = preorder
        # The supplier's own order ids, and a pre-order's release when the supplier says.
        self.supplier_orders = supplier_orders
        self.release_at = release_at
        self.data["preorder"] = preorder
        self.data["supplier_orders"] = supplier_orders
        self.data["release_at"] = release_at


class ProductUnavailable(SupplierError):
    """The supplier cannot sell the product in the quantity ordered; nothing was bought."""

    code = "product_unavailable"
    status_hint = 409


class PriceGuard(SupplierError):
    """The supplier asks more than the most the shop pays for the product; nothing was
    bought (held for the admin: approve the purchase once, or refund)."""

    code = "price_guard"
    status_hint = 409


class SupplierOrderCanceled(SupplierError):
    """The supplier canceled or refunded the order it held for us; never bought again."""

    code = "supplier_order_canceled"


class MailerError(BitlootError):
    code = "mailer_error"
    status_hint = 502


class MailerUnavailable(MailerError):
    code = "mailer_unavailable"
    status_hint = 503
    retryable = True


class VaultError(BitlootError):
    code = "vault_error"
    status_hint = 503
    retryable = True


class AdapterError(BitlootError):
    code = "adapter_error"
    status_hint = 500
    retryable = True


class StoreUnavailable(AdapterError):
    """The store cannot be reached, or lost its connection: nothing was committed."""

    code = "store_unavailable"
    status_hint = 503


class PoolEmpty(BitlootError):
    code = "pool_empty"
    status_hint = 409


class ConcurrentUpdate(BitlootError):
    code = "concurrent_update"
    status_hint = 409
    retryable = True
