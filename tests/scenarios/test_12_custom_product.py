"""Scenario 12: a shop-owned product, its keys uploaded by the admin; no Kinguin call.

Each unit sold claims its own key from the product's pool (deviation #14); an empty pool
is a clear, non-retryable failure the admin fixes by uploading keys and retrying.
"""

from __future__ import annotations

from steps import (
    admin_list,
    assert_completion_email,
    assert_seen,
    checkout,
    get_order,
    jobs_of,
    kinguin_calls,
    mail_files,
    pay,
    reveal,
    settle,
    wait_for,
    wait_until,
)

from support.servers import RunningServer


def _products(server: RunningServer) -> dict[str, dict[str, object]]:
    return {p["id"]: p for p in server.http.get("/api/products").json()}


def test_custom_keys_come_from_the_pool(server: RunningServer) -> None:
    assert _products(server)["gift-card-10"] == {
        "id": "gift-card-10",
        "name": "bitloot gift card $10",
        "price": "10.00",
        "currency": "usd",
        "source": "custom",
        "available": True,
    }
    one, payment = checkout(server, ("gift-card-10", 1))
    two, payment_two = checkout(server, ("gift-card-10", 2))
    pay(server, payment["id"])
    pay(server, payment_two["id"])
    for order in (one, two):
        assert_seen(wait_for(server, order, "fulfilled"), "fulfilled", "finished")
        settle(server, order)
        assert_completion_email(server, order)  # the same email as for Kinguin keys

    keys = []
    for order in (one, two):
        revealed = reveal(server, order, order.item_ids()[0])
        assert revealed.status_code == 200
        urls = revealed.json()["urls"]
        assert len(urls) == order.body["items"][0]["quantity"]
        for url in urls:
            key = server.http.get(url)
            assert key.status_code == 200
            assert key.headers["content-type"].startswith("text/plain")
            keys.append(key.text)
    assert len(keys) == 3
    assert len(set(keys)) == 3  # every buyer gets a key of their own
    assert all(k.startswith("GIFT-") for k in keys)

    assert kinguin_calls(server) == []  # no external API call at all
    assert len(mail_files(server)) == 2


def test_empty_pool_is_flagged_and_fixed_by_the_admin(server: RunningServer) -> None:
    assert _products(server)["founders-pack"]["available"] is False
    order, payment = checkout(server, ("founders-pack", 1))
    pay(server, payment["id"])

    def job() -> dict[str, object]:
        return jobs_of(server, order.id).get("fulfill", {})

    dead = wait_until(job, lambda j: j.get("state") == "dead", "fulfillment to fail")
    assert dead["attempts"] == 1  # not retried: retrying cannot fill the pool
    assert "pool_empty" in str(dead["last_error"])
    seen = get_order(server, order)
    assert_seen(seen, "paid", "finished")
    assert seen["flags"] == ["fulfillment_failed"]
    assert [o["id"] for o in admin_list(server, "orders", flag="fulfillment_failed")] == [order.id]
    assert mail_files(server) == []

    # The admin uploads keys, then retries.
    added = server.http.post(
        "/api/admin/products/founders-pack/keys",
        json={"keys": ["FOUNDER-0001", "FOUNDER-0002"]},
        headers=server.admin,
    )
    assert added.status_code == 201
    assert added.json() == {"added": 2}
    assert _products(server)["founders-pack"]["available"] is True
    retried = server.http.post(
        f"/api/admin/orders/{order.id}/retry-fulfillment", headers=server.admin
    )
    assert retried.status_code == 200
    assert_seen(wait_for(server, order, "fulfilled"), "fulfilled", "finished")
    settle(server, order)
    assert get_order(server, order)["flags"] == []
    key = server.http.get(reveal(server, order, order.item_ids()[0]).json()["url"])
    assert key.text == "FOUNDER-0001"
    assert_completion_email(server, order)
    assert kinguin_calls(server) == []
