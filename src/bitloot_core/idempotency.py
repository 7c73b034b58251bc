"""Idempotent order creation: scope, request fingerprint and the decision.

A request carries an ``Idempotency-Key``. The scope is (email, key), so two customers
cannot collide on the same key. The key is a secret (a replay hands out the order's
access token), so it must be at least ``MIN_KEY_LENGTH`` characters and the scope is
stored only as a SHA-256 hash. The fingerprint covers what the order would contain;
the same scope with the same fingerprint replays the first order, with another
fingerprint it is a conflict. Records older than the retention window are forgotten
(exactly ``retention`` old still counts).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from bitloot_core.rules import IDEMPOTENCY_RETENTION
from bitloot_core.values import IdempotencyRecord

MIN_KEY_LENGTH = 16
MAX_KEY_LENGTH = 255


class Decision(enum.StrEnum):
    NEW = "new"
    REPLAY = "replay"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True, kw_only=True)
class IdempotencyDecision:
    decision: Decision
    order_id: str | None = None


def valid_key(key: str) -> bool:
    """Whether ``key`` is an acceptable ``Idempotency-Key``: 16-255 printable characters."""
    return MIN_KEY_LENGTH <= len(key) <= MAX_KEY_LENGTH and key.isprintable()


def scope(email: str, key: str) -> str:
    """The (email, key) scope as stored: the SHA-256 (hex) of both, never the key itself.
    The email is compared case-insensitively."""
    return hashlib.sha256(f"{email.strip().casefold()}\n{key}".encode()).hexdigest()


def fingerprint(request: Mapping[str, object]) -> str:
    """A stable hash of the request, independent of key order."""
    text = json.dumps(
        request, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


def decide(
    existing: IdempotencyRecord | None,
    *,
    request_fingerprint: str,
    now: datetime,
    retention: timedelta = IDEMPOTENCY_RETENTION,
) -> IdempotencyDecision:
    if existing is None or now - existing.created_at > retention:
        return IdempotencyDecision(decision=Decision.NEW)
    if existing.fingerprint == request_fingerprint:
        return IdempotencyDecision(decision=Decision.REPLAY, order_id=existing.order_id)
    return IdempotencyDecision(decision=Decision.CONFLICT, order_id=existing.order_id)
