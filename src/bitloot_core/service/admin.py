"""Admin actions: looking into orders and jobs, and the audited decisions on held ones.

Whether a decision is allowed is the chart's (its admin guards); this module only
checks the admin's input, audits the decision and applies it.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Final

from bitloot_core import chart
from bitloot_core.chart import Flag, OrderEvent, OrderStatus
from bitloot_core.errors import InvalidInput, InvalidState
from bitloot_core.service.context import Context, order_of, payment_of
from bitloot_core.service.outbox import transition
from bitloot_core.service.results import AdminOrderView
from bitloot_core.values import Job, JobState, Order, Payment

MAX_NOTE_LENGTH: Final = 2000
# ``resolve``'s actions and the chart events they send.
RESOLUTIONS: Final = MappingProxyType(
    {"fulfill": OrderEvent.ADMIN_FULFILL, "refund": OrderEvent.ADMIN_REFUND}
)


def admin_order(ctx: Context, order_id: str) -> AdminOrderView:
    with ctx.store.transaction() as tx:
        order = order_of(tx, order_id)
        return AdminOrderView(
            order=order,
            payments=tx.list_payments(order_id=order_id),
            audit=tx.list_audit(order_id),
            webhooks=tx.list_webhooks(order_id),
            jobs=tx.list_jobs(order_id=order_id),
            reveals=tx.list_reveals(order_id),
        )


def list_orders(
    ctx: Context, *, status: OrderStatus | None, flag: Flag | None, limit: int
) -> list[Order]:
    with ctx.store.transaction() as tx:
        return tx.list_orders(status=status, flag=flag, limit=limit, newest_first=True)


def payments_of(ctx: Context, orders: Sequence[Order]) -> dict[str, Payment]:
    """The current payment of each order that has one, by order id."""
    with ctx.store.transaction() as tx:
        found = {o.id: payment_of(tx, o) for o in orders}
    return {order_id: payment for order_id, payment in found.items() if payment is not None}


def list_jobs(ctx: Context, *, state: JobState | None) -> list[Job]:
    with ctx.store.transaction() as tx:
        return tx.list_jobs(state=state)


def retry_fulfillment(ctx: Context, order_id: str, *, actor: str) -> Order:
    """Re-enqueue fulfillment of a paid order whose retries ran out."""
    now = ctx.clock.now()
    with ctx.store.transaction() as tx:
        order = order_of(tx, order_id)
        if order.status is not OrderStatus.PAID:
            raise InvalidState(f"only a paid order can be retried, this one is {order.status}")
        retry = chart.apply(order.status, order.flags, OrderEvent.ADMIN_RETRY_FULFILLMENT)
        if not retry.applied:  # the supplier canceled its order: refund it instead
            raise InvalidState(f"this order cannot be retried ({retry.reason})")
        ctx.audit(tx, order_id, "admin_retry_fulfillment", "re-enqueued", actor=actor)
        return transition(ctx, tx, order_id, OrderEvent.ADMIN_RETRY_FULFILLMENT, now)


def resend_email(ctx: Context, order_id: str, *, actor: str) -> Order:
    """Re-enqueue the completion email of a fulfilled order whose email job died."""
    now = ctx.clock.now()
    with ctx.store.transaction() as tx:
        order = order_of(tx, order_id)
        if not chart.apply(order.status, order.flags, OrderEvent.ADMIN_RESEND_EMAIL).applied:
            msg = "only a fulfilled order whose completion email failed can be resent"
            raise InvalidState(msg)
        ctx.audit(tx, order_id, "admin_resend_email", "re-enqueued", actor=actor)
        return transition(ctx, tx, order_id, OrderEvent.ADMIN_RESEND_EMAIL, now)


def resolve(ctx: Context, order_id: str, *, action: str, note: str, actor: str) -> Order:
    """Admin decision on a held order: ``fulfill`` or ``refund`` (the chart's admin guards
    say which orders are held: underpaid, paid late, or paid but not to be fulfilled)."""
    event = RESOLUTIONS.get(action)
    if event is None:
        raise InvalidInput("action must be 'fulfill' or 'refund'", code="invalid_action")
    if not isinstance(note, str) or len(note) > MAX_NOTE_LENGTH:
        raise InvalidInput(f"note must be a string of at most {MAX_NOTE_LENGTH} characters")
    now = ctx.clock.now()
    with ctx.store.transaction() as tx:
        order = order_of(tx, order_id)
        # Only a held order: the chart's guards say which.
        if not chart.apply(order.status, order.flags, event).applied:
            msg = (
                "only underpaid or paid-late orders, or paid ones whose product is "
                "unavailable, whose supplier order was canceled or whose supplier price is "
                f"over its limit, can be resolved, not this {order.status} one"
            )
            raise InvalidState(msg)
        ctx.audit(tx, order_id, f"admin_{action}", note or "-", actor=actor)
        return transition(ctx, tx, order_id, event, now)
