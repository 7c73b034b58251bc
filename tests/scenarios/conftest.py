"""The seed scenarios against the FastAPI example server, over real HTTP on loopback, on
SQLite and on PostgreSQL (a fresh database of the session's throwaway cluster, with the
database vault and the secrets from the environment, as a shop on many hosts runs).

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

from providers import SIDES, PaymentSide
from steps import StartServer

from support.postgres import PgCluster
from support.servers import RunningServer, postgres_env, running_server


def start(
    stack: ExitStack,
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    worker: bool = True,
    kind: str = "fastapi",
) -> RunningServer:
    running = stack.enter_context(running_server(kind, data_dir, env, worker=worker))
    assert running.shop.sandbox is not None
    running.shop.sandbox.supplier.key_delay = 0.0
    return running


@pytest.fixture(params=["sqlite", "postgres", "django"])
def start_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StartServer]:
    """Start servers with their own env and worker choice; all stop after the test.

    FastAPI on SQLite and on PostgreSQL (each server a database of its own, dropped after
    the test), and the Django server on SQLite: the same core under another framework."""
    count = 0
    cluster: PgCluster | None = None
    if request.param == "postgres":
        cluster = request.getfixturevalue("pg_cluster")

    def starter(env: Mapping[str, str] | None = None, *, worker: bool = True) -> RunningServer:
        nonlocal count
        count += 1
        if cluster is not None:
            url = cluster.new_database()
            stack.callback(cluster.drop_database, url)
            env = {**postgres_env(url), **(env or {})}
        kind = "django" if request.param == "django" else "fastapi"
        return start(stack, tmp_path / f"data-{count}", env, worker=worker, kind=kind)

    with ExitStack() as stack:
        yield starter


@pytest.fixture
def server(start_server: StartServer) -> RunningServer:
    return start_server()


@pytest.fixture
def stepped(start_server: StartServer) -> RunningServer:
    return start_server(worker=False)


@pytest.fixture(params=sorted(SIDES, reverse=True))
def provider(request: pytest.FixtureRequest) -> PaymentSide:
    """The payment provider a scenario plays, once for each provider the shop runs."""
    return SIDES[request.param]
