"""Small helpers for the contract tests: buy, pay, wait, sign, check error shapes.

Everything goes over HTTP through ``RunningServer.http``, except ``sign`` and
``ipn_body`` (a test plays NOWPayments with the shop's IPN secret) and the sandbox
clock, which the tests move with ``POST /sandbox/clock/advance``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from support.servers import RunningServer, free_port

BUYER = "buyer@example.com"
# Products of the demo catalogue.
GIFT_CARD = "gift-card-10"  # custom, a pool of 100 keys
SOLD_OUT = "founders-pack"  # custom, an empty pool
STARDEW = "stardew-valley"  # Kinguin, a text key
HOLLOW_KNIGHT = "hollow-knight"  # Kinguin, an image key
FULL_PAYMENT = ["waiting", "confirming", "confirmed", "sending", "finished"]


def free_port_url() -> str:
    """A loopback URL on which nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is ``status`` with the contract's error shape (and ``code``, if given)."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["code"], str)
    assert body["error"]["code"]
    assert isinstance(body["error"]["message"], str)
    if code is not None:
        assert body["error"]["code"] == code, body
    error: dict[str, Any] = body["error"]
    return error


def order_body(product: str = GIFT_CARD, quantity: int = 1, email: str = BUYER) -> dict[str, Any]:
    return {"email": email, "items": [{"product_id": product, "quantity": quantity}]}


def create_order(
    server: RunningServer,
    product: str = GIFT_CARD,
    quantity: int = 1,
    *,
    email: str = BUYER,
    key: str | None = None,
) -> dict[str, Any]:
    """A new order (201); the JSON includes ``access_token``."""
    headers = {"idempotency-key": key} if key is not None else {}
    response = server.http.post(
        "/api/orders", json=order_body(product, quantity, email), headers=headers
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


def open_payment(server: RunningServer, order: dict[str, Any]) -> dict[str, Any]:
    response = server.http.post(
        f"/api/orders/{order['id']}/payment", headers=bearer(order["access_token"])
    )
    assert response.status_code in {200, 201}, response.text
    payment: dict[str, Any] = response.json()["payment"]
    return payment


def pay(server: RunningServer, payment_id: str, amount: str | None = None) -> list[dict[str, Any]]:
    """The sandbox pays (in full by default); the IPNs it sent and what the shop answered."""
    body = {} if amount is None else {"amount": amount}
    response = server.http.post(f"/sandbox/payments/{payment_id}/pay", json=body)
    assert response.status_code == 200, response.text
    ipns: list[dict[str, Any]] = response.json()["ipns"]
    return ipns


def get_order(server: RunningServer, order: dict[str, Any]) -> dict[str, Any]:
    response = server.http.get(f"/api/orders/{order['id']}", headers=bearer(order["access_token"]))
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def wait_for(
    server: RunningServer,
    order: dict[str, Any],
    status: str | None = None,
    *,
    until: Callable[[dict[str, Any]], bool] | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Poll the order until it has ``status`` (or ``until`` holds); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        current = get_order(server, order)
        if (status is None or current["status"] == status) and (until is None or until(current)):
            return current
        assert time.monotonic() < deadline, f"order never reached {status}: {current}"
        time.sleep(0.03)


def buy(server: RunningServer, product: str = GIFT_CARD, quantity: int = 1) -> dict[str, Any]:
    """Create, open the payment, pay in full, wait until fulfilled. Returns the order JSON
    (with ``access_token`` and ``payment_id`` added)."""
    order = create_order(server, product, quantity)
    payment = open_payment(server, order)
    assert [i["answered"] for i in pay(server, payment["id"])] == [200] * 5
    fulfilled = wait_for(server, order, "fulfilled")
    return fulfilled | {"access_token": order["access_token"], "payment_id": payment["id"]}


def admin_order(server: RunningServer, order_id: str) -> dict[str, Any]:
    response = server.http.get(f"/api/admin/orders/{order_id}", headers=server.admin)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def admin_orders(server: RunningServer, **query: str) -> list[dict[str, Any]]:
    response = server.http.get("/api/admin/orders", params=query, headers=server.admin)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def snapshot(server: RunningServer) -> list[tuple[str, str, tuple[str, ...], str]]:
    """Every order's id, status, flags and last update: equal snapshots, nothing changed."""
    return sorted(
        (o["id"], o["status"], tuple(o["flags"]), o["updated_at"]) for o in admin_orders(server)
    )


def advance(server: RunningServer, seconds: float) -> dict[str, Any]:
    """Move the sandbox clock and run what became due."""
    response = server.http.post("/sandbox/clock/advance", json={"seconds": seconds})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def reveal(server: RunningServer, order: dict[str, Any], item_index: int = 0) -> httpx.Response:
    item_id = order["items"][item_index]["id"]
    return server.http.post(
        f"/api/orders/{order['id']}/items/{item_id}/reveal",
        headers=bearer(order["access_token"]),
    )


def key_path(url: str) -> str:
    """The path of a key URL (the tests talk to the server's base URL)."""
    path = httpx.URL(url).raw_path.decode()
    assert path.startswith("/keys/"), url
    return path


# --- playing NOWPayments --------------------------------------------------------------------


def sign(server: RunningServer, body: bytes, secret: str | None = None) -> str:
    """``x-nowpayments-sig`` for ``body``: HMAC-SHA512 hex under the shop's IPN secret."""
    key = (secret if secret is not None else server.shop.settings.ipn_secret).encode()
    return hmac.new(key, body, hashlib.sha512).hexdigest()


def ipn_body(server: RunningServer, payment: str, /, **changes: Any) -> bytes:
    """The sandbox's IPN body for the payment as it stands, with ``changes`` applied."""
    assert server.shop.sandbox is not None
    data = json.loads(server.shop.sandbox.payments.ipn_body(payment))
    data.update(changes)
    return json.dumps(data, separators=(",", ":")).encode()


def post_ipn(server: RunningServer, body: bytes, signature: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-nowpayments-sig"] = signature
    return server.http.post("/webhooks/nowpayments", content=body, headers=headers)


def send_ipn(server: RunningServer, payment: str, /, **changes: Any) -> httpx.Response:
    """A correctly signed IPN for the payment, with ``changes``."""
    body = ipn_body(server, payment, **changes)
    return post_ipn(server, body, sign(server, body))


# --- Server-Sent Events ---------------------------------------------------------------------


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """``(event, data)`` pairs from the lines of an event stream; comments skipped."""
    event, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
    if data:
        yield event, "\n".join(data)


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_text = series.partition("{")
        if metric != name:
            continue
        found = dict(
            part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part
        )
        if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
            total += float(value)
    return total
