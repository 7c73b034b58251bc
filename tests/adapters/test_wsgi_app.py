"""``ShopApi.wsgi_app()`` mounted in the standard library's WSGI server, over real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest

from bitloot_adapters.bootstrap import NoMetrics, Shop, build_shop
from bitloot_adapters.http_api import MAX_BODY_BYTES, ShopApi
from bitloot_adapters.http_api.pages import PACKAGED_PAGE
from bitloot_adapters.http_api.shapes import HttpRequest
from bitloot_adapters.settings import load_settings


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet."""


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[tuple[httpx.Client, Shop]]:
    shop = build_shop(load_settings(data_dir=tmp_path / "data", env={}), metrics=NoMetrics())
    assert shop.sandbox is not None
    shop.sandbox.supplier.key_delay = 0
    server = make_server(
        "127.0.0.1",
        0,
        ShopApi(shop).wsgi_app(),
        server_class=_ThreadingServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}", timeout=10) as http:
            yield http, shop
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        shop.close()


def test_the_api_answers_through_wsgi(mounted: tuple[httpx.Client, Shop]) -> None:
    http, shop = mounted
    assert http.get("/healthz").json() == {"status": "ok", "mode": "sandbox", "sandbox": True}
    created = http.post(
        "/api/orders",
        json={"email": "b@example.com", "items": [{"product_id": "gift-card-10"}]},
        headers={"idempotency-key": "wsgi-checkout-0001"},
    )
    assert created.status_code == 201
    order = created.json()
    token = order["access_token"]
    again = http.post(
        "/api/orders",
        json={"email": "b@example.com", "items": [{"product_id": "gift-card-10"}]},
        headers={"idempotency-key": "wsgi-checkout-0001"},
    )
    assert again.status_code == 200
    assert again.json()["id"] == order["id"]
    seen = http.get(f"/api/orders/{order['id']}", params={"token": token})
    assert seen.status_code == 200
    assert seen.json()["status"] == "created"
    assert http.get(f"/api/orders/{order['id']}").status_code == 404
    missing = http.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert http.delete("/api/orders").json()["error"]["code"] == "method_not_allowed"
    admin = http.get("/api/admin/orders", headers={"authorization": "Bearer wrong"})
    assert admin.status_code == 401
    listed = http.get(
        "/api/admin/orders", headers={"authorization": f"Bearer {shop.settings.admin_token}"}
    )
    assert [o["id"] for o in listed.json()] == [order["id"]]


def test_a_body_over_the_limit_is_refused_unread(mounted: tuple[httpx.Client, Shop]) -> None:
    http, shop = mounted
    port = int(str(http.base_url).rsplit(":", 1)[1].rstrip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/orders HTTP/1.0\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 413 ")
    assert b'"body_too_large"' in answer
    assert shop.checkout.list_orders() == []


def test_the_status_stream_flows_through_wsgi(mounted: tuple[httpx.Client, Shop]) -> None:
    http, _ = mounted
    created = http.post(
        "/api/orders", json={"email": "b@example.com", "items": [{"product_id": "gift-card-10"}]}
    ).json()
    url = f"/api/orders/{created['id']}/events"
    with http.stream("GET", url, params={"token": created["access_token"]}) as events:
        assert events.status_code == 200
        assert events.headers["content-type"].startswith("text/event-stream")
        first = next(events.iter_raw())
    assert first.startswith(b"retry: 2000\n\nevent: status\ndata: ")
    assert b'"status":"created"' in first


def test_a_single_threaded_server_is_paid_without_deadlocking_on_its_own_sandbox(
    tmp_path: Path,
) -> None:
    """wsgiref's plain server answers one request at a time: the sandbox cannot wait for
    the shop's answer to an IPN while the shop waits for the pay route to end."""
    server = make_server("127.0.0.1", 0, lambda *_: [], handler_class=_QuietHandler)
    assert not isinstance(server, ThreadingMixIn)
    port = server.server_port
    settings = load_settings(data_dir=tmp_path / "data", port=port, env={})
    shop = build_shop(settings, metrics=NoMetrics())
    assert shop.sandbox is not None
    shop.sandbox.supplier.key_delay = 0
    shop.start_worker(poll_seconds=0.05)
    server.set_app(ShopApi(shop).wsgi_app())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}", timeout=10) as http:
            order = http.post(
                "/api/orders",
                json={"email": "b@example.com", "items": [{"product_id": "stardew-valley"}]},
            ).json()
            auth = {"authorization": f"Bearer {order['access_token']}"}
            payment = http.post(f"/api/orders/{order['id']}/payment", headers=auth).json()
            started = time.monotonic()
            paid = http.post(f"/sandbox/payments/{payment['payment']['id']}/pay")
            assert time.monotonic() - started < 2
            assert paid.status_code == 200
            # Answered before the IPNs went out: none was answered yet.
            assert {ipn["answered"] for ipn in paid.json()["ipns"]} == {None}
            deadline = time.monotonic() + 20
            while (status := http.get(f"/api/orders/{order['id']}", headers=auth).json())[
                "status"
            ] != "fulfilled":
                assert time.monotonic() < deadline, status
                time.sleep(0.05)
            # Kinguin's order.status webhook for the bought key goes out after the answer
            # too, instead of waiting for a shop that cannot take it.
            started = time.monotonic()
            moved = http.post("/sandbox/clock/advance", json={"seconds": 1})
            assert moved.status_code == 200
            assert time.monotonic() - started < 2
            while not shop.sandbox.supplier.webhooks:
                assert time.monotonic() < deadline, "Kinguin sent no webhook"
                time.sleep(0.05)
            assert [w.answered for w in shop.sandbox.supplier.webhooks] == [204]
        assert {e.answered for e in shop.sandbox.payments.events} == {200}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        shop.close()


def test_the_page_and_the_console_come_with_the_package(
    mounted: tuple[httpx.Client, Shop],
) -> None:
    """No ``page_dir``: the customer page and the operator's console are the package's."""
    http, _ = mounted
    for path, marker in (("/", "app.js"), ("/order/any-order", "app.js"), ("/admin", "admin.js")):
        answer = http.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
        assert marker in answer.text, path
    for name in ("app.js", "app.css", "admin.js", "admin.css"):
        answer = http.get(f"/static/{name}")
        assert answer.status_code == 200, name
        assert answer.content == (PACKAGED_PAGE / name).read_bytes()


def test_a_page_dir_replaces_the_packaged_page(tmp_path: Path) -> None:
    own = tmp_path / "page"
    own.mkdir()
    (own / "index.html").write_text("<html><body>our own shop</body></html>")
    shop = build_shop(
        load_settings(data_dir=tmp_path / "data", env={}), metrics=NoMetrics(), page_dir=own
    )
    try:
        api = ShopApi(shop)
        page = api.handle(HttpRequest(method="GET", path="/"))
        assert page.status == 200
        assert page.body == b"<html><body>our own shop</body></html>"
        gone = api.handle(HttpRequest(method="GET", path="/static/app.js"))
        assert gone.status == 404
    finally:
        shop.close()
