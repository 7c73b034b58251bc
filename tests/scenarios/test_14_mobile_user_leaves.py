"""Scenario 14: the customer switches to the wallet app, pays, and comes back later.

The order lives in the database, the IPN arrives server-side meanwhile, and the returning
customer, holding only the order id and its access token, sees the current status. Live
updates come as Server-Sent Events (deviation #19), polling being the fallback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from steps import (
    Placed,
    assert_seen,
    checkout,
    get_order,
    pay,
    progress_only_forward,
    settle,
    wait_for,
)

from support.servers import RunningServer, running_server


def test_returning_customer_sees_the_current_status(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as phone:
        created = phone.post(
            "/api/orders",
            json={"email": "mobile@example.com", "items": [{"product_id": "stardew-valley"}]},
        ).json()
        order_id, token = created["id"], created["access_token"]
        opened = phone.post(f"/api/orders/{order_id}/payment", params={"token": token})
        payment_id = opened.json()["payment"]["id"]
    # The app is gone; the wallet pays; NOWPayments tells the server.
    pay(server, payment_id)
    order = Placed(id=order_id, token=token, body=created)
    settle(server, order, timeout=15)

    # Back in the app: a brand-new client with only the id and the token.
    with httpx.Client(base_url=server.url, timeout=30) as back:
        seen = get_order(server, order, back)
        assert_seen(seen, "fulfilled", "finished")
        by_header = back.get(
            f"/api/orders/{order_id}", headers={"authorization": f"Bearer {token}"}
        )
        assert by_header.json()["status"] == "fulfilled"
        page = back.get(f"/order/{order_id}", params={"token": token})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        # The id alone, or someone else's token, shows nothing.
        assert back.get(f"/api/orders/{order_id}").status_code == 404
        assert back.get(f"/api/orders/{order_id}", params={"token": "x" * 43}).status_code == 404


def _events(response: httpx.Response) -> Any:
    """The ``status`` events of an SSE stream, as parsed order bodies, until it ends."""
    name = None
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:") and name == "status":
            yield json.loads(line.removeprefix("data:"))
        elif not line:
            name = None


def test_live_status_over_server_sent_events(server: RunningServer) -> None:
    order, payment = checkout(server, ("counter-strike-source", 1))
    statuses = []
    with (
        httpx.Client(base_url=server.url, timeout=30) as back,
        back.stream("GET", f"/api/orders/{order.id}/events", params={"token": order.token}) as sse,
    ):
        assert sse.status_code == 200
        assert sse.headers["content-type"].startswith("text/event-stream")
        events = _events(sse)
        first = next(events)
        assert_seen(first, "waiting", "waiting")
        statuses.append(first["status"])
        last = first
        pay(server, payment["id"])
        for event in events:  # the stream ends once the order can change no more
            statuses.append(event["status"])
            last = event
    assert_seen(last, "fulfilled", "finished")
    assert statuses[0] == "waiting"
    assert statuses[-1] == "fulfilled"
    assert progress_only_forward(statuses)
    refused = server.http.get(f"/api/orders/{order.id}/events", params={"token": "nope"})
    assert refused.status_code == 404


def test_order_survives_a_server_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server("fastapi", data) as first:
        order, payment = checkout(first, ("gift-card-10", 1))
        pay(first, payment["id"])
        wait_for(first, order, "fulfilled")
        settle(first, order)
    with running_server("fastapi", data) as second:
        assert_seen(get_order(second, order), "fulfilled", "finished")
        item_id = order.item_ids()[0]
        revealed = second.http.post(
            f"/api/orders/{order.id}/items/{item_id}/reveal", params={"token": order.token}
        )
        assert revealed.status_code == 200
        assert second.http.get(revealed.json()["url"]).text.startswith("GIFT-")
