"""The outbox: moving an order by the chart and writing the jobs the move asks for.

Every move of an order goes through ``transition`` (the chart decides it) and lands in
the same store transaction as the jobs its effects enqueue, so a crash can delay a job,
never lose or double it. One job per (kind, order): enqueueing again is a no-op, except
that a dead job starts over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from bitloot_core import chart
from bitloot_core.chart import Effect, OrderEvent
from bitloot_core.ports import StoreTx
from bitloot_core.service import stock
from bitloot_core.service.context import Context, order_of
from bitloot_core.values import Job, JobState, Order


def job_key(kind: chart.JobKind, order_id: str) -> str:
    return f"{kind}:{order_id}"


def enqueue(tx: StoreTx, order_id: str, effects: Sequence[Effect], now: datetime) -> None:
    for effect in effects:
        if effect is Effect.RELEASE_POOL_KEYS:
            stock.release(tx, order_of(tx, order_id))
            continue
        kind = chart.JOB_FOR_EFFECT[effect]
        key = job_key(kind, order_id)
        job = Job(
            key=key,
            kind=kind,
            order_id=order_id,
            state=JobState.PENDING,
            attempts=0,
            run_at=now,
            created_at=now,
        )
        if not tx.enqueue_job(job):
            existing = tx.get_job(key)
            if existing is not None and existing.state is JobState.DEAD:
                # A new start: the wait for keys is measured from here too.
                tx.update_job(
                    replace(
                        existing, state=JobState.PENDING, attempts=0, run_at=now, created_at=now
                    )
                )


def transition(ctx: Context, tx: StoreTx, order_id: str, event: OrderEvent, now: datetime) -> Order:
    """Apply ``event`` to the stored order as the chart says, with its jobs and audit."""
    order = order_of(tx, order_id)
    moved = chart.apply(order.status, order.flags, event)
    if not moved.applied:  # pragma: no cover - callers check the status in this tx
        ctx.audit(tx, order_id, "event_ignored", f"{event} on {order.status}")
        return order
    updated = tx.update_order(
        replace(order, status=moved.status, flags=moved.flags, updated_at=now)
    )
    enqueue(tx, order_id, moved.effects, now)
    ctx.audit(tx, order_id, str(event), moved.reason)
    return updated
