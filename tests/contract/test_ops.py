"""Operations: metrics, configuration from the environment, secrets kept out of
logs and out of the start banner."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import structlog
from flow import (
    GIFT_CARD,
    STARDEW,
    admin_order,
    advance,
    assert_error,
    bearer,
    buy,
    create_order,
    get_order,
    ipn_body,
    key_path,
    metric_value,
    open_payment,
    pay,
    post_ipn,
    reveal,
    send_ipn,
    sign,
    wait_for,
)

from bitloot_adapters.logs import configure_logging
from bitloot_adapters.serve import parse_args, prepare_shop
from bitloot_adapters.settings import ConfigError, load_settings
from support.servers import RunningServer, running_server

KINDS = ["fastapi", "flask"]
VAULT_KEY = base64.b64encode(bytes(range(32))).decode()
SIGNING_KEY = base64.b64encode(bytes(range(100, 132))).decode()
ADMIN_TOKEN = "env-admin-token-0123456789abcdef"
IPN_SECRET = "env-ipn-secret-fedcba9876543210"


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put structlog's configuration back after a test that reconfigures it."""
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)


# --- metrics --------------------------------------------------------------------------------


def test_metrics_are_prometheus_text_with_the_shops_series(server: RunningServer) -> None:
    order = buy(server, GIFT_CARD)
    post_ipn(server, b"{}", "bad")  # one rejected IPN
    wait_for_email(server, order["id"])
    response = server.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE bitloot_ipn_total counter" in text
    assert metric_value(text, "bitloot_ipn_total", outcome="applied") >= 4
    assert metric_value(text, "bitloot_ipn_total", outcome="ignored") >= 1
    assert metric_value(text, "bitloot_ipn_total", outcome="rejected") == 1
    assert metric_value(text, "bitloot_fulfillment_attempts_total") == 1
    assert metric_value(text, "bitloot_emails_sent_total", kind="completed") == 1
    assert metric_value(text, "bitloot_orders", status="fulfilled") == 1
    assert "# TYPE bitloot_request_seconds histogram" in text
    count = metric_value(
        text, "bitloot_request_seconds_count", method="POST", route="/api/orders", status="201"
    )
    assert count == 1
    order_reads = metric_value(
        text, "bitloot_request_seconds_count", method="GET", route="/api/orders/{order_id}"
    )
    assert order_reads >= 1
    # Routes are labelled by template: no order id, token or key in a label.
    assert order["id"] not in text
    assert order["access_token"] not in text


def test_orders_gauge_follows_the_store(server: RunningServer) -> None:
    create_order(server, GIFT_CARD)
    create_order(server, GIFT_CARD)
    text = server.http.get("/metrics").text
    assert metric_value(text, "bitloot_orders", status="created") == 2
    advance(server, 61 * 60)
    text = server.http.get("/metrics").text
    assert metric_value(text, "bitloot_orders", status="created") == 0
    assert metric_value(text, "bitloot_orders", status="expired") == 2


def wait_for_email(server: RunningServer, order_id: str) -> None:
    for _ in range(300):
        view = admin_order(server, order_id)
        if any(a["action"] == "email_sent" for a in view["audit"]):
            return
        advance(server, 0)
    pytest.fail("the completion email was never sent")


# --- configuration --------------------------------------------------------------------------


def test_admin_token_from_the_environment_wins(kind: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(kind, data) as first:
        generated = first.shop.settings.admin_token
        assert first.shop.settings.admin_token_generated
        assert first.http.get("/api/admin/orders", headers=first.admin).status_code == 200
    with running_server(kind, data, {"BITLOOT_ADMIN_TOKEN": ADMIN_TOKEN}) as second:
        assert second.shop.settings.admin_token == ADMIN_TOKEN
        assert not second.shop.settings.admin_token_generated
        ok = second.http.get("/api/admin/orders", headers=bearer(ADMIN_TOKEN))
        assert ok.status_code == 200
        old = second.http.get("/api/admin/orders", headers=bearer(generated))
        assert_error(old, 401, "unauthorized")
    # The environment's token is not written to the data dir.
    assert ADMIN_TOKEN not in (data / "secrets.json").read_text()


def test_generated_secrets_are_kept_across_restarts(kind: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(kind, data) as first:
        first.shop.sandbox.supplier.key_delay = 0  # type: ignore[union-attr]
        order = buy(first, STARDEW)
        path = key_path(reveal(first, order).json()["url"])
        key = first.http.get(path).text
        settings = first.shop.settings
    with running_server(kind, data) as second:
        again = second.shop.settings
        assert again.generated == frozenset()
        assert again.admin_token == settings.admin_token
        assert again.ipn_secret == settings.ipn_secret
        # The vault and signing keys were kept: the old order, its token and its key URL
        # still work.
        assert get_order(second, order)["status"] == "fulfilled"
        assert second.http.get(path).text == key
        assert second.http.get("/api/admin/orders", headers=second.admin).status_code == 200


def test_ipn_secret_from_the_environment_signs_the_webhooks(kind: str, tmp_path: Path) -> None:
    with running_server(
        kind, tmp_path / "data", {"BITLOOT_NOWPAYMENTS_IPN_SECRET": IPN_SECRET}
    ) as s:
        assert s.shop.settings.ipn_secret == IPN_SECRET
        order = create_order(s, GIFT_CARD)
        payment = open_payment(s, order)
        body = ipn_body(s, payment["id"], payment_status="confirming")
        assert post_ipn(s, body, sign(s, body, IPN_SECRET)).status_code == 200
        assert get_order(s, order)["status"] == "confirming"


def test_start_banner_never_prints_an_environment_admin_token(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    restore_logging: None,
) -> None:
    for name in list(os.environ):
        if name.startswith("BITLOOT_"):
            monkeypatch.delenv(name)
    args = parse_args(
        ["--data-dir", str(tmp_path / "a"), "--no-worker", "--port", "0"],
        default_port=8000,
        default_data_dir=".x",
    )
    shop = prepare_shop(args)
    try:
        generated = shop.settings.admin_token
        secrets = [
            shop.settings.ipn_secret,
            base64.b64encode(shop.settings.vault_key).decode(),
            base64.b64encode(shop.settings.signing_key).decode(),
        ]
    finally:
        shop.close()
    printed = capsys.readouterr()
    # A generated token is printed once, so the operator can use it.
    assert generated in printed.out
    assert not any(secret in printed.out + printed.err for secret in secrets)

    monkeypatch.setenv("BITLOOT_ADMIN_TOKEN", ADMIN_TOKEN)
    args.data_dir = tmp_path / "b"
    shop = prepare_shop(args)
    try:
        assert shop.settings.admin_token == ADMIN_TOKEN
        assert not shop.settings.admin_token_generated
    finally:
        shop.close()
    printed = capsys.readouterr()
    assert ADMIN_TOKEN not in printed.out + printed.err
    assert "admin token" not in printed.out
    assert "bitloot sandbox" in printed.out


def test_underpay_tolerance_takes_effect(kind: str, tmp_path: Path) -> None:
    with running_server(
        kind, tmp_path / "data", {"BITLOOT_UNDERPAY_TOLERANCE_PERCENT": "2.5"}
    ) as s:
        assert s.shop.settings.underpay_tolerance_percent == Decimal("2.5")
        within = create_order(s, GIFT_CARD)
        payment = open_payment(s, within)
        amount = Decimal(payment["pay_amount"]) * Decimal("0.98")
        pay(s, payment["id"], str(amount.quantize(Decimal("1e-8"))))
        assert wait_for(s, within, "fulfilled")["payment"]["status"] == "finished"

        beyond = create_order(s, GIFT_CARD)
        payment = open_payment(s, beyond)
        amount = Decimal(payment["pay_amount"]) * Decimal("0.97")
        pay(s, payment["id"], str(amount.quantize(Decimal("1e-8"))))
        assert get_order(s, beyond)["status"] == "underpaid"


def test_without_tolerance_any_shortfall_is_underpaid(server: RunningServer) -> None:
    order = create_order(server, GIFT_CARD)
    payment = open_payment(server, order)
    amount = Decimal(payment["pay_amount"]) - Decimal("0.00000001")
    pay(server, payment["id"], str(amount))
    assert get_order(server, order)["status"] == "underpaid"


def test_order_ttl_takes_effect(kind: str, tmp_path: Path) -> None:
    with running_server(kind, tmp_path / "data", {"BITLOOT_ORDER_TTL_MINUTES": "5"}) as s:
        order = create_order(s, GIFT_CARD)
        advance(s, 4 * 60)
        assert get_order(s, order)["status"] == "created"
        advance(s, 61)
        assert get_order(s, order)["status"] == "expired"


def test_an_open_payment_keeps_its_order_past_the_ttl(kind: str, tmp_path: Path) -> None:
    """The order lives until the later of creation + TTL and the payment's valid_until."""
    with running_server(kind, tmp_path / "data", {"BITLOOT_ORDER_TTL_MINUTES": "5"}) as s:
        order = create_order(s, GIFT_CARD)
        payment = open_payment(s, order)
        valid_until = datetime.fromisoformat(payment["valid_until"])
        now = datetime.fromisoformat(advance(s, 0)["now"])
        assert valid_until - now > timedelta(minutes=5), "the sandbox's window outlasts the TTL"
        advance(s, 6 * 60)
        assert get_order(s, order)["status"] == "waiting"
        advance(s, int((valid_until - now).total_seconds()) - 6 * 60 + 61)
        expired = get_order(s, order)
        assert expired["status"] == "expired"
        assert expired["payment"]["status"] == "failed"


def test_key_url_ttl_takes_effect(kind: str, tmp_path: Path) -> None:
    with running_server(kind, tmp_path / "data", {"BITLOOT_KEY_URL_TTL_SECONDS": "60"}) as s:
        s.shop.sandbox.supplier.key_delay = 0  # type: ignore[union-attr]
        order = buy(s, STARDEW)
        revealed = reveal(s, order).json()
        now = datetime.fromisoformat(advance(s, 0)["now"])
        assert timedelta(seconds=50) < datetime.fromisoformat(revealed["expires_at"]) - now
        assert datetime.fromisoformat(revealed["expires_at"]) - now <= timedelta(seconds=60)
        path = key_path(revealed["url"])
        assert s.http.get(path).status_code == 200
        advance(s, 61)
        assert_error(s.http.get(path), 403, "url_expired")


def test_public_url_is_used_in_key_links(kind: str, tmp_path: Path) -> None:
    env = {"BITLOOT_PUBLIC_URL": "https://keys.example.com/"}
    with running_server(kind, tmp_path / "data", env) as s:
        order = create_order(s, GIFT_CARD)
        payment = open_payment(s, order)
        # The sandbox sends its IPNs to the public URL, which is not this test's server:
        # play NOWPayments directly.
        pay_amount = json.loads(ipn_body(s, payment["id"]))["pay_amount"]
        response = send_ipn(s, payment["id"], payment_status="finished", actually_paid=pay_amount)
        assert response.status_code == 200
        done = wait_for(s, order, "fulfilled")
        url = reveal(s, done | {"access_token": order["access_token"]}).json()["url"]
        assert url.startswith("https://keys.example.com/keys/")
        assert s.http.get(key_path(url)).status_code == 200


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BITLOOT_ORDER_TTL_MINUTES", "abc"),
        ("BITLOOT_ORDER_TTL_MINUTES", "0"),
        ("BITLOOT_ORDER_TTL_MINUTES", "1.5"),
        ("BITLOOT_KEY_URL_TTL_SECONDS", "-5"),
        ("BITLOOT_KEY_URL_TTL_SECONDS", "3 hours"),
        ("BITLOOT_KEY_URL_TTL_SECONDS", str(8 * 24 * 3600)),
        ("BITLOOT_UNDERPAY_TOLERANCE_PERCENT", "lots"),
        ("BITLOOT_UNDERPAY_TOLERANCE_PERCENT", "100"),
        ("BITLOOT_UNDERPAY_TOLERANCE_PERCENT", "-1"),
        ("BITLOOT_UNDERPAY_TOLERANCE_PERCENT", "NaN"),
        ("BITLOOT_VAULT_KEY", "not base64!"),
        ("BITLOOT_VAULT_KEY", base64.b64encode(b"short").decode()),
        ("BITLOOT_SIGNING_KEY", "%%%"),
    ],
)
def test_malformed_setting_is_a_clear_startup_error(
    kind: str, tmp_path: Path, name: str, value: str
) -> None:
    with (
        pytest.raises(ConfigError, match=name),
        running_server(kind, tmp_path / "d", {name: value}),
    ):
        pytest.fail("the server started")  # pragma: no cover


def test_malformed_setting_stops_the_example_server_with_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    monkeypatch.setenv("BITLOOT_ORDER_TTL_MINUTES", "soon")
    args = parse_args(
        ["--data-dir", str(tmp_path / "d"), "--no-worker"], default_port=8000, default_data_dir="x"
    )
    with pytest.raises(SystemExit) as exited:
        prepare_shop(args)
    assert "BITLOOT_ORDER_TTL_MINUTES" in str(exited.value.code)


def test_live_mode_needs_its_secrets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(
            data_dir=tmp_path, env={"BITLOOT_MODE": "live", "BITLOOT_NOWPAYMENTS_API_KEY": "live"}
        )
    assert "BITLOOT_NOWPAYMENTS_IPN_SECRET" in str(raised.value)
    assert "BITLOOT_KINGUIN_API_KEY" in str(raised.value)
    # Without it NOWPayments would be told to send IPNs to loopback.
    assert "BITLOOT_PUBLIC_URL" in str(raised.value)


# --- secrets never in logs ------------------------------------------------------------------


def test_no_secret_appears_in_the_logs_of_a_full_purchase(
    kind: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    restore_logging: None,
) -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, level=logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    env = {
        "BITLOOT_ADMIN_TOKEN": ADMIN_TOKEN,
        "BITLOOT_NOWPAYMENTS_IPN_SECRET": IPN_SECRET,
        "BITLOOT_VAULT_KEY": VAULT_KEY,
        "BITLOOT_SIGNING_KEY": SIGNING_KEY,
    }
    with running_server(kind, tmp_path / "data", env) as s:
        s.shop.sandbox.supplier.key_delay = 0  # type: ignore[union-attr]
        order = create_order(s, STARDEW)
        token = order["access_token"]
        payment = open_payment(s, order)
        pay(s, payment["id"])
        # The page's way: the token in the query string (EventSource cannot send headers).
        with s.http.stream(
            "GET", f"/api/orders/{order['id']}/events", params={"token": token}
        ) as events:
            for _ in events.iter_lines():
                pass
        done = wait_for(s, order, "fulfilled")
        url = s.http.post(
            f"/api/orders/{order['id']}/items/{done['items'][0]['id']}/reveal",
            params={"token": token},
        ).json()["url"]
        key_text = s.http.get(key_path(url)).text
        assert key_text
        s.http.get("/order/" + order["id"], params={"token": token})
        s.http.get("/api/admin/orders", headers=s.admin)
        s.http.get("/api/admin/orders", headers=bearer("wrong-" + ADMIN_TOKEN))
        body = ipn_body(s, payment["id"], payment_status="finished")
        post_ipn(s, body, sign(s, body, "wrong-secret"))
        wait_for_email(s, order["id"])
    structured = stream.getvalue()
    assert "order_created" in structured  # the capture works
    # The test's own HTTP client logs its requests: those lines are not the shop's.
    server_records = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )
    secrets = {
        "IPN secret": IPN_SECRET,
        "admin token": ADMIN_TOKEN,
        "access token": token,
        "key": key_text,
        "key URL": key_path(url).removeprefix("/keys/"),
        "vault key": VAULT_KEY,
        "signing key": SIGNING_KEY,
    }
    for what, secret in secrets.items():
        assert secret not in structured, f"the {what} is in the structured log"
        assert secret not in server_records, f"the {what} is in the server log"
