"""The order state chart, the payment record's chart and the job kinds, as data.

This module never performs I/O, never reads a clock and never raises for an event that
is not in its tables: a webhook retried forever must not be able to trip on it.

Rules (decided; everything that moves an order or its payment record lives in the tables
below, and the service only applies what they answer):

Rule 1. An order starts ``created``. Progress only moves forward:
        created < waiting < confirming < paid < fulfilled.
Rule 2. ``expired``, ``failed`` and ``underpaid`` are reachable only before ``paid``,
        except that a refund fails a ``paid`` order (rule 11).
Rule 3. ``fulfilled``, ``expired``, ``failed`` and ``underpaid`` are terminal for automatic
        events (payment updates, the sweeper, the worker). Only an admin event moves an
        order out of one of them, and the service audits every admin event.
Rule 4. A pair (status, event) missing from ``TRANSITIONS``, or whose rule needs a flag
        the order does not carry (``Rule.requires``: the admin guards), is ignored:
        ``apply`` reports it as not applied and the caller audits it (or, for an admin
        request, refuses it). Nothing here raises for it.
Rule 5. Payment providers speak through generic payment events (``payment_*``); what a
        provider's own status means is the provider's table (``bitloot_core.providers``),
        and whether money arrived in full, short or over is decided from the amounts
        before the chart sees the event (``payment_paid_in_full``, ``payment_paid_short``,
        ``payment_overpaid``). The flags those outcomes carry are raised by the rules here.
Rule 6. A full payment arriving for an order that can no longer be paid (expired, failed,
        underpaid) keeps the status and raises ``paid_late`` so an admin decides; the
        payment record is then ``finished`` (``Rule.payment``): the money did arrive.
Rule 7. Entering ``paid`` enqueues fulfillment; entering ``fulfilled`` enqueues the
        completion email (``ON_ENTER``). Each job kind (``JOBS``) names its retry schedule
        and the event sent when its retries run out.
Rule 8. Fulfillment retries exhausted leave the order ``paid`` with ``fulfillment_failed``;
        an admin retry clears the flag and enqueues fulfillment again.
Rule 9. A completion email whose retries ran out leaves the order ``fulfilled`` with
        ``email_failed``; an admin resend (allowed only then) clears the flag and enqueues
        the email again.
Rule 10. Payment records follow their own table (``PAYMENT_TRANSITIONS``): forward only
        (``PAYMENT_RANK``); ``finished``, ``underpaid`` and ``failed`` are final, except
        where an order rule sets the record (rule 6).
Rule 11. A refund (``payment_refunded``) reaches the order whatever its status: before
        ``paid`` and on a ``paid`` order (whose fulfillment is then cancelled) the order
        is ``failed``; a ``fulfilled`` or held order keeps its status (and keys). Each
        raises ``refunded``; a refunded late payment leaves nothing for an admin to fulfill.
Rule 12. A second payment in full on top of one already counted (a repeated deposit, or
        the customer paying again into the same payment) raises ``paid_twice`` on an
        order that was paid (``paid``, ``fulfilled``, or held with its money in): the
        admin returns it. It never buys the keys twice.
Rule 13. An order expires (``sweep_expired``) only once both its own TTL and its
        payment's window have run out (``expires_at``): a payment opened late extends
        the order up to the provider's ``valid_until`` (at most a day after the payment
        opened), or the TTL counted from the payment when the provider names no window.
Rule 14. A custom product's pool keys are reserved for an order when its payment opens
        (no payment is opened for keys the pool does not hold: ``sold_out``) and put back
        (``release_pool_keys``) when the order enters ``expired``, ``failed`` or
        ``underpaid`` with them undelivered; fulfillment takes the reserved keys.
Rule 15. The supplier's refusals that no retry changes end the fulfillment job at once,
        each with its own event and flag (``JobRule.gives_up_on``): an unavailable product
        (out of stock, short of the quantity, over the price) raises
        ``product_unavailable``, a supplier order it canceled or refunded raises
        ``supplier_order_canceled``; the order stays ``paid`` and nothing is bought. The
        admin retries an unavailable product once it is back (never a canceled order: no
        re-buy under the same id), or refunds either: the order is ``failed``, ``marked``
        and ``refunded``.
Rule 16. A Kinguin product is never bought above its limit, the order line's sale price:
        when the supplier asks more, nothing is bought and the order stays ``paid`` with
        ``price_guard``. The admin approves the purchase (``admin_fulfill``: once, the flag
        gives way to ``price_approved`` and ``marked``, and the next purchase takes the
        supplier's price) or refunds (``failed``, ``marked``, ``refunded``).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
    PAID_TWICE = "paid_twice"
    PRODUCT_UNAVAILABLE = "product_unavailable"
    SUPPLIER_ORDER_CANCELED = "supplier_order_canceled"
    PRICE_GUARD = "price_guard"
    PRICE_APPROVED = "price_approved"


class OrderEvent(enum.StrEnum):
    PAYMENT_OPENED = "payment_opened"
    PAYMENT_WAITING = "payment_waiting"
    PAYMENT_CONFIRMING = "payment_confirming"
    PAYMENT_CONFIRMED = "payment_confirmed"
    PAYMENT_PAID_IN_FULL = "payment_paid_in_full"
    PAYMENT_OVERPAID = "payment_overpaid"
    PAYMENT_PAID_SHORT = "payment_paid_short"
    PAYMENT_EXPIRED = "payment_expired"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_REFUNDED = "payment_refunded"
    PAYMENT_PAID_AGAIN = "payment_paid_again"
    SWEEP_EXPIRED = "sweep_expired"
    FULFILLMENT_DONE = "fulfillment_done"
    FULFILLMENT_EXHAUSTED = "fulfillment_exhausted"
    FULFILLMENT_UNAVAILABLE = "fulfillment_unavailable"
    FULFILLMENT_CANCELED = "fulfillment_canceled"
    FULFILLMENT_PRICE_GUARD = "fulfillment_price_guard"
    EMAIL_EXHAUSTED = "email_exhausted"
    ADMIN_RETRY_FULFILLMENT = "admin_retry_fulfillment"
    ADMIN_FULFILL = "admin_fulfill"
    ADMIN_REFUND = "admin_refund"
    ADMIN_RESEND_EMAIL = "admin_resend_email"


class PaymentKind(enum.StrEnum):
    """What a provider's status means, in every provider's words (rule 5).

    ``paid`` means money arrived; the amounts decide whether it is in full, short or over.
    """

    WAITING = "waiting"
    CONFIRMING = "confirming"
    CONFIRMED = "confirmed"
    PAID = "paid"
    EXPIRED = "expired"
    FAILED = "failed"
    REFUNDED = "refunded"


class Effect(enum.StrEnum):
    """Work a transition asks for; the service turns these into outbox jobs (``JOBS``)."""

    ENQUEUE_FULFILLMENT = "enqueue_fulfillment"
    ENQUEUE_COMPLETION_EMAIL = "enqueue_completion_email"
    # Done in the transaction that makes the move, not by a job (rule 14).
    RELEASE_POOL_KEYS = "release_pool_keys"


class JobKind(enum.StrEnum):
    FULFILL = "fulfill"
    COMPLETION_EMAIL = "completion_email"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """Where a (status, event) pair leads, and the flags it needs, raises or clears."""

    target: OrderStatus
    raise_flags: frozenset[Flag] = frozenset()
    clear_flags: frozenset[Flag] = frozenset()
    # Admin guards: the flags the order must carry for the rule to apply, at least one
    # of ``requires_any`` (when given), and none of ``forbids``.
    requires: frozenset[Flag] = frozenset()
    requires_any: frozenset[Flag] = frozenset()
    forbids: frozenset[Flag] = frozenset()
    # The payment record's status after the rule, when the rule decides it (rule 6).
    payment: PaymentStatus | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """The outcome of ``apply``: the new status and flags, and what to do about it."""

    applied: bool
    status: OrderStatus
    flags: frozenset[Flag]
    effects: tuple[Effect, ...]
    reason: str
    payment: PaymentStatus | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRule:
    """One kind of outbox job: what enqueues it, what it does, and how it gives up."""

    enqueued_by: Effect
    runs: str
    # The ``CheckoutConfig`` field holding its retry schedule.
    retries: str
    # The event sent when the job dies: ``exhausted``, unless the error that killed it
    # (by its code) has an event of its own in ``gives_up_on``.
    exhausted: OrderEvent
    gives_up_on: Mapping[str, OrderEvent] = field(default_factory=lambda: MappingProxyType({}))

    def gives_up(self, error_code: str) -> OrderEvent:
        """The event sent when the job dies of the error whose code is ``error_code``."""
        return self.gives_up_on.get(error_code, self.exhausted)


S = OrderStatus
E = OrderEvent
P = PaymentStatus
K = PaymentKind

INITIAL: Final = S.CREATED
TERMINAL: Final = frozenset({S.FULFILLED, S.EXPIRED, S.FAILED, S.UNDERPAID})
# Progress order of rule 1; the off-path statuses rank by the point they branch from.
PROGRESS: Final = MappingProxyType(
    {S.CREATED: 0, S.WAITING: 1, S.CONFIRMING: 2, S.PAID: 3, S.FULFILLED: 4}
)
AUTOMATIC_EVENTS: Final = frozenset(e for e in E if not e.value.startswith("admin_"))
ADMIN_EVENTS: Final = frozenset(E) - AUTOMATIC_EVENTS
PAYMENT_EVENTS: Final = frozenset(e for e in E if e.value.startswith("payment_")) - {
    E.PAYMENT_OPENED
}

_BEFORE_PAID = (S.CREATED, S.WAITING, S.CONFIRMING)
_HELD = (S.EXPIRED, S.FAILED, S.UNDERPAID)
_LATE = frozenset({Flag.PAID_LATE})
_OVERPAID = frozenset({Flag.OVERPAID})
_FULFILLMENT_FAILED = frozenset({Flag.FULFILLMENT_FAILED})
_EMAIL_FAILED = frozenset({Flag.EMAIL_FAILED})
_UNAVAILABLE = frozenset({Flag.PRODUCT_UNAVAILABLE})
_CANCELED = frozenset({Flag.SUPPLIER_ORDER_CANCELED})
_PRICE_GUARD = frozenset({Flag.PRICE_GUARD})
_REFUNDED = frozenset({Flag.REFUNDED})
_TWICE = frozenset({Flag.PAID_TWICE})


def _refund(target: OrderStatus) -> Rule:
    # Money returned: nothing late is left for an admin to fulfill.
    return Rule(target=target, raise_flags=_REFUNDED, clear_flags=_LATE)


def _table() -> dict[tuple[OrderStatus, OrderEvent], Rule]:
    t: dict[tuple[OrderStatus, OrderEvent], Rule] = {
        (S.CREATED, E.PAYMENT_OPENED): Rule(target=S.WAITING),
        (S.CREATED, E.PAYMENT_WAITING): Rule(target=S.WAITING),
        (S.CREATED, E.SWEEP_EXPIRED): Rule(target=S.EXPIRED),
        (S.WAITING, E.SWEEP_EXPIRED): Rule(target=S.EXPIRED),
        (S.PAID, E.FULFILLMENT_DONE): Rule(target=S.FULFILLED, clear_flags=_FULFILLMENT_FAILED),
        (S.PAID, E.FULFILLMENT_EXHAUSTED): Rule(target=S.PAID, raise_flags=_FULFILLMENT_FAILED),
        (S.PAID, E.FULFILLMENT_UNAVAILABLE): Rule(target=S.PAID, raise_flags=_UNAVAILABLE),
        (S.PAID, E.FULFILLMENT_CANCELED): Rule(target=S.PAID, raise_flags=_CANCELED),
        (S.PAID, E.FULFILLMENT_PRICE_GUARD): Rule(target=S.PAID, raise_flags=_PRICE_GUARD),
        # The admin approves the supplier's price, once (rule 16).
        (S.PAID, E.ADMIN_FULFILL): Rule(
            target=S.PAID,
            requires=_PRICE_GUARD,
            raise_flags=frozenset({Flag.PRICE_APPROVED, Flag.MARKED}),
            clear_flags=_PRICE_GUARD | _FULFILLMENT_FAILED,
        ),
        # Retry once the product is back (rule 15); never after the supplier canceled.
        (S.PAID, E.ADMIN_RETRY_FULFILLMENT): Rule(
            target=S.PAID,
            forbids=_CANCELED | _PRICE_GUARD,
            clear_flags=_FULFILLMENT_FAILED | _UNAVAILABLE,
        ),
        # A paid order that cannot be fulfilled is refunded by the admin (rule 15).
        (S.PAID, E.ADMIN_REFUND): Rule(
            target=S.FAILED,
            requires_any=_UNAVAILABLE | _CANCELED | _PRICE_GUARD,
            raise_flags=frozenset({Flag.MARKED, Flag.REFUNDED}),
            clear_flags=_UNAVAILABLE | _CANCELED | _PRICE_GUARD | _FULFILLMENT_FAILED,
        ),
        (S.FULFILLED, E.EMAIL_EXHAUSTED): Rule(target=S.FULFILLED, raise_flags=_EMAIL_FAILED),
        (S.FULFILLED, E.ADMIN_RESEND_EMAIL): Rule(
            target=S.FULFILLED, requires=_EMAIL_FAILED, clear_flags=_EMAIL_FAILED
        ),
    }
    for status in _BEFORE_PAID:
        t[status, E.PAYMENT_PAID_IN_FULL] = Rule(target=S.PAID)
        t[status, E.PAYMENT_OVERPAID] = Rule(target=S.PAID, raise_flags=_OVERPAID)
        t[status, E.PAYMENT_PAID_SHORT] = Rule(target=S.UNDERPAID)
        t[status, E.PAYMENT_EXPIRED] = Rule(target=S.EXPIRED)
        t[status, E.PAYMENT_FAILED] = Rule(target=S.FAILED)
        t[status, E.PAYMENT_REFUNDED] = _refund(S.FAILED)
        # confirming -> confirming is kept so a later confirmation still counts as applied
        # (the payment record moves from waiting to confirmed on it).
        t[status, E.PAYMENT_CONFIRMING] = Rule(target=S.CONFIRMING)
        t[status, E.PAYMENT_CONFIRMED] = Rule(target=S.CONFIRMING)
    for status in _HELD:
        t[status, E.PAYMENT_PAID_IN_FULL] = Rule(
            target=status, raise_flags=_LATE, payment=P.FINISHED
        )
        t[status, E.PAYMENT_OVERPAID] = Rule(
            target=status, raise_flags=_LATE | _OVERPAID, payment=P.FINISHED
        )
    # Refunds (rule 11) and second payments (rule 12) after the money was counted.
    t[S.PAID, E.PAYMENT_REFUNDED] = _refund(S.FAILED)
    t[S.FULFILLED, E.PAYMENT_REFUNDED] = _refund(S.FULFILLED)
    for status in _HELD:
        t[status, E.PAYMENT_REFUNDED] = _refund(status)
    for status in (S.PAID, S.FULFILLED, *_HELD):
        t[status, E.PAYMENT_PAID_AGAIN] = Rule(target=status, raise_flags=_TWICE)
    # Admin resolutions of held orders: underpaid ones, and expired or failed ones only
    # once money arrived late (the guard is the rule's, not the caller's).
    for status in _HELD:
        needs = frozenset() if status is S.UNDERPAID else _LATE
        t[status, E.ADMIN_FULFILL] = Rule(
            target=S.PAID, requires=needs, raise_flags=frozenset({Flag.MARKED}), clear_flags=_LATE
        )
        t[status, E.ADMIN_REFUND] = Rule(
            target=S.FAILED,
            requires=needs,
            raise_flags=frozenset({Flag.MARKED, Flag.REFUNDED}),
            clear_flags=_LATE,
        )
    return t


TRANSITIONS: Final = MappingProxyType(_table())

ON_ENTER: Final = MappingProxyType(
    {
        S.PAID: (Effect.ENQUEUE_FULFILLMENT,),
        S.FULFILLED: (Effect.ENQUEUE_COMPLETION_EMAIL,),
        S.EXPIRED: (Effect.RELEASE_POOL_KEYS,),
        S.FAILED: (Effect.RELEASE_POOL_KEYS,),
        S.UNDERPAID: (Effect.RELEASE_POOL_KEYS,),
    }
)
# Admin retries re-enter nothing, yet must enqueue their job again.
ON_EVENT: Final = MappingProxyType(
    {
        E.ADMIN_RETRY_FULFILLMENT: (Effect.ENQUEUE_FULFILLMENT,),
        E.ADMIN_RESEND_EMAIL: (Effect.ENQUEUE_COMPLETION_EMAIL,),
        # Entering paid enqueues it already; an approved price (paid -> paid) must too.
        E.ADMIN_FULFILL: (Effect.ENQUEUE_FULFILLMENT,),
    }
)

JOBS: Final = MappingProxyType(
    {
        JobKind.FULFILL: JobRule(
            enqueued_by=Effect.ENQUEUE_FULFILLMENT,
            runs="buy the keys from the supplier or claim them from the pool",
            retries="fulfillment_retries",
            exhausted=E.FULFILLMENT_EXHAUSTED,
            # The supplier's refusals that no retry changes (rule 15).
            gives_up_on=MappingProxyType(
                {
                    "product_unavailable": E.FULFILLMENT_UNAVAILABLE,
                    "supplier_order_canceled": E.FULFILLMENT_CANCELED,
                    "price_guard": E.FULFILLMENT_PRICE_GUARD,
                }
            ),
        ),
        JobKind.COMPLETION_EMAIL: JobRule(
            enqueued_by=Effect.ENQUEUE_COMPLETION_EMAIL,
            runs="send the one completion email",
            retries="email_retries",
            exhausted=E.EMAIL_EXHAUSTED,
        ),
    }
)
JOB_FOR_EFFECT: Final = MappingProxyType({rule.enqueued_by: kind for kind, rule in JOBS.items()})


def _refused(status: OrderStatus, flags: frozenset[Flag], reason: str) -> Transition:
    return Transition(applied=False, status=status, flags=flags, effects=(), reason=reason)


# The inputs are finite (statuses x flag sets x events) and the function is pure, so its
# answers are memoised: a payment decision is one dictionary lookup on the hot path.
@functools.cache
def apply(status: OrderStatus, flags: frozenset[Flag], event: OrderEvent) -> Transition:
    """Apply ``event`` to an order in ``status``; never raises."""
    rule = TRANSITIONS.get((status, event))
    if rule is None:
        reason = "terminal" if status in TERMINAL else "not in the chart"
        return _refused(status, flags, f"{reason}: ignored")
    missing = rule.requires - flags
    if missing:
        return _refused(status, flags, f"needs {', '.join(sorted(missing))}: ignored")
    if rule.requires_any and not rule.requires_any & flags:
        return _refused(status, flags, f"needs {' or '.join(sorted(rule.requires_any))}: ignored")
    forbidden = rule.forbids & flags
    if forbidden:
        return _refused(status, flags, f"not with {', '.join(sorted(forbidden))}: ignored")
    new_flags = (flags | rule.raise_flags) - rule.clear_flags
    effects: tuple[Effect, ...] = ON_EVENT.get(event, ())
    if rule.target != status:
        entered = ON_ENTER.get(rule.target, ())
        effects = entered + tuple(e for e in effects if e not in entered)
    return Transition(
        applied=True,
        status=rule.target,
        flags=new_flags,
        effects=effects,
        reason=f"{status} -> {rule.target}",
        payment=rule.payment,
    )


# --- payment events ------------------------------------------------------------------------

_KIND_EVENT: Final = MappingProxyType(
    {
        K.WAITING: E.PAYMENT_WAITING,
        K.CONFIRMING: E.PAYMENT_CONFIRMING,
        K.CONFIRMED: E.PAYMENT_CONFIRMED,
        K.EXPIRED: E.PAYMENT_EXPIRED,
        K.FAILED: E.PAYMENT_FAILED,
        K.REFUNDED: E.PAYMENT_REFUNDED,
    }
)


class AmountOutcome(enum.StrEnum):
    """How the money that arrived compares with the amount due."""

    SHORT = "short"
    IN_FULL = "in_full"
    OVER = "over"
    # A second payment in full on top of one already counted (rule 12).
    AGAIN = "again"


_AMOUNT_EVENT: Final = MappingProxyType(
    {
        AmountOutcome.SHORT: E.PAYMENT_PAID_SHORT,
        AmountOutcome.IN_FULL: E.PAYMENT_PAID_IN_FULL,
        AmountOutcome.OVER: E.PAYMENT_OVERPAID,
        AmountOutcome.AGAIN: E.PAYMENT_PAID_AGAIN,
    }
)


def payment_event(kind: PaymentKind, amount: AmountOutcome) -> OrderEvent:
    """The order event for a payment update of ``kind``; amounts decide a ``paid`` one."""
    if kind is K.PAID:
        return _AMOUNT_EVENT[amount]
    return _KIND_EVENT[kind]


# --- the payment record ------------------------------------------------------------------

PAYMENT_RANK: Final = MappingProxyType(
    {P.CREATED: 0, P.WAITING: 1, P.CONFIRMED: 2, P.FINISHED: 3, P.UNDERPAID: 3, P.FAILED: 3}
)
PAYMENT_FINAL: Final = frozenset({P.FINISHED, P.UNDERPAID, P.FAILED})
# The record status each event proposes; the table keeps the moves that go forward.
_PROPOSED: Final = MappingProxyType(
    {
        E.PAYMENT_WAITING: P.WAITING,
        E.PAYMENT_CONFIRMING: P.WAITING,
        E.PAYMENT_CONFIRMED: P.CONFIRMED,
        E.PAYMENT_PAID_IN_FULL: P.FINISHED,
        E.PAYMENT_OVERPAID: P.FINISHED,
        E.PAYMENT_PAID_SHORT: P.UNDERPAID,
        E.PAYMENT_EXPIRED: P.FAILED,
        E.PAYMENT_FAILED: P.FAILED,
        E.PAYMENT_REFUNDED: P.FAILED,
        # The sweeper expires an order only once the provider said nothing arrived.
        E.SWEEP_EXPIRED: P.FAILED,
    }
)


def _payment_table() -> dict[tuple[PaymentStatus, OrderEvent], PaymentStatus]:
    return {
        (current, event): proposed
        for event, proposed in _PROPOSED.items()
        for current in P
        if current not in PAYMENT_FINAL and PAYMENT_RANK[proposed] > PAYMENT_RANK[current]
    }


PAYMENT_TRANSITIONS: Final = MappingProxyType(_payment_table())


def payment_status(
    current: PaymentStatus, event: OrderEvent, transition: Transition
) -> PaymentStatus:
    """The payment record's status after ``event`` moved its order by ``transition``."""
    if transition.applied and transition.payment is not None:
        return transition.payment
    return PAYMENT_TRANSITIONS.get((current, event), current)


@functools.cache
def payment_transition(
    status: OrderStatus, flags: frozenset[Flag], kind: PaymentKind, amount: AmountOutcome
) -> tuple[OrderEvent, Transition]:
    """The event a payment update makes and where it moves the order, memoised like
    ``apply``: the webhook hot path is one dictionary lookup."""
    event = payment_event(kind, amount)
    return event, apply(status, flags, event)


# --- expiry ----------------------------------------------------------------------------------

MAX_PAYMENT_WINDOW: Final = timedelta(days=1)


def expires_at(
    *,
    created_at: datetime,
    ttl: timedelta,
    payment_opened_at: datetime | None,
    valid_until: datetime | None,
) -> datetime:
    """When an order may be swept (rule 13): the later of its own TTL and its payment's
    window: the provider's ``valid_until`` (trusted up to ``MAX_PAYMENT_WINDOW`` after
    the payment opened: a provider's clock or answer can't keep an order open for
    weeks), or the TTL counted from the payment's opening when the provider names none."""
    deadline = created_at + ttl
    if payment_opened_at is None:
        return deadline
    if valid_until is None:
        window = payment_opened_at + ttl
    else:
        window = min(valid_until, payment_opened_at + MAX_PAYMENT_WINDOW)
    return max(deadline, window)
