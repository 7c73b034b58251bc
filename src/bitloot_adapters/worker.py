"""The worker: runs due jobs, the sweeper every 10 minutes, and payment reconciliation.

Many workers may run against one store: jobs are leased, so each runs once at a time, and
a crashed worker's job is taken again when its lease runs out. Schedules follow the
checkout's clock, so moving a sandbox clock forward makes the sweeper and retries due.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from bitloot_core.ports import Clock
from bitloot_core.rules import SWEEP_INTERVAL
from bitloot_core.service import Checkout, JobRun

_log = structlog.get_logger("bitloot.worker")


@dataclass(frozen=True, slots=True, kw_only=True)
class Pass:
    """What one pass of the worker did."""

    jobs: list[JobRun] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)
    reconciled: int = 0


class Worker:
    def __init__(
        self,
        checkout: Checkout,
        clock: Clock,
        *,
        name: str = "worker",
        batch: int = 20,
        sweep_every: timedelta = SWEEP_INTERVAL,
        reconcile_every: timedelta = timedelta(minutes=5),
    ) -> None:
        self._checkout = checkout
        self._clock = clock
        self._name = name
        self._batch = batch
        self._sweep_every = sweep_every
        self._reconcile_every = reconcile_every
        self._last_sweep: datetime | None = None
        self._last_reconcile: datetime | None = None
        self._lock = threading.Lock()

    def run_once(self, *, force_sweep: bool = False) -> Pass:
        """One pass: every due job (in batches), then the sweeper and reconciliation if due."""
        with self._lock:
            runs: list[JobRun] = []
            while True:
                batch = self._checkout.run_due_jobs(limit=self._batch, worker=self._name)
                runs.extend(batch)
                if len(batch) < self._batch:
                    break
            now = self._clock.now()
            swept: list[str] = []
            if force_sweep or self._due(self._last_sweep, self._sweep_every, now):
                swept = self._checkout.sweep()
                self._last_sweep = now
            reconciled = 0
            if self._due(self._last_reconcile, self._reconcile_every, now):
                reconciled = len(self._checkout.reconcile())
                self._last_reconcile = now
            if swept:
                # Expiry may have made nothing new due, but retries might have: run again.
                runs.extend(self._checkout.run_due_jobs(limit=self._batch, worker=self._name))
            return Pass(jobs=runs, swept=swept, reconciled=reconciled)

    @staticmethod
    def _due(last: datetime | None, every: timedelta, now: datetime) -> bool:
        return last is None or now - last >= every

    def run_forever(self, stop: threading.Event, *, poll_seconds: float = 0.5) -> None:
        """Pass after pass until ``stop`` is set; a failing pass is logged and retried."""
        while not stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - the worker must outlive a bad pass
                _log.warning("worker_pass_failed", worker=self._name, error=type(exc).__name__)
            stop.wait(poll_seconds)


class WorkerThread:
    """A worker in a daemon thread, for servers that run their own worker."""

    def __init__(self, worker: Worker, *, poll_seconds: float = 0.5) -> None:
        self._worker = worker
        self._stop = threading.Event()
        self._poll = poll_seconds
        self._thread = threading.Thread(target=self._run, name="bitloot-worker", daemon=True)

    def _run(self) -> None:
        self._worker.run_forever(self._stop, poll_seconds=self._poll)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._thread.join(timeout)
