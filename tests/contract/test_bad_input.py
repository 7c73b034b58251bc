"""Bad input everywhere: a 4xx with ``{"error": {"code", "message"}}``, never a 500, and
nothing changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flow import (
    GIFT_CARD,
    assert_error,
    bearer,
    create_order,
    order_body,
    post_ipn,
    sign,
    snapshot,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.servers import RunningServer

NETWORK = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture
def unchanged(shared_server: RunningServer) -> Iterator[RunningServer]:
    """The shared server; the test fails if any order appeared or changed."""
    before = snapshot(shared_server)
    yield shared_server
    assert snapshot(shared_server) == before


def post_order(server: RunningServer, body: object, **headers: str):
    return server.http.post("/api/orders", json=body, headers=headers)


def item(**fields: Any) -> dict[str, Any]:
    return {"email": "buyer@example.com", "items": [{"product_id": GIFT_CARD} | fields]}


# --- the body -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"{",
        b"{'email': 'a@example.com'}",
        b'{"email": "a@example.com",}',
        b"nul",
        b"\xff\xfe",
        b'{"email": "\xff"}',
        b"NaN",
        b"[" * 30000 + b"]" * 30000,
        b'{"a":' * 10000 + b"1" + b"}" * 10000,
    ],
    ids=[
        "empty",
        "blank",
        "truncated",
        "single-quotes",
        "trailing-comma",
        "bare-word",
        "not-utf8",
        "not-utf8-string",
        "nan",
        "deep-array",
        "deep-object",
    ],
)
def test_malformed_json_is_400(unchanged: RunningServer, raw: bytes) -> None:
    response = unchanged.http.post(
        "/api/orders", content=raw, headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize("body", [[], [order_body()], "order", 1, 1.5, None, True])
def test_json_that_is_not_an_object_is_400(unchanged: RunningServer, body) -> None:
    assert_error(post_order(unchanged, body), 400, "invalid_json")


def test_body_over_64_kib_is_413_on_every_route_that_reads_one(unchanged: RunningServer) -> None:
    server = unchanged
    body = order_body() | {"padding": "x" * (64 * 1024)}
    assert_error(post_order(server, body), 413, "body_too_large")
    blank = b" " * (64 * 1024 + 1)
    for path in (
        "/api/orders",
        "/webhooks/nowpayments",
        "/api/admin/orders/abc/resolve",
        f"/api/admin/products/{GIFT_CARD}/keys",
        "/sandbox/payments/5800000001/pay",
        "/sandbox/clock/advance",
        "/sandbox/kinguin/outage",
    ):
        response = server.http.post(path, content=blank, headers=server.admin)
        assert_error(response, 413, "body_too_large")
    # Exactly the limit is not too large (it is just not JSON).
    exact = server.http.post("/api/orders", content=b" " * (64 * 1024 - 2) + b"[]")
    assert_error(exact, 400, "invalid_json")


def test_an_unexpected_failure_is_a_json_500_and_the_server_keeps_serving(
    shared_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> list:
        raise RuntimeError("a bug")

    monkeypatch.setattr(shared_server.shop.checkout, "list_products", broken)
    assert_error(shared_server.http.get("/api/products"), 500, "internal_error")
    monkeypatch.undo()
    assert shared_server.http.get("/api/products").status_code == 200
    metrics = shared_server.http.get("/metrics").text
    assert 'route="/api/products",status="500"' in metrics


def test_deeply_nested_but_small_json_in_a_field_is_400(unchanged: RunningServer) -> None:
    nested = "[" * 5000 + json.dumps(GIFT_CARD) + "]" * 5000
    raw = f'{{"email": "a@example.com", "items": {nested}}}'
    response = unchanged.http.post("/api/orders", content=raw.encode())
    assert response.status_code == 400
    assert_error(response, 400)


# --- fields ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"items": [{"product_id": GIFT_CARD}]}, "invalid_email"),
        (order_body() | {"email": 42}, "invalid_email"),
        (order_body() | {"email": None}, "invalid_email"),
        (order_body() | {"email": ["a@example.com"]}, "invalid_email"),
        (order_body() | {"email": ""}, "invalid_email"),
        (order_body() | {"email": "not-an-email"}, "invalid_email"),
        (order_body() | {"email": "a@b"}, "invalid_email"),
        (order_body() | {"email": "a@example.c"}, "invalid_email"),
        (order_body() | {"email": "a b@example.com"}, "invalid_email"),
        (order_body() | {"email": "a@@example.com"}, "invalid_email"),
        # One recipient only (issue: both used to reach two).
        (order_body() | {"email": "postmaster,x@evil.com"}, "invalid_email"),
        (order_body() | {"email": 'a<b>"c@x.com'}, "invalid_email"),
        (order_body() | {"email": "x" * 250 + "@example.com"}, "invalid_email"),
        ({"email": "a@example.com"}, "invalid_items"),
        ({"email": "a@example.com", "items": None}, "invalid_items"),
        ({"email": "a@example.com", "items": "gift-card-10"}, "invalid_items"),
        ({"email": "a@example.com", "items": {"product_id": GIFT_CARD}}, "invalid_items"),
        ({"email": "a@example.com", "items": []}, "invalid_items"),
        ({"email": "a@example.com", "items": ["gift-card-10"]}, "invalid_items"),
        ({"email": "a@example.com", "items": [None]}, "invalid_items"),
        ({"email": "a@example.com", "items": [{"quantity": 1}]}, "invalid_items"),
        (item(product_id=7), "invalid_items"),
        (item(product_id=None), "invalid_items"),
        (item(product_id=""), "invalid_items"),
        (item(product_id=[GIFT_CARD]), "invalid_items"),
        (item(product_id="x" * 101), "invalid_items"),
        (item(quantity="1"), "invalid_quantity"),
        (item(quantity=1.5), "invalid_quantity"),
        (item(quantity=1.0), "invalid_quantity"),
        (item(quantity=True), "invalid_quantity"),
        (item(quantity=None), "invalid_quantity"),
        (item(quantity=0), "invalid_quantity"),
        (item(quantity=-1), "invalid_quantity"),
        (item(quantity=91), "too_many_units"),
        (item(quantity=2**70), "too_many_units"),
        (item(quantity=[1]), "invalid_quantity"),
        (
            {
                "email": "a@example.com",
                "items": [{"product_id": GIFT_CARD, "quantity": 50}] * 2,
            },
            "too_many_units",
        ),
        (
            {"email": "a@example.com", "items": [{"product_id": f"p{n}"} for n in range(11)]},
            "invalid_items",
        ),
    ],
)
def test_wrong_fields_are_400(unchanged: RunningServer, body, code) -> None:
    assert_error(post_order(unchanged, body), 400, code)


@pytest.mark.parametrize("product", ["no-such-game", "GIFT-CARD-10", "gift-card-10 ", "../x"])
def test_unknown_product_is_404(unchanged: RunningServer, product) -> None:
    assert_error(post_order(unchanged, order_body(product)), 404, "unknown_product")
    mixed = {
        "email": "a@example.com",
        "items": [{"product_id": GIFT_CARD, "quantity": 1}, {"product_id": product}],
    }
    assert_error(post_order(unchanged, mixed), 404, "unknown_product")


@pytest.mark.parametrize(
    "key",
    ["k" * 256, "", "k" * 15, "tab\there-and-more-text", "x" * 5000],
    ids=["too-long", "empty", "too-short", "control-char", "huge"],
)
def test_bad_idempotency_key_is_400(unchanged: RunningServer, key) -> None:
    response = post_order(unchanged, order_body(), **{"idempotency-key": key})
    assert_error(response, 400, "invalid_idempotency_key")


def test_longest_idempotency_key_is_accepted(shared_server: RunningServer) -> None:
    order = create_order(shared_server, key="k" * 255)
    again = post_order(shared_server, order_body(), **{"idempotency-key": "k" * 255})
    assert again.status_code == 200
    assert again.json()["id"] == order["id"]


# --- tokens ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def victim(shared_server: RunningServer) -> dict:
    return create_order(shared_server, GIFT_CARD)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer"},
        {"authorization": "Bearer x"},
        {"authorization": "Token abc"},
        {"authorization": "Bearer " + "x" * 5000},
        {"authorization": b"Bearer \xff\xfe"},
        {"authorization": "Bearer é".encode()},
    ],
)
def test_bad_access_tokens_are_404(unchanged: RunningServer, victim, headers) -> None:
    order_id = victim["id"]
    item_id = victim["items"][0]["id"]
    for method, path in (
        ("GET", f"/api/orders/{order_id}"),
        ("POST", f"/api/orders/{order_id}/payment"),
        ("GET", f"/api/orders/{order_id}/events"),
        ("POST", f"/api/orders/{order_id}/items/{item_id}/reveal"),
    ):
        response = unchanged.http.request(method, path, headers=headers)
        assert_error(response, 404, "not_found")


@pytest.mark.parametrize("token", ["", "x", "é", "\x00", "x" * 5000, "%00"])
def test_bad_query_tokens_are_404(unchanged: RunningServer, victim, token) -> None:
    response = unchanged.http.get(f"/api/orders/{victim['id']}", params={"token": token})
    assert_error(response, 404, "not_found")


def test_bearer_header_is_case_insensitive(shared_server: RunningServer, victim) -> None:
    token = victim["access_token"]
    for scheme in ("Bearer", "bearer", "BEARER"):
        headers = {"authorization": f"{scheme} {token}"}
        assert shared_server.http.get(f"/api/orders/{victim['id']}", headers=headers).is_success


# --- routes and methods ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/api",
        "/api/nope",
        "/api/products/",
        "/api/products/x",
        "/api/orders/x/y/z",
        "/api/admin",
        "/keys/",
        "/static/secrets.json",
        "/static/..%2Fbitloot.db",
        "/static/nope.html",
        "/sandbox",
        "/sandbox/payments/1",
        "/webhooks/stripe",
    ],
)
def test_unknown_routes_are_404(unchanged: RunningServer, path) -> None:
    assert_error(unchanged.http.get(path), 404, "not_found")
    assert unchanged.http.post(path, json={}).status_code in {404, 405}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/orders"),
        ("PUT", "/api/orders"),
        ("DELETE", "/api/orders/abc"),
        ("PATCH", "/api/orders/abc"),
        ("POST", "/api/products"),
        ("DELETE", "/api/products"),
        ("GET", "/api/orders/abc/payment"),
        ("POST", "/api/orders/abc/events"),
        ("GET", "/api/orders/abc/items/def/reveal"),
        ("POST", "/keys/abc.def"),
        ("PUT", "/webhooks/nowpayments"),
        ("POST", "/healthz"),
        ("POST", "/metrics"),
        ("GET", "/sandbox/clock/advance"),
        ("GET", "/sandbox/payments/1/pay"),
        ("DELETE", "/api/admin/orders"),
        ("GET", "/api/admin/orders/abc/resolve"),
        ("TRACE", "/api/products"),
        ("OPTIONS", "/api/orders"),
    ],
)
def test_wrong_methods_are_405(unchanged: RunningServer, method, path) -> None:
    assert_error(unchanged.http.request(method, path), 405, "method_not_allowed")


# --- anything at all ------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
near_orders = st.fixed_dictionaries(
    {
        "email": st.one_of(
            st.emails(), st.text(max_size=40), st.integers(), st.none(), st.just("a@example.com")
        ),
        "items": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "product_id": st.one_of(
                            st.sampled_from([GIFT_CARD, "stardew-valley", "nope", ""]),
                            json_values,
                        ),
                        "quantity": st.one_of(st.integers(-3, 12), json_values),
                    }
                ),
                max_size=12,
            ),
            json_values,
        ),
    },
    optional={"extra": json_values},
)

# What an HTTP client can send as a header value: visible bytes, inner spaces and tabs.
header_values = st.binary(max_size=300).map(
    lambda raw: bytes(b for b in raw if b in (9, 32) or 0x21 <= b <= 0x7E or b >= 0x80).strip()
)


@NETWORK
@given(body=st.one_of(json_values, near_orders), key=st.none() | header_values)
def test_any_order_body_is_answered_without_a_server_error(
    shared_server: RunningServer, body, key
) -> None:
    headers = {}
    if key is not None:
        headers["idempotency-key"] = key
    response = shared_server.http.post("/api/orders", json=body, headers=headers)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_error(response, response.status_code)
    else:
        assert response.status_code in {200, 201}
        assert response.json()["status"] == "created"


@NETWORK
@given(
    raw=st.binary(max_size=2048)
    | json_values.map(lambda v: json.dumps(v).encode())
    | near_orders.map(lambda v: json.dumps(v).encode()),
    signed=st.booleans(),
    signature=st.none() | header_values,
)
def test_any_webhook_body_is_answered_without_a_server_error(
    shared_server: RunningServer, raw: bytes, signed: bool, signature: bytes | None
) -> None:
    server = shared_server
    headers = {"content-type": "application/json"}
    if signed:
        headers["x-nowpayments-sig"] = sign(server, raw)
    elif signature is not None:
        headers["x-nowpayments-sig"] = signature
    response = server.http.post("/webhooks/nowpayments", content=raw, headers=headers)
    assert response.status_code in {200, 400, 401}, response.text
    if response.status_code >= 400:
        error = assert_error(response, response.status_code)
        expected = "bad_signature" if not signed else None
        assert expected is None or error["code"] == expected


@NETWORK
@given(
    raw=st.binary(max_size=512) | json_values.map(lambda v: json.dumps(v).encode()),
    path=st.sampled_from(
        [
            "/sandbox/clock/advance",
            "/sandbox/kinguin/outage",
            "/sandbox/payments/5800000001/pay",
            "/api/admin/orders/abc/resolve",
            f"/api/admin/products/{GIFT_CARD}/keys",
        ]
    ),
)
def test_any_body_on_other_routes_is_answered_without_a_server_error(
    shared_server: RunningServer, raw: bytes, path: str
) -> None:
    response = shared_server.http.post(path, content=raw, headers=shared_server.admin)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_error(response, response.status_code)


def test_signed_webhook_garbage_changes_nothing(unchanged: RunningServer) -> None:
    for raw in (b"{}", b"[]", b'{"payment_id": 1, "payment_status": "finished"}'):
        response = post_ipn(unchanged, raw, sign(unchanged, raw))
        assert response.status_code == 400
        assert_error(response, 400)


def test_order_with_a_token_of_another_order_is_not_readable(
    shared_server: RunningServer, victim
) -> None:
    other = create_order(shared_server, GIFT_CARD)
    response = shared_server.http.get(
        f"/api/orders/{victim['id']}", headers=bearer(other["access_token"])
    )
    assert_error(response, 404, "not_found")


def test_a_signed_webhook_with_a_lone_surrogate_is_400_and_logged(
    unchanged: RunningServer,
) -> None:
    body = b'{"payment_id":5800567260,"payment_status":"finished","order_id":"\\ud800"}'
    count = "SELECT count(*) AS n FROM webhooks"
    before = unchanged.rows(count)[0]["n"]
    answer = post_ipn(unchanged, body, sign(unchanged, body))
    assert_error(answer, 400, "malformed_webhook")
    assert unchanged.rows(count)[0]["n"] == before + 1
