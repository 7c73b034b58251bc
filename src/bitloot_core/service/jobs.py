"""The worker's side of the outbox: running due jobs, retrying, giving up.

What each job kind runs is ``RUNNERS``; its retry schedule and the event sent when the
retries run out are the chart's (``chart.JOBS``). Jobs are leased one at a time, just
before they run. Waiting for a supplier's keys is not failing: it uses up no attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from types import MappingProxyType
from typing import Final

from bitloot_core import chart, rules
from bitloot_core.chart import JobKind
from bitloot_core.errors import AdapterError, BitlootError, KeysPending
from bitloot_core.service import emails, fulfillment, waiting
from bitloot_core.service.context import Context
from bitloot_core.service.leases import Lease, LeaseLost, lease_next
from bitloot_core.service.outbox import transition
from bitloot_core.service.results import JobRun
from bitloot_core.values import Job, JobState

RUNNERS: Final[MappingProxyType[JobKind, Callable[[Context, Lease], None]]] = MappingProxyType(
    {
        JobKind.FULFILL: fulfillment.fulfill,
        JobKind.COMPLETION_EMAIL: emails.send_completion_email,
    }
)


def run_due_jobs(ctx: Context, *, limit: int, worker: str) -> list[JobRun]:
    """Run up to ``limit`` due jobs, one at a time. Safe to call from many workers.

    Each job is leased just before it runs (a lease taken for a whole batch would run
    out while the batch's first jobs run, and another worker would take the rest).
    """
    runs: list[JobRun] = []
    ran: set[str] = set()  # a job retried at once waits for the next pass
    for _ in range(limit):
        lease = lease_next(ctx, skip=ran)
        if lease is None:
            break
        ran.add(lease.job.key)
        runs.append(run_job(ctx, lease, worker))
    return runs


def run_job(ctx: Context, lease: Lease, worker: str) -> JobRun:
    job = lease.job
    rule = chart.JOBS[job.kind]
    schedule: rules.RetrySchedule = getattr(ctx.config, rule.retries)
    ctx.observer.observe(
        "job_started", job=job.key, kind=str(job.kind), attempt=job.attempts, worker=worker
    )
    try:
        RUNNERS[job.kind](ctx, lease)
    except LeaseLost:
        return JobRun(key=job.key, outcome="lost_lease")
    except BitlootError as exc:
        return _failed(ctx, lease.job, exc, schedule)
    except Exception as exc:  # noqa: BLE001 - an adapter bug must not kill the worker
        failure = AdapterError(f"{type(exc).__name__} in {job.kind}")
        return _failed(ctx, lease.job, failure, schedule)
    with ctx.store.transaction() as tx:
        current = tx.get_job(job.key)
        if current is None or current.version != lease.job.version:
            # The lease ran out and another worker owns the job now; its work was the
            # same (every step is safe to repeat), so there is nothing to undo.
            return JobRun(key=job.key, outcome="lost_lease")
        tx.update_job(replace(current, state=JobState.DONE, lease_until=None, last_error=None))
    ctx.observer.observe("job_done", job=job.key, attempt=job.attempts)
    return JobRun(key=job.key, outcome="done")


def _keys_pending(ctx: Context, job: Job, exc: KeysPending) -> JobRun | None:
    """Keep waiting for a supplier's keys without using up an attempt (None: too long)."""
    now = ctx.clock.now()
    config = ctx.config
    limit = config.preorder_wait_limit if exc.preorder else config.key_wait_limit
    if now - job.created_at >= limit:
        return None
    error = f"{exc.code}: {exc.message}"
    with ctx.store.transaction() as tx:
        current = tx.get_job(job.key)
        if current is None or current.version != job.version:
            return JobRun(key=job.key, outcome="lost_lease", error=error)
        first = not (current.last_error or "").startswith(f"{exc.code}:")
        tx.update_job(
            replace(
                current,
                state=JobState.PENDING,
                attempts=current.attempts - 1,  # waiting is not a failed attempt
                run_at=now + config.key_poll_interval,
                lease_until=None,
                last_error=error,
            )
        )
        if first:  # once per wait, not once per poll
            ctx.audit(tx, job.order_id, waiting.AUDIT_ACTION, waiting.describe(exc))
    ctx.observer.observe("keys_pending", job=job.key, preorder=exc.preorder)
    return JobRun(key=job.key, outcome="waiting", error=error)


def _failed(ctx: Context, job: Job, exc: BitlootError, schedule: rules.RetrySchedule) -> JobRun:
    if isinstance(exc, KeysPending) and job.kind is JobKind.FULFILL:
        waiting = _keys_pending(ctx, job, exc)
        if waiting is not None:
            return waiting
    now = ctx.clock.now()
    error = f"{exc.code}: {exc.message}"
    delay = schedule.delay_after(job.attempts, random_value=ctx.random())
    if not exc.retryable:
        delay = None
    with ctx.store.transaction() as tx:
        current = tx.get_job(job.key)
        if current is None or current.version != job.version:
            return JobRun(key=job.key, outcome="lost_lease", error=error)
        if delay is not None:
            tx.update_job(
                replace(
                    current,
                    state=JobState.PENDING,
                    run_at=now + delay,
                    lease_until=None,
                    last_error=error,
                )
            )
            outcome = "retry"
        else:
            tx.update_job(replace(current, state=JobState.DEAD, lease_until=None, last_error=error))
            transition(ctx, tx, job.order_id, chart.JOBS[job.kind].gives_up(exc.code), now)
            outcome = "dead"
        ctx.audit(tx, job.order_id, f"job_{outcome}", f"{job.key} attempt {job.attempts}: {error}")
    ctx.observer.observe(
        "job_failed",
        job=job.key,
        kind=str(job.kind),
        attempt=job.attempts,
        outcome=outcome,
        error=exc.code,
    )
    return JobRun(key=job.key, outcome=outcome, error=error)
