"""Secrets and keys never appear in logs, whatever happens on the way.

A whole purchase runs with the shipped structlog setup writing JSON lines to a buffer
(and stdlib logging, where httpx writes, captured at DEBUG): a forged webhook, a Kinguin
outage with retries, fulfillment, the completion email, key reveals; then a worker pass
of the ``bitloot`` command, which logs to stderr. Not one secret may be in any of it.
"""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from realkit import (
    ADMIN_TOKEN,
    IPN_SECRET,
    KINGUIN_API_KEY,
    NOWPAYMENTS_API_KEY,
    SIGNING_KEY,
    VAULT_KEY,
    b64,
    ipn_body,
    real_kit,
    sign,
)

from bitloot_adapters.logs import LogObserver, configure_logging


def secret_forms(raw: bytes) -> list[str]:
    return [b64(raw), raw.hex(), raw.decode("latin-1"), repr(raw)]


def test_no_secret_reaches_a_log(tmp_path, caplog: pytest.LogCaptureFixture, bitloot) -> None:
    caplog.set_level(logging.DEBUG)
    buffer = io.StringIO()
    configure_logging(stream=buffer, level=logging.DEBUG)
    secrets = [IPN_SECRET, ADMIN_TOKEN, KINGUIN_API_KEY, NOWPAYMENTS_API_KEY]
    secrets += secret_forms(VAULT_KEY) + secret_forms(SIGNING_KEY)

    # The kit's clock runs a minute behind, so the command (system clock) finds its jobs due.
    start = datetime.now(UTC) - timedelta(minutes=1)
    with real_kit(tmp_path / "data", observer=LogObserver(), start=start) as kit:
        created, payment = kit.buy([("counter-strike-source", 1), ("gift-card-10", 1)])
        secrets.append(created.access_token)

        forged = ipn_body(payment, "finished", payment.pay_amount)
        forged_headers = sign(forged, "attacker-secret")
        response = kit.http.post(kit.shop.webhook_url, content=forged, headers=forged_headers)
        assert response.status_code == 401
        secrets.append(forged_headers["x-nowpayments-sig"])

        kit.supplier.outage(2, "503")
        kit.pay(payment)
        secrets += [sent.signature for sent in kit.payments.events]
        assert kit.run_jobs() == ["retry"]
        kit.clock.advance(timedelta(seconds=1))
        assert kit.run_jobs() == ["retry"]
        kit.clock.advance(timedelta(seconds=2))
        kit.run_until_idle()
        assert len(kit.email_files()) == 1

        for item in created.order.items:
            reveal = kit.checkout.reveal(created.order.id, item.id, created.access_token)
            token = reveal.url.rsplit("/", 1)[1]
            key, _ = kit.vault.open(token, kit.clock.now())
            secrets += [token, key.decode()]

        # A second order, fulfilled by the command's worker through another outage.
        second, payment = kit.buy([("stardew-valley", 1)])
        secrets.append(second.access_token)
        kit.pay(payment)
        kit.supplier.outage(1, "503")
        worker = bitloot(kit)("worker", "--once")
        assert (worker.code, worker.out) == (0, "ran 1 jobs, expired 0 orders\n")
        secrets += [sent.signature for sent in kit.payments.events]

    logged = buffer.getvalue()
    events = [json.loads(line)["event"] for line in logged.splitlines()]
    for expected in ("order_created", "payment_opened", "ipn", "job_failed", "email_sent"):
        assert expected in events, expected
    assert "bad_signature" in logged
    command_events = [json.loads(line)["event"] for line in worker.err.splitlines()]
    assert "job_failed" in command_events

    for where, text in (
        ("structlog", logged),
        ("the command's stderr", worker.err),
        ("stdlib logging", caplog.text),
    ):
        leaked = [s for s in secrets if s and s in text]
        assert leaked == [], f"{len(leaked)} secrets in {where}"
