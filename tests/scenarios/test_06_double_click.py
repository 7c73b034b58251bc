"""Scenario 6: "Checkout" clicked twice; two requests with the same Idempotency-Key.

Only one order is made and both clicks get it (and its access token). The key is kept
under a unique (email, key) scope; reusing it for another request is a 409
(deviation #17).
"""

from __future__ import annotations

import threading

import httpx
from steps import Placed, admin_list, create_order, get_order

from support.servers import RunningServer


def test_two_clicks_make_one_order(server: RunningServer) -> None:
    barrier = threading.Barrier(2)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def click() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            barrier.wait()
            response = create_order(
                server,
                ("stardew-valley", 1),
                idempotency_key="checkout-7f3a9c2e1b5d",
                client=client,
            )
        with lock:
            answers.append(response)

    clicks = [threading.Thread(target=click) for _ in range(2)]
    for thread in clicks:
        thread.start()
    for thread in clicks:
        thread.join(30)

    assert sorted(a.status_code for a in answers) == [200, 201]
    first, second = (a.json() for a in answers)
    assert first["id"] == second["id"]
    assert first["access_token"] == second["access_token"]
    orders = admin_list(server, "orders")
    assert [o["id"] for o in orders] == [first["id"]]

    # A third click later, with the email typed differently: still the same order.
    again = create_order(
        server,
        ("stardew-valley", 1),
        email=" Buyer@Example.com",
        idempotency_key="checkout-7f3a9c2e1b5d",
    )
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]

    # The one order works as any other.
    order = Placed(id=first["id"], token=first["access_token"], body=first)
    assert get_order(server, order)["status"] == "created"


def test_paying_twice_opens_one_payment(server: RunningServer) -> None:
    created = create_order(
        server, ("stardew-valley", 1), idempotency_key="pay-twice-7f3a9c2e"
    ).json()
    order = Placed(id=created["id"], token=created["access_token"], body=created)
    first = server.http.post(f"/api/orders/{order.id}/payment", headers=order.auth)
    second = server.http.post(f"/api/orders/{order.id}/payment", headers=order.auth)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["payment"]["id"] == second.json()["payment"]["id"]
    assert server.shop.sandbox is not None
    invoices = [c for c in server.shop.sandbox.payments.calls if c.method == "POST"]
    assert len(invoices) == 1  # no second charge


def test_same_key_for_another_cart_is_a_conflict(server: RunningServer) -> None:
    first = create_order(server, ("stardew-valley", 1), idempotency_key="key-one-7f3a9c2e1b")
    assert first.status_code == 201
    other = create_order(server, ("hollow-knight", 1), idempotency_key="key-one-7f3a9c2e1b")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    # Without a key, every click is a new order, as the seed's code does.
    assert create_order(server, ("stardew-valley", 1)).json()["id"] != first.json()["id"]
    assert len(admin_list(server, "orders")) == 2
