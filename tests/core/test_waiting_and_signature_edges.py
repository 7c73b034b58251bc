"""Edges of the waiting list and of the signature-only webhook check."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from checkout_kit import Kit, sign

from bitloot_core.chart import JobKind
from bitloot_core.service import waiting
from bitloot_core.values import AuditEntry, Job, JobState

AT = datetime(2026, 1, 1, tzinfo=UTC)


def entry(detail: str) -> AuditEntry:
    return AuditEntry(order_id="o1", at=AT, action=waiting.AUDIT_ACTION, detail=detail)


def test_an_audit_entry_of_another_form_describes_nothing() -> None:
    assert waiting._described(None) == {}
    assert waiting._described(entry("keys pending at the supplier")) == {}
    assert waiting._described(entry("[1, 2]")) == {}
    assert waiting._described(entry(json.dumps({"preorder": True}))) == {"preorder": True}


def test_only_an_aware_iso_time_is_a_release() -> None:
    assert waiting._release(None) is None
    assert waiting._release(20260101) is None
    assert waiting._release("next spring") is None
    assert waiting._release("2026-01-01T00:00:00") is None  # naive: no zone to trust
    assert waiting._release("2026-01-01T00:00:00+00:00") == AT


def test_a_waiting_job_whose_order_is_gone_is_not_listed(kit: Kit) -> None:
    now = kit.clock.now()
    with kit.store.transaction() as tx:
        tx.enqueue_job(
            Job(
                key="fulfill:gone",
                kind=JobKind.FULFILL,
                order_id="gone",
                state=JobState.PENDING,
                attempts=0,
                run_at=now + timedelta(minutes=5),
                created_at=now,
                last_error="keys_pending: not yet",
            )
        )
    assert kit.checkout.waiting_for_keys() == []


def test_webhook_signed_knows_only_the_shops_providers(kit: Kit) -> None:
    body = b'{"payment_id": 1}'
    assert kit.checkout.webhook_signed("nowpayments", body, sign(body)) is True
    assert kit.checkout.webhook_signed("nowpayments", body, sign(body, "wrong")) is False
    assert kit.checkout.webhook_signed("no-such-provider", body, sign(body)) is False


def test_a_signed_but_unusable_webhook_counts_as_signed(kit: Kit) -> None:
    """handle_webhook logs and refuses it; the check must not treat it as junk."""
    body = b"[1, 2, 3]"
    assert kit.checkout.webhook_signed("nowpayments", body, sign(body)) is True
