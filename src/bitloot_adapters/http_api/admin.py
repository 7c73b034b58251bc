"""The operator's routes (``Authorization: Bearer ADMIN_TOKEN``, checked by the route
table): orders with their audit trail, retries, resolutions, key pools and jobs."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from bitloot_adapters.http_api.shapes import (
    HttpRequest,
    HttpResponse,
    decimal_field,
    enum_query,
    job_json,
    json_body,
    json_response,
    order_json,
    payment_json,
)
from bitloot_core.chart import Flag, JobKind, OrderStatus
from bitloot_core.errors import InvalidInput, NotFound
from bitloot_core.service.results import ProductView
from bitloot_core.values import JobState, Order, Product, ProductSource

if TYPE_CHECKING:
    from bitloot_adapters.http_api.api import ShopApi


# The admin list filters the newest orders of this many (by status and flag in the store,
# by email and date here), newest first.
MAX_SCAN: Final = 10_000
MAX_PAGE: Final = 200
MAX_EMAIL_FILTER: Final = 320
# The code refusing each query value the list cannot read.
QUERY_CODES: Final = {
    "since": "invalid_since",
    "until": "invalid_until",
    "limit": "invalid_limit",
    "offset": "invalid_offset",
}


def _int_query(request: HttpRequest, name: str, default: int, highest: int) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) > highest:
        raise InvalidInput(
            f"{name} must be a whole number from 0 to {highest}", code=QUERY_CODES[name]
        )
    return int(raw)


def _date_query(request: HttpRequest, name: str) -> date | None:
    raw = request.query.get(name, "")
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a date (YYYY-MM-DD)", code=QUERY_CODES[name]) from None


def admin_orders(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    """Orders, newest first: ``status``, ``flag``, ``email`` (part of it, any case),
    ``since``/``until`` (UTC dates, both included); ``limit`` and ``offset`` page them."""
    del params
    email = request.query.get("email", "").strip().lower()
    if len(email) > MAX_EMAIL_FILTER:
        raise InvalidInput("email is too long", code="invalid_email")
    since, until = _date_query(request, "since"), _date_query(request, "until")
    limit = _int_query(request, "limit", 50, MAX_PAGE) or 50
    offset = _int_query(request, "offset", 0, MAX_SCAN)
    orders = api.checkout.list_orders(
        status=enum_query(request, "status", OrderStatus),
        flag=enum_query(request, "flag", Flag),
        limit=MAX_SCAN,
    )
    found = [
        order
        for order in orders
        if email in order.email.lower()
        and (since is None or order.created_at.date() >= since)
        and (until is None or order.created_at.date() <= until)
    ]
    page = found[offset : offset + limit]
    payments = api.checkout.payments_of(page)
    # The list stays a list; how many matched in all is a header, for paging.
    return json_response(
        200,
        [order_json(o, payments.get(o.id)) for o in page],
        headers={"x-total-count": str(len(found))},
    )


def _order_with_payment(api: ShopApi, order: Order) -> dict[str, object]:
    return order_json(order, api.checkout.payments_of([order]).get(order.id))


def admin_order(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del request
    view = api.checkout.admin_order(params["order_id"])
    bound = (view.order.payment_provider, view.order.payment_id)
    payment = next((p for p in view.payments if (p.provider, p.id) == bound), None)
    return json_response(
        200,
        order_json(view.order, payment)
        | {
            "payments": [payment_json(p) for p in view.payments],
            "audit": [
                {"at": a.at, "action": a.action, "detail": a.detail, "actor": a.actor}
                for a in view.audit
            ],
            "webhooks": [
                {
                    "received_at": w.received_at,
                    "outcome": w.outcome,
                    "reason": w.reason,
                    "signature_valid": w.signature_valid,
                    "provider_status": w.provider_status,
                    "payment_id": w.payment_id,
                    "provider": w.provider,
                    "body_sha256": w.body_sha256,
                }
                for w in view.webhooks
            ],
            "jobs": [job_json(j) for j in view.jobs],
            "reveals": [
                {"item_id": r.item_id, "at": r.at, "expires_at": r.expires_at} for r in view.reveals
            ],
        },
    )


def admin_retry(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del request
    order = api.checkout.retry_fulfillment(params["order_id"])
    return json_response(200, _order_with_payment(api, order))


def admin_resend_email(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del request
    order = api.checkout.resend_email(params["order_id"])
    return json_response(200, _order_with_payment(api, order))


def admin_resolve(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    data = json_body(request)
    action, note = data.get("action"), data.get("note", "")
    if not isinstance(action, str):
        raise InvalidInput("action must be 'fulfill' or 'refund'", code="invalid_action")
    if not isinstance(note, str):
        raise InvalidInput("note must be a string", code="invalid_note")
    order = api.checkout.resolve(params["order_id"], action=action, note=note)
    return json_response(200, _order_with_payment(api, order))


def admin_pool_keys(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    keys = json_body(request).get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise InvalidInput("keys must be a list of strings", code="invalid_keys")
    added = api.checkout.add_pool_keys(params["product_id"], keys)
    # Keys already in a pool (or twice in this upload) are reported, not added.
    distinct = len({k.strip() for k in keys})
    return json_response(
        201, {"added": added, "duplicates": len(keys) - added, "distinct": distinct}
    )


MAX_IMPORT: Final = 1000
MAX_PRICE: Final = Decimal(1_000_000)
MAX_NAME: Final = 200
MAX_PRODUCT_ID: Final = 100
_PRODUCT_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_CURRENCY = re.compile(r"^[a-z]{3,10}$")


def _product(data: object, where: str, product_id: str | None = None) -> Product:
    """A product from its JSON (``where`` names it in the refusal)."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{where} must be an object", code="invalid_product")
    pid = product_id if product_id is not None else data.get("id")
    name, currency = data.get("name"), data.get("currency", "usd")
    source, ref = data.get("source"), data.get("supplier_ref")
    if not isinstance(pid, str) or len(pid) > MAX_PRODUCT_ID or not _PRODUCT_ID.match(pid):
        raise InvalidInput(
            f"{where}: id must be lower-case letters, digits and dashes", code="invalid_product"
        )
    if not isinstance(name, str) or not 0 < len(name.strip()) <= MAX_NAME:
        raise InvalidInput(
            f"{where}: name must be 1 to {MAX_NAME} characters", code="invalid_product"
        )
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise InvalidInput(
            f"{where}: currency must be a lower-case code such as usd", code="invalid_product"
        )
    if source not in ("kinguin", "custom"):
        raise InvalidInput(f"{where}: source must be kinguin or custom", code="invalid_product")
    if source == "kinguin" and (not isinstance(ref, str) or not 0 < len(ref) <= MAX_PRODUCT_ID):
        raise InvalidInput(
            f"{where}: a kinguin product needs its supplier_ref", code="invalid_product"
        )
    price = decimal_field(data, "price")
    if price is None or price <= 0 or price != price.quantize(Decimal("0.01")) or price > MAX_PRICE:
        raise InvalidInput(
            f"{where}: price must be above 0, in cents, at most {MAX_PRICE}", code="invalid_product"
        )
    return Product(
        id=pid,
        name=name.strip(),
        price=price,
        currency=currency,
        source=ProductSource(source),
        supplier_ref=ref if source == "kinguin" else None,
    )


def _product_json(view: ProductView) -> dict[str, object]:
    product = view.product
    return {
        "id": product.id,
        "name": product.name,
        "price": product.price,
        "currency": product.currency,
        "source": product.source,
        "supplier_ref": product.supplier_ref,
        "available": view.available,
        "stock": view.stock,
    }


def admin_products(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del request, params
    return json_response(200, [_product_json(v) for v in api.checkout.list_products()])


def admin_put_product(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    product = _product(json_body(request), "the product", params["product_id"])
    api.checkout.save_products([product])
    view = next(v for v in api.checkout.list_products() if v.product.id == product.id)
    return json_response(200, _product_json(view))


def admin_import_products(
    api: ShopApi, request: HttpRequest, params: dict[str, str]
) -> HttpResponse:
    """Every product checked before any is written: one bad row refuses the import."""
    del params
    rows = json_body(request).get("products")
    if not isinstance(rows, list) or not 0 < len(rows) <= MAX_IMPORT:
        raise InvalidInput(f"products must be a list of 1 to {MAX_IMPORT}", code="invalid_products")
    products = [_product(row, f"products[{n}]") for n, row in enumerate(rows)]
    saved = api.checkout.save_products(products)
    return json_response(201, {"saved": saved})


def admin_jobs(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    jobs = api.checkout.list_jobs(state=enum_query(request, "state", JobState))
    return json_response(200, [job_json(j) for j in jobs])


def admin_waiting(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    """Orders whose fulfillment waits for the supplier's keys, longest first: since when,
    the supplier's order ids, a pre-order's release when known, the next poll."""
    del request, params
    return json_response(
        200,
        [
            {
                "order_id": wait.order_id,
                "email": wait.email,
                "status": wait.status,
                "since": wait.since,
                "next_poll": wait.next_poll,
                "supplier_orders": list(wait.supplier_orders),
                "preorder": wait.preorder,
                "release_at": wait.release_at,
                "last_error": wait.last_error,
            }
            for wait in api.checkout.waiting_for_keys()
        ],
    )


def admin_retry_job(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    """A dead job again: a fulfillment is retried, a completion email resent (each audited
    on its order, as from the order's own buttons)."""
    del request
    job = next(
        (j for j in api.checkout.list_jobs(state=JobState.DEAD) if j.key == params["key"]), None
    )
    if job is None:
        raise NotFound("no dead job with that key")
    if job.kind is JobKind.FULFILL:
        order = api.checkout.retry_fulfillment(job.order_id)
    else:
        order = api.checkout.resend_email(job.order_id)
    return json_response(200, _order_with_payment(api, order))


def admin_health(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    """At a glance: orders per status, jobs per state, and each job kind's last error."""
    del request, params
    orders = Counter(o.status for o in api.checkout.list_orders(limit=MAX_SCAN))
    jobs = api.checkout.list_jobs()
    failing = sorted((j for j in jobs if j.last_error), key=lambda j: j.run_at)
    last_errors = {
        j.kind.value: {"error": j.last_error, "order_id": j.order_id, "at": j.run_at}
        for j in failing
    }
    return json_response(
        200,
        {
            "orders": {status.value: orders.get(status, 0) for status in OrderStatus},
            "jobs": {state.value: sum(1 for j in jobs if j.state is state) for state in JobState},
            "last_errors": last_errors,
        },
    )
