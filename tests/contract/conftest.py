"""Fixtures for the HTTP contract suite: each test runs against both example servers.

``server`` is a fresh shop per test (its own data dir, clock and sandboxes);
``shared_server`` is one shop per module and server kind, for tests that change nothing
(bad input, auth refusals) or only add their own orders.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.servers import RunningServer, running_server

KINDS = ["fastapi", "flask"]


def _fast(running: RunningServer) -> RunningServer:
    # The sandbox supplier delivers keys at once, so a Kinguin purchase takes no
    # wall-clock time; delays are exercised through the sandbox clock instead.
    assert running.shop.sandbox is not None
    running.shop.sandbox.supplier.key_delay = 0
    return running


@pytest.fixture(params=KINDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(request.param, tmp_path / "data") as running:
        yield _fast(running)


@pytest.fixture(params=KINDS, scope="module")
def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    with running_server(request.param, tmp_path_factory.mktemp("shared") / "data") as running:
        yield _fast(running)
