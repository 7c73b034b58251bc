"""Idempotency keys are secrets: short ones are refused, and none is stored in clear.

A replay with the same (email, key) hands out the order's access token, so a key must be
hard to guess (at least 16 characters) and the database must not give it away: only the
SHA-256 of the scope is kept, in SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlite_utils
from flow import BUYER, admin_orders, assert_error, create_order, order_body

from bitloot_adapters import postgres_store, sqlite_store
from bitloot_adapters.postgres_store import PostgresStore
from bitloot_adapters.sqlite_store import SqliteStore
from bitloot_core.values import IdempotencyRecord
from support.servers import RunningServer

KEY = "checkout-secret-0123456789"


def test_a_short_key_is_refused_and_creates_nothing(shared_server: RunningServer) -> None:
    before = len(admin_orders(shared_server))
    response = shared_server.http.post(
        "/api/orders", json=order_body(), headers={"idempotency-key": "x" * 15}
    )
    error = assert_error(response, 400, "invalid_idempotency_key")
    assert "16" in error["message"]
    assert len(admin_orders(shared_server)) == before


def test_sixteen_characters_replay(shared_server: RunningServer) -> None:
    first = create_order(shared_server, key="k" * 16)
    again = shared_server.http.post(
        "/api/orders", json=order_body(), headers={"idempotency-key": "k" * 16}
    )
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]


def test_the_database_holds_only_the_hash(server: RunningServer) -> None:
    order = create_order(server, key=KEY)
    rows = [(r["scope"], r["order_id"]) for r in server.rows("SELECT * FROM idempotency")]
    scope = hashlib.sha256(f"{BUYER.casefold()}\n{KEY}".encode()).hexdigest()
    assert rows == [(scope, order["id"])]
    if server.backend == "sqlite":
        # Not in the table, the WAL or anywhere else in the database's files.
        db = server.shop.settings.data_dir / "bitloot.db"
        for path in db.parent.glob("bitloot.db*"):
            assert KEY.encode() not in path.read_bytes(), path


def _plain_record() -> IdempotencyRecord:
    return IdempotencyRecord(
        scope=f"a@example.com\n{KEY}",
        fingerprint="f",
        order_id="o1",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_sqlite_upgrade_forgets_keys_stored_in_clear(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "bitloot.db")
    hashed = replace(_plain_record(), scope="0" * 64)
    with store.transaction() as tx:
        tx.insert_idempotency(_plain_record())
        tx.insert_idempotency(hashed)
    store.close()
    # The clear-text row above is what the version before hashing left; run its upgrade.
    with sqlite3.connect(tmp_path / "bitloot.db") as conn:
        sqlite_store._v4_hashed_idempotency_scopes(sqlite_utils.Database(conn))
    store = SqliteStore(tmp_path / "bitloot.db")
    try:
        with store.transaction() as tx:
            assert tx.get_idempotency(_plain_record().scope) is None
            assert tx.get_idempotency(hashed.scope) == hashed
    finally:
        store.close()


@pytest.mark.usefixtures("pg_cluster")
def test_postgres_upgrade_forgets_keys_stored_in_clear(pg_url: str) -> None:
    import psycopg  # noqa: PLC0415 - the postgres extra

    store = PostgresStore(pg_url, pool_size=1)
    hashed = replace(_plain_record(), scope="0" * 64)
    with store.transaction() as tx:
        tx.insert_idempotency(_plain_record())
        tx.insert_idempotency(hashed)
    store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(postgres_store._V4_HASHED_IDEMPOTENCY_SCOPES.encode())
    store = PostgresStore(pg_url, pool_size=1)
    try:
        with store.transaction() as tx:
            assert tx.get_idempotency(_plain_record().scope) is None
            assert tx.get_idempotency(hashed.scope) == hashed
    finally:
        store.close()
