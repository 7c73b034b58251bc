"""Never sell what isn't there: sold-out products, pool reservations, a key in two pools."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from checkout_kit import CATALOGUE, Kit, send_ipn
from test_service import order_and_pay, run_jobs

from bitloot_core.chart import Flag, OrderStatus
from bitloot_core.errors import Conflict


def available(kit: Kit) -> dict[str, bool]:
    return {v.product.id: v.available for v in kit.checkout.list_products()}


def pool_size(kit: Kit, product_id: str) -> int:
    with kit.store.transaction() as tx:
        return tx.pool_size(product_id)


def test_an_order_for_a_sold_out_product_is_refused(kit: Kit) -> None:
    assert available(kit)["shop-gift"] is False
    with pytest.raises(Conflict) as refused:
        kit.checkout.create_order(email="a@example.com", items=[("shop-gift", 1)])
    assert refused.value.code == "sold_out"
    assert refused.value.status_hint == 409
    assert kit.checkout.list_orders() == []


def test_an_order_for_more_keys_than_the_pool_holds_is_refused(kit: Kit) -> None:
    kit.checkout.add_pool_keys("shop-gift", ["GIFT-1", "GIFT-2"])
    with pytest.raises(Conflict, match="2 left"):
        kit.checkout.create_order(email="a@example.com", items=[("shop-gift", 3)])


def test_keys_are_reserved_when_the_payment_opens(kit: Kit) -> None:
    kit.checkout.add_pool_keys("shop-gift", ["GIFT-1"])
    first = kit.checkout.create_order(email="a@example.com", items=[("shop-gift", 1)])
    second = kit.checkout.create_order(email="b@example.com", items=[("shop-gift", 1)])
    kit.checkout.open_payment(first.order.id, first.access_token)
    assert pool_size(kit, "shop-gift") == 0
    assert available(kit)["shop-gift"] is False
    # The second checkout would oversell: refused before any provider payment is made.
    with pytest.raises(Conflict) as refused:
        kit.checkout.open_payment(second.order.id, second.access_token)
    assert refused.value.code == "sold_out"
    assert len(kit.gateway.created) == 1
    audit = [a.action for a in kit.checkout.admin_order(second.order.id).audit]
    assert audit[-1] == "payment_refused"


def test_the_reserved_key_is_the_one_delivered(kit: Kit) -> None:
    kit.checkout.add_pool_keys("shop-gift", ["GIFT-1", "GIFT-2"])
    created, payment = order_and_pay(kit, [("shop-gift", 1)])
    kit.checkout.add_pool_keys("shop-gift", ["GIFT-0"])
    send_ipn(kit, payment, "finished")
    run_jobs(kit)
    order = kit.checkout.admin_order(created.order.id).order
    assert order.status is OrderStatus.FULFILLED
    assert kit.vault.read(order.items[0].keys[0].ref)[0] == b"GIFT-1"
    assert pool_size(kit, "shop-gift") == 2


@pytest.mark.parametrize("outcome", ["expired", "failed", "refunded", "sweep", "underpaid"])
def test_an_unpaid_order_gives_its_keys_back(kit: Kit, outcome: str) -> None:
    kit.checkout.add_pool_keys("shop-gift", ["GIFT-1"])
    created, payment = order_and_pay(kit, [("shop-gift", 1)])
    assert pool_size(kit, "shop-gift") == 0
    if outcome == "sweep":
        kit.clock.advance(timedelta(hours=1))
        assert kit.checkout.sweep() == [created.order.id]
    elif outcome == "underpaid":
        send_ipn(kit, payment, "finished", actually_paid=payment.pay_amount / 2)
    else:
        send_ipn(kit, payment, outcome)
    assert pool_size(kit, "shop-gift") == 1
    assert available(kit)["shop-gift"] is True


def test_a_key_released_and_sold_again_leaves_a_late_payment_for_the_admin(kit: Kit) -> None:
    kit.checkout.add_pool_keys("shop-gift", ["GIFT-1"])
    late, late_payment = order_and_pay(kit, [("shop-gift", 1)])
    kit.clock.advance(timedelta(hours=1))
    kit.checkout.sweep()
    other, other_payment = order_and_pay(kit, [("shop-gift", 1)])
    send_ipn(kit, other_payment, "finished")
    send_ipn(kit, late_payment, "finished")  # paid late: held
    kit.checkout.resolve(late.order.id, action="fulfill", note="paid late")
    run_jobs(kit)
    delivered = {
        created.order.id: kit.checkout.admin_order(created.order.id).order
        for created in (late, other)
    }
    assert delivered[other.order.id].status is OrderStatus.FULFILLED
    held = delivered[late.order.id]
    assert (held.status, Flag.FULFILLMENT_FAILED in held.flags) == (OrderStatus.PAID, True)


def test_a_key_uploaded_to_two_pools_is_sold_once(kit: Kit) -> None:
    gift = next(p for p in CATALOGUE if p.id == "shop-gift")
    kit.checkout.save_product(replace(gift, id="shop-gift-2", name="Gift card (bundle)"))
    assert kit.checkout.add_pool_keys("shop-gift", ["SAME-KEY"]) == 1
    assert kit.checkout.add_pool_keys("shop-gift-2", ["SAME-KEY"]) == 0
    assert (available(kit)["shop-gift"], available(kit)["shop-gift-2"]) == (True, False)
    created, payment = order_and_pay(kit, [("shop-gift", 1)])
    send_ipn(kit, payment, "finished")
    run_jobs(kit)
    order = kit.checkout.admin_order(created.order.id).order
    assert kit.vault.read(order.items[0].keys[0].ref)[0] == b"SAME-KEY"
    with pytest.raises(Conflict):
        kit.checkout.create_order(email="b@example.com", items=[("shop-gift-2", 1)])
