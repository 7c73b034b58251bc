"""Clocks: the system's UTC clock, and the settable one for sandboxes and tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bitloot_core.testing import SettableClock


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
        self._offset_seconds = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._offset_seconds)

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset_seconds += seconds
        return self.now()


__all__ = ["OffsetClock", "SettableClock", "SystemClock"]
