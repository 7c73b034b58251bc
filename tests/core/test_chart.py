"""The chart's table checks, and python-statemachine as an independent oracle."""

from __future__ import annotations

from collections import deque

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
    NOWPAYMENTS_STATUS,
    PROGRESS,
    TERMINAL,
    TRANSITIONS,
    Effect,
    Flag,
    IpnKind,
    OrderEvent,
    OrderStatus,
    PaymentStatus,
)

S = OrderStatus
E = OrderEvent
BRANCH = {S.EXPIRED: S.CONFIRMING, S.FAILED: S.CONFIRMING, S.UNDERPAID: S.CONFIRMING}


def rank(status: OrderStatus) -> int:
    return PROGRESS.get(status, PROGRESS[BRANCH.get(status, S.CREATED)])


def oracle(status: OrderStatus, event: OrderEvent) -> OrderStatus | None:
    machine = OracleChart(start_value=status.value)
    try:
        machine.send(event.value)
    except TransitionNotAllowed:
        return None
    return OrderStatus(machine.current_state_value)


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("event", list(E))
def test_oracle_agrees_on_every_pair(status: OrderStatus, event: OrderEvent) -> None:
    result = chart.apply(status, frozenset(), event)
    expected = oracle(status, event)
    assert result.applied == (expected is not None)
    assert result.status == (expected if expected is not None else status)


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


def test_automatic_progress_only_moves_forward() -> None:
    for (status, event), rule in TRANSITIONS.items():
        if event in AUTOMATIC_EVENTS:
            assert rank(rule.target) >= rank(status), (status, event, rule.target)


def test_off_path_statuses_only_before_paid() -> None:
    for (status, event), rule in TRANSITIONS.items():
        off_path = rule.target in {S.EXPIRED, S.FAILED, S.UNDERPAID}
        if off_path and rule.target != status and event in AUTOMATIC_EVENTS:
            assert rank(status) < PROGRESS[S.PAID], (status, event)


def test_admin_events_only_leave_terminal_or_paid_statuses() -> None:
    for status, event in TRANSITIONS:
        if event in ADMIN_EVENTS:
            assert status in TERMINAL | {S.PAID}


def test_unknown_pair_is_ignored_not_raised() -> None:
    result = chart.apply(S.FULFILLED, frozenset({Flag.OVERPAID}), E.IPN_FAILED)
    assert not result.applied
    assert result.status is S.FULFILLED
    assert result.flags == {Flag.OVERPAID}
    assert result.effects == ()
    assert "terminal" in result.reason
    result = chart.apply(S.PAID, frozenset(), E.IPN_WAITING)
    assert not result.applied
    assert "not in the chart" in result.reason


def test_entering_paid_enqueues_fulfillment_and_fulfilled_the_email() -> None:
    assert chart.apply(S.CONFIRMING, frozenset(), E.IPN_PAID_IN_FULL).effects == (
        Effect.ENQUEUE_FULFILLMENT,
    )
    assert chart.apply(S.PAID, frozenset(), E.FULFILLMENT_DONE).effects == (
        Effect.ENQUEUE_COMPLETION_EMAIL,
    )
    # A self-loop enters nothing.
    assert chart.apply(S.CONFIRMING, frozenset(), E.IPN_CONFIRMING).effects == ()


def test_late_payment_is_held_with_a_flag() -> None:
    for status in (S.EXPIRED, S.FAILED, S.UNDERPAID):
        result = chart.apply(status, frozenset(), E.IPN_PAID_IN_FULL)
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
    fulfil = chart.apply(S.EXPIRED, late, E.ADMIN_FULFILL)
    assert fulfil.status is S.PAID
    assert fulfil.flags == {Flag.MARKED}
    assert fulfil.effects == (Effect.ENQUEUE_FULFILLMENT,)
    refund = chart.apply(S.UNDERPAID, frozenset(), E.ADMIN_REFUND)
    assert refund.status is S.FAILED
    assert refund.flags == {Flag.MARKED, Flag.REFUNDED}


def test_mapping_is_the_seed_table() -> None:
    seed = {
        "waiting": (IpnKind.WAITING, PaymentStatus.WAITING),
        "confirming": (IpnKind.CONFIRMING, PaymentStatus.WAITING),
        "sending": (IpnKind.CONFIRMING, PaymentStatus.WAITING),
        "confirmed": (IpnKind.CONFIRMING, PaymentStatus.CONFIRMED),
        "finished": (IpnKind.FINISHED, PaymentStatus.FINISHED),
        "partially_paid": (IpnKind.PARTIAL, PaymentStatus.UNDERPAID),
        "underpaid": (IpnKind.PARTIAL, PaymentStatus.UNDERPAID),
        "expired": (IpnKind.EXPIRED, PaymentStatus.FAILED),
        "refunded": (IpnKind.FAILED, PaymentStatus.FAILED),
        "failed": (IpnKind.FAILED, PaymentStatus.FAILED),
    }
    assert {k: (v.kind, v.payment_status) for k, v in NOWPAYMENTS_STATUS.items()} == seed
    assert chart.provider_status("wrong_status") is None
    assert chart.provider_status("FINISHED") is None, "provider statuses are exact"


@pytest.mark.parametrize(
    ("kind", "full", "event"),
    [
        (IpnKind.WAITING, True, E.IPN_WAITING),
        (IpnKind.CONFIRMING, False, E.IPN_CONFIRMING),
        (IpnKind.FINISHED, True, E.IPN_PAID_IN_FULL),
        (IpnKind.FINISHED, False, E.IPN_PAID_SHORT),
        (IpnKind.PARTIAL, True, E.IPN_PAID_IN_FULL),
        (IpnKind.PARTIAL, False, E.IPN_PAID_SHORT),
        (IpnKind.EXPIRED, False, E.IPN_EXPIRED),
        (IpnKind.FAILED, False, E.IPN_FAILED),
    ],
)
def test_ipn_event(kind: IpnKind, full: bool, event: OrderEvent) -> None:
    assert chart.ipn_event(kind, paid_in_full=full) is event


@given(st.sampled_from(list(PaymentStatus)), st.sampled_from(list(PaymentStatus)))
def test_payment_record_only_moves_forward(current: PaymentStatus, proposed: PaymentStatus) -> None:
    after = chart.advance_payment(current, proposed)
    assert chart.PAYMENT_RANK[after] >= chart.PAYMENT_RANK[current]
    if current in chart.PAYMENT_FINAL:
        assert after is current
    assert after in {current, proposed}
