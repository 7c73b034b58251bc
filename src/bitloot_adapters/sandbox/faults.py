"""Fault injection shared by the sandboxes: "the next N calls fail this way".

A sandbox asks ``FaultPlan.take(method, path)`` before it handles a call and, when a
fault comes back, answers with it instead. Modes:

- ``"503"`` / ``"500"`` / ``"429"``: answer that status at once, without handling the call.
- ``"timeout"``: don't handle the call, stall longer than the client waits.
- ``"slow"``: handle the call (an order is placed, a payment created), then stall: the
  provider did the work but the client saw a timeout.

Sandboxes may add their own modes (Kinguin's ``"resource_lock"``). Thread-safe.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

__all__ = ["FaultPlan", "OutageMode"]

OutageMode = Literal["503", "500", "429", "timeout", "slow"]


@dataclass(slots=True)
class _Outage:
    remaining: int
    mode: str
    method: str | None
    path: str | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or path.startswith(self.path)
        )


class FaultPlan:
    def __init__(self, modes: frozenset[str]) -> None:
        self._modes = modes
        self._lock = threading.Lock()
        self._outages: list[_Outage] = []

    def outage(
        self, failures: int, mode: str, *, method: str | None = None, path: str | None = None
    ) -> None:
        """The next ``failures`` calls (only those with ``method`` and a path starting
        with ``path``, when given) fail in ``mode``."""
        if mode not in self._modes:
            raise ValueError(f"unknown outage mode {mode!r}; one of {sorted(self._modes)}")
        if failures < 0:
            raise ValueError("failures must not be negative")
        with self._lock:
            self._outages.append(_Outage(failures, mode, method, path))

    def take(self, method: str, path: str) -> str | None:
        """The fault for this call, if one is planned; uses it up."""
        with self._lock:
            for outage in self._outages:
                if outage.remaining > 0 and outage.matches(method, path):
                    outage.remaining -= 1
                    return outage.mode
            self._outages = [outage for outage in self._outages if outage.remaining > 0]
            return None

    def clear(self) -> None:
        with self._lock:
            self._outages.clear()

    @property
    def pending(self) -> int:
        """How many planned failures are still to come."""
        with self._lock:
            return sum(outage.remaining for outage in self._outages)
