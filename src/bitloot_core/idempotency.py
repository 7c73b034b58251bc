"""Idempotent order creation: scope, request fingerprint and the decision.

A request carries an ``Idempotency-Key``. The scope is (email, key), so two customers
cannot collide on the same key. The fingerprint covers what the order would contain;
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

MAX_KEY_LENGTH = 255


class Decision(enum.StrEnum):
    NEW = "new"
    REPLAY = "replay"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True, kw_only=True)
class IdempotencyDecision:
    decision: Decision
    order_id: str | None = None


def scope(email: str, key: str) -> str:
    """The (email, key) scope; the email is compared case-insensitively."""
    return f"{email.strip().casefold()}\n{key}"


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
