"""The SQLite store under several threads and processes, and its schema migrations.

Child processes are started with the ``spawn`` method and run this very file (through
``runpy``) with a task to do: each opens its own connection from a pickled store, as a
worker process of a real shop would.
"""

from __future__ import annotations

import json
import multiprocessing
import pickle
import runpy
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bitloot_adapters import sqlite_store
from bitloot_adapters.sqlite_store import SCHEMA_VERSION, SqliteStore, StoreClosedError
from bitloot_core.chart import Flag, OrderStatus
from bitloot_core.errors import AdapterError, ConcurrentUpdate
from bitloot_core.values import (
    EmailRecord,
    Job,
    JobKind,
    JobState,
    Order,
    OrderItem,
    ProductSource,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PROCESSES = 4
WORKER_RUN_NAME = "__bitloot_store_worker__"


def make_order(order_id: str, **changes: Any) -> Order:
    fields: dict[str, Any] = {
        "id": order_id,
        "email": "0@example.com",
        "currency": "EUR",
        "items": (
            OrderItem(
                id="i1",
                product_id="p1",
                name="Game",
                quantity=1,
                unit_price=Decimal("19.99"),
                source=ProductSource.CUSTOM,
            ),
        ),
        "created_at": T0,
        "updated_at": T0,
        "access_token_hash": "ab" * 32,
    }
    return Order(**(fields | changes))


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


def make_email(order_id: str) -> EmailRecord:
    return EmailRecord(
        order_id=order_id,
        kind="completed",
        message_id=f"<{order_id}@bitloot.example>",
        to="buyer@example.com",
        created_at=T0,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "bitloot.db") as opened:
        yield opened


def read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def schema_versions(path: Path) -> list[int]:
    conn = read_only(path)
    try:
        return [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    finally:
        conn.close()


# --- child processes --------------------------------------------------------------------


def in_processes(task: str, count: int = PROCESSES, **params: Any) -> None:
    """Run ``task`` in ``count`` spawned processes at once; each must exit cleanly."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(count)
    children = [
        context.Process(
            target=runpy.run_path,
            args=(__file__,),
            kwargs={
                "run_name": WORKER_RUN_NAME,
                "init_globals": {
                    "WORKER": {"task": task, "n": n, "start": start, "params": params}
                },
            },
        )
        for n in range(count)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)
    for child in children:
        if child.is_alive():  # pragma: no cover - only a hung child gets here
            child.kill()
            child.join()
    assert [child.exitcode for child in children] == [0] * count


def _increment(
    store: SqliteStore, order_ids: list[str], rounds: int, *, split: bool
) -> dict[str, Any]:
    """Add one to each order's counter (kept in its email), ``rounds`` times in all.

    ``split`` reads in one transaction and writes in the next, so only compare-and-set
    stands between two writers; otherwise read and write share one ``BEGIN IMMEDIATE``.
    """
    done: dict[str, int] = dict.fromkeys(order_ids, 0)
    conflicts = 0
    for n in range(rounds):
        order_id = order_ids[n % len(order_ids)]
        while True:
            try:
                if split:
                    with store.transaction() as tx:
                        order = tx.get_order(order_id)
                    with store.transaction() as tx:
                        write(tx, order)
                else:
                    with store.transaction() as tx:
                        write(tx, tx.get_order(order_id))
            except ConcurrentUpdate:
                conflicts += 1
                continue
            done[order_id] += 1
            break
    return {"done": done, "conflicts": conflicts}


def write(tx: Any, order: Order | None) -> None:
    assert order is not None
    count = int(order.email.split("@")[0])
    tx.update_order(replace(order, email=f"{count + 1}@example.com"))


def _run_worker(job: dict[str, Any]) -> None:
    task, n, params = job["task"], job["n"], job["params"]
    if task == "migrate":
        job["start"].wait()
        SqliteStore(params["path"]).close()
        return
    store: SqliteStore = pickle.loads(params["store"])  # noqa: S301  # our own bytes
    try:
        job["start"].wait()
        if task == "increment":
            result: object = _increment(
                store, params["order_ids"], params["rounds"], split=params["split"]
            )
        elif task == "unique":
            result = []
            for k in range(params["keys"]):
                with store.transaction() as tx:
                    result.append(
                        [
                            tx.claim_ipn(f"ipn-{k}", T0),
                            tx.enqueue_job(make_job(f"fulfill:o{k}")),
                            tx.insert_email(make_email(f"o{k}")),
                        ]
                    )
        else:
            claims = []
            for k in range(params["claims"]):
                with store.transaction() as tx:
                    claims.append(tx.claim_pool_key("p1", f"w{n}/{k}"))
            result = claims
        Path(params["out"], f"{n}.json").write_text(json.dumps(result))
    finally:
        store.close()


def results(directory: Path) -> list[Any]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


# --- migrations -------------------------------------------------------------------------


def test_opening_a_file_again_keeps_its_schema_and_data(tmp_path: Path) -> None:
    path = tmp_path / "bitloot.db"
    with SqliteStore(path) as first, first.transaction() as tx:
        tx.insert_order(make_order("o1"))
    assert schema_versions(path) == list(range(1, SCHEMA_VERSION + 1))
    with SqliteStore(path) as second, SqliteStore(str(path)) as third:
        with second.transaction() as tx:
            assert tx.get_order("o1") == make_order("o1")
        with third.transaction() as tx:
            tx.insert_order(make_order("o2"))
    assert schema_versions(path) == list(range(1, SCHEMA_VERSION + 1))
    conn = read_only(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (2,)
    finally:
        conn.close()


def test_every_field_of_every_value_has_its_column(store: SqliteStore) -> None:
    conn = read_only(store.path)
    try:
        for table in (
            sqlite_store._PRODUCTS,
            sqlite_store._ORDERS,
            sqlite_store._PAYMENTS,
            sqlite_store._IDEMPOTENCY,
            sqlite_store._WEBHOOKS,
            sqlite_store._JOBS,
            sqlite_store._EMAILS,
            sqlite_store._AUDIT,
            sqlite_store._REVEALS,
        ):
            columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table.name})")}
            assert set(table.columns) <= columns, table.name
    finally:
        conn.close()


PROVIDER_OF = {1: "nowpayments", 2: "btcpay"}


def test_payments_before_v5_keep_their_provider_and_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bitloot.db"
    with monkeypatch.context() as before:
        before.setattr(sqlite_store, "MIGRATIONS", sqlite_store.MIGRATIONS[:4])
        before.setattr(sqlite_store, "SCHEMA_VERSION", 4)
        SqliteStore(path).close()
    conn = sqlite3.connect(path)
    with conn:
        for n in (2, 1):  # opened in this order: the listing keeps it
            conn.execute(
                "INSERT INTO payments (id, order_id, status, provider_status, price_amount,"
                " price_currency, pay_amount, pay_currency, pay_address, actually_paid,"
                " created_at, updated_at, version, provider) VALUES (?, ?, 'waiting',"
                " 'waiting', '10', 'eur', '0.001', 'btc', 'addr', '0', ?, ?, 1, ?)",
                (f"pay{n}", f"o{n}", T0.isoformat(), T0.isoformat(), PROVIDER_OF[n]),
            )
            row = sqlite_store._ROW.unstructure(replace(make_order(f"o{n}"), payment_id=f"pay{n}"))
            del row["payment_provider"]  # not a column before v5
            columns, marks = ", ".join(row), ", ".join("?" * len(row))
            insert = f"INSERT INTO orders ({columns}) VALUES ({marks})"  # noqa: S608  # names only
            conn.execute(insert, list(row.values()))
    conn.close()
    with SqliteStore(path) as store, store.transaction() as tx:
        assert store.applied == list(range(5, SCHEMA_VERSION + 1))
        orders = [tx.get_order(f"o{n}") for n in (1, 2)]
        assert [(o.payment_provider, o.payment_id) for o in orders if o] == [
            ("nowpayments", "pay1"),
            ("btcpay", "pay2"),
        ]
        assert [(p.provider, p.id) for p in tx.list_payments()] == [
            ("btcpay", "pay2"),
            ("nowpayments", "pay1"),
        ]
        assert tx.get_payment("nowpayments", "pay2") is None


def v2_add_notes(db: Any) -> None:
    db.create_table("notes", {"id": int, "text": str}, pk="id")


def test_a_new_migration_runs_once_on_an_existing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bitloot.db"
    with SqliteStore(path) as store, store.transaction() as tx:
        tx.insert_order(make_order("o1"))
    monkeypatch.setattr(sqlite_store, "MIGRATIONS", (*sqlite_store.MIGRATIONS, v2_add_notes))
    monkeypatch.setattr(sqlite_store, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    SqliteStore(path).close()
    SqliteStore(path).close()
    assert schema_versions(path) == list(range(1, SCHEMA_VERSION + 2))
    with SqliteStore(path) as store, store.transaction() as tx:
        assert tx.get_order("o1") == make_order("o1")


def v2_fails_halfway(db: Any) -> None:
    db.create_table("notes", {"id": int, "text": str}, pk="id")
    raise RuntimeError("migration failed")


def test_a_failed_migration_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bitloot.db"
    SqliteStore(path).close()
    monkeypatch.setattr(sqlite_store, "MIGRATIONS", (*sqlite_store.MIGRATIONS, v2_fails_halfway))
    monkeypatch.setattr(sqlite_store, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(RuntimeError, match="migration failed"):
        SqliteStore(path)
    assert schema_versions(path) == list(range(1, SCHEMA_VERSION + 1))
    conn = read_only(path)
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert "notes" not in tables


def v2_commits_by_itself(db: Any) -> None:
    db.conn.execute("COMMIT")


def test_a_migration_that_commits_by_itself_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bitloot.db"
    SqliteStore(path).close()
    monkeypatch.setattr(
        sqlite_store, "MIGRATIONS", (*sqlite_store.MIGRATIONS, v2_commits_by_itself)
    )
    monkeypatch.setattr(sqlite_store, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(AdapterError) as caught:
        SqliteStore(path)
    assert caught.value.code == "migration_not_atomic"
    assert schema_versions(path) == list(range(1, SCHEMA_VERSION + 1))


def test_a_file_from_a_newer_bitloot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bitloot.db"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(
                "INSERT INTO schema_version VALUES (?, ?)", (SCHEMA_VERSION + 1, T0.isoformat())
            )
    finally:
        conn.close()
    with pytest.raises(AdapterError) as refused:
        SqliteStore(path)
    assert refused.value.code == "schema_too_new"


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bitloot.db"
    path.write_bytes(b"this is not a database, " * 100)
    with pytest.raises(sqlite3.DatabaseError):
        SqliteStore(path)


@pytest.mark.slow
def test_processes_starting_at_once_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "bitloot.db"
    in_processes("migrate", path=str(path))
    assert schema_versions(path) == list(range(1, SCHEMA_VERSION + 1))


# --- no lost update, no duplicate -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("split", [False, True], ids=["one-transaction", "compare-and-set"])
def test_concurrent_increments_lose_nothing(tmp_path: Path, split: bool) -> None:
    order_ids = ["o1", "o2", "o3"]
    with SqliteStore(tmp_path / "bitloot.db") as store:
        with store.transaction() as tx:
            for order_id in order_ids:
                tx.insert_order(make_order(order_id))
        in_processes(
            "increment",
            store=pickle.dumps(store),
            order_ids=order_ids,
            rounds=150,
            split=split,
            out=str(tmp_path),
        )
        with store.transaction() as tx:
            final = {order_id: tx.get_order(order_id) for order_id in order_ids}
    done = results(tmp_path)
    assert len(done) == PROCESSES
    for order_id, order in final.items():
        assert order is not None
        updates = sum(r["done"][order_id] for r in done)
        assert updates == 150 * PROCESSES // len(order_ids)
        assert order.version == 1 + updates
        assert order.email == f"{updates}@example.com"
    if not split:
        assert sum(r["conflicts"] for r in done) == 0


@pytest.mark.slow
def test_racing_unique_inserts_win_exactly_once(tmp_path: Path) -> None:
    keys = 60
    with SqliteStore(tmp_path / "bitloot.db") as store:
        in_processes("unique", store=pickle.dumps(store), keys=keys, out=str(tmp_path))
        with store.transaction() as tx:
            assert len(tx.list_jobs()) == keys
    done = results(tmp_path)
    assert len(done) == PROCESSES
    for k in range(keys):
        for operation in range(3):
            assert sum(r[k][operation] for r in done) == 1, (k, operation)


@pytest.mark.slow
def test_racing_pool_claims_hand_each_key_out_once(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "bitloot.db") as store:
        with store.transaction() as tx:
            tx.add_pool_keys("p1", [f"pool/p1/{n}" for n in range(50)])
        in_processes("claim", store=pickle.dumps(store), claims=20, out=str(tmp_path))
        with store.transaction() as tx:
            assert tx.pool_size("p1") == 0
    claimed = [ref for r in results(tmp_path) for ref in r]
    handed_out = [ref for ref in claimed if ref is not None]
    assert sorted(handed_out) == sorted(f"pool/p1/{n}" for n in range(50))
    assert claimed.count(None) == PROCESSES * 20 - 50


def test_threads_share_a_store_each_with_its_own_connection(store: SqliteStore) -> None:
    with store.transaction() as tx:
        tx.insert_order(make_order("o1"))
    outcomes: list[object] = []

    def work() -> None:
        try:
            outcomes.append(_increment(store, ["o1"], 50, split=True))
        finally:
            store.close()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with store.transaction() as tx:
        order = tx.get_order("o1")
    assert order is not None
    assert order.version == 201
    assert order.email == "200@example.com"


# --- transaction discipline -------------------------------------------------------------


def test_transactions_do_not_nest(store: SqliteStore) -> None:
    with store.transaction() as tx:
        tx.insert_order(make_order("o1"))
        with pytest.raises(RuntimeError, match="do not nest"), store.transaction():
            pass  # pragma: no cover - never entered
        tx.insert_order(make_order("o2"))
    with store.transaction() as tx:
        assert [o.id for o in tx.list_orders()] == ["o1", "o2"]


def test_a_transaction_cannot_be_used_after_its_block(store: SqliteStore) -> None:
    with store.transaction() as tx:
        pass
    with pytest.raises(StoreClosedError):
        tx.insert_order(make_order("o1"))
    with pytest.raises(StoreClosedError):
        tx.add_pool_keys("p1", ["pool/p1/a"])
    with store.transaction() as tx:
        assert tx.get_order("o1") is None
        assert tx.pool_size("p1") == 0


def test_a_writer_waits_for_the_lock_then_reports_the_store_busy(tmp_path: Path) -> None:
    path = tmp_path / "bitloot.db"
    with (
        SqliteStore(path) as holder,
        SqliteStore(path, busy_timeout_ms=50) as waiter,
        holder.transaction() as tx,
    ):
        tx.insert_order(make_order("o1"))
        with pytest.raises(AdapterError) as busy, waiter.transaction():
            pass  # pragma: no cover - never entered
        assert busy.value.code == "store_busy"
        assert busy.value.retryable
    with SqliteStore(path) as store, store.transaction() as tx:
        assert tx.get_order("o1") is not None


def test_a_transaction_ended_underneath_still_raises_the_real_error(store: SqliteStore) -> None:
    # The body rolls back through the raw connection: the store must not then fail on
    # its own ROLLBACK (or COMMIT) and hide what happened.

    def roll_back_underneath_then_fail() -> None:
        with store.transaction() as tx:
            tx._conn.execute("ROLLBACK")
            raise ValueError("boom")

    def roll_back_underneath_then_commit() -> None:
        with store.transaction() as tx:
            tx.insert_order(make_order("o1"))
            tx._conn.execute("ROLLBACK")

    with pytest.raises(ValueError, match="boom"):
        roll_back_underneath_then_fail()
    with pytest.raises(sqlite3.OperationalError, match="no transaction"):
        roll_back_underneath_then_commit()
    with store.transaction() as tx:
        assert tx.get_order("o1") is None


def test_close_then_use_again_opens_a_new_connection(store: SqliteStore) -> None:
    with store.transaction() as tx:
        tx.insert_order(make_order("o1"))
    store.close()
    store.close()
    with store.transaction() as tx:
        assert tx.get_order("o1") is not None


def test_a_store_pickles_as_its_path_and_settings(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "bitloot.db", busy_timeout_ms=1234, synchronous="FULL") as store:
        with store.transaction() as tx:
            tx.insert_order(make_order("o1"))
        with pickle.loads(pickle.dumps(store)) as copy:  # noqa: S301  # our own bytes
            assert repr(copy) == repr(store)
            assert (copy.path, copy.busy_timeout_ms, copy.synchronous) == (
                store.path,
                1234,
                "FULL",
            )
            with copy.transaction() as tx:
                assert tx.get_order("o1") is not None


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"synchronous": "OFF"}, ValueError),
        ({"busy_timeout_ms": -1}, ValueError),
        ({"busy_timeout_ms": 1.5}, TypeError),
        ({"busy_timeout_ms": True}, TypeError),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, settings: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        SqliteStore(tmp_path / "bitloot.db", **settings)


def test_an_old_sqlite_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store.sqlite3, "sqlite_version_info", (3, 31, 1))
    with pytest.raises(AdapterError, match="too old"):
        SqliteStore(tmp_path / "bitloot.db")


def test_naive_datetimes_are_refused(store: SqliteStore) -> None:
    with pytest.raises(ValueError, match="aware"), store.transaction() as tx:
        tx.due_jobs(datetime(2026, 1, 1), 10)  # noqa: DTZ001  # the point of the test


# --- the indexes behind the hot paths ---------------------------------------------------


def test_hot_queries_use_an_index(store: SqliteStore) -> None:
    now = T0 + timedelta(hours=1)
    statements: list[str] = []
    with store.transaction() as tx:
        tx.insert_order(make_order("o1", flags=frozenset({Flag.PAID_LATE})))
        tx._conn.set_trace_callback(statements.append)
        tx.get_order("o1")
        tx.list_orders(status=OrderStatus.CREATED)
        tx.list_orders(
            statuses=frozenset({OrderStatus.CREATED, OrderStatus.WAITING}), created_before=now
        )
        tx.list_orders(flag=Flag.PAID_LATE)
        tx.list_orders()
        tx.get_payment("nowpayments", "5800567260")
        tx.list_payments(order_id="o1")
        tx.due_jobs(now, 10)
        tx.list_jobs(order_id="o1")
        tx.claim_pool_key("p1", "o1/i1/0")
        tx.pool_size("p1")
        tx.list_webhooks("o1")
        tx.list_audit("o1")
        tx.list_reveals("o1")
        tx.delete_idempotency_before(now)
        tx._conn.set_trace_callback(None)
        plans = {
            sql: tx._conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall() for sql in statements
        }
    assert len(plans) >= 15
    for sql, plan in plans.items():
        for _id, _parent, _unused, detail in plan:
            # "SCAN t" without an index reads the whole table: none on a hot path.
            assert not detail.startswith("SCAN") or "INDEX" in detail, (sql, detail)


if __name__ == WORKER_RUN_NAME:
    _run_worker(globals()["WORKER"])
