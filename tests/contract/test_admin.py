"""The admin API: lists and filters, the order view, retry, resolve, key pools, dead jobs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from flow import (
    GIFT_CARD,
    HOLLOW_KNIGHT,
    SOLD_OUT,
    STARDEW,
    admin_order,
    admin_orders,
    advance,
    assert_error,
    buy,
    create_order,
    get_order,
    key_path,
    open_payment,
    pay,
    reveal,
    snapshot,
    wait_for,
)

from bitloot_adapters.bootstrap import DEMO_PRODUCTS
from bitloot_core.errors import MailerError
from support.servers import RunningServer


def dead_jobs(server: RunningServer) -> list[dict]:
    response = server.http.get("/api/admin/jobs", params={"state": "dead"}, headers=server.admin)
    assert response.status_code == 200, response.text
    jobs: list[dict] = response.json()
    assert all(job["state"] == "dead" for job in jobs)
    return jobs


def paid(server: RunningServer, product: str, amount: str | None = None) -> dict:
    order = create_order(server, product)
    payment = open_payment(server, order)
    pay(server, payment["id"], amount)
    return order | {"payment_id": payment["id"]}


def wait_dead(server: RunningServer, order: dict, *, step: float = 30, rounds: int = 30) -> dict:
    """Move the clock until the order's fulfillment job is dead."""
    for _ in range(rounds):
        if any(j["key"] == f"fulfill:{order['id']}" for j in dead_jobs(server)):
            return wait_for(
                server, order, "paid", until=lambda o: "fulfillment_failed" in o["flags"]
            )
        advance(server, step)
    pytest.fail("the fulfillment job never died")


def job_state(view: dict, key: str) -> str | None:
    return next((j["state"] for j in view["jobs"] if j["key"] == key), None)


def wait_admin(server: RunningServer, order_id: str, until, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while not until(view := admin_order(server, order_id)):
        assert time.monotonic() < deadline, view
        time.sleep(0.03)
    return view


def retry(server: RunningServer, order_id: str):
    return server.http.post(f"/api/admin/orders/{order_id}/retry-fulfillment", headers=server.admin)


def resolve(server: RunningServer, order_id: str, body: dict):
    return server.http.post(
        f"/api/admin/orders/{order_id}/resolve", json=body, headers=server.admin
    )


def add_keys(server: RunningServer, product: str, keys: list):
    return server.http.post(
        f"/api/admin/products/{product}/keys", json={"keys": keys}, headers=server.admin
    )


# --- lists ----------------------------------------------------------------------------------


@contextmanager
def out_of_stock_at_kinguin(server: RunningServer, product: str) -> Iterator[None]:
    """Kinguin holds no key of ``product`` meanwhile: its purchase is refused at once."""
    assert server.shop.sandbox is not None
    kinguin = server.shop.sandbox.supplier
    ref = next(p.supplier_ref for p in DEMO_PRODUCTS if p.id == product)
    assert ref is not None
    kinguin.set_stock(ref, 0)
    try:
        yield
    finally:
        kinguin.set_stock(ref, 100)


def flagged(server: RunningServer) -> dict:
    """A paid order held with ``product_unavailable`` (Kinguin was out of stock)."""
    with out_of_stock_at_kinguin(server, HOLLOW_KNIGHT):
        order = paid(server, HOLLOW_KNIGHT)
        wait_for(server, order, "paid", until=lambda o: "product_unavailable" in o["flags"])
    return order


def test_order_list_filters_by_status_and_flag(server: RunningServer) -> None:
    fulfilled = buy(server, GIFT_CARD)
    created = create_order(server, GIFT_CARD)
    failed = flagged(server)
    everything = admin_orders(server)
    # Newest first, each with its payment (none yet for the order just created).
    assert [o["id"] for o in everything] == [failed["id"], created["id"], fulfilled["id"]]
    assert [o["payment"] is None for o in everything] == [False, True, False]
    assert everything[2]["payment"]["status"] == "finished"
    assert everything[2]["payment"] == get_order(server, fulfilled)["payment"]
    assert all("access_token" not in o for o in everything)
    assert [o["id"] for o in admin_orders(server, status="fulfilled")] == [fulfilled["id"]]
    assert [o["id"] for o in admin_orders(server, status="created")] == [created["id"]]
    assert admin_orders(server, status="expired") == []
    assert [o["id"] for o in admin_orders(server, flag="product_unavailable")] == [failed["id"]]
    assert admin_orders(server, flag="paid_late") == []
    both = admin_orders(server, status="paid", flag="product_unavailable")
    assert [o["id"] for o in both] == [failed["id"]]
    # An empty filter is no filter.
    assert len(admin_orders(server, status="", flag="")) == 3


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"status": "bogus"}, "invalid_status"),
        ({"status": "FULFILLED"}, "invalid_status"),
        ({"flag": "bogus"}, "invalid_flag"),
        ({"status": "paid", "flag": "nope"}, "invalid_flag"),
    ],
)
def test_order_list_refuses_unknown_filter_values(shared_server, query, code) -> None:
    response = shared_server.http.get(
        "/api/admin/orders", params=query, headers=shared_server.admin
    )
    assert_error(response, 400, code)


def test_job_list_refuses_an_unknown_state(shared_server: RunningServer) -> None:
    response = shared_server.http.get(
        "/api/admin/jobs", params={"state": "zombie"}, headers=shared_server.admin
    )
    assert_error(response, 400, "invalid_state")


# --- the order view -------------------------------------------------------------------------


def test_order_view_has_audit_trail_webhook_log_jobs_and_reveals(server: RunningServer) -> None:
    order = buy(server, GIFT_CARD)
    reveal(server, order)
    email_job = f"completion_email:{order['id']}"
    view = wait_admin(server, order["id"], lambda v: job_state(v, email_job) == "done")
    assert view["id"] == order["id"]
    assert view["status"] == "fulfilled"
    assert view["payment"]["id"] == order["payment_id"]
    assert view["payment"]["status"] == "finished"
    assert "access_token" not in view
    actions = [a["action"] for a in view["audit"]]
    for action in ("order_created", "payment_opened", "email_sent", "key_revealed"):
        assert action in actions, actions
    assert all({"at", "action", "detail", "actor"} <= set(a) for a in view["audit"])
    assert [w["provider_status"] for w in view["webhooks"]] == [
        "waiting",
        "confirming",
        "confirmed",
        "sending",
        "finished",
    ]
    assert {w["outcome"] for w in view["webhooks"]} <= {"applied", "ignored"}
    jobs = {j["key"]: j for j in view["jobs"]}
    assert jobs[f"fulfill:{order['id']}"]["state"] == "done"
    assert jobs[f"completion_email:{order['id']}"]["state"] == "done"
    assert len(view["reveals"]) == 1
    assert view["reveals"][0]["item_id"] == order["items"][0]["id"]
    # No key material in the admin view.
    key = server.http.get(key_path(reveal(server, order).json()["url"])).text
    assert key not in json.dumps(view)


def test_order_view_of_an_unknown_order_is_404(shared_server: RunningServer) -> None:
    response = shared_server.http.get("/api/admin/orders/nope", headers=shared_server.admin)
    assert_error(response, 404, "not_found")


# --- retry after fulfillment_failed ---------------------------------------------------------


def test_retry_fulfillment_after_a_kinguin_outage(server: RunningServer) -> None:
    # Each attempt's first Kinguin call fails: five failures use up the five attempts.
    outage = server.http.post("/sandbox/kinguin/outage", json={"failures": 5})
    assert outage.status_code == 200
    order = paid(server, STARDEW)
    failed = wait_dead(server, order)
    assert failed["status"] == "paid"
    assert failed["items"][0]["delivered"] is False
    [job] = [j for j in dead_jobs(server) if j["order_id"] == order["id"]]
    assert job["attempts"] == 5
    assert job["last_error"]
    response = retry(server, order["id"])
    assert response.status_code == 200
    assert "fulfillment_failed" not in response.json()["flags"]
    done = wait_for(server, order, "fulfilled")
    assert done["flags"] == []
    assert dead_jobs(server) == []
    actions = [a["action"] for a in admin_order(server, order["id"])["audit"]]
    assert "admin_retry_fulfillment" in actions


# --- resend after email_failed -------------------------------------------------------------


def resend(server: RunningServer, order_id: str):
    return server.http.post(f"/api/admin/orders/{order_id}/resend-email", headers=server.admin)


def test_resend_email_after_the_completion_email_died(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    mail_dir = server.shop.settings.data_dir / "mail"

    def refuse(message: object) -> None:
        raise MailerError("the mail server refused the message")

    monkeypatch.setattr(server.shop.checkout._mailer, "send", refuse)
    order = buy(server, GIFT_CARD)
    failed = wait_for(server, order, "fulfilled", until=lambda o: "email_failed" in o["flags"])
    assert failed["items"][0]["delivered"] is True
    [job] = [j for j in dead_jobs(server) if j["order_id"] == order["id"]]
    assert job["kind"] == "completion_email"
    assert not list(mail_dir.glob("*.eml"))
    monkeypatch.undo()  # the mail server takes messages again

    response = resend(server, order["id"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == order["id"]
    assert body["status"] == "fulfilled"
    assert "email_failed" not in body["flags"]
    assert set(body) == set(failed)  # the order JSON, as retry-fulfillment answers
    key = f"completion_email:{order['id']}"
    view = wait_admin(server, order["id"], lambda v: job_state(v, key) == "done")
    assert "admin_resend_email" in [a["action"] for a in view["audit"]]
    assert len(list(mail_dir.glob("*.eml"))) == 1
    assert dead_jobs(server) == []
    assert get_order(server, order)["flags"] == []


def test_resend_email_is_refused_unless_the_email_died(server: RunningServer) -> None:
    order = buy(server, GIFT_CARD)
    wait_admin(
        server, order["id"], lambda v: job_state(v, f"completion_email:{order['id']}") == "done"
    )
    waiting = create_order(server, GIFT_CARD)
    before = snapshot(server)
    assert_error(resend(server, order["id"]), 409, "invalid_state")
    assert_error(resend(server, waiting["id"]), 409, "invalid_state")
    assert_error(resend(server, "no-such-order"), 404, "not_found")
    assert snapshot(server) == before


def test_outage_of_zero_clears_pending_failures(server: RunningServer) -> None:
    assert server.http.post("/sandbox/kinguin/outage", json={"failures": 50}).status_code == 200
    order = paid(server, STARDEW)
    wait_dead(server, order)
    assert server.http.post("/sandbox/kinguin/outage", json={"failures": 0}).status_code == 200
    assert retry(server, order["id"]).status_code == 200
    key = f"fulfill:{order['id']}"

    def tried(view: dict) -> bool:
        job = next(j for j in view["jobs"] if j["key"] == key)
        return job["state"] == "done" or (job["state"] == "pending" and job["attempts"] >= 1)

    wait_admin(server, order["id"], tried)
    assert job_state(admin_order(server, order["id"]), key) == "done"
    assert wait_for(server, order)["status"] == "fulfilled"


def test_retry_is_refused_for_an_order_that_is_not_stuck(server: RunningServer) -> None:
    created = create_order(server, GIFT_CARD)
    assert_error(retry(server, created["id"]), 409, "invalid_state")
    done = buy(server, GIFT_CARD)
    assert_error(retry(server, done["id"]), 409, "invalid_state")
    assert_error(retry(server, "no-such-order"), 404, "not_found")
    assert get_order(server, done)["status"] == "fulfilled"


# --- the key pool ---------------------------------------------------------------------------


def test_sold_out_is_refused_until_keys_are_added(server: RunningServer) -> None:
    before = len(admin_orders(server))
    refused = server.http.post(
        "/api/orders",
        json={"email": "buyer@example.com", "items": [{"product_id": SOLD_OUT, "quantity": 1}]},
    )
    assert_error(refused, 409, "sold_out")
    assert len(admin_orders(server)) == before  # nothing was created

    response = add_keys(server, SOLD_OUT, ["FOUNDER-1", "FOUNDER-2"])
    assert response.status_code == 201
    assert response.json() == {"added": 2, "duplicates": 0, "distinct": 2}
    products = {p["id"]: p for p in server.http.get("/api/products").json()}
    assert products[SOLD_OUT]["available"] is True
    done = buy(server, SOLD_OUT)
    assert done["flags"] == []
    key = server.http.get(key_path(reveal(server, done).json()["url"])).text
    assert key == "FOUNDER-1"


def test_a_flagged_order_is_retried_by_the_admin(server: RunningServer) -> None:
    order = flagged(server)
    [job] = [j for j in dead_jobs(server) if j["order_id"] == order["id"]]
    assert job["key"] == f"fulfill:{order['id']}"
    assert "product_unavailable" in job["last_error"]
    assert order["id"] in [o["id"] for o in admin_orders(server, flag="product_unavailable")]

    assert retry(server, order["id"]).status_code == 200
    done = wait_for(server, order, "fulfilled")
    assert done["flags"] == []
    assert [j for j in dead_jobs(server) if j["order_id"] == order["id"]] == []


@pytest.mark.parametrize(
    ("product", "body", "status", "code"),
    [
        (STARDEW, {"keys": ["K-1"]}, 400, "not_custom"),
        ("no-such-product", {"keys": ["K-1"]}, 404, "not_found"),
        (GIFT_CARD, {"keys": []}, 400, None),
        (GIFT_CARD, {"keys": [""]}, 400, None),
        (GIFT_CARD, {"keys": ["   "]}, 400, None),
        (GIFT_CARD, {"keys": "K-1"}, 400, "invalid_keys"),
        (GIFT_CARD, {"keys": [1, 2]}, 400, "invalid_keys"),
        (GIFT_CARD, {"keys": None}, 400, "invalid_keys"),
        (GIFT_CARD, {}, 400, "invalid_keys"),
        (GIFT_CARD, {"keys": ["x" * 5000]}, 400, None),
    ],
)
def test_adding_pool_keys_refuses_bad_input(
    shared_server: RunningServer, product, body, status, code
) -> None:
    server = shared_server
    before = server.http.get("/api/products").json()
    response = server.http.post(
        f"/api/admin/products/{product}/keys", json=body, headers=server.admin
    )
    assert_error(response, status, code)
    assert server.http.get("/api/products").json() == before


# --- resolve --------------------------------------------------------------------------------


def short_amount(server: RunningServer, order: dict, fraction: str = "0.5") -> str:
    payment = open_payment(server, order)
    return str((Decimal(payment["pay_amount"]) * Decimal(fraction)).quantize(Decimal("1e-8")))


def underpaid(server: RunningServer, product: str = GIFT_CARD) -> dict:
    order = create_order(server, product)
    amount = short_amount(server, order)
    payment_id = get_order(server, order)["payment"]["id"]
    statuses = [i["status"] for i in pay(server, payment_id, amount)]
    assert statuses == ["waiting", "confirming", "partially_paid"]
    short = wait_for(server, order, "underpaid")
    assert short["payment"]["status"] == "underpaid"
    assert Decimal(short["payment"]["actually_paid"]) == Decimal(amount)
    return order


def test_resolve_an_underpaid_order_by_fulfilling(server: RunningServer) -> None:
    order = underpaid(server)
    assert [o["id"] for o in admin_orders(server, status="underpaid")] == [order["id"]]
    response = resolve(server, order["id"], {"action": "fulfill", "note": "paid the rest by hand"})
    assert response.status_code == 200
    assert response.json()["status"] == "paid"
    assert "marked" in response.json()["flags"]
    done = wait_for(server, order, "fulfilled")
    assert "marked" in done["flags"]
    audit = admin_order(server, order["id"])["audit"]
    decisions = [a for a in audit if a["detail"] == "paid the rest by hand"]
    assert [(a["action"], a["actor"]) for a in decisions] == [("admin_fulfill", "admin")]


def test_resolve_an_underpaid_order_by_refunding(server: RunningServer) -> None:
    order = underpaid(server)
    response = resolve(server, order["id"], {"action": "refund", "note": "sent back"})
    assert response.status_code == 200
    refunded = get_order(server, order)
    assert refunded["status"] == "failed"
    assert {"marked", "refunded"} <= set(refunded["flags"])
    # Decided once: a second decision is refused.
    assert_error(resolve(server, order["id"], {"action": "fulfill", "note": ""}), 409)


def test_resolve_refuses_orders_that_are_not_held_and_bad_bodies(server: RunningServer) -> None:
    created = create_order(server, GIFT_CARD)
    assert_error(
        resolve(server, created["id"], {"action": "fulfill", "note": ""}), 409, "invalid_state"
    )
    assert_error(resolve(server, "nope", {"action": "fulfill", "note": ""}), 404, "not_found")
    held = underpaid(server)
    before = snapshot(server)
    for body in (
        {"action": "ship", "note": ""},
        {"action": None},
        {"note": "no action"},
        {"action": "fulfill", "note": 5},
        {"action": "fulfill", "note": "x" * 2001},
        {"action": ["fulfill"]},
    ):
        assert_error(resolve(server, held["id"], body), 400)
    assert snapshot(server) == before
    assert get_order(server, held)["status"] == "underpaid"


def test_resolve_a_paid_late_order(server: RunningServer) -> None:
    order = create_order(server, GIFT_CARD)
    payment = open_payment(server, order)
    advance(server, 61 * 60)
    assert get_order(server, order)["status"] == "expired"
    pay(server, payment["id"])
    late = wait_for(server, order, "expired", until=lambda o: "paid_late" in o["flags"])
    assert [o["id"] for o in admin_orders(server, flag="paid_late")] == [order["id"]]
    response = resolve(server, order["id"], {"action": "fulfill", "note": "honour it"})
    assert response.status_code == 200
    done = wait_for(server, late | order, "fulfilled")
    assert "paid_late" not in done["flags"]


# --- admin auth -----------------------------------------------------------------------------

ADMIN_ROUTES = [
    ("GET", "/api/admin/orders", None),
    ("GET", "/api/admin/orders?status=paid", None),
    ("GET", "/api/admin/orders/{id}", None),
    ("POST", "/api/admin/orders/{id}/retry-fulfillment", None),
    ("POST", "/api/admin/orders/{id}/resend-email", None),
    ("POST", "/api/admin/orders/{id}/resolve", {"action": "refund", "note": "x"}),
    ("POST", f"/api/admin/products/{GIFT_CARD}/keys", {"keys": ["STOLEN-1"]}),
    ("GET", "/api/admin/jobs?state=dead", None),
    ("GET", "/api/admin/jobs", None),
]


def test_every_admin_route_needs_the_admin_token(shared_server: RunningServer) -> None:
    server = shared_server
    order = underpaid(server)
    right = server.shop.settings.admin_token
    wrong_auth = [
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": f"Bearer {right[:-1]}"},
        {"authorization": f"Bearer {right}x"},
        {"authorization": "Bearer"},
        {"authorization": right},
        {"authorization": f"Basic {right}"},
        {"authorization": "Bearer é".encode()},
    ]
    before = snapshot(server)
    products = server.http.get("/api/products").json()
    for method, template, body in ADMIN_ROUTES:
        path = template.replace("{id}", order["id"])
        for headers in wrong_auth:
            response = server.http.request(method, path, json=body, headers=headers)
            assert_error(response, 401, "unauthorized")
        # The admin token is not accepted in the query string.
        response = server.http.request(method, path, json=body, params={"token": right})
        assert_error(response, 401, "unauthorized")
        # The customer's access token is not an admin token.
        customer = {"authorization": f"Bearer {order['access_token']}"}
        assert_error(server.http.request(method, path, json=body, headers=customer), 401)
    assert snapshot(server) == before
    assert server.http.get("/api/products").json() == products
    assert get_order(server, order)["status"] == "underpaid"


def dead_at_kinguin(server: RunningServer) -> dict:
    """A paid order whose fulfillment died: Kinguin failed each of its five attempts."""
    assert server.http.post("/sandbox/kinguin/outage", json={"failures": 5}).status_code == 200
    order = paid(server, STARDEW)
    wait_dead(server, order)
    assert server.http.post("/sandbox/kinguin/outage", json={"failures": 0}).status_code == 200
    return order


# --- the console's lists: email, dates, pages; dead letters by key; health -----------------


def test_order_list_filters_by_email_and_date_and_pages_newest_first(server: RunningServer) -> None:
    made = [create_order(server, GIFT_CARD, email=f"buyer{n}@example.com") for n in range(5)]
    made.append(create_order(server, GIFT_CARD, email="Other@Example.org"))
    newest_first = [o["id"] for o in reversed(made)]
    assert [o["id"] for o in admin_orders(server)] == newest_first
    assert [o["id"] for o in admin_orders(server, email="OTHER@example")] == [made[-1]["id"]]
    assert len(admin_orders(server, email="buyer")) == 5
    today = made[0]["created_at"][:10]
    assert len(admin_orders(server, since=today, until=today)) == 6
    assert admin_orders(server, since="2999-01-01") == []
    assert admin_orders(server, until="2000-01-01") == []
    first = server.http.get("/api/admin/orders", params={"limit": 4}, headers=server.admin)
    assert first.headers["x-total-count"] == "6"
    second = admin_orders(server, limit="4", offset="4")
    assert [o["id"] for o in first.json() + second] == newest_first


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"since": "yesterday"}, "invalid_since"),
        ({"until": "2026-13-01"}, "invalid_until"),
        ({"limit": "-1"}, "invalid_limit"),
        ({"limit": "201"}, "invalid_limit"),
        ({"offset": "x"}, "invalid_offset"),
        ({"email": "x" * 321}, "invalid_email"),
    ],
)
def test_order_list_refuses_bad_email_date_and_page_values(shared_server, query, code) -> None:
    response = shared_server.http.get(
        "/api/admin/orders", params=query, headers=shared_server.admin
    )
    assert_error(response, 400, code)


def test_a_dead_job_is_retried_by_its_key_and_audited(server: RunningServer) -> None:
    order = dead_at_kinguin(server)
    key = f"fulfill:{order['id']}"
    response = server.http.post(f"/api/admin/jobs/{key}/retry", headers=server.admin)
    assert response.status_code == 200, response.text
    assert "fulfillment_failed" not in response.json()["flags"]
    wait_for(server, order, "fulfilled")
    view = admin_order(server, order["id"])
    assert "admin_retry_fulfillment" in [a["action"] for a in view["audit"]]
    assert [p["id"] for p in view["payments"]] == [order["payment_id"]]
    assert key not in [j["key"] for j in dead_jobs(server)]
    again = server.http.post(f"/api/admin/jobs/{key}/retry", headers=server.admin)
    assert_error(again, 404, "not_found")


def test_health_counts_orders_and_jobs_and_names_the_last_error(server: RunningServer) -> None:
    buy(server, GIFT_CARD)
    create_order(server, GIFT_CARD)
    failed = dead_at_kinguin(server)
    response = server.http.get("/api/admin/health", headers=server.admin)
    assert response.status_code == 200
    health = response.json()
    assert health["orders"]["fulfilled"] == 1
    assert health["orders"]["created"] == 1
    assert health["orders"]["paid"] == 1
    assert health["jobs"]["dead"] == 1
    assert health["last_errors"]["fulfill"]["order_id"] == failed["id"]
    assert health["last_errors"]["fulfill"]["error"]
    unauthorised = server.http.get("/api/admin/health")
    assert_error(unauthorised, 401, "unauthorized")


# --- the catalogue --------------------------------------------------------------------------


def products_of(server: RunningServer) -> dict[str, dict]:
    response = server.http.get("/api/admin/products", headers=server.admin)
    assert response.status_code == 200, response.text
    return {p["id"]: p for p in response.json()}


def test_a_product_is_created_changed_and_sold(server: RunningServer) -> None:
    body = {"name": "Door Prize", "price": "4.50", "currency": "usd", "source": "custom"}
    created = server.http.put("/api/admin/products/door-prize", json=body, headers=server.admin)
    assert created.status_code == 200, created.text
    assert created.json() | {} == {
        "id": "door-prize",
        "name": "Door Prize",
        "price": "4.50",
        "currency": "usd",
        "source": "custom",
        "supplier_ref": None,
        "available": False,
        "stock": 0,
    }
    added = add_keys(server, "door-prize", ["DP-1", "DP-2", "DP-2", "DP-1 "])
    assert added.json() == {"added": 2, "duplicates": 2, "distinct": 2}
    again = add_keys(server, "door-prize", ["DP-2", "DP-3"])
    assert again.json() == {"added": 1, "duplicates": 1, "distinct": 2}
    assert products_of(server)["door-prize"]["stock"] == 3
    changed = server.http.put(
        "/api/admin/products/door-prize", json=body | {"price": "5.00"}, headers=server.admin
    )
    assert changed.json()["price"] == "5.00"
    shop = {p["id"]: p for p in server.http.get("/api/products").json()}
    assert shop["door-prize"]["price"] == "5.00"
    assert shop["door-prize"]["available"] is True
    order = buy(server, "door-prize")
    assert order["status"] == "fulfilled"


def test_an_import_is_checked_whole_before_anything_is_written(server: RunningServer) -> None:
    before = products_of(server)
    good = {"id": "imp-1", "name": "One", "price": "1.00", "source": "custom"}
    kinguin = {"id": "imp-2", "name": "Two", "price": "2.00", "source": "kinguin"}
    bad = server.http.post(
        "/api/admin/products/import", json={"products": [good, kinguin]}, headers=server.admin
    )
    assert_error(bad, 400, "invalid_product")
    assert "products[1]" in bad.json()["error"]["message"]
    assert products_of(server) == before
    kinguin["supplier_ref"] = "kg-2"
    ok = server.http.post(
        "/api/admin/products/import", json={"products": [good, kinguin]}, headers=server.admin
    )
    assert ok.status_code == 201, ok.text
    assert ok.json() == {"saved": 2}
    after = products_of(server)
    assert after["imp-2"]["supplier_ref"] == "kg-2"
    assert after["imp-2"]["stock"] is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "", "price": "1.00", "source": "custom"}, "invalid_product"),
        ({"name": "X", "price": "0", "source": "custom"}, "invalid_product"),
        ({"name": "X", "price": "1.001", "source": "custom"}, "invalid_product"),
        ({"name": "X", "price": "1.00", "source": "steam"}, "invalid_product"),
        ({"name": "X", "price": "1.00", "source": "custom", "currency": "US$"}, "invalid_product"),
        ({"name": "X", "price": "abc", "source": "custom"}, "invalid_amount"),
    ],
)
def test_a_malformed_product_is_refused(shared_server, body, code) -> None:
    response = shared_server.http.put(
        "/api/admin/products/x-1", json=body, headers=shared_server.admin
    )
    assert_error(response, 400, code)
    assert "x-1" not in products_of(shared_server)


def test_an_import_refuses_repeated_ids_and_bad_lists(shared_server: RunningServer) -> None:
    row = {"id": "dup", "name": "Dup", "price": "1.00", "source": "custom"}
    for products in ([row, row], [], "nope"):
        response = shared_server.http.post(
            "/api/admin/products/import", json={"products": products}, headers=shared_server.admin
        )
        assert_error(response, 400, "invalid_products")
    assert "dup" not in products_of(shared_server)
