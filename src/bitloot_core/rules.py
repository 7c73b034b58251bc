"""Time rules: abandoned-order expiry and the job retry schedule.

Pure: the current time and any random value come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bitloot_core.chart import OrderStatus
from bitloot_core.values import Order

ORDER_TTL = timedelta(minutes=60)
SWEEP_INTERVAL = timedelta(minutes=10)
KEY_URL_TTL = timedelta(hours=3)
IDEMPOTENCY_RETENTION = timedelta(hours=24)
# Waiting for a supplier's keys is not failing: the order is polled this often (and woken
# by the supplier's webhook) without using up attempts, for up to the limit, after which
# it counts as a failed attempt. Pre-order keys come only after the release date.
KEY_POLL_INTERVAL = timedelta(minutes=5)
KEY_WAIT_LIMIT = timedelta(days=3)
PREORDER_WAIT_LIMIT = timedelta(days=120)
# Statuses the sweeper may expire: payment not started, or started and never paid into.
SWEEPABLE = frozenset({OrderStatus.CREATED, OrderStatus.WAITING})


def is_abandoned(order: Order, *, now: datetime, ttl: timedelta = ORDER_TTL) -> bool:
    """An order in ``created``/``waiting`` whose creation is ``ttl`` or more ago."""
    return order.status in SWEEPABLE and now - order.created_at >= ttl


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrySchedule:
    """Attempts and exponential backoff: delay before attempt n+1 is base * 2**(n-1).

    With the defaults, attempts 2..5 wait 1 s, 2 s, 4 s, 8 s (15 s in all). With
    ``jitter`` the delay is drawn uniformly from [0, delay] ("full jitter") using the
    random value the caller passes in.
    """

    attempts: int = 5
    base: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(minutes=10)
    jitter: bool = False

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base <= timedelta(0):
            raise ValueError("base must be positive")

    def delay_after(self, attempt: int, *, random_value: float = 1.0) -> timedelta | None:
        """Delay after failed attempt ``attempt`` (1-based), or None when retries are spent."""
        if attempt >= self.attempts:
            return None
        delay: timedelta = min(self.base * (2 ** (attempt - 1)), self.cap)
        if self.jitter:
            if not 0.0 <= random_value <= 1.0:
                raise ValueError("random_value must be in [0, 1]")
            delay = delay * random_value
        return delay


FULFILLMENT_RETRIES = RetrySchedule(jitter=True)
# Mail servers come back slowly: keep trying for about an hour.
EMAIL_RETRIES = RetrySchedule(attempts=20, cap=timedelta(minutes=5), jitter=True)
