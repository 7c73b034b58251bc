"""Fulfillment: buying a paid order's keys from the supplier or claiming them from the
shop's pool, storing them in the vault, and waking a fulfillment that waits for keys.

Runs from the outbox (the ``fulfill`` job), outside any transaction; every step is safe
to repeat, and the lease is checked again right before a purchase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Final

from bitloot_core.chart import Flag, JobKind, OrderEvent, OrderStatus
from bitloot_core.errors import PoolEmpty, SupplierError
from bitloot_core.service import stock
from bitloot_core.service.context import Context, order_of
from bitloot_core.service.leases import Lease, renew_in
from bitloot_core.service.outbox import job_key, transition
from bitloot_core.values import (
    DeliveredKey,
    JobState,
    Order,
    OrderItem,
    ProductSource,
    WebhookLogEntry,
    WebhookOutcome,
)

# A supplier's external id is ORDER, ORDER-PRODUCT, or either with -partN: heads of at
# most this many dash-separated pieces (of an order id with dashes too) are looked up.
MAX_ID_PIECES: Final = 8


def _cancelled(ctx: Context, order: Order) -> bool:
    """True (and audited) when the order left ``paid`` other than by being fulfilled:
    refunded (chart rule 11), so its fulfillment never happens."""
    if order.status is OrderStatus.PAID:
        return False
    if order.status is not OrderStatus.FULFILLED:
        with ctx.store.transaction() as tx:
            ctx.audit(tx, order.id, "fulfillment_cancelled", f"the order is {order.status}")
    return True


def fulfill(ctx: Context, lease: Lease) -> None:
    order_id = lease.job.order_id
    with ctx.store.transaction() as tx:
        order = order_of(tx, order_id)
    if _cancelled(ctx, order):
        return  # fulfilled already (a job run again after a crash), or refunded
    delivered = {item.id: item.keys for item in order.items if item.delivered}
    kinguin = [i for i in order.items if i.source is ProductSource.KINGUIN and not i.delivered]
    if kinguin:
        # A purchase must never run on two workers at once, nor for a refunded order:
        # the lease and the order are checked in one read right before it.
        with ctx.store.transaction() as tx:
            renew_in(ctx, tx, lease)
            order = order_of(tx, order_id)
        if _cancelled(ctx, order):
            return
        delivered.update(_from_supplier(ctx, order, kinguin))
    for item in order.items:
        if item.source is ProductSource.CUSTOM and not item.delivered:
            delivered[item.id] = _claim_from_pool(ctx, order, item)
    now = ctx.clock.now()
    with ctx.store.transaction() as tx:
        current = order_of(tx, order_id)
        if current.status is OrderStatus.FULFILLED:
            return  # another worker, which took over the job, fulfilled it meanwhile
        if current.status is not OrderStatus.PAID:
            # Refunded while the keys were bought: the supplier's stay on the order (none
            # lost) for the admin, the pool's go back, and nothing is sent.
            bought = {i.id: delivered[i.id] for i in kinguin if i.id in delivered}
            items = tuple(replace(i, keys=bought.get(i.id, i.keys)) for i in current.items)
            tx.update_order(replace(current, items=items, updated_at=now))
            stock.release(tx, current)
            ctx.audit(
                tx,
                order_id,
                "fulfillment_cancelled",
                f"the order became {current.status} during fulfillment; its keys are kept",
            )
            return
        items = tuple(replace(i, keys=delivered.get(i.id, i.keys)) for i in current.items)
        tx.update_order(replace(current, items=items, updated_at=now))
        transition(ctx, tx, order_id, OrderEvent.FULFILLMENT_DONE, now)
    ctx.observer.observe("order_fulfilled", order_id=order_id)


def _from_supplier(
    ctx: Context, order: Order, items: Sequence[OrderItem]
) -> dict[str, tuple[DeliveredKey, ...]]:
    wanted: dict[str, int] = {}
    for item in items:
        ref = item.supplier_ref or item.product_id
        wanted[ref] = wanted.get(ref, 0) + item.quantity
    # Never above the sale price (chart rule 16) unless the admin approved this order's.
    limits: dict[str, Decimal] | None = None
    if Flag.PRICE_APPROVED not in order.flags:
        limits = {}
        for item in items:
            ref = item.supplier_ref or item.product_id
            limits[ref] = min(limits.get(ref, item.unit_price), item.unit_price)
    keys = ctx.supplier.fulfill(order_id=order.id, lines=sorted(wanted.items()), max_prices=limits)
    by_product: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        by_product.setdefault(key.product_ref, []).append(index)
    result: dict[str, tuple[DeliveredKey, ...]] = {}
    for item in items:
        ref = item.supplier_ref or item.product_id
        indexes = by_product.get(ref, [])
        if len(indexes) < item.quantity:
            raise SupplierError(
                f"supplier returned {len(indexes)} keys for {ref}, {item.quantity} ordered",
                kind="MissingKeys",
            )
        taken, by_product[ref] = indexes[: item.quantity], indexes[item.quantity :]
        stored = []
        for n, index in enumerate(taken):
            vault_ref = f"orders/{order.id}/{item.id}/{n}"
            ctx.vault.put(vault_ref, keys[index].secret, keys[index].content_type)
            stored.append(DeliveredKey(ref=vault_ref, content_type=keys[index].content_type))
        result[item.id] = tuple(stored)
    return result


def _claim_from_pool(ctx: Context, order: Order, item: OrderItem) -> tuple[DeliveredKey, ...]:
    refs = []
    with ctx.store.transaction() as tx:
        for n in range(item.quantity):
            ref = tx.claim_pool_key(item.product_id, stock.claimant(order.id, item.id, n))
            if ref is None:
                raise PoolEmpty(f"the key pool of {item.product_id!r} is empty")
            refs.append(ref)
    return tuple(DeliveredKey(ref=ref) for ref in refs)


def wake_fulfillment(ctx: Context, order_id: str) -> bool:
    """Run the order's waiting fulfillment now (the supplier says its order moved).

    True when a pending fulfillment job was made due; anything else (no such order,
    fulfilled already, the job running) is left alone: waking is only a hint.
    """
    now = ctx.clock.now()
    with ctx.store.transaction() as tx:
        job = tx.get_job(job_key(JobKind.FULFILL, order_id))
        if job is None or job.state is not JobState.PENDING:
            return False
        if job.run_at > now:
            tx.update_job(replace(job, run_at=now))
        ctx.audit(tx, order_id, "fulfillment_woken", "the supplier's order moved")
    ctx.observer.observe("fulfillment_woken", order_id=order_id)
    return True


def supplier_webhook(
    ctx: Context, *, external_id: str, status: str, dedupe_key: str, body_sha256: str
) -> str | None:
    """A verified supplier webhook saying its order ``external_id`` moved to ``status``.

    Only a hint: fulfillment asks the supplier itself, so an old webhook arriving after
    a newer one changes nothing. Deduplicated on ``dedupe_key``; the first delivery
    wakes the order's waiting fulfillment. Logged as ``applied`` when it woke one,
    ``ignored`` when there was nothing to wake (or the order is none of ours),
    ``duplicate`` when seen before. Returns our order id (None: not ours).
    ``external_id`` is our order id, or ``ORDER-PRODUCT`` for a supplier order holding
    one product on its own, either followed by ``-partN`` for a further request.
    """
    now = ctx.clock.now()
    pieces = external_id.split("-")
    # The id itself, then each shorter head: ORDER-PRODUCT-part2, ORDER-PRODUCT, ORDER.
    heads = ["-".join(pieces[:n]) for n in range(min(len(pieces) - 1, MAX_ID_PIECES), 0, -1)]
    candidates = [external_id, *heads]
    with ctx.store.transaction() as tx:
        order = next((o for c in candidates if (o := tx.get_order(c)) is not None), None)
        order_id = order.id if order is not None else None
        first = order is not None and tx.claim_ipn(f"supplier:{dedupe_key}", now)
    outcome = WebhookOutcome.IGNORED
    if order_id is not None and not first:
        outcome = WebhookOutcome.DUPLICATE
    elif order_id is not None and wake_fulfillment(ctx, order_id):
        outcome = WebhookOutcome.APPLIED
    with ctx.store.transaction() as tx:
        tx.log_webhook(
            WebhookLogEntry(
                received_at=now,
                body_sha256=body_sha256,
                signature_valid=True,
                outcome=outcome,
                reason=f"supplier order {external_id} is {status}",
                order_id=order_id,
                provider_status=status,
                dedupe_key=f"supplier:{dedupe_key}",
            )
        )
    ctx.observer.observe("supplier_webhook", outcome=str(outcome), order_id=order_id)
    return order_id
