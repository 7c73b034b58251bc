"""Scenario 11: three games in one cart, one checkout.

One order with three items, one invoice for the total, one Kinguin order with the three
products, each key matched to its item by Kinguin product id, three separate signed URLs,
one email linking all three.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal

from steps import (
    assert_completion_email,
    assert_seen,
    checkout,
    get_order,
    kinguin_calls,
    kinguin_orders_placed,
    mail_files,
    pay,
    reveal,
    settle,
    wait_for,
)

from bitloot_adapters.bootstrap import DEMO_PRODUCTS
from support.servers import RunningServer

GAMES = ("counter-strike-source", "stardew-valley", "hollow-knight")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_three_games_one_order_one_invoice_one_email(server: RunningServer) -> None:
    order, payment = checkout(server, *[(game, 1) for game in GAMES])
    assert [item["product_id"] for item in order.body["items"]] == list(GAMES)
    assert order.body["total"] == "31.97"

    # One invoice, for the total.
    assert server.shop.sandbox is not None
    invoices = [c for c in server.shop.sandbox.payments.calls if c.method == "POST"]
    assert len(invoices) == 1
    assert Decimal(str(json.loads(invoices[0].body)["price_amount"])) == Decimal("31.97")

    pay(server, payment["id"])
    seen = wait_for(server, order, "fulfilled")
    assert_seen(seen, "fulfilled", "finished")
    assert all(item["delivered"] for item in seen["items"])
    settle(server, order)

    # One Kinguin order holding the three products.
    assert kinguin_orders_placed(server, order.id) == 1
    placed = next(c for c in kinguin_calls(server, order.id) if c.method == "POST")
    supplier_refs = {p.id: p.supplier_ref for p in DEMO_PRODUCTS}
    assert sorted(line["productId"] for line in json.loads(placed.body)["products"]) == sorted(
        supplier_refs[game] for game in GAMES
    )

    # Three separate signed URLs, each serving its own item's key.
    urls, keys = [], {}
    for item in seen["items"]:
        revealed = reveal(server, order, item["id"])
        assert revealed.status_code == 200
        url = revealed.json()["url"]
        key = server.http.get(url)
        assert key.status_code == 200
        urls.append(url)
        keys[item["product_id"]] = (key.headers["content-type"], key.content)
    assert len(set(urls)) == 3
    assert keys["hollow-knight"][0] == "image/png"
    assert keys["hollow-knight"][1].startswith(PNG_SIGNATURE)
    for game in ("counter-strike-source", "stardew-valley"):
        assert keys[game][0].startswith("text/plain")
    assert len({content for _, content in keys.values()}) == 3
    # Each is the key Kinguin delivered for that product.
    kinguin = next(
        o for o in server.shop.sandbox.supplier.orders if o["orderExternalId"] == order.id
    )
    delivered = server.http.get(
        f"{server.shop.sandbox.servers[1].url}/v2/order/{kinguin['orderId']}/keys",
        headers={"x-api-key": server.shop.settings.kinguin_api_key},
    ).json()
    serials = {key["productId"]: key["serial"] for key in delivered}
    for game in ("counter-strike-source", "stardew-valley"):
        assert keys[game][1].decode() == serials[supplier_refs[game]]
    assert keys["hollow-knight"][1] == base64.b64decode(serials[supplier_refs["hollow-knight"]])

    # One email with a link for each of the three.
    assert_completion_email(server, order)
    assert len(mail_files(server)) == 1
    assert get_order(server, order)["status"] == "fulfilled"
