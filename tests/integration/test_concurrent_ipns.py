"""Four processes apply 500 IPN deliveries to one SQLite file at once.

Each process builds its own ``Checkout`` on the same file (same IPN secret and signing
key; the other ports are the shipped fakes: the store is what is under test). The 50
orders and their payments are made first, here, so every IPN can name its payment.

Full payments get waiting/confirming/confirmed/sending/finished, short ones
waiting/confirming/partially_paid, expiring ones waiting/confirming/expired (never a
finished, so their end is known whatever the order of delivery); every IPN at least
twice. All of it is shuffled and dealt to the four processes, which start together.

Afterwards: every delivery was answered 200 (no "database is locked"), every order ends
where the chart says, one fulfillment job per paid order and none for the others, and
replaying the webhook log in its commit order through the pure core gives exactly the
stored order and payment, versions included: no update was lost. A worker pass then
sends exactly one email per paid order.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from realkit import CATALOGUE, SENDER, apply_ipns, fake_checkout, ipn_body

from bitloot_adapters.mailers import FileMailer
from bitloot_adapters.sqlite_store import SqliteStore
from bitloot_core.chart import OrderStatus
from bitloot_core.payments import decide_payment
from bitloot_core.ports import StoreTx
from bitloot_core.providers.nowpayments import parse_payment
from bitloot_core.service import Checkout
from bitloot_core.testing import SettableClock
from bitloot_core.values import Order, Payment, WebhookOutcome

PROCESSES = 4
DELIVERIES = 500
SEQUENCES = {
    "full": ("waiting", "confirming", "confirmed", "sending", "finished"),
    "short": ("waiting", "confirming", "partially_paid"),
    "expired": ("waiting", "confirming", "expired"),
}
KINDS = ["full"] * 40 + ["short"] * 5 + ["expired"] * 5
EXPECTED = {
    "full": OrderStatus.PAID,
    "short": OrderStatus.UNDERPAID,
    "expired": OrderStatus.EXPIRED,
}


def bodies_for(kind: str, payment: Payment) -> list[bytes]:
    paid = {
        "full": payment.pay_amount,
        "short": (payment.pay_amount * Decimal("0.8")).quantize(Decimal("1e-8")),
        "expired": Decimal(0),
    }[kind]
    return [
        ipn_body(payment, status, Decimal(0) if status == "waiting" else paid)
        for status in SEQUENCES[kind]
    ]


def replay(order: Order, payment: Payment, bodies: list[bytes]) -> tuple[Order, Payment]:
    """What a single writer makes of ``bodies`` applied one after the other."""
    for body in bodies:
        decision = decide_payment(
            order,
            payment,
            parse_payment(body),
            tolerance_percent=Decimal(0),
            now=datetime.now(UTC),
        )
        if decision.applied:
            payment = replace(decision.payment, version=payment.version + 1)
            if decision.order is not order:
                order = replace(decision.order, version=order.version + 1)
    return order, payment


@dataclass(frozen=True, slots=True, kw_only=True)
class Opened:
    kind: str
    order: Order
    payment: Payment


def open_orders(checkout: Checkout) -> tuple[dict[str, Opened], list[bytes]]:
    """50 orders with their payments, and every IPN delivery they will get, shuffled."""
    opened: dict[str, Opened] = {}
    deliveries: list[bytes] = []
    for kind in KINDS:
        created = checkout.create_order(
            email="buyer@example.com", items=[("counter-strike-source", 1)]
        )
        payment = checkout.open_payment(created.order.id, created.access_token).payment
        order = checkout.admin_order(created.order.id).order
        opened[order.id] = Opened(kind=kind, order=order, payment=payment)
        deliveries += [body for body in bodies_for(kind, payment) for _ in range(2)]
    shuffler = random.Random(2026)
    deliveries += shuffler.choices(deliveries, k=DELIVERIES - len(deliveries))
    shuffler.shuffle(deliveries)
    return opened, deliveries


def check_no_lost_update(
    tx: StoreTx, order_id: str, opened: Opened, by_hash: dict[str, bytes]
) -> int:
    """Replay the order's webhook log in commit order; the store must hold the result.

    Returns how many deliveries the log holds for the order.
    """
    seen: set[str | None] = set()
    applied = []
    log = tx.list_webhooks(order_id)
    for entry in log:
        first = entry.dedupe_key not in seen
        assert (entry.outcome is WebhookOutcome.DUPLICATE) != first, entry
        seen.add(entry.dedupe_key)
        if first:
            applied.append(by_hash[entry.body_sha256])
    assert len(seen) == len(SEQUENCES[opened.kind])
    want_order, want_payment = replay(opened.order, opened.payment, applied)
    order = tx.get_order(order_id)
    payment = tx.get_payment(opened.payment.provider, opened.payment.id)
    assert order is not None
    assert payment is not None
    assert (order.status, order.flags, order.version) == (
        want_order.status,
        want_order.flags,
        want_order.version,
    ), f"order {order_id} ({opened.kind})"
    assert (payment.status, payment.provider_status, payment.actually_paid, payment.version) == (
        want_payment.status,
        want_payment.provider_status,
        want_payment.actually_paid,
        want_payment.version,
    ), f"payment of {order_id} ({opened.kind})"
    return len(log)


@pytest.mark.slow
def test_four_processes_500_ipns_one_sqlite_file(tmp_path: Path) -> None:
    db_path = tmp_path / "bitloot.db"
    with SqliteStore(db_path) as store:
        checkout = fake_checkout(
            store, SettableClock(), mailer=FileMailer(tmp_path / "mail", sender=SENDER)
        )
        for product in CATALOGUE:
            checkout.save_product(product)
        opened, deliveries = open_orders(checkout)
        assert len(deliveries) == DELIVERIES
        by_hash = {hashlib.sha256(body).hexdigest(): body for body in deliveries}

        answers = deliver_in_processes(str(db_path), deliveries)

        assert len(answers) == DELIVERIES
        failures = [a for a in answers if a[0] != 200]
        assert failures == [], f"{len(failures)} deliveries not answered 200: {failures[:3]}"
        paid = {oid for oid, o in opened.items() if o.kind == "full"}
        with store.transaction() as tx:
            final = {oid: tx.get_order(oid) for oid in opened}
            assert {oid: o.status for oid, o in final.items() if o} == {
                oid: EXPECTED[o.kind] for oid, o in opened.items()
            }
            assert {j.key for j in tx.list_jobs()} == {f"fulfill:{oid}" for oid in paid}
            logged = [check_no_lost_update(tx, oid, o, by_hash) for oid, o in opened.items()]
        assert sum(logged) == DELIVERIES

        # The worker, until idle: one fulfillment and one email per paid order.
        for _ in range(20):
            if not checkout.run_due_jobs(limit=100):
                break
        mail = sorted((tmp_path / "mail").glob("*.eml"))
        assert {p.name.split("-completed@")[0] for p in mail} == {f"order-{oid}" for oid in paid}
        assert len(mail) == len(paid)
        statuses = {checkout.admin_order(oid).order.status for oid in paid}
        assert statuses == {OrderStatus.FULFILLED}


def deliver_in_processes(db_path: str, deliveries: list[bytes]) -> list[tuple]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    workers = [
        context.Process(
            target=apply_ipns,
            args=(db_path, deliveries[index::PROCESSES], barrier, results, index),
            name=f"ipn-process-{index}",
        )
        for index in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        collected = [results.get(timeout=120) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
                worker.join()
    assert [w.exitcode for w in workers] == [0] * PROCESSES
    assert sorted(index for index, _, _ in collected) == list(range(PROCESSES))
    results.close()
    results.join_thread()
    # The processes really wrote at the same time: their busy spans all overlap.
    spans = [span for _, _, span in collected]
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    return [answer for _, answers, _ in collected for answer in answers]
