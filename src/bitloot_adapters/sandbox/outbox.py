"""A sandbox's outgoing webhooks, delivered in a thread of their own, as a provider does.

A provider sends its webhooks from its own servers, whatever the shop is doing; a
sandbox that posted them from the thread asking for them (a ``/sandbox/.../pay`` request
served by the shop itself) would deadlock a single-threaded server: the shop cannot
answer the webhook until the request that is waiting for that answer ends.

``Outbox.send(attempts)`` queues the attempts (each a call that posts once and returns
the HTTP status, or None when nothing answered) and returns at once; one thread
delivers them in the order they were sent. A failed attempt (no answer, or a 5xx) is
tried again after each of ``retry_delays`` in turn. ``Sending.wait`` waits, as long as
the caller likes, for the first attempt of each. The thread ends when the outbox has
been idle for a second and starts again on the next send; ``close`` drops any pending
retry and joins it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = ["Outbox", "Sending"]

Attempt = Callable[[], int | None]
_IDLE_SECONDS: Final = 1.0
_SERVER_ERROR: Final = 500


@dataclass(eq=False)
class _Delivery:
    attempt: Attempt
    delays: Iterator[float]
    done: threading.Event = field(default_factory=threading.Event)
    first: int | None = None


class Sending:
    """The deliveries of one ``send``: what their first attempts were answered."""

    def __init__(self, deliveries: Sequence[_Delivery]) -> None:
        self._deliveries = deliveries

    def wait(self, timeout: float | None = None) -> list[tuple[bool, int | None]]:
        """``(delivered, answered)`` of each first attempt, waiting up to ``timeout``
        seconds in all (None: until every first attempt is done)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for delivery in self._deliveries:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not delivery.done.wait(left):
                break
        return [(d.done.is_set(), d.first if d.done.is_set() else None) for d in self._deliveries]


class Outbox:
    def __init__(self, *, retry_delays: Sequence[float] = (), name: str = "sandbox-outbox") -> None:
        self._retry_delays = tuple(retry_delays)
        self._name = name
        self._ready: threading.Condition = threading.Condition()
        self._queue: deque[_Delivery] = deque()
        self._retries: list[tuple[float, int, _Delivery]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def send(self, attempts: Sequence[Attempt]) -> Sending:
        deliveries = [_Delivery(attempt, iter(self._retry_delays)) for attempt in attempts]
        with self._ready:
            if self._closed:
                raise RuntimeError("the sandbox's outbox is closed")
            self._queue.extend(deliveries)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._ready.notify()
        return Sending(deliveries)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._retries.clear()
            thread = self._thread
            self._ready.notify()
        if thread is not None:
            thread.join()

    def _next(self) -> tuple[_Delivery, bool] | None:
        """The next delivery to attempt and whether it is a retry; None: stop."""
        with self._ready:
            idle_since = time.monotonic()
            while True:
                if self._queue:
                    return self._queue.popleft(), False
                now = time.monotonic()
                if self._retries and self._retries[0][0] <= now and not self._closed:
                    return heapq.heappop(self._retries)[2], True
                if self._closed or (not self._retries and now - idle_since >= _IDLE_SECONDS):
                    self._thread = None
                    return None
                due = self._retries[0][0] - now if self._retries else _IDLE_SECONDS
                self._ready.wait(min(due, _IDLE_SECONDS))

    def _run(self) -> None:
        while (taken := self._next()) is not None:
            delivery, retry = taken
            try:
                answered = delivery.attempt()
            except Exception:  # noqa: BLE001 - a sandbox bug must not stop the deliveries
                answered = None
            if not retry:
                delivery.first = answered
                delivery.done.set()
            if answered is None or answered >= _SERVER_ERROR:
                delay = next(delivery.delays, None)
                if delay is not None:
                    with self._ready:
                        due = time.monotonic() + delay
                        heapq.heappush(self._retries, (due, next(self._order), delivery))
