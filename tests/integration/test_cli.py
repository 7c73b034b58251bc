"""The ``bitloot`` command on a real shop: readable text, parseable JSON, clear errors.

The commands run in live mode against the kit's sandboxes and data dir, reading the
system clock; the kit's clock starts two hours in the past so an order it opened is
abandoned by the time the command sweeps.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from realkit import RealKit, real_kit, run_cli

from bitloot_adapters import cli
from bitloot_adapters.bootstrap import DEMO_PRODUCTS
from bitloot_core.chart import Flag, OrderStatus, PaymentStatus
from bitloot_core.values import JobState


@pytest.fixture
def shop(tmp_path: Path):
    """Four orders: fulfilled, paid with a dead job, paid and pending, abandoned."""
    with real_kit(tmp_path / "data", start=datetime.now(UTC) - timedelta(hours=2)) as kit:
        fulfilled, payment = kit.buy([("counter-strike-source", 1)])
        kit.pay(payment)
        kit.run_until_idle()
        # Kinguin has no Hollow Knight key meanwhile: the order is held for the admin.
        hollow = next(p.supplier_ref for p in DEMO_PRODUCTS if p.id == "hollow-knight")
        assert hollow is not None
        kit.supplier.set_stock(hollow, 0)
        flagged, payment = kit.buy([("hollow-knight", 1)])
        kit.pay(payment)
        assert kit.run_jobs() == ["dead"]
        kit.supplier.set_stock(hollow, 100)
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


def logged(err: str) -> list[dict[str, object]]:
    """The JSON log lines on stderr (the command's own messages are plain text)."""
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def plain(err: str) -> str:
    return "".join(line + "\n" for line in err.splitlines() if not line.startswith("{"))


def test_orders_by_status_and_flag(shop, bitloot) -> None:
    kit, orders = shop
    run = bitloot(kit)
    paid = run("orders", "--status", "paid")
    assert paid.code == 0
    (start,) = logged(paid.err)
    assert (start["event"], start["mode"], start["command"]) == ("bitloot_start", "live", "orders")
    assert start["data_dir"] == str(kit.data_dir)
    assert plain(paid.err) == ""
    header = paid.out.splitlines()[0]
    assert header.split() == ["ORDER", "STATUS", "TOTAL", "CREATED", "FLAGS"]
    found = rows(paid.out)
    # Newest first.
    assert [r[0] for r in found] == [orders["paid"].order.id, orders["flagged"].order.id]
    assert [r[1] for r in found] == ["paid", "paid"]
    assert found[1][2:4] == ["14.99", "USD"]
    assert found[1][-1] == "product_unavailable"
    assert found[0][2:4] == ["23.98", "USD"]
    assert len(found[0]) == 6, "no flags on the pending order"

    flagged = run("orders", "--flag", "product_unavailable")
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
    assert flagged["flags"] == ["product_unavailable"]
    assert (flagged["total"], flagged["currency"]) == ("14.99", "usd")
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
    assert "product_unavailable" in dead[0]["last_error"]
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
    assert [line["event"] for line in logged(swept.err)] == ["bitloot_start", "ipn", "swept"]
    assert kit.statuses(abandoned) == (OrderStatus.EXPIRED, PaymentStatus.FAILED)
    assert kit.statuses(orders["paid"]) == (OrderStatus.PAID, PaymentStatus.FINISHED)
    assert run("sweep").out == "expired 0 orders\n"


def test_retry_refuses_what_it_cannot_retry(shop, bitloot) -> None:
    kit, orders = shop
    run = bitloot(kit)
    unknown = run("retry", "no-such-order")
    assert (unknown.code, unknown.out) == (1, "")
    assert plain(unknown.err) == "bitloot: no order 'no-such-order' (not_found)\n"

    done = run("retry", orders["fulfilled"].order.id)
    assert (done.code, done.out) == (1, "")
    assert plain(done.err) == (
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


def test_json_is_accepted_after_the_command_too(shop, bitloot) -> None:
    kit, _orders = shop
    run = bitloot(kit)
    before, after = run("--json", "orders"), run("orders", "--json")
    assert (before.code, after.code) == (0, 0)
    assert json.loads(after.out) == json.loads(before.out) != []
    jobs = run("jobs", "--json", "--state", "dead")
    assert [row["state"] for row in json.loads(jobs.out)] == ["dead"]


def test_bitloot_data_dir_sets_the_default(shop, bitloot, monkeypatch) -> None:
    kit, orders = shop
    bitloot(kit)  # the kit's live environment
    monkeypatch.setenv("BITLOOT_DATA_DIR", str(kit.data_dir))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.run(["orders", "--status", "paid"], out=out)
    assert (code, plain(err.getvalue())) == (0, "")
    assert {r[0] for r in rows(out.getvalue())} == {
        orders["flagged"].order.id,
        orders["paid"].order.id,
    }


@pytest.mark.parametrize(
    "command", [("orders",), ("jobs",), ("sweep",), ("retry", "x"), ("resend", "x")]
)
def test_commands_on_a_missing_data_dir_are_refused_and_create_nothing(
    kit: RealKit, bitloot, tmp_path: Path, command: tuple[str, ...]
) -> None:
    bitloot(kit)
    missing = tmp_path / "typo"
    result = run_cli(missing, *command)
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith(f"bitloot: no shop data dir at {missing}")
    assert not missing.exists()


def test_a_command_in_the_other_mode_is_refused(kit: RealKit, monkeypatch) -> None:
    """The kit's data dir is live; without the live variables a command is in sandbox mode."""
    for name in [n for n in os.environ if n.startswith("BITLOOT_")]:
        monkeypatch.delenv(name)
    before = sorted(p.name for p in kit.data_dir.iterdir())
    result = run_cli(kit.data_dir, "orders")
    assert (result.code, result.out) == (2, "")
    assert "belongs to a live-mode shop, and this process is in sandbox mode" in result.err
    assert sorted(p.name for p in kit.data_dir.iterdir()) == before
