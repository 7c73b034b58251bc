"""KinguinClient against the Kinguin sandbox over real loopback HTTP."""

from __future__ import annotations

import base64
import json
import socket
import struct
import zlib
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from bitloot_adapters.kinguin import KinguinClient, decode_image_serial
from bitloot_adapters.sandbox import (
    KinguinProduct,
    KinguinSandbox,
    SandboxRequest,
    SandboxResponse,
    SandboxServer,
)
from bitloot_core.errors import (
    KeysPending,
    ProductUnavailable,
    SupplierError,
    SupplierOrderCanceled,
    SupplierUnavailable,
)
from bitloot_core.testing import SettableClock

API_KEY = "kg-live-0123456789abcdef"
CSS = "5c9b5f6b2539a4e8f172916a"  # text keys, 3.79
STARDEW = "5c9b5b8c2539a4e8f17291c2"  # text keys, 8.49
HOLLOW = "5c9b6a0a2539a4e8f1729c11"  # image/png keys, 11.20


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def sandbox(clock: SettableClock) -> KinguinSandbox:
    return KinguinSandbox(api_key=API_KEY, clock=clock, stall_seconds=0.5)


@pytest.fixture
def server(sandbox: KinguinSandbox) -> Iterator[SandboxServer]:
    with SandboxServer(sandbox) as running:
        yield running


class Sleeper:
    """Sleeps by moving the sandbox's clock, and remembers every pause."""

    def __init__(self, clock: SettableClock) -> None:
        self.clock = clock
        self.pauses: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.clock.advance(timedelta(seconds=seconds))


@pytest.fixture
def sleeper(clock: SettableClock) -> Sleeper:
    return Sleeper(clock)


def make_client(http, server, sleeper, **options) -> KinguinClient:
    settings = {"timeout": 0.2, "key_wait": 0.0, "poll_interval": 1.0} | options
    return KinguinClient(http, api_key=API_KEY, base_url=server.url, sleep=sleeper, **settings)


@pytest.fixture
def client(http, server, sleeper) -> KinguinClient:
    return make_client(http, server, sleeper)


def posts(sandbox: KinguinSandbox) -> list[str | None]:
    return [c.order_external_id for c in sandbox.calls if c.method == "POST"]


def test_fulfill_buys_once_and_returns_every_key_in_line_order(client, sandbox):
    keys = client.fulfill(order_id="ord_1", lines=[(STARDEW, 2), (CSS, 1)])

    assert [key.product_ref for key in keys] == [STARDEW, STARDEW, CSS]
    assert all(key.content_type == "text/plain" for key in keys)
    assert len({key.secret for key in keys}) == 3
    assert all(len(key.secret.split(b"-")) == 3 for key in keys)
    (order,) = sandbox.orders
    assert order["orderExternalId"] == "ord_1"
    assert order["totalPrice"] == Decimal("20.77")
    assert sandbox.balance == Decimal("500.00") - Decimal("20.77")
    assert [(c.method, c.path) for c in sandbox.calls][:1] == [("GET", "/v1/order")]


def test_the_order_carries_each_product_with_its_exact_price(client, sandbox):
    client.fulfill(order_id="ord_1", lines=[(HOLLOW, 1), (CSS, 2)])

    (post,) = [c for c in sandbox.calls if c.method == "POST"]
    assert post.body == (
        b'{"products":[{"productId":"5c9b6a0a2539a4e8f1729c11","qty":1,"price":11.2},'
        b'{"productId":"5c9b5f6b2539a4e8f172916a","qty":2,"price":3.79}],'
        b'"orderExternalId":"ord_1"}'
    )


def test_a_second_fulfill_finds_the_order_and_buys_nothing(client, sandbox):
    first = client.fulfill(order_id="ord_1", lines=[(CSS, 2)])
    again = client.fulfill(order_id="ord_1", lines=[(CSS, 2)])

    assert [key.secret for key in again] == [key.secret for key in first]
    assert posts(sandbox) == ["ord_1"]
    assert len(sandbox.orders) == 1


def test_a_post_that_times_out_after_placing_the_order_is_never_placed_twice(client, sandbox):
    # The supplier places the order, then answers too late: the client sees a timeout.
    sandbox.outage(1, "slow", method="POST", path="/v2/order")

    with pytest.raises(SupplierUnavailable) as caught:
        client.fulfill(order_id="ord_1", lines=[(CSS, 1), (STARDEW, 1)])
    assert isinstance(caught.value.__cause__, httpx.TimeoutException)
    assert caught.value.retryable

    keys = client.fulfill(order_id="ord_1", lines=[(CSS, 1), (STARDEW, 1)])

    assert [key.product_ref for key in keys] == [CSS, STARDEW]
    assert posts(sandbox) == ["ord_1"]
    assert [order["orderExternalId"] for order in sandbox.orders] == ["ord_1"]


def test_a_post_that_times_out_before_placing_the_order_is_placed_on_retry(client, sandbox):
    sandbox.outage(1, "timeout", method="POST")

    with pytest.raises(SupplierUnavailable, match="timed out"):
        client.fulfill(order_id="ord_1", lines=[(CSS, 1)])
    assert sandbox.orders == []

    assert len(client.fulfill(order_id="ord_1", lines=[(CSS, 1)])) == 1
    assert len(sandbox.orders) == 1


def test_keys_are_read_across_pages(http, server, sandbox, sleeper):
    products = [
        KinguinProduct(product_id=f"p{n:02d}", kinguin_id=n, name=f"Game {n}", price=Decimal(1))
        for n in range(10)
    ]
    for product in products:
        sandbox.add_product(product)
    client = make_client(http, server, sleeper, page_limit=25)

    keys = client.fulfill(order_id="ord_big", lines=[(p.product_id, 9) for p in products])

    assert len(keys) == 90
    assert len({key.secret for key in keys}) == 90
    assert [key.product_ref for key in keys] == [p.product_id for p in products for _ in range(9)]
    pages = [c for c in sandbox.calls if c.path.endswith("/keys")]
    assert len(pages) == 4  # 25 + 25 + 25 + 15


def test_a_last_page_that_is_full_is_followed_by_an_empty_one(http, server, sandbox, sleeper):
    client = make_client(http, server, sleeper, page_limit=3)

    keys = client.fulfill(order_id="ord_1", lines=[(CSS, 6)])

    assert len(keys) == 6
    assert len([c for c in sandbox.calls if c.path.endswith("/keys")]) == 3  # 3 + 3 + 0


def test_keys_that_arrive_after_a_delay_are_waited_for(http, server, sandbox, sleeper):
    sandbox.key_delay = 10.0
    client = make_client(http, server, sleeper, key_wait=30.0, poll_interval=4.0)

    keys = client.fulfill(order_id="ord_1", lines=[(CSS, 2), (STARDEW, 2)])

    assert len(keys) == 4
    # Keys arrive at 2.5 s, 5 s, 7.5 s and 10 s after the order: three polls of 4 s.
    assert sleeper.pauses == [4.0, 4.0, 4.0]


def test_keys_still_missing_after_key_wait_are_retryable_and_found_later(
    http, server, sandbox, sleeper, clock
):
    sandbox.key_delay = 60.0
    client = make_client(http, server, sleeper, key_wait=5.0, poll_interval=2.0)

    with pytest.raises(KeysPending, match="keys not yet delivered") as caught:
        client.fulfill(order_id="ord_1", lines=[(CSS, 3)])
    assert caught.value.kind == "KeysPending"
    assert caught.value.retryable
    assert not caught.value.preorder
    assert caught.value.release_at is None
    assert caught.value.supplier_orders == (sandbox.orders[0]["orderId"],)
    assert sleeper.pauses == [2.0, 2.0, 1.0]

    clock.advance(timedelta(minutes=1))
    keys = client.fulfill(order_id="ord_1", lines=[(CSS, 3)])

    assert len(keys) == 3
    assert posts(sandbox) == ["ord_1"]


def test_image_keys_are_decoded_to_png_bytes(client):
    (key,) = client.fulfill(order_id="ord_1", lines=[(HOLLOW, 1)])

    assert key.content_type == "image/png"
    png = key.secret
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    length, kind = struct.unpack(">I4s", png[8:16])
    assert (length, kind) == (13, b"IHDR")
    assert struct.unpack(">II", png[16:24]) == (1, 1)
    idat = png.index(b"IDAT")
    (idat_length,) = struct.unpack(">I", png[idat - 4 : idat])
    assert len(zlib.decompress(png[idat + 4 : idat + 4 + idat_length])) == 4  # filter + RGB
    assert png.endswith(b"IEND\xaeB`\x82")


@pytest.mark.parametrize("mode", ["503", "500", "429", "timeout"])
def test_an_outage_of_three_calls_is_retryable_then_succeeds(client, sandbox, mode):
    sandbox.outage(3, mode)

    for _ in range(3):
        with pytest.raises(SupplierUnavailable) as caught:
            client.fulfill(order_id="ord_1", lines=[(CSS, 1)])
        assert caught.value.retryable
        assert API_KEY not in str(caught.value)

    assert len(client.fulfill(order_id="ord_1", lines=[(CSS, 1)])) == 1
    assert len(sandbox.orders) == 1


def test_order_failed_is_retryable_and_the_retry_buys_once(client, sandbox):
    sandbox.outage(1, "order_failed", method="POST")

    with pytest.raises(SupplierUnavailable) as caught:
        client.fulfill(order_id="ord_1", lines=[(CSS, 1)])

    assert caught.value.kind == "OrderFailed"
    assert caught.value.status == 422
    assert len(client.fulfill(order_id="ord_1", lines=[(CSS, 1)])) == 1
    assert len(sandbox.orders) == 1


def test_resource_lock_is_retryable(client, sandbox):
    sandbox.outage(1, "resource_lock", method="POST")

    with pytest.raises(SupplierUnavailable) as caught:
        client.fulfill(order_id="ord_1", lines=[(CSS, 1)])

    assert caught.value.kind == "ResourceLock"
    assert caught.value.status == 409
    assert len(client.fulfill(order_id="ord_1", lines=[(CSS, 1)])) == 1


def test_insufficient_balance_needs_an_admin(client, sandbox):
    sandbox.balance = Decimal("5.00")

    with pytest.raises(SupplierError) as caught:
        client.fulfill(order_id="ord_1", lines=[(STARDEW, 1)])

    assert type(caught.value) is SupplierError
    assert not caught.value.retryable
    assert caught.value.kind == "InsufficientBalance"
    assert sandbox.orders == []


def test_a_quantity_short_of_the_order_is_unavailable_and_buys_nothing(client, sandbox):
    sandbox.add_product(
        KinguinProduct(product_id="rare", kinguin_id=7, name="Rare", price=Decimal(1), stock=1)
    )

    with pytest.raises(ProductUnavailable, match="1 in stock, 2 ordered") as caught:
        client.fulfill(order_id="ord_1", lines=[(CSS, 1), ("rare", 2)])

    assert caught.value.kind == "ProductUnavailable"
    assert not caught.value.retryable
    assert posts(sandbox) == []


def test_an_out_of_stock_lookup_404_is_unavailable_not_an_http_error(client, sandbox):
    sandbox.set_stock(STARDEW, 0)

    with pytest.raises(ProductUnavailable, match="not found or out of stock") as caught:
        client.fulfill(order_id="ord_1", lines=[(STARDEW, 1)])

    assert caught.value.kind == "ProductUnavailable"
    assert caught.value.status == 404
    assert posts(sandbox) == []
    assert sandbox.balance == Decimal("500.00")


def test_an_unknown_product_is_unavailable(client, sandbox):
    with pytest.raises(ProductUnavailable) as caught:
        client.fulfill(order_id="ord_1", lines=[("no-such-product", 1)])

    assert caught.value.status == 404
    assert not caught.value.retryable
    assert posts(sandbox) == []


def test_stock_sold_between_lookup_and_purchase_is_unavailable(client, sandbox):
    original = sandbox.handle

    def sell_out_before_the_post(request: SandboxRequest) -> SandboxResponse:
        if request.method == "POST":
            sandbox.set_stock(CSS, 0)
        return original(request)

    sandbox.handle = sell_out_before_the_post  # type: ignore[method-assign]

    with pytest.raises(ProductUnavailable) as caught:
        client.fulfill(order_id="ord_1", lines=[(CSS, 1)])

    assert caught.value.status == 400
    assert sandbox.orders == []


class LaggingSearch:
    """Kinguin in front of ``sandbox``, whose order search misses the first ``misses``
    orders placed (a search index that lags behind, or an answer lost on the way)."""

    def __init__(self, sandbox: KinguinSandbox, misses: int) -> None:
        self.sandbox = sandbox
        self.misses = misses

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if (
            request.path == "/v1/order"
            and request.query.get("orderExternalId") == "ord_1"
            and self.misses
        ):
            self.misses -= 1
            return SandboxResponse(status=200, body=b'{"results":[],"item_count":0}')
        return self.sandbox.handle(request)


def test_a_refused_repeat_external_id_adopts_the_order_kinguin_holds(http, sandbox, sleeper):
    with SandboxServer(sandbox) as direct:
        first = make_client(http, direct, sleeper).fulfill(order_id="ord_1", lines=[(CSS, 2)])
    with SandboxServer(LaggingSearch(sandbox, misses=1)) as lagging:
        again = make_client(http, lagging, sleeper).fulfill(order_id="ord_1", lines=[(CSS, 2)])

    assert [k.secret for k in again] == [k.secret for k in first]
    assert [c.status for c in sandbox.calls if c.method == "POST"] == [201, 422]
    assert len(sandbox.orders) == 1
    assert sandbox.balance == Decimal("500.00") - Decimal("7.58")


def test_a_refusal_with_no_order_to_adopt_is_not_hidden(http, sandbox, sleeper):
    with SandboxServer(sandbox) as direct:
        make_client(http, direct, sleeper).fulfill(order_id="ord_1", lines=[(CSS, 1)])
    with SandboxServer(LaggingSearch(sandbox, misses=2)) as lagging:
        client = make_client(http, lagging, sleeper)
        with pytest.raises(SupplierError) as caught:
            client.fulfill(order_id="ord_1", lines=[(CSS, 1)])

    assert caught.value.kind == "ConstraintViolation"
    assert caught.value.status == 422
    assert not caught.value.retryable


def test_an_adopted_order_holding_other_products_needs_an_admin(http, sandbox, sleeper):
    with SandboxServer(sandbox) as direct:
        make_client(http, direct, sleeper).fulfill(order_id="ord_1", lines=[(CSS, 1)])
    with SandboxServer(LaggingSearch(sandbox, misses=1)) as lagging:
        client = make_client(http, lagging, sleeper)
        with pytest.raises(SupplierError, match="other products"):
            client.fulfill(order_id="ord_1", lines=[(STARDEW, 1)])
    assert len(sandbox.orders) == 1


def test_a_canceled_kinguin_order_is_never_bought_again(client, sandbox):
    client.fulfill(order_id="ord_1", lines=[(CSS, 1)])
    (order,) = sandbox.orders
    sandbox.cancel(order["orderId"], "refunded")

    with pytest.raises(SupplierOrderCanceled, match="is refunded") as caught:
        client.fulfill(order_id="ord_1", lines=[(CSS, 1)])

    assert caught.value.kind == "refunded"
    assert not caught.value.retryable
    assert posts(sandbox) == ["ord_1"]


def preorder(sandbox: KinguinSandbox, clock: SettableClock, product_id: str = "pre") -> None:
    sandbox.add_product(
        KinguinProduct(
            product_id=product_id,
            kinguin_id=len(product_id),
            name=f"Soon {product_id}",
            price=Decimal(2),
            release_at=clock.now() + timedelta(days=30),
        )
    )


def test_a_pre_order_is_ordered_on_its_own_and_waited_for_until_its_release(client, sandbox, clock):
    preorder(sandbox, clock)

    with pytest.raises(KeysPending) as caught:
        client.fulfill(order_id="ord_1", lines=[(CSS, 1), ("pre", 2)])

    assert caught.value.preorder
    assert caught.value.retryable
    assert caught.value.release_at == (clock.now() + timedelta(days=30)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )  # Kinguin gives the release's date only
    assert sorted(caught.value.supplier_orders) == sorted(o["orderId"] for o in sandbox.orders)
    assert sorted(posts(sandbox)) == ["ord_1", "ord_1-pre"]
    bodies = sorted(
        json.loads(c.body)["products"][0]["productId"] for c in sandbox.calls if c.method == "POST"
    )
    assert bodies == [CSS, "pre"]
    assert all(
        len(json.loads(c.body)["products"]) == 1 for c in sandbox.calls if c.method == "POST"
    )

    clock.advance(timedelta(days=30))
    keys = client.fulfill(order_id="ord_1", lines=[(CSS, 1), ("pre", 2)])

    assert [key.product_ref for key in keys] == [CSS, "pre", "pre"]
    assert len(sandbox.orders) == 2


def test_two_pre_orders_are_two_requests(client, sandbox, clock):
    preorder(sandbox, clock, "pre-a")
    preorder(sandbox, clock, "pre-b")

    with pytest.raises(KeysPending):
        client.fulfill(order_id="ord_1", lines=[("pre-a", 1), ("pre-b", 1)])

    assert sorted(posts(sandbox)) == ["ord_1-pre-a", "ord_1-pre-b"]


def test_a_pre_order_found_on_retry_still_waits_as_a_pre_order(client, sandbox, clock):
    preorder(sandbox, clock)
    with pytest.raises(KeysPending):
        client.fulfill(order_id="ord_1", lines=[("pre", 1)])

    with pytest.raises(KeysPending) as caught:
        client.fulfill(order_id="ord_1", lines=[("pre", 1)])

    assert caught.value.preorder
    assert posts(sandbox) == ["ord_1-pre"]


def test_a_part_placed_earlier_is_kept_and_only_the_rest_is_bought(client, sandbox, clock):
    preorder(sandbox, clock)
    original, placed = sandbox.handle, []

    def fail_the_second_purchase(request: SandboxRequest) -> SandboxResponse:
        if request.method == "POST":
            placed.append(request)
            if len(placed) == 2:
                return SandboxResponse(status=503, body=b"{}")
        return original(request)

    sandbox.handle = fail_the_second_purchase  # type: ignore[method-assign]
    with pytest.raises(SupplierUnavailable):
        client.fulfill(order_id="ord_1", lines=[(CSS, 1), ("pre", 1)])
    assert posts(sandbox) == ["ord_1"]
    clock.advance(timedelta(days=30))  # released: no longer a pre-order

    keys = client.fulfill(order_id="ord_1", lines=[(CSS, 1), ("pre", 1)])

    # The shared id holds the first part: the rest goes under the next one.
    assert [key.product_ref for key in keys] == [CSS, "pre"]
    assert posts(sandbox) == ["ord_1", "ord_1-part2"]
    assert len(sandbox.orders) == 2


def ordered(sandbox: KinguinSandbox) -> list[tuple[str | None, dict[str, int]]]:
    """Each purchase Kinguin took: its external id and its products' quantities."""
    return [
        (c.order_external_id, {p["productId"]: p["qty"] for p in json.loads(c.body)["products"]})
        for c in sandbox.calls
        if c.method == "POST" and c.status == 201
    ]


def test_a_line_over_nine_units_is_bought_in_requests_of_nine(client, sandbox):
    keys = client.fulfill(order_id="ord_1", lines=[(CSS, 20), (STARDEW, 3)])

    assert ordered(sandbox) == [
        ("ord_1", {CSS: 9, STARDEW: 3}),
        ("ord_1-part2", {CSS: 9}),
        ("ord_1-part3", {CSS: 2}),
    ]
    assert [key.product_ref for key in keys] == [CSS] * 20 + [STARDEW] * 3
    assert len({key.secret for key in keys}) == 23


def test_ninety_units_of_one_product_are_ten_requests(client, sandbox):
    keys = client.fulfill(order_id="ord_1", lines=[(CSS, 90)])

    assert [qty for _, products in ordered(sandbox) for qty in products.values()] == [9] * 10
    assert [external_id for external_id, _ in ordered(sandbox)][-1] == "ord_1-part10"
    assert len(keys) == 90


def test_a_split_purchase_whose_answer_was_lost_is_never_placed_twice(client, sandbox):
    # The second request is placed, then answered too late: the retry finds it.
    original, posted = sandbox.handle, []

    def lose_the_second_answer(request: SandboxRequest) -> SandboxResponse:
        response = original(request)
        if request.method == "POST":
            posted.append(request)
            if len(posted) == 2:
                return SandboxResponse(status=504, body=b"{}")
        return response

    sandbox.handle = lose_the_second_answer  # type: ignore[method-assign]
    with pytest.raises(SupplierUnavailable):
        client.fulfill(order_id="ord_1", lines=[(CSS, 12)])

    keys = client.fulfill(order_id="ord_1", lines=[(CSS, 12)])

    assert len(keys) == 12
    assert sorted(o["orderExternalId"] for o in sandbox.orders) == ["ord_1", "ord_1-part2"]
    assert len(posted) == 2


def test_a_pre_order_over_nine_units_is_split_each_part_alone(client, sandbox, clock):
    preorder(sandbox, clock)

    with pytest.raises(KeysPending) as caught:
        client.fulfill(order_id="ord_1", lines=[("pre", 11)])

    assert caught.value.preorder
    assert ordered(sandbox) == [("ord_1-pre", {"pre": 9}), ("ord_1-pre-part2", {"pre": 2})]


def test_the_sandbox_refuses_what_kinguin_refuses_in_one_request(http, server):
    def post(products: list[dict[str, object]]) -> httpx.Response:
        return http.post(
            f"{server.url}/v2/order", json={"products": products}, headers={"X-Api-Key": API_KEY}
        )

    ten = post([{"productId": CSS, "qty": 10}])
    twice = post([{"productId": CSS, "qty": 1}, {"productId": CSS, "qty": 1}])

    assert (ten.status_code, ten.json()["kind"]) == (400, "ConstraintViolation")
    assert (twice.status_code, twice.json()["kind"]) == (400, "ConstraintViolation")
    assert "twice" in twice.json()["detail"]


def test_line_wrapped_image_keys_are_decoded_and_the_raw_serial_kept(client, sandbox):
    sandbox.wrap_image_keys = True

    (key,) = client.fulfill(order_id="ord_1", lines=[(HOLLOW, 1)])

    assert key.raw is not None
    assert "\r\n" in key.raw
    assert key.secret == base64.b64decode(key.raw)
    assert key.secret.startswith(b"\x89PNG\r\n\x1a\n")


def test_a_wrong_api_key_is_an_authorization_error_without_the_key(http, server, sleeper):
    wrong_key = "kg-wrong-key-fedcba9876543210"
    client = KinguinClient(http, api_key=wrong_key, base_url=server.url, sleep=sleeper)

    with pytest.raises(SupplierError) as caught:
        client.fulfill(order_id="ord_1", lines=[(CSS, 1)])

    assert type(caught.value) is SupplierError
    assert caught.value.kind == "Authorization"
    assert caught.value.status == 401
    assert "Invalid authentication data." in str(caught.value)
    assert wrong_key not in str(caught.value)
    assert wrong_key not in repr(client)


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        ([(f"p{n}", 1) for n in range(11)], "at most 10 per order"),
        ([(CSS, 91)], "at most 90 units"),
        ([(CSS, 50), (STARDEW, 1), (CSS, 40)], "at most 90 units"),
        ([(CSS, 0)], "positive quantity"),
        ([("", 1)], "positive quantity"),
        ([], "nothing to buy"),
    ],
)
def test_lines_beyond_kinguin_limits_are_refused_before_any_call(client, sandbox, lines, match):
    with pytest.raises(SupplierError, match=match) as caught:
        client.fulfill(order_id="ord_1", lines=lines)

    assert not caught.value.retryable
    assert sandbox.calls == []


def test_a_refused_connection_is_retryable(http, sleeper):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = KinguinClient(http, api_key=API_KEY, base_url=f"http://127.0.0.1:{port}")

    with pytest.raises(SupplierUnavailable) as caught:
        client.fulfill(order_id="ord_1", lines=[(CSS, 1)])

    assert isinstance(caught.value.__cause__, httpx.ConnectError)


class FoundOrderApp:
    """A supplier that already holds an order for ``ord_1`` and serves ``keys`` for it."""

    def __init__(self, keys: list[dict[str, object]], *, status: str = "completed") -> None:
        self.keys = keys
        self.order = {
            "orderId": "K1",
            "orderExternalId": "ord_1",
            "status": status,
            "products": [{"productId": CSS, "qty": 1}],
        }

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if request.path == "/v1/order":
            body: object = {"results": [self.order], "item_count": 1}
        elif request.path == "/v2/order/K1/keys":
            body = self.keys if request.query.get("page") == "1" else []
        else:
            return SandboxResponse(status=500)
        return SandboxResponse(status=200, body=json.dumps(body).encode())


def fulfill_against(http, app) -> list:
    with SandboxServer(app) as server:
        client = KinguinClient(http, api_key=API_KEY, base_url=server.url, key_wait=0)
        return client.fulfill(order_id="ord_1", lines=[(CSS, 1)])


def key(**fields: object) -> dict[str, object]:
    return {"id": "k1", "serial": "AAAAA-BBBBB-CCCCC", "type": "text/plain", "productId": CSS} | (
        fields
    )


@pytest.mark.parametrize(
    ("bad_key", "match"),
    [
        (key(type="image/png", serial="not base64!"), "not valid base64"),
        (key(type="image/png", serial="QUJD\nR"), "not valid base64"),
        (key(type="application/zip"), "unknown type"),
        (key(serial=""), "no productId or serial"),
        (key(productId=None), "no productId or serial"),
    ],
)
def test_a_bad_key_is_not_retryable_and_never_quoted(http, bad_key, match):
    with pytest.raises(SupplierError, match=match) as caught:
        fulfill_against(http, FoundOrderApp([bad_key]))

    assert caught.value.kind == "BadKey"
    assert not caught.value.retryable
    assert "not base64!" not in str(caught.value)


def test_a_canceled_order_needs_an_admin(http):
    with pytest.raises(SupplierOrderCanceled, match="is canceled") as caught:
        fulfill_against(http, FoundOrderApp([key()], status="canceled"))
    assert not caught.value.retryable


def test_a_found_order_with_other_products_needs_an_admin(http):
    app = FoundOrderApp([key()])
    app.order["products"] = [{"productId": STARDEW, "qty": 1}]

    with pytest.raises(SupplierError, match="other products"):
        fulfill_against(http, app)


def test_a_found_order_serves_its_keys(http):
    (supplied,) = fulfill_against(http, FoundOrderApp([key()]))

    assert supplied.secret == b"AAAAA-BBBBB-CCCCC"
    assert supplied.product_ref == CSS


def test_keys_go_to_items_in_key_id_order_whatever_order_kinguin_lists_them(http):
    listed = [key(id="k2", serial="SECOND"), key(id="k1", serial="FIRST")]
    for keys in (listed, list(reversed(listed))):
        app = FoundOrderApp(keys)
        app.order["products"] = [{"productId": CSS, "qty": 2}]
        with SandboxServer(app) as server:
            client = KinguinClient(http, api_key=API_KEY, base_url=server.url, key_wait=0)
            supplied = client.fulfill(order_id="ord_1", lines=[(CSS, 2)])
        assert [k.secret for k in supplied] == [b"FIRST", b"SECOND"]


def test_the_key_wait_counts_time_spent_in_requests_too(http, server, sandbox, sleeper):
    sandbox.key_delay = 600.0
    ticks = iter(range(0, 10_000, 7))  # every look at the clock: 7 s later (slow requests)
    client = make_client(
        http, server, sleeper, key_wait=20.0, poll_interval=5.0, monotonic=lambda: next(ticks)
    )
    with pytest.raises(SupplierUnavailable, match="keys not yet delivered"):
        client.fulfill(order_id="ord_1", lines=[(CSS, 1)])
    # The pauses alone (5 s each) would have allowed four; the clock says 20 s are up.
    assert len(sleeper.pauses) < 4


@pytest.mark.parametrize(
    ("serial", "decoded"),
    [
        ("QUJD\nREVG", b"ABCDEF"),
        ("QUJD\r\nREVG\r\n", b"ABCDEF"),
        ("  QUJDRA ", b"ABCD"),  # padding left out
        ("QUJDRA==", b"ABCD"),
    ],
)
def test_image_serials_are_decoded_tolerantly(serial, decoded):
    assert decode_image_serial(serial) == decoded
