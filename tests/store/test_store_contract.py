"""One contract for every ``Store``: the in-memory reference, SQLite and PostgreSQL.

Each test runs against all three. The state machine at the end runs one random sequence
of operations against all three side by side and requires identical answers.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from bitloot_adapters.postgres_store import PostgresStore
from bitloot_adapters.sqlite_store import SqliteStore
from bitloot_core.chart import Flag, OrderStatus, PaymentStatus
from bitloot_core.errors import ConcurrentUpdate
from bitloot_core.ports import Store
from bitloot_core.testing import MemoryStore
from bitloot_core.values import (
    AuditEntry,
    DeliveredKey,
    EmailRecord,
    IdempotencyRecord,
    Job,
    JobKind,
    JobState,
    Order,
    OrderItem,
    Payment,
    Product,
    ProductSource,
    Reveal,
    WebhookLogEntry,
    WebhookOutcome,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# --- factories --------------------------------------------------------------------------


def make_product(product_id: str = "p1", **changes: Any) -> Product:
    fields: dict[str, Any] = {
        "id": product_id,
        "name": f"Game {product_id}",
        "price": Decimal("19.99"),
        "currency": "EUR",
        "source": ProductSource.CUSTOM,
    }
    return Product(**(fields | changes))


def make_item(item_id: str = "i1", **changes: Any) -> OrderItem:
    fields: dict[str, Any] = {
        "id": item_id,
        "product_id": "p1",
        "name": "Game p1",
        "quantity": 1,
        "unit_price": Decimal("19.99"),
        "source": ProductSource.CUSTOM,
    }
    return OrderItem(**(fields | changes))


def make_order(order_id: str = "o1", **changes: Any) -> Order:
    fields: dict[str, Any] = {
        "id": order_id,
        "email": "buyer@example.com",
        "currency": "EUR",
        "items": (make_item(),),
        "created_at": T0,
        "updated_at": T0,
        "access_token_hash": "ab" * 32,
    }
    return Order(**(fields | changes))


def make_payment(payment_id: str = "5800567260", **changes: Any) -> Payment:
    fields: dict[str, Any] = {
        "id": payment_id,
        "order_id": "o1",
        "status": PaymentStatus.WAITING,
        "provider_status": "waiting",
        "price_amount": Decimal("19.99"),
        "price_currency": "eur",
        "pay_amount": Decimal("0.00039980"),
        "pay_currency": "btc",
        "pay_address": "bc1qexampleaddress",
        "created_at": T0,
        "updated_at": T0,
    }
    return Payment(**(fields | changes))


def make_job(key: str = "fulfill:o1", **changes: Any) -> Job:
    fields: dict[str, Any] = {
        "key": key,
        "kind": JobKind.FULFILL,
        "order_id": "o1",
        "state": JobState.PENDING,
        "attempts": 0,
        "run_at": T0,
        "created_at": T0,
    }
    return Job(**(fields | changes))


def make_webhook(**changes: Any) -> WebhookLogEntry:
    fields: dict[str, Any] = {
        "received_at": T0,
        "body_sha256": "cd" * 32,
        "signature_valid": True,
        "outcome": WebhookOutcome.APPLIED,
        "reason": "applied",
        "payment_id": "5800567260",
        "order_id": "o1",
        "provider_status": "finished",
        "dedupe_key": "5800567260:finished:0.0004",
        "provider": "nowpayments",
    }
    return WebhookLogEntry(**(fields | changes))


def make_email(order_id: str = "o1", kind: str = "completed", **changes: Any) -> EmailRecord:
    fields: dict[str, Any] = {
        "order_id": order_id,
        "kind": kind,
        "message_id": f"<{order_id}.{kind}@bitloot.example>",
        "to": "buyer@example.com",
        "created_at": T0,
    }
    return EmailRecord(**(fields | changes))


def make_audit(order_id: str | None = "o1", **changes: Any) -> AuditEntry:
    fields: dict[str, Any] = {
        "order_id": order_id,
        "at": T0,
        "action": "order_created",
        "detail": "1 items, 19.99",
    }
    return AuditEntry(**(fields | changes))


def make_reveal(order_id: str = "o1", **changes: Any) -> Reveal:
    fields: dict[str, Any] = {
        "order_id": order_id,
        "item_id": "i1",
        "at": T0,
        "expires_at": T0 + timedelta(hours=3),
    }
    return Reveal(**(fields | changes))


def exact(value: object) -> object:
    """A form in which equal means identical: Decimal digits and exponent, set contents."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__name__,
            tuple((f.name, exact(getattr(value, f.name))) for f in dataclasses.fields(value)),
        )
    if isinstance(value, Decimal):
        return ("Decimal", str(value))
    if isinstance(value, datetime):
        return ("datetime", value.isoformat(), value.utcoffset())
    if isinstance(value, frozenset | set):
        return ("set", sorted(map(repr, value)))
    if isinstance(value, list | tuple):
        return [exact(v) for v in value]
    if isinstance(value, dict):
        return sorted((repr(k), exact(v)) for k, v in value.items())
    return value


# --- the stores -------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    opened: SqliteStore | PostgresStore
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "bitloot.db")
    else:
        opened = PostgresStore(request.getfixturevalue("pg_url"), pool_size=2)
    try:
        yield opened
    finally:
        opened.close()


class Boom(Exception):
    pass


# --- transactions -----------------------------------------------------------------------


def test_a_commit_is_visible_to_the_next_transaction(store: Store) -> None:
    with store.transaction() as tx:
        tx.insert_order(make_order())
        assert tx.get_order("o1") == make_order()
    with store.transaction() as tx:
        assert tx.get_order("o1") == make_order()


def test_an_exception_rolls_back_every_write(store: Store) -> None:
    with store.transaction() as tx:
        tx.upsert_product(make_product())
        tx.add_pool_keys("p1", ["pool/p1/k1"])

    def write_everything_then_fail() -> None:
        with store.transaction() as tx:
            tx.insert_order(make_order())
            assert tx.enqueue_job(make_job())
            assert tx.claim_ipn("dedupe", T0)
            assert tx.insert_email(make_email())
            assert tx.claim_pool_key("p1", "o1/i1/0") == "pool/p1/k1"
            tx.add_audit(make_audit())
            tx.log_webhook(make_webhook())
            tx.record_reveal(make_reveal())
            tx.upsert_product(make_product(name="renamed"))
            raise Boom

    with pytest.raises(Boom):
        write_everything_then_fail()
    with store.transaction() as tx:
        assert tx.get_order("o1") is None
        assert tx.get_job("fulfill:o1") is None
        assert tx.list_jobs() == []
        assert tx.claim_ipn("dedupe", T0)
        assert tx.get_email("o1", "completed") is None
        assert tx.pool_size("p1") == 1
        assert tx.list_audit("o1") == []
        assert tx.list_webhooks("o1") == []
        assert tx.list_reveals("o1") == []
        assert tx.get_product("p1") == make_product()


def test_a_failed_compare_and_set_can_roll_back_the_whole_transaction(store: Store) -> None:
    with store.transaction() as tx:
        tx.insert_order(make_order())

    def enqueue_then_lose_the_race() -> None:
        with store.transaction() as tx:
            assert tx.enqueue_job(make_job())
            tx.update_order(make_order(version=7))

    with pytest.raises(ConcurrentUpdate):
        enqueue_then_lose_the_race()
    with store.transaction() as tx:
        assert tx.get_job("fulfill:o1") is None
        assert tx.get_order("o1") == make_order()


# --- products and the pool --------------------------------------------------------------


def test_products_round_trip_and_upsert(store: Store) -> None:
    kinguin = make_product(
        "p2", source=ProductSource.KINGUIN, supplier_ref="5c9b5f6b", price=Decimal("0.00000001")
    )
    with store.transaction() as tx:
        assert tx.get_product("p1") is None
        assert tx.list_products() == []
        tx.upsert_product(kinguin)
        tx.upsert_product(make_product("p1"))
    with store.transaction() as tx:
        assert exact(tx.get_product("p2")) == exact(kinguin)
        tx.upsert_product(make_product("p1", name="Renamed", price=Decimal("24.50")))
    with store.transaction() as tx:
        assert [p.id for p in tx.list_products()] == ["p1", "p2"]
        renamed = tx.get_product("p1")
        assert renamed is not None
        assert renamed.name == "Renamed"
        assert str(renamed.price) == "24.50"


def test_pool_keys_are_added_once_and_claimed_once_per_claimant(store: Store) -> None:
    with store.transaction() as tx:
        assert tx.pool_size("p1") == 0
        assert tx.claim_pool_key("p1", "o1/i1/0") is None
        assert tx.add_pool_keys("p1", []) == 0
        assert tx.add_pool_keys("p1", ["pool/p1/a", "pool/p1/b"]) == 2
        assert tx.add_pool_keys("p1", ["pool/p1/b", "pool/p1/c"]) == 1
        assert tx.add_pool_keys("p2", ["pool/p2/a"]) == 1
        assert tx.pool_size("p1") == 3
    with store.transaction() as tx:
        # First in, first out; the same claimant always gets the same key back.
        assert tx.claim_pool_key("p1", "o1/i1/0") == "pool/p1/a"
        assert tx.claim_pool_key("p1", "o1/i1/0") == "pool/p1/a"
        assert tx.pool_size("p1") == 2
    with store.transaction() as tx:
        assert tx.claim_pool_key("p1", "o1/i1/0") == "pool/p1/a"
        assert tx.claim_pool_key("p1", "o2/i1/0") == "pool/p1/b"
        assert tx.claim_pool_key("p1", "o3/i1/0") == "pool/p1/c"
        assert tx.claim_pool_key("p1", "o4/i1/0") is None
        assert tx.pool_size("p1") == 0
        # Claimants are per product: the same name draws from another pool on its own.
        assert tx.claim_pool_key("p2", "o1/i1/0") == "pool/p2/a"
        assert tx.claim_pool_key("p2", "o1/i1/0") == "pool/p2/a"
        assert tx.pool_size("p2") == 0
    with store.transaction() as tx:
        assert tx.claim_pool_key("p1", "o4/i1/0") is None
        assert tx.claim_pool_key("p1", "o3/i1/0") == "pool/p1/c"
        assert tx.add_pool_keys("p1", ["pool/p1/d"]) == 1
        assert tx.claim_pool_key("p1", "o4/i1/0") == "pool/p1/d"


def test_released_pool_keys_go_back_by_claimant_prefix(store: Store) -> None:
    with store.transaction() as tx:
        tx.add_pool_keys("p1", ["pool/a", "pool/b", "pool/c"])
        tx.claim_pool_key("p1", "o1/i1/0")
        tx.claim_pool_key("p1", "o1/i1/1")
        tx.claim_pool_key("p1", "o10/i1/0")
        assert tx.pool_size("p1") == 0
    with store.transaction() as tx:
        # "o1/" names order o1's claims, not o10's; a prefix with nothing claimed is 0.
        assert tx.release_pool_keys("o1/i1/") == 2
        assert tx.release_pool_keys("o1/i1/") == 0
        assert tx.release_pool_keys("o%/") == 0
        assert tx.pool_size("p1") == 2
        # Released keys are claimed again, by anyone.
        assert tx.claim_pool_key("p1", "o2/i1/0") == "pool/a"


# --- orders -----------------------------------------------------------------------------


def rich_order(order_id: str = "o1", **changes: Any) -> Order:
    return make_order(
        order_id,
        items=(
            make_item(
                "i1",
                quantity=2,
                unit_price=Decimal("0.00000001"),
                keys=(
                    DeliveredKey(ref="orders/o1/i1/0"),
                    DeliveredKey(ref="orders/o1/i1/1", content_type="image/png"),
                ),
            ),
            make_item(
                "i2",
                product_id="p2",
                name="Ünïcødé — «game»",
                unit_price=Decimal("19.990"),
                source=ProductSource.KINGUIN,
                supplier_ref="5c9b5f6b",
            ),
        ),
        status=OrderStatus.PAID,
        flags=frozenset({Flag.PAID_LATE, Flag.MARKED}),
        payment_id="5800567260",
        created_at=datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC),
        updated_at=datetime(2026, 3, 4, 7, 6, 7, 1, tzinfo=timezone(timedelta(0))),
        **changes,
    )


def test_orders_round_trip_exactly(store: Store) -> None:
    order = rich_order()
    with store.transaction() as tx:
        assert tx.get_order("o1") is None
        tx.insert_order(order)
    with store.transaction() as tx:
        stored = tx.get_order("o1")
    assert stored == order
    assert exact(stored) == exact(order)


def test_a_payment_is_identified_by_its_provider_and_id(store: Store) -> None:
    # Two providers may use the same payment id; each is its own payment.
    ours = make_payment("777", order_id="o1", provider="nowpayments")
    theirs = make_payment("777", order_id="o2", provider="btcpay")
    order = make_order(payment_id="777", payment_provider="btcpay")
    with store.transaction() as tx:
        tx.insert_payment(ours)
        tx.insert_payment(theirs)
        tx.insert_order(order)
        with pytest.raises(ConcurrentUpdate):
            tx.insert_payment(make_payment("777", order_id="o3", provider="btcpay"))
    with store.transaction() as tx:
        assert exact(tx.get_payment("btcpay", "777")) == exact(theirs)
        assert tx.get_payment("other", "777") is None
        updated = tx.update_payment(replace(theirs, status=PaymentStatus.FINISHED))
        stored = tx.get_order("o1")
    with store.transaction() as tx:
        assert exact(tx.get_payment("btcpay", "777")) == exact(updated)
        assert exact(tx.get_payment("nowpayments", "777")) == exact(ours)
        assert exact(tx.list_payments()) == exact([ours, updated])
    assert stored is not None
    assert (stored.payment_provider, stored.payment_id) == ("btcpay", "777")


def test_inserting_an_order_twice_is_a_conflict(store: Store) -> None:
    with store.transaction() as tx:
        tx.insert_order(make_order())
    with pytest.raises(ConcurrentUpdate), store.transaction() as tx:
        tx.insert_order(make_order(email="other@example.com"))
    with store.transaction() as tx:
        stored = tx.get_order("o1")
    assert stored is not None
    assert stored.email == "buyer@example.com"


def test_update_order_is_compare_and_set_on_version(store: Store) -> None:
    with store.transaction() as tx:
        tx.insert_order(make_order())
    with store.transaction() as tx:
        current = tx.get_order("o1")
        assert current is not None
        changed = rich_order(version=current.version)
        stored = tx.update_order(changed)
        assert stored == replace(changed, version=2)
        assert tx.get_order("o1") == stored
    with store.transaction() as tx:
        assert exact(tx.get_order("o1")) == exact(stored)
        with pytest.raises(ConcurrentUpdate):
            tx.update_order(replace(stored, version=1, email="stale@example.com"))
        with pytest.raises(ConcurrentUpdate):
            tx.update_order(make_order("missing"))
        again = tx.update_order(replace(stored, status=OrderStatus.FULFILLED, flags=frozenset()))
        assert again.version == 3
    with store.transaction() as tx:
        assert tx.get_order("o1") == again


def seed_orders(store: Store) -> None:
    with store.transaction() as tx:
        tx.insert_order(make_order("o3", created_at=at(2)))
        tx.insert_order(make_order("o1", created_at=at(0)))
        tx.insert_order(make_order("o2", created_at=at(0), status=OrderStatus.WAITING))
        tx.insert_order(
            make_order(
                "o4",
                created_at=at(5),
                status=OrderStatus.PAID,
                flags=frozenset({Flag.FULFILLMENT_FAILED}),
            )
        )
        tx.insert_order(
            make_order(
                "o5",
                created_at=at(1),
                status=OrderStatus.EXPIRED,
                flags=frozenset({Flag.PAID_LATE, Flag.MARKED}),
            )
        )
        tx.insert_order(make_order("o6", created_at=at(90), status=OrderStatus.WAITING))


def listed(store: Store, **filters: Any) -> list[str]:
    with store.transaction() as tx:
        return [o.id for o in tx.list_orders(**filters)]


def test_list_orders_filters_and_orders_by_creation(store: Store) -> None:
    seed_orders(store)
    assert listed(store) == ["o1", "o2", "o5", "o3", "o4", "o6"]
    assert listed(store, limit=2) == ["o1", "o2"]
    assert listed(store, limit=0) == []
    # Newest first: the most recent ones (ties: the later inserted first).
    assert listed(store, newest_first=True) == ["o6", "o4", "o3", "o5", "o2", "o1"]
    assert listed(store, newest_first=True, limit=2) == ["o6", "o4"]
    assert listed(store, newest_first=True, status=OrderStatus.CREATED) == ["o3", "o1"]
    assert listed(store, status=OrderStatus.CREATED) == ["o1", "o3"]
    assert listed(store, status=OrderStatus.FULFILLED) == []
    assert listed(store, statuses=frozenset({OrderStatus.CREATED, OrderStatus.WAITING})) == [
        "o1",
        "o2",
        "o3",
        "o6",
    ]
    assert listed(store, statuses=frozenset()) == []
    assert listed(store, flag=Flag.PAID_LATE) == ["o5"]
    assert listed(store, flag=Flag.MARKED) == ["o5"]
    assert listed(store, flag=Flag.FULFILLMENT_FAILED) == ["o4"]
    assert listed(store, flag=Flag.REFUNDED) == []
    # created_before is inclusive: the sweeper's cutoff catches an order made at it.
    assert listed(store, created_before=at(2)) == ["o1", "o2", "o5", "o3"]
    assert listed(store, created_before=at(2) - timedelta(microseconds=1)) == ["o1", "o2", "o5"]
    sweep = {
        "statuses": frozenset({OrderStatus.CREATED, OrderStatus.WAITING}),
        "created_before": at(60),
    }
    assert listed(store, **sweep) == ["o1", "o2", "o3"]
    assert listed(store, **sweep, limit=1) == ["o1"]
    assert listed(store, status=OrderStatus.EXPIRED, flag=Flag.PAID_LATE) == ["o5"]
    assert listed(store, status=OrderStatus.PAID, flag=Flag.PAID_LATE) == []
    assert listed(store, status=OrderStatus.CREATED, statuses=frozenset({OrderStatus.PAID})) == []
    # A cutoff in another zone means the same instant.
    plus_two = timezone(timedelta(hours=2))
    assert listed(store, created_before=at(1).astimezone(plus_two)) == ["o1", "o2", "o5"]


def test_count_orders_by_status_names_every_status(store: Store) -> None:
    with store.transaction() as tx:
        assert tx.count_orders_by_status() == dict.fromkeys(OrderStatus, 0)
    seed_orders(store)
    with store.transaction() as tx:
        counts = tx.count_orders_by_status()
    assert counts == dict.fromkeys(OrderStatus, 0) | {
        OrderStatus.CREATED: 2,
        OrderStatus.WAITING: 2,
        OrderStatus.PAID: 1,
        OrderStatus.EXPIRED: 1,
    }


# --- payments ---------------------------------------------------------------------------


def test_payments_round_trip_and_compare_and_set(store: Store) -> None:
    first = make_payment(valid_until=at(30))
    second = make_payment(
        "5800567261",
        order_id="o2",
        actually_paid=Decimal("0.00000001"),
        price_amount=Decimal("1E+2"),
    )
    third = make_payment("5800567262", created_at=at(1))
    with store.transaction() as tx:
        assert tx.get_payment(first.provider, first.id) is None
        assert tx.list_payments() == []
        tx.insert_payment(first)
        tx.insert_payment(second)
        tx.insert_payment(third)
        with pytest.raises(ConcurrentUpdate):
            tx.insert_payment(make_payment(order_id="o9"))
    with store.transaction() as tx:
        assert exact(tx.get_payment(second.provider, second.id)) == exact(second)
        assert exact(tx.list_payments()) == exact([first, second, third])
        assert exact(tx.list_payments(order_id="o1")) == exact([first, third])
        assert tx.list_payments(order_id="o9") == []
        finished = replace(
            first,
            status=PaymentStatus.FINISHED,
            provider_status="finished",
            actually_paid=Decimal("0.00039980"),
            updated_at=at(9),
        )
        stored = tx.update_payment(finished)
        assert stored == replace(finished, version=2)
        with pytest.raises(ConcurrentUpdate):
            tx.update_payment(finished)
        with pytest.raises(ConcurrentUpdate):
            tx.update_payment(make_payment("missing"))
    with store.transaction() as tx:
        assert exact(tx.get_payment(first.provider, first.id)) == exact(stored)
        # An update keeps the payment's place in the listing.
        assert [p.id for p in tx.list_payments()] == [first.id, second.id, third.id]


# --- idempotency keys and IPN dedupe ----------------------------------------------------


def test_idempotency_records_are_unique_and_expire_by_cutoff(store: Store) -> None:
    old = IdempotencyRecord(scope="s-old", fingerprint="f1", order_id="o1", created_at=at(0))
    edge = IdempotencyRecord(scope="s-edge", fingerprint="f2", order_id="o2", created_at=at(10))
    new = IdempotencyRecord(scope="s-new", fingerprint="f3", order_id="o3", created_at=at(20))
    with store.transaction() as tx:
        assert tx.get_idempotency("s-old") is None
        assert tx.insert_idempotency(old)
        assert tx.insert_idempotency(edge)
        assert tx.insert_idempotency(new)
        assert not tx.insert_idempotency(replace(old, fingerprint="other"))
    with store.transaction() as tx:
        assert tx.get_idempotency("s-old") == old
        assert tx.delete_idempotency_before(at(0)) == 0
        # Strictly before the cutoff: a record made at it stays.
        assert tx.delete_idempotency_before(at(10)) == 1
    with store.transaction() as tx:
        assert tx.get_idempotency("s-old") is None
        assert tx.get_idempotency("s-edge") == edge
        assert tx.delete_idempotency_before(at(100)) == 2
        assert tx.get_idempotency("s-new") is None
        assert tx.insert_idempotency(old)


def test_an_ipn_is_claimed_once(store: Store) -> None:
    with store.transaction() as tx:
        assert tx.claim_ipn("5800567260:finished:0.0004", T0)
        assert not tx.claim_ipn("5800567260:finished:0.0004", at(1))
        assert tx.claim_ipn("5800567260:confirming:0", T0)
    with store.transaction() as tx:
        assert not tx.claim_ipn("5800567260:finished:0.0004", at(2))


# --- the webhook log, audit trail and reveals -------------------------------------------


def test_webhooks_are_listed_per_order_in_arrival_order(store: Store) -> None:
    first = make_webhook()
    rejected = make_webhook(
        signature_valid=False,
        outcome=WebhookOutcome.REJECTED,
        reason="bad_signature",
        payment_id=None,
        order_id=None,
        provider_status=None,
        dedupe_key=None,
        provider=None,
    )
    other = make_webhook(order_id="o2", received_at=at(1), provider="btcpay")
    later = make_webhook(received_at=at(2), outcome=WebhookOutcome.DUPLICATE)
    with store.transaction() as tx:
        assert tx.list_webhooks("o1") == []
        for entry in (first, rejected, other, later):
            tx.log_webhook(entry)
    with store.transaction() as tx:
        assert exact(tx.list_webhooks("o1")) == exact([first, later])
        assert tx.list_webhooks("o2") == [other]
        assert tx.list_webhooks("o3") == []


def test_audit_entries_are_listed_per_order(store: Store) -> None:
    entries = [
        make_audit(),
        make_audit(None, action="pool_keys_added", detail="3 keys for p1", actor="admin"),
        make_audit("o2"),
        make_audit(at=at(1), action="ipn_applied", detail="waiting -> paid"),
    ]
    with store.transaction() as tx:
        for entry in entries:
            tx.add_audit(entry)
    with store.transaction() as tx:
        assert tx.list_audit("o1") == [entries[0], entries[3]]
        assert tx.list_audit("o2") == [entries[2]]
        assert tx.list_audit("o3") == []


def test_reveals_are_listed_per_order(store: Store) -> None:
    reveals = [make_reveal(), make_reveal("o2"), make_reveal(item_id="i2", at=at(5))]
    with store.transaction() as tx:
        for reveal in reveals:
            tx.record_reveal(reveal)
    with store.transaction() as tx:
        assert tx.list_reveals("o1") == [reveals[0], reveals[2]]
        assert tx.list_reveals("o2") == [reveals[1]]
        assert tx.list_reveals("o3") == []


# --- jobs -------------------------------------------------------------------------------


def test_a_job_key_is_enqueued_once(store: Store) -> None:
    job = make_job()
    with store.transaction() as tx:
        assert tx.get_job(job.key) is None
        assert tx.enqueue_job(job)
        assert not tx.enqueue_job(replace(job, run_at=at(5), attempts=3))
    with store.transaction() as tx:
        assert not tx.enqueue_job(job)
        assert tx.get_job(job.key) == job


def test_update_job_is_compare_and_set_on_version(store: Store) -> None:
    job = make_job()
    with store.transaction() as tx:
        tx.enqueue_job(job)
    with store.transaction() as tx:
        running = replace(job, state=JobState.RUNNING, attempts=1, lease_until=at(5))
        stored = tx.update_job(running)
        assert stored == replace(running, version=2)
        with pytest.raises(ConcurrentUpdate):
            tx.update_job(running)
        with pytest.raises(ConcurrentUpdate):
            tx.update_job(make_job("missing"))
    with store.transaction() as tx:
        assert tx.get_job(job.key) == stored
        failed = tx.update_job(
            replace(
                stored,
                state=JobState.DEAD,
                lease_until=None,
                last_error="supplier returned 503 — giving up",
            )
        )
    with store.transaction() as tx:
        assert tx.get_job(job.key) == failed


def test_due_jobs_are_pending_ones_and_running_ones_whose_lease_ran_out(store: Store) -> None:
    now = at(10)
    jobs = [
        make_job("b-pending-due", run_at=at(3)),
        make_job("a-pending-due", run_at=at(3)),
        make_job("pending-now", run_at=now),
        make_job("pending-later", run_at=now + timedelta(microseconds=1)),
        make_job("lease-over", state=JobState.RUNNING, run_at=at(1), lease_until=at(9)),
        make_job("lease-ends-now", state=JobState.RUNNING, run_at=at(4), lease_until=now),
        make_job("lease-held", state=JobState.RUNNING, run_at=at(0), lease_until=at(11)),
        make_job("running-no-lease", state=JobState.RUNNING, run_at=at(0)),
        make_job("done", state=JobState.DONE, run_at=at(0)),
        make_job("dead", state=JobState.DEAD, run_at=at(0)),
    ]
    with store.transaction() as tx:
        assert tx.due_jobs(now, 10) == []
        for job in jobs:
            assert tx.enqueue_job(job)
    due = ["lease-over", "a-pending-due", "b-pending-due", "lease-ends-now", "pending-now"]
    with store.transaction() as tx:
        assert [j.key for j in tx.due_jobs(now, 100)] == due
        assert [j.key for j in tx.due_jobs(now, 2)] == due[:2]
        assert tx.due_jobs(now, 0) == []
        assert [j.key for j in tx.due_jobs(at(0), 100)] == []
        # ``now`` in another zone is the same instant.
        local = now.astimezone(timezone(timedelta(hours=-5)))
        assert [j.key for j in tx.due_jobs(local, 100)] == due


def test_list_jobs_filters_by_state_and_order(store: Store) -> None:
    jobs = [
        make_job("fulfill:o2", order_id="o2", created_at=at(2)),
        make_job(
            "email:o1:completed",
            kind=JobKind.COMPLETION_EMAIL,
            created_at=at(3),
            state=JobState.DONE,
        ),
        make_job("fulfill:o1", created_at=at(1)),
        make_job("b", order_id="o3", created_at=at(1)),
    ]
    with store.transaction() as tx:
        assert tx.list_jobs() == []
        for job in jobs:
            tx.enqueue_job(job)
    with store.transaction() as tx:
        assert [j.key for j in tx.list_jobs()] == [
            "b",
            "fulfill:o1",
            "fulfill:o2",
            "email:o1:completed",
        ]
        assert [j.key for j in tx.list_jobs(state=JobState.PENDING)] == [
            "b",
            "fulfill:o1",
            "fulfill:o2",
        ]
        assert [j.key for j in tx.list_jobs(order_id="o1")] == ["fulfill:o1", "email:o1:completed"]
        assert [j.key for j in tx.list_jobs(state=JobState.DONE, order_id="o1")] == [
            "email:o1:completed"
        ]
        assert tx.list_jobs(state=JobState.DEAD) == []


# --- the email outbox -------------------------------------------------------------------


def test_one_email_row_per_order_and_kind_marked_sent_once(store: Store) -> None:
    record = make_email()
    with store.transaction() as tx:
        assert tx.get_email("o1", "completed") is None
        assert tx.insert_email(record)
        assert not tx.insert_email(replace(record, message_id="<other@bitloot.example>"))
        assert tx.insert_email(make_email(kind="reminder"))
        assert tx.insert_email(make_email("o2"))
    with store.transaction() as tx:
        assert tx.get_email("o1", "completed") == record
        tx.mark_email_sent("o1", "completed", at(3))
    with store.transaction() as tx:
        assert tx.get_email("o1", "completed") == replace(record, sent_at=at(3))
        # The first acceptance is the one on record.
        tx.mark_email_sent("o1", "completed", at(9))
        assert tx.get_email("o1", "completed") == replace(record, sent_at=at(3))
        assert tx.get_email("o2", "completed") == make_email("o2")


def test_marking_an_unknown_email_sent_is_an_error(store: Store) -> None:
    with pytest.raises(KeyError), store.transaction() as tx:
        tx.mark_email_sent("o1", "completed", T0)


# --- both stores, side by side ----------------------------------------------------------

ORDER_IDS = ("o1", "o2", "o3")
PRODUCT_IDS = ("p1", "p2")
PAYMENT_IDS = ("pay1", "pay2")
JOB_KEYS = ("fulfill:o1", "fulfill:o2", "email:o1:completed")
SCOPES = ("s1", "s2")
EMAIL_KINDS = ("completed", "reminder")

# Few distinct instants, so that ties and cutoffs at an exact instant come up often.
times = st.integers(min_value=0, max_value=3).map(at)
money = st.decimals(
    min_value=Decimal("0.00000001"), max_value=Decimal(10_000), places=8, allow_nan=False
) | st.sampled_from([Decimal("19.99"), Decimal("19.990"), Decimal("1E+2")])
# A few statuses and flags, so that filters match often.
SOME_FLAGS = (Flag.PAID_LATE, Flag.FULFILLMENT_FAILED)
SOME_STATUSES = (OrderStatus.CREATED, OrderStatus.WAITING, OrderStatus.PAID)
flag_sets = st.frozensets(st.sampled_from(SOME_FLAGS))
order_statuses = st.sampled_from(SOME_STATUSES)
stale = st.sampled_from([False, False, False, True])


def texts(*, min_size: int = 0, max_size: int) -> st.SearchStrategy[str]:
    """Any text a store keeps: every character but NUL, which PostgreSQL's text refuses."""
    return st.text(
        st.characters(codec="utf-8", exclude_characters="\x00"),
        min_size=min_size,
        max_size=max_size,
    )


def mostly_none(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.none(), strategy)


delivered = st.lists(
    st.builds(
        DeliveredKey,
        ref=texts(min_size=1, max_size=12),
        content_type=st.sampled_from(["text/plain", "image/png"]),
    ),
    max_size=2,
).map(tuple)
items = st.lists(
    st.builds(
        OrderItem,
        id=st.sampled_from(["i1", "i2"]),
        product_id=st.sampled_from(PRODUCT_IDS),
        name=texts(max_size=10),
        quantity=st.integers(1, 3),
        unit_price=money,
        source=st.sampled_from(list(ProductSource)),
        supplier_ref=st.none() | st.just("5c9b5f6b"),
        keys=delivered,
    ),
    min_size=1,
    max_size=2,
).map(tuple)


def ids(orders: list[Order]) -> list[str]:
    return [o.id for o in orders]


class StoresAgree(RuleBasedStateMachine):
    """Every operation, applied to every store, answers the same; so does their content.

    ``postgres``, when set, is one database for the whole run, emptied before each example.
    """

    postgres: PostgresStore | None = None

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="bitloot-store-")
        self.memory = MemoryStore()
        self.sqlite = SqliteStore(Path(self.directory) / "bitloot.db")
        self.stores: list[Store] = [self.memory, self.sqlite]
        if self.postgres is not None:
            empty_postgres(self.postgres)
            self.stores.append(self.postgres)
        self.ref_serial = 0

    def teardown(self) -> None:
        self.sqlite.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def both(self, operation: Any, *, fail: bool = False) -> object:
        """Run ``operation(tx)`` in a transaction of each store; the answers must agree."""

        def attempt(store: Store) -> object:
            with store.transaction() as tx:
                answer = operation(tx)
                if fail:
                    raise Boom
                return answer

        answers = []
        for store in self.stores:
            try:
                answer = attempt(store)
            except (ConcurrentUpdate, KeyError, Boom) as exc:
                answer = type(exc)
            answers.append(exact(answer))
        for answer in answers[1:]:
            assert answer == answers[0]
        return answers[0]

    @rule(
        product_id=st.sampled_from(PRODUCT_IDS),
        name=texts(max_size=10),
        price=money,
        source=st.sampled_from(list(ProductSource)),
    )
    def upsert_product(
        self, product_id: str, name: str, price: Decimal, source: ProductSource
    ) -> None:
        product = Product(
            id=product_id,
            name=name,
            price=price,
            currency="EUR",
            source=source,
            supplier_ref="5c9b5f6b" if source is ProductSource.KINGUIN else None,
        )
        self.both(lambda tx: tx.upsert_product(product))

    @rule(product_id=st.sampled_from(PRODUCT_IDS), count=st.integers(0, 3))
    def add_pool_keys(self, product_id: str, count: int) -> None:
        # Fresh refs, named after their product as the service names them.
        refs = [f"pool/{product_id}/{self.ref_serial + n}" for n in range(count)]
        self.ref_serial += count
        self.both(lambda tx: tx.add_pool_keys(product_id, refs))

    @rule(product_id=st.sampled_from(PRODUCT_IDS), refs=st.lists(st.integers(0, 8), max_size=3))
    def re_add_pool_keys(self, product_id: str, refs: list[int]) -> None:
        known = [f"pool/{product_id}/{n}" for n in dict.fromkeys(refs)]
        self.both(lambda tx: tx.add_pool_keys(product_id, known))

    @rule(product_id=st.sampled_from(PRODUCT_IDS), claimant=st.sampled_from(["a", "b", "c", "d"]))
    def claim_pool_key(self, product_id: str, claimant: str) -> None:
        self.both(lambda tx: (tx.claim_pool_key(product_id, claimant), tx.pool_size(product_id)))

    @rule(
        order_id=st.sampled_from(ORDER_IDS),
        created=times,
        order_items=items,
        status=order_statuses,
        flags=flag_sets,
    )
    def insert_order(
        self,
        order_id: str,
        created: datetime,
        order_items: tuple[OrderItem, ...],
        status: OrderStatus,
        flags: frozenset[Flag],
    ) -> None:
        order = make_order(
            order_id,
            created_at=created,
            updated_at=created,
            items=order_items,
            status=status,
            flags=flags,
        )
        self.both(lambda tx: tx.insert_order(order))

    @rule(
        order_id=st.sampled_from(ORDER_IDS),
        version_offset=st.sampled_from([0, 0, 0, 0, -1, 1]),
        status=order_statuses,
        flags=flag_sets,
        payment_id=st.none() | st.sampled_from(PAYMENT_IDS),
        fail=st.booleans(),
    )
    def update_order(
        self,
        order_id: str,
        version_offset: int,
        status: OrderStatus,
        flags: frozenset[Flag],
        payment_id: str | None,
        fail: bool,
    ) -> None:
        def update(tx: Any) -> object:
            current = tx.get_order(order_id) or make_order(order_id)
            return tx.update_order(
                replace(
                    current,
                    status=status,
                    flags=flags,
                    payment_id=payment_id,
                    version=current.version + version_offset,
                )
            )

        self.both(update, fail=fail)

    @rule(
        status=mostly_none(order_statuses),
        statuses=mostly_none(st.frozensets(order_statuses, max_size=2)),
        flag=mostly_none(st.sampled_from(SOME_FLAGS)),
        created_before=mostly_none(times),
        limit=st.integers(0, 4),
    )
    def list_orders(
        self,
        status: OrderStatus | None,
        statuses: frozenset[OrderStatus] | None,
        flag: Flag | None,
        created_before: datetime | None,
        limit: int,
    ) -> None:
        self.both(
            lambda tx: tx.list_orders(
                status=status,
                statuses=statuses,
                flag=flag,
                created_before=created_before,
                limit=limit,
            )
        )

    @rule(
        payment_id=st.sampled_from(PAYMENT_IDS),
        order_id=st.sampled_from(ORDER_IDS),
        amount=money,
        valid_until=st.none() | times,
    )
    def insert_payment(
        self, payment_id: str, order_id: str, amount: Decimal, valid_until: datetime | None
    ) -> None:
        payment = make_payment(
            payment_id, order_id=order_id, pay_amount=amount, valid_until=valid_until
        )
        self.both(lambda tx: tx.insert_payment(payment))

    @rule(
        payment_id=st.sampled_from(PAYMENT_IDS),
        paid=money,
        status=st.sampled_from(list(PaymentStatus)),
        stale=stale,
    )
    def update_payment(
        self, payment_id: str, paid: Decimal, status: PaymentStatus, stale: bool
    ) -> None:
        def update(tx: Any) -> object:
            current = tx.get_payment("nowpayments", payment_id) or make_payment(payment_id)
            return tx.update_payment(
                replace(current, actually_paid=paid, status=status, version=current.version - stale)
            )

        self.both(update)

    @rule(order_id=st.none() | st.sampled_from(ORDER_IDS))
    def list_payments(self, order_id: str | None) -> None:
        self.both(lambda tx: tx.list_payments(order_id=order_id))

    @rule(scope=st.sampled_from(SCOPES), created=times, fingerprint=st.sampled_from(["f", "g"]))
    def insert_idempotency(self, scope: str, created: datetime, fingerprint: str) -> None:
        record = IdempotencyRecord(
            scope=scope, fingerprint=fingerprint, order_id="o1", created_at=created
        )
        self.both(lambda tx: (tx.insert_idempotency(record), tx.get_idempotency(scope)))

    @rule(cutoff=times)
    def delete_idempotency_before(self, cutoff: datetime) -> None:
        self.both(lambda tx: tx.delete_idempotency_before(cutoff))

    @rule(key=st.sampled_from(["k1", "k2", "k3"]), when=times, fail=st.booleans())
    def claim_ipn(self, key: str, when: datetime, fail: bool) -> None:
        self.both(lambda tx: tx.claim_ipn(key, when), fail=fail)

    @rule(order_id=st.none() | st.sampled_from(ORDER_IDS), outcome=st.sampled_from(WebhookOutcome))
    def log_webhook(self, order_id: str | None, outcome: WebhookOutcome) -> None:
        self.both(lambda tx: tx.log_webhook(make_webhook(order_id=order_id, outcome=outcome)))

    @rule(key=st.sampled_from(JOB_KEYS), run_at=times, created=times, fail=st.booleans())
    def enqueue_job(self, key: str, run_at: datetime, created: datetime, fail: bool) -> None:
        job = make_job(key, order_id=key.split(":")[1], run_at=run_at, created_at=created)
        self.both(lambda tx: (tx.enqueue_job(job), tx.get_job(key)), fail=fail)

    @rule(
        key=st.sampled_from(JOB_KEYS),
        state=st.sampled_from(list(JobState)),
        run_at=times,
        lease_until=st.none() | times,
        stale=stale,
    )
    def update_job(
        self,
        key: str,
        state: JobState,
        run_at: datetime,
        lease_until: datetime | None,
        stale: bool,
    ) -> None:
        def update(tx: Any) -> object:
            current = tx.get_job(key) or make_job(key)
            return tx.update_job(
                replace(
                    current,
                    state=state,
                    run_at=run_at,
                    lease_until=lease_until,
                    attempts=current.attempts + 1,
                    version=current.version - stale,
                )
            )

        self.both(update)

    @rule(now=times, limit=st.integers(0, 4))
    def due_jobs(self, now: datetime, limit: int) -> None:
        self.both(lambda tx: tx.due_jobs(now, limit))

    @rule(
        state=st.none() | st.sampled_from(list(JobState)),
        order_id=st.none() | st.sampled_from(ORDER_IDS),
    )
    def list_jobs(self, state: JobState | None, order_id: str | None) -> None:
        self.both(lambda tx: tx.list_jobs(state=state, order_id=order_id))

    @rule(order_id=st.sampled_from(ORDER_IDS), kind=st.sampled_from(EMAIL_KINDS), created=times)
    def insert_email(self, order_id: str, kind: str, created: datetime) -> None:
        record = make_email(order_id, kind, created_at=created)
        self.both(lambda tx: tx.insert_email(record))

    @rule(order_id=st.sampled_from(ORDER_IDS), kind=st.sampled_from(EMAIL_KINDS), when=times)
    def mark_email_sent(self, order_id: str, kind: str, when: datetime) -> None:
        def mark(tx: Any) -> object:
            tx.mark_email_sent(order_id, kind, when)
            return tx.get_email(order_id, kind)

        self.both(mark)

    @rule(order_id=st.none() | st.sampled_from(ORDER_IDS), when=times)
    def add_audit(self, order_id: str | None, when: datetime) -> None:
        self.both(lambda tx: tx.add_audit(make_audit(order_id, at=when)))

    @rule(order_id=st.sampled_from(ORDER_IDS), item_id=st.sampled_from(["i1", "i2"]), when=times)
    def record_reveal(self, order_id: str, item_id: str, when: datetime) -> None:
        self.both(lambda tx: tx.record_reveal(make_reveal(order_id, item_id=item_id, at=when)))

    @invariant()
    def contents_agree(self) -> None:
        def snapshot(tx: Any) -> object:
            return (
                tx.list_products(),
                [tx.pool_size(p) for p in PRODUCT_IDS],
                tx.list_orders(limit=100),
                # Full values once; the filtered listings by id.
                [ids(tx.list_orders(created_before=at(m))) for m in range(4)],
                [ids(tx.list_orders(status=s)) for s in SOME_STATUSES],
                [ids(tx.list_orders(flag=f)) for f in SOME_FLAGS],
                tx.count_orders_by_status(),
                tx.list_payments(),
                [tx.get_idempotency(s) for s in SCOPES],
                [tx.list_webhooks(o) for o in ORDER_IDS],
                tx.list_jobs(),
                [[j.key for j in tx.due_jobs(at(m), 100)] for m in range(4)],
                [tx.get_email(o, k) for o in ORDER_IDS for k in EMAIL_KINDS],
                [tx.list_audit(o) for o in ORDER_IDS],
                [tx.list_reveals(o) for o in ORDER_IDS],
            )

        self.both(snapshot)


def empty_postgres(store: PostgresStore) -> None:
    with store.transaction() as tx:
        tx._execute(
            "TRUNCATE products, pool_keys, orders, payments, idempotency, ipn_dedupe,"
            " webhooks, jobs, emails, audit, reveals RESTART IDENTITY"
        )


StoresAgree.TestCase.settings = settings(
    StoresAgree.TestCase.settings, stateful_step_count=50, deadline=None
)
test_memory_and_sqlite_stores_agree = StoresAgree.TestCase


def test_memory_sqlite_and_postgres_stores_agree(pg_url: str) -> None:
    # A round trip per operation to a server: fewer examples than the run above, which
    # already explores the same operations on the two embedded stores.
    examples = min(settings().max_examples, 300)
    with PostgresStore(pg_url, pool_size=1) as postgres:
        machine = type("StoresAgreeOnThisDatabase", (StoresAgree,), {"postgres": postgres})
        run_state_machine_as_test(
            machine,
            settings=settings(
                settings(), max_examples=examples, stateful_step_count=50, deadline=None
            ),
        )
