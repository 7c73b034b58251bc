"""Scenario 12: a shop-owned product, its keys uploaded by the admin; no Kinguin call.

Each unit sold claims its own key from the product's pool (deviation #14), reserved when
the payment opens; an order for more keys than the pool holds is refused (409
``sold_out``, deviation #29) until the admin uploads keys.
"""

from __future__ import annotations

from steps import (
    assert_completion_email,
    assert_seen,
    checkout,
    create_order,
    get_order,
    kinguin_calls,
    mail_files,
    pay,
    reveal,
    settle,
    wait_for,
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


def test_sold_out_product_is_refused_until_the_admin_uploads_keys(
    server: RunningServer,
) -> None:
    # Deviation #29: an order for keys the pool does not hold is refused, not taken.
    assert _products(server)["founders-pack"]["available"] is False
    refused = create_order(server, ("founders-pack", 1))
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "sold_out"
    assert mail_files(server) == []

    # The admin uploads keys; the product can be bought again.
    added = server.http.post(
        "/api/admin/products/founders-pack/keys",
        json={"keys": ["FOUNDER-0001"]},
        headers=server.admin,
    )
    assert added.status_code == 201
    assert added.json()["added"] == 1
    assert _products(server)["founders-pack"]["available"] is True
    order, payment = checkout(server, ("founders-pack", 1))
    # The one key is reserved for the open payment: nobody else can order it meanwhile.
    assert _products(server)["founders-pack"]["available"] is False
    assert create_order(server, ("founders-pack", 1)).status_code == 409
    pay(server, payment["id"])
    assert_seen(wait_for(server, order, "fulfilled"), "fulfilled", "finished")
    settle(server, order)
    assert get_order(server, order)["flags"] == []
    key = server.http.get(reveal(server, order, order.item_ids()[0]).json()["url"])
    assert key.text == "FOUNDER-0001"
    assert_completion_email(server, order)
    assert kinguin_calls(server) == []
