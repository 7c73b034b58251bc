"""The customer page's list of flags that hold a paid order follows the chart."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bitloot_core.chart import JOBS, TRANSITIONS, JobKind, OrderStatus

ORDER_PAGE = (
    Path(__file__).resolve().parents[2]
    / "src"
    / "bitloot_adapters"
    / "http_api"
    / "static"
    / "order.js"
)


def listed(name: str) -> list[str]:
    found = re.search(rf"^const {name} = (\[.*?\]);$", ORDER_PAGE.read_text(), re.MULTILINE)
    assert found is not None, f"order.js has no {name} list"
    return json.loads(found.group(1))


def test_the_page_says_delayed_for_every_flag_a_dying_fulfillment_raises() -> None:
    """A paid order whose fulfillment gave up waits for the staff, whatever the reason."""
    rule = JOBS[JobKind.FULFILL]
    events = {rule.exhausted, *rule.gives_up_on.values()}
    held = {
        flag
        for event in events
        for flag in TRANSITIONS[OrderStatus.PAID, event].raise_flags
        if TRANSITIONS[OrderStatus.PAID, event].target is OrderStatus.PAID
    }
    assert len(held) >= 4, "the chart's give-up events raise their flags on a paid order"
    assert sorted(listed("HELD_FLAGS")) == sorted(held)
