"""The operator's catalogue: products saved together or not at all, each change audited,
and each custom product's stock."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from checkout_kit import Kit

from bitloot_core.errors import InvalidInput
from bitloot_core.values import Product, ProductSource

NEW = Product(
    id="new-game",
    name="New Game",
    price=Decimal("9.99"),
    currency="usd",
    source=ProductSource.KINGUIN,
    supplier_ref="kg-9",
)
POOLED = Product(
    id="vouchers",
    name="Voucher",
    price=Decimal("5.00"),
    currency="usd",
    source=ProductSource.CUSTOM,
)


def catalogue(kit: Kit) -> dict[str, Product]:
    return {view.product.id: view.product for view in kit.checkout.list_products()}


def product_audit(kit: Kit) -> list[tuple[str, str, str]]:
    with kit.store.transaction() as tx:
        return [(a.action, a.detail, a.actor) for a in tx.list_audit(None)]  # type: ignore[arg-type]


def test_products_are_created_and_changed_together_and_audited(kit: Kit) -> None:
    assert kit.checkout.save_products([NEW, POOLED], actor="ops") == 2
    assert catalogue(kit)["new-game"] == NEW
    cheaper = replace(NEW, price=Decimal("7.50"))
    kit.checkout.save_products([cheaper])
    assert catalogue(kit)["new-game"].price == Decimal("7.50")
    actions = [(action, actor) for action, _, actor in product_audit(kit)]
    assert ("product_created", "ops") in actions
    assert ("product_changed", "admin") in actions
    details = [detail for _, detail, _ in product_audit(kit)]
    assert "new-game: New Game, 7.50 usd, kinguin kg-9" in details
    assert "vouchers: Voucher, 5.00 usd, custom" in details


def test_stock_is_the_pools_unclaimed_keys_and_none_for_kinguin(kit: Kit) -> None:
    kit.checkout.save_products([NEW, POOLED])
    kit.checkout.add_pool_keys("vouchers", ["V-1", "V-2", "V-2"])
    stock = {view.product.id: view.stock for view in kit.checkout.list_products()}
    assert stock["vouchers"] == 2
    assert stock["new-game"] is None


@pytest.mark.parametrize("products", [[], [NEW, replace(NEW, name="again")]])
def test_an_empty_list_or_a_repeated_id_is_refused(kit: Kit, products: list[Product]) -> None:
    before = catalogue(kit)
    with pytest.raises(InvalidInput, match="each id once"):
        kit.checkout.save_products(products)
    assert catalogue(kit) == before


def test_a_pool_with_keys_keeps_its_product_custom_and_nothing_is_written(kit: Kit) -> None:
    kit.checkout.save_products([POOLED])
    kit.checkout.add_pool_keys("vouchers", ["V-1"])
    as_kinguin = replace(POOLED, source=ProductSource.KINGUIN, supplier_ref="kg-1")
    with pytest.raises(InvalidInput, match="still has keys"):
        kit.checkout.save_products([NEW, as_kinguin])
    assert "new-game" not in catalogue(kit)
    assert catalogue(kit)["vouchers"].source is ProductSource.CUSTOM


def test_an_empty_pools_product_may_become_a_kinguin_one(kit: Kit) -> None:
    kit.checkout.save_products([POOLED])
    as_kinguin = replace(POOLED, source=ProductSource.KINGUIN, supplier_ref="kg-1")
    kit.checkout.save_products([as_kinguin])
    assert catalogue(kit)["vouchers"].supplier_ref == "kg-1"
