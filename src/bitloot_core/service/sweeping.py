"""Sweeping and reconciling: the shop's own look at orders whose webhooks stopped.

The sweeper expires abandoned orders; reconciling asks the provider about open payments
that went quiet. Both apply the provider's answer like a webhook before deciding.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Final

from bitloot_core import chart, rules
from bitloot_core.chart import OrderEvent, OrderStatus
from bitloot_core.ports import StoreTx
from bitloot_core.service.context import Context, payment_of
from bitloot_core.service.outbox import transition
from bitloot_core.service.payment_updates import ask_provider
from bitloot_core.service.results import IpnResult
from bitloot_core.values import Order, Payment

_SWEEP_BATCH: Final = 1000
_RECONCILE_BATCH: Final = 500
_OPEN: Final = frozenset({OrderStatus.WAITING, OrderStatus.CONFIRMING})


def _expirable(ctx: Context, tx: StoreTx, cutoff: datetime) -> list[tuple[Order, Payment | None]]:
    """Sweepable orders past both their TTL and their payment's window (chart rule 13)."""
    now = ctx.clock.now()
    found = []
    for order in tx.list_orders(
        statuses=rules.SWEEPABLE, created_before=cutoff, limit=_SWEEP_BATCH
    ):
        payment = payment_of(tx, order)
        deadline = chart.expires_at(
            created_at=order.created_at,
            ttl=ctx.config.order_ttl,
            payment_opened_at=payment.created_at if payment is not None else None,
            valid_until=payment.valid_until if payment is not None else None,
        )
        if deadline <= now:
            found.append((order, payment))
    return found


def sweep(ctx: Context) -> list[str]:
    """Expire abandoned orders (created/waiting older than the TTL and past their
    payment's window); their payments fail.

    An order with a payment is expired only after the provider confirmed that nothing
    arrived: its answer is applied first, like an IPN, and an order it moved on (money
    on its way) is no longer abandoned. Without an answer, the order waits for the
    next sweep.
    """
    cutoff = ctx.clock.now() - ctx.config.order_ttl
    with ctx.store.transaction() as tx:
        candidates = _expirable(ctx, tx, cutoff)
    confirmed = {
        order.id
        for order, payment in candidates
        if payment is None or ask_provider(ctx, payment, source="sweep") is not None
    }
    now = ctx.clock.now()
    expired = []
    with ctx.store.transaction() as tx:
        # Read again: the provider's answers may have moved some orders on.
        for order, payment in _expirable(ctx, tx, cutoff):
            if order.id not in confirmed:
                continue
            transition(ctx, tx, order.id, OrderEvent.SWEEP_EXPIRED, now)
            if payment is not None:
                # The provider confirmed no money arrived: the record follows its table.
                event = OrderEvent.SWEEP_EXPIRED
                status = chart.payment_status(
                    payment.status, event, chart.apply(order.status, order.flags, event)
                )
                tx.update_payment(replace(payment, status=status, updated_at=now))
            expired.append(order.id)
    if expired:
        ctx.observer.observe("swept", count=len(expired))
    return expired


def reconcile(ctx: Context) -> list[IpnResult]:
    """Ask the provider about open payments whose IPNs stopped, and apply the answers."""
    cutoff = ctx.clock.now() - ctx.config.reconcile_after
    with ctx.store.transaction() as tx:
        stale = [
            payment
            for o in tx.list_orders(statuses=_OPEN, limit=_RECONCILE_BATCH)
            if o.updated_at <= cutoff and (payment := payment_of(tx, o)) is not None
        ]
    answers = (ask_provider(ctx, payment, source="reconcile") for payment in stale)
    return [result for result in answers if result is not None]
