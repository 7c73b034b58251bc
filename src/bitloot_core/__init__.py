"""bitloot's pure checkout core: decides, never acts.

Standard library only; no I/O, no clock reads, no randomness: time, ids and secrets come
in as arguments, and everything that touches the world is a port (``bitloot_core.ports``)
passed to ``Checkout``. Test doubles for every port are in ``bitloot_core.testing``.
"""

__version__ = "0.1.0.dev0"

from bitloot_core.chart import Flag, OrderEvent, OrderStatus, PaymentStatus
from bitloot_core.errors import (
    BadRequest,
    BadSignature,
    BitlootError,
    Conflict,
    IdempotencyConflict,
    InvalidInput,
    InvalidState,
    KeyUrlRejected,
    MalformedWebhook,
    NotFound,
    PoolEmpty,
    ProviderError,
    ProviderUnavailable,
    SupplierError,
    SupplierUnavailable,
)
from bitloot_core.providers.nowpayments import parse_ipn, verify_ipn_signature
from bitloot_core.service import Checkout, CheckoutConfig
from bitloot_core.values import Order, OrderItem, Payment, Product, ProductSource

__all__ = [
    "BadRequest",
    "BadSignature",
    "BitlootError",
    "Checkout",
    "CheckoutConfig",
    "Conflict",
    "Flag",
    "IdempotencyConflict",
    "InvalidInput",
    "InvalidState",
    "KeyUrlRejected",
    "MalformedWebhook",
    "NotFound",
    "Order",
    "OrderEvent",
    "OrderItem",
    "OrderStatus",
    "Payment",
    "PaymentStatus",
    "PoolEmpty",
    "Product",
    "ProductSource",
    "ProviderError",
    "ProviderUnavailable",
    "SupplierError",
    "SupplierUnavailable",
    "__version__",
    "parse_ipn",
    "verify_ipn_signature",
]
