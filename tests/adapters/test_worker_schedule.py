"""The worker's schedule: the sweeper runs every 10 minutes, reconciliation every 5, and
both follow the checkout's clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bitloot_adapters.worker import Worker
from bitloot_core.service import Checkout, CheckoutConfig
from bitloot_core.testing import (
    FakeGateway,
    FakeSupplier,
    MemoryStore,
    MemoryVault,
    RecordingMailer,
    SequentialIds,
    SettableClock,
)


@pytest.fixture
def counted() -> tuple[Worker, SettableClock, list[str]]:
    clock = SettableClock()
    checkout = Checkout(
        store=MemoryStore(),
        gateway=FakeGateway(),
        supplier=FakeSupplier(),
        vault=MemoryVault(b"k" * 32),
        mailer=RecordingMailer(),
        clock=clock,
        config=CheckoutConfig(
            ipn_secret="s", signing_key=b"k" * 32, public_url="https://shop.example"
        ),
        new_id=SequentialIds("id"),
    )
    calls: list[str] = []
    sweep, reconcile = checkout.sweep, checkout.reconcile
    checkout.sweep = lambda: calls.append("sweep") or sweep()  # type: ignore[method-assign]
    checkout.reconcile = lambda: calls.append("reconcile") or reconcile()  # type: ignore[method-assign]
    return Worker(checkout, clock), clock, calls


def test_the_sweeper_runs_every_ten_minutes(counted) -> None:
    worker, clock, calls = counted
    swept_at = []
    for minute in range(41):
        calls.clear()
        worker.run_once()
        if "sweep" in calls:
            swept_at.append(minute)
        clock.advance(timedelta(minutes=1))
    assert swept_at == [0, 10, 20, 30, 40]


def test_reconciliation_runs_every_five_minutes(counted) -> None:
    worker, clock, calls = counted
    reconciled_at = []
    for second in range(0, 11 * 60, 30):
        calls.clear()
        worker.run_once()
        if "reconcile" in calls:
            reconciled_at.append(second)
        clock.advance(timedelta(seconds=30))
    assert reconciled_at == [0, 300, 600]
