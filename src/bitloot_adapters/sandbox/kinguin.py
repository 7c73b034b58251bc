"""A stand-in for Kinguin's eCommerce API: catalogue, orders, keys, balance, faults.

Serve it with ``SandboxServer``; point ``KinguinClient`` at ``server.url``.

- ``GET /v1/products/{kinguinId}``, ``GET /v2/products/{productId}``: the catalogue, with
  the cheapest offer's ``qty`` and ``isPreorder``/``releaseDate``. An unknown or
  out-of-stock product answers 404 ``{"kind": "HttpClient"}``, as Kinguin's does.
- ``POST /v2/order``: checks ``X-Api-Key`` (401 with Kinguin's JSON), at most 10 products
  and 9 of each, each product named once, one pre-order per request and never mixed with
  other products (``ConstraintViolation``), products short of stock
  (``ProductUnavailable``), the balance (``InsufficientBalance``). A repeated
  ``orderExternalId`` is refused with 422 ``ConstraintViolation`` "orderExternalId already
  used": Kinguin's own guard against a double purchase. Answers 201 with the order.
- ``GET /v1/order/{orderId}``, ``GET /v1/order?orderExternalId=`` (``{"results": [...],
  "item_count": n}``), ``GET /v2/order/{orderId}/keys?page=&limit=``, ``GET /v1/balance``.

Keys arrive over ``key_delay`` seconds of the injected clock (the shop's sandbox clock, so
moving it moves deliveries too), a pre-order's only from its product's ``release_at``:
while an order is ``processing`` the keys endpoint lists fewer keys than were ordered.
``send_webhooks()`` posts an ``order.status`` webhook (``X-Event-Name``,
``X-Event-Secret``) for every order whose status changed since the last one the receiver
accepted. ``cancel`` cancels or refunds an order as Kinguin's support may. Products with an
image ``key_type`` deliver a tiny valid PNG, base64 in ``serial`` (``wrap_image_keys``
line-wraps it as MIME does). ``outage`` makes the next calls fail (``"503"``, ``"500"``,
``"429"``, ``"timeout"``, ``"slow"``, ``"resource_lock"``: a ``ResourceLock`` error, and
``"order_failed"``: 422 ``OrderFailed`` on a purchase); ``calls`` records every API call.

Errors are Kinguin's ``{kind, status, title, detail}``. The API key is never echoed.
"""

from __future__ import annotations

import base64
import hmac
import random
import re
import string
import struct
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, get_args

import httpx

from bitloot_adapters.clock import SystemClock
from bitloot_adapters.sandbox.faults import FaultPlan
from bitloot_adapters.sandbox.server import Route, SandboxRequest, SandboxResponse, dispatch
from bitloot_adapters.sandbox.wire import decimal_or_none, json_body, read_json
from bitloot_core.ports import Clock

__all__ = [
    "DEFAULT_PRODUCTS",
    "KinguinCall",
    "KinguinOutageMode",
    "KinguinProduct",
    "KinguinSandbox",
    "KinguinWebhook",
    "tiny_png",
]

KinguinOutageMode = Literal["503", "500", "429", "timeout", "slow", "resource_lock", "order_failed"]

MAX_PRODUCTS_PER_ORDER = 10
MAX_QTY_PER_PRODUCT = 9
MAX_KEYS_PAGE_LIMIT = 100
DEFAULT_KEYS_PAGE_LIMIT = 25


@dataclass(frozen=True, slots=True, kw_only=True)
class KinguinProduct:
    product_id: str
    kinguin_id: int
    name: str
    price: Decimal  # EUR
    stock: int = 100
    # "text/plain", or "image/png" (and the other image types) for keys sent as pictures.
    key_type: str = "text/plain"
    platform: str = "Steam"
    # A pre-order until then: its keys are delivered only from this moment on.
    release_at: datetime | None = None

    def preorder(self, now: datetime) -> bool:
        return self.release_at is not None and now < self.release_at


DEFAULT_PRODUCTS: tuple[KinguinProduct, ...] = (
    KinguinProduct(
        product_id="5c9b5f6b2539a4e8f172916a",
        kinguin_id=1949,
        name="Counter-Strike: Source Steam CD Key",
        price=Decimal("3.79"),
    ),
    KinguinProduct(
        product_id="5c9b5b8c2539a4e8f17291c2",
        kinguin_id=34826,
        name="Stardew Valley Steam CD Key",
        price=Decimal("8.49"),
    ),
    KinguinProduct(
        product_id="5c9b6a0a2539a4e8f1729c11",
        kinguin_id=63471,
        name="Hollow Knight Steam Gift Card",
        price=Decimal("11.20"),
        key_type="image/png",
    ),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class KinguinCall:
    """One API call the sandbox received, and the status it answered."""

    method: str
    path: str
    order_external_id: str | None
    status: int
    body: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class KinguinWebhook:
    """One ``order.status`` webhook sent, and what the receiver answered (None: no answer)."""

    order_id: str
    status: str
    body: bytes
    answered: int | None


@dataclass(slots=True, kw_only=True)
class _Key:
    id: str
    serial: str
    type: str
    product: KinguinProduct
    offer_id: str
    ready_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "serial": self.serial,
            "type": self.type,
            "name": self.product.name,
            "kinguinId": self.product.kinguin_id,
            "offerId": self.offer_id,
            "productId": self.product.product_id,
        }


@dataclass(slots=True, kw_only=True)
class _Order:
    order_id: str
    order_external_id: str | None
    created_at: datetime
    total_price: Decimal
    products: list[dict[str, Any]]
    keys: list[_Key] = field(default_factory=list)
    # Set when canceled or refunded: (status, when).
    ended: tuple[str, datetime] | None = None
    # The last status a webhook receiver accepted.
    notified: str | None = None

    def ready_keys(self, now: datetime) -> list[_Key]:
        return [key for key in self.keys if key.ready_at <= now]

    def status(self, now: datetime) -> tuple[str, datetime]:
        """The status now, and when the order entered it."""
        if self.ended is not None:
            return self.ended
        if len(self.ready_keys(now)) == len(self.keys):
            return "completed", max((key.ready_at for key in self.keys), default=self.created_at)
        return "processing", self.created_at

    def to_json(self, now: datetime) -> dict[str, Any]:
        status, _ = self.status(now)
        return {
            "orderId": self.order_id,
            "orderExternalId": self.order_external_id,
            "status": status,
            "totalPrice": self.total_price,
            "requestTotalPrice": self.total_price,
            "paymentPrice": self.total_price,
            "createdAt": _iso(self.created_at),
            "products": self.products,
        }


class KinguinSandbox:
    def __init__(
        self,
        *,
        api_key: str,
        products: Iterable[KinguinProduct] = DEFAULT_PRODUCTS,
        balance: Decimal = Decimal("500.00"),
        key_delay: float = 0.0,
        clock: Clock | None = None,
        seed: int = 0,
        stall_seconds: float = 0.5,
        http: httpx.Client | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> None:
        # "" accepts any key (a shared sandbox serving shops that each have their own).
        self._api_key = api_key
        # Seconds every API call answers late (a slow Kinguin); 0: on time.
        self.latency = 0.0
        self._http = http
        self.webhook_url = webhook_url
        self._webhook_secret = webhook_secret
        self.wrap_image_keys = False
        self._webhooks: list[KinguinWebhook] = []
        self._products = {product.product_id: product for product in products}
        self._balance = balance
        self._key_delay = key_delay
        self._clock: Clock = clock or SystemClock()
        self._random = random.Random(seed)  # noqa: S311  makes test keys, guards nothing
        self._stall_seconds = stall_seconds
        self._faults = FaultPlan(frozenset(get_args(KinguinOutageMode)))
        self._lock = threading.Lock()
        self._orders: dict[str, _Order] = {}
        self._calls: list[KinguinCall] = []
        self._routes = (
            Route("GET", re.compile(r"/v1/products/(?P<kinguin_id>[^/]+)"), self._product_v1),
            Route("GET", re.compile(r"/v2/products/(?P<product_id>[^/]+)"), self._product_v2),
            Route("POST", re.compile(r"/v2/order/?"), self._place_order),
            Route("GET", re.compile(r"/v1/order/?"), self._search_orders),
            Route("GET", re.compile(r"/v1/order/(?P<order_id>[^/]+)"), self._get_order),
            Route("GET", re.compile(r"/v2/order/(?P<order_id>[^/]+)/keys"), self._keys),
            Route("GET", re.compile(r"/v1/balance"), self._get_balance),
            Route("POST", re.compile(r"/sandbox/outage"), self._control_outage),
            Route("POST", re.compile(r"/sandbox/key-delay"), self._control_key_delay),
            Route("POST", re.compile(r"/sandbox/stock"), self._control_stock),
        )

    # -- control -----------------------------------------------------------------------

    @property
    def calls(self) -> list[KinguinCall]:
        with self._lock:
            return list(self._calls)

    @property
    def orders(self) -> list[dict[str, Any]]:
        """Every order placed, as ``GET /v1/order/{id}`` shows it now."""
        now = self._clock.now()
        with self._lock:
            return [order.to_json(now) for order in self._orders.values()]

    @property
    def balance(self) -> Decimal:
        with self._lock:
            return self._balance

    @balance.setter
    def balance(self, value: Decimal) -> None:
        with self._lock:
            self._balance = value

    @property
    def key_delay(self) -> float:
        return self._key_delay

    @key_delay.setter
    def key_delay(self, seconds: float) -> None:
        """Applies to orders placed from now on."""
        self._key_delay = seconds

    def add_product(self, product: KinguinProduct) -> None:
        """Add ``product`` to the catalogue, or replace the one with its ``product_id``."""
        with self._lock:
            self._products[product.product_id] = product

    def set_stock(self, product_id: str, qty: int) -> None:
        """Set how many keys of ``product_id`` Kinguin's offers hold (0: out of stock)."""
        if qty < 0:
            raise ValueError("stock must not be negative")
        with self._lock:
            product = self._products.get(product_id)
            if product is None:
                raise KeyError(product_id)
            self._products[product_id] = replace(product, stock=qty)

    def set_price(self, product_id: str, price: Decimal) -> None:
        """Set what Kinguin's cheapest offer of ``product_id`` asks (EUR, per key)."""
        if price <= 0:
            raise ValueError("a price must be positive")
        with self._lock:
            product = self._products.get(product_id)
            if product is None:
                raise KeyError(product_id)
            self._products[product_id] = replace(product, price=price)

    def cancel(self, order_id: str, status: Literal["canceled", "refunded"] = "canceled") -> None:
        """Cancel or refund an order (Kinguin's support does; its keys stop being served)."""
        now = self._clock.now()
        with self._lock:
            self._orders[order_id].ended = (status, now)

    @property
    def webhooks(self) -> list[KinguinWebhook]:
        """Every ``order.status`` webhook sent, in order."""
        with self._lock:
            return list(self._webhooks)

    def send_webhooks(self) -> list[KinguinWebhook]:
        """Post ``order.status`` for each order whose status changed since the last one
        the receiver accepted (2xx); an order whose webhook failed is tried again next time.
        """
        if self._http is None or not self.webhook_url or not self._webhook_secret:
            return []
        now = self._clock.now()
        with self._lock:
            due = [
                (order, *order.status(now))
                for order in self._orders.values()
                if order.status(now)[0] != order.notified
            ]
        sent = []
        for order, status, since in due:
            body = json_body(
                {
                    "orderId": order.order_id,
                    "orderExternalId": order.order_external_id,
                    "status": status,
                    "updatedAt": _iso(since),
                }
            )
            answered = self._post_webhook(body)
            webhook = KinguinWebhook(
                order_id=order.order_id, status=status, body=body, answered=answered
            )
            with self._lock:
                self._webhooks.append(webhook)
                if answered is not None and 200 <= answered < 300:  # noqa: PLR2004
                    order.notified = status
            sent.append(webhook)
        return sent

    def _post_webhook(self, body: bytes) -> int | None:
        if self._http is None or not self.webhook_url or not self._webhook_secret:
            return None  # pragma: no cover - checked by send_webhooks
        try:
            response = self._http.post(
                self.webhook_url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Event-Name": "order.status",
                    "X-Event-Secret": self._webhook_secret,
                },
                timeout=5.0,
            )
        except httpx.HTTPError:
            return None
        return response.status_code

    def outage(
        self,
        failures: int,
        mode: KinguinOutageMode = "503",
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """The next ``failures`` API calls (matching ``method`` and ``path`` prefix) fail."""
        self._faults.outage(failures, mode, method=method, path=path)

    def clear_outage(self) -> None:
        """Cancel every planned failure still to come."""
        self._faults.clear()

    # -- HTTP --------------------------------------------------------------------------

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        api_call = request.path.startswith(("/v1/", "/v2/"))
        fault = self._faults.take(request.method, request.path) if api_call else None
        if fault is None:
            response = self._dispatch(request)
        elif fault == "slow":
            response = replace(self._dispatch(request), stall=self._stall_seconds)
        elif fault == "timeout":
            response = SandboxResponse(
                status=504, content_type="text/plain", stall=self._stall_seconds
            )
        elif fault == "resource_lock":
            response = _error(409, "ResourceLock", "Resource locked", "Try again later.")
        elif fault == "order_failed":
            response = _error(422, "OrderFailed", "Order failed", "The order could not be placed.")
        else:
            response = _error(int(fault), "ServiceUnavailable", "Service unavailable", "")
        if api_call:
            self._record(request, response.status)
            if self.latency > 0:
                response = replace(response, stall=max(response.stall, self.latency))
        return response

    def _dispatch(self, request: SandboxRequest) -> SandboxResponse:
        if request.path.startswith(("/v1/", "/v2/")) and not self._authorised(request):
            body = {
                "kind": "Authorization",
                "status": 401,
                "detail": "Invalid authentication data.",
                "type": "Unauthorized",
            }
            return SandboxResponse(status=401, body=json_body(body))
        not_found = _error(404, "NotFound", "Not found", f"No route {request.path}")
        return dispatch(request, self._routes, not_found)

    def _record(self, request: SandboxRequest, status: int) -> None:
        external_id = request.query.get("orderExternalId")
        if request.method == "POST":
            body = read_json(request.body)
            if isinstance(body, dict) and isinstance(body.get("orderExternalId"), str):
                external_id = body["orderExternalId"]
        call = KinguinCall(
            method=request.method,
            path=request.path,
            order_external_id=external_id,
            status=status,
            body=request.body,
        )
        with self._lock:
            self._calls.append(call)

    def _authorised(self, request: SandboxRequest) -> bool:
        given = request.header("x-api-key") or ""
        if not self._api_key:
            return bool(given)
        return hmac.compare_digest(given.encode(), self._api_key.encode())

    def received_orders(self) -> list[dict[str, Any]]:
        """Every order received, oldest first: its id, ``order_external_id``, products
        (as placed) and keys (as delivered or to be)."""
        with self._lock:
            return [
                {
                    "order_id": order.order_id,
                    "order_external_id": order.order_external_id,
                    "created_at": _iso(order.created_at),
                    "products": [dict(product) for product in order.products],
                    "keys": [
                        {"id": key.id, "serial": key.serial, "product_id": key.product.product_id}
                        for key in order.keys
                    ],
                }
                for order in self._orders.values()
            ]

    def _product_v1(self, _request: SandboxRequest, kinguin_id: str) -> SandboxResponse:
        with self._lock:
            found = [p for p in self._products.values() if str(p.kinguin_id) == kinguin_id]
        return _product_response(found[0] if found else None, self._clock.now())

    def _product_v2(self, _request: SandboxRequest, product_id: str) -> SandboxResponse:
        with self._lock:
            product = self._products.get(product_id)
        return _product_response(product, self._clock.now())

    def _place_order(self, request: SandboxRequest) -> SandboxResponse:
        body = read_json(request.body)
        lines = body.get("products") if isinstance(body, dict) else None
        external_id = body.get("orderExternalId") if isinstance(body, dict) else None
        problem = _order_lines_problem(lines)
        if problem is None and external_id is not None and not isinstance(external_id, str):
            problem = "orderExternalId must be a string."
        if problem is not None or not isinstance(lines, list):
            return _violation(problem or "products must be a list.")
        now = self._clock.now()
        with self._lock:
            if external_id is not None and any(
                order.order_external_id == external_id for order in self._orders.values()
            ):
                return _error(
                    422,
                    "ConstraintViolation",
                    "Constraint violation",
                    "orderExternalId already used",
                )
            priced = self._priced(lines, now)
            if isinstance(priced, SandboxResponse):
                return priced
            total = sum((product.price * qty for product, qty in priced), Decimal(0))
            if total > self._balance:
                return _error(
                    400,
                    "InsufficientBalance",
                    "Insufficient balance",
                    "Your balance is too low for this order.",
                )
            self._balance -= total
            order = self._new_order(external_id, priced, total, now)
            for product, qty in priced:
                self._products[product.product_id] = replace(product, stock=product.stock - qty)
            self._orders[order.order_id] = order
        return SandboxResponse(status=201, body=json_body(order.to_json(now)))

    def _priced(
        self, lines: list[dict[str, Any]], now: datetime
    ) -> list[tuple[KinguinProduct, int]] | SandboxResponse:
        """Each line's product and quantity, or the error that refuses the order."""
        preorders = [
            line
            for line in lines
            if line["productId"] in self._products
            and self._products[line["productId"]].preorder(now)
        ]
        if preorders and len(lines) > 1:
            return _violation("A pre-order must be ordered alone: one pre-order per request.")
        priced: list[tuple[KinguinProduct, int]] = []
        for line in lines:
            product = self._products.get(line["productId"])
            if product is None or product.stock < line["qty"]:
                return _error(
                    400,
                    "ProductUnavailable",
                    "Product unavailable",
                    f"Product {line['productId']} is not available in that quantity.",
                )
            offered = decimal_or_none(line.get("price"))
            if line.get("price") is not None and (offered is None or offered < product.price):
                return _violation(f"The price of {product.product_id} is {product.price}.")
            priced.append((product, line["qty"]))
        return priced

    def _new_order(
        self,
        external_id: str | None,
        priced: list[tuple[KinguinProduct, int]],
        total: Decimal,
        now: datetime,
    ) -> _Order:
        order = _Order(
            order_id=self._token(string.ascii_uppercase + string.digits, 11),
            order_external_id=external_id,
            created_at=now,
            total_price=total,
            products=[],
        )
        count = sum(qty for _, qty in priced)
        for product, qty in priced:
            # A pre-order's keys come from its release on, trickling in over key_delay.
            release = product.release_at
            start = release if release is not None and now < release else now
            offer_id = self._token("0123456789abcdef", 24)
            order.products.append(
                {
                    "kinguinId": product.kinguin_id,
                    "productId": product.product_id,
                    "offerId": offer_id,
                    "name": product.name,
                    "qty": qty,
                    "price": product.price,
                    "totalPrice": product.price * qty,
                    "keyType": "basic",
                    "isPreorder": product.preorder(now),
                }
            )
            for _ in range(qty):
                # Keys trickle in over key_delay: the last one arrives at its end.
                ready_at = start + timedelta(
                    seconds=self._key_delay * (len(order.keys) + 1) / count
                )
                order.keys.append(
                    _Key(
                        id=self._token("0123456789abcdef", 24),
                        serial=self._serial(product.key_type),
                        type=product.key_type,
                        product=product,
                        offer_id=offer_id,
                        ready_at=ready_at,
                    )
                )
        return order

    def _token(self, alphabet: str, length: int) -> str:
        return "".join(self._random.choice(alphabet) for _ in range(length))

    def _serial(self, key_type: str) -> str:
        if key_type.startswith("image/"):
            pixel = bytes(self._random.randrange(256) for _ in range(3))
            if self.wrap_image_keys:  # as MIME writes base64: 76 columns, CRLF
                return base64.encodebytes(tiny_png(pixel)).decode().replace("\n", "\r\n")
            return base64.b64encode(tiny_png(pixel)).decode()
        alphabet = string.ascii_uppercase + string.digits
        return "-".join(self._token(alphabet, 5) for _ in range(3))

    def _search_orders(self, request: SandboxRequest) -> SandboxResponse:
        external_id = request.query.get("orderExternalId")
        now = self._clock.now()
        with self._lock:
            results = [
                order.to_json(now)
                for order in self._orders.values()
                if external_id is None or order.order_external_id == external_id
            ]
        return SandboxResponse(
            status=200, body=json_body({"results": results, "item_count": len(results)})
        )

    def _get_order(self, _request: SandboxRequest, order_id: str) -> SandboxResponse:
        now = self._clock.now()
        with self._lock:
            order = self._orders.get(order_id)
            answer = None if order is None else order.to_json(now)
        if answer is None:
            return _error(404, "OrderNotFound", "Order not found", f"No order {order_id}.")
        return SandboxResponse(status=200, body=json_body(answer))

    def _keys(self, request: SandboxRequest, order_id: str) -> SandboxResponse:
        page = _positive_int(request.query.get("page", "1"))
        limit = _positive_int(request.query.get("limit", str(DEFAULT_KEYS_PAGE_LIMIT)))
        if page is None or limit is None or limit > MAX_KEYS_PAGE_LIMIT:
            return _violation(f"page must be ≥ 1 and limit between 1 and {MAX_KEYS_PAGE_LIMIT}.")
        now = self._clock.now()
        with self._lock:
            order = self._orders.get(order_id)
            ready = None if order is None else order.ready_keys(now)
        if ready is None:
            return _error(404, "OrderNotFound", "Order not found", f"No order {order_id}.")
        window = ready[(page - 1) * limit : page * limit]
        return SandboxResponse(status=200, body=json_body([key.to_json() for key in window]))

    def _get_balance(self, _request: SandboxRequest) -> SandboxResponse:
        return SandboxResponse(status=200, body=json_body({"balance": self.balance}))

    def _control_outage(self, request: SandboxRequest) -> SandboxResponse:
        body = read_json(request.body)
        failures = body.get("failures") if isinstance(body, dict) else None
        mode = body.get("mode", "503") if isinstance(body, dict) else None
        if (
            not isinstance(failures, int)
            or isinstance(failures, bool)
            or failures < 0
            or mode not in get_args(KinguinOutageMode)
        ):
            return _violation("Expected {failures: N, mode?}.")
        self._faults.outage(failures, str(mode))
        return SandboxResponse(status=200, body=json_body({"pending": self._faults.pending}))

    def _control_key_delay(self, request: SandboxRequest) -> SandboxResponse:
        body = read_json(request.body)
        seconds = decimal_or_none(body.get("seconds")) if isinstance(body, dict) else None
        if seconds is None or seconds < 0:
            return _violation("Expected {seconds: N} with N >= 0.")
        self.key_delay = float(seconds)
        return SandboxResponse(status=200, body=json_body({"seconds": seconds}))

    def _control_stock(self, request: SandboxRequest) -> SandboxResponse:
        body = read_json(request.body)
        product_id = body.get("product_id") if isinstance(body, dict) else None
        qty = body.get("qty") if isinstance(body, dict) else None
        if not isinstance(qty, int) or isinstance(qty, bool) or qty < 0:
            return _violation("Expected {product_id: ID, qty: N} with N >= 0.")
        try:
            self.set_stock(str(product_id), qty)
        except KeyError:
            return _error(404, "HttpClient", "Not Found", f"No product {product_id}.")
        return SandboxResponse(status=200, body=json_body({"product_id": product_id, "qty": qty}))


def _order_lines_problem(lines: object) -> str | None:
    if not isinstance(lines, list) or not lines:
        return "products must be a non-empty list."
    if len(lines) > MAX_PRODUCTS_PER_ORDER:
        return f"An order holds at most {MAX_PRODUCTS_PER_ORDER} products."
    per_product: dict[str, int] = {}
    for line in lines:
        if not isinstance(line, dict) or not isinstance(line.get("productId"), str):
            return "Each product needs a productId."
        qty = line.get("qty")
        if not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
            return "qty must be a positive integer."
        if line["productId"] in per_product:
            return f"Product {line['productId']} is named twice: one line per product."
        per_product[line["productId"]] = qty
    return (
        f"At most {MAX_QTY_PER_PRODUCT} of one product per order."
        if max(per_product.values()) > MAX_QTY_PER_PRODUCT
        else None
    )


def _product_response(product: KinguinProduct | None, now: datetime) -> SandboxResponse:
    if product is None or product.stock <= 0:
        # Kinguin answers an unknown and an out-of-stock product alike.
        return SandboxResponse(
            status=404, body=json_body({"kind": "HttpClient", "status": 404, "title": "Not Found"})
        )
    body = {
        "kinguinId": product.kinguin_id,
        "productId": product.product_id,
        "name": product.name,
        "platform": product.platform,
        "price": product.price,
        "qty": product.stock,
        "textQty": product.stock if product.key_type == "text/plain" else 0,
        "isPreorder": product.preorder(now),
        "releaseDate": None if product.release_at is None else _iso(product.release_at)[:10],
    }
    return SandboxResponse(status=200, body=json_body(body))


def _positive_int(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and int(text) > 0 else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _violation(detail: str) -> SandboxResponse:
    return _error(400, "ConstraintViolation", "Constraint violation", detail)


def _error(status: int, kind: str, title: str, detail: str) -> SandboxResponse:
    body = {"kind": kind, "status": status, "title": title, "detail": detail}
    return SandboxResponse(status=status, body=json_body(body))


def tiny_png(rgb: bytes) -> bytes:
    """A valid 1x1 PNG of the colour ``rgb`` (three bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00" + rgb)  # filter byte, then the pixel
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
