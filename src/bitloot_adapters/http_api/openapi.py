"""The API as one OpenAPI 3.1 document, built from the route table and the schemas here.

Every row of ``ROUTES`` has an ``Operation`` in ``OPERATIONS`` (keyed by method and path
template): what it is for, its query parameters, its JSON body and its answers. The
document is built from the two (``openapi_document``) and served at ``/openapi.json`` by
every server; the tests validate each answer the contract suite receives against it and
fuzz both servers from it. The schemas are JSON Schema 2020-12, as OpenAPI 3.1 speaks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from bitloot_adapters.http_api.shapes import HttpRequest, HttpResponse, json_response
from bitloot_core.chart import Flag, JobKind, OrderStatus, PaymentStatus
from bitloot_core.values import JobState, ProductSource, WebhookOutcome

if TYPE_CHECKING:
    from bitloot_adapters.http_api.api import ShopApi
    from bitloot_adapters.http_api.routes import Route

JSON_TYPE: Final = "application/json"
Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _values(enum: type[Any]) -> list[str]:
    return [member.value for member in enum]


def _object(required: Mapping[str, Schema], optional: Mapping[str, Schema] | None = None) -> Schema:
    """A closed object: every property named, the ``required`` ones always present."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
        "additionalProperties": False,
    }


_TEXT: Final[Schema] = {"type": "string"}
_NULLABLE_TEXT: Final[Schema] = {"type": ["string", "null"]}
_TIME: Final[Schema] = {"type": "string", "format": "date-time"}
_NULLABLE_TIME: Final[Schema] = {"type": ["string", "null"], "format": "date-time"}
# Money and crypto amounts are decimal strings, never JSON numbers.
_DECIMAL: Final[Schema] = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?(E[+-]?[0-9]+)?$"}
_NULLABLE_DECIMAL: Final[Schema] = {"anyOf": [_DECIMAL, {"type": "null"}]}
_COUNT: Final[Schema] = {"type": "integer", "minimum": 0}
_DECIMAL_INPUT: Final[Schema] = {
    "description": "a decimal number, as a JSON number or a string",
    "anyOf": [{"type": "number"}, {"type": "string"}],
}

_ANSWERED: Final[Schema] = {"answered": {"type": ["integer", "null"]}}

_ORDER: Final[Schema] = {
    "id": _TEXT,
    "status": {"enum": _values(OrderStatus)},
    "status_text": _TEXT,
    "email": _TEXT,
    "currency": _TEXT,
    "total": _DECIMAL,
    "items": {"type": "array", "items": ref("OrderItem")},
    "payment": {"anyOf": [ref("Payment"), {"type": "null"}]},
    "flags": {"type": "array", "items": {"enum": _values(Flag)}},
    "created_at": _TIME,
    "updated_at": _TIME,
}

SCHEMAS: Final[dict[str, Schema]] = {
    "Error": _object(
        {
            "error": _object(
                {
                    "code": {"type": "string", "pattern": "^[a-z0-9_]+$"},
                    "message": _TEXT,
                }
            )
        }
    ),
    "Document": {"type": "object", "required": ["openapi", "paths"]},
    "Probe": _object(
        {
            "status": {"const": "ok"},
            "mode": {"enum": ["sandbox", "live"]},
            "sandbox": {"type": "boolean"},
        }
    ),
    "Product": _object(
        {
            "id": _TEXT,
            "name": _TEXT,
            "price": _DECIMAL,
            "currency": _TEXT,
            "source": {"enum": _values(ProductSource)},
            "available": {"type": "boolean"},
        }
    ),
    "PaymentProviders": _object(
        {"providers": {"type": "array", "items": _object({"id": _TEXT, "name": _TEXT})}}
    ),
    "Coin": _object({"ticker": _TEXT, "name": _TEXT, "network": _TEXT}),
    "Payment": _object(
        {
            "id": _TEXT,
            "provider": _TEXT,
            "status": {"enum": _values(PaymentStatus)},
            "provider_status": _TEXT,
            "pay_address": _TEXT,
            "pay_amount": _DECIMAL,
            "pay_currency": _TEXT,
            "actually_paid": _DECIMAL,
            "valid_until": _NULLABLE_TIME,
            "coin": ref("Coin"),
            "uri": _NULLABLE_TEXT,
        }
    ),
    "OrderItem": _object(
        {
            "id": _TEXT,
            "product_id": _TEXT,
            "name": _TEXT,
            "quantity": {"type": "integer", "minimum": 1},
            "unit_price": _DECIMAL,
            "delivered": {"type": "boolean"},
        }
    ),
    "Order": _object(_ORDER),
    "CreatedOrder": _object({**_ORDER, "access_token": _TEXT}),
    "AuditEntry": _object({"at": _TIME, "action": _TEXT, "detail": _TEXT, "actor": _TEXT}),
    "WebhookLogEntry": _object(
        {
            "received_at": _TIME,
            "outcome": {"enum": _values(WebhookOutcome)},
            "reason": _TEXT,
            "signature_valid": {"type": "boolean"},
            "provider_status": _NULLABLE_TEXT,
            "payment_id": _NULLABLE_TEXT,
            "provider": _NULLABLE_TEXT,
            "body_sha256": _TEXT,
        }
    ),
    "Job": _object(
        {
            "key": _TEXT,
            "kind": {"enum": _values(JobKind)},
            "order_id": _TEXT,
            "state": {"enum": _values(JobState)},
            "attempts": _COUNT,
            "run_at": _TIME,
            "last_error": _NULLABLE_TEXT,
        }
    ),
    "Reveal": _object({"item_id": _TEXT, "at": _TIME, "expires_at": _TIME}),
    "KeysWait": _object(
        {
            "order_id": _TEXT,
            "email": _TEXT,
            "status": {"enum": _values(OrderStatus)},
            "since": _TIME,
            "next_poll": _TIME,
            "supplier_orders": {"type": "array", "items": _TEXT},
            "preorder": {"type": "boolean"},
            "release_at": _NULLABLE_TIME,
            "last_error": _TEXT,
        }
    ),
    "AdminOrder": _object(
        {
            **_ORDER,
            "audit": {"type": "array", "items": ref("AuditEntry")},
            "webhooks": {"type": "array", "items": ref("WebhookLogEntry")},
            "jobs": {"type": "array", "items": ref("Job")},
            "reveals": {"type": "array", "items": ref("Reveal")},
            "payments": {"type": "array", "items": ref("Payment")},
        }
    ),
    "Health": _object(
        {
            "orders": {"type": "object", "additionalProperties": _COUNT},
            "jobs": {"type": "object", "additionalProperties": _COUNT},
            "last_errors": {
                "type": "object",
                "additionalProperties": _object({"error": _TEXT, "order_id": _TEXT, "at": _TIME}),
            },
        }
    ),
    "OpenedPayment": _object({"payment": ref("Payment")}),
    "RevealedKey": _object(
        {
            "url": _TEXT,
            "urls": {"type": "array", "items": _TEXT, "minItems": 1},
            "expires_at": _TIME,
        }
    ),
    "WebhookAccepted": _object(
        {
            "ok": {"const": True},
            "outcome": {"enum": _values(WebhookOutcome)},
            "reason": _TEXT,
        }
    ),
    "KeysAdded": _object({"added": _COUNT, "duplicates": _COUNT, "distinct": _COUNT}),
    "AdminProduct": _object(
        {
            "id": _TEXT,
            "name": _TEXT,
            "price": _DECIMAL,
            "currency": _TEXT,
            "source": {"enum": _values(ProductSource)},
            "supplier_ref": _NULLABLE_TEXT,
            "available": {"type": "boolean"},
            "stock": {"type": ["integer", "null"], "minimum": 0},
        }
    ),
    "ProductInput": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "price": _DECIMAL_INPUT,
            "currency": {"type": "string", "pattern": "^[a-z]{3,10}$"},
            "source": {"enum": _values(ProductSource)},
            "supplier_ref": {"type": "string", "description": "Kinguin's productId"},
        },
        "required": ["name", "price", "source"],
    },
    "ProductImport": {
        "type": "object",
        "properties": {
            "products": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1000,
                "items": {
                    "allOf": [
                        ref("ProductInput"),
                        {
                            "type": "object",
                            "properties": {"id": {"type": "string"}},
                            "required": ["id"],
                        },
                    ]
                },
            }
        },
        "required": ["products"],
    },
    "ProductsSaved": _object({"saved": _COUNT}),
    # What a sandbox payment control sent: NOWPayments' IPNs or BTCPay's webhooks, each
    # with the shop's HTTP status (null: not answered, or not yet: they may go out after
    # the answer).
    "SandboxIpns": {
        "oneOf": [
            _object({"ipns": {"type": "array", "items": _object({"status": _TEXT, **_ANSWERED})}}),
            _object(
                {"webhooks": {"type": "array", "items": _object({"type": _TEXT, **_ANSWERED})}}
            ),
        ]
    },
    "ClockAdvanced": _object(
        {
            "now": _TIME,
            "swept": {"type": "array", "items": _TEXT},
            "jobs": {
                "type": "array",
                "items": _object({"key": _TEXT, "outcome": _TEXT}),
            },
        }
    ),
    "Outage": _object({"failures": _COUNT}),
    "SecondsSet": _object({"seconds": _DECIMAL}),
    "Stock": _object({"product_id": _TEXT, "qty": _COUNT}),
    # An order the Kinguin sandbox received, as the sandbox keeps it.
    "KinguinOrder": {
        "type": "object",
        "properties": {
            "order_id": _TEXT,
            "order_external_id": _NULLABLE_TEXT,
            "created_at": _TEXT,
            "products": {"type": "array", "items": {"type": "object"}},
            "keys": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["order_id", "products", "keys"],
    },
    # --- request bodies ------------------------------------------------------------------
    "NewOrder": {
        "type": "object",
        "properties": {
            "email": {"type": "string", "format": "email"},
            "items": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "product_id": _TEXT,
                        "quantity": {"type": "integer", "minimum": 1},
                    },
                    "required": ["product_id"],
                },
            },
        },
        "required": ["email", "items"],
    },
    "Resolution": {
        "type": "object",
        "properties": {"action": {"enum": ["fulfill", "refund"]}, "note": _TEXT},
        "required": ["action"],
    },
    "PoolKeys": {
        "type": "object",
        "properties": {"keys": {"type": "array", "items": _TEXT}},
        "required": ["keys"],
    },
    "PaymentChoice": {
        "type": "object",
        "properties": {"provider": {"type": "string", "minLength": 1}},
    },
    "SandboxPay": {"type": "object", "properties": {"amount": _DECIMAL_INPUT}},
    "Seconds": {
        "type": "object",
        "properties": {"seconds": _DECIMAL_INPUT},
        "required": ["seconds"],
    },
    "Failures": {
        "type": "object",
        "properties": {"failures": {"type": "integer", "minimum": 0, "maximum": 100}},
        "required": ["failures"],
    },
    "StockRequest": {
        "type": "object",
        "properties": {"product_id": _TEXT, "qty": {"type": "integer", "minimum": 0}},
        "required": ["product_id", "qty"],
    },
    # A provider's IPN: the signature is over the raw bytes, so any JSON object is taken.
    "Ipn": {"type": "object"},
    "KinguinOrderStatus": {
        "type": "object",
        "properties": {
            "orderId": _TEXT,
            "orderExternalId": _TEXT,
            "status": _TEXT,
            "updatedAt": _TEXT,
        },
    },
}


@dataclass(frozen=True, slots=True)
class Body:
    """One answer's content: a schema (by component name) for JSON, or another type."""

    schema: str | None = None
    media_type: str = JSON_TYPE
    description: str = ""
    many: bool = False  # a JSON array of ``schema``
    # Other media types the same answer may have (an image key's PNG).
    alternatives: tuple[str, ...] = ()

    def content(self) -> dict[str, Any]:
        schema = ref(self.schema) if self.schema else {"type": "string"}
        if self.many:
            schema = {"type": "array", "items": schema}
        return {kind: {"schema": schema} for kind in (self.media_type, *self.alternatives)}


def _json(name: str, description: str = "") -> Body:
    return Body(name, description=description)


def _list(name: str) -> Body:
    return Body(name, many=True)


HTML = Body(media_type="text/html", description="the page")
EMPTY = Body(media_type="", description="no body")


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    summary: str
    responses: Mapping[int, Body]
    request: str | None = None
    request_optional: bool = False
    query: Mapping[str, Schema] = field(default_factory=dict)
    tags: Sequence[str] = ()
    description: str = ""


def _filter(enum: type[Any]) -> Schema:
    """A query filter: one of the values, or empty for any (as a form's "any" sends)."""
    return {"type": "string", "enum": ["", *_values(enum)]}


_ORDER_QUERY: Final[Schema] = {"type": "string", "description": "the order's access token"}

OPERATIONS: Final[dict[tuple[str, str], Operation]] = {
    ("GET", "/healthz"): Operation(
        summary="Health probe", responses={200: _json("Probe")}, tags=["ops"]
    ),
    ("GET", "/metrics"): Operation(
        summary="Prometheus metrics",
        responses={200: Body(media_type="text/plain", description="Prometheus text")},
        tags=["ops"],
    ),
    ("GET", "/openapi.json"): Operation(
        summary="This document",
        responses={200: _json("Document", "OpenAPI 3.1")},
        tags=["ops"],
    ),
    ("GET", "/api/products"): Operation(
        summary="The catalogue", responses={200: _list("Product")}, tags=["customer"]
    ),
    ("GET", "/api/payment-providers"): Operation(
        summary="The payment providers a customer can choose from, the default first",
        responses={200: _json("PaymentProviders")},
        tags=["customer"],
    ),
    ("POST", "/api/orders"): Operation(
        summary="Create an order",
        description="The same Idempotency-Key and body again answer 200 with the same order.",
        request="NewOrder",
        responses={201: _json("CreatedOrder"), 200: _json("CreatedOrder", "a replay")},
        tags=["customer"],
    ),
    ("GET", "/api/orders/{order_id}"): Operation(
        summary="An order",
        query={"token": _ORDER_QUERY},
        responses={200: _json("Order")},
        tags=["customer"],
    ),
    ("POST", "/api/orders/{order_id}/payment"): Operation(
        summary="Open the order's payment (with the default provider unless one is named)",
        query={"token": _ORDER_QUERY},
        request="PaymentChoice",
        request_optional=True,
        responses={201: _json("OpenedPayment"), 200: _json("OpenedPayment", "already open")},
        tags=["customer"],
    ),
    ("POST", "/api/orders/{order_id}/items/{item_id}/reveal"): Operation(
        summary="Signed URLs of a delivered item's keys",
        query={"token": _ORDER_QUERY},
        responses={200: _json("RevealedKey")},
        tags=["customer"],
    ),
    ("GET", "/keys/{signed}"): Operation(
        summary="A key, by its signed URL",
        responses={
            200: Body(
                media_type="text/plain",
                alternatives=("image/png", "image/jpeg", "image/gif"),
                description="the key, as text or as the image it was delivered as",
            )
        },
        tags=["customer"],
    ),
    ("POST", "/webhooks/kinguin"): Operation(
        summary="Kinguin's order.status webhook",
        request="KinguinOrderStatus",
        responses={204: EMPTY},
        tags=["webhooks"],
    ),
    ("POST", "/webhooks/{provider}"): Operation(
        summary="A payment provider's IPN",
        request="Ipn",
        responses={200: _json("WebhookAccepted")},
        tags=["webhooks"],
    ),
    ("GET", "/api/orders/{order_id}/events"): Operation(
        summary="The order's status as Server-Sent Events",
        query={"token": _ORDER_QUERY},
        responses={200: Body(media_type="text/event-stream", description="event: status")},
        tags=["customer"],
    ),
    ("GET", "/api/orders/{order_id}/qr.svg"): Operation(
        summary="The payment's QR code",
        query={"token": _ORDER_QUERY},
        responses={200: Body(media_type="image/svg+xml", description="an SVG image")},
        tags=["customer"],
    ),
    ("GET", "/api/admin/orders"): Operation(
        summary="Orders",
        query={
            "status": _filter(OrderStatus),
            "flag": _filter(Flag),
            "email": {"type": "string", "maxLength": 320, "description": "part of the email"},
            "since": {"type": "string", "format": "date", "description": "created on or after"},
            "until": {"type": "string", "format": "date", "description": "created on or before"},
            "limit": {"type": "integer", "minimum": 0, "maximum": 200, "default": 50},
            "offset": {"type": "integer", "minimum": 0, "maximum": 10_000, "default": 0},
        },
        description="Newest first. X-Total-Count says how many matched in all.",
        responses={200: _list("Order")},
        tags=["admin"],
    ),
    ("GET", "/api/admin/orders/{order_id}"): Operation(
        summary="An order with its audit trail, webhook log, jobs and reveals",
        responses={200: _json("AdminOrder")},
        tags=["admin"],
    ),
    ("POST", "/api/admin/orders/{order_id}/retry-fulfillment"): Operation(
        summary="Retry a paid order's fulfillment",
        responses={200: _json("Order")},
        tags=["admin"],
    ),
    ("POST", "/api/admin/orders/{order_id}/resend-email"): Operation(
        summary="Send the completion email again",
        responses={200: _json("Order")},
        tags=["admin"],
    ),
    ("POST", "/api/admin/orders/{order_id}/resolve"): Operation(
        summary="Resolve an underpaid or paid-late order: fulfill or refund",
        request="Resolution",
        responses={200: _json("Order")},
        tags=["admin"],
    ),
    ("POST", "/api/admin/products/{product_id}/keys"): Operation(
        summary="Add keys to a custom product's pool",
        request="PoolKeys",
        responses={201: _json("KeysAdded")},
        tags=["admin"],
    ),
    ("GET", "/api/admin/products"): Operation(
        summary="The catalogue, with each custom product's stock",
        responses={200: _list("AdminProduct")},
        tags=["admin"],
    ),
    ("PUT", "/api/admin/products/{product_id}"): Operation(
        summary="Create or change a product",
        request="ProductInput",
        responses={200: _json("AdminProduct")},
        tags=["admin"],
    ),
    ("POST", "/api/admin/products/import"): Operation(
        summary="Create or change many products: all checked before any is written",
        request="ProductImport",
        responses={201: _json("ProductsSaved")},
        tags=["admin"],
    ),
    ("GET", "/api/admin/jobs"): Operation(
        summary="Jobs",
        query={"state": _filter(JobState)},
        responses={200: _list("Job")},
        tags=["admin"],
    ),
    ("GET", "/api/admin/waiting"): Operation(
        summary="Orders waiting for the supplier's keys, longest first",
        description=(
            "Since when each waits, the supplier's order ids, a pre-order's release when "
            "known, and when the supplier is asked again (its webhook may wake it sooner)."
        ),
        responses={200: _list("KeysWait")},
        tags=["admin"],
    ),
    ("POST", "/api/admin/jobs/{key}/retry"): Operation(
        summary="Retry a dead job: fulfill again, or resend the email",
        responses={200: _json("Order")},
        tags=["admin"],
    ),
    ("GET", "/api/admin/health"): Operation(
        summary="Orders per status, jobs per state, each job kind's last error",
        responses={200: _json("Health")},
        tags=["admin"],
    ),
    ("GET", "/admin"): Operation(
        summary="The operator's console", responses={200: HTML}, tags=["pages"]
    ),
    ("POST", "/sandbox/payments/{payment_id}/pay"): Operation(
        summary="Pay a sandbox payment (in full unless an amount is given)",
        request="SandboxPay",
        request_optional=True,
        responses={200: _json("SandboxIpns")},
        tags=["sandbox"],
    ),
    ("POST", "/sandbox/payments/{payment_id}/fail"): Operation(
        summary="Fail a sandbox payment", responses={200: _json("SandboxIpns")}, tags=["sandbox"]
    ),
    ("POST", "/sandbox/payments/{payment_id}/expire"): Operation(
        summary="Expire a sandbox payment",
        responses={200: _json("SandboxIpns")},
        tags=["sandbox"],
    ),
    ("POST", "/sandbox/clock/advance"): Operation(
        summary="Move the shop's clock forward and run what became due",
        request="Seconds",
        responses={200: _json("ClockAdvanced")},
        tags=["sandbox"],
    ),
    ("POST", "/sandbox/kinguin/outage"): Operation(
        summary="Make the next Kinguin calls fail",
        request="Failures",
        responses={200: _json("Outage")},
        tags=["sandbox"],
    ),
    ("POST", "/sandbox/kinguin/key-delay"): Operation(
        summary="Delay Kinguin's keys",
        request="Seconds",
        responses={200: _json("SecondsSet")},
        tags=["sandbox"],
    ),
    ("POST", "/sandbox/kinguin/stock"): Operation(
        summary="Set Kinguin's stock of a product",
        request="StockRequest",
        responses={200: _json("Stock")},
        tags=["sandbox"],
    ),
    ("POST", "/sandbox/kinguin/latency"): Operation(
        summary="Make every Kinguin call answer late (0 ends it)",
        request="Seconds",
        responses={200: _json("SecondsSet")},
        tags=["sandbox"],
    ),
    ("GET", "/sandbox/kinguin/orders"): Operation(
        summary="Every order Kinguin received, oldest first",
        responses={200: _list("KinguinOrder")},
        tags=["sandbox"],
    ),
    ("GET", "/"): Operation(summary="The customer page", responses={200: HTML}, tags=["pages"]),
    ("GET", "/order/{order_id}"): Operation(
        summary="The customer page, on an order", responses={200: HTML}, tags=["pages"]
    ),
    ("GET", "/static/{name}"): Operation(
        summary="The pages' files",
        responses={200: Body(media_type="*/*", description="a script, style sheet or image")},
        tags=["pages"],
    ),
}

# Why a route may refuse, beyond its own answers (every refusal has the ``Error`` shape).
_REFUSALS: Final = {
    400: "bad input",
    401: "the admin token or a webhook's signature is missing or wrong",
    403: "a key URL that is invalid or expired",
    404: "no such resource (an unknown order and a wrong access token answer alike)",
    405: "method not allowed",
    409: "the order's state does not allow it, an idempotency conflict, or sold out",
    413: "the body is larger than 64 KiB",
    429: "too many requests from this client this minute (see the Retry-After header)",
    502: "the payment provider answered with an error",
    503: "the payment provider could not be reached",
}


def _responses(operation: Operation) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status, body in sorted(operation.responses.items()):
        answer: dict[str, Any] = {"description": body.description or "OK"}
        if body.media_type:
            answer["content"] = body.content()
        answers[str(status)] = answer
    error = {JSON_TYPE: {"schema": ref("Error")}}
    for status, why in _REFUSALS.items():
        answers.setdefault(str(status), {"description": why, "content": error})
    answers["default"] = {"description": "any other refusal, in the same shape", "content": error}
    return answers


def _parameters(route: Route, operation: Operation, providers: Sequence[str]) -> list[Any]:
    parameters: list[Any] = []
    for name in re.findall(r"\{(\w+)\}", route.template):
        schema: Schema = {"type": "string", "minLength": 1}
        if name == "provider" and providers:
            schema = {"type": "string", "enum": list(providers)}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    parameters.extend(
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in operation.query.items()
    )
    return parameters


def _security(route: Route) -> list[dict[str, list[str]]] | None:
    access = str(route.access)
    if access == "admin":
        return [{"adminToken": []}]
    if "{order_id}" in route.template and route.template.startswith("/api/orders"):
        return [{"orderToken": []}, {"orderTokenQuery": []}]
    return None


def missing_operations(routes: Sequence[Route]) -> list[str]:
    """Routes the document cannot describe (a test keeps this empty)."""
    return [
        f"{route.method} {route.template}"
        for route in routes
        if (route.method, route.template) not in OPERATIONS
    ]


def openapi_document(
    routes: Sequence[Route], *, providers: Sequence[str] = (), version: str = "0"
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (``providers``: the payment providers the
    shop runs, the values ``/webhooks/{provider}`` takes)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation = OPERATIONS.get((route.method, route.template))
        if operation is None:
            raise KeyError(f"no operation for {route.method} {route.template}")
        entry: dict[str, Any] = {
            "operationId": route.handler.__name__,
            "summary": operation.summary,
            "tags": list(operation.tags),
            "responses": _responses(operation),
        }
        if operation.description:
            entry["description"] = operation.description
        parameters = _parameters(route, operation, providers)
        if parameters:
            entry["parameters"] = parameters
        if operation.request:
            entry["requestBody"] = {
                "required": not operation.request_optional,
                "content": {JSON_TYPE: {"schema": ref(operation.request)}},
            }
        security = _security(route)
        if security is not None:
            entry["security"] = security
        paths.setdefault(route.template, {})[route.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bitloot",
            "summary": "Crypto checkout for digital game keys",
            "version": version,
            "description": (
                "JSON everywhere; money as decimal strings; times as ISO 8601 UTC. "
                "Every refusal is {error: {code, message}} with a 4xx status."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer"},
                "orderToken": {"type": "http", "scheme": "bearer"},
                "orderTokenQuery": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
    }


def document(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del request, params
    return json_response(200, api.openapi())
