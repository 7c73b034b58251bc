"""Scenario 13: Kinguin is down when the payment is confirmed.

Fulfillment is retried with exponential backoff from 1 s (1 s, 2 s, 4 s, 8 s between the
5 attempts, with full jitter: each delay at most that; deviation #12). When the retries
run out the order stays ``paid``, flagged ``fulfillment_failed``, its job dead-lettered
and listed for the admin, who can retry it (deviation #11).

The server runs no worker thread here: each attempt runs when the test moves the sandbox
clock, so the job can be read between attempts.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from steps import (
    admin_list,
    advance,
    assert_completion_email,
    assert_seen,
    checkout,
    get_order,
    jobs_of,
    kinguin_calls,
    kinguin_orders_placed,
    kinguin_outage,
    pay,
    run_jobs,
)

from support.servers import RunningServer

# Time an attempt itself may take between the clock read by the advance and the failure.
SLACK = timedelta(seconds=0.5)
BACKOFF = (1, 2, 4, 8)  # seconds before attempts 2..5, at most


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def attempt(server: RunningServer, order_id: str, seconds: float) -> tuple[datetime, Any]:
    """Move the clock ``seconds``; the worker pass runs the fulfillment once. Returns the
    clock at the pass and the job afterwards."""
    passed = advance(server, seconds)
    # The fulfillment runs once; when it succeeds, the email it enqueued runs too.
    assert [run["key"] for run in passed["jobs"]][:1] == [f"fulfill:{order_id}"], passed
    return _time(passed["now"]), jobs_of(server, order_id)["fulfill"]


def assert_backs_off(job: Any, now: datetime, attempts: int) -> None:
    assert job["state"] == "pending"
    assert job["attempts"] == attempts
    assert "503" in job["last_error"]
    delay = _time(job["run_at"]) - now
    assert timedelta(0) <= delay <= timedelta(seconds=BACKOFF[attempts - 1]) + SLACK, delay


def test_outage_of_three_calls_recovers_on_attempt_four(stepped: RunningServer) -> None:
    server = stepped
    kinguin_outage(server, 3)
    order, payment = checkout(server, ("stardew-valley", 1))
    pay(server, payment["id"])
    assert_seen(get_order(server, order), "paid", "finished")

    wait = 0
    for n in (1, 2, 3):
        now, job = attempt(server, order.id, wait)
        assert_backs_off(job, now, n)
        assert [c.status for c in kinguin_calls(server)] == [503] * n
        assert_seen(get_order(server, order), "paid", "finished")
        wait = BACKOFF[n - 1]

    _, job = attempt(server, order.id, wait)
    assert (job["state"], job["attempts"]) == ("done", 4)
    assert_seen(get_order(server, order), "fulfilled", "finished")
    assert kinguin_orders_placed(server, order.id) == 1
    assert run_jobs(server) == []  # the email went out in the pass that fulfilled it
    assert_completion_email(server, order)


def test_outage_beyond_five_attempts_waits_for_the_admin(stepped: RunningServer) -> None:
    server = stepped
    kinguin_outage(server, 5)
    order, payment = checkout(server, ("counter-strike-source", 1))
    pay(server, payment["id"])

    wait = 0
    for n in (1, 2, 3, 4):
        now, job = attempt(server, order.id, wait)
        assert_backs_off(job, now, n)
        wait = BACKOFF[n - 1]
    _, job = attempt(server, order.id, wait)
    assert (job["state"], job["attempts"]) == ("dead", 5)

    # Stays paid, flagged; the customer still reads "Payment confirmed!".
    seen = get_order(server, order)
    assert_seen(seen, "paid", "finished")
    assert seen["flags"] == ["fulfillment_failed"]
    dead = admin_list(server, "jobs", state="dead")
    assert [(j["key"], j["attempts"]) for j in dead] == [(f"fulfill:{order.id}", 5)]
    assert [o["id"] for o in admin_list(server, "orders", flag="fulfillment_failed")] == [order.id]
    assert kinguin_orders_placed(server) == 0
    assert advance(server, 3600)["jobs"] == []  # nothing retries on its own now

    # The admin retries once Kinguin is back.
    retried = server.http.post(
        f"/api/admin/orders/{order.id}/retry-fulfillment", headers=server.admin
    )
    assert retried.status_code == 200
    assert retried.json()["flags"] == []
    job = jobs_of(server, order.id)["fulfill"]
    assert (job["state"], job["attempts"]) == ("pending", 0)
    assert admin_list(server, "jobs", state="dead") == []
    _, job = attempt(server, order.id, 0)
    assert job["state"] == "done"
    assert_seen(get_order(server, order), "fulfilled", "finished")
    assert kinguin_orders_placed(server, order.id) == 1
    run_jobs(server)
    assert_completion_email(server, order)
