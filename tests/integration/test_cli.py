"""The ``bitloot`` command on a real shop: readable text, parseable JSON, clear errors.

The commands run in live mode against the kit's sandboxes and data dir, reading the
system clock; the kit's clock starts two hours in the past so an order it opened is
abandoned by the time the command sweeps.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from realkit import RealKit, real_kit

from bitloot_core.chart import Flag, OrderStatus, PaymentStatus
from bitloot_core.values import JobState


@pytest.fixture
def shop(tmp_path: Path):
    """Four orders: fulfilled, paid with a dead job, paid and pending, abandoned."""
    with real_kit(tmp_path / "data", start=datetime.now(UTC) - timedelta(hours=2)) as kit:
        fulfilled, payment = kit.buy([("counter-strike-source", 1)])
        kit.pay(payment)
        kit.run_until_idle()
        flagged, payment = kit.buy([("founders-pack", 1)])
        kit.pay(payment)
        assert kit.run_jobs() == ["dead"]
        paid, payment = kit.buy([("stardew-valley", 2)])
        kit.pay(payment)
        abandoned, _ = kit.buy([("hollow-knight", 1)])
        yield (
            kit,
            {
                "fulfilled": fulfilled,
                "flagged": flagged,
                "paid": paid,
                "abandoned": abandoned,
            },
        )


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()[1:]]


def test_orders_by_status_and_flag(shop, bitloot) -> None:
    kit, orders = shop
    run = bitloot(kit)
    paid = run("orders", "--status", "paid")
    assert (paid.code, paid.err) == (0, "")
    header = paid.out.splitlines()[0]
    assert header.split() == ["ORDER", "STATUS", "TOTAL", "CREATED", "FLAGS"]
    found = rows(paid.out)
    assert [r[0] for r in found] == [orders["flagged"].order.id, orders["paid"].order.id]
    assert [r[1] for r in found] == ["paid", "paid"]
    assert found[0][2:4] == ["15.00", "USD"]
    assert found[0][-1] == "fulfillment_failed"
    assert found[1][2:4] == ["23.98", "USD"]
    assert len(found[1]) == 6, "no flags on the pending order"

    flagged = run("orders", "--flag", "fulfillment_failed")
    assert [r[0] for r in rows(flagged.out)] == [orders["flagged"].order.id]
    assert run("orders", "--status", "underpaid").out == "no orders\n"


def test_orders_as_json(shop, bitloot) -> None:
    kit, orders = shop
    listed = bitloot(kit)("--json", "orders")
    assert listed.code == 0
    parsed = json.loads(listed.out)
    by_id = {row["id"]: row for row in parsed}
    assert {name: by_id[o.order.id]["status"] for name, o in orders.items()} == {
        "fulfilled": "fulfilled",
        "flagged": "paid",
        "paid": "paid",
        "abandoned": "waiting",
    }
    flagged = by_id[orders["flagged"].order.id]
    assert flagged["flags"] == ["fulfillment_failed"]
    assert (flagged["total"], flagged["currency"]) == ("15.00", "usd")
    assert datetime.fromisoformat(flagged["created_at"]) == orders["flagged"].order.created_at


def test_jobs_listing(shop, bitloot) -> None:
    kit, orders = shop
    run = bitloot(kit)
    listed = run("jobs")
    assert listed.code == 0
    states = {r[0]: (r[1], r[2]) for r in rows(listed.out)}
    fulfilled, flagged, paid = (orders[n].order.id for n in ("fulfilled", "flagged", "paid"))
    assert states == {
        f"fulfill:{fulfilled}": ("done", "1"),
        f"completion_email:{fulfilled}": ("done", "1"),
        f"fulfill:{flagged}": ("dead", "1"),
        f"fulfill:{paid}": ("pending", "0"),
    }
    dead = json.loads(run("--json", "jobs", "--state", "dead").out)
    assert [(j["key"], j["state"], j["attempts"]) for j in dead] == [
        (f"fulfill:{flagged}", "dead", 1)
    ]
    assert "pool" in dead[0]["last_error"]
    assert run("jobs", "--state", "running").out == "no jobs\n"


def test_sweep_expires_the_abandoned_order(shop, bitloot) -> None:
    kit, orders = shop
    run = bitloot(kit)
    abandoned = orders["abandoned"]
    swept = run("sweep")
    assert swept.code == 0
    assert swept.out == f"expired 1 orders\n  {abandoned.order.id}\n"
    # Logs go to stderr as JSON lines, apart from the output.
    # The provider was asked first (its answer is logged as an IPN), then the order expired.
    assert [json.loads(line)["event"] for line in swept.err.splitlines()] == ["ipn", "swept"]
    assert kit.statuses(abandoned) == (OrderStatus.EXPIRED, PaymentStatus.FAILED)
    assert kit.statuses(orders["paid"]) == (OrderStatus.PAID, PaymentStatus.FINISHED)
    assert run("sweep").out == "expired 0 orders\n"


def test_retry_refuses_what_it_cannot_retry(shop, bitloot) -> None:
    kit, orders = shop
    run = bitloot(kit)
    unknown = run("retry", "no-such-order")
    assert (unknown.code, unknown.out) == (1, "")
    assert unknown.err == "bitloot: no order 'no-such-order' (not_found)\n"

    done = run("retry", orders["fulfilled"].order.id)
    assert (done.code, done.out) == (1, "")
    assert done.err == (
        "bitloot: only a paid order can be retried, this one is fulfilled (invalid_state)\n"
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ORDER_TTL_MINUTES", "soon", "BITLOOT_ORDER_TTL_MINUTES must be an integer, got 'soon'"),
        ("KEY_URL_TTL_SECONDS", "0", "BITLOOT_KEY_URL_TTL_SECONDS must be between 1 and"),
        ("VAULT_KEY", "not base64!", "BITLOOT_VAULT_KEY must be base64"),
        ("SIGNING_KEY", "c2hvcnQ=", "BITLOOT_SIGNING_KEY must decode to 32 bytes"),
        ("UNDERPAY_TOLERANCE_PERCENT", "lots", "BITLOOT_UNDERPAY_TOLERANCE_PERCENT must be"),
        ("KINGUIN_API_KEY", "", "missing required settings: BITLOOT_KINGUIN_API_KEY"),
    ],
)
def test_a_bad_setting_exits_2_naming_it(
    kit: RealKit, bitloot, name: str, value: str, message: str
) -> None:
    result = bitloot(kit, **{name: value})("orders")
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith(f"bitloot: {message}")
    assert result.err.count("\n") == 1


def test_resend_re_enqueues_a_failed_completion_email(shop, bitloot) -> None:
    kit, orders = shop
    run = bitloot(kit)
    order_id = orders["fulfilled"].order.id
    refused = run("resend", order_id)
    assert (refused.code, refused.out) == (1, "")
    assert "completion email failed" in refused.err
    # The email job dies (the mail server refused it): the order is flagged.
    with kit.store.transaction() as tx:
        job = tx.get_job(f"completion_email:{order_id}")
        order = tx.get_order(order_id)
        assert job is not None
        assert order is not None
        tx.update_job(replace(job, state=JobState.DEAD))
        tx.update_order(replace(order, flags=frozenset({Flag.EMAIL_FAILED})))
    flagged = run("orders", "--flag", "email_failed")
    assert [r[0] for r in rows(flagged.out)] == [order_id]
    resent = run("resend", order_id)
    assert (resent.code, resent.out) == (0, f"order {order_id}: completion email re-enqueued\n")
    job = kit.job(f"completion_email:{order_id}")
    assert (job.state, job.attempts) == (JobState.PENDING, 0)
    assert kit.checkout.admin_order(order_id).order.flags == frozenset()
