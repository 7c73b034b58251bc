"""What each server does before and around ``ShopApi``: the body limit (refused unread,
chunked uploads cut off), lone surrogates in JSON, and requests that must not wait for
threads held by others (event streams, slow writes, sandbox payments posting IPNs back).

Some requests here are written by hand on a socket: an HTTP client would not send a
``Content-Length`` it does not honour, nor a chunked body that never ends.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from flow import (
    GIFT_CARD,
    STARDEW,
    assert_error,
    bearer,
    create_order,
    open_payment,
    send_ipn,
    snapshot,
)

from bitloot_adapters.http_api import MAX_BODY_BYTES, ROUTES
from bitloot_adapters.rate_limits import MAX_STREAMS_PER_ORDER
from support.servers import RunningServer, load_example

WRITER_THREADS: int = load_example("fastapi_server").WRITER_THREADS
LIMIT = MAX_BODY_BYTES
# How long a raw request may take to be answered; far above what any answer here needs.
ANSWER_SECONDS = 5.0


@pytest.fixture
def unchanged(shared_server: RunningServer) -> Iterator[RunningServer]:
    """The shared server; the test fails if any order appeared or changed."""
    before = snapshot(shared_server)
    yield shared_server
    assert snapshot(shared_server) == before


def every_route() -> list[tuple[str, str]]:
    """Each route of the API as (method, path), its parameters filled in."""
    return [(r.method, re.sub(r"\{\w+\}", "abc", r.name)) for r in ROUTES]


# --- raw HTTP -------------------------------------------------------------------------------


def raw_exchange(
    server: RunningServer, head: str, parts: Iterable[bytes] = ()
) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` (request line and headers) and then ``parts`` on a fresh connection,
    and read the answer; it must come within ``ANSWER_SECONDS`` whatever is left unsent."""
    url = httpx.URL(server.url)
    assert url.host
    assert url.port
    with socket.create_connection((url.host, url.port), timeout=ANSWER_SECONDS) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        for part in parts:
            sock.sendall(part)
        received = b""
        deadline = time.monotonic() + ANSWER_SECONDS
        while b"\r\n\r\n" not in received or len(received) < _answer_length(received):
            assert time.monotonic() < deadline, received[:200]
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head_bytes, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body[: int(headers.get("content-length", "0"))]


def _answer_length(received: bytes) -> int:
    head, _, _ = received.partition(b"\r\n\r\n")
    found = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return len(head) + 4 + (int(found.group(1)) if found else 0)


def assert_raw_error(answer: tuple[int, dict[str, str], bytes], status: int, code: str) -> None:
    got, headers, body = answer
    assert got == status, (got, body[:200])
    assert headers["content-type"].startswith("application/json"), headers
    assert json.loads(body)["error"]["code"] == code, body


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


# --- the body limit -------------------------------------------------------------------------


def test_every_route_refuses_a_body_over_the_limit(unchanged: RunningServer) -> None:
    server = unchanged
    blank = b" " * (LIMIT + 1)
    for method, path in every_route():
        response = server.http.request(method, path, content=blank, headers=server.admin)
        assert_error(response, 413, "body_too_large")
    # The server goes on serving (on a new connection: the refused one was closed).
    assert server.http.get("/healthz").status_code == 200


def test_a_body_at_the_limit_is_read(unchanged: RunningServer) -> None:
    server = unchanged
    exact = b" " * (LIMIT - 2) + b"{}"
    assert server.http.request("GET", "/healthz", content=exact).status_code == 200
    assert_error(server.http.post("/api/orders", content=exact), 400, "invalid_email")


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(
    unchanged: RunningServer,
) -> None:
    # 300 MB announced, one byte sent: the answer must not wait for the rest.
    for method, path in [("POST", "/api/orders"), ("GET", "/healthz")]:
        head = (
            f"{method} {path} HTTP/1.1\nHost: shop\nContent-Type: application/json\n"
            f"Content-Length: {300 * 1024 * 1024}\n"
        )
        assert_raw_error(raw_exchange(unchanged, head, [b"{"]), 413, "body_too_large")


def test_a_chunked_upload_is_cut_off_at_the_limit(unchanged: RunningServer) -> None:
    # Chunks past the limit and no last chunk: the answer must not wait for the end.
    head = "POST /api/orders HTTP/1.1\nHost: shop\nTransfer-Encoding: chunked\n"
    parts = [chunk(b" " * 8192) for _ in range(LIMIT // 8192)] + [chunk(b" " * 100)]
    assert_raw_error(raw_exchange(unchanged, head, parts), 413, "body_too_large")


@pytest.mark.parametrize(("method", "path"), [("POST", "/sandbox/payments/abc/fail")])
def test_a_complete_chunked_upload_over_the_limit_is_refused_by_a_route_that_ignores_it(
    unchanged: RunningServer, method: str, path: str
) -> None:
    def body() -> Iterator[bytes]:  # no length known: httpx sends it chunked
        for _ in range(LIMIT // 4096 + 1):
            yield b" " * 4096

    response = unchanged.http.request(method, path, content=body())
    assert_error(response, 413, "body_too_large")
    head = f"{method} {path} HTTP/1.1\nHost: shop\nTransfer-Encoding: chunked\n"
    parts = [chunk(b" " * (LIMIT + 1)), b"0\r\n\r\n"]
    assert_raw_error(raw_exchange(unchanged, head, parts), 413, "body_too_large")


def test_a_chunked_upload_within_the_limit_is_read(shared_server: RunningServer) -> None:
    data = json.dumps({"email": "chunked@example.com", "items": [{"product_id": GIFT_CARD}]})

    def body() -> Iterator[bytes]:
        yield data[:10].encode()
        yield data[10:].encode()

    response = shared_server.http.post("/api/orders", content=body())
    assert response.status_code == 201, response.text
    assert response.json()["email"] == "chunked@example.com"

    def exact() -> Iterator[bytes]:
        yield b" " * (LIMIT - 2)
        yield b"{}"

    assert_error(shared_server.http.post("/api/orders", content=exact()), 400, "invalid_email")


# --- lone surrogates ------------------------------------------------------------------------

ORDER_ITEMS = f'[{{"product_id": "{GIFT_CARD}"}}]'


@pytest.mark.parametrize(
    "raw",
    [
        '{"email": "\\ud800@x.io", "items": ' + ORDER_ITEMS + "}",
        '{"email": "a@x.io", "items": [{"product_id": "\\udc00"}]}',
        '{"email": "a@x.io", "items": ' + ORDER_ITEMS + ', "\\ud83d": 1}',
        '{"email": "a@x.io", "items": ' + ORDER_ITEMS + ', "note": ["\\udfff"]}',
    ],
)
def test_a_lone_surrogate_in_an_order_is_invalid_json(unchanged: RunningServer, raw: str) -> None:
    response = unchanged.http.post(
        "/api/orders", content=raw.encode(), headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")


def test_a_lone_surrogate_in_admin_bodies_is_invalid_json(unchanged: RunningServer) -> None:
    server = unchanged
    keys = server.http.post(
        f"/api/admin/products/{GIFT_CARD}/keys",
        content=b'{"keys": ["GOOD-KEY", "BAD-\\ud800-KEY"]}',
        headers=server.admin,
    )
    assert_error(keys, 400, "invalid_json")
    resolve = server.http.post(
        "/api/admin/orders/abc/resolve",
        content=b'{"action": "refund", "note": "\\udbff"}',
        headers=server.admin,
    )
    assert_error(resolve, 400, "invalid_json")
    pay = server.http.post("/sandbox/payments/abc/pay", content=b'{"amount": "\\ud800"}')
    assert_error(pay, 400, "invalid_json")


def test_a_surrogate_pair_is_text(shared_server: RunningServer) -> None:
    raw = '{"email": "pair@example.com", "items": ' + ORDER_ITEMS + ', "x": "\\ud83d\\ude00"}'
    response = shared_server.http.post(
        "/api/orders", content=raw.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 201, response.text


# --- nothing waits for threads held by others -----------------------------------------------

PAYS = 8
STREAMS = 100


def test_concurrent_sandbox_payments_all_get_their_ipns_answered(server: RunningServer) -> None:
    # Each sandbox payment posts its IPNs back to this server and waits for the answers.
    orders = [create_order(server, GIFT_CARD) for _ in range(PAYS)]
    payments = [open_payment(server, order) for order in orders]

    def pay(payment_id: str) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            return http.post(f"/sandbox/payments/{payment_id}/pay", json={})

    started = time.monotonic()
    with ThreadPoolExecutor(PAYS) as pool:
        responses = list(pool.map(pay, [p["id"] for p in payments]))
    elapsed = time.monotonic() - started
    for response in responses:
        assert response.status_code == 200, response.text
        assert [ipn["answered"] for ipn in response.json()["ipns"]] == [200] * 5
    # Far less than the sandbox's IPN timeout (5 s): none of them waited for a thread.
    assert elapsed < 4, elapsed


def test_an_ipn_is_answered_while_writes_wait_on_a_slow_provider(server: RunningServer) -> None:
    assert server.shop.sandbox is not None
    sandbox = server.shop.sandbox.payments
    waiting = create_order(server, GIFT_CARD)
    payment = open_payment(server, waiting)
    # Opening a payment now takes NOWPayments 2 s; as many openings as the FastAPI server
    # has threads for writes.
    slow = [create_order(server, GIFT_CARD) for _ in range(WRITER_THREADS)]
    sandbox._stall_seconds = 2.0
    sandbox.outage(len(slow), "slow", method="POST", path="/v1/payment")
    created_before = len(sandbox.payment_ids)

    def open_slowly(order: dict[str, Any]) -> tuple[int, float]:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            response = http.post(
                f"/api/orders/{order['id']}/payment", headers=bearer(order["access_token"])
            )
            return response.status_code, time.monotonic()

    with ThreadPoolExecutor(len(slow)) as pool:
        opening = [pool.submit(open_slowly, order) for order in slow]
        deadline = time.monotonic() + 10
        # Every writer thread is taken by an opening that waits on NOWPayments.
        while len(sandbox.payment_ids) < created_before + len(slow):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        answer = send_ipn(server, payment["id"], payment_status="confirming")
        answered_at = time.monotonic()
        opened = [f.result() for f in opening]
    assert answer.status_code == 200, answer.text
    assert [status for status, _ in opened] == [201] * len(slow)
    first_opened_at = min(at for _, at in opened)
    assert answered_at < first_opened_at, "the IPN waited for a write that waited on the provider"


def test_open_event_streams_hold_no_threads(server: RunningServer) -> None:
    # Orders waiting for payment keep their streams open; each order takes at most
    # MAX_STREAMS_PER_ORDER of them.
    orders = [create_order(server, STARDEW) for _ in range(-(-STREAMS // MAX_STREAMS_PER_ORDER))]
    order = orders[0]
    heads = [
        (
            f"GET /api/orders/{o['id']}/events?token={o['access_token']} HTTP/1.1\r\n"
            "Host: shop\r\n\r\n"
        ).encode()
        for o in orders
    ]
    token = bearer(order["access_token"])
    url = httpx.URL(server.url)
    assert url.host
    assert url.port

    def healthz_seconds() -> float:
        started = time.monotonic()
        with httpx.Client(base_url=server.url, timeout=ANSWER_SECONDS) as http:
            assert http.get("/healthz").status_code == 200
            assert http.get(f"/api/orders/{order['id']}", headers=token).status_code == 200
        return time.monotonic() - started

    quiet = max(healthz_seconds() for _ in range(3))
    streams = []
    try:
        for n in range(STREAMS):
            sock = socket.create_connection((url.host, url.port), timeout=ANSWER_SECONDS)
            streams.append(sock)
            sock.sendall(heads[n // MAX_STREAMS_PER_ORDER])
        for sock in streams:  # every stream is open and has sent its first event
            received = b""
            while b"event: status" not in received:
                more = sock.recv(65536)
                assert more, received
                received += more
        # The streams poll every half second; over a few of their polls, an answer must
        # not wait for them.
        busy = []
        for _ in range(9):
            busy.append(healthz_seconds())
            time.sleep(0.15)
    finally:
        for sock in streams:
            sock.close()
    assert sorted(busy)[4] < quiet + 0.5, (quiet, busy)


def test_parallel_payment_openings_make_one_provider_payment(server: RunningServer) -> None:
    assert server.shop.sandbox is not None
    sandbox = server.shop.sandbox.payments
    order = create_order(server, STARDEW)
    before = len(sandbox.payment_ids)
    # The first opening takes NOWPayments a second, so the requests overlap.
    stall, sandbox._stall_seconds = sandbox._stall_seconds, 1.0
    sandbox.outage(1, "slow", method="POST", path="/v1/payment")

    def open_it(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            return http.post(
                f"/api/orders/{order['id']}/payment",
                headers={"authorization": f"Bearer {order['access_token']}"},
            )

    try:
        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(open_it, range(10)))
    finally:
        sandbox._stall_seconds = stall
    assert len(sandbox.payment_ids) == before + 1, "exactly one NOWPayments payment"
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {200, 201, 409}
    assert codes.count(201) == 1
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["error"]["code"] == "payment_opening"
    bound = {a.json()["payment"]["id"] for a in answers if a.status_code in (200, 201)}
    assert len(bound) == 1
