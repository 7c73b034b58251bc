"""Event streams are capped per order (and in total), and /metrics can require a token;
over real HTTP on both servers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from flow import assert_error, bearer, create_order

from bitloot_adapters.rate_limits import MAX_STREAMS_PER_ORDER, StreamSlots
from support.servers import RunningServer, running_server

KINDS = ["fastapi", "flask"]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


# Line iterators of the open streams: dropping one would close its stream.
_READING: list[Iterator[str]] = []


def _open(s: RunningServer, stack: ExitStack, order: dict[str, object]) -> httpx.Response:
    response = stack.enter_context(
        s.http.stream(
            "GET", f"/api/orders/{order['id']}/events", headers=bearer(str(order["access_token"]))
        )
    )
    if response.status_code == 200:
        lines = response.iter_lines()
        next(lines)  # the stream is running
        _READING.append(lines)
    else:
        response.read()
    return response


def test_event_streams_per_order_are_capped(kind: str, tmp_path: Path) -> None:
    with running_server(kind, tmp_path / "data") as s:
        order, other = create_order(s), create_order(s, email="other@example.com")
        with ExitStack() as first:
            streams = [_open(s, first, order) for _ in range(MAX_STREAMS_PER_ORDER)]
            assert [r.status_code for r in streams] == [200] * MAX_STREAMS_PER_ORDER
            with ExitStack() as extra:
                refused = _open(s, extra, order)
                assert refused.status_code == 429
                assert refused.headers["retry-after"] == "5"
                assert refused.json()["error"]["code"] == "rate_limited"
                # Another order still gets its stream.
                assert _open(s, extra, other).status_code == 200
        _READING.clear()
        # Closed streams give their slots back (the server notices at its next poll).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with ExitStack() as again:
                if _open(s, again, order).status_code == 200:
                    break
            time.sleep(0.2)
        else:  # pragma: no cover - the slots never came back
            pytest.fail("the closed streams' slots were not given back")


def test_stream_slots_count_per_order_and_in_total() -> None:
    slots = StreamSlots(per_order=2, total=3)
    assert slots.acquire("a")
    assert slots.acquire("a")
    assert not slots.acquire("a")
    assert slots.acquire("b")
    assert not slots.acquire("c")  # the total
    slots.release("a")
    assert slots.acquire("c")
    assert slots.held() == 3


def test_metrics_can_require_a_token(kind: str, tmp_path: Path) -> None:
    token = "metrics-scrape-token-0123456789"
    with running_server(kind, tmp_path / "data", {"BITLOOT_METRICS_TOKEN": token}) as s:
        assert_error(s.http.get("/metrics"), 401, "unauthorized")
        assert_error(s.http.get("/metrics", params={"token": token}), 401, "unauthorized")
        assert_error(s.http.get("/metrics", headers=bearer("wrong")), 401, "unauthorized")
        scraped = s.http.get("/metrics", headers=bearer(token))
        assert scraped.status_code == 200
        assert "bitloot" in scraped.text
