"""The embedded ``Store``: one SQLite file, shared by every thread and process of a shop.

Every transaction is ``BEGIN IMMEDIATE``: it takes SQLite's single write lock before its
first read, so a read-modify-write never works on a snapshot another writer has already
replaced (a deferred ``BEGIN``, like sqlite-utils' ``atomic()``, loses updates that way).
Order, payment and job updates are compare-and-set on ``version`` besides; inserts that
must be unique use ``ON CONFLICT DO NOTHING`` and report a duplicate, never check first.

sqlite-utils creates the schema; the transactions are plain SQL on one ``sqlite3``
connection per thread. cattrs turns rows into the core's frozen values and back. Money is
stored as the text of its ``Decimal`` (never a float); times as ISO 8601 UTC text with
microseconds, so comparing the text compares the times.

This module must never commit half a transaction, and never hand a connection to a
thread other than the one that opened it.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, Self, TypeVar

import cattrs
import sqlite_utils

from bitloot_core.chart import Flag, OrderStatus
from bitloot_core.errors import AdapterError, ConcurrentUpdate
from bitloot_core.values import (
    AuditEntry,
    EmailRecord,
    IdempotencyRecord,
    Job,
    JobState,
    Order,
    OrderItem,
    Payment,
    Product,
    Reveal,
    WebhookLogEntry,
)

if TYPE_CHECKING:
    from types import TracebackType

    from bitloot_core.ports import Store, StoreTx

__all__ = ["SCHEMA_VERSION", "SqliteStore", "SqliteTx", "StoreClosedError"]

DEFAULT_BUSY_TIMEOUT_MS: Final = 30_000

# RETURNING (claim_pool_key) needs 3.35; STRICT tables, which sqlite-utils adds from 3.37
# on, are a safety net we can live without.
_MIN_SQLITE: Final = (3, 35, 0)

Synchronous = Literal["NORMAL", "FULL"]


class StoreClosedError(RuntimeError):
    """A transaction object was used after its ``with`` block ended."""


# --- rows <-> values --------------------------------------------------------------------


def _to_text(value: datetime) -> str:
    # Naive datetimes are refused: astimezone() would read them as local time.
    if value.tzinfo is None:
        raise ValueError(f"expected an aware UTC datetime, got {value!r}")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _from_text(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _row_converter() -> cattrs.Converter:
    """Values to rows and back; ``inner`` does the values nested in a JSON column."""
    inner = cattrs.Converter()
    inner.register_unstructure_hook(Decimal, str)
    inner.register_structure_hook(Decimal, lambda text, _: Decimal(text))
    inner.register_unstructure_hook(datetime, _to_text)
    inner.register_structure_hook(datetime, lambda text, _: _from_text(text))
    inner.register_unstructure_hook(enum.Enum, lambda member: member.value)

    row = inner.copy()
    items_type = tuple[OrderItem, ...]
    flags_type = frozenset[Flag]
    row.register_unstructure_hook_func(
        lambda t: t == items_type,
        lambda items: json.dumps(
            inner.unstructure(items, items_type), ensure_ascii=False, separators=(",", ":")
        ),
    )
    row.register_structure_hook_func(
        lambda t: t == items_type,
        lambda text, _: inner.structure(json.loads(text), items_type),
    )
    # Sorted, so equal flag sets are equal text; ``[]`` when none (the partial index).
    row.register_unstructure_hook_func(
        lambda t: t == flags_type,
        lambda flags: json.dumps(sorted(flag.value for flag in flags)),
    )
    row.register_structure_hook_func(
        lambda t: t == flags_type,
        lambda text, _: frozenset(Flag(value) for value in json.loads(text)),
    )
    return row


_ROW = _row_converter()

V = TypeVar("V")


def _quote(name: str) -> str:
    return f'"{name}"'


@dataclasses.dataclass(frozen=True, slots=True)
class _Table(Generic[V]):
    """How one value type maps onto one table: a column per dataclass field, same name."""

    name: str
    value_type: type[V]
    key: tuple[str, ...]
    columns: tuple[str, ...]
    # What a compare-and-set rewrites: every column but the key and the version.
    changed: tuple[str, ...]
    select: str
    insert: str

    @classmethod
    def of(cls, name: str, value_type: type[V], key: tuple[str, ...] = ()) -> _Table[V]:
        columns = tuple(f.name for f in dataclasses.fields(value_type))  # type: ignore[arg-type]
        column_list = ", ".join(map(_quote, columns))
        placeholders = ", ".join("?" * len(columns))
        return cls(
            name=name,
            value_type=value_type,
            key=key,
            columns=columns,
            changed=tuple(c for c in columns if c not in key and c != "version"),
            # Names come from this module's tables and the values' fields, never from input.
            select=f"SELECT {column_list} FROM {name}",  # noqa: S608
            insert=f"INSERT INTO {name} ({column_list}) VALUES ({placeholders})",  # noqa: S608
        )

    def params(self, value: V) -> list[Any]:
        unstructured = _ROW.unstructure(value)
        return [unstructured[column] for column in self.columns]

    def load(self, row: Sequence[Any]) -> V:
        return _ROW.structure(dict(zip(self.columns, row, strict=True)), self.value_type)

    def cas_update(self) -> str:
        """``UPDATE`` of every column but the key, if ``version`` is still the given one."""
        assignments = ", ".join(f"{_quote(c)} = ?" for c in self.changed)
        match = " AND ".join(f"{_quote(c)} = ?" for c in self.key)
        return (
            f"UPDATE {self.name} SET {assignments}, version = version + 1"  # noqa: S608  # names only
            f" WHERE {match} AND version = ?"
        )

    def cas_params(self, value: V) -> list[Any]:
        unstructured = _ROW.unstructure(value)
        return [
            *(unstructured[c] for c in self.changed),
            *(unstructured[c] for c in self.key),
            unstructured["version"],
        ]


_PRODUCTS = _Table.of("products", Product, ("id",))
_ORDERS = _Table.of("orders", Order, ("id",))
_PAYMENTS = _Table.of("payments", Payment, ("provider", "id"))
_IDEMPOTENCY = _Table.of("idempotency", IdempotencyRecord, ("scope",))
_WEBHOOKS = _Table.of("webhooks", WebhookLogEntry)
_JOBS = _Table.of("jobs", Job, ("key",))
_EMAILS = _Table.of("emails", EmailRecord, ("order_id", "kind"))
_AUDIT = _Table.of("audit", AuditEntry)
_REVEALS = _Table.of("reveals", Reveal)

_UPDATE_ORDER: Final = _ORDERS.cas_update()
_UPDATE_PAYMENT: Final = _PAYMENTS.cas_update()
_UPDATE_JOB: Final = _JOBS.cas_update()
_UPSERT_PRODUCT: Final = f"{_PRODUCTS.insert} ON CONFLICT (id) DO UPDATE SET " + ", ".join(
    f"{_quote(c)} = excluded.{_quote(c)}" for c in _PRODUCTS.columns if c != "id"
)
# The claim time is informational (when the key left the pool); the port passes no time,
# so SQLite's clock writes it, in the same text form as every other time.
_SQLITE_NOW: Final = "strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')"


# --- the schema -------------------------------------------------------------------------


def _v1_initial(db: sqlite_utils.Database) -> None:
    """Every table the v1 ports need, and the indexes behind their hot paths."""
    db.create_table(
        "products",
        {"id": str, "name": str, "price": str, "currency": str, "source": str, "supplier_ref": str},
        pk="id",
        not_null=["id", "name", "price", "currency", "source"],
        strict=True,
        if_not_exists=True,
    )
    pool_keys = db.create_table(
        "pool_keys",
        {"seq": int, "product_id": str, "ref": str, "claimed_by": str, "claimed_at": str},
        pk="seq",
        not_null=["product_id", "ref"],
        strict=True,
        if_not_exists=True,
    )
    # One key in one pool only: a ref is unique across products.
    pool_keys.create_index(["ref"], unique=True, if_not_exists=True)
    # A claimant holds at most one key of a product (NULLs, the unclaimed keys, are
    # distinct); the index also finds a product's next unclaimed key in insertion order.
    pool_keys.create_index(["product_id", "claimed_by"], unique=True, if_not_exists=True)

    orders = db.create_table(
        "orders",
        {
            "id": str,
            "status": str,
            "flags": str,
            "email": str,
            "currency": str,
            "items": str,
            "version": int,
            "payment_id": str,
            "created_at": str,
            "updated_at": str,
            "access_token_hash": str,
        },
        pk="id",
        not_null=[
            "id",
            "status",
            "flags",
            "email",
            "currency",
            "items",
            "version",
            "created_at",
            "updated_at",
            "access_token_hash",
        ],
        strict=True,
        if_not_exists=True,
    )
    # (status, created_at, id) answers list_orders in its own order, so LIMIT stops early.
    orders.create_index(["status", "created_at", "id"], if_not_exists=True)
    orders.create_index(["created_at", "id"], if_not_exists=True)
    orders.create_index(["payment_id"], if_not_exists=True)
    # Flagged orders are few: a partial index lists them without a scan of all orders.
    db.execute(
        "CREATE INDEX IF NOT EXISTS idx_orders_flagged ON orders (created_at, id)"
        " WHERE flags <> '[]'"
    )

    payments = db.create_table(
        "payments",
        {
            "id": str,
            "order_id": str,
            "status": str,
            "provider_status": str,
            "price_amount": str,
            "price_currency": str,
            "pay_amount": str,
            "pay_currency": str,
            "pay_address": str,
            "actually_paid": str,
            "valid_until": str,
            "created_at": str,
            "updated_at": str,
            "version": int,
        },
        pk="id",
        not_null=[
            "id",
            "order_id",
            "status",
            "provider_status",
            "price_amount",
            "price_currency",
            "pay_amount",
            "pay_currency",
            "pay_address",
            "actually_paid",
            "created_at",
            "updated_at",
            "version",
        ],
        strict=True,
        if_not_exists=True,
    )
    payments.create_index(["order_id"], if_not_exists=True)

    idempotency = db.create_table(
        "idempotency",
        {"scope": str, "fingerprint": str, "order_id": str, "created_at": str},
        pk="scope",
        not_null=["scope", "fingerprint", "order_id", "created_at"],
        strict=True,
        if_not_exists=True,
    )
    idempotency.create_index(["created_at"], if_not_exists=True)

    db.create_table(
        "ipn_dedupe",
        {"dedupe_key": str, "claimed_at": str},
        pk="dedupe_key",
        not_null=["dedupe_key", "claimed_at"],
        strict=True,
        if_not_exists=True,
    )

    webhooks = db.create_table(
        "webhooks",
        {
            "seq": int,
            "received_at": str,
            "body_sha256": str,
            "signature_valid": int,
            "outcome": str,
            "reason": str,
            "payment_id": str,
            "order_id": str,
            "provider_status": str,
            "dedupe_key": str,
        },
        pk="seq",
        not_null=["received_at", "body_sha256", "signature_valid", "outcome", "reason"],
        strict=True,
        if_not_exists=True,
    )
    webhooks.create_index(["order_id"], if_not_exists=True)

    jobs = db.create_table(
        "jobs",
        {
            "key": str,
            "kind": str,
            "order_id": str,
            "state": str,
            "attempts": int,
            "run_at": str,
            "lease_until": str,
            "last_error": str,
            "version": int,
            "created_at": str,
        },
        pk="key",
        not_null=[
            "key",
            "kind",
            "order_id",
            "state",
            "attempts",
            "run_at",
            "version",
            "created_at",
        ],
        strict=True,
        if_not_exists=True,
    )
    jobs.create_index(["state", "run_at"], if_not_exists=True)
    jobs.create_index(["order_id"], if_not_exists=True)

    db.create_table(
        "emails",
        {
            "order_id": str,
            "kind": str,
            "message_id": str,
            "to": str,
            "created_at": str,
            "sent_at": str,
        },
        pk=("order_id", "kind"),
        not_null=["order_id", "kind", "message_id", "to", "created_at"],
        strict=True,
        if_not_exists=True,
    )

    audit = db.create_table(
        "audit",
        {"seq": int, "order_id": str, "at": str, "action": str, "detail": str, "actor": str},
        pk="seq",
        not_null=["at", "action", "detail", "actor"],
        strict=True,
        if_not_exists=True,
    )
    audit.create_index(["order_id"], if_not_exists=True)

    reveals = db.create_table(
        "reveals",
        {"seq": int, "order_id": str, "item_id": str, "at": str, "expires_at": str},
        pk="seq",
        not_null=["order_id", "item_id", "at", "expires_at"],
        strict=True,
        if_not_exists=True,
    )
    reveals.create_index(["order_id"], if_not_exists=True)


def _v2_payment_provider(db: sqlite_utils.Database) -> None:
    """Payments carry the provider that holds them; every earlier one is NOWPayments'."""
    db.execute("ALTER TABLE payments ADD COLUMN provider TEXT NOT NULL DEFAULT 'nowpayments'")


def _v3_vault_keys(db: sqlite_utils.Database) -> None:
    """The database vault's envelopes (``vault_db``), named by the SHA-256 of their ref."""
    db.create_table(
        "vault_keys",
        {"name": str, "envelope": bytes, "created_at": str},
        pk="name",
        not_null=["envelope", "created_at"],
        strict=True,
    )


def _v4_hashed_idempotency_scopes(db: sqlite_utils.Database) -> None:
    # Scopes are stored hashed from now on; an older version stored "email\nkey" in
    # plain text (a key replays the order's access token). A hash has no newline.
    db.execute("DELETE FROM idempotency WHERE instr(scope, char(10)) > 0")


_V5_PAYMENTS: Final = """
CREATE TABLE payments_v5 (
    provider TEXT NOT NULL,
    id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    status TEXT NOT NULL,
    provider_status TEXT NOT NULL,
    price_amount TEXT NOT NULL,
    price_currency TEXT NOT NULL,
    pay_amount TEXT NOT NULL,
    pay_currency TEXT NOT NULL,
    pay_address TEXT NOT NULL,
    actually_paid TEXT NOT NULL,
    valid_until TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (provider, id)
) STRICT
"""
_V5_PAYMENT_COLUMNS: Final = (
    "provider, id, order_id, status, provider_status, price_amount, price_currency,"
    " pay_amount, pay_currency, pay_address, actually_paid, valid_until, created_at,"
    " updated_at, version"
)


def _v5_payment_identity(db: sqlite_utils.Database) -> None:
    """A payment is identified by (provider, the provider's payment id): two providers may
    use the same id. Orders name their payment's provider; the webhook log records the
    provider a webhook came from."""
    db.execute(_V5_PAYMENTS)
    # rowid kept: payments list in the order they were opened.
    db.execute(
        f"INSERT INTO payments_v5 (rowid, {_V5_PAYMENT_COLUMNS})"  # noqa: S608  # names only
        f" SELECT rowid, {_V5_PAYMENT_COLUMNS} FROM payments"
    )
    db.execute("DROP TABLE payments")
    db.execute("ALTER TABLE payments_v5 RENAME TO payments")
    db.execute("CREATE INDEX idx_payments_order_id ON payments (order_id)")
    db.execute("ALTER TABLE orders ADD COLUMN payment_provider TEXT")
    # Until now a payment id was unique on its own: it names its provider.
    db.execute(
        "UPDATE orders SET payment_provider ="
        " (SELECT provider FROM payments WHERE payments.id = orders.payment_id)"
        " WHERE payment_id IS NOT NULL"
    )
    db.execute("ALTER TABLE webhooks ADD COLUMN provider TEXT")


# Forward migrations, in order: the database is at version N once the first N have run.
# Append only; never edit one that has shipped.
MIGRATIONS: Final[tuple[Callable[[sqlite_utils.Database], None], ...]] = (
    _v1_initial,
    _v2_payment_provider,
    _v3_vault_keys,
    _v4_hashed_idempotency_scopes,
    _v5_payment_identity,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def _migrate(conn: sqlite3.Connection) -> list[int]:
    # sqlite-utils runs its DDL inside the transaction we opened: all of a migration and
    # its version row commit together, and a second process starting at the same moment
    # waits on BEGIN IMMEDIATE, then finds the work done.
    db = sqlite_utils.Database(conn, execute_plugins=False)
    _enable_wal(db)
    conn.execute("BEGIN IMMEDIATE")
    try:
        applied = _apply_migrations(conn, db)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return applied


def _enable_wal(db: sqlite_utils.Database, *, attempts: int = 200) -> None:
    """Switch to WAL; retried, because the switch can answer "locked" at once.

    Changing the journal mode needs the database to itself, and SQLite reports a
    concurrent opener as busy without waiting on the busy timeout.
    """
    for attempt in range(attempts):
        try:
            db.enable_wal()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or attempt == attempts - 1:
                raise
            time.sleep(0.05)
        else:
            return


def _apply_migrations(conn: sqlite3.Connection, db: sqlite_utils.Database) -> list[int]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version"
        " (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    (current,) = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    if current > SCHEMA_VERSION:
        raise AdapterError(
            f"the database is at schema version {current}, newer than this bitloot"
            f" knows ({SCHEMA_VERSION}); upgrade bitloot",
            code="schema_too_new",
        )
    applied = []
    for version in range(current + 1, SCHEMA_VERSION + 1):
        applied.append(version)
        MIGRATIONS[version - 1](db)
        if not conn.in_transaction:
            # Something (an sqlite-utils call that commits by itself) ended our transaction:
            # the migration is no longer all-or-nothing. Stop before recording it as done.
            raise AdapterError(
                f"migration {version} committed part of its work on its own",
                code="migration_not_atomic",
            )
        conn.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
            (version, _to_text(datetime.now(UTC))),
        )
    return applied


# --- the store --------------------------------------------------------------------------


def _private(path: Path) -> None:
    """Create the database file 0600 (SQLite gives its -wal and -shm files the same mode),
    or take group and other access away from one made by an older version."""
    if str(path) == ":memory:":
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists() and side.stat().st_mode & 0o077:
            side.chmod(0o600)


class SqliteStore:
    """A ``Store`` in one SQLite file; safe to share between threads and processes.

    Each thread gets its own connection, opened on its first transaction; a thread that
    is done with the store calls ``close()``. Transactions do not nest: ``transaction()``
    inside another on the same thread raises ``RuntimeError`` (a nested one could only
    commit or roll back with the outer one, which is not what its caller would expect).
    A store pickles as its path and settings, so a child process opens its own.

    ``busy_timeout_ms`` is how long a transaction waits for another writer before it
    gives up with a retryable ``AdapterError`` (code ``store_busy``). ``synchronous``
    is ``FULL`` by default: a power cut loses no commit, so an IPN answered 200 is never
    rolled back (an fsync per commit). ``NORMAL`` is faster and still loses nothing to a
    process crash, only to an OS crash or power cut.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        synchronous: Synchronous = "FULL",
    ) -> None:
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise AdapterError(
                f"SQLite {sqlite3.sqlite_version} is too old; bitloot needs"
                f" {'.'.join(map(str, _MIN_SQLITE))} or later"
            )
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        if isinstance(busy_timeout_ms, bool) or not isinstance(busy_timeout_ms, int):
            raise TypeError(f"busy_timeout_ms must be an int, not {busy_timeout_ms!r}")
        if busy_timeout_ms < 0:
            raise ValueError("busy_timeout_ms must not be negative")
        self.path = Path(path)
        _private(self.path)
        self.busy_timeout_ms = busy_timeout_ms
        self.synchronous: Synchronous = synchronous
        self._local = threading.local()
        # Writers of this process queue here rather than on SQLite's lock, whose busy
        # handler sleeps between retries: under many threads that sleeping, not the work,
        # set the pace. Other processes still meet SQLite's own lock.
        self._writer = threading.Lock()
        try:
            # The versions this store's opening applied (empty when another got there first).
            self.applied = _migrate(self._connection())
        except BaseException:
            self.close()
            raise

    def __reduce__(self) -> tuple[Callable[..., SqliteStore], tuple[object, ...]]:
        return _reopen, (str(self.path), self.busy_timeout_ms, self.synchronous)

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    def schema_version(self) -> int:
        (version,) = (
            self._connection()
            .execute("SELECT coalesce(max(version), 0) FROM schema_version")
            .fetchone()
        )
        return int(version)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                # We issue BEGIN/COMMIT ourselves; the driver must not open transactions.
                isolation_level=None,
                check_same_thread=True,
                timeout=self.busy_timeout_ms / 1000,
            )
            try:
                conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
                # In WAL mode NORMAL syncs at checkpoints, not at every commit: it never
                # corrupts the file and a crash of the process loses no commit, but an OS
                # crash or power cut can roll back the last few commits. FULL syncs every
                # commit and survives that too, at the price of an fsync per transaction.
                conn.execute(f"PRAGMA synchronous = {self.synchronous}")
                conn.execute("PRAGMA foreign_keys = ON")
            except BaseException:  # pragma: no cover - only an I/O failure gets here
                conn.close()
                raise
            self._local.conn = conn
            self._local.in_transaction = False
        return conn

    @contextmanager
    def transaction(self) -> Iterator[SqliteTx]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; ``ROLLBACK`` and re-raise on any exception."""
        conn = self._connection()
        if self._local.in_transaction:
            raise RuntimeError("a transaction is already open on this thread; they do not nest")
        if not self._writer.acquire(timeout=self.busy_timeout_ms / 1000):
            raise AdapterError("the store is busy: no turn to write", code="store_busy")
        try:
            yield from self._immediate(conn)
        finally:
            self._writer.release()

    def _immediate(self, conn: sqlite3.Connection) -> Iterator[SqliteTx]:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            # Busy: another writer held the lock for all of busy_timeout_ms. Retryable, as
            # is an I/O failure; neither has written anything.
            busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
            raise AdapterError(
                f"the store is {'busy' if busy else 'unavailable'}: {exc}",
                code="store_busy" if busy else "store_unavailable",
            ) from exc
        self._local.in_transaction = True
        tx = SqliteTx(conn)
        try:
            yield tx
            conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT, or an I/O error, may already have ended the transaction.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            tx._open = False  # noqa: SLF001  # the store owns its transactions
            self._local.in_transaction = False

    def close(self) -> None:
        """Close this thread's connection (the next transaction opens a new one)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _reopen(path: str, busy_timeout_ms: int, synchronous: Synchronous) -> SqliteStore:
    return SqliteStore(path, busy_timeout_ms=busy_timeout_ms, synchronous=synchronous)


class SqliteTx:
    """One open ``BEGIN IMMEDIATE`` transaction; valid only inside its ``with`` block."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._open = True

    def _live(self) -> sqlite3.Connection:
        # With the driver in autocommit mode, a statement run after the block would
        # commit on its own: refuse it instead.
        if not self._open:
            raise StoreClosedError("this transaction has ended; open a new one")
        return self._conn

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._live().execute(sql, params)

    def _one(self, table: _Table[V], where: str, params: Sequence[Any]) -> V | None:
        row = self._execute(f"{table.select} WHERE {where}", params).fetchone()
        return None if row is None else table.load(row)

    def _all(self, table: _Table[V], rest: str, params: Sequence[Any] = ()) -> list[V]:
        return [table.load(row) for row in self._execute(f"{table.select} {rest}", params)]

    def _cas(self, sql: str, table: _Table[V], value: V, what: str) -> None:
        if self._execute(sql, table.cas_params(value)).rowcount == 0:
            raise ConcurrentUpdate(f"{what} changed", table=table.name)

    # products and the custom key pool

    def get_product(self, product_id: str) -> Product | None:
        return self._one(_PRODUCTS, "id = ?", (product_id,))

    def list_products(self) -> list[Product]:
        return self._all(_PRODUCTS, "ORDER BY id")

    def upsert_product(self, product: Product) -> None:
        self._execute(_UPSERT_PRODUCT, _PRODUCTS.params(product))

    def add_pool_keys(self, product_id: str, refs: Sequence[str]) -> int:
        cursor = self._live().executemany(
            "INSERT INTO pool_keys (product_id, ref) VALUES (?, ?) ON CONFLICT (ref) DO NOTHING",
            [(product_id, ref) for ref in refs],
        )
        return max(cursor.rowcount, 0)

    def pool_size(self, product_id: str) -> int:
        (count,) = self._execute(
            "SELECT count(*) FROM pool_keys WHERE product_id = ? AND claimed_by IS NULL",
            (product_id,),
        ).fetchone()
        return int(count)

    def claim_pool_key(self, product_id: str, claimed_by: str) -> str | None:
        held = self._execute(
            "SELECT ref FROM pool_keys WHERE product_id = ? AND claimed_by = ?",
            (product_id, claimed_by),
        ).fetchone()
        if held is not None:
            return str(held[0])
        claimed = self._execute(
            f"UPDATE pool_keys SET claimed_by = ?, claimed_at = {_SQLITE_NOW}"  # noqa: S608  # a constant
            " WHERE seq = (SELECT seq FROM pool_keys"
            "  WHERE product_id = ? AND claimed_by IS NULL ORDER BY seq LIMIT 1)"
            " AND claimed_by IS NULL RETURNING ref",
            (claimed_by, product_id),
        ).fetchone()
        return None if claimed is None else str(claimed[0])

    def release_pool_keys(self, claimed_by_prefix: str) -> int:
        return self._execute(
            "UPDATE pool_keys SET claimed_by = NULL, claimed_at = NULL"
            " WHERE substr(claimed_by, 1, length(?)) = ?",
            (claimed_by_prefix, claimed_by_prefix),
        ).rowcount

    # orders and payments

    def get_order(self, order_id: str) -> Order | None:
        return self._one(_ORDERS, "id = ?", (order_id,))

    def insert_order(self, order: Order) -> None:
        sql = f"{_ORDERS.insert} ON CONFLICT (id) DO NOTHING"
        if self._execute(sql, _ORDERS.params(order)).rowcount == 0:
            raise ConcurrentUpdate(f"order {order.id} exists", order_id=order.id)

    def update_order(self, order: Order) -> Order:
        self._cas(_UPDATE_ORDER, _ORDERS, order, f"order {order.id}")
        return dataclasses.replace(order, version=order.version + 1)

    def list_orders(
        self,
        *,
        status: OrderStatus | None = None,
        flag: Flag | None = None,
        created_before: datetime | None = None,
        statuses: frozenset[OrderStatus] | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> list[Order]:
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(status.value)
        if statuses is not None:
            if not statuses:
                return []
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params.extend(sorted(s.value for s in statuses))
        if flag is not None:
            # ``flags <> '[]'`` lets SQLite use the partial index of flagged orders; the
            # JSON-quoted value matches exactly one whole flag name.
            where.append("flags <> '[]' AND instr(flags, ?) > 0")
            params.append(json.dumps(flag.value))
        if created_before is not None:
            where.append("created_at <= ?")
            params.append(_to_text(created_before))
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        order = "created_at DESC, rowid DESC" if newest_first else "created_at, rowid"
        return self._all(_ORDERS, f"{clause}ORDER BY {order} LIMIT ?", [*params, limit])

    def count_orders_by_status(self) -> dict[OrderStatus, int]:
        counts = dict.fromkeys(OrderStatus, 0)
        for status, count in self._execute("SELECT status, count(*) FROM orders GROUP BY status"):
            counts[OrderStatus(status)] = int(count)
        return counts

    def get_payment(self, provider: str, payment_id: str) -> Payment | None:
        return self._one(_PAYMENTS, "provider = ? AND id = ?", (provider, payment_id))

    def list_payments(self, *, order_id: str | None = None) -> list[Payment]:
        if order_id is None:
            return self._all(_PAYMENTS, "ORDER BY rowid")
        return self._all(_PAYMENTS, "WHERE order_id = ? ORDER BY rowid", (order_id,))

    def insert_payment(self, payment: Payment) -> None:
        sql = f"{_PAYMENTS.insert} ON CONFLICT (provider, id) DO NOTHING"
        if self._execute(sql, _PAYMENTS.params(payment)).rowcount == 0:
            raise ConcurrentUpdate(f"payment {payment.id} exists", payment_id=payment.id)

    def update_payment(self, payment: Payment) -> Payment:
        self._cas(_UPDATE_PAYMENT, _PAYMENTS, payment, f"payment {payment.id}")
        return dataclasses.replace(payment, version=payment.version + 1)

    # idempotency keys and the webhook log

    def get_idempotency(self, scope: str) -> IdempotencyRecord | None:
        return self._one(_IDEMPOTENCY, "scope = ?", (scope,))

    def insert_idempotency(self, record: IdempotencyRecord) -> bool:
        sql = f"{_IDEMPOTENCY.insert} ON CONFLICT (scope) DO NOTHING"
        return self._execute(sql, _IDEMPOTENCY.params(record)).rowcount == 1

    def delete_idempotency_before(self, cutoff: datetime) -> int:
        return self._execute(
            "DELETE FROM idempotency WHERE created_at < ?", (_to_text(cutoff),)
        ).rowcount

    def claim_ipn(self, dedupe_key: str, at: datetime) -> bool:
        return (
            self._execute(
                "INSERT INTO ipn_dedupe (dedupe_key, claimed_at) VALUES (?, ?)"
                " ON CONFLICT (dedupe_key) DO NOTHING",
                (dedupe_key, _to_text(at)),
            ).rowcount
            == 1
        )

    def log_webhook(self, entry: WebhookLogEntry) -> None:
        self._execute(_WEBHOOKS.insert, _WEBHOOKS.params(entry))

    def list_webhooks(self, order_id: str) -> list[WebhookLogEntry]:
        return self._all(_WEBHOOKS, "WHERE order_id = ? ORDER BY seq", (order_id,))

    # the job outbox

    def enqueue_job(self, job: Job) -> bool:
        sql = f"{_JOBS.insert} ON CONFLICT (key) DO NOTHING"
        return self._execute(sql, _JOBS.params(job)).rowcount == 1

    def get_job(self, key: str) -> Job | None:
        return self._one(_JOBS, "key = ?", (key,))

    def update_job(self, job: Job) -> Job:
        self._cas(_UPDATE_JOB, _JOBS, job, f"job {job.key}")
        return dataclasses.replace(job, version=job.version + 1)

    def due_jobs(self, now: datetime, limit: int) -> list[Job]:
        at = _to_text(now)
        return self._all(
            _JOBS,
            "WHERE (state = ? AND run_at <= ?) OR (state = ? AND lease_until <= ?)"
            " ORDER BY run_at, key LIMIT ?",
            (JobState.PENDING.value, at, JobState.RUNNING.value, at, limit),
        )

    def list_jobs(self, *, state: JobState | None = None, order_id: str | None = None) -> list[Job]:
        where: list[str] = []
        params: list[Any] = []
        if state is not None:
            where.append("state = ?")
            params.append(state.value)
        if order_id is not None:
            where.append("order_id = ?")
            params.append(order_id)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        return self._all(_JOBS, f"{clause}ORDER BY created_at, key", params)

    # emails, audit trail, reveals

    def insert_email(self, record: EmailRecord) -> bool:
        sql = f"{_EMAILS.insert} ON CONFLICT (order_id, kind) DO NOTHING"
        return self._execute(sql, _EMAILS.params(record)).rowcount == 1

    def get_email(self, order_id: str, kind: str) -> EmailRecord | None:
        return self._one(_EMAILS, "order_id = ? AND kind = ?", (order_id, kind))

    def mark_email_sent(self, order_id: str, kind: str, at: datetime) -> None:
        """Record the first time the server accepted the email; later calls keep it."""
        marked = self._execute(
            "UPDATE emails SET sent_at = ? WHERE order_id = ? AND kind = ? AND sent_at IS NULL",
            (_to_text(at), order_id, kind),
        ).rowcount
        if marked == 0 and self.get_email(order_id, kind) is None:
            # The outbox row is written before any send: its absence is a bug upstream.
            raise KeyError((order_id, kind))

    def add_audit(self, entry: AuditEntry) -> None:
        self._execute(_AUDIT.insert, _AUDIT.params(entry))

    def list_audit(self, order_id: str) -> list[AuditEntry]:
        return self._all(_AUDIT, "WHERE order_id = ? ORDER BY seq", (order_id,))

    def record_reveal(self, reveal: Reveal) -> None:
        self._execute(_REVEALS.insert, _REVEALS.params(reveal))

    def list_reveals(self, order_id: str) -> list[Reveal]:
        return self._all(_REVEALS, "WHERE order_id = ? ORDER BY seq", (order_id,))

    # the database vault's envelopes (not part of the core's port: see vault_db)

    def put_sealed_key(self, name: str, envelope: bytes) -> bool:
        return (
            self._execute(
                "INSERT INTO vault_keys (name, envelope, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (name, envelope, _to_text(datetime.now(UTC))),
            ).rowcount
            == 1
        )

    def get_sealed_key(self, name: str) -> bytes | None:
        row = self._execute("SELECT envelope FROM vault_keys WHERE name = ?", (name,)).fetchone()
        return None if row is None else bytes(row[0])


if TYPE_CHECKING:
    # mypy proves here that the adapter matches the ports structurally.
    def _is_a_store(store: SqliteStore) -> Store:
        return store

    def _is_a_tx(tx: SqliteTx) -> StoreTx:
        return tx
