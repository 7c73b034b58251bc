"""``ShopApi.asgi_app()`` mounted in uvicorn, over real HTTP on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from bitloot_adapters.bootstrap import NoMetrics, Shop, build_shop
from bitloot_adapters.http_api import MAX_BODY_BYTES, ShopApi
from bitloot_adapters.settings import load_settings


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[tuple[httpx.Client, Shop, int]]:
    shop = build_shop(load_settings(data_dir=tmp_path / "data", env={}), metrics=NoMetrics())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(ShopApi(shop).asgi_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 15
            while not server.started:
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.02)
            yield http, shop, port
    finally:
        server.should_exit = True
        thread.join(10)
        shop.close()


def test_the_api_answers_through_asgi(mounted: tuple[httpx.Client, Shop, int]) -> None:
    http, shop, _ = mounted
    assert http.get("/healthz").json() == {"status": "ok", "mode": "sandbox", "sandbox": True}
    created = http.post(
        "/api/orders", json={"email": "b@example.com", "items": [{"product_id": "gift-card-10"}]}
    )
    assert created.status_code == 201
    order = created.json()
    seen = http.get(
        f"/api/orders/{order['id']}", headers={"authorization": f"Bearer {order['access_token']}"}
    )
    assert seen.json()["status"] == "created"
    assert http.get("/nowhere").json()["error"]["code"] == "not_found"
    assert http.post("/api/orders", content=b"[").json()["error"]["code"] == "invalid_json"
    chunked = http.post(
        "/api/orders", content=iter([b"x" * 40_000, b"x" * 40_000])
    )  # no Content-Length: cut off at the limit
    assert chunked.status_code == 413
    assert [o.id for o in shop.checkout.list_orders()] == [order["id"]]


def test_a_body_over_the_limit_is_refused_unread(mounted: tuple[httpx.Client, Shop, int]) -> None:
    _, shop, port = mounted
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b'"body_too_large"' in answer
    assert shop.checkout.list_orders() == []


def test_the_status_stream_flows_through_asgi(mounted: tuple[httpx.Client, Shop, int]) -> None:
    http, _, _ = mounted
    created = http.post(
        "/api/orders", json={"email": "b@example.com", "items": [{"product_id": "gift-card-10"}]}
    ).json()
    url = f"/api/orders/{created['id']}/events"
    with http.stream("GET", url, params={"token": created["access_token"]}) as events:
        assert events.status_code == 200
        chunks = events.iter_raw()
        first, second = next(chunks), next(chunks)
    assert first.startswith(b"retry: 2000\n\nevent: status\ndata: ")
    assert second == b":\n\n"
