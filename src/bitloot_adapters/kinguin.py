"""The Kinguin eCommerce API client: the ``KeySupplier`` port over an injected ``httpx.Client``.

``fulfill(order_id=..., lines=...)`` buys the lines and returns every key:

1. Look for the Kinguin orders already placed for ``order_id``
   (``GET /v1/order?orderExternalId=``, for ``order_id`` and for each product's own id
   ``{order_id}-{productId}``, each followed by its parts ``…-part2``, ``…-part3``, … up
   to the first one not placed). A job retried after a timeout finds what the first
   attempt placed and never buys twice.
2. Price what is still missing (``GET /v2/products/{productId}``). Kinguin answers 404
   (``HttpClient``) for a product out of stock, and its ``qty`` is what its offers hold:
   either, or a quantity short of the order, is ``ProductUnavailable`` and nothing is
   bought.
3. Place the orders (``POST /v2/order``): the regular products together under
   ``orderExternalId`` = our order id; each pre-order alone under its product's own id
   (Kinguin takes one pre-order per request, never mixed with other products). Kinguin
   sells at most 9 of one offer in a request and refuses a product named twice in one:
   a larger quantity is bought 9 at a time in further requests, the parts (up to 90
   units in an order, ten requests of nine). Kinguin
   refuses a repeated ``orderExternalId`` (422 ``ConstraintViolation``, its own guard
   against a double purchase): the order it already holds is looked up and adopted.
4. Read the keys (``GET /v2/order/{orderId}/keys``, page by page), polling every
   ``poll_interval`` seconds for up to ``key_wait`` seconds until every ordered key is
   there. Still short: ``KeysPending`` (retryable; the checkout waits for the keys, woken
   by Kinguin's ``order.status`` webhook, without using up attempts). Kinguin puts no
   limit on ``processing``, and delivers pre-order keys only after the release date.

Errors are translated in one place, ``_send``: timeouts, connection errors, 5xx, 429 and
the ``ResourceLock`` and ``OrderFailed`` kinds are ``SupplierUnavailable`` (retry later,
a bounded number of times); ``ProductUnavailable`` is its own error; a canceled or
refunded Kinguin order is ``SupplierOrderCanceled`` (never bought again under the same
id); everything else (``InsufficientBalance``, 401, other 4xx, a key we cannot decode) is
``SupplierError`` with Kinguin's ``kind``: an admin must look.

The API key travels only in the ``X-Api-Key`` header and never appears in an exception
message; no key (secret) ever appears in one either. Nothing here logs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote

import httpx

from bitloot_adapters import transport
from bitloot_core.errors import (
    KeysPending,
    PriceGuard,
    ProductUnavailable,
    SupplierError,
    SupplierOrderCanceled,
    SupplierUnavailable,
)
from bitloot_core.values import SuppliedKey

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_PRODUCTS_PER_ORDER",
    "MAX_QTY_PER_ORDER",
    "MAX_QTY_PER_PRODUCT",
    "KinguinClient",
    "decode_image_serial",
]

DEFAULT_BASE_URL: Final = "https://gateway.kinguin.net/esa/api"
MAX_PRODUCTS_PER_ORDER: Final = 10
# Kinguin sells at most 9 of one offer in one request, and 90 units in an order (10 lines).
# A request names each product once (two lines with one productId are refused) and buys
# from the cheapest offer: more than 9 of a product are bought in further requests.
MAX_QTY_PER_PRODUCT: Final = 9
MAX_QTY_PER_ORDER: Final = 90
MAX_PARTS: Final = MAX_QTY_PER_ORDER // MAX_QTY_PER_PRODUCT
MAX_KEYS_PAGE_LIMIT: Final = 100
# A product ordered on its own (a pre-order) carries orderExternalId "{order id}-{productId}";
# a further request of either carries "{that id}-part{n}" (n = 2, 3, ...).
OWN_ORDER_SEPARATOR: Final = "-"
PART_PREFIX: Final = "part"

TEXT_KEY: Final = "text/plain"
IMAGE_KEYS: Final = frozenset({"image/jpeg", "image/png", "image/gif"})
# Kinguin's docs listed both as retryable from 2020-12 to 2024-05; OrderFailed has been
# seen with retryable:false since. Retried a bounded number of times (the job's schedule).
RETRYABLE_KINDS: Final = frozenset({"ResourceLock", "OrderFailed"})
DEAD_ORDER_STATUSES: Final = frozenset({"canceled", "refunded"})

_MESSAGE_LIMIT: Final = 300
_TOO_MANY_REQUESTS: Final = 429
_SERVER_ERROR: Final = 500
_AUTH_STATUSES: Final = frozenset({401, 403})
_NOT_FOUND: Final = 404
_WHITESPACE: Final = re.compile(r"\s+")


class KinguinClient:
    """Buys keys from Kinguin. Thread-safe as the ``httpx.Client`` is."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        key_wait: float = 20.0,
        poll_interval: float = 2.0,
        page_limit: int = MAX_KEYS_PAGE_LIMIT,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not api_key:
            raise ValueError("a Kinguin API key is required")
        if not 1 <= page_limit <= MAX_KEYS_PAGE_LIMIT:
            raise ValueError(f"page_limit must be between 1 and {MAX_KEYS_PAGE_LIMIT}")
        if key_wait < 0 or poll_interval <= 0:
            raise ValueError("key_wait must not be negative and poll_interval must be positive")
        self._http = http
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._timeout = httpx.Timeout(timeout)
        self._key_wait = key_wait
        self._poll_interval = poll_interval
        self._page_limit = page_limit
        self._sleep = sleep
        self._monotonic = monotonic

    def __repr__(self) -> str:
        return f"KinguinClient(base_url={self._base_url!r})"

    def fulfill(
        self,
        *,
        order_id: str,
        lines: Sequence[tuple[str, int]],
        max_prices: Mapping[str, Decimal] | None = None,
    ) -> list[SuppliedKey]:
        """Buy ``(productId, qty)`` lines for ``order_id`` (once) and return every key;
        nothing at all when an offer costs more than its ``max_prices`` (``PriceGuard``)."""
        wanted = _wanted(order_id, lines)
        orders = self._found_orders(order_id, wanted)
        missing = _missing(order_id, wanted, orders)
        if missing:
            orders.extend(self._place_missing(order_id, missing, orders, max_prices or {}))
        kinguin_ids = [_check_order(order, order_id) for order in orders]
        # Bounded by the wall clock too (requests take time, not only the pauses): the
        # worker's job lease must outlast a call, so a call must not outlast key_wait.
        started, waited = self._monotonic(), 0.0
        while True:
            keys = [key for kinguin_id in kinguin_ids for key in self.order_keys(kinguin_id)]
            delivered = _delivered(keys, wanted, ", ".join(kinguin_ids))
            if delivered is not None:
                return delivered
            if max(waited, self._monotonic() - started) >= self._key_wait:
                preorders = self._waiting_preorders(order_id, orders, keys)
                raise KeysPending(
                    f"Kinguin order {', '.join(kinguin_ids)} for order {order_id}: keys not yet "
                    f"delivered ({len(keys)} of {sum(wanted.values())})",
                    preorder=bool(preorders),
                    supplier_orders=tuple(kinguin_ids),
                    release_at=self._release(preorders),
                )
            pause = min(self._poll_interval, self._key_wait - waited)
            self._sleep(pause)
            waited += pause

    def _found_orders(self, order_id: str, wanted: dict[str, int]) -> list[dict[str, Any]]:
        """The live orders placed for ``order_id`` under any of its external ids.

        Each series of ids (the shared one, each product's own) is placed in order, so
        its first id not found ends it.
        """
        found = []
        for base in (order_id, *(_own_id(order_id, p) for p in wanted)):
            for external_id in _series(base):
                order = self.find_order(external_id)
                if order is None:
                    break
                found.append(order)
        return found

    def _place_missing(
        self,
        order_id: str,
        missing: dict[str, int],
        placed: list[dict[str, Any]],
        max_prices: Mapping[str, Decimal],
    ) -> list[dict[str, Any]]:
        """Price what is missing (every price within its limit, or nothing is placed),
        then place it: pre-orders each alone, the rest together, 9 of a product in a
        request at most."""
        offers = {product_id: self._offer(product_id, qty) for product_id, qty in missing.items()}
        for product_id, (price, _) in offers.items():
            limit = max_prices.get(product_id)
            if limit is not None and price > limit:
                raise PriceGuard(
                    f"Kinguin asks {price} for {product_id}, more than its limit {limit}",
                    kind="PriceGuard",
                )
        used = {order.get("orderExternalId") for order in placed}
        together = {p: q for p, q in missing.items() if not offers[p][1]}
        groups = _named(order_id, _free(order_id, used), _rounds(together)) if together else []
        for product_id, qty in missing.items():
            if offers[product_id][1]:
                free = _free(_own_id(order_id, product_id), used)
                groups.extend(_named(order_id, free, _rounds({product_id: qty})))
        return [
            self._place_order(external_id, group, {p: offers[p][0] for p in group})
            for external_id, group in groups
        ]

    def _waiting_preorders(
        self, order_id: str, orders: list[dict[str, Any]], keys: list[dict[str, Any]]
    ) -> list[str]:
        """The pre-orders whose keys are still missing (their wait may be longer)."""
        have: dict[str, int] = {}
        for key in keys:
            have[str(key.get("productId"))] = have.get(str(key.get("productId")), 0) + 1
        ordered: dict[str, int] = {}
        preorders = set()
        for order in orders:
            for product in _products(order) or []:
                product_id = product["productId"]
                ordered[product_id] = ordered.get(product_id, 0) + product["qty"]
                own = order.get("orderExternalId") in _series(_own_id(order_id, product_id))
                if product.get("isPreorder") is True or own:
                    preorders.add(product_id)
        return sorted(p for p in preorders if have.get(p, 0) < ordered[p])

    def _release(self, product_ids: list[str]) -> datetime | None:
        """The latest release date Kinguin gives for these products (None: unknown).

        Only informs the admin: a lookup that fails says nothing, it never fails the wait.
        """
        releases = []
        for product_id in product_ids:
            try:
                product = self._json(
                    self._send("GET", f"/v2/products/{quote(product_id, safe='')}")
                )
            except (SupplierError, ValueError):
                continue
            release = _release_date(
                product.get("releaseDate") if isinstance(product, dict) else None
            )
            if release is not None:
                releases.append(release)
        return max(releases, default=None)

    def find_order(self, order_external_id: str) -> dict[str, Any] | None:
        """The Kinguin order placed with ``orderExternalId``, or ``None``."""
        body = self._json(
            self._send("GET", "/v1/order", params={"orderExternalId": order_external_id})
        )
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise SupplierError("Kinguin's order search answered without results")
        for order in results:
            if isinstance(order, dict) and order.get("orderExternalId") == order_external_id:
                return order
        return None

    def order_keys(self, kinguin_order_id: str) -> list[dict[str, Any]]:
        """Every key Kinguin has delivered so far for the order, read page by page."""
        path = f"/v2/order/{quote(kinguin_order_id, safe='')}/keys"
        keys: list[dict[str, Any]] = []
        seen: set[str] = set()
        page = 1
        while True:
            params = {"page": str(page), "limit": str(self._page_limit)}
            batch = self._json(self._send("GET", path, params=params))
            if not isinstance(batch, list):
                raise SupplierError(f"Kinguin's keys for order {kinguin_order_id} are not a list")
            fresh = [key for key in batch if _key_id(key, kinguin_order_id) not in seen]
            seen.update(_key_id(key, kinguin_order_id) for key in fresh)
            keys.extend(fresh)
            # A short page is the last; a page of nothing new means paging is ignored.
            if len(batch) < self._page_limit or not fresh:
                return keys
            page += 1

    def _place_order(
        self, external_id: str, wanted: dict[str, int], prices: dict[str, Decimal]
    ) -> dict[str, Any]:
        products = ",".join(
            '{"productId":%s,"qty":%d,"price":%s}'  # noqa: UP031  exact Decimal text
            % (json.dumps(product_id), qty, _json_number(prices[product_id]))
            for product_id, qty in wanted.items()
        )
        body = '{"products":[%s],"orderExternalId":%s}' % (products, json.dumps(external_id))  # noqa: UP031
        try:
            order = self._json(self._send("POST", "/v2/order", content=body.encode()))
        except SupplierError as exc:
            if exc.kind != "ConstraintViolation" or exc.retryable:
                raise
            # Kinguin refuses a repeated orderExternalId: it already holds this order
            # (placed by a call whose answer was lost). Adopt it; never buy again.
            adopted = self.find_order(external_id)
            if adopted is None:
                raise
            order = adopted
        if not isinstance(order, dict):
            raise SupplierError("Kinguin answered the order with something else than an order")
        held = _products(order)
        if held is not None and _count(held) != wanted:
            raise SupplierError(
                f"Kinguin order {order.get('orderId')} ({external_id}) holds other products "
                "than the order"
            )
        return order

    def _offer(self, product_id: str, qty: int) -> tuple[Decimal, bool]:
        """The cheapest offer's price, and whether it is a pre-order; unavailable: raises."""
        path = f"/v2/products/{quote(product_id, safe='')}"
        try:
            product = self._json(self._send("GET", path))
        except SupplierError as exc:
            # Kinguin answers 404 ({"kind": "HttpClient"}) for an unknown product and for
            # one out of stock alike.
            if exc.status != _NOT_FOUND:
                raise
            raise ProductUnavailable(
                f"Kinguin product {product_id} is not found or out of stock",
                kind="ProductUnavailable",
                status=_NOT_FOUND,
            ) from exc
        price = product.get("price") if isinstance(product, dict) else None
        if isinstance(price, bool) or not isinstance(price, Decimal | int) or price < 0:
            raise SupplierError(f"Kinguin product {product_id} has no usable price")
        stock = product.get("qty")
        if isinstance(stock, int) and not isinstance(stock, bool) and stock < qty:
            raise ProductUnavailable(
                f"Kinguin product {product_id} has {stock} in stock, {qty} ordered",
                kind="ProductUnavailable",
            )
        return Decimal(price), product.get("isPreorder") is True

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """The one place where transport failures and error answers become our errors."""
        what = f"Kinguin {method} {path}"
        response = transport.request(
            self._http,
            method,
            self._base_url + path,
            api_key=("X-Api-Key", self._api_key),
            what=what,
            unavailable=SupplierUnavailable,
            failure=SupplierError,
            params=params,
            content=content,
            timeout=self._timeout,
        )
        if response.is_success:
            return response
        status = response.status_code
        kind, detail = self._error_details(response)
        text = f"{what} answered {status} {kind or 'error'}: {detail}"
        if status == _TOO_MANY_REQUESTS or status >= _SERVER_ERROR or kind in RETRYABLE_KINDS:
            raise SupplierUnavailable(text, kind=kind, status=status)
        if status in _AUTH_STATUSES:
            kind = kind or "Authorization"
        if kind == "ProductUnavailable":
            raise ProductUnavailable(text, kind=kind, status=status)
        raise SupplierError(text, kind=kind, status=status)

    def _error_details(self, response: httpx.Response) -> tuple[str | None, str]:
        """Kinguin's error kind and its detail (or title), scrubbed of our API key."""
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        kind: str | None = None
        detail = response.reason_phrase or "error"
        if isinstance(body, dict):
            if isinstance(body.get("kind"), str):
                kind = body["kind"]
            for name in ("detail", "title"):
                if isinstance(body.get(name), str) and body[name]:
                    detail = body[name]
                    break
        return kind, detail.replace(self._api_key, "[api key]")[:_MESSAGE_LIMIT]

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return json.loads(response.content, parse_float=Decimal)
        except ValueError as exc:
            raise SupplierError(
                f"Kinguin answered {response.request.method} {response.request.url.path} "
                "with a body that is not JSON",
                status=response.status_code,
            ) from exc


def _release_date(value: object) -> datetime | None:
    """Kinguin's ``releaseDate`` ("2026-12-24", or a full timestamp) as an aware UTC time."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _own_id(order_id: str, product_id: str) -> str:
    return f"{order_id}{OWN_ORDER_SEPARATOR}{product_id}"


def _series(base: str) -> tuple[str, ...]:
    """The external ids of a series of requests, in the order they are placed."""
    parts = (f"{base}{OWN_ORDER_SEPARATOR}{PART_PREFIX}{n}" for n in range(2, MAX_PARTS + 1))
    return (base, *parts)


def _free(base: str, used: set[object]) -> list[str]:
    """The ids of ``base``'s series not used yet: the next requests go under them."""
    return [external_id for external_id in _series(base) if external_id not in used]


def _named(
    order_id: str, free: list[str], rounds: list[dict[str, int]]
) -> list[tuple[str, dict[str, int]]]:
    """Each request with the external id it goes under."""
    if len(rounds) > len(free):
        raise SupplierError(
            f"order {order_id} needs more Kinguin requests than its external ids allow",
            kind="ConstraintViolation",
        )
    return list(zip(free, rounds, strict=False))


def _rounds(wanted: dict[str, int]) -> list[dict[str, int]]:
    """``wanted`` as requests Kinguin takes: each names a product once, 9 of it at most."""
    left, rounds = dict(wanted), []
    while left:
        rounds.append({p: min(q, MAX_QTY_PER_PRODUCT) for p, q in left.items()})
        left = {p: q - MAX_QTY_PER_PRODUCT for p, q in left.items() if q > MAX_QTY_PER_PRODUCT}
    return rounds


def _wanted(order_id: str, lines: Sequence[tuple[str, int]]) -> dict[str, int]:
    """The lines as productId -> quantity, checked against Kinguin's order limits."""
    wanted: dict[str, int] = {}
    for product_id, qty in lines:
        if not product_id or isinstance(qty, bool) or not isinstance(qty, int) or qty < 1:
            raise SupplierError(
                f"order {order_id}: a Kinguin line needs a productId and a positive quantity",
                kind="ConstraintViolation",
            )
        wanted[product_id] = wanted.get(product_id, 0) + qty
    if not wanted:
        raise SupplierError(f"order {order_id} has nothing to buy from Kinguin")
    if len(wanted) > MAX_PRODUCTS_PER_ORDER:
        raise SupplierError(
            f"order {order_id} has {len(wanted)} Kinguin products; "
            f"Kinguin takes at most {MAX_PRODUCTS_PER_ORDER} per order",
            kind="ConstraintViolation",
        )
    if sum(wanted.values()) > MAX_QTY_PER_ORDER:
        raise SupplierError(
            f"order {order_id} wants {sum(wanted.values())} Kinguin units; "
            f"Kinguin sells at most {MAX_QTY_PER_ORDER} units in an order",
            kind="ConstraintViolation",
        )
    return wanted


def _products(order: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The order's product lines, or ``None`` when Kinguin did not list them usably."""
    products = order.get("products")
    if isinstance(products, list) and all(
        isinstance(p, dict)
        and isinstance(p.get("productId"), str)
        and isinstance(p.get("qty"), int)
        and not isinstance(p.get("qty"), bool)
        for p in products
    ):
        return products
    return None


def _count(products: list[dict[str, Any]]) -> dict[str, int]:
    held: dict[str, int] = {}
    for product in products:
        held[product["productId"]] = held.get(product["productId"], 0) + product["qty"]
    return held


def _missing(order_id: str, wanted: dict[str, int], orders: list[dict[str, Any]]) -> dict[str, int]:
    """What the found orders do not hold yet; they must hold nothing we did not order."""
    held: dict[str, int] = {}
    for order in orders:
        products = _products(order)
        if products is None:
            # An order that does not say what it holds is taken to hold its share: with
            # one order (the usual case) that is everything.
            return {}
        for product_id, qty in _count(products).items():
            held[product_id] = held.get(product_id, 0) + qty
    if any(qty > wanted.get(product_id, 0) for product_id, qty in held.items()):
        raise SupplierError(
            f"Kinguin's orders for order {order_id} hold other products than the order"
        )
    return {p: q - held.get(p, 0) for p, q in wanted.items() if q > held.get(p, 0)}


def _check_order(order: dict[str, Any], order_id: str) -> str:
    """The Kinguin orderId, once the order is known to be live."""
    kinguin_id = order.get("orderId")
    if not isinstance(kinguin_id, str) or not kinguin_id:
        raise SupplierError(f"Kinguin's order for order {order_id} has no orderId")
    status = order.get("status")
    if status in DEAD_ORDER_STATUSES:
        # Kinguin does not say whether the id of a canceled order may be used again; a
        # new purchase is the admin's decision, never an automatic one.
        raise SupplierOrderCanceled(
            f"Kinguin order {kinguin_id} for order {order_id} is {status}", kind=str(status)
        )
    return kinguin_id


def _key_id(key: object, kinguin_order_id: str) -> str:
    if not isinstance(key, dict) or not isinstance(key.get("id"), str | int):
        raise SupplierError(f"Kinguin sent a key without an id for order {kinguin_order_id}")
    return str(key["id"])


def _delivered(
    keys: list[dict[str, Any]], wanted: dict[str, int], kinguin_order_id: str
) -> list[SuppliedKey] | None:
    """Every wanted key, in the order of the lines; ``None`` while some are missing."""
    by_product: dict[str, list[SuppliedKey]] = {product_id: [] for product_id in wanted}
    # By key id: a retried job then hands each item the same key as before, whatever order
    # Kinguin lists them in (the vault keeps the first key stored for each slot).
    for key in sorted(keys, key=lambda k: str(k.get("id"))):
        supplied = _supplied(key, kinguin_order_id)
        if supplied.product_ref in by_product:
            by_product[supplied.product_ref].append(supplied)
    if any(len(by_product[product_id]) < qty for product_id, qty in wanted.items()):
        return None
    return [key for product_id, qty in wanted.items() for key in by_product[product_id][:qty]]


def _supplied(key: dict[str, Any], kinguin_order_id: str) -> SuppliedKey:
    key_id = key.get("id")
    where = f"key {key_id} of Kinguin order {kinguin_order_id}"
    product_id, serial, key_type = key.get("productId"), key.get("serial"), key.get("type")
    if not isinstance(product_id, str) or not isinstance(serial, str) or not serial:
        raise SupplierError(f"{where} has no productId or serial", kind="BadKey")
    if key_type == TEXT_KEY:
        secret = serial.encode()
    elif key_type in IMAGE_KEYS:
        try:
            secret = decode_image_serial(serial)
        except ValueError as exc:
            raise SupplierError(f"{where} is not valid base64", kind="BadKey") from exc
    else:
        raise SupplierError(f"{where} has the unknown type {key_type!r}", kind="BadKey")
    raw = serial if key_type in IMAGE_KEYS else None
    return SuppliedKey(product_ref=product_id, secret=secret, content_type=str(key_type), raw=raw)


def decode_image_serial(serial: str) -> bytes:
    """An image key's bytes from its base64 ``serial``.

    Kinguin does not document how it formats the data: whitespace and line breaks (MIME
    wraps at 76 columns) and missing padding are tolerated; anything else is refused.
    """
    compact = _WHITESPACE.sub("", serial)
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not valid base64") from exc


def _json_number(amount: Decimal) -> str:
    return format(amount, "f")  # plain notation, every digit kept
