"""The shipped log setup blanks every field whose name looks like a secret.

The service passes only ids, statuses and error codes to the observer; the redaction in
``configure_logging`` is what still protects a log when a field named like a secret
reaches it anyway (a new call site, a bound context). These lines go through the shipped
pipeline end to end: ``configure_logging`` (the processors the servers, the worker and
the ``bitloot`` command install), the ``LogObserver`` the shop is wired with, a module
logger as the worker and the command use, and context bound with structlog's
contextvars; what is checked is the rendered JSON text.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from bitloot_adapters.logs import REDACTED, FanOut, LogObserver, configure_logging

SECRET_FIELDS = {
    "api_key": "np-live-api-key-0001",
    "x-api-key": "kinguin-api-key-0002",
    "ipn_secret": "ipn-secret-0003",
    "signature": "f00dfeedcafe0004",
    "x-nowpayments-sig": "beefbeefbeef0005",
    "Authorization": "Bearer admin-token-0006",
    "access_token": "order-access-token-0007",
    "password": "smtp-password-0008",
    "cookie": "session=cookie-0009",
    "serial": "AAAAA-BBBBB-00010",
    "vault_key": "vault-key-0011",
}


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging(stream=buffer, level=logging.DEBUG)
    try:
        yield buffer
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()


def rendered(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_secret_shaped_fields_are_blanked_in_the_rendered_lines(log_text: io.StringIO) -> None:
    # The observer as bootstrap wires it (a fan-out with the log observer in it).
    FanOut(LogObserver()).observe("job_failed", order_id="ord-1", **SECRET_FIELDS)
    structlog.get_logger("bitloot.worker").info("worker_pass", worker="w1", **SECRET_FIELDS)
    structlog.contextvars.bind_contextvars(authorization="Bearer bound-token-0012")
    LogObserver().observe("order_created", order_id="ord-2")

    text = log_text.getvalue()
    leaked = [v for v in [*SECRET_FIELDS.values(), "Bearer bound-token-0012"] if v in text]
    assert leaked == [], f"{len(leaked)} secret values in the log: {leaked}"

    first, second, third = rendered(log_text)
    for line in (first, second):
        for name in SECRET_FIELDS:
            assert line[name] == REDACTED, name
    # Only the secret-shaped fields go: the line still says what happened, and to what.
    assert (first["event"], first["order_id"], first["level"]) == ("job_failed", "ord-1", "warning")
    assert (second["event"], second["worker"]) == ("worker_pass", "w1")
    assert (third["event"], third["order_id"], third["authorization"]) == (
        "order_created",
        "ord-2",
        REDACTED,
    )
