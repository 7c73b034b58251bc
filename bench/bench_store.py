"""How fast the SQLite store applies an IPN, against plain sqlite3 doing the same writes.

One "IPN-shaped" transaction is what the service does for a ``finished`` IPN: claim the
dedupe key, read the payment and the order, compare-and-set both, enqueue fulfillment,
log the webhook and audit it. The store does it through ``SqliteStore``; the baseline
does the same SQL by hand with ``sqlite3`` on a second file with the same schema, so the
ratio is the price of the adapter (values, conversions, checks) and nothing else.

Both are measured with a small and a large number of orders already in the file: an
index lookup must not get noticeably slower as the shop grows. IPNs are for the newest
orders (payments complete within the hour), and, as the worst case, for any order.
Wall-clock rates suffer from whatever else runs on the machine; CPU-time rates less so.

    python bench/bench_store.py            # 10k and 1M orders (under a minute or two)
    python bench/bench_store.py --quick    # 10k and 100k orders
    python bench/bench_store.py --orders 250000 --transactions 5000
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import hmac
import itertools
import json
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from bitloot_adapters.sqlite_store import SqliteStore
from bitloot_core.chart import OrderStatus, PaymentStatus
from bitloot_core.providers.nowpayments import canonical_json
from bitloot_core.service import Checkout, CheckoutConfig
from bitloot_core.testing import (
    FakeGateway,
    FakeSupplier,
    MemoryVault,
    RecordingMailer,
    SequentialIds,
    SettableClock,
)
from bitloot_core.values import AuditEntry, Job, JobKind, JobState, WebhookLogEntry, WebhookOutcome

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ITEMS = json.dumps(
    [
        {
            "id": "i1",
            "product_id": "p1",
            "name": "Game p1",
            "quantity": 1,
            "unit_price": "19.99",
            "source": "custom",
            "supplier_ref": None,
            "keys": [],
        }
    ],
    separators=(",", ":"),
)
TOKEN_HASH = "ab" * 32
BATCH = 50_000
TARGET_RATIO = 0.5
TARGET_GROWTH = 1.2
# IPNs arrive within the hour of an order's payment, so they touch the newest orders;
# "uniform" picks any order at all, the worst case for the page cache.
RECENT = 10_000
ACCESS = ("recent", "uniform")


def text(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def order_id(n: int) -> str:
    return f"ord-{n:08d}"


def payment_id(n: int) -> str:
    return str(5_800_000_000 + n)


# --- seeding ----------------------------------------------------------------------------


def seed_rows(orders: int) -> Iterator[tuple[str, list[tuple[object, ...]]]]:
    """Rows for ``orders`` waiting orders, each with its payment, a job, a webhook, audit."""
    for start in range(0, orders, BATCH):
        numbers = range(start, min(start + BATCH, orders))
        stamps = [text(T0 + timedelta(seconds=n)) for n in numbers]
        yield (
            (
                "INSERT INTO orders (id, status, flags, email, currency, items, version,"
                " payment_id, payment_provider, created_at, updated_at, access_token_hash)"
                " VALUES (?, 'waiting', '[]', ?, 'EUR', ?, 2, ?, 'nowpayments', ?, ?, ?)"
            ),
            [
                (order_id(n), f"buyer{n}@example.com", ITEMS, payment_id(n), at, at, TOKEN_HASH)
                for n, at in zip(numbers, stamps, strict=True)
            ],
        )
        yield (
            (
                "INSERT INTO payments (provider, id, order_id, status, provider_status,"
                " price_amount, price_currency, pay_amount, pay_currency, pay_address,"
                " actually_paid, valid_until, created_at, updated_at, version)"
                " VALUES ('nowpayments', ?, ?, 'waiting', 'waiting', '19.99', 'eur',"
                " '0.00039980', 'btc',"
                " ?, '0', NULL, ?, ?, 1)"
            ),
            [
                (payment_id(n), order_id(n), f"bc1q{n:034d}", at, at)
                for n, at in zip(numbers, stamps, strict=True)
            ],
        )
        yield (
            (
                "INSERT INTO jobs (key, kind, order_id, state, attempts, run_at, lease_until,"
                " last_error, version, created_at)"
                " VALUES (?, 'completion_email', ?, 'done', 1, ?, NULL, NULL, 2, ?)"
            ),
            [
                (f"email:{order_id(n)}:completed", order_id(n), at, at)
                for n, at in zip(numbers, stamps, strict=True)
            ],
        )
        yield (
            (
                "INSERT INTO webhooks (received_at, body_sha256, signature_valid, outcome, reason,"
                " payment_id, order_id, provider_status, dedupe_key, provider)"
                " VALUES (?, ?, 1, 'applied', 'applied', ?, ?, 'waiting', ?, 'nowpayments')"
            ),
            [
                (at, f"{n:064x}", payment_id(n), order_id(n), f"{payment_id(n)}:waiting:0")
                for n, at in zip(numbers, stamps, strict=True)
            ],
        )
        yield (
            (
                "INSERT INTO audit (order_id, at, action, detail, actor)"
                " VALUES (?, ?, 'order_created', '1 items, 19.99', 'system')"
            ),
            [(order_id(n), at) for n, at in zip(numbers, stamps, strict=True)],
        )


def make_database(path: Path, orders: int) -> None:
    """A file with bitloot's schema and ``orders`` orders' worth of rows, seeded in one go."""
    SqliteStore(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # Seeding only: a rollback journal and no syncs make a million rows quick to write.
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN IMMEDIATE")
        for sql, rows in seed_rows(orders):
            conn.executemany(sql, rows)
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()


# --- the two contenders -----------------------------------------------------------------


class Ours:
    """The IPN-shaped transaction through ``SqliteStore``."""

    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path)

    def close(self) -> None:
        self.store.close()

    def ipn(self, serial: int, n: int, now: datetime) -> None:
        with self.store.transaction() as tx:
            if not tx.claim_ipn(f"{payment_id(n)}:finished:{serial}", now):
                return
            payment = tx.get_payment("nowpayments", payment_id(n))
            order = tx.get_order(order_id(n))
            assert payment is not None
            assert order is not None
            tx.update_payment(
                dataclasses.replace(
                    payment,
                    status=PaymentStatus.FINISHED,
                    provider_status="finished",
                    actually_paid=Decimal("0.00039980"),
                    updated_at=now,
                )
            )
            tx.update_order(dataclasses.replace(order, status=OrderStatus.PAID, updated_at=now))
            tx.enqueue_job(
                Job(
                    key=f"fulfill:{order.id}:{serial}",
                    kind=JobKind.FULFILL,
                    order_id=order.id,
                    state=JobState.PENDING,
                    attempts=0,
                    run_at=now,
                    created_at=now,
                )
            )
            tx.log_webhook(
                WebhookLogEntry(
                    received_at=now,
                    body_sha256=f"{serial:064x}",
                    signature_valid=True,
                    outcome=WebhookOutcome.APPLIED,
                    reason="applied",
                    payment_id=payment.id,
                    order_id=order.id,
                    provider_status="finished",
                    dedupe_key=f"{payment.id}:finished:{serial}",
                )
            )
            tx.add_audit(
                AuditEntry(
                    order_id=order.id, at=now, action="ipn_applied", detail="waiting -> paid"
                )
            )


class EndToEnd:
    """A signed ``finished`` IPN through ``Checkout.handle_ipn``: verify, parse, bind,
    dedupe, decide, compare-and-set and enqueue, on ``SqliteStore``."""

    SECRET = "bench-ipn-secret"  # noqa: S105 - a benchmark's own throwaway secret

    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path)
        self.checkout = Checkout(
            store=self.store,
            gateway=FakeGateway(),
            supplier=FakeSupplier(),
            vault=MemoryVault(b"k" * 32),
            mailer=RecordingMailer(),
            clock=SettableClock(T0 + timedelta(days=30)),
            config=CheckoutConfig(
                ipn_secret=self.SECRET, signing_key=b"k" * 32, public_url="https://shop.example"
            ),
            new_id=SequentialIds("bench"),
        )
        self.bodies: dict[int, tuple[bytes, dict[str, str]]] = {}

    def close(self) -> None:
        self.store.close()

    def prepare(self, picks: list[int]) -> None:
        """Signed bodies for ``picks``, made before the clock starts."""
        for n in picks:
            body = canonical_json(
                {
                    "actually_paid": 0.0003998,
                    "order_id": order_id(n),
                    "pay_amount": 0.0003998,
                    "pay_currency": "btc",
                    "payment_id": int(payment_id(n)),
                    "payment_status": "finished",
                    "price_amount": 19.99,
                    "price_currency": "eur",
                    "updated_at": 1765249461097,
                }
            ).encode()
            signature = hmac.new(self.SECRET.encode(), body, hashlib.sha512).hexdigest()
            self.bodies[n] = (body, {"x-nowpayments-sig": signature})

    def ipn(self, serial: int, n: int, now: datetime) -> None:
        del serial, now
        result = self.checkout.handle_ipn(*self.bodies[n])
        assert result.outcome == "applied", result


class Baseline:
    """The same statements, by hand, with plain ``sqlite3`` and the same settings."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA busy_timeout = 30000")
        # The same durability as the store's default, so the two do the same work.
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("PRAGMA foreign_keys = ON")

    def close(self) -> None:
        self.conn.close()

    def ipn(self, serial: int, n: int, now: datetime) -> None:
        conn = self.conn
        at = text(now)
        conn.execute("BEGIN IMMEDIATE")
        try:
            claimed = conn.execute(
                "INSERT INTO ipn_dedupe (dedupe_key, claimed_at) VALUES (?, ?)"
                " ON CONFLICT (dedupe_key) DO NOTHING",
                (f"{payment_id(n)}:finished:{serial}", at),
            ).rowcount
            if claimed:
                self._apply(serial, n, at)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _apply(self, serial: int, n: int, at: str) -> None:
        conn = self.conn
        payment = conn.execute(
            "SELECT id, order_id, status, provider_status, price_amount, price_currency,"
            " pay_amount, pay_currency, pay_address, actually_paid, valid_until, created_at,"
            " updated_at, version FROM payments WHERE provider = 'nowpayments' AND id = ?",
            (payment_id(n),),
        ).fetchone()
        order = conn.execute(
            "SELECT id, email, currency, items, created_at, updated_at, access_token_hash,"
            " status, flags, version, payment_id FROM orders WHERE id = ?",
            (order_id(n),),
        ).fetchone()
        updated = conn.execute(
            "UPDATE payments SET order_id = ?, status = 'finished', provider_status = 'finished',"
            " price_amount = ?, price_currency = ?, pay_amount = ?, pay_currency = ?,"
            " pay_address = ?, actually_paid = '0.00039980', valid_until = ?, created_at = ?,"
            " updated_at = ?, version = version + 1"
            " WHERE provider = 'nowpayments' AND id = ? AND version = ?",
            (*payment[1:2], *payment[4:9], payment[10], payment[11], at, payment[0], payment[13]),
        ).rowcount
        updated += conn.execute(
            "UPDATE orders SET email = ?, currency = ?, items = ?, created_at = ?,"
            " updated_at = ?, access_token_hash = ?, status = 'paid', flags = ?,"
            " payment_id = ?, version = version + 1 WHERE id = ? AND version = ?",
            (*order[1:5], at, order[6], order[8], order[10], order[0], order[9]),
        ).rowcount
        assert updated == 2
        conn.execute(
            "INSERT INTO jobs (key, kind, order_id, state, attempts, run_at, created_at,"
            " lease_until, last_error, version)"
            " VALUES (?, 'fulfill', ?, 'pending', 0, ?, ?, NULL, NULL, 1)"
            " ON CONFLICT (key) DO NOTHING",
            (f"fulfill:{order[0]}:{serial}", order[0], at, at),
        )
        conn.execute(
            "INSERT INTO webhooks (received_at, body_sha256, signature_valid, outcome, reason,"
            " payment_id, order_id, provider_status, dedupe_key, provider)"
            " VALUES (?, ?, 1, 'applied', 'applied', ?, ?, 'finished', ?, 'nowpayments')",
            (at, f"{serial:064x}", payment[0], order[0], f"{payment[0]}:finished:{serial}"),
        )
        conn.execute(
            "INSERT INTO audit (order_id, at, action, detail, actor)"
            " VALUES (?, ?, 'ipn_applied', 'waiting -> paid', 'system')",
            (order[0], at),
        )


# --- measuring --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rates:
    """Transactions per second: by the wall clock, and by this process's CPU time."""

    wall: float
    cpu: float


@dataclasses.dataclass(frozen=True)
class Measured:
    orders: int
    access: str
    ours: Rates
    baseline: Rates

    @property
    def ratio(self) -> float:
        return self.ours.wall / self.baseline.wall

    @property
    def cpu_ratio(self) -> float:
        return self.ours.cpu / self.baseline.cpu


def timed(ipn: Callable[[int, int, datetime], None], picks: list[int], first: int) -> Rates:
    """Run one IPN per pick; serials from ``first`` on keep every dedupe key new."""
    now = T0 + timedelta(days=30)
    wall, cpu = time.perf_counter(), time.process_time()
    for serial, n in enumerate(picks, start=first):
        ipn(serial, n, now)
    return Rates(
        wall=len(picks) / (time.perf_counter() - wall),
        cpu=len(picks) / max(time.process_time() - cpu, 1e-9),
    )


def best(rates: list[Rates]) -> Rates:
    # The best round is the one other processes on the machine disturbed least.
    return Rates(wall=max(r.wall for r in rates), cpu=max(r.cpu for r in rates))


def pick(picker: random.Random, orders: int, access: str) -> int:
    low = max(orders - RECENT, 0) if access == "recent" else 0
    return picker.randrange(low, orders)


def measure(directory: Path, orders: int, transactions: int, rounds: int) -> list[Measured]:
    """Alternate rounds of ours and the baseline, on two copies of one seeded file."""
    ours_path, baseline_path = directory / f"ours-{orders}.db", directory / f"base-{orders}.db"
    make_database(ours_path, orders)
    shutil.copyfile(ours_path, baseline_path)
    ours, baseline = Ours(ours_path), Baseline(baseline_path)
    picker = random.Random(orders)
    per_round = max(transactions // rounds, 1)
    serials = itertools.count(step=per_round)
    measured = []
    try:
        for access in ACCESS:
            # A short warm-up for both: prepared statements, the page cache.
            warm = [pick(picker, orders, access) for _ in range(min(200, per_round))]
            timed(ours.ipn, warm, next(serials))
            timed(baseline.ipn, warm, next(serials))
            ours_rates, baseline_rates = [], []
            for _ in range(rounds):
                picks = [pick(picker, orders, access) for _ in range(per_round)]
                first = next(serials)
                ours_rates.append(timed(ours.ipn, picks, first))
                baseline_rates.append(timed(baseline.ipn, picks, first))
            measured.append(Measured(orders, access, best(ours_rates), best(baseline_rates)))
        if orders == RECENT:
            measured.append(
                end_to_end(
                    ours_path,
                    baseline,
                    orders=orders,
                    per_round=per_round,
                    rounds=rounds,
                    serials=serials,
                )
            )
    finally:
        ours.close()
        baseline.close()
        for path in (ours_path, baseline_path):
            for leftover in path.parent.glob(f"{path.name}*"):
                leftover.unlink()
    return measured


def end_to_end(
    path: Path,
    baseline: Baseline,
    *,
    orders: int,
    per_round: int,
    rounds: int,
    serials: Iterator[int],
) -> Measured:
    """Whole IPNs through the service on a fresh copy, each for an order not yet paid."""
    copy = path.with_name(f"e2e-{path.name}")
    make_database(copy, orders)
    e2e = EndToEnd(copy)
    fresh = iter(range(orders - 1, -1, -1))
    try:
        ours_rates, baseline_rates = [], []
        for _ in range(rounds):
            picks = [next(fresh) for _ in range(min(per_round, orders // (rounds + 1)))]
            e2e.prepare(picks)
            ours_rates.append(timed(e2e.ipn, picks, 0))
            baseline_rates.append(timed(baseline.ipn, picks, next(serials)))
    finally:
        e2e.close()
        for leftover in copy.parent.glob(f"{copy.name}*"):
            leftover.unlink()
    return Measured(orders, "handle_ipn", best(ours_rates), best(baseline_rates))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k orders")
    parser.add_argument("--orders", type=int, help="the large number of orders (default 1M)")
    parser.add_argument(
        "--transactions", type=int, default=6000, help="per contender, size and access pattern"
    )
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds of each")
    args = parser.parse_args(argv)
    small = 10_000
    large = args.orders or (100_000 if args.quick else 1_000_000)

    results: dict[tuple[int, str], Measured] = {}
    with tempfile.TemporaryDirectory(prefix="bitloot-bench-") as directory:
        for orders in (small, large):
            started = time.perf_counter()
            for m in measure(Path(directory), orders, args.transactions, args.rounds):
                results[m.orders, m.access] = m
            took = time.perf_counter() - started
            print(f"  {orders:,} orders: seeded and measured in {took:.0f} s")
    report(results, small, large)
    return 0


def report(results: dict[tuple[int, str], Measured], small: int, large: int) -> None:
    print()
    print("IPN-shaped write transaction: claim_ipn, get_payment, get_order, update_payment,")
    print("update_order (compare-and-set), enqueue_job, log_webhook, add_audit")
    print(f"IPNs for: recent = the newest {RECENT:,} orders, uniform = any order")
    print(
        f"{'orders':>10} {'access':>8} {'clock':>5} {'ours tx/s':>10} {'baseline tx/s':>14}"
        f" {'ours/baseline':>14}"
    )
    for m in results.values():
        for clock, ours, baseline, ratio in (
            ("wall", m.ours.wall, m.baseline.wall, m.ratio),
            ("cpu", m.ours.cpu, m.baseline.cpu, m.cpu_ratio),
        ):
            verdict = "ok" if ratio >= TARGET_RATIO else f"below the {TARGET_RATIO} target"
            print(
                f"{m.orders:>10,} {m.access:>8} {clock:>5} {ours:>10,.0f} {baseline:>14,.0f}"
                f" {ratio:>14.2f}  {verdict}"
            )
    print("handle_ipn = a whole signed IPN through Checkout.handle_ipn (verify, parse, bind,")
    print("dedupe, decide, the same writes), against the baseline's writes alone")
    print(f"time per transaction of ours, {large:,} / {small:,} orders:")
    for access in ACCESS:
        before, after = results[small, access], results[large, access]
        for clock, growth in (
            ("wall", before.ours.wall / after.ours.wall),
            ("cpu", before.ours.cpu / after.ours.cpu),
        ):
            verdict = "ok" if growth <= TARGET_GROWTH else f"above the {TARGET_GROWTH}x target"
            if access != ACCESS[0]:
                verdict = "(worst case, for information)"
            print(f"{access:>10} {clock:>5} {growth:.2f}x  {verdict}")


if __name__ == "__main__":
    raise SystemExit(main())
