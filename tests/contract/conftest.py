from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.servers import RunningServer, running_server


@pytest.fixture(params=["fastapi", "flask"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(request.param, tmp_path / "data") as running:
        yield running
