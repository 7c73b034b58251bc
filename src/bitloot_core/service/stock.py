"""Stock of the shop's own key pools: reserved when a payment opens, put back when the
order ends unpaid (chart rule 14), taken by fulfillment.

A pool key is claimed under ``ORDER/ITEM/N`` (``claimant``): reserving and fulfilling
name the same claimant, so fulfillment takes exactly the keys the payment reserved.
"""

from __future__ import annotations

from bitloot_core.errors import SoldOut
from bitloot_core.ports import StoreTx
from bitloot_core.values import Order, Product, ProductSource


def claimant(order_id: str, item_id: str, n: int) -> str:
    return f"{order_id}/{item_id}/{n}"


def check(tx: StoreTx, product: Product, quantity: int) -> None:
    """Refuse an order for more of a pool product than its pool holds free."""
    if product.source is not ProductSource.CUSTOM:
        return
    left = tx.pool_size(product.id)
    if left < quantity:
        raise SoldOut(f"{product.id} is sold out ({left} left, {quantity} ordered)")


def reserve(tx: StoreTx, order: Order) -> None:
    """Claim the order's pool keys; raises ``SoldOut`` (the caller's transaction rolls
    the partial claims back) when the pool holds too few."""
    for item in order.items:
        if item.source is not ProductSource.CUSTOM:
            continue
        for n in range(item.quantity):
            if tx.claim_pool_key(item.product_id, claimant(order.id, item.id, n)) is None:
                raise SoldOut(f"{item.product_id} sold out while the order waited")


def release(tx: StoreTx, order: Order) -> int:
    """Put back the pool keys reserved for the order's undelivered items."""
    return sum(
        tx.release_pool_keys(f"{order.id}/{item.id}/")
        for item in order.items
        if item.source is ProductSource.CUSTOM and not item.delivered
    )
