"""The Kinguin price guard over real HTTP: the client asks the sandbox's Kinguin API for
the product's offer, finds it above the sale price, and places nothing; the admin's
approval lets exactly one purchase through at Kinguin's price."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from realkit import PRODUCTS, real_kit

from bitloot_core.chart import Flag, OrderStatus
from bitloot_core.errors import InvalidState

STARDEW = PRODUCTS["stardew-valley"]  # sold at 11.99


def test_a_price_above_the_sale_price_buys_nothing_until_the_admin_approves(
    tmp_path: Path,
) -> None:
    with real_kit(tmp_path / "data") as kit:
        assert STARDEW.supplier_ref is not None
        kit.supplier.set_price(STARDEW.supplier_ref, STARDEW.price + Decimal("0.01"))
        created, payment = kit.buy([("stardew-valley", 2)])
        order_id = created.order.id
        kit.pay(payment)
        kit.run_until_idle()
        held = kit.checkout.admin_order(order_id).order
        assert (held.status, held.flags) == (OrderStatus.PAID, {Flag.PRICE_GUARD})
        assert kit.sandbox.placements(order_id) == []
        assert kit.email_files() == []

        kit.checkout.resolve(order_id, action="fulfill", note="Kinguin's price accepted")
        with pytest.raises(InvalidState):
            kit.checkout.resolve(order_id, action="fulfill", note="twice")
        kit.run_until_idle()
        assert kit.statuses(created)[0] is OrderStatus.FULFILLED
        [bought] = kit.sandbox.kinguin_orders(order_id)
        assert Decimal(str(bought["totalPrice"])) == 2 * (STARDEW.price + Decimal("0.01"))
        assert len(kit.email_files()) == 1


def test_the_sale_price_itself_is_bought_without_asking(tmp_path: Path) -> None:
    with real_kit(tmp_path / "data") as kit:
        assert STARDEW.supplier_ref is not None
        kit.supplier.set_price(STARDEW.supplier_ref, STARDEW.price)
        created, payment = kit.buy([("stardew-valley", 1)])
        kit.pay(payment)
        kit.run_until_idle()
        assert kit.statuses(created)[0] is OrderStatus.FULFILLED
        assert len(kit.sandbox.kinguin_orders(created.order.id)) == 1
