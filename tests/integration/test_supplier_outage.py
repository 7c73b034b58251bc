"""Scenario 13: Kinguin is down. Retries follow the schedule, then the admin takes over.

The retry schedule is built without jitter (1 s, 2 s, 4 s, 8 s between the five attempts)
and time is the shared settable clock, so every ``run_at`` is exact. The dead-letter part
goes on with the ``bitloot`` command in live mode on the same data dir, as an operator
would: list the dead job, retry the order, run a worker pass.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from realkit import RealKit

from bitloot_core.chart import Flag, OrderStatus
from bitloot_core.values import JobState

MICROSECOND = timedelta(microseconds=1)


def log_events(stderr: str) -> list[str]:
    """The events a command logged on stderr (each command announces its mode first)."""
    return [json.loads(line)["event"] for line in stderr.splitlines()]


def fail_through(kit: RealKit, key: str, failures: int) -> list[timedelta]:
    """Run the job through ``failures`` failed attempts; the delay set after each one."""
    gaps = []
    for attempt in range(1, failures + 1):
        failed_at = kit.clock.now()
        outcomes = kit.run_jobs()
        job = kit.job(key)
        assert job.attempts == attempt
        if job.state is JobState.DEAD:
            assert outcomes == ["dead"]
            break
        assert outcomes == ["retry"]
        assert job.state is JobState.PENDING
        assert job.last_error is not None
        assert "503" in job.last_error
        gaps.append(job.run_at - failed_at)
        step_to(kit, job.run_at)
    return gaps


def step_to(kit: RealKit, run_at: datetime) -> None:
    """Move the clock to just before ``run_at`` (nothing is due), then onto it."""
    kit.clock.set(run_at - MICROSECOND)
    assert kit.run_jobs() == []
    kit.clock.set(run_at)


def test_three_failures_then_fulfilled_on_the_fourth_attempt(kit: RealKit) -> None:
    created, payment = kit.buy([("counter-strike-source", 1), ("stardew-valley", 1)])
    kit.pay(payment)
    kit.supplier.outage(3, "503")
    key = f"fulfill:{created.order.id}"

    gaps = fail_through(kit, key, 3)
    assert gaps == [timedelta(seconds=1), timedelta(seconds=2), timedelta(seconds=4)]
    assert kit.statuses(created)[0] is OrderStatus.PAID

    assert kit.run_jobs() == ["done", "done"]  # the fulfillment, then its email
    job = kit.job(key)
    assert (job.state, job.attempts) == (JobState.DONE, 4)
    order = kit.checkout.get_order(created.order.id, created.access_token).order
    assert (order.status, order.flags) == (OrderStatus.FULFILLED, frozenset())
    assert [c.status for c in kit.supplier.calls[:3]] == [503, 503, 503]
    assert len(kit.sandbox.placements(created.order.id)) == 1
    assert len(kit.email_files()) == 1


def test_five_failures_dead_letter_then_admin_retry(kit: RealKit, bitloot) -> None:
    created, payment = kit.buy([("stardew-valley", 2)])
    kit.pay(payment)
    kit.supplier.outage(5, "503")
    key = f"fulfill:{created.order.id}"

    gaps = fail_through(kit, key, 5)
    assert gaps == [timedelta(seconds=s) for s in (1, 2, 4, 8)]
    job = kit.job(key)
    assert (job.state, job.attempts) == (JobState.DEAD, 5)
    order = kit.checkout.get_order(created.order.id, created.access_token).order
    assert (order.status, order.flags) == (OrderStatus.PAID, {Flag.FULFILLMENT_FAILED})
    kit.clock.advance(timedelta(hours=1))
    assert kit.run_jobs() == [], "a dead job is not retried on its own"
    assert kit.sandbox.placements(created.order.id) == []

    run = bitloot(kit)
    dead = run("jobs", "--state", "dead")
    assert (dead.code, log_events(dead.err)) == (0, ["bitloot_start"])
    header, row = dead.out.splitlines()
    assert header.split()[:4] == ["JOB", "STATE", "TRIES", "RUN"]
    assert row.split()[:3] == [key, "dead", "5"]
    assert "503" in row

    retried = run("retry", created.order.id)
    assert (retried.code, log_events(retried.err)) == (0, ["bitloot_start"])
    assert retried.out == f"order {created.order.id}: fulfillment re-enqueued (paid)\n"
    order = kit.checkout.get_order(created.order.id, created.access_token).order
    assert (order.status, order.flags) == (OrderStatus.PAID, frozenset())
    assert run("jobs", "--state", "dead").out == "no jobs\n"

    worker = run("worker", "--once")
    assert (worker.code, worker.out) == (0, "ran 2 jobs, expired 0 orders\n")
    order = kit.checkout.get_order(created.order.id, created.access_token).order
    assert order.status is OrderStatus.FULFILLED
    assert len(order.items[0].keys) == 2
    assert len(kit.sandbox.placements(created.order.id)) == 1
    (kinguin_order,) = kit.sandbox.kinguin_orders(created.order.id)
    assert [p["qty"] for p in kinguin_order["products"]] == [2]

    assert run("worker", "--once").out == "ran 0 jobs, expired 0 orders\n"
    assert len(kit.email_files()) == 1
    audit = [a.action for a in kit.checkout.admin_order(created.order.id).audit]
    assert "admin_retry_fulfillment" in audit
