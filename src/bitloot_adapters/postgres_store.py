"""The shared ``Store``: one PostgreSQL database behind many server and worker processes.

Selected by ``BITLOOT_DATABASE_URL=postgresql://…``; needs the ``postgres`` extra
(psycopg 3 and psycopg_pool).

Isolation is PostgreSQL's READ COMMITTED, chosen and relied on as follows:

- order, payment and job updates are compare-and-set on ``version``: an ``UPDATE … WHERE
  version = %s`` that meets a row another transaction changed waits for it, re-reads the
  row and matches nothing, so a lost race is a ``ConcurrentUpdate``, never a lost update;
- inserts that must be unique (IPN dedupe, idempotency keys, job keys, one email per
  order and kind, pool refs) are ``INSERT … ON CONFLICT DO NOTHING``: a concurrent
  duplicate waits for the first to commit and then reports itself a duplicate;
- due jobs and pool keys are taken ``FOR UPDATE SKIP LOCKED``: two workers never lease
  the same job, and two orders never wait on (or take) the same key;
- reading an idempotency key first takes a transaction-scoped advisory lock on it: two
  requests with the same key (a double click) take turns, and the second reads the
  first's committed record and replays its answer, as under SQLite's single writer,
  rather than meeting the unique index and failing.

Stricter levels would add serialization failures without closing a gap the rules above
leave open. A deadlock (or a serialization failure, should a database default to a
stricter level) aborts the transaction: the store turns it into ``ConcurrentUpdate``,
which the service retries a bounded number of times (``handle_ipn``) or the worker
reschedules, and which otherwise reaches the caller as a retryable 409.

A database that cannot be reached, or restarts under a transaction, raises
``StoreUnavailable`` (503): nothing of that transaction was committed. The pool then
drops the broken connection and opens new ones by itself; a transaction that fails on its
very first round trip (``BEGIN``) is retried on a fresh connection before giving up.

Money is stored as the text of its ``Decimal`` (digits and exponent kept exactly), times
as ``timestamptz``, an order's items as ``jsonb``, its flags as a sorted ``text[]``.
Identifiers sort bytewise (``COLLATE "C"``), as in the other stores.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Generic, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

import cattrs
import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from bitloot_core.chart import Flag, OrderStatus
from bitloot_core.errors import AdapterError, ConcurrentUpdate, InvalidInput, StoreUnavailable
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

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "PostgresStore",
    "PostgresTx",
    "StoreClosedError",
    "redact_url",
]

# How often a transaction whose BEGIN failed (a connection the server dropped) is tried
# again on another connection before the store reports itself unavailable.
_BEGIN_ATTEMPTS: Final = 3
# pg_advisory_xact_lock key that serialises migrations across every process and host.
_MIGRATION_LOCK: Final = 0x6269746C6F6F74  # "bitloot"
# The first key of the two-key advisory locks on idempotency scopes (the second is a hash
# of the scope: two scopes that share a hash only take turns needlessly).
_IDEMPOTENCY_LOCK: Final = 0x69646D70  # "idmp"


class StoreClosedError(RuntimeError):
    """A transaction object was used after its ``with`` block ended."""


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


# --- rows <-> values --------------------------------------------------------------------


def _aware(value: datetime) -> datetime:
    # Naive datetimes are refused: PostgreSQL would read them in the session's zone.
    if value.tzinfo is None:
        raise ValueError(f"expected an aware UTC datetime, got {value!r}")
    return value


def _row_converter() -> cattrs.Converter:
    """Values to query parameters and back; ``inner`` does the items kept as JSON."""
    inner = cattrs.Converter()
    inner.register_unstructure_hook(Decimal, str)
    inner.register_structure_hook(Decimal, lambda text, _: Decimal(text))
    inner.register_unstructure_hook(enum.Enum, lambda member: member.value)

    row = inner.copy()
    row.register_unstructure_hook(datetime, _aware)
    row.register_structure_hook(datetime, lambda value, _: value.astimezone(UTC))
    items_type = tuple[OrderItem, ...]
    flags_type = frozenset[Flag]
    row.register_unstructure_hook_func(
        lambda t: t == items_type, lambda items: Jsonb(inner.unstructure(items, items_type))
    )
    row.register_structure_hook_func(
        lambda t: t == items_type, lambda value, _: inner.structure(value, items_type)
    )
    row.register_unstructure_hook_func(
        lambda t: t == flags_type, lambda flags: sorted(flag.value for flag in flags)
    )
    row.register_structure_hook_func(
        lambda t: t == flags_type, lambda value, _: frozenset(Flag(v) for v in value)
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
    changed: tuple[str, ...]
    select: str
    insert: str

    @classmethod
    def of(cls, name: str, value_type: type[V], key: tuple[str, ...] = ()) -> _Table[V]:
        columns = tuple(f.name for f in dataclasses.fields(value_type))  # type: ignore[arg-type]
        column_list = ", ".join(map(_quote, columns))
        placeholders = ", ".join(["%s"] * len(columns))
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
        assignments = ", ".join(f"{_quote(c)} = %s" for c in self.changed)
        match = " AND ".join(f"{_quote(c)} = %s" for c in self.key)
        return (
            f"UPDATE {self.name} SET {assignments}, version = version + 1"  # noqa: S608  # names only
            f" WHERE {match} AND version = %s"
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


# --- the schema -------------------------------------------------------------------------

# Forward migrations, in order: the database is at version N once the first N have run.
# Append only; never edit one that has shipped. Each runs in the transaction that records
# it, so it applies whole or not at all (PostgreSQL's DDL is transactional).
_V1_INITIAL: Final = """
CREATE TABLE products (
    id text COLLATE "C" PRIMARY KEY,
    name text NOT NULL,
    price text NOT NULL,
    currency text NOT NULL,
    source text NOT NULL,
    supplier_ref text
);
CREATE TABLE pool_keys (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id text COLLATE "C" NOT NULL,
    ref text COLLATE "C" NOT NULL UNIQUE,
    claimed_by text COLLATE "C",
    claimed_at timestamptz,
    UNIQUE (product_id, claimed_by)
);
CREATE INDEX pool_keys_unclaimed ON pool_keys (product_id, seq) WHERE claimed_by IS NULL;
CREATE TABLE orders (
    seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id text COLLATE "C" PRIMARY KEY,
    status text NOT NULL,
    flags text[] NOT NULL,
    email text NOT NULL,
    currency text NOT NULL,
    items jsonb NOT NULL,
    version integer NOT NULL,
    payment_id text COLLATE "C",
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    access_token_hash text NOT NULL
);
CREATE INDEX orders_status_created ON orders (status, created_at, seq);
CREATE INDEX orders_created ON orders (created_at, seq);
CREATE INDEX orders_payment ON orders (payment_id);
CREATE INDEX orders_flagged ON orders (created_at, seq) WHERE flags <> '{}';
CREATE TABLE payments (
    seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id text COLLATE "C" PRIMARY KEY,
    order_id text COLLATE "C" NOT NULL,
    status text NOT NULL,
    provider_status text NOT NULL,
    price_amount text NOT NULL,
    price_currency text NOT NULL,
    pay_amount text NOT NULL,
    pay_currency text NOT NULL,
    pay_address text NOT NULL,
    actually_paid text NOT NULL,
    valid_until timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    version integer NOT NULL
);
CREATE INDEX payments_order ON payments (order_id, seq);
CREATE TABLE idempotency (
    scope text COLLATE "C" PRIMARY KEY,
    fingerprint text NOT NULL,
    order_id text COLLATE "C" NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX idempotency_created ON idempotency (created_at);
CREATE TABLE ipn_dedupe (
    dedupe_key text COLLATE "C" PRIMARY KEY,
    claimed_at timestamptz NOT NULL
);
CREATE TABLE webhooks (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL,
    body_sha256 text NOT NULL,
    signature_valid boolean NOT NULL,
    outcome text NOT NULL,
    reason text NOT NULL,
    payment_id text COLLATE "C",
    order_id text COLLATE "C",
    provider_status text,
    dedupe_key text COLLATE "C"
);
CREATE INDEX webhooks_order ON webhooks (order_id, seq);
CREATE TABLE jobs (
    key text COLLATE "C" PRIMARY KEY,
    kind text NOT NULL,
    order_id text COLLATE "C" NOT NULL,
    state text NOT NULL,
    attempts integer NOT NULL,
    run_at timestamptz NOT NULL,
    lease_until timestamptz,
    last_error text,
    version integer NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX jobs_pending ON jobs (run_at, key) WHERE state = 'pending';
CREATE INDEX jobs_running ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_order ON jobs (order_id, created_at, key);
CREATE TABLE emails (
    order_id text COLLATE "C" NOT NULL,
    kind text COLLATE "C" NOT NULL,
    message_id text NOT NULL,
    "to" text NOT NULL,
    created_at timestamptz NOT NULL,
    sent_at timestamptz,
    PRIMARY KEY (order_id, kind)
);
CREATE TABLE audit (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id text COLLATE "C",
    at timestamptz NOT NULL,
    action text NOT NULL,
    detail text NOT NULL,
    actor text NOT NULL
);
CREATE INDEX audit_order ON audit (order_id, seq);
CREATE TABLE reveals (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id text COLLATE "C" NOT NULL,
    item_id text NOT NULL,
    at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX reveals_order ON reveals (order_id, seq);
"""

# Payments carry the provider that holds them; every earlier one is NOWPayments'.
_V2_PAYMENT_PROVIDER: Final = """
ALTER TABLE payments ADD COLUMN provider text NOT NULL DEFAULT 'nowpayments';
"""

# The database vault's envelopes (``vault_db``), named by the SHA-256 of their ref.
_V3_VAULT_KEYS: Final = """
CREATE TABLE vault_keys (
    name text COLLATE "C" PRIMARY KEY,
    envelope bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""

# Scopes are stored hashed from now on; an older version stored "email\nkey" in plain
# text (a key replays the order's access token). A hash has no newline.
_V4_HASHED_IDEMPOTENCY_SCOPES: Final = """
DELETE FROM idempotency WHERE strpos(scope, chr(10)) > 0;
"""

# A payment is identified by (provider, the provider's payment id): two providers may use
# the same id. Orders name their payment's provider (until now a payment id was unique on
# its own, so it names it); the webhook log records the provider a webhook came from.
_V5_PAYMENT_IDENTITY: Final = """
ALTER TABLE payments DROP CONSTRAINT payments_pkey;
ALTER TABLE payments ADD PRIMARY KEY (provider, id);
ALTER TABLE orders ADD COLUMN payment_provider text;
UPDATE orders SET payment_provider = payments.provider
    FROM payments WHERE payments.id = orders.payment_id;
ALTER TABLE webhooks ADD COLUMN provider text;
"""

MIGRATIONS: Final[tuple[str, ...]] = (
    _V1_INITIAL,
    _V2_PAYMENT_PROVIDER,
    _V3_VAULT_KEYS,
    _V4_HASHED_IDEMPOTENCY_SCOPES,
    _V5_PAYMENT_IDENTITY,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def _migrate(conn: psycopg.Connection[Any]) -> list[int]:
    """Bring the schema up to ``SCHEMA_VERSION``; returns the versions this call applied.

    Every process runs this at start: the advisory lock makes the others wait while one
    migrates, then find the work done, so each migration runs exactly once.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version"
            " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise AdapterError(
                f"the database is at schema version {current}, newer than this bitloot"
                f" knows ({SCHEMA_VERSION}); upgrade bitloot",
                code="schema_too_new",
            )
        applied = []
        for version in range(current + 1, SCHEMA_VERSION + 1):
            conn.execute(MIGRATIONS[version - 1].encode())
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
            applied.append(version)
        return applied


# --- the store --------------------------------------------------------------------------


class PostgresStore:
    """A ``Store`` in one PostgreSQL database; share it between threads, not processes.

    Each transaction borrows a connection from a pool of at most ``pool_size``; a thread
    that finds none free within ``connect_timeout`` seconds gets ``StoreUnavailable``.
    Transactions do not nest. A store pickles as its URL and settings, so a child process
    opens its own pool. The schema is migrated when the store opens.

    ``prepare`` lets psycopg prepare the statements it runs often; turn it off behind a
    pgbouncer in transaction mode older than 1.21, which cannot keep prepared statements.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        connect_timeout: float = 10.0,
        prepare: bool = True,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.url = url
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.prepare = prepare
        self._local = threading.local()
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={
                "autocommit": True,
                "prepare_threshold": 5 if prepare else None,
                "connect_timeout": max(1, round(connect_timeout)),
            },
            configure=_configure,
            timeout=connect_timeout,
            open=False,
            name="bitloot",
        )
        self._pool.open(wait=False)
        try:
            self.applied = self.migrate()
        except BaseException:
            self.close()
            raise

    def __reduce__(self) -> tuple[Callable[..., PostgresStore], tuple[object, ...]]:
        return _reopen, (self.url, self.pool_size, self.connect_timeout, self.prepare)

    def __repr__(self) -> str:
        return f"PostgresStore({redact_url(self.url)!r})"

    def migrate(self) -> list[int]:
        """Apply any migration not yet applied; returns the versions applied."""
        with _translated(), self._pool.connection() as conn:
            return _migrate(conn)

    def claim_mode(self, mode: str) -> str:
        """The shop mode (``sandbox`` or ``live``) this database belongs to: ``mode`` if
        it had none yet (recorded now), else the one its first shop recorded."""
        with _translated(), self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS shop_mode (one boolean PRIMARY KEY DEFAULT true"
                " CHECK (one), mode text NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.execute("INSERT INTO shop_mode (mode) VALUES (%s) ON CONFLICT DO NOTHING", (mode,))
            row = conn.execute("SELECT mode FROM shop_mode").fetchone()
        return str(row[0]) if row else mode

    def schema_version(self) -> int:
        with _translated(), self._pool.connection() as conn:
            row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
            return int(row[0]) if row else 0

    @contextmanager
    def transaction(self) -> Iterator[PostgresTx]:
        """``BEGIN`` … ``COMMIT``; ``ROLLBACK`` and re-raise on any exception."""
        if getattr(self._local, "in_transaction", False):
            raise RuntimeError("a transaction is already open on this thread; they do not nest")
        self._local.in_transaction = True
        try:
            with _translated():
                yield from self._transaction()
        finally:
            self._local.in_transaction = False

    def _transaction(self) -> Iterator[PostgresTx]:
        for attempt in range(_BEGIN_ATTEMPTS):
            conn = self._pool.getconn()
            try:
                conn.execute("BEGIN")
            except psycopg.OperationalError:
                # A connection the server dropped (a restart): nothing was sent that could
                # have written; the pool discards it, and a fresh one is tried.
                self._pool.putconn(conn)
                if attempt == _BEGIN_ATTEMPTS - 1:
                    raise
                continue
            break
        tx = PostgresTx(conn)
        try:
            yield tx
            conn.execute("COMMIT")
        except BaseException:
            if (
                not conn.closed
                and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
            ):
                try:
                    conn.execute("ROLLBACK")
                except psycopg.Error:  # the connection broke: the server rolls back itself
                    conn.close()
            raise
        finally:
            tx._open = False  # noqa: SLF001  # the store owns its transactions
            self._pool.putconn(conn)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _configure(conn: psycopg.Connection[Any]) -> None:
    # Times come back in UTC; the isolation level is stated, not inherited from the
    # database's default (see the module's docstring for why READ COMMITTED).
    conn.execute(
        "SET TIME ZONE 'UTC';"
        " SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED"
    )


def _reopen(url: str, pool_size: int, connect_timeout: float, prepare: bool) -> PostgresStore:
    return PostgresStore(url, pool_size=pool_size, connect_timeout=connect_timeout, prepare=prepare)


@contextmanager
def _translated() -> Iterator[None]:
    """psycopg's failures as the core's errors: lost races retryable, outages 503."""
    try:
        yield
    except (pg_errors.SerializationFailure, pg_errors.DeadlockDetected) as exc:
        raise ConcurrentUpdate(
            f"the database aborted a conflicting transaction ({exc.sqlstate})",
            code="concurrent_update",
        ) from exc
    except pg_errors.UniqueViolation as exc:
        # Every unique insert says ON CONFLICT DO NOTHING; what gets here is a race the
        # store could not turn into a duplicate (one claimant taking two pool keys at once).
        raise ConcurrentUpdate("a concurrent transaction took the same row first") from exc
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
        raise StoreUnavailable(
            f"the database is unavailable: {type(exc).__name__}", code="store_unavailable"
        ) from exc


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Jsonb):
        return _has_nul(value.obj)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _check_text(params: Sequence[Any]) -> Sequence[Any]:
    # PostgreSQL's text cannot hold NUL: refuse it as bad input, before anything is sent
    # (a statement the server refuses would abort the whole transaction).
    if any(_has_nul(value) for value in params):
        raise InvalidInput("text must not contain NUL characters")
    return params


class PostgresTx:
    """One open transaction; valid only inside its ``with`` block."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._open = True

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        if not self._open:
            raise StoreClosedError("this transaction has ended; open a new one")
        return self._conn.execute(sql.encode(), _check_text(params))

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
        return self._one(_PRODUCTS, "id = %s", (product_id,))

    def list_products(self) -> list[Product]:
        return self._all(_PRODUCTS, "ORDER BY id")

    def upsert_product(self, product: Product) -> None:
        self._execute(_UPSERT_PRODUCT, _PRODUCTS.params(product))

    def add_pool_keys(self, product_id: str, refs: Sequence[str]) -> int:
        if not refs:
            return 0
        return self._execute(
            "INSERT INTO pool_keys (product_id, ref)"
            " SELECT %s, ref FROM unnest(%s::text[]) WITH ORDINALITY AS added (ref, n)"
            " ORDER BY n ON CONFLICT (ref) DO NOTHING",
            (product_id, list(_check_text(refs))),
        ).rowcount

    def pool_size(self, product_id: str) -> int:
        row = self._execute(
            "SELECT count(*) FROM pool_keys WHERE product_id = %s AND claimed_by IS NULL",
            (product_id,),
        ).fetchone()
        return int(row[0]) if row else 0

    def claim_pool_key(self, product_id: str, claimed_by: str) -> str | None:
        held = self._execute(
            "SELECT ref FROM pool_keys WHERE product_id = %s AND claimed_by = %s",
            (product_id, claimed_by),
        ).fetchone()
        if held is not None:
            return str(held[0])
        # SKIP LOCKED: a key another transaction is claiming is passed over, not waited on.
        claimed = self._execute(
            "UPDATE pool_keys SET claimed_by = %s, claimed_at = now()"
            " WHERE seq = (SELECT seq FROM pool_keys"
            "  WHERE product_id = %s AND claimed_by IS NULL ORDER BY seq LIMIT 1"
            "  FOR UPDATE SKIP LOCKED)"
            " RETURNING ref",
            (claimed_by, product_id),
        ).fetchone()
        return None if claimed is None else str(claimed[0])

    def release_pool_keys(self, claimed_by_prefix: str) -> int:
        return self._execute(
            "UPDATE pool_keys SET claimed_by = NULL, claimed_at = NULL"
            " WHERE starts_with(claimed_by, %s)",
            (claimed_by_prefix,),
        ).rowcount

    # orders and payments

    def get_order(self, order_id: str) -> Order | None:
        return self._one(_ORDERS, "id = %s", (order_id,))

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
            where.append("status = %s")
            params.append(status.value)
        if statuses is not None:
            if not statuses:
                return []
            where.append("status = ANY(%s)")
            params.append(sorted(s.value for s in statuses))
        if flag is not None:
            # ``flags <> '{}'`` lets PostgreSQL use the partial index of flagged orders.
            where.append("flags <> '{}' AND %s = ANY(flags)")
            params.append(flag.value)
        if created_before is not None:
            where.append("created_at <= %s")
            params.append(_aware(created_before))
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        order = "created_at DESC, seq DESC" if newest_first else "created_at, seq"
        return self._all(_ORDERS, f"{clause}ORDER BY {order} LIMIT %s", [*params, limit])

    def count_orders_by_status(self) -> dict[OrderStatus, int]:
        counts = dict.fromkeys(OrderStatus, 0)
        for status, count in self._execute("SELECT status, count(*) FROM orders GROUP BY status"):
            counts[OrderStatus(status)] = int(count)
        return counts

    def get_payment(self, provider: str, payment_id: str) -> Payment | None:
        return self._one(_PAYMENTS, "provider = %s AND id = %s", (provider, payment_id))

    def list_payments(self, *, order_id: str | None = None) -> list[Payment]:
        if order_id is None:
            return self._all(_PAYMENTS, "ORDER BY seq")
        return self._all(_PAYMENTS, "WHERE order_id = %s ORDER BY seq", (order_id,))

    def insert_payment(self, payment: Payment) -> None:
        sql = f"{_PAYMENTS.insert} ON CONFLICT (provider, id) DO NOTHING"
        if self._execute(sql, _PAYMENTS.params(payment)).rowcount == 0:
            raise ConcurrentUpdate(f"payment {payment.id} exists", payment_id=payment.id)

    def update_payment(self, payment: Payment) -> Payment:
        self._cas(_UPDATE_PAYMENT, _PAYMENTS, payment, f"payment {payment.id}")
        return dataclasses.replace(payment, version=payment.version + 1)

    # idempotency keys and the webhook log

    def get_idempotency(self, scope: str) -> IdempotencyRecord | None:
        """The scope's record, read once any other transaction using the scope has ended."""
        digest = hashlib.sha256(scope.encode("utf-8", "surrogatepass"))
        self._execute(
            "SELECT pg_advisory_xact_lock(%s, %s)",
            (_IDEMPOTENCY_LOCK, int.from_bytes(digest.digest()[:4], "big", signed=True)),
        )
        return self._one(_IDEMPOTENCY, "scope = %s", (scope,))

    def insert_idempotency(self, record: IdempotencyRecord) -> bool:
        sql = f"{_IDEMPOTENCY.insert} ON CONFLICT (scope) DO NOTHING"
        return self._execute(sql, _IDEMPOTENCY.params(record)).rowcount == 1

    def delete_idempotency_before(self, cutoff: datetime) -> int:
        return self._execute(
            "DELETE FROM idempotency WHERE created_at < %s", (_aware(cutoff),)
        ).rowcount

    def claim_ipn(self, dedupe_key: str, at: datetime) -> bool:
        return (
            self._execute(
                "INSERT INTO ipn_dedupe (dedupe_key, claimed_at) VALUES (%s, %s)"
                " ON CONFLICT (dedupe_key) DO NOTHING",
                (dedupe_key, _aware(at)),
            ).rowcount
            == 1
        )

    def log_webhook(self, entry: WebhookLogEntry) -> None:
        self._execute(_WEBHOOKS.insert, _WEBHOOKS.params(entry))

    def list_webhooks(self, order_id: str) -> list[WebhookLogEntry]:
        return self._all(_WEBHOOKS, "WHERE order_id = %s ORDER BY seq", (order_id,))

    # the job outbox

    def enqueue_job(self, job: Job) -> bool:
        sql = f"{_JOBS.insert} ON CONFLICT (key) DO NOTHING"
        return self._execute(sql, _JOBS.params(job)).rowcount == 1

    def get_job(self, key: str) -> Job | None:
        return self._one(_JOBS, "key = %s", (key,))

    def update_job(self, job: Job) -> Job:
        self._cas(_UPDATE_JOB, _JOBS, job, f"job {job.key}")
        return dataclasses.replace(job, version=job.version + 1)

    def due_jobs(self, now: datetime, limit: int) -> list[Job]:
        """Due jobs, locked for this transaction; jobs another worker is leasing are skipped."""
        at = _aware(now)
        return self._all(
            _JOBS,
            "WHERE (state = %s AND run_at <= %s) OR (state = %s AND lease_until <= %s)"
            " ORDER BY run_at, key LIMIT %s FOR UPDATE SKIP LOCKED",
            (JobState.PENDING.value, at, JobState.RUNNING.value, at, limit),
        )

    def list_jobs(self, *, state: JobState | None = None, order_id: str | None = None) -> list[Job]:
        where: list[str] = []
        params: list[Any] = []
        if state is not None:
            where.append("state = %s")
            params.append(state.value)
        if order_id is not None:
            where.append("order_id = %s")
            params.append(order_id)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        return self._all(_JOBS, f"{clause}ORDER BY created_at, key", params)

    # emails, audit trail, reveals

    def insert_email(self, record: EmailRecord) -> bool:
        sql = f"{_EMAILS.insert} ON CONFLICT (order_id, kind) DO NOTHING"
        return self._execute(sql, _EMAILS.params(record)).rowcount == 1

    def get_email(self, order_id: str, kind: str) -> EmailRecord | None:
        return self._one(_EMAILS, "order_id = %s AND kind = %s", (order_id, kind))

    def mark_email_sent(self, order_id: str, kind: str, at: datetime) -> None:
        """Record the first time the server accepted the email; later calls keep it."""
        marked = self._execute(
            "UPDATE emails SET sent_at = %s WHERE order_id = %s AND kind = %s AND sent_at IS NULL",
            (_aware(at), order_id, kind),
        ).rowcount
        if marked == 0 and self.get_email(order_id, kind) is None:
            raise KeyError((order_id, kind))

    def add_audit(self, entry: AuditEntry) -> None:
        self._execute(_AUDIT.insert, _AUDIT.params(entry))

    def list_audit(self, order_id: str) -> list[AuditEntry]:
        return self._all(_AUDIT, "WHERE order_id = %s ORDER BY seq", (order_id,))

    def record_reveal(self, reveal: Reveal) -> None:
        self._execute(_REVEALS.insert, _REVEALS.params(reveal))

    def list_reveals(self, order_id: str) -> list[Reveal]:
        return self._all(_REVEALS, "WHERE order_id = %s ORDER BY seq", (order_id,))

    # the database vault's envelopes (not part of the core's port: see vault_db)

    def put_sealed_key(self, name: str, envelope: bytes) -> bool:
        return (
            self._execute(
                "INSERT INTO vault_keys (name, envelope) VALUES (%s, %s)"
                " ON CONFLICT (name) DO NOTHING",
                (name, envelope),
            ).rowcount
            == 1
        )

    def get_sealed_key(self, name: str) -> bytes | None:
        row = self._execute("SELECT envelope FROM vault_keys WHERE name = %s", (name,)).fetchone()
        return None if row is None else bytes(row[0])


if TYPE_CHECKING:
    # mypy proves here that the adapter matches the ports structurally.
    def _is_a_store(store: PostgresStore) -> Store:
        return store

    def _is_a_tx(tx: PostgresTx) -> StoreTx:
        return tx
