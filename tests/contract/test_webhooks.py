"""POST /webhooks/nowpayments: outcomes, signatures, malformed and unbound IPNs, the log."""

from __future__ import annotations

import hashlib
import json

import pytest
from flow import (
    STARDEW,
    admin_order,
    assert_error,
    create_order,
    get_order,
    ipn_body,
    metric_value,
    open_payment,
    post_ipn,
    send_ipn,
    sign,
    wait_for,
)

from support.servers import RunningServer


@pytest.fixture
def server(shared_server: RunningServer) -> RunningServer:
    """One shop per server kind for this module: each test works on orders of its own."""
    return shared_server


def webhook_rows(server: RunningServer) -> list[tuple[str, int, str]]:
    """Every logged webhook (body hash, signature valid, outcome), read from the store.

    Webhooks that name no order of ours (bad signature, malformed) are in no order's admin
    view, so the log itself is read here.
    """
    found = server.rows("SELECT body_sha256, signature_valid, outcome FROM webhooks ORDER BY seq")
    return [(r["body_sha256"], r["signature_valid"], r["outcome"]) for r in found]


def opened(server: RunningServer, product: str = STARDEW) -> tuple[dict, str]:
    order = create_order(server, product)
    return order, open_payment(server, order)["id"]


def outcome(response) -> str:
    assert response.status_code == 200, response.text
    result: str = response.json()["outcome"]
    return result


def test_applied_duplicate_and_ignored_are_200_and_logged(server: RunningServer) -> None:
    order, payment_id = opened(server)
    confirming = ipn_body(server, payment_id, payment_status="confirming", actually_paid=0.0001)
    assert outcome(post_ipn(server, confirming, sign(server, confirming))) == "applied"
    assert get_order(server, order)["status"] == "confirming"
    assert outcome(post_ipn(server, confirming, sign(server, confirming))) == "duplicate"
    # A `waiting` IPN after confirming changes nothing: ignored, never a downgrade.
    assert outcome(send_ipn(server, payment_id, payment_status="waiting")) == "ignored"
    # An unknown provider status is ignored and acknowledged.
    assert outcome(send_ipn(server, payment_id, payment_status="on_the_moon")) == "ignored"
    assert get_order(server, order)["status"] == "confirming"
    log = admin_order(server, order["id"])["webhooks"]
    assert [w["outcome"] for w in log] == ["applied", "duplicate", "ignored", "ignored"]
    assert [w["provider_status"] for w in log] == [
        "confirming",
        "confirming",
        "waiting",
        "on_the_moon",
    ]
    assert all(w["signature_valid"] for w in log)
    assert log[0]["body_sha256"] == hashlib.sha256(confirming).hexdigest()
    assert all(w["payment_id"] == payment_id for w in log)


def test_finished_ipn_pays_the_order_and_a_late_downgrade_is_ignored(
    server: RunningServer,
) -> None:
    order, payment_id = opened(server)
    pay_amount = json.loads(ipn_body(server, payment_id))["pay_amount"]
    response = send_ipn(server, payment_id, payment_status="finished", actually_paid=pay_amount)
    assert outcome(response) == "applied"
    wait_for(server, order, "fulfilled")
    assert outcome(send_ipn(server, payment_id, payment_status="failed")) == "ignored"
    assert get_order(server, order)["status"] == "fulfilled"


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "00" * 64,
        "zz" * 64,
        "abc",
        "é" * 128,
        "wrong-secret",
    ],
    ids=["missing", "empty", "zeros", "not-hex", "short", "non-ascii", "wrong-secret"],
)
def test_bad_signature_is_401_and_logged(shared_server: RunningServer, signature) -> None:
    server = shared_server
    order, payment_id = opened(server)
    body = ipn_body(server, payment_id, payment_status="finished", actually_paid=1)
    if signature == "wrong-secret":
        signature = sign(server, body, secret="not-the-ipn-secret")
    before = webhook_rows(server)
    metrics = server.http.get("/metrics").text
    rejected = metric_value(
        metrics, "bitloot_ipn_total", outcome="rejected", reason="bad_signature"
    )
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-nowpayments-sig"] = signature
    response = server.http.post(
        "/webhooks/nowpayments",
        content=body,
        headers={k: v.encode() if k == "x-nowpayments-sig" else v for k, v in headers.items()},
    )
    assert_error(response, 401, "bad_signature")
    assert get_order(server, order)["status"] == "waiting"
    after = webhook_rows(server)
    assert after[: len(before)] == before
    assert after[len(before) :] == [(hashlib.sha256(body).hexdigest(), 0, "rejected")]
    metrics = server.http.get("/metrics").text
    assert (
        metric_value(metrics, "bitloot_ipn_total", outcome="rejected", reason="bad_signature")
        == rejected + 1
    )


def test_signature_over_another_body_is_401(server: RunningServer) -> None:
    order, payment_id = opened(server)
    body = ipn_body(server, payment_id, payment_status="finished", actually_paid=1)
    other = ipn_body(server, payment_id, payment_status="finished", actually_paid=2)
    assert_error(post_ipn(server, body, sign(server, other)), 401, "bad_signature")
    assert get_order(server, order)["status"] == "waiting"


@pytest.mark.parametrize(
    "body",
    [
        b"garbage",
        b"",
        b"[]",
        b"[1, 2]",
        b'"text"',
        b"null",
        b"{}",
        b'{"payment_status": "finished"}',
        b'{"payment_id": 1}',
        b'{"payment_id": true, "payment_status": "finished"}',
        b'{"payment_id": 1, "payment_status": 5}',
        b'{"payment_id": 1, "payment_status": "finished", "price_amount": "lots"}',
        b'{"payment_id": 1, "payment_status": "finished", "updated_at": "yesterday"}',
        b"\xff\xfe\x00",
        b"{" * 5000,
    ],
)
def test_signed_garbage_is_400_malformed_and_logged(shared_server: RunningServer, body) -> None:
    server = shared_server
    before = webhook_rows(server)
    response = post_ipn(server, body, sign(server, body))
    assert_error(response, 400, "malformed_webhook")
    after = webhook_rows(server)
    assert after[len(before) :] == [(hashlib.sha256(body).hexdigest(), 1, "rejected")]


def test_ipn_for_an_unknown_payment_is_400_unbound(server: RunningServer) -> None:
    order, payment_id = opened(server)
    body = ipn_body(server, payment_id, payment_id=987654321, payment_status="finished")
    assert_error(post_ipn(server, body, sign(server, body)), 400, "unbound_webhook")
    assert get_order(server, order)["status"] == "waiting"


def test_genuine_ipn_with_another_orders_id_is_400_unbound(server: RunningServer) -> None:
    order_a, payment_a = opened(server)
    order_b, _ = opened(server)
    pay_amount = json.loads(ipn_body(server, payment_a))["pay_amount"]
    before = webhook_rows(server)
    response = send_ipn(
        server,
        payment_a,
        order_id=order_b["id"],
        payment_status="finished",
        actually_paid=pay_amount,
    )
    assert_error(response, 400, "unbound_webhook")
    # The same holds for a price that is not the order's.
    response = send_ipn(
        server, payment_a, price_amount=0.01, payment_status="finished", actually_paid=pay_amount
    )
    assert_error(response, 400, "unbound_webhook")
    assert get_order(server, order_a)["status"] == "waiting"
    assert get_order(server, order_b)["status"] == "waiting"
    new_rows = webhook_rows(server)[len(before) :]
    assert [(valid, result) for _, valid, result in new_rows] == [(1, "rejected")] * 2


def test_unbound_ipn_shows_in_the_admin_view_of_the_payments_order(
    server: RunningServer,
) -> None:
    order_a, payment_a = opened(server)
    order_b, _ = opened(server)
    response = send_ipn(server, payment_a, order_id=order_b["id"], payment_status="finished")
    assert_error(response, 400, "unbound_webhook")
    log = admin_order(server, order_a["id"])["webhooks"]
    assert [w["outcome"] for w in log] == ["rejected"]


def test_webhook_body_over_64_kib_is_refused(shared_server: RunningServer) -> None:
    server = shared_server
    body = b'{"pad": "' + b"x" * (70 * 1024) + b'"}'
    response = post_ipn(server, body, sign(server, body))
    assert_error(response, 413, "body_too_large")


def test_webhook_only_accepts_post(shared_server: RunningServer) -> None:
    assert_error(shared_server.http.get("/webhooks/nowpayments"), 405, "method_not_allowed")
