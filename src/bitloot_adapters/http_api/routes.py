"""The route table: every route the API answers, in one place.

Each row is (method, path template, handler, access). ``ShopApi`` matches a request to a
row, enforces the row's access (the admin token, the sandbox being on) and the body limit,
then calls the handler. Order tokens are checked by the checkout itself, so an unknown
order and a wrong token answer alike; those routes are ``PUBLIC`` here.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from bitloot_adapters.http_api import admin, customer, openapi, pages, sandbox, webhooks
from bitloot_adapters.http_api.shapes import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from bitloot_adapters.http_api.api import ShopApi

Handler = Callable[["ShopApi", HttpRequest, dict[str, str]], HttpResponse]
# Called instead of the handler when the body is over the limit, before the 413.
TooLarge = Callable[["ShopApi", dict[str, str]], None]
# A cheap check without I/O that may refuse a request (by raising) before it takes a
# thread; ``ShopApi.refuse_early`` runs it. The handler must not rely on it having run.
Early = Callable[["ShopApi", HttpRequest, dict[str, str]], None]


class Access(enum.StrEnum):
    PUBLIC = "public"
    ADMIN = "admin"  # Authorization: Bearer ADMIN_TOKEN
    SANDBOX = "sandbox"  # only while the shop runs in sandbox mode; 404 otherwise


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str
    handler: Handler
    access: Access = Access.PUBLIC
    too_large: TooLarge | None = None
    early: Early | None = None
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template)
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))

    @property
    def name(self) -> str:
        """The template: how metrics and logs name the route (never the request's path)."""
        return self.template


PUBLIC, ADMIN, SANDBOX = Access.PUBLIC, Access.ADMIN, Access.SANDBOX

ROUTES: Final[tuple[Route, ...]] = (
    Route("GET", "/healthz", customer.healthz),
    Route("GET", "/metrics", customer.metrics),
    Route("GET", "/openapi.json", openapi.document),
    Route("GET", "/api/products", customer.products),
    Route("GET", "/api/payment-providers", customer.payment_providers),
    Route("POST", "/api/orders", customer.create_order),
    Route("GET", "/api/orders/{order_id}", customer.get_order),
    Route("POST", "/api/orders/{order_id}/payment", customer.open_payment),
    Route("POST", "/api/orders/{order_id}/items/{item_id}/reveal", customer.reveal),
    Route("GET", "/keys/{signed}", customer.key),
    Route("POST", "/webhooks/kinguin", webhooks.kinguin_webhook),
    # After Kinguin's: every other /webhooks/{name} is a payment provider's.
    Route(
        "POST",
        "/webhooks/{provider}",
        webhooks.webhook,
        too_large=webhooks.webhook_too_large,
        early=webhooks.throttle,
    ),
    Route("GET", "/api/orders/{order_id}/events", customer.events),
    Route("GET", "/api/admin/orders", admin.admin_orders, ADMIN),
    Route("GET", "/api/admin/orders/{order_id}", admin.admin_order, ADMIN),
    Route("POST", "/api/admin/orders/{order_id}/retry-fulfillment", admin.admin_retry, ADMIN),
    Route("POST", "/api/admin/orders/{order_id}/resend-email", admin.admin_resend_email, ADMIN),
    Route("POST", "/api/admin/orders/{order_id}/resolve", admin.admin_resolve, ADMIN),
    Route("POST", "/api/admin/products/{product_id}/keys", admin.admin_pool_keys, ADMIN),
    Route("GET", "/api/admin/products", admin.admin_products, ADMIN),
    Route("PUT", "/api/admin/products/{product_id}", admin.admin_put_product, ADMIN),
    Route("POST", "/api/admin/products/import", admin.admin_import_products, ADMIN),
    Route("GET", "/api/admin/jobs", admin.admin_jobs, ADMIN),
    Route("GET", "/api/admin/waiting", admin.admin_waiting, ADMIN),
    Route("POST", "/api/admin/jobs/{key}/retry", admin.admin_retry_job, ADMIN),
    Route("GET", "/api/admin/health", admin.admin_health, ADMIN),
    Route("POST", "/sandbox/payments/{payment_id}/pay", sandbox.sandbox_pay, SANDBOX),
    Route("POST", "/sandbox/payments/{payment_id}/fail", sandbox.sandbox_fail, SANDBOX),
    Route("POST", "/sandbox/payments/{payment_id}/expire", sandbox.sandbox_expire, SANDBOX),
    Route("POST", "/sandbox/clock/advance", sandbox.sandbox_clock, SANDBOX),
    Route("POST", "/sandbox/kinguin/outage", sandbox.sandbox_outage, SANDBOX),
    Route("POST", "/sandbox/kinguin/key-delay", sandbox.sandbox_key_delay, SANDBOX),
    Route("POST", "/sandbox/kinguin/stock", sandbox.sandbox_stock, SANDBOX),
    Route("POST", "/sandbox/kinguin/latency", sandbox.sandbox_latency, SANDBOX),
    Route("GET", "/sandbox/kinguin/orders", sandbox.sandbox_kinguin_orders, SANDBOX),
    Route("GET", "/", pages.page),
    Route("GET", "/order/{order_id}", pages.order_page),
    Route("GET", "/admin", pages.admin_page),
    Route("GET", "/static/{name}", pages.static),
    Route("GET", "/api/orders/{order_id}/qr.svg", customer.payment_qr),
)
