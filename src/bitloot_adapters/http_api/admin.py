"""The operator's routes (``Authorization: Bearer ADMIN_TOKEN``, checked by the route
table): orders with their audit trail, retries, resolutions, key pools and jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bitloot_adapters.http_api.shapes import (
    HttpRequest,
    HttpResponse,
    enum_query,
    job_json,
    json_body,
    json_response,
    order_json,
)
from bitloot_core.chart import Flag, OrderStatus
from bitloot_core.errors import InvalidInput
from bitloot_core.values import JobState, Order

if TYPE_CHECKING:
    from bitloot_adapters.http_api.api import ShopApi


def admin_orders(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    orders = api.checkout.list_orders(
        status=enum_query(request, "status", OrderStatus), flag=enum_query(request, "flag", Flag)
    )
    payments = api.checkout.payments_of(orders)
    return json_response(200, [order_json(o, payments.get(o.id)) for o in orders])


def _order_with_payment(api: ShopApi, order: Order) -> dict[str, object]:
    return order_json(order, api.checkout.payments_of([order]).get(order.id))


def admin_order(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del request
    view = api.checkout.admin_order(params["order_id"])
    payment = next((p for p in view.payments if p.id == view.order.payment_id), None)
    return json_response(
        200,
        order_json(view.order, payment)
        | {
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
    return json_response(201, {"added": added})


def admin_jobs(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    jobs = api.checkout.list_jobs(state=enum_query(request, "state", JobState))
    return json_response(200, [job_json(j) for j in jobs])
