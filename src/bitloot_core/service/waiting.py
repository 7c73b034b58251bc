"""Orders waiting for a supplier's keys: what the admin sees of them.

A fulfillment whose supplier order is placed but whose keys are not delivered yet waits
(``jobs._keys_pending``) without using up attempts. Each wait is audited once, as
``keys_pending`` with ``describe``'s detail: the supplier's own order ids and, for a
pre-order, its release when the supplier says. ``waiting_for_keys`` lists the orders
waiting now, longest first, from their pending jobs and that audit entry.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Final

from bitloot_core.chart import JobKind
from bitloot_core.errors import KeysPending
from bitloot_core.service.context import Context
from bitloot_core.service.results import KeysWait
from bitloot_core.values import AuditEntry, JobState

AUDIT_ACTION: Final = "keys_pending"
_PREFIX: Final = f"{KeysPending.code}:"


def describe(exc: KeysPending) -> str:
    """The audit detail of a wait: one JSON object, readable as it stands."""
    return json.dumps(
        {
            "supplier_orders": list(exc.supplier_orders),
            "preorder": exc.preorder,
            "release_at": None if exc.release_at is None else exc.release_at.isoformat(),
            "message": exc.message,
        },
        ensure_ascii=False,
    )


def _described(entry: AuditEntry | None) -> dict[str, object]:
    """What ``describe`` wrote; an entry of another form (an older shop's) says nothing."""
    if entry is None:
        return {}
    try:
        detail = json.loads(entry.detail)
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}


def _release(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def waiting_for_keys(ctx: Context) -> list[KeysWait]:
    """Every order whose fulfillment waits for the supplier's keys now, longest first."""
    waits = []
    with ctx.store.transaction() as tx:
        for job in tx.list_jobs(state=JobState.PENDING):
            if job.kind is not JobKind.FULFILL or not (job.last_error or "").startswith(_PREFIX):
                continue
            order = tx.get_order(job.order_id)
            if order is None:
                continue
            entries = [e for e in tx.list_audit(job.order_id) if e.action == AUDIT_ACTION]
            last = entries[-1] if entries else None
            detail = _described(last)
            orders = detail.get("supplier_orders")
            waits.append(
                KeysWait(
                    order_id=order.id,
                    email=order.email,
                    status=order.status,
                    since=last.at if last is not None else job.created_at,
                    next_poll=job.run_at,
                    supplier_orders=tuple(str(o) for o in orders)
                    if isinstance(orders, list)
                    else (),
                    preorder=detail.get("preorder") is True,
                    release_at=_release(detail.get("release_at")),
                    last_error=job.last_error or "",
                )
            )
    return sorted(waits, key=lambda wait: (wait.since, wait.order_id))
