"""The smallest end-to-end purchase over real HTTP, against both servers."""

from __future__ import annotations

import time

from support.servers import RunningServer


def wait_for(server: RunningServer, order_id: str, token: str, status: str) -> dict:
    deadline = time.monotonic() + 20
    while True:
        order = server.http.get(f"/api/orders/{order_id}", params={"token": token}).json()
        if order["status"] == status or time.monotonic() > deadline:
            return order
        time.sleep(0.05)


def test_buy_a_key_from_start_to_reveal(server: RunningServer) -> None:
    created = server.http.post(
        "/api/orders",
        json={"email": "a@example.com", "items": [{"product_id": "stardew-valley", "quantity": 1}]},
    )
    assert created.status_code == 201
    order = created.json()
    token = order["access_token"]
    payment = server.http.post(
        f"/api/orders/{order['id']}/payment", headers={"authorization": f"Bearer {token}"}
    )
    assert payment.status_code == 201
    paid = server.http.post(f"/sandbox/payments/{payment.json()['payment']['id']}/pay")
    assert [i["answered"] for i in paid.json()["ipns"]] == [200] * 5
    fulfilled = wait_for(server, order["id"], token, "fulfilled")
    assert fulfilled["status"] == "fulfilled"
    item = fulfilled["items"][0]["id"]
    reveal = server.http.post(
        f"/api/orders/{order['id']}/items/{item}/reveal", params={"token": token}
    )
    assert reveal.status_code == 200
    key = server.http.get(reveal.json()["url"])
    assert key.status_code == 200
    assert key.headers["content-type"].startswith("text/plain")
    assert len(key.content) > 5
