"""What the customer page is served: the payment's wallet URI and coin, compressed files."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest
from flow import bearer, create_order, open_payment

from support.servers import PAGE_DIR, RunningServer, running_server


def test_a_btc_payment_carries_its_bip21_uri_and_coin(shared_server: RunningServer) -> None:
    payment = open_payment(shared_server, create_order(shared_server))
    assert payment["pay_currency"] == "btc"
    assert payment["uri"] == f"bitcoin:{payment['pay_address']}?amount={payment['pay_amount']}"
    assert payment["coin"] == {"ticker": "BTC", "name": "Bitcoin", "network": "Bitcoin"}


@pytest.fixture(params=["eth", "usdttrc20"])
def other_coin(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    env = {"BITLOOT_PAY_CURRENCY": request.param}
    with running_server("fastapi", tmp_path / "data", env) as running:
        yield running


def test_other_coins_get_their_own_uri_or_none(other_coin: RunningServer) -> None:
    order = create_order(other_coin)
    payment = open_payment(other_coin, order)
    if payment["pay_currency"] == "eth":
        assert payment["uri"].startswith(f"ethereum:{payment['pay_address']}@1?value=")
        assert payment["coin"]["network"] == "Ethereum"
    else:
        # Tron has no standard payment URI: none is made up.
        assert payment["uri"] is None
        assert payment["coin"] == {
            "ticker": "USDT",
            "name": "Tether USD",
            "network": "Tron (TRC-20)",
        }
        qr = other_coin.http.get(
            f"/api/orders/{order['id']}/qr.svg", headers=bearer(order["access_token"])
        )
        assert qr.status_code == 200
        assert qr.headers["content-type"].startswith("image/svg+xml")


@pytest.mark.parametrize("name", ["order.js", "app.css", "index.html"])
def test_static_files_are_gzipped_when_the_browser_accepts_it(
    shared_server: RunningServer, name: str
) -> None:
    original = (PAGE_DIR / name).read_bytes()
    path = "/" if name == "index.html" else f"/static/{name}"
    with shared_server.http.stream(
        "GET", path, headers={"accept-encoding": "gzip, deflate, br"}
    ) as answer:
        raw = b"".join(answer.iter_raw())
    assert answer.status_code == 200
    assert answer.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in answer.headers["vary"].lower()
    assert gzip.decompress(raw) == original
    assert len(raw) < len(original) / 2


@pytest.mark.parametrize("accept", ["identity", "", "gzip;q=0, deflate", "br", "*;q=0"])
def test_static_files_are_plain_when_gzip_is_not_accepted(
    shared_server: RunningServer, accept: str
) -> None:
    with shared_server.http.stream(
        "GET", "/static/app.css", headers={"accept-encoding": accept}
    ) as answer:
        raw = b"".join(answer.iter_raw())
    assert answer.status_code == 200
    assert "content-encoding" not in answer.headers
    assert raw == (PAGE_DIR / "app.css").read_bytes()


@pytest.mark.parametrize("accept", ["*", "GZIP;q=0.5", "deflate, gzip;q=1.0", "x;q=bad, gzip"])
def test_gzip_is_recognised_in_any_accepted_spelling(
    shared_server: RunningServer, accept: str
) -> None:
    answer = shared_server.http.get("/static/app.css", headers={"accept-encoding": accept})
    assert answer.headers.get("content-encoding") == "gzip"
