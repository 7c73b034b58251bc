"""Rate limits over real HTTP on both servers: 429 with ``Retry-After``, per client
address and per email; a correctly signed webhook is never limited; 0 turns a limit off;
``X-Forwarded-For`` counts only from ``BITLOOT_TRUSTED_PROXIES``."""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from flow import BUYER, assert_error, bearer, ipn_body, open_payment, order_body, post_ipn, sign

from bitloot_adapters.rate_limits import RateLimiter, client_address
from bitloot_adapters.settings import ConfigError, load_settings
from support.servers import RunningServer, running_server

KINDS = ["fastapi", "flask"]
LIMIT = "BITLOOT_RATE_LIMIT_{}_PER_MINUTE"


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@contextmanager
def limited(kind: str, tmp_path: Path, proxies: str = "", **limits: int) -> Iterator[RunningServer]:
    env = {LIMIT.format(name.upper()): str(value) for name, value in limits.items()}
    if proxies:
        env["BITLOOT_TRUSTED_PROXIES"] = proxies
    with running_server(kind, tmp_path / "data", env) as server:
        yield server


def post_order(
    s: RunningServer, email: str = BUYER, headers: Mapping[str, str] | None = None
) -> httpx.Response:
    return s.http.post("/api/orders", json=order_body(email=email), headers=dict(headers or {}))


def assert_limited(response: httpx.Response) -> int:
    assert_error(response, 429, "rate_limited")
    wait = int(response.headers["retry-after"])
    assert 1 <= wait <= 60
    return wait


def test_a_burst_of_sixty_orders_passes_by_default(kind: str, tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path / "s", env={}).rate_limit_orders_per_minute == 60
    with limited(kind, tmp_path, orders=60) as s:
        started = time.monotonic()
        for n in range(60):
            assert post_order(s, email=f"b{n}@example.com").status_code == 201, n
        # One order a second comes back: a slow run may have earned a few more.
        earned = math.ceil(time.monotonic() - started) + 1
        answers = [post_order(s, email=f"more{n}@example.com") for n in range(earned + 1)]
        assert_limited(next(a for a in answers if a.status_code != 201))


def test_orders_are_limited_per_address(kind: str, tmp_path: Path) -> None:
    with limited(kind, tmp_path, orders=3) as s:
        for n in range(3):
            assert post_order(s, email=f"b{n}@example.com").status_code == 201
        before = s.http.get("/api/admin/orders", headers=s.admin).json()
        # Another email does not help: the address is out of orders.
        wait = assert_limited(post_order(s, email="fresh@example.com"))
        assert wait == 20  # one order a minute / 3 comes back every 20 s
        # A spoofed X-Forwarded-For does not help either: no proxy is trusted.
        spoofed = post_order(s, email="x@example.com", headers={"x-forwarded-for": "203.0.113.9"})
        assert_limited(spoofed)
        assert s.http.get("/api/admin/orders", headers=s.admin).json() == before


def test_orders_are_limited_per_email_across_addresses(kind: str, tmp_path: Path) -> None:
    with limited(kind, tmp_path, orders=2, proxies="127.0.0.1") as s:

        def via(address: str, email: str) -> httpx.Response:
            return post_order(s, email=email, headers={"x-forwarded-for": f"{address}, 127.0.0.1"})

        assert via("203.0.113.1", "buyer@example.com").status_code == 201
        assert via("203.0.113.2", " Buyer@Example.com").status_code == 201
        assert_limited(via("203.0.113.3", "BUYER@example.com"))
        # The address behind the trusted proxy is what counts: a new one, a new email.
        assert via("203.0.113.4", "other@example.com").status_code == 201


def test_payments_opened_are_limited_per_address(kind: str, tmp_path: Path) -> None:
    with limited(kind, tmp_path, payments=2) as s:
        orders = [post_order(s, email=f"p{n}@example.com").json() for n in range(3)]
        open_payment(s, orders[0])
        open_payment(s, orders[1])
        response = s.http.post(
            f"/api/orders/{orders[2]['id']}/payment", headers=bearer(orders[2]["access_token"])
        )
        assert_limited(response)
        detail = s.http.get(
            f"/api/orders/{orders[2]['id']}", headers=bearer(orders[2]["access_token"])
        )
        assert detail.json()["payment"] is None  # no provider payment was opened


def test_rejected_webhooks_are_limited_but_a_signed_one_never_is(kind: str, tmp_path: Path) -> None:
    with limited(kind, tmp_path, webhook_rejects=3) as s:
        order = post_order(s).json()
        payment = open_payment(s, order)
        body = ipn_body(s, payment["id"], payment_status="confirming")
        junk = b'{"payment_id": 1, "payment_status": "finished"}'
        for _ in range(3):
            assert_error(post_ipn(s, junk, "ab" * 64), 401, "bad_signature")
        logged = len(
            s.http.get(f"/api/admin/orders/{order['id']}", headers=s.admin).json()["webhooks"]
        )
        assert_limited(post_ipn(s, junk, "ab" * 64))
        assert_limited(post_ipn(s, junk))  # no signature at all
        # The genuine IPN from the same address goes through, and is applied.
        assert post_ipn(s, body, sign(s, body)).status_code == 200
        assert (
            s.http.get(f"/api/orders/{order['id']}", headers=bearer(order["access_token"])).json()[
                "status"
            ]
            == "confirming"
        )
        webhooks = s.http.get(f"/api/admin/orders/{order['id']}", headers=s.admin).json()[
            "webhooks"
        ]
        assert len(webhooks) == logged + 1  # the refused junk wrote nothing


def test_zero_turns_a_limit_off(kind: str, tmp_path: Path) -> None:
    with limited(kind, tmp_path, orders=0, webhook_rejects=0) as s:
        for n in range(80):
            assert post_order(s, email=f"z{n % 2}@example.com").status_code == 201
        for _ in range(80):
            assert_error(post_ipn(s, b"{}", "ab" * 64), 401, "bad_signature")


# --- the parts ----------------------------------------------------------------------------


def test_a_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(6, what="things", clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(6)] == [None] * 6
    assert limiter.take("a") == 10
    assert limiter.wait("b") is None  # keys are separate
    now[0] += 10
    assert limiter.wait("a") is None
    assert limiter.take("a") is None
    assert limiter.take("a") is not None


def test_the_least_recently_used_bucket_is_forgotten_first() -> None:
    limiter = RateLimiter(1, what="things", max_keys=2, clock=lambda: 0.0)
    for key in ("a", "b", "c"):
        assert limiter.take(key) is None
    assert limiter.take("a") is None  # forgotten: a full bucket again
    assert limiter.take("c") is not None


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.7", "203.0.113.1", "198.51.100.7"),  # not a proxy: the header is ignored
        ("10.0.0.2", "203.0.113.1", "203.0.113.1"),
        ("10.0.0.2", "192.0.2.66, 203.0.113.1, 10.0.0.3", "203.0.113.1"),  # right-most untrusted
        ("10.0.0.2", "", "10.0.0.2"),
        ("10.0.0.2", "10.0.0.5", "10.0.0.5"),  # only proxies: the first hop
    ],
)
def test_the_client_address(peer: str, forwarded: str, expected: str) -> None:
    proxies = (ipaddress.ip_network("10.0.0.0/8"),)
    headers = {"x-forwarded-for": forwarded} if forwarded else {}
    assert client_address(peer, headers, proxies) == expected


def test_trusted_proxies_must_be_addresses(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BITLOOT_TRUSTED_PROXIES"):
        load_settings(data_dir=tmp_path, env={"BITLOOT_TRUSTED_PROXIES": "proxy.example"})
    settings = load_settings(
        data_dir=tmp_path, env={"BITLOOT_TRUSTED_PROXIES": "10.0.0.1, 2001:db8::/32"}
    )
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.1/32", "2001:db8::/32"]
