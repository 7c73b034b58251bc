"""The catalogue: products, whether each can be sold, and shop-owned key pools."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Final

from bitloot_core.errors import InvalidInput, NotFound
from bitloot_core.ports import StoreTx
from bitloot_core.service.context import Context
from bitloot_core.service.results import ProductView
from bitloot_core.values import AuditEntry, Product, ProductSource

MAX_KEY_LENGTH: Final = 4096


def list_products(ctx: Context) -> list[ProductView]:
    with ctx.store.transaction() as tx:
        return [
            ProductView(
                product=p,
                available=_available(tx, p),
                stock=tx.pool_size(p.id) if p.source is ProductSource.CUSTOM else None,
            )
            for p in tx.list_products()
        ]


def _available(tx: StoreTx, product: Product) -> bool:
    return product.source is ProductSource.KINGUIN or tx.pool_size(product.id) > 0


def save_product(ctx: Context, product: Product) -> None:
    with ctx.store.transaction() as tx:
        tx.upsert_product(product)


def save_products(ctx: Context, products: Sequence[Product], *, actor: str) -> int:
    """Create or change ``products`` together (all or none), each change audited.

    A product cannot change its source while its pool holds keys (they would be lost
    to it); the catalogue is otherwise the operator's to rewrite."""
    ids = [p.id for p in products]
    if not products or len(set(ids)) != len(ids):
        raise InvalidInput(
            "products must be a non-empty list, each id once", code="invalid_products"
        )
    with ctx.store.transaction() as tx:
        for product in products:
            before = tx.get_product(product.id)
            if (
                before is not None
                and before.source is ProductSource.CUSTOM
                and product.source is not ProductSource.CUSTOM
                and tx.pool_size(product.id) > 0
            ):
                raise InvalidInput(
                    f"{product.id} still has keys in its pool: it stays custom",
                    code="invalid_products",
                )
        for product in products:
            before = tx.get_product(product.id)
            tx.upsert_product(product)
            tx.add_audit(
                AuditEntry(
                    order_id=None,
                    at=ctx.clock.now(),
                    action="product_created" if before is None else "product_changed",
                    detail=_described(product),
                    actor=actor,
                )
            )
    return len(products)


def _described(product: Product) -> str:
    source = f"kinguin {product.supplier_ref}" if product.supplier_ref else str(product.source)
    return f"{product.id}: {product.name}, {product.price} {product.currency}, {source}"


def add_pool_keys(ctx: Context, product_id: str, keys: Sequence[str], *, actor: str) -> int:
    """Put shop-owned keys in the vault and add them to the product's pool."""
    cleaned = [k.strip() for k in keys]
    if not cleaned or any(not k or len(k) > MAX_KEY_LENGTH for k in cleaned):
        raise InvalidInput("keys must be a non-empty list of non-empty strings")
    with ctx.store.transaction() as tx:
        product = tx.get_product(product_id)
    if product is None:
        raise NotFound(f"no product {product_id!r}")
    if product.source is not ProductSource.CUSTOM:
        raise InvalidInput("only custom products have a key pool", code="not_custom")
    refs = []
    for key in dict.fromkeys(cleaned):  # the same key twice in one upload counts once
        # Named after the key itself, whatever the product (keyed, so the name reveals
        # nothing): uploading a key again, after a timeout say, or to a second product's
        # pool, finds it already pooled instead of selling it twice.
        digest = hmac.new(ctx.config.signing_key, f"pool-key\n{key}".encode(), "sha256")
        ref = f"pool/{digest.hexdigest()[:32]}"
        ctx.vault.put(ref, key.encode(), "text/plain")
        refs.append(ref)
    with ctx.store.transaction() as tx:
        added = tx.add_pool_keys(product_id, refs)
        tx.add_audit(
            AuditEntry(
                order_id=None,
                at=ctx.clock.now(),
                action="pool_keys_added",
                detail=f"{added} keys for {product_id}",
                actor=actor,
            )
        )
    return added
