"""Expiry, retry schedule, idempotency and signed tokens."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitloot_core import idempotency, rules, tokens
from bitloot_core.chart import OrderStatus
from bitloot_core.values import IdempotencyRecord, Order, OrderItem, ProductSource

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
SECRET = b"s" * 32


def order(status: OrderStatus, age: timedelta) -> Order:
    item = OrderItem(
        id="i",
        product_id="p",
        name="P",
        quantity=1,
        unit_price=Decimal(1),
        source=ProductSource.CUSTOM,
    )
    created = NOW - age
    return Order(
        id="o",
        email="a@b.cd",
        currency="usd",
        items=(item,),
        created_at=created,
        updated_at=created,
        access_token_hash="h",
        status=status,
    )


@pytest.mark.parametrize("status", list(OrderStatus))
def test_only_created_and_waiting_orders_are_abandoned(status: OrderStatus) -> None:
    assert rules.is_abandoned(order(status, timedelta(hours=2)), now=NOW) == (
        status in {OrderStatus.CREATED, OrderStatus.WAITING}
    )


def test_abandoned_at_exactly_the_ttl() -> None:
    assert not rules.is_abandoned(order(OrderStatus.WAITING, timedelta(minutes=59)), now=NOW)
    assert rules.is_abandoned(order(OrderStatus.WAITING, timedelta(minutes=60)), now=NOW)
    short = timedelta(minutes=5)
    assert rules.is_abandoned(order(OrderStatus.CREATED, short), now=NOW, ttl=short)


def test_retry_schedule_is_the_seed_table() -> None:
    schedule = rules.RetrySchedule()
    delays = [schedule.delay_after(n) for n in range(1, 6)]
    assert delays == [timedelta(seconds=s) for s in (1, 2, 4, 8)] + [None]
    assert sum((d for d in delays if d), timedelta()) == timedelta(seconds=15)


@given(st.integers(1, 4), st.floats(0, 1))
def test_full_jitter_stays_within_the_delay(attempt: int, value: float) -> None:
    plain = rules.RetrySchedule().delay_after(attempt)
    jittered = rules.RetrySchedule(jitter=True).delay_after(attempt, random_value=value)
    assert plain is not None
    assert jittered is not None
    assert timedelta(0) <= jittered <= plain


def test_retry_schedule_validation_and_cap() -> None:
    with pytest.raises(ValueError, match="attempts"):
        rules.RetrySchedule(attempts=0)
    with pytest.raises(ValueError, match="base"):
        rules.RetrySchedule(base=timedelta(0))
    with pytest.raises(ValueError, match="random_value"):
        rules.RetrySchedule(jitter=True).delay_after(1, random_value=1.5)
    capped = rules.RetrySchedule(attempts=30, cap=timedelta(seconds=10))
    assert capped.delay_after(20) == timedelta(seconds=10)


# idempotency -------------------------------------------------------------------------------


@given(
    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=6),
    st.randoms(),
)
def test_fingerprint_is_stable_under_key_order(
    request: dict[str, object], rnd: random.Random
) -> None:
    keys = list(request)
    rnd.shuffle(keys)
    shuffled = {k: request[k] for k in keys}
    assert idempotency.fingerprint(shuffled) == idempotency.fingerprint(request)


def test_fingerprint_differs_for_different_requests() -> None:
    assert idempotency.fingerprint({"items": [["a", 1]]}) != idempotency.fingerprint(
        {"items": [["a", 2]]}
    )


def test_scope_ignores_email_case_and_spaces() -> None:
    assert idempotency.scope(" A@B.cd", "k") == idempotency.scope("a@b.cd", "k")
    assert idempotency.scope("a@b.cd", "k") != idempotency.scope("a@b.cd", "K")


def test_idempotency_decisions() -> None:
    record = IdempotencyRecord(scope="s", fingerprint="f", order_id="o", created_at=NOW)
    decide = idempotency.decide
    assert decide(None, request_fingerprint="f", now=NOW).decision is idempotency.Decision.NEW
    replay = decide(record, request_fingerprint="f", now=NOW + timedelta(hours=24))
    assert (replay.decision, replay.order_id) == (idempotency.Decision.REPLAY, "o")
    assert (
        decide(record, request_fingerprint="g", now=NOW).decision is idempotency.Decision.CONFLICT
    )
    later = decide(record, request_fingerprint="g", now=NOW + timedelta(hours=24, seconds=1))
    assert later.decision is idempotency.Decision.NEW


# tokens -------------------------------------------------------------------------------------


def test_key_token_round_trip_and_expiry() -> None:
    token = tokens.mint_key_token(
        secret=SECRET, ref="orders/o/i/0", expires_at=NOW + timedelta(hours=3)
    )
    ok = tokens.verify_key_token(secret=SECRET, token=token, now=NOW)
    assert ok.valid
    assert ok.ref == "orders/o/i/0"
    assert ok.expires_at == NOW + timedelta(hours=3)
    late = tokens.verify_key_token(secret=SECRET, token=token, now=NOW + timedelta(hours=3))
    assert late.problem is tokens.TokenProblem.EXPIRED
    other = tokens.verify_key_token(secret=b"t" * 32, token=token, now=NOW)
    assert other.problem is tokens.TokenProblem.INVALID


@given(st.text(max_size=300))
def test_key_token_verification_never_raises(token: str) -> None:
    check = tokens.verify_key_token(secret=SECRET, token=token, now=NOW)
    assert check.problem is tokens.TokenProblem.INVALID


@pytest.mark.parametrize("bad", ["", ".", "a.b.c", "!!!.###", "x" * 3000, "é.é"])
def test_malformed_key_tokens_are_invalid(bad: str) -> None:
    assert (
        tokens.verify_key_token(secret=SECRET, token=bad, now=NOW).problem
        is tokens.TokenProblem.INVALID
    )


def test_tampered_key_token_is_invalid() -> None:
    token = tokens.mint_key_token(secret=SECRET, ref="r", expires_at=NOW + timedelta(hours=1))
    payload, mac = token.split(".")
    forged = tokens.mint_key_token(secret=b"x" * 32, ref="r", expires_at=NOW + timedelta(days=300))
    for bad in (forged.split(".")[0] + "." + mac, payload + "." + mac[::-1]):
        assert (
            tokens.verify_key_token(secret=SECRET, token=bad, now=NOW).problem
            is tokens.TokenProblem.INVALID
        )


def test_mint_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="UTC"):
        tokens.mint_key_token(secret=SECRET, ref="r", expires_at=datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="must not contain"):
        tokens.mint_key_token(secret=SECRET, ref="a|b", expires_at=NOW)


def test_access_tokens() -> None:
    token = tokens.order_access_token(secret=SECRET, order_id="o1")
    assert token == tokens.order_access_token(secret=SECRET, order_id="o1")
    assert token != tokens.order_access_token(secret=SECRET, order_id="o2")
    stored = tokens.hash_access_token(token)
    assert tokens.access_token_matches(token, stored)
    for bad in (None, "", "x", "é", "\ud800", "a" * 5000):
        assert not tokens.access_token_matches(bad, stored)
