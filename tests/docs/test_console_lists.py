"""The admin console's filters offer every status and flag the chart knows."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bitloot_core.chart import Flag, OrderStatus

CONSOLE = (
    Path(__file__).resolve().parents[2]
    / "src"
    / "bitloot_adapters"
    / "http_api"
    / "static"
    / "admin.js"
)


def listed(name: str) -> list[str]:
    found = re.search(rf"^const {name} = (\[.*?\]);$", CONSOLE.read_text(), re.MULTILINE)
    assert found is not None, f"admin.js has no {name} list"
    return json.loads(found.group(1))


def test_the_console_filters_by_every_flag_and_status() -> None:
    assert sorted(listed("FLAGS")) == sorted(Flag)
    assert listed("STATUSES") == list(OrderStatus)
