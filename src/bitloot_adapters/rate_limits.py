"""Per-client rate limits: token buckets keyed by client address or email, in memory.

Each limit allows a burst of ``per_minute`` requests and refills at ``per_minute`` a
minute, so a busy shop behind one NAT can place 60 orders at once under the default.
``per_minute = 0`` turns a limit off. Buckets live in this process only (several server
processes each allow the full rate) and at most ``MAX_KEYS`` of them are kept: the least
recently used is forgotten first, which can only ever give a client more room, never
less.

Which client a request comes from is ``client_address``: the socket's peer, unless the
peer is one of ``BITLOOT_TRUSTED_PROXIES``; then the right-most address of
``X-Forwarded-For`` that is not itself a trusted proxy.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from bitloot_core.errors import RateLimited

__all__ = [
    "MAX_KEYS",
    "MAX_STREAMS",
    "MAX_STREAMS_PER_ORDER",
    "HeldStream",
    "Proxies",
    "RateLimiter",
    "ShopLimits",
    "StreamSlots",
    "client_address",
]

MAX_KEYS: Final = 100_000
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Proxies = tuple[Network, ...]


class RateLimiter:
    """Token buckets of ``per_minute`` tokens, one per key; thread-safe."""

    def __init__(
        self,
        per_minute: int,
        *,
        what: str,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self.what = what
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def on(self) -> bool:
        return self.per_minute > 0

    def _tokens(self, key: str, now: float) -> float:
        tokens, since = self._buckets.get(key, (float(self.per_minute), now))
        return min(float(self.per_minute), tokens + (now - since) * self.per_minute / 60)

    def wait(self, key: str) -> int | None:
        """Seconds until ``key`` may go on (None: now), without using a token."""
        if not self.on:
            return None
        with self._lock:
            tokens = self._tokens(key, self._clock())
        return None if tokens >= 1 else self._seconds(tokens)

    def take(self, key: str) -> int | None:
        """Use one of ``key``'s tokens; None if there was one, else seconds to wait."""
        if not self.on:
            return None
        with self._lock:
            now = self._clock()
            tokens = self._tokens(key, now)
            allowed = tokens >= 1
            if allowed:
                tokens -= 1
            self._buckets[key] = (tokens, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        return None if allowed else self._seconds(tokens)

    def _seconds(self, tokens: float) -> int:
        return max(1, math.ceil((1 - tokens) * 60 / self.per_minute))

    def check(self, key: str) -> None:
        """``take``, raising ``RateLimited`` when ``key`` has no token left."""
        wait = self.take(key)
        if wait is not None:
            raise RateLimited(f"too many {self.what}; try again in {wait} s", retry_after=wait)


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(peer: str, headers: Mapping[str, str], proxies: Sequence[Network]) -> str:
    """The client a request comes from: ``peer``, or, when ``peer`` is a trusted proxy,
    the right-most ``X-Forwarded-For`` hop that is not one."""
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [hop.strip() for hop in headers.get("x-forwarded-for", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return hop
    return hops[0] if hops else peer


# Event streams each hold a connection (and, on a threaded server, a thread) while they
# last: at most this many at once for one order, and in all.
MAX_STREAMS_PER_ORDER: Final = 4
MAX_STREAMS: Final = 200


class StreamSlots:
    """Counts open event streams per order and in total; thread-safe."""

    def __init__(self, *, per_order: int = MAX_STREAMS_PER_ORDER, total: int = MAX_STREAMS) -> None:
        self.per_order = per_order
        self.total = total
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, order_id: str) -> bool:
        with self._lock:
            held = self._open.get(order_id, 0)
            if held >= self.per_order or sum(self._open.values()) >= self.total:
                return False
            self._open[order_id] = held + 1
            return True

    def release(self, order_id: str) -> None:
        with self._lock:
            held = self._open.get(order_id, 0) - 1
            if held > 0:
                self._open[order_id] = held
            else:
                self._open.pop(order_id, None)

    def held(self) -> int:
        with self._lock:
            return sum(self._open.values())


class HeldStream:
    """An event stream's chunks; closing it (or its end) gives its slot back, once."""

    def __init__(self, chunks: Iterator[bytes], slots: StreamSlots, order_id: str) -> None:
        self._chunks = chunks
        self._slots = slots
        self._order_id = order_id
        self._held = True

    def __iter__(self) -> HeldStream:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._held:
            self._held = False
            self._slots.release(self._order_id)
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


@dataclass(frozen=True, slots=True)
class ShopLimits:
    """The shop's limits: orders per address and per email, payments opened per address,
    rejected webhooks per address (a correctly signed webhook is never limited)."""

    orders: RateLimiter
    payments: RateLimiter
    webhook_rejects: RateLimiter
    trusted_proxies: Proxies = ()
    streams: StreamSlots = field(default_factory=StreamSlots)

    @classmethod
    def per_minute(
        cls, *, orders: int, payments: int, webhook_rejects: int, trusted_proxies: Proxies = ()
    ) -> ShopLimits:
        return cls(
            orders=RateLimiter(orders, what="orders"),
            payments=RateLimiter(payments, what="payments opened"),
            webhook_rejects=RateLimiter(webhook_rejects, what="rejected webhooks"),
            trusted_proxies=trusted_proxies,
        )
