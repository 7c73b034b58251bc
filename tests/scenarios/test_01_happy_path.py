"""Scenario 1: the happy path, step by step as the seed's table has it, with each
payment provider.

Where bitloot differs from the table (docs/seed-deviations.md): the payment record is
made when the widget opens, so a new order has none (the HTTP contract's
``payment: null``); opening the widget moves the order to ``waiting`` (the chart's rule,
the seed's own status summary); the payment record stays ``waiting`` while the provider
says ``confirming`` (#2).
"""

from __future__ import annotations

from typing import Any

from providers import PaymentSide
from steps import (
    Placed,
    admin_order,
    assert_completion_email,
    assert_seen,
    create_order,
    get_order,
    jobs_of,
    kinguin_calls,
    kinguin_orders_placed,
    mail_files,
    reveal,
    run_jobs,
)

from support.servers import RunningServer


def test_happy_path_step_by_step(stepped: RunningServer, provider: PaymentSide) -> None:
    server = stepped
    order = order_created(server)
    payment = widget_opened(server, order, provider)
    crypto_sent(server, order, payment, provider)
    payment_confirmed(server, order, payment, provider)
    item_id = keys_fetched(server, order)
    email_sent(server, order)
    key_revealed(server, order, item_id)

    # Nothing more happens: no second Kinguin order, no second email.
    assert run_jobs(server) == []
    assert kinguin_orders_placed(server) == 1
    assert len(mail_files(server)) == 1
    audit = [a["action"] for a in admin_order(server, order.id)["audit"]]
    assert audit.index("order_created") < audit.index("payment_opened")
    assert audit.count("email_sent") == 1


def order_created(server: RunningServer) -> Placed:
    """Browse, add to cart, enter the email: step 1, `created`, no payment yet."""
    products = {p["id"]: p for p in server.http.get("/api/products").json()}
    assert products["stardew-valley"]["available"] is True
    assert products["stardew-valley"]["source"] == "kinguin"
    created = create_order(server, ("stardew-valley", 1))
    assert created.status_code == 201
    body = created.json()
    order = Placed(id=body["id"], token=body["access_token"], body=body)
    assert body["total"] == "11.99"
    assert body["currency"] == "usd"
    assert_seen(body, "created", None)
    assert_seen(get_order(server, order), "created", None)
    return order


def widget_opened(server: RunningServer, order: Placed, provider: PaymentSide) -> dict[str, Any]:
    """Step 2: the provider's invoice exists, the order waits for the money."""
    payment = provider.open(server, order)
    assert payment["status"] == "waiting"
    assert payment["pay_currency"] == "btc"
    assert payment["pay_address"]
    assert payment["actually_paid"] == "0"
    seen = get_order(server, order)
    assert_seen(seen, "waiting", "waiting", provider_status=provider.waiting_status)
    assert seen["payment"]["provider"] == provider.name
    assert provider.invoices_created(server) == 1
    return payment


def crypto_sent(
    server: RunningServer, order: Placed, payment: dict[str, Any], provider: PaymentSide
) -> None:
    """Step 3: the money is seen on chain, not yet confirmed."""
    provider.seen(server, payment["id"])
    seen = get_order(server, order)
    assert_seen(seen, "confirming", "waiting", provider_status=provider.seen_status)


def payment_confirmed(
    server: RunningServer, order: Placed, payment: dict[str, Any], provider: PaymentSide
) -> None:
    """Step 4: the provider confirms the payment (NOWPayments sends the rest of its IPNs,
    ending in `finished`; BTCPay settles the invoice); the fulfillment job is queued."""
    answered = provider.confirm(server, payment["id"])
    assert answered
    assert all(code == 200 for code in answered)
    seen = get_order(server, order)
    assert_seen(seen, "paid", "finished", provider_status=provider.paid_status)
    assert seen["payment"]["actually_paid"] == payment["pay_amount"]
    fulfill = jobs_of(server, order.id)["fulfill"]
    assert (fulfill["state"], fulfill["attempts"]) == ("pending", 0)
    assert kinguin_calls(server) == []  # queued, not yet run


def keys_fetched(server: RunningServer, order: Placed) -> str:
    """Step 5: the key bought from Kinguin and stored; `fulfilled`. Returns the item id.

    The worker pass that fulfills the order also sends the email it enqueued (step 6).
    """
    assert run_jobs(server) == [
        {"key": f"fulfill:{order.id}", "outcome": "done"},
        {"key": f"completion_email:{order.id}", "outcome": "done"},
    ]
    seen = get_order(server, order)
    assert_seen(seen, "fulfilled", "finished")
    assert all(item["delivered"] for item in seen["items"])
    assert kinguin_orders_placed(server, order.id) == 1
    item_id: str = seen["items"][0]["id"]
    assert _sealed_key(server, order, item_id) is not None
    return item_id


def email_sent(server: RunningServer, order: Placed) -> None:
    """Step 6: the completion email (sent in step 5's pass), with the "View keys" link."""
    assert run_jobs(server) == []
    assert_seen(get_order(server, order), "fulfilled", "finished")
    assert_completion_email(server, order)
    assert len(mail_files(server)) == 1


def key_revealed(server: RunningServer, order: Placed, item_id: str) -> None:
    """Reveal: a signed, time-limited URL; the key, stored encrypted, comes back."""
    revealed = reveal(server, order, item_id)
    assert revealed.status_code == 200
    key = server.http.get(revealed.json()["url"])
    assert key.status_code == 200
    assert key.headers["content-type"].startswith("text/plain")
    assert len(key.content) > 5
    assert key.content not in (_sealed_key(server, order, item_id) or b"")


def _sealed_key(server: RunningServer, order: Placed, item_id: str) -> bytes | None:
    """The item's key as the shop's vault keeps it (a file, or a row in its database)."""
    return server.sealed_key(f"orders/{order.id}/{item_id}/0")
