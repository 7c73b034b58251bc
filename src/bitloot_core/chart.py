"""The order state chart and the NOWPayments status mapping, as data.

This module never performs I/O, never reads a clock and never raises for an event that
is not in its tables: a webhook retried forever must not be able to trip on it.

Rules (decided; everything that moves an order lives in the tables below):

Rule 1. An order starts ``created``. Progress only moves forward:
        created < waiting < confirming < paid < fulfilled.
Rule 2. ``expired``, ``failed`` and ``underpaid`` are reachable only before ``paid``.
Rule 3. ``fulfilled``, ``expired``, ``failed`` and ``underpaid`` are terminal for automatic
        events (IPNs, the sweeper, the worker). Only an admin event moves an order out of
        one of them, and the service audits every admin event.
Rule 4. A pair (status, event) missing from ``TRANSITIONS`` is ignored: ``apply`` reports
        it as not applied and the caller audits it. Nothing here raises for it.
Rule 5. A full payment arriving for an order that can no longer be paid (expired, failed,
        underpaid) keeps the status and raises the ``paid_late`` flag so an admin decides.
Rule 6. Entering ``paid`` enqueues fulfillment; entering ``fulfilled`` enqueues the
        completion email (``ON_ENTER``).
Rule 7. Fulfillment retries exhausted leave the order ``paid`` with ``fulfillment_failed``;
        an admin retry clears the flag and enqueues fulfillment again.
Rule 8. A completion email whose retries ran out leaves the order ``fulfilled`` with
        ``email_failed``; an admin resend clears the flag and enqueues the email again.
Rule 9. Payment records follow their own forward-only order (``PAYMENT_RANK``);
        ``underpaid`` and ``failed`` records are final, except that a late full payment
        (rule 5) records the payment as ``finished``: the money did arrive.

Whether a ``finished`` or ``partially_paid`` IPN is a full payment (amount within the
underpay tolerance) is decided in ``bitloot_core.payments``; this module only sees the
resulting event.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


class OrderStatus(enum.StrEnum):
    CREATED = "created"
    WAITING = "waiting"
    CONFIRMING = "confirming"
    PAID = "paid"
    FULFILLED = "fulfilled"
    EXPIRED = "expired"
    FAILED = "failed"
    UNDERPAID = "underpaid"


class PaymentStatus(enum.StrEnum):
    """The payment record's status (the seed's constrained payment entity enum)."""

    CREATED = "created"
    WAITING = "waiting"
    CONFIRMED = "confirmed"
    FINISHED = "finished"
    UNDERPAID = "underpaid"
    FAILED = "failed"


class Flag(enum.StrEnum):
    """Facts kept beside the status (an order can carry several)."""

    PAID_LATE = "paid_late"
    OVERPAID = "overpaid"
    FULFILLMENT_FAILED = "fulfillment_failed"
    EMAIL_FAILED = "email_failed"
    REFUNDED = "refunded"
    MARKED = "marked"


class OrderEvent(enum.StrEnum):
    PAYMENT_OPENED = "payment_opened"
    IPN_WAITING = "ipn_waiting"
    IPN_CONFIRMING = "ipn_confirming"
    IPN_PAID_IN_FULL = "ipn_paid_in_full"
    IPN_PAID_SHORT = "ipn_paid_short"
    IPN_EXPIRED = "ipn_expired"
    IPN_FAILED = "ipn_failed"
    SWEEP_EXPIRED = "sweep_expired"
    FULFILLMENT_DONE = "fulfillment_done"
    FULFILLMENT_EXHAUSTED = "fulfillment_exhausted"
    EMAIL_EXHAUSTED = "email_exhausted"
    ADMIN_RETRY_FULFILLMENT = "admin_retry_fulfillment"
    ADMIN_FULFILL = "admin_fulfill"
    ADMIN_REFUND = "admin_refund"
    ADMIN_RESEND_EMAIL = "admin_resend_email"


class Effect(enum.StrEnum):
    """Work a transition asks for; the service turns these into outbox jobs."""

    ENQUEUE_FULFILLMENT = "enqueue_fulfillment"
    ENQUEUE_COMPLETION_EMAIL = "enqueue_completion_email"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """Where a (status, event) pair leads, and the flags it raises or clears."""

    target: OrderStatus
    raise_flags: frozenset[Flag] = frozenset()
    clear_flags: frozenset[Flag] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """The outcome of ``apply``: the new status and flags, and what to do about it."""

    applied: bool
    status: OrderStatus
    flags: frozenset[Flag]
    effects: tuple[Effect, ...]
    reason: str


S = OrderStatus
E = OrderEvent

INITIAL: Final = S.CREATED
TERMINAL: Final = frozenset({S.FULFILLED, S.EXPIRED, S.FAILED, S.UNDERPAID})
# Progress order of rule 1; the off-path statuses rank by the point they branch from.
PROGRESS: Final = MappingProxyType(
    {S.CREATED: 0, S.WAITING: 1, S.CONFIRMING: 2, S.PAID: 3, S.FULFILLED: 4}
)
AUTOMATIC_EVENTS: Final = frozenset(e for e in E if not e.value.startswith("admin_"))
ADMIN_EVENTS: Final = frozenset(E) - AUTOMATIC_EVENTS

_BEFORE_PAID = (S.CREATED, S.WAITING, S.CONFIRMING)
_LATE = frozenset({Flag.PAID_LATE})
_FULFILLMENT_FAILED = frozenset({Flag.FULFILLMENT_FAILED})
_EMAIL_FAILED = frozenset({Flag.EMAIL_FAILED})


def _table() -> dict[tuple[OrderStatus, OrderEvent], Rule]:
    t: dict[tuple[OrderStatus, OrderEvent], Rule] = {
        (S.CREATED, E.PAYMENT_OPENED): Rule(target=S.WAITING),
        (S.CREATED, E.IPN_WAITING): Rule(target=S.WAITING),
        (S.CREATED, E.SWEEP_EXPIRED): Rule(target=S.EXPIRED),
        (S.WAITING, E.SWEEP_EXPIRED): Rule(target=S.EXPIRED),
        (S.PAID, E.FULFILLMENT_DONE): Rule(target=S.FULFILLED, clear_flags=_FULFILLMENT_FAILED),
        (S.PAID, E.FULFILLMENT_EXHAUSTED): Rule(target=S.PAID, raise_flags=_FULFILLMENT_FAILED),
        (S.PAID, E.ADMIN_RETRY_FULFILLMENT): Rule(target=S.PAID, clear_flags=_FULFILLMENT_FAILED),
        (S.FULFILLED, E.EMAIL_EXHAUSTED): Rule(target=S.FULFILLED, raise_flags=_EMAIL_FAILED),
        (S.FULFILLED, E.ADMIN_RESEND_EMAIL): Rule(target=S.FULFILLED, clear_flags=_EMAIL_FAILED),
    }
    for status in _BEFORE_PAID:
        t[status, E.IPN_PAID_IN_FULL] = Rule(target=S.PAID)
        t[status, E.IPN_PAID_SHORT] = Rule(target=S.UNDERPAID)
        t[status, E.IPN_EXPIRED] = Rule(target=S.EXPIRED)
        t[status, E.IPN_FAILED] = Rule(target=S.FAILED)
    for status in (S.CREATED, S.WAITING, S.CONFIRMING):
        # confirming -> confirming is kept so a later confirmation still counts as applied
        # (the payment record moves from waiting to confirmed on it).
        t[status, E.IPN_CONFIRMING] = Rule(target=S.CONFIRMING)
    for status in (S.EXPIRED, S.FAILED, S.UNDERPAID):
        t[status, E.IPN_PAID_IN_FULL] = Rule(target=status, raise_flags=_LATE)
    # Admin resolutions of held orders (underpaid, or paid late after expiring/failing).
    for status in (S.UNDERPAID, S.EXPIRED, S.FAILED):
        t[status, E.ADMIN_FULFILL] = Rule(
            target=S.PAID, raise_flags=frozenset({Flag.MARKED}), clear_flags=_LATE
        )
        t[status, E.ADMIN_REFUND] = Rule(
            target=S.FAILED, raise_flags=frozenset({Flag.MARKED, Flag.REFUNDED}), clear_flags=_LATE
        )
    return t


TRANSITIONS: Final = MappingProxyType(_table())

ON_ENTER: Final = MappingProxyType(
    {
        S.PAID: (Effect.ENQUEUE_FULFILLMENT,),
        S.FULFILLED: (Effect.ENQUEUE_COMPLETION_EMAIL,),
    }
)
# Admin retries re-enter nothing, yet must enqueue their job again.
ON_EVENT: Final = MappingProxyType(
    {
        E.ADMIN_RETRY_FULFILLMENT: (Effect.ENQUEUE_FULFILLMENT,),
        E.ADMIN_RESEND_EMAIL: (Effect.ENQUEUE_COMPLETION_EMAIL,),
    }
)


# The inputs are finite (statuses x flag sets x events) and the function is pure, so its
# answers are memoised: an IPN decision is one dictionary lookup on the hot path.
@functools.cache
def apply(status: OrderStatus, flags: frozenset[Flag], event: OrderEvent) -> Transition:
    """Apply ``event`` to an order in ``status``; never raises."""
    rule = TRANSITIONS.get((status, event))
    if rule is None:
        reason = "terminal" if status in TERMINAL else "not in the chart"
        return Transition(
            applied=False, status=status, flags=flags, effects=(), reason=f"{reason}: ignored"
        )
    new_flags = (flags | rule.raise_flags) - rule.clear_flags
    effects: tuple[Effect, ...] = ON_EVENT.get(event, ())
    if rule.target != status:
        effects = ON_ENTER.get(rule.target, ()) + effects
    return Transition(
        applied=True,
        status=rule.target,
        flags=new_flags,
        effects=effects,
        reason=f"{status} -> {rule.target}",
    )


# --- NOWPayments ---------------------------------------------------------------------------


class IpnKind(enum.StrEnum):
    """What a provider status means for the order, before amounts are looked at."""

    WAITING = "waiting"
    CONFIRMING = "confirming"
    FINISHED = "finished"
    PARTIAL = "partial"
    EXPIRED = "expired"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderStatus:
    kind: IpnKind
    payment_status: PaymentStatus
    description: str


# The seed's 10-row table: provider status -> (meaning for the order, payment record status).
NOWPAYMENTS_STATUS: Final = MappingProxyType(
    {
        "waiting": ProviderStatus(
            kind=IpnKind.WAITING,
            payment_status=PaymentStatus.WAITING,
            description="Invoice created, waiting for payment",
        ),
        "confirming": ProviderStatus(
            kind=IpnKind.CONFIRMING,
            payment_status=PaymentStatus.WAITING,
            description="Payment detected, awaiting confirmations",
        ),
        "sending": ProviderStatus(
            kind=IpnKind.CONFIRMING,
            payment_status=PaymentStatus.WAITING,
            description="Transaction broadcasting to blockchain",
        ),
        "confirmed": ProviderStatus(
            kind=IpnKind.CONFIRMING,
            payment_status=PaymentStatus.CONFIRMED,
            description="Blockchain confirmed, not yet finished",
        ),
        "finished": ProviderStatus(
            kind=IpnKind.FINISHED,
            payment_status=PaymentStatus.FINISHED,
            description="Payment complete, fulfillment triggered",
        ),
        "partially_paid": ProviderStatus(
            kind=IpnKind.PARTIAL,
            payment_status=PaymentStatus.UNDERPAID,
            description="Customer sent less than required",
        ),
        "underpaid": ProviderStatus(
            kind=IpnKind.PARTIAL,
            payment_status=PaymentStatus.UNDERPAID,
            description="Equivalent to partially_paid",
        ),
        "expired": ProviderStatus(
            kind=IpnKind.EXPIRED,
            payment_status=PaymentStatus.FAILED,
            description="Payment window expired",
        ),
        "refunded": ProviderStatus(
            kind=IpnKind.FAILED,
            payment_status=PaymentStatus.FAILED,
            description="Admin-initiated refund (rare)",
        ),
        "failed": ProviderStatus(
            kind=IpnKind.FAILED,
            payment_status=PaymentStatus.FAILED,
            description="Payment rejected/failed",
        ),
    }
)

_KIND_EVENT: Final = MappingProxyType(
    {
        IpnKind.WAITING: E.IPN_WAITING,
        IpnKind.CONFIRMING: E.IPN_CONFIRMING,
        IpnKind.EXPIRED: E.IPN_EXPIRED,
        IpnKind.FAILED: E.IPN_FAILED,
    }
)


def provider_status(raw: str) -> ProviderStatus | None:
    """The mapping row for a provider status; None means "ignore and audit"."""
    return NOWPAYMENTS_STATUS.get(raw)


@functools.cache
def ipn_event(kind: IpnKind, *, paid_in_full: bool) -> OrderEvent:
    """The order event for an IPN of ``kind``; amounts decide finished/partial."""
    if kind in (IpnKind.FINISHED, IpnKind.PARTIAL):
        return E.IPN_PAID_IN_FULL if paid_in_full else E.IPN_PAID_SHORT
    return _KIND_EVENT[kind]


# Payment record statuses, rule 8.
PAYMENT_RANK: Final = MappingProxyType(
    {
        PaymentStatus.CREATED: 0,
        PaymentStatus.WAITING: 1,
        PaymentStatus.CONFIRMED: 2,
        PaymentStatus.FINISHED: 3,
        PaymentStatus.UNDERPAID: 3,
        PaymentStatus.FAILED: 3,
    }
)
PAYMENT_FINAL: Final = frozenset(
    {PaymentStatus.FINISHED, PaymentStatus.UNDERPAID, PaymentStatus.FAILED}
)


def advance_payment(current: PaymentStatus, proposed: PaymentStatus) -> PaymentStatus:
    """The payment record's next status: forward only, final statuses stay."""
    if current in PAYMENT_FINAL:
        return current
    return proposed if PAYMENT_RANK[proposed] > PAYMENT_RANK[current] else current


@functools.cache
def ipn_transition(
    status: OrderStatus, flags: frozenset[Flag], provider: str, paid_in_full: bool
) -> Transition | None:
    """The whole decision for one IPN: mapping row, event, transition (None: unknown status).

    Memoised like ``apply``; this is the webhook hot path.
    """
    row = provider_status(provider)
    if row is None:
        return None
    return apply(status, flags, ipn_event(row.kind, paid_in_full=paid_in_full))
