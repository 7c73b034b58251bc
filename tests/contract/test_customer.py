"""The customer API of http-api.md, over real HTTP, against both servers."""

from __future__ import annotations

import itertools
import json
import re
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from flow import (
    GIFT_CARD,
    HOLLOW_KNIGHT,
    SOLD_OUT,
    STARDEW,
    advance,
    assert_error,
    bearer,
    buy,
    create_order,
    get_order,
    key_path,
    open_payment,
    order_body,
    pay,
    reveal,
    snapshot,
    sse_events,
    wait_for,
)

from support.servers import RunningServer

DECIMAL = re.compile(r"^\d+\.\d{2}$")
ORDER_KEYS = {
    "id",
    "status",
    "email",
    "currency",
    "total",
    "items",
    "payment",
    "flags",
    "created_at",
    "updated_at",
}
ITEM_KEYS = {"id", "product_id", "name", "quantity", "unit_price", "delivered"}
PAYMENT_KEYS = {
    "id",
    "status",
    "provider_status",
    "pay_address",
    "pay_amount",
    "pay_currency",
    "actually_paid",
}


@pytest.fixture
def server(shared_server: RunningServer) -> RunningServer:
    """One shop per server kind for this module: each test works on orders of its own."""
    return shared_server


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0), text
    return moment


def check_order_shape(order: dict) -> None:
    assert set(order) >= ORDER_KEYS, set(order)
    assert isinstance(order["id"], str)
    assert order["status"] in {
        "created",
        "waiting",
        "confirming",
        "paid",
        "fulfilled",
        "expired",
        "failed",
        "underpaid",
    }
    assert DECIMAL.match(order["total"]), order["total"]
    assert isinstance(order["flags"], list)
    parse_time(order["created_at"])
    parse_time(order["updated_at"])
    for item in order["items"]:
        assert set(item) >= ITEM_KEYS, set(item)
        assert DECIMAL.match(item["unit_price"]), item
        assert isinstance(item["quantity"], int)
        assert isinstance(item["delivered"], bool)
    if order["payment"] is not None:
        assert set(order["payment"]) >= PAYMENT_KEYS, set(order["payment"])
        for amount in ("pay_amount", "actually_paid"):
            value = order["payment"][amount]
            assert value is None or isinstance(value, str), (amount, value)


# --- products -------------------------------------------------------------------------------


def test_products_list_the_catalogue(server: RunningServer) -> None:
    response = server.http.get("/api/products")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    products = response.json()
    assert isinstance(products, list)
    assert products
    for product in products:
        assert set(product) == {"id", "name", "price", "currency", "source", "available"}
        assert isinstance(product["price"], str)
        assert DECIMAL.match(product["price"]), product
        Decimal(product["price"])
        assert product["source"] in {"kinguin", "custom"}
        assert isinstance(product["available"], bool)
    by_id = {p["id"]: p for p in products}
    assert by_id[STARDEW]["source"] == "kinguin"
    assert by_id[STARDEW]["available"] is True
    assert by_id[GIFT_CARD]["source"] == "custom"
    assert by_id[GIFT_CARD]["available"] is True
    assert by_id[SOLD_OUT]["available"] is False


# --- orders ---------------------------------------------------------------------------------


def test_create_order_answers_201_with_the_order_and_an_access_token(
    server: RunningServer,
) -> None:
    response = server.http.post("/api/orders", json=order_body(STARDEW, 2))
    assert response.status_code == 201
    order = response.json()
    check_order_shape(order)
    assert order["status"] == "created"
    assert order["email"] == "buyer@example.com"
    assert order["total"] == "23.98"
    assert order["payment"] is None
    assert order["flags"] == []
    assert [(i["product_id"], i["quantity"], i["unit_price"]) for i in order["items"]] == [
        (STARDEW, 2, "11.99")
    ]
    assert isinstance(order["access_token"], str)
    assert len(order["access_token"]) >= 32
    # The token is only in the response that created the order.
    assert "access_token" not in get_order(server, order)


def test_same_idempotency_key_and_body_replays_the_order(server: RunningServer) -> None:
    headers = {"idempotency-key": "checkout-attempt-0001"}
    before = {o[0] for o in snapshot(server)}
    first = server.http.post("/api/orders", json=order_body(GIFT_CARD, 2), headers=headers)
    again = server.http.post("/api/orders", json=order_body(GIFT_CARD, 2), headers=headers)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.json()["access_token"] == first.json()["access_token"]
    # The replayed token reads the order.
    assert get_order(server, again.json())["id"] == first.json()["id"]
    # One order, not two.
    assert {o[0] for o in snapshot(server)} - before == {first.json()["id"]}


def test_a_replay_shows_the_orders_payment(server: RunningServer) -> None:
    headers = {"idempotency-key": "checkout-attempt-0003"}
    first = server.http.post("/api/orders", json=order_body(GIFT_CARD), headers=headers).json()
    payment = open_payment(server, first)
    again = server.http.post("/api/orders", json=order_body(GIFT_CARD), headers=headers)
    assert again.status_code == 200
    assert again.json()["payment"] == payment
    assert again.json()["status"] == "waiting"


def test_same_idempotency_key_with_another_body_conflicts(server: RunningServer) -> None:
    headers = {"idempotency-key": "checkout-attempt-0002"}
    first = server.http.post("/api/orders", json=order_body(GIFT_CARD, 1), headers=headers)
    assert first.status_code == 201
    before = snapshot(server)
    other = server.http.post("/api/orders", json=order_body(GIFT_CARD, 3), headers=headers)
    assert_error(other, 409, "idempotency_conflict")
    other_product = server.http.post("/api/orders", json=order_body(STARDEW, 1), headers=headers)
    assert_error(other_product, 409, "idempotency_conflict")
    assert snapshot(server) == before


def test_different_idempotency_keys_make_different_orders(server: RunningServer) -> None:
    a = create_order(server, key="checkout-key-a-0001")
    b = create_order(server, key="checkout-key-b-0001")
    assert a["id"] != b["id"]
    assert a["access_token"] != b["access_token"]


def test_get_order_with_bearer_token_or_query_token(server: RunningServer) -> None:
    order = create_order(server)
    by_header = server.http.get(f"/api/orders/{order['id']}", headers=bearer(order["access_token"]))
    by_query = server.http.get(
        f"/api/orders/{order['id']}", params={"token": order["access_token"]}
    )
    assert by_header.status_code == 200
    assert by_query.status_code == 200
    assert by_header.json() == by_query.json()
    check_order_shape(by_header.json())
    expected = {k: v for k, v in order.items() if k != "access_token"}
    assert {k: by_header.json()[k] for k in expected} == expected


def test_order_without_or_with_a_wrong_token_is_not_found(server: RunningServer) -> None:
    # The service answers an unknown order and a wrong token alike (404 not_found), so
    # order ids cannot be probed.
    order = create_order(server)
    other = create_order(server)
    path = f"/api/orders/{order['id']}"
    assert_error(server.http.get(path), 404, "not_found")
    assert_error(server.http.get(path, params={"token": "wrong"}), 404, "not_found")
    assert_error(server.http.get(path, headers=bearer("wrong")), 404, "not_found")
    assert_error(server.http.get(path, headers=bearer(other["access_token"])), 404, "not_found")
    assert_error(server.http.get(path, headers={"authorization": "Basic abc"}), 404, "not_found")
    unknown = server.http.get("/api/orders/no-such-order", headers=bearer(order["access_token"]))
    assert_error(unknown, 404, "not_found")
    for sub in ("payment", "items/x/reveal"):
        assert_error(server.http.post(f"{path}/{sub}"), 404, "not_found")
        assert_error(server.http.post(f"{path}/{sub}", headers=bearer("wrong")), 404, "not_found")
    assert_error(server.http.get(f"{path}/events"), 404, "not_found")
    assert_error(server.http.get(f"{path}/events", params={"token": "x"}), 404, "not_found")
    # Nothing was opened by the refused calls.
    assert get_order(server, order)["payment"] is None


# --- payment --------------------------------------------------------------------------------


def test_open_payment_201_then_200_with_the_same_payment(server: RunningServer) -> None:
    order = create_order(server)
    first = server.http.post(
        f"/api/orders/{order['id']}/payment", headers=bearer(order["access_token"])
    )
    assert first.status_code == 201
    payment = first.json()["payment"]
    assert set(payment) >= PAYMENT_KEYS
    assert payment["status"] == "waiting"
    assert payment["pay_address"]
    assert Decimal(payment["pay_amount"]) > 0
    again = server.http.post(
        f"/api/orders/{order['id']}/payment", params={"token": order["access_token"]}
    )
    assert again.status_code == 200
    assert again.json()["payment"] == payment
    current = get_order(server, order)
    check_order_shape(current)
    assert current["status"] == "waiting"
    assert current["payment"]["id"] == payment["id"]


def test_payment_cannot_be_opened_for_an_expired_order(server: RunningServer) -> None:
    order = create_order(server)
    advance(server, 61 * 60)
    assert get_order(server, order)["status"] == "expired"
    response = server.http.post(
        f"/api/orders/{order['id']}/payment", headers=bearer(order["access_token"])
    )
    assert_error(response, 409, "invalid_state")


# --- Server-Sent Events ---------------------------------------------------------------------


def test_events_stream_one_status_event_per_change_until_fulfilled(
    server: RunningServer,
) -> None:
    order = create_order(server, STARDEW)
    payment = open_payment(server, order)
    url = f"/api/orders/{order['id']}/events"
    with server.http.stream("GET", url, params={"token": order["access_token"]}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.iter_lines())
        name, data = next(events)
        assert name == "status"
        first = json.loads(data)
        assert first["id"] == order["id"]
        assert first["status"] == "waiting"
        assert first["payment"]["id"] == payment["id"]
        pay(server, payment["id"])
        rest = list(events)  # the stream ends once the order can change no more
    assert all(name == "status" for name, _ in rest)
    later = [json.loads(data) for _, data in rest]
    assert later, "no event after the payment"
    statuses = [first["status"]] + [e["status"] for e in later]
    assert statuses[-1] == "fulfilled"
    assert later[-1]["items"][0]["delivered"] is True
    progress = ["waiting", "confirming", "paid", "fulfilled"]
    assert [progress.index(s) for s in statuses] == sorted(progress.index(s) for s in statuses)
    # One event per change: no two consecutive events say the same thing.
    snapshots = [{k: v for k, v in e.items() if k != "updated_at"} for e in [first, *later]]
    for before, after in itertools.pairwise(snapshots):
        assert before != after


def test_events_keep_the_stream_alive_with_comments_between_changes(
    shared_server: RunningServer,
) -> None:
    server = shared_server
    order = create_order(server, STARDEW)
    url = f"/api/orders/{order['id']}/events"
    with server.http.stream("GET", url, headers=bearer(order["access_token"])) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert [next(lines) for _ in range(2)] == ["retry: 2000", ""]
        head = [next(lines) for _ in range(3)]
        assert head[0] == "event: status"
        assert head[1].startswith("data: {")
        assert head[2] == ""
        # Nothing changes: a keep-alive comment on each poll, then more of them.
        assert [next(lines) for _ in range(4)] == [":", "", ":", ""]


def test_events_of_a_finished_order_send_one_event_and_end(server: RunningServer) -> None:
    order = buy(server, STARDEW)
    url = f"/api/orders/{order['id']}/events"
    with server.http.stream("GET", url, headers=bearer(order["access_token"])) as response:
        assert response.status_code == 200
        events = list(sse_events(response.iter_lines()))
    assert len(events) == 1
    assert events[0][0] == "status"
    assert json.loads(events[0][1])["status"] == "fulfilled"


# --- reveal and keys ------------------------------------------------------------------------


def test_reveal_only_when_delivered(server: RunningServer) -> None:
    order = create_order(server, STARDEW)
    assert_error(reveal(server, order), 409, "not_delivered")
    payment = open_payment(server, order)
    assert_error(reveal(server, order), 409, "not_delivered")
    pay(server, payment["id"])
    fulfilled = wait_for(server, order, "fulfilled")
    assert fulfilled["items"][0]["delivered"] is True
    response = reveal(server, order)
    assert response.status_code == 200
    body = response.json()
    assert {"url", "expires_at"} <= set(body)
    expires = parse_time(body["expires_at"])
    now = datetime.fromisoformat(advance(server, 0)["now"])
    assert timedelta(hours=3) - timedelta(minutes=1) < expires - now <= timedelta(hours=3)


def test_reveal_unknown_item_or_wrong_token(server: RunningServer) -> None:
    order = buy(server, STARDEW)
    unknown = server.http.post(
        f"/api/orders/{order['id']}/items/nope/reveal", headers=bearer(order["access_token"])
    )
    assert_error(unknown, 404, "not_found")
    item = order["items"][0]["id"]
    wrong = server.http.post(
        f"/api/orders/{order['id']}/items/{item}/reveal", headers=bearer("not-the-token")
    )
    assert_error(wrong, 404, "not_found")


def test_key_url_serves_a_text_key(server: RunningServer) -> None:
    order = buy(server, STARDEW)
    url = reveal(server, order).json()["url"]
    response = server.http.get(key_path(url))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["cache-control"] == "no-store"
    assert response.text.strip()
    # The same key every time the URL is used while it is valid.
    assert server.http.get(key_path(url)).content == response.content


def test_key_url_serves_an_image_key_as_png(server: RunningServer) -> None:
    order = buy(server, HOLLOW_KNIGHT)
    response = server.http.get(key_path(reveal(server, order).json()["url"]))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")


def test_pool_keys_are_served_too(server: RunningServer) -> None:
    order = buy(server, GIFT_CARD, 2)
    response = server.http.get(key_path(reveal(server, order).json()["url"]))
    assert response.status_code == 200
    assert response.text.startswith("GIFT-")


def test_every_reveal_gives_a_fresh_url_for_the_same_key(server: RunningServer) -> None:
    order = buy(server, STARDEW)
    first = reveal(server, order).json()
    advance(server, 2)
    second = reveal(server, order).json()
    assert second["url"] != first["url"]
    assert parse_time(second["expires_at"]) > parse_time(first["expires_at"])
    assert (
        server.http.get(key_path(first["url"])).content
        == server.http.get(key_path(second["url"])).content
    )
    audit = server.http.get(f"/api/admin/orders/{order['id']}", headers=server.admin).json()
    assert len(audit["reveals"]) == 2


def test_two_reveals_in_the_same_second_give_different_urls(server: RunningServer) -> None:
    order = buy(server, STARDEW)
    for _ in range(5):
        first, second = reveal(server, order).json(), reveal(server, order).json()
        if first["expires_at"][:19] == second["expires_at"][:19]:
            break
    else:
        pytest.fail("could not reveal twice within one second")
    assert second["url"] != first["url"]


def test_tampered_key_url_is_403_url_invalid(server: RunningServer) -> None:
    order = buy(server, STARDEW)
    path = key_path(reveal(server, order).json()["url"])
    token = path.removeprefix("/keys/")
    payload, mac = token.split(".")
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    for bad in (
        f"{payload}.{flipped}",
        f"{payload}x.{mac}",
        payload,
        "not-a-token",
        f"{payload}.{mac}.{mac}",
        "." * 3,
        "x" * 3000,
    ):
        assert_error(server.http.get(f"/keys/{bad}"), 403, "url_invalid")


def test_key_url_expires_after_three_hours(server: RunningServer) -> None:
    order = buy(server, STARDEW)
    path = key_path(reveal(server, order).json()["url"])
    advance(server, 2 * 3600)
    assert server.http.get(path).status_code == 200
    advance(server, 3600 + 1)
    assert_error(server.http.get(path), 403, "url_expired")
    # The holder of the access token gets a fresh one.
    fresh = key_path(reveal(server, order).json()["url"])
    assert server.http.get(fresh).status_code == 200


# --- the page -------------------------------------------------------------------------------


def test_customer_page_is_served(server: RunningServer) -> None:
    for path in ("/", "/order/some-order"):
        response = server.http.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "<html" in response.text.lower()


def test_healthz(server: RunningServer) -> None:
    response = server.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "mode": "sandbox", "sandbox": True}
