"""Scenario 15: the customer clicks "Reveal key" on the fulfilled order.

Each reveal mints a fresh signed URL valid 3 hours, for the holder of the order's access
token, and is recorded (deviations #15, #16); an expired URL is refused and a new one can
be asked for at any time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from steps import (
    admin_order,
    advance,
    checkout,
    get_order,
    pay,
    place_order,
    reveal,
    settle,
    wait_for,
)

from support.servers import RunningServer

THREE_HOURS = timedelta(hours=3)


def test_reveal_gives_a_three_hour_url_and_a_new_one_on_request(server: RunningServer) -> None:
    order, payment = checkout(server, ("counter-strike-source", 1), ("hollow-knight", 1))
    text_item, image_item = order.item_ids()

    # Not before delivery.
    early = reveal(server, order, text_item)
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "not_delivered"

    pay(server, payment["id"])
    wait_for(server, order, "fulfilled")
    settle(server, order)

    clock = datetime.fromisoformat(advance(server, 0)["now"])
    first = reveal(server, order, text_item)
    assert first.status_code == 200
    after = datetime.fromisoformat(advance(server, 0)["now"])
    expires_at = datetime.fromisoformat(first.json()["expires_at"])
    # Whole seconds, rounded down, three hours from the moment of the reveal (the sandbox
    # clock runs on between the two readings around it).
    assert clock + THREE_HOURS - timedelta(seconds=1) < expires_at <= after + THREE_HOURS
    key = server.http.get(first.json()["url"])
    assert key.status_code == 200
    assert key.headers["content-type"].startswith("text/plain")
    assert key.headers["cache-control"] == "no-store"
    secret = key.text

    # A second click a minute later: another URL, for longer, the same key.
    advance(server, 60)
    second = reveal(server, order, text_item)
    assert second.json()["url"] != first.json()["url"]
    assert second.json()["expires_at"] > first.json()["expires_at"]
    assert server.http.get(second.json()["url"]).text == secret

    # The image key downloads as the image it is.
    image = server.http.get(reveal(server, order, image_item).json()["url"])
    assert image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n")

    # A changed URL is refused.
    tampered = first.json()["url"][:-2] + ("AA" if not first.json()["url"].endswith("AA") else "BB")
    refused = server.http.get(tampered)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "url_invalid"

    # Three hours later the first URL is dead, the second one not yet; a new reveal works.
    advance(server, THREE_HOURS.total_seconds() - 59)
    expired = server.http.get(first.json()["url"])
    assert expired.status_code == 403
    assert expired.json()["error"]["code"] == "url_expired"
    assert server.http.get(second.json()["url"]).text == secret
    fresh = reveal(server, order, text_item)
    assert fresh.status_code == 200
    assert server.http.get(fresh.json()["url"]).text == secret

    # Every reveal is recorded for the admin; the order is unchanged by any of it.
    reveals = admin_order(server, order.id)["reveals"]
    assert [r["item_id"] for r in reveals] == [text_item, text_item, image_item, text_item]
    assert get_order(server, order)["status"] == "fulfilled"


def test_only_the_token_holder_can_reveal(server: RunningServer) -> None:
    order, payment = checkout(server, ("stardew-valley", 1))
    other = place_order(server, ("stardew-valley", 1))
    pay(server, payment["id"])
    wait_for(server, order, "fulfilled")
    item = order.item_ids()[0]
    path = f"/api/orders/{order.id}/items/{item}/reveal"
    assert server.http.post(path).status_code == 404
    assert server.http.post(path, headers=other.auth).status_code == 404
    assert server.http.post(path, params={"token": order.token}).status_code == 200
    assert (
        server.http.post(
            f"/api/orders/{order.id}/items/nope/reveal", headers=order.auth
        ).status_code
        == 404
    )


def test_each_reveal_call_mints_a_new_url(server: RunningServer) -> None:
    order, payment = checkout(server, ("gift-card-10", 1))
    pay(server, payment["id"])
    wait_for(server, order, "fulfilled")
    item = order.item_ids()[0]
    # Three calls well within one second (at least two share a second of the clock):
    # still a new URL each call, as the HTTP contract says, each serving the key.
    urls = [reveal(server, order, item).json()["url"] for _ in range(3)]
    assert len(set(urls)) == 3
    assert len({server.http.get(url).text for url in urls}) == 1
