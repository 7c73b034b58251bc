"""Scenario 8: several triggers of fulfillment and email; the customer gets ONE email.

The email is one outbox row per (order, kind) with a stable Message-ID (deviation #13);
the payment "polling" of the seed is bitloot's reconciliation with the provider
(deviation #18).
"""

from __future__ import annotations

import threading
from decimal import Decimal

import httpx
from providers import PaymentSide, post_webhook
from steps import (
    StartServer,
    admin_order,
    advance,
    assert_completion_email,
    assert_seen,
    checkout,
    get_order,
    ipn_body,
    jobs_of,
    kinguin_orders_placed,
    mail_files,
    place_order,
    send_ipn,
    settle,
    sign,
    wait_for,
)

from support.servers import RunningServer, free_port


def test_ipn_and_payment_polling_both_report_it_one_email(
    start_server: StartServer, provider: PaymentSide
) -> None:
    # The shop's public URL is unreachable for a while: the provider's webhooks get lost
    # and the worker's reconciliation (the seed's payment polling) finds the payment paid.
    server = start_server({"BITLOOT_PUBLIC_URL": f"http://127.0.0.1:{free_port()}"})
    order = place_order(server, ("stardew-valley", 1), ("gift-card-10", 1))
    payment = provider.open(server, order)
    answered = provider.pay(server, payment["id"])
    assert answered == [None] * provider.webhooks_per_payment  # never arrived
    assert_seen(get_order(server, order), "waiting", "waiting")

    advance(server, 16 * 60)  # reconciliation looks at payments quiet for 15 minutes
    wait_for(server, order, "fulfilled")
    settle(server, order)
    assert len(mail_files(server)) == 1

    # Now the provider's retries get through: every webhook again, as it signed them.
    replayed = provider.sent(server, payment["id"])
    assert len(replayed) == provider.webhooks_per_payment
    for body, headers in replayed:
        answer = post_webhook(server, provider.name, body, headers)
        assert answer.status_code == 200
        assert answer.json()["outcome"] in {"ignored", "duplicate"}
    advance(server, 60)
    settle(server, order)

    assert_seen(get_order(server, order), "fulfilled", "finished")
    assert_completion_email(server, order)
    assert len(mail_files(server)) == 1
    assert kinguin_orders_placed(server, order.id) == 1
    reasons = [w["reason"] for w in admin_order(server, order.id)["webhooks"]]
    assert any(r.startswith("reconcile:") for r in reasons)


def test_repeated_triggers_send_no_second_email(server: RunningServer) -> None:
    order, payment = checkout(server, ("hollow-knight", 1))
    due = Decimal(payment["pay_amount"])

    # Several `finished` IPNs at once, each with its own amount (none a dedupe repeat).
    barrier = threading.Barrier(6)
    answers: list[int] = []

    def deliver(extra: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            paid = due + Decimal(extra) / 10**8
            body = ipn_body(server, payment["id"], "finished", actually_paid=paid)
            signature = sign(server, body)
            barrier.wait()
            answer = client.post(
                "/webhooks/nowpayments", content=body, headers={"x-nowpayments-sig": signature}
            )
            answers.append(answer.status_code)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [200] * 6

    wait_for(server, order, "fulfilled")
    settle(server, order)
    # More triggers: an admin retry (refused: the order is fulfilled), more IPNs, time.
    retry = server.http.post(
        f"/api/admin/orders/{order.id}/retry-fulfillment", headers=server.admin
    )
    assert retry.status_code == 409
    send_ipn(server, payment["id"], "finished")
    for _ in range(3):
        advance(server, 600)
    settle(server, order)

    message = assert_completion_email(server, order)
    assert message["Message-ID"].startswith(f"<order-{order.id}-completed@")
    assert len(mail_files(server)) == 1
    jobs = jobs_of(server, order.id)
    assert (jobs["completion_email"]["state"], jobs["completion_email"]["attempts"]) == ("done", 1)
    assert (jobs["fulfill"]["state"], jobs["fulfill"]["attempts"]) == ("done", 1)
    assert kinguin_orders_placed(server, order.id) == 1
    outcomes = [w["outcome"] for w in admin_order(server, order.id)["webhooks"]]
    assert outcomes.count("applied") == 1
