"""Clocks: the system's UTC clock, and the sandbox's clock that can be moved forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class SystemClock:
    """The real time, as an aware UTC datetime."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class OffsetClock:
    """The system clock moved forward by a settable offset (the sandbox's test clock).

    Time keeps flowing, as it does for a person using the demo, and ``advance`` jumps it
    ahead so expiry and retries can be shown without waiting.
    """

    def __init__(self) -> None:
        self._offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("the clock only moves forward")
        self._offset += delta
        return self.now()


__all__ = ["OffsetClock", "SystemClock"]
