"""Scenario 9: an attacker posts a fake ``finished`` IPN to steal keys.

HMAC-SHA512 verification fails, nothing changes, nothing is fulfilled; the webhook is
logged with ``signature_valid`` false. The answer is a 401 (400 for a signed body that is
not an IPN), never a 500 (deviations #5, #6).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from steps import (
    admin_order,
    advance,
    assert_seen,
    checkout,
    get_order,
    ipn_body,
    kinguin_calls,
    mail_files,
    post_ipn,
    sign,
    webhook_log,
)

from support.servers import RunningServer


def test_fake_finished_ipn_gets_nothing(server: RunningServer) -> None:
    order, payment = checkout(server, ("hollow-knight", 1))
    genuine = ipn_body(server, payment["id"], "finished")
    forged = ipn_body(
        server, payment["id"], "finished", actually_paid=Decimal(payment["pay_amount"]) * 10
    )
    attempts = [
        (forged, sign(server, genuine)),  # a real signature, for another body
        (genuine, None),  # no signature header
        (genuine, ""),
        (genuine, sign(server, genuine, secret="guessed-secret")),
        (genuine, "00" * 64),
        (genuine, sign(server, genuine)[:-2]),  # wrong length
        (genuine, "zz" * 64),  # not hex
        (genuine, (sign(server, genuine)[:-1] + "é").encode()),  # not ASCII
    ]
    for body, signature in attempts:
        answer = post_ipn(server, body, signature)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "bad_signature"

    advance(server, 5)  # give the worker every chance
    assert_seen(get_order(server, order), "waiting", "waiting", provider_status="waiting")
    assert admin_order(server, order.id)["jobs"] == []
    assert kinguin_calls(server) == []
    assert mail_files(server) == []
    log = webhook_log(server)
    assert len(log) == len(attempts)
    assert {(row["signature_valid"], row["outcome"]) for row in log} == {(0, "rejected")}
    # The genuine IPN still works afterwards.
    assert post_ipn(server, genuine).json()["outcome"] == "applied"


@pytest.mark.parametrize(
    "body",
    [b'{"payment_status": "finished"', b"[]", b'{"payment_status":"finished"}', b""],
    ids=["truncated", "array", "no-payment-id", "empty"],
)
def test_signed_garbage_is_400(server: RunningServer, body: bytes) -> None:
    answer = post_ipn(server, body)
    assert answer.status_code == 400, answer.text
    assert "error" in answer.json()
    assert [(r["signature_valid"], r["outcome"]) for r in webhook_log(server)] == [(1, "rejected")]
