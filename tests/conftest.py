"""Test-wide settings: hypothesis profiles.

``default`` is quick for local runs; ``ci`` (chosen when ``CI`` is set, as ``.ci/run``
does) runs many more examples. ``HYPOTHESIS_PROFILE`` picks one explicitly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile(
    "ci",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
_default = "ci" if os.environ.get("CI") else "default"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))


# --- a throwaway PostgreSQL cluster, one per test session ---------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.postgres import PgCluster, PostgresMissing, start_cluster  # noqa: E402


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL server of our own: skipped where none is installed, but never in CI."""
    try:
        cluster = start_cluster()
    except PostgresMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(str(exc))
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    url = pg_cluster.new_database()
    try:
        yield url
    finally:
        pg_cluster.drop_database(url)
