"""What the PostgreSQL store adds to the store contract: many connections at once,
migrations by many processes, outages and the pool's own reconnection.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from bitloot_adapters.postgres_store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    PostgresStore,
    redact_url,
)
from bitloot_core.errors import ConcurrentUpdate, InvalidInput, StoreUnavailable
from bitloot_core.values import IdempotencyRecord, Job, JobKind, JobState, Product, ProductSource
from support.postgres import PgCluster, start_cluster

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_job(key: str) -> Job:
    return Job(
        key=key,
        kind=JobKind.FULFILL,
        order_id=key,
        state=JobState.PENDING,
        attempts=0,
        run_at=T0,
        created_at=T0,
    )


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    with PostgresStore(pg_url, pool_size=8) as opened:
        yield opened


def test_text_with_nul_is_refused_as_bad_input_and_writes_nothing(store: PostgresStore) -> None:
    product = Product(
        id="p1", name="bad\x00name", price=Decimal(1), currency="EUR", source=ProductSource.CUSTOM
    )

    def write() -> None:
        with store.transaction() as tx:
            tx.add_pool_keys("p0", ["fine"])
            tx.upsert_product(product)

    with pytest.raises(InvalidInput):
        write()
    with store.transaction() as tx:
        assert tx.list_products() == []
        assert tx.pool_size("p0") == 0


def test_concurrent_workers_never_lease_the_same_job(store: PostgresStore) -> None:
    with store.transaction() as tx:
        for n in range(40):
            tx.enqueue_job(make_job(f"job{n:02}"))
    leased: list[str] = []
    lock = threading.Lock()

    def lease_until_none() -> None:
        while True:
            with store.transaction() as tx:
                due = tx.due_jobs(T0 + timedelta(minutes=1), 1)
                if not due:
                    return
                tx.update_job(
                    replace(due[0], state=JobState.RUNNING, lease_until=T0 + timedelta(days=1))
                )
                # Hold the row a moment, as a lease's transaction does, so others meet it.
                tx._execute("SELECT pg_sleep(0.005)")
            with lock:
                leased.append(due[0].key)

    with ThreadPoolExecutor(6) as pool:
        for future in [pool.submit(lease_until_none) for _ in range(6)]:
            future.result()
    # SKIP LOCKED: no worker waited for a job another was leasing, nor lost a race on it.
    assert sorted(leased) == [f"job{n:02}" for n in range(40)]


def test_concurrent_claims_take_every_pool_key_once(store: PostgresStore) -> None:
    refs = [f"pool/p1/{n}" for n in range(30)]
    with store.transaction() as tx:
        tx.add_pool_keys("p1", refs)

    def claim(n: int) -> str | None:
        with store.transaction() as tx:
            return tx.claim_pool_key("p1", f"o{n}/i1/0")

    with ThreadPoolExecutor(8) as pool:
        claimed = list(pool.map(claim, range(30)))
    assert sorted(c for c in claimed if c is not None) == sorted(refs)
    with store.transaction() as tx:
        assert tx.pool_size("p1") == 0
        assert tx.claim_pool_key("p1", "o99/i1/0") is None


def test_requests_with_one_idempotency_key_take_turns(store: PostgresStore) -> None:
    """A double click: the second transaction reads the key only once the first, which
    recorded it, has committed, so it finds the record instead of racing to insert one."""
    record = IdempotencyRecord(scope="s" * 64, fingerprint="f", order_id="o1", created_at=T0)
    first_read = threading.Event()
    seen: list[IdempotencyRecord | None] = []

    def second() -> None:
        first_read.wait(10)
        with store.transaction() as tx:
            seen.append(tx.get_idempotency(record.scope))

    other = threading.Thread(target=second)
    other.start()
    with store.transaction() as tx:
        assert tx.get_idempotency(record.scope) is None
        first_read.set()
        other.join(0.5)
        assert other.is_alive()  # waiting on the scope's lock, not reading past it
        assert tx.insert_idempotency(record)
    other.join(10)
    assert seen == [record]


def test_a_deadlock_is_reported_as_a_retryable_concurrent_update(store: PostgresStore) -> None:
    with store.transaction() as tx:
        tx.enqueue_job(make_job("a"))
        tx.enqueue_job(make_job("b"))
    both_hold_one = threading.Barrier(2)

    def lock_in_order(first: str, second: str) -> str:
        try:
            with store.transaction() as tx:
                for n, key in enumerate((first, second)):
                    tx._execute("SELECT 1 FROM jobs WHERE key = %s FOR UPDATE", (key,))
                    if n == 0:
                        both_hold_one.wait()
        except ConcurrentUpdate as exc:
            return f"aborted, retryable={exc.retryable}"
        return "committed"

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(lock_in_order, ("a", "b"), ("b", "a")))
    assert outcomes == ["aborted, retryable=True", "committed"]


def test_a_busy_pool_answers_unavailable_after_its_timeout(pg_url: str) -> None:
    with PostgresStore(pg_url, pool_size=1, connect_timeout=0.3) as store:
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            with store.transaction():
                holding.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        holding.wait(10)
        try:
            with pytest.raises(StoreUnavailable) as unavailable, store.transaction():
                pass
            assert unavailable.value.status_hint == 503
        finally:
            release.set()
            holder.join()


MIGRATE = """
import sys
from bitloot_adapters.postgres_store import PostgresStore
with PostgresStore(sys.argv[1], pool_size=1) as store:
    print(store.applied)
"""


def test_processes_starting_together_migrate_exactly_once(pg_url: str) -> None:
    starts = [
        subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", MIGRATE, pg_url], stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in starts]
    assert [p.returncode for p in starts] == [0] * 6
    assert sorted(outputs) == [str(list(range(1, SCHEMA_VERSION + 1))), *["[]"] * 5]
    with PostgresStore(pg_url, pool_size=1) as store:
        assert store.applied == []
        assert store.schema_version() == SCHEMA_VERSION


def test_payments_of_a_version_1_database_are_nowpayments_after_migrating(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_version (version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(MIGRATIONS[0].encode())
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        conn.execute(
            "INSERT INTO payments (id, order_id, status, provider_status, price_amount,"
            " price_currency, pay_amount, pay_currency, pay_address, actually_paid,"
            " created_at, updated_at, version) VALUES ('pay1', 'o1', 'waiting', 'waiting',"
            " '10', 'EUR', '0.001', 'btc', 'addr', '0', now(), now(), 1)"
        )
        conn.execute(
            "INSERT INTO orders (id, status, flags, email, currency, items, version,"
            " payment_id, created_at, updated_at, access_token_hash) VALUES ('o1', 'waiting',"
            " '{}', 'e@example.com', 'eur', '[]', 1, 'pay1', now(), now(), 'h')"
        )
    with PostgresStore(pg_url, pool_size=1) as store:
        assert store.applied == list(range(2, SCHEMA_VERSION + 1))
        with store.transaction() as tx:
            payment = tx.get_payment("nowpayments", "pay1")
            order_provider = tx._execute("SELECT payment_provider FROM orders").fetchall()
    assert payment is not None
    assert payment.provider == "nowpayments"
    # The order names its payment's provider, which the payment id alone used to imply.
    assert order_provider == [("nowpayments",)]


def test_a_database_newer_than_this_bitloot_is_refused(store: PostgresStore) -> None:
    with store.transaction() as tx:
        tx._execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(Exception, match="newer than this bitloot"):
        PostgresStore(store.url, pool_size=1)


def test_urls_in_messages_hide_the_password() -> None:
    url = "postgresql://shop:s3cret@db.example:5433/bitloot?sslmode=require"
    assert redact_url(url) == "postgresql://shop:***@db.example:5433/bitloot?sslmode=require"
    assert "s3cret" not in repr(PostgresStore.__new__(PostgresStore).__class__)
    assert redact_url("postgresql:///bitloot?host=/tmp") == "postgresql:///bitloot?host=/tmp"


@pytest.fixture(scope="module")
def own_cluster(pg_cluster: PgCluster) -> Iterator[PgCluster]:
    """A cluster of this module's own, to stop and restart without disturbing others."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


def test_a_restarted_server_answers_unavailable_then_the_pool_reconnects(
    own_cluster: PgCluster,
) -> None:
    url = own_cluster.new_database()
    with PostgresStore(url, pool_size=4, connect_timeout=2) as store:
        with store.transaction() as tx:
            tx.enqueue_job(make_job("before"))
        own_cluster.stop()
        try:
            with pytest.raises(StoreUnavailable), store.transaction() as tx:
                tx.enqueue_job(make_job("while-down"))
        finally:
            own_cluster.start()
        # Every pooled connection died with the server: the store reconnects by itself.
        for n in range(8):
            with store.transaction() as tx:
                tx.enqueue_job(make_job(f"after{n}"))
        with store.transaction() as tx:
            keys = {job.key for job in tx.list_jobs()}
    assert keys == {"before", *(f"after{n}" for n in range(8))}
