"""Job leases: a job runs on one worker at a time, and a worker checks it still owns the
job right before each step that talks to the outside world."""

from __future__ import annotations

from dataclasses import dataclass, replace

from bitloot_core.ports import StoreTx
from bitloot_core.service.context import Context
from bitloot_core.values import Job, JobState


class LeaseLost(Exception):
    """The job's lease ran out and another worker took the job over."""


@dataclass(slots=True)
class Lease:
    """The job as this worker last leased it; renewing replaces ``job``."""

    job: Job


def lease_next(ctx: Context, *, skip: set[str] | None = None) -> Lease | None:
    """Lease the next due job not in ``skip`` (one attempt more), or None."""
    now = ctx.clock.now()
    skip = skip or set()
    with ctx.store.transaction() as tx:
        for job in tx.due_jobs(now, len(skip) + 1):
            if job.key in skip:
                continue
            running = replace(
                job,
                state=JobState.RUNNING,
                attempts=job.attempts + 1,
                lease_until=now + ctx.config.job_lease,
            )
            return Lease(job=tx.update_job(running))
    return None


def renew(ctx: Context, lease: Lease) -> None:
    """Extend the lease before a step that talks to the outside world.

    If the lease was lost (it ran out and another worker took the job), stop here:
    the step must not run twice at once, above all not a purchase.
    """
    with ctx.store.transaction() as tx:
        renew_in(ctx, tx, lease)


def renew_in(ctx: Context, tx: StoreTx, lease: Lease) -> None:
    """``renew`` inside the caller's transaction, so the caller's own checks (the order
    is still to be fulfilled) and the lease's are one read of the store."""
    current = tx.get_job(lease.job.key)
    if current is None or current.version != lease.job.version:
        raise LeaseLost
    lease.job = tx.update_job(replace(current, lease_until=ctx.clock.now() + ctx.config.job_lease))
