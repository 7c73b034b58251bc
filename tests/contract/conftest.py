"""Fixtures for the HTTP contract suite: each test runs against both example servers on
SQLite, and against the FastAPI one on PostgreSQL (``fastapi-postgres``: a fresh database
on the session's throwaway cluster, the database vault, the secrets from the
environment). Flask on PostgreSQL would add nothing the other two do not cover: the
store sits below the HTTP layer both servers share.

``server`` is a fresh shop per test (its own data dir, clock and sandboxes, and its own
database); ``shared_server`` is one shop per module and server kind, for tests that
change nothing (bad input, auth refusals) or only add their own orders.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.postgres import PgCluster
from support.servers import RunningServer, postgres_env, running_server

KINDS = ["fastapi", "flask", "django", "fastapi-postgres"]


@contextmanager
def serving(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[RunningServer]:
    """The server ``request.param`` names, on SQLite or on a database of its own."""
    kind, _, backend = request.param.partition("-")
    if not backend:
        with running_server(kind, data_dir) as running:
            yield running
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    url = cluster.new_database()
    try:
        with running_server(kind, data_dir, postgres_env(url)) as running:
            yield running
    finally:
        cluster.drop_database(url)


def _fast(running: RunningServer) -> RunningServer:
    # The sandbox supplier delivers keys at once, so a Kinguin purchase takes no
    # wall-clock time; delays are exercised through the sandbox clock instead.
    assert running.shop.sandbox is not None
    running.shop.sandbox.supplier.key_delay = 0
    return running


@pytest.fixture(params=KINDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    with serving(request, tmp_path / "data") as running:
        yield _fast(running)


@pytest.fixture(params=KINDS, scope="module")
def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    with serving(request, tmp_path_factory.mktemp("shared") / "data") as running:
        yield _fast(running)
