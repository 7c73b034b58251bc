"""The seed scenarios against the FastAPI example server, over real HTTP on loopback.

Each test gets a fresh server and data dir. ``server`` runs the worker thread, as the
example does; ``stepped`` runs none, so jobs run only when a test moves the sandbox clock
(``POST /sandbox/clock/advance``) and every step in between can be looked at.

The sandbox supplier delivers keys at once unless a test sets
``server.shop.sandbox.supplier.key_delay`` (the demo's one second of delivery time).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from steps import StartServer

from support.servers import RunningServer, running_server


def start(
    stack: ExitStack,
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    worker: bool = True,
) -> RunningServer:
    running = stack.enter_context(running_server("fastapi", data_dir, env, worker=worker))
    assert running.shop.sandbox is not None
    running.shop.sandbox.supplier.key_delay = 0.0
    return running


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start servers with their own env and worker choice; all stop after the test."""
    count = 0

    def starter(env: Mapping[str, str] | None = None, *, worker: bool = True) -> RunningServer:
        nonlocal count
        count += 1
        return start(stack, tmp_path / f"data-{count}", env, worker=worker)

    with ExitStack() as stack:
        yield starter


@pytest.fixture
def server(start_server: StartServer) -> RunningServer:
    return start_server()


@pytest.fixture
def stepped(start_server: StartServer) -> RunningServer:
    return start_server(worker=False)
