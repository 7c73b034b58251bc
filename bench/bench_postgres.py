"""How fast the PostgreSQL store applies an IPN, against plain psycopg doing the same writes.

The transaction is ``bench_store``'s IPN-shaped one (claim the dedupe key, read the
payment and the order, compare-and-set both, enqueue fulfillment, log the webhook, audit),
through ``PostgresStore`` and, as the baseline, as the same statements by hand on one
plain psycopg connection (prepared, as the store's pool prepares them). Both run against
a throwaway cluster of this benchmark's own, started durable (``fsync``, and
``synchronous_commit=on``: every commit is on disk before it returns), on two databases
seeded alike, with 10k and with 1M orders (100k with ``--quick``), IPNs for the newest
orders and, as the worst case, for any order.

Prints transactions/s beside p50/p99 per transaction, the ratio of the store to the
baseline (target >= 0.5) and how much slower the store gets from 10k to 1M orders (target
within 1.2x).

Then the webhook endpoint on PostgreSQL: the FastAPI example server, as 1 and then 2
processes on the same database (no worker), takes genuine signed IPNs (each order's
waiting → confirming → confirmed → sending → finished) from 64 concurrent clients spread
over the processes; requests/s beside p50/p99. The load generator is Python in this
process, on the same cores as the servers: it flattens the gain of a second process.

    python bench/bench_postgres.py            # 10k and 1M orders (a few minutes)
    python bench/bench_postgres.py --quick    # 10k and 100k orders
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import hmac
import itertools
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
from psycopg.types.json import Jsonb

from bench_store import ACCESS, ITEMS, RECENT, TOKEN_HASH, Ours, order_id, payment_id, pick
from bitloot_adapters.postgres_store import PostgresStore

if TYPE_CHECKING:
    from support.postgres import PgCluster

# The throwaway clusters of the tests (``tests/support/postgres.py``).
TESTS = Path(__file__).resolve().parents[1] / "tests"

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 64
LOG = Path(tempfile.gettempdir()) / "bitloot-bench-servers.log"
SECRETS = {
    "BITLOOT_NOWPAYMENTS_IPN_SECRET": "bench-ipn-secret",
    "BITLOOT_VAULT_KEY": "dmF1bHQta2V5LWZvci10aGUtYmVuY2htYXJrLW9ubHk=",
    "BITLOOT_SIGNING_KEY": "c2lnbmluZy1rZXktZm9yLXRoZS1iZW5jaG1hcmstb24=",
    "BITLOOT_ADMIN_TOKEN": "bench-admin-token",
}
TARGET_RATIO = 0.5
TARGET_GROWTH = 1.2


def seed(url: str, orders: int) -> None:
    """bitloot's schema, then ``orders`` waiting orders with their payment, a done job, a
    webhook and an audit row each, made by the server itself (``generate_series``)."""
    PostgresStore(url, pool_size=1).close()
    t0 = "timestamptz '2026-01-01 00:00:00+00' + make_interval(secs => n)"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")  # seeding only
        conn.execute(
            "INSERT INTO orders (id, status, flags, email, currency, items, version,"  # noqa: S608
            " payment_id, created_at, updated_at, access_token_hash)"
            " SELECT 'ord-' || lpad(n::text, 8, '0'), 'waiting', '{}',"
            " 'buyer' || n || '@example.com', 'EUR', %s::jsonb, 2,"
            f" (5800000000 + n)::text, {t0}, {t0}, %s"
            " FROM generate_series(0, %s - 1) AS n",
            (ITEMS, TOKEN_HASH, orders),
        )
        conn.execute(
            "INSERT INTO payments (id, order_id, status, provider_status, price_amount,"  # noqa: S608
            " price_currency, pay_amount, pay_currency, pay_address, actually_paid,"
            " created_at, updated_at, version)"
            " SELECT (5800000000 + n)::text, 'ord-' || lpad(n::text, 8, '0'), 'waiting',"
            " 'waiting', '19.99', 'eur', '0.00039980', 'btc', 'bc1q' || lpad(n::text, 34, '0'),"
            f" '0', {t0}, {t0}, 1 FROM generate_series(0, %s - 1) AS n",
            (orders,),
        )
        conn.execute(
            "INSERT INTO jobs (key, kind, order_id, state, attempts, run_at, version,"  # noqa: S608
            " created_at) SELECT 'email:ord-' || lpad(n::text, 8, '0') || ':completed',"
            " 'completion_email', 'ord-' || lpad(n::text, 8, '0'), 'done', 1,"
            f" {t0}, 2, {t0} FROM generate_series(0, %s - 1) AS n",
            (orders,),
        )
        conn.execute(
            "INSERT INTO webhooks (received_at, body_sha256, signature_valid, outcome, reason,"  # noqa: S608
            " payment_id, order_id, provider_status, dedupe_key)"
            f" SELECT {t0}, lpad(to_hex(n), 64, '0'), true, 'applied', 'applied',"
            " (5800000000 + n)::text, 'ord-' || lpad(n::text, 8, '0'), 'waiting',"
            " (5800000000 + n)::text || ':waiting:0' FROM generate_series(0, %s - 1) AS n",
            (orders,),
        )
        conn.execute(
            "INSERT INTO audit (order_id, at, action, detail, actor)"  # noqa: S608
            " SELECT 'ord-' || lpad(n::text, 8, '0'),"
            f" {t0}, 'order_created', '1 items, 19.99', 'system'"
            " FROM generate_series(0, %s - 1) AS n",
            (orders,),
        )
        conn.execute("VACUUM ANALYZE")


def copy_database(cluster: PgCluster, url: str) -> str:
    """A second database with the same rows: PostgreSQL copies the files (``TEMPLATE``)."""
    from support.postgres import database_name  # noqa: PLC0415

    name = database_name(url)
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}_copy" TEMPLATE "{name}"'.encode())
    return cluster.url(f"{name}_copy")


class PgOurs(Ours):
    """``bench_store``'s IPN-shaped transaction, through ``PostgresStore``."""

    def __init__(self, url: str) -> None:
        self.store = PostgresStore(url, pool_size=1)  # type: ignore[assignment]


class PgBaseline:
    """The same statements by hand on one plain psycopg connection, prepared."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True, prepare_threshold=0)
        self.conn.execute("SET TIME ZONE 'UTC'")

    def close(self) -> None:
        self.conn.close()

    def ipn(self, serial: int, n: int, now: datetime) -> None:
        conn = self.conn
        with conn.transaction():
            claimed = conn.execute(
                "INSERT INTO ipn_dedupe (dedupe_key, claimed_at) VALUES (%s, %s)"
                " ON CONFLICT (dedupe_key) DO NOTHING",
                (f"{payment_id(n)}:finished:{serial}", now),
            ).rowcount
            if claimed:
                self._apply(serial, n, now)

    def _apply(self, serial: int, n: int, now: datetime) -> None:
        conn = self.conn
        payment = conn.execute(
            "SELECT id, order_id, status, provider_status, provider, price_amount,"
            " price_currency, pay_amount, pay_currency, pay_address, actually_paid,"
            " valid_until, created_at, updated_at, version FROM payments WHERE id = %s",
            (payment_id(n),),
        ).fetchone()
        order = conn.execute(
            "SELECT id, status, flags, email, currency, items, version, payment_id,"
            " created_at, updated_at, access_token_hash FROM orders WHERE id = %s",
            (order_id(n),),
        ).fetchone()
        assert payment is not None
        assert order is not None
        updated = conn.execute(
            "UPDATE payments SET order_id = %s, status = 'finished',"
            " provider_status = 'finished', provider = %s, price_amount = %s,"
            " price_currency = %s, pay_amount = %s, pay_currency = %s, pay_address = %s,"
            " actually_paid = '0.00039980', valid_until = %s, created_at = %s,"
            " updated_at = %s, version = version + 1 WHERE id = %s AND version = %s",
            (payment[1], *payment[4:10], payment[11], payment[12], now, payment[0], payment[14]),
        ).rowcount
        updated += conn.execute(
            "UPDATE orders SET status = 'paid', flags = %s, email = %s, currency = %s,"
            " items = %s, payment_id = %s, created_at = %s, updated_at = %s,"
            " access_token_hash = %s, version = version + 1 WHERE id = %s AND version = %s",
            (*order[2:5], Jsonb(order[5]), order[7], order[8], now, order[10], order[0], order[6]),
        ).rowcount
        assert updated == 2
        conn.execute(
            "INSERT INTO jobs (key, kind, order_id, state, attempts, run_at, lease_until,"
            " last_error, version, created_at)"
            " VALUES (%s, 'fulfill', %s, 'pending', 0, %s, NULL, NULL, 1, %s)"
            " ON CONFLICT (key) DO NOTHING",
            (f"fulfill:{order[0]}:{serial}", order[0], now, now),
        )
        conn.execute(
            "INSERT INTO webhooks (received_at, body_sha256, signature_valid, outcome, reason,"
            " payment_id, order_id, provider_status, dedupe_key)"
            " VALUES (%s, %s, true, 'applied', 'applied', %s, %s, 'finished', %s)",
            (now, f"{serial:064x}", payment[0], order[0], f"{payment[0]}:finished:{serial}"),
        )
        conn.execute(
            "INSERT INTO audit (order_id, at, action, detail, actor)"
            " VALUES (%s, %s, 'ipn_applied', 'waiting -> paid', 'system')",
            (order[0], now),
        )


@dataclasses.dataclass(frozen=True)
class Round:
    rate: float  # transactions per second
    latencies: list[float]  # seconds, one per transaction


@dataclasses.dataclass(frozen=True)
class Result:
    rate: float
    p50_ms: float
    p99_ms: float


def timed(ipn: Callable[[int, int, datetime], None], picks: list[int], first: int) -> Round:
    now = T0 + timedelta(days=30)
    latencies = []
    started = time.perf_counter()
    for serial, n in enumerate(picks, start=first):
        before = time.perf_counter()
        ipn(serial, n, now)
        latencies.append(time.perf_counter() - before)
    return Round(len(picks) / (time.perf_counter() - started), latencies)


def summary(rounds: list[Round]) -> Result:
    # The best round is the one other processes on the machine disturbed least.
    best = max(rounds, key=lambda r: r.rate)
    ordered = sorted(best.latencies)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000

    return Result(best.rate, at(0.5), at(0.99))


def measure(cluster: PgCluster, orders: int, transactions: int, rounds: int) -> dict[str, Any]:
    ours_url = cluster.new_database()
    started = time.perf_counter()
    seed(ours_url, orders)
    base_url = copy_database(cluster, ours_url)
    print(f"  {orders:,} orders seeded (and copied) in {time.perf_counter() - started:.0f} s")
    ours, baseline = PgOurs(ours_url), PgBaseline(base_url)
    picker = random.Random(orders)
    per_round = max(transactions // rounds, 1)
    serials = itertools.count(step=per_round)
    measured: dict[str, Any] = {}
    try:
        for access in ACCESS:
            warm = [pick(picker, orders, access) for _ in range(min(200, per_round))]
            timed(ours.ipn, warm, next(serials))
            timed(baseline.ipn, warm, next(serials))
            ours_rounds, base_rounds = [], []
            for _ in range(rounds):
                picks = [pick(picker, orders, access) for _ in range(per_round)]
                first = next(serials)
                ours_rounds.append(timed(ours.ipn, picks, first))
                base_rounds.append(timed(baseline.ipn, picks, first))
            measured[access] = (summary(ours_rounds), summary(base_rounds))
    finally:
        ours.close()
        baseline.close()
        cluster.drop_database(ours_url)
        cluster.drop_database(base_url)
    return measured


def main(argv: list[str] | None = None) -> list[tuple[str, float, str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k orders")
    parser.add_argument("--orders", type=int, help="the large number of orders (default 1M)")
    parser.add_argument("--transactions", type=int, default=1200)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    small = 10_000
    large = args.orders or (100_000 if args.quick else 1_000_000)
    sys.path.insert(0, str(TESTS))
    from support.postgres import PostgresMissing, start_cluster  # noqa: PLC0415

    try:
        cluster = start_cluster(durable=True)
    except PostgresMissing as exc:
        print(f"  skipped: {exc}")
        return []
    try:
        results = {n: measure(cluster, n, args.transactions, args.rounds) for n in (small, large)}
        rows = report(results, small, large)
        rows += webhook(cluster, orders=150 if args.quick else 400)
    finally:
        cluster.destroy()
    return rows


def report(
    results: dict[int, dict[str, Any]], small: int, large: int
) -> list[tuple[str, float, str]]:
    print("IPN-shaped write transaction on PostgreSQL (synchronous_commit=on), one client:")
    print(f"IPNs for: recent = the newest {RECENT:,} orders, uniform = any order")
    print(
        f"{'orders':>10} {'access':>8} {'store tx/s':>10} {'p50/p99 ms':>12}"
        f" {'psycopg tx/s':>12} {'p50/p99 ms':>12} {'ratio':>6}"
    )
    rows = []
    for orders, by_access in results.items():
        for access, (ours, base) in by_access.items():
            ratio = ours.rate / base.rate
            verdict = "ok" if ratio >= TARGET_RATIO else f"below the {TARGET_RATIO} target"
            print(
                f"{orders:>10,} {access:>8} {ours.rate:>10,.0f}"
                f" {ours.p50_ms:>5.2f}/{ours.p99_ms:<6.2f} {base.rate:>12,.0f}"
                f" {base.p50_ms:>5.2f}/{base.p99_ms:<6.2f} {ratio:>6.2f}  {verdict}"
            )
            rows.append((f"postgres.store_ratio.{orders}.{access}", ratio, f">= {TARGET_RATIO}"))
    print(f"time per transaction of the store, {large:,} / {small:,} orders:")
    for access in ACCESS:
        growth = results[small][access][0].rate / results[large][access][0].rate
        verdict = "ok" if growth <= TARGET_GROWTH else f"above the {TARGET_GROWTH}x target"
        if access != ACCESS[0]:
            verdict = "(worst case, for information)"
        print(f"{access:>10} {growth:.2f}x  {verdict}")
        rows.append((f"postgres.growth.{access}", growth, f"<= {TARGET_GROWTH}"))
    return rows


# --- the webhook endpoint, 1 and 2 server processes -------------------------------------


def signed_ipns(url: str, data_dir: Path, orders: int) -> list[tuple[bytes, dict[str, str]]]:
    """``orders`` orders made through a sandbox shop on ``url``, and their five IPNs each."""
    from bitloot_adapters.bootstrap import NoMetrics, build_shop  # noqa: PLC0415
    from bitloot_adapters.logs import configure_logging  # noqa: PLC0415
    from bitloot_adapters.settings import load_settings  # noqa: PLC0415
    from bitloot_core.providers.nowpayments import canonical_json  # noqa: PLC0415

    configure_logging(level=logging.WARNING)
    env = {**SECRETS, "BITLOOT_DATABASE_URL": url}
    shop = build_shop(load_settings(data_dir=data_dir, env=env), metrics=NoMetrics())
    secret = SECRETS["BITLOOT_NOWPAYMENTS_IPN_SECRET"].encode()
    ipns = []
    try:
        assert shop.sandbox is not None
        for n in range(orders):
            created = shop.checkout.create_order(
                email=f"b{n}@example.com", items=[("stardew-valley", 1)]
            )
            payment = shop.checkout.open_payment(created.order.id, created.access_token).payment
            for status in ("waiting", "confirming", "confirmed", "sending", "finished"):
                body = json.loads(shop.sandbox.payments.ipn_body(payment.id))
                body["payment_status"] = status
                raw = canonical_json(body).encode()
                signature = hmac.new(secret, raw, hashlib.sha512).hexdigest()
                headers = {"content-type": "application/json", "x-nowpayments-sig": signature}
                ipns.append((raw, headers))
    finally:
        shop.close()
    return ipns


async def flood(
    urls: list[str], requests: list[tuple[bytes, dict[str, str]]]
) -> tuple[float, list[float]]:
    """All of ``requests`` from ``CLIENTS`` clients, spread over ``urls`` in turn."""
    latencies: list[float] = []
    queue = iter(enumerate(requests))
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def worker() -> None:
            for n, (body, headers) in queue:
                url = f"{urls[n % len(urls)]}/webhooks/nowpayments"
                started = time.perf_counter()
                try:
                    response = await client.post(url, content=body, headers=headers)
                except httpx.TransportError:  # a dropped keep-alive connection: once more
                    response = await client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
        elapsed = time.perf_counter() - started
    return len(requests) / elapsed, sorted(latencies)


def serve(url: str, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")}
    env |= {**SECRETS, "BITLOOT_DATABASE_URL": url, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, str(ROOT / "examples" / "fastapi_server.py")]
    command += ["--port", str(port), "--data-dir", str(data_dir), "--no-worker"]
    return subprocess.Popen(  # noqa: S603 - the example server, our arguments
        command, env=env, stdout=LOG.open("ab"), stderr=subprocess.STDOUT
    )


def wait_up(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(f"{base} did not start")


def webhook(cluster: PgCluster, *, orders: int) -> list[tuple[str, float, str]]:
    sys.path.insert(0, str(TESTS))
    from support.servers import free_port  # noqa: PLC0415

    print(f"webhook endpoint on PostgreSQL, {CLIENTS} clients (Python), fresh IPNs:")
    rates = {}
    for processes in (1, 2):
        url = cluster.new_database()
        with tempfile.TemporaryDirectory(prefix="bitloot-bench-") as tmp:
            ipns = signed_ipns(url, Path(tmp) / "maker", orders)
            ports = [free_port() for _ in range(processes)]
            servers = [serve(url, Path(tmp) / f"s{n}", p) for n, p in enumerate(ports)]
            try:
                bases = [f"http://127.0.0.1:{port}" for port in ports]
                for base in bases:
                    wait_up(base)
                asyncio.run(flood(bases, ipns[: len(ipns) // 10]))  # warm up
                rate, latencies = asyncio.run(flood(bases, ipns[len(ipns) // 10 :]))
            finally:
                for server in servers:
                    server.terminate()
                    server.wait(15)
        cluster.drop_database(url)
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        print(f"  {processes} process(es) {rate:8.0f} IPN/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms")
        rates[processes] = rate
    print(f"  2 processes / 1: {rates[2] / rates[1]:.2f}x")
    return [("postgres.webhook.two_processes", rates[2] / rates[1], "for information")]


if __name__ == "__main__":
    main()
