"""The chart's table checks, and python-statemachine as an independent oracle."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracle_chart import OracleChart
from statemachine.exceptions import TransitionNotAllowed

from bitloot_core import chart
from bitloot_core.chart import (
    ADMIN_EVENTS,
    AUTOMATIC_EVENTS,
    INITIAL,
    JOBS,
    PAYMENT_TRANSITIONS,
    PROGRESS,
    TERMINAL,
    TRANSITIONS,
    AmountOutcome,
    Effect,
    Flag,
    JobKind,
    OrderEvent,
    OrderStatus,
    PaymentKind,
    PaymentStatus,
)
from bitloot_core.providers.nowpayments import STATUSES
from bitloot_core.service import CheckoutConfig, jobs

S = OrderStatus
E = OrderEvent
BRANCH = {S.EXPIRED: S.CONFIRMING, S.FAILED: S.CONFIRMING, S.UNDERPAID: S.CONFIRMING}


def rank(status: OrderStatus) -> int:
    return PROGRESS.get(status, PROGRESS[BRANCH.get(status, S.CREATED)])


def oracle(
    status: OrderStatus, flags: frozenset[Flag], event: OrderEvent
) -> tuple[OrderStatus, frozenset[Flag]] | None:
    machine = OracleChart(start_value=status.value, flags=frozenset(flags))
    try:
        machine.send(event.value)
    except TransitionNotAllowed:
        return None
    return OrderStatus(machine.current_state_value), frozenset(Flag(f) for f in machine.flags)


# Every flag set a guard or a flag rule looks at.
FLAG_SETS = [
    frozenset(),
    frozenset({Flag.PAID_LATE}),
    frozenset({Flag.EMAIL_FAILED}),
    frozenset({Flag.FULFILLMENT_FAILED}),
    frozenset({Flag.PAID_LATE, Flag.OVERPAID}),
]


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("event", list(E))
@pytest.mark.parametrize("flags", FLAG_SETS, ids=lambda f: "+".join(sorted(f)) or "none")
def test_oracle_agrees_on_every_pair(
    status: OrderStatus, event: OrderEvent, flags: frozenset[Flag]
) -> None:
    result = chart.apply(status, flags, event)
    expected = oracle(status, flags, event)
    assert result.applied == (expected is not None)
    assert (result.status, result.flags) == (expected or (status, flags))


@given(st.sampled_from(list(S)), st.lists(st.sampled_from(list(E)), max_size=30))
def test_oracle_agrees_on_event_sequences(start: OrderStatus, events: list[OrderEvent]) -> None:
    machine = OracleChart(start_value=start.value)
    status, flags = start, frozenset[Flag]()
    for event in events:
        result = chart.apply(status, flags, event)
        try:
            machine.send(event.value)
            assert result.applied
        except TransitionNotAllowed:
            assert not result.applied
        status, flags = result.status, result.flags
        assert machine.current_state_value == status.value
        assert machine.flags == {str(flag) for flag in flags}


def test_one_initial_status() -> None:
    assert INITIAL is S.CREATED
    targets = {rule.target for rule in TRANSITIONS.values()}
    assert S.CREATED not in targets, "nothing leads back to created"


def test_no_automatic_exit_from_a_terminal_status() -> None:
    for (status, event), rule in TRANSITIONS.items():
        if status in TERMINAL and event in AUTOMATIC_EVENTS:
            assert rule.target == status, (status, event)


def test_every_status_is_reachable() -> None:
    seen = {INITIAL}
    queue = deque([INITIAL])
    while queue:
        current = queue.popleft()
        for (status, _), rule in TRANSITIONS.items():
            if status == current and rule.target not in seen:
                seen.add(rule.target)
                queue.append(rule.target)
    assert seen == set(S)


def test_every_status_is_reachable_by_automatic_events_alone() -> None:
    seen = {INITIAL}
    queue = deque([INITIAL])
    while queue:
        current = queue.popleft()
        for (status, event), rule in TRANSITIONS.items():
            if status == current and event in AUTOMATIC_EVENTS and rule.target not in seen:
                seen.add(rule.target)
                queue.append(rule.target)
    assert seen == set(S)


# The one way back (rule 11): the provider refunded a paid order's money.
REFUND_OF_PAID = (S.PAID, E.PAYMENT_REFUNDED)


def test_automatic_progress_only_moves_forward() -> None:
    backwards = [
        (status, event)
        for (status, event), rule in TRANSITIONS.items()
        if event in AUTOMATIC_EVENTS and rank(rule.target) < rank(status)
    ]
    assert backwards == [REFUND_OF_PAID]


def test_off_path_statuses_only_before_paid() -> None:
    for (status, event), rule in TRANSITIONS.items():
        off_path = rule.target in {S.EXPIRED, S.FAILED, S.UNDERPAID}
        if off_path and rule.target != status and event in AUTOMATIC_EVENTS:
            assert rank(status) < PROGRESS[S.PAID] or (status, event) == REFUND_OF_PAID


def test_a_refund_reaches_every_status() -> None:
    for status in S:
        moved = chart.apply(status, frozenset({Flag.PAID_LATE}), E.PAYMENT_REFUNDED)
        assert moved.applied
        assert moved.flags == {Flag.REFUNDED}
        assert moved.status is (status if status in TERMINAL else S.FAILED)
        # Entering failed puts back reserved pool keys (rule 14); nothing is enqueued.
        entered = moved.status is not status
        assert moved.effects == ((Effect.RELEASE_POOL_KEYS,) if entered else ())


def test_a_second_payment_is_flagged_only_once_money_was_counted() -> None:
    for status in S:
        moved = chart.apply(status, frozenset(), E.PAYMENT_PAID_AGAIN)
        counted = status in TERMINAL | {S.PAID}
        assert moved.applied is counted
        assert moved.status is status
        assert moved.flags == ({Flag.PAID_TWICE} if counted else frozenset())


def test_expiry_counts_from_the_later_of_ttl_and_payment_window() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ttl = timedelta(hours=1)
    late = t0 + timedelta(minutes=59)
    assert chart.expires_at(created_at=t0, ttl=ttl, payment_opened_at=None, valid_until=None) == (
        t0 + ttl
    )
    assert chart.expires_at(
        created_at=t0, ttl=ttl, payment_opened_at=late, valid_until=late + timedelta(minutes=20)
    ) == late + timedelta(minutes=20)
    assert chart.expires_at(created_at=t0, ttl=ttl, payment_opened_at=late, valid_until=None) == (
        late + ttl
    )
    # A window beyond a day after the payment opened is capped there.
    assert chart.expires_at(
        created_at=t0, ttl=ttl, payment_opened_at=late, valid_until=late + timedelta(days=3)
    ) == (late + chart.MAX_PAYMENT_WINDOW)
    # A window shorter than the order's own TTL never shortens it.
    assert chart.expires_at(
        created_at=t0, ttl=ttl, payment_opened_at=t0, valid_until=t0 + timedelta(minutes=5)
    ) == (t0 + ttl)


def test_admin_events_only_leave_terminal_or_paid_statuses() -> None:
    for status, event in TRANSITIONS:
        if event in ADMIN_EVENTS:
            assert status in TERMINAL | {S.PAID}


def test_unknown_pair_is_ignored_not_raised() -> None:
    result = chart.apply(S.FULFILLED, frozenset({Flag.OVERPAID}), E.PAYMENT_FAILED)
    assert not result.applied
    assert result.status is S.FULFILLED
    assert result.flags == {Flag.OVERPAID}
    assert result.effects == ()
    assert "terminal" in result.reason
    result = chart.apply(S.PAID, frozenset(), E.PAYMENT_WAITING)
    assert not result.applied
    assert "not in the chart" in result.reason


def test_entering_paid_enqueues_fulfillment_and_fulfilled_the_email() -> None:
    assert chart.apply(S.CONFIRMING, frozenset(), E.PAYMENT_PAID_IN_FULL).effects == (
        Effect.ENQUEUE_FULFILLMENT,
    )
    assert chart.apply(S.PAID, frozenset(), E.FULFILLMENT_DONE).effects == (
        Effect.ENQUEUE_COMPLETION_EMAIL,
    )
    # A self-loop enters nothing.
    assert chart.apply(S.CONFIRMING, frozenset(), E.PAYMENT_CONFIRMING).effects == ()


def test_late_payment_is_held_with_a_flag() -> None:
    for status in (S.EXPIRED, S.FAILED, S.UNDERPAID):
        result = chart.apply(status, frozenset(), E.PAYMENT_PAID_IN_FULL)
        assert result.status is status
        assert Flag.PAID_LATE in result.flags
        assert result.effects == ()


def test_fulfillment_failure_flag_is_raised_and_cleared() -> None:
    exhausted = chart.apply(S.PAID, frozenset(), E.FULFILLMENT_EXHAUSTED)
    assert exhausted.status is S.PAID
    assert exhausted.flags == {Flag.FULFILLMENT_FAILED}
    retried = chart.apply(S.PAID, exhausted.flags, E.ADMIN_RETRY_FULFILLMENT)
    assert retried.flags == frozenset()
    assert retried.effects == (Effect.ENQUEUE_FULFILLMENT,)


def test_admin_resolutions() -> None:
    late = frozenset({Flag.PAID_LATE})
    fulfill = chart.apply(S.EXPIRED, late, E.ADMIN_FULFILL)
    assert fulfill.status is S.PAID
    assert fulfill.flags == {Flag.MARKED}
    assert fulfill.effects == (Effect.ENQUEUE_FULFILLMENT,)
    refund = chart.apply(S.UNDERPAID, frozenset(), E.ADMIN_REFUND)
    assert refund.status is S.FAILED
    assert refund.flags == {Flag.MARKED, Flag.REFUNDED}


def test_mapping_is_the_seed_table() -> None:
    seed = {
        "waiting": PaymentKind.WAITING,
        "confirming": PaymentKind.CONFIRMING,
        "sending": PaymentKind.CONFIRMING,
        "confirmed": PaymentKind.CONFIRMED,
        "finished": PaymentKind.PAID,
        "partially_paid": PaymentKind.PAID,
        "underpaid": PaymentKind.PAID,
        "expired": PaymentKind.EXPIRED,
        # Deviation: a refund is its own kind, so it reaches a paid order (rule 11).
        "refunded": PaymentKind.REFUNDED,
        "failed": PaymentKind.FAILED,
    }
    assert {k: v.kind for k, v in STATUSES.items()} == seed
    assert "FINISHED" not in STATUSES, "provider statuses are exact"


@pytest.mark.parametrize(
    ("kind", "amount", "event"),
    [
        (PaymentKind.WAITING, AmountOutcome.IN_FULL, E.PAYMENT_WAITING),
        (PaymentKind.CONFIRMING, AmountOutcome.SHORT, E.PAYMENT_CONFIRMING),
        (PaymentKind.CONFIRMED, AmountOutcome.SHORT, E.PAYMENT_CONFIRMED),
        (PaymentKind.PAID, AmountOutcome.IN_FULL, E.PAYMENT_PAID_IN_FULL),
        (PaymentKind.PAID, AmountOutcome.SHORT, E.PAYMENT_PAID_SHORT),
        (PaymentKind.PAID, AmountOutcome.OVER, E.PAYMENT_OVERPAID),
        (PaymentKind.EXPIRED, AmountOutcome.SHORT, E.PAYMENT_EXPIRED),
        (PaymentKind.FAILED, AmountOutcome.SHORT, E.PAYMENT_FAILED),
    ],
)
def test_payment_event(kind: PaymentKind, amount: AmountOutcome, event: OrderEvent) -> None:
    assert chart.payment_event(kind, amount) is event


def test_overpaid_flag_is_a_rule() -> None:
    over = chart.apply(S.CONFIRMING, frozenset(), E.PAYMENT_OVERPAID)
    assert (over.status, over.flags) == (S.PAID, {Flag.OVERPAID})
    late = chart.apply(S.EXPIRED, frozenset(), E.PAYMENT_OVERPAID)
    assert (late.status, late.flags) == (S.EXPIRED, {Flag.PAID_LATE, Flag.OVERPAID})
    assert late.payment is PaymentStatus.FINISHED


def test_admin_guards_are_table_entries() -> None:
    # Only an order held for an admin can be resolved: an expired or failed order only
    # once money arrived late, whatever entry point asks.
    for status in (S.EXPIRED, S.FAILED):
        for event in (E.ADMIN_FULFILL, E.ADMIN_REFUND):
            refused = chart.apply(status, frozenset(), event)
            assert not refused.applied
            assert "needs paid_late" in refused.reason
            assert chart.apply(status, frozenset({Flag.PAID_LATE}), event).applied
    assert not chart.apply(S.FULFILLED, frozenset(), E.ADMIN_RESEND_EMAIL).applied
    assert chart.apply(S.FULFILLED, frozenset({Flag.EMAIL_FAILED}), E.ADMIN_RESEND_EMAIL).applied


def test_every_job_kind_has_its_rule() -> None:
    assert set(JOBS) == set(JobKind)
    # Every effect but the pool release (done in the move's own transaction) is a job.
    assert {rule.enqueued_by for rule in JOBS.values()} == set(Effect) - {Effect.RELEASE_POOL_KEYS}
    assert JOBS[JobKind.FULFILL].exhausted is E.FULFILLMENT_EXHAUSTED
    assert JOBS[JobKind.COMPLETION_EMAIL].exhausted is E.EMAIL_EXHAUSTED
    assert chart.JOB_FOR_EFFECT[Effect.ENQUEUE_FULFILLMENT] is JobKind.FULFILL


def test_every_job_kind_has_a_runner_and_a_retry_schedule() -> None:
    assert set(jobs.RUNNERS) == set(JobKind)
    fields = CheckoutConfig.__dataclass_fields__
    assert all(rule.retries in fields for rule in JOBS.values())


def test_payment_record_table_only_moves_forward() -> None:
    for (current, _event), target in PAYMENT_TRANSITIONS.items():
        assert current not in chart.PAYMENT_FINAL
        assert chart.PAYMENT_RANK[target] > chart.PAYMENT_RANK[current]


@given(
    st.sampled_from(list(PaymentStatus)),
    st.sampled_from(list(S)),
    st.sampled_from(sorted(chart.PAYMENT_EVENTS | {E.SWEEP_EXPIRED})),
)
def test_payment_record_follows_its_table(
    current: PaymentStatus, status: OrderStatus, event: OrderEvent
) -> None:
    transition = chart.apply(status, frozenset(), event)
    after = chart.payment_status(current, event, transition)
    if transition.applied and transition.payment is not None:
        # Rule 6: the money arrived late, the record says so.
        assert (status, after) in {(s, PaymentStatus.FINISHED) for s in chart.TERMINAL}
    else:
        assert chart.PAYMENT_RANK[after] >= chart.PAYMENT_RANK[current]
        if current in chart.PAYMENT_FINAL:
            assert after is current
