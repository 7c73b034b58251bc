"""Render ``docs/state-chart.md`` from the chart's tables.

Pure: returns text; ``docs/make_state_chart.py`` writes it. The committed file is checked
against this output by a test, so the docs cannot drift from the code.
"""

from __future__ import annotations

from bitloot_core.chart import (
    INITIAL,
    NOWPAYMENTS_STATUS,
    TERMINAL,
    TRANSITIONS,
    OrderEvent,
    OrderStatus,
    apply,
)


def _flags(names: frozenset[str], sign: str) -> list[str]:
    return [f"{sign}{name}" for name in sorted(names)]


def mermaid() -> list[str]:
    lines = ["```mermaid", "stateDiagram-v2", f"    [*] --> {INITIAL}"]
    edges: dict[tuple[str, str], list[str]] = {}
    for (status, event), rule in TRANSITIONS.items():
        edges.setdefault((status, rule.target), []).append(event)
    for (source, target), events in sorted(edges.items()):
        label = ", ".join(sorted(events))
        lines.append(f"    {source} --> {target}: {label}")
    lines.extend(f"    {status} --> [*]" for status in sorted(TERMINAL))
    lines.append("```")
    return lines


def transition_table() -> list[str]:
    lines = [
        "| status | event | target | flags | effects |",
        "|---|---|---|---|---|",
    ]
    order = {status: index for index, status in enumerate(OrderStatus)}
    event_order = {event: index for index, event in enumerate(OrderEvent)}
    rows = sorted(TRANSITIONS.items(), key=lambda kv: (order[kv[0][0]], event_order[kv[0][1]]))
    for (status, event), rule in rows:
        flags = _flags(rule.raise_flags, "+") + _flags(rule.clear_flags, "-")
        effects = apply(status, frozenset(), event).effects
        lines.append(
            f"| `{status}` | `{event}` | `{rule.target}` | {' '.join(flags) or '-'} "
            f"| {', '.join(effects) or '-'} |"
        )
    return lines


def mapping_table() -> list[str]:
    lines = [
        "| NOWPayments status | meaning | payment record | description |",
        "|---|---|---|---|",
    ]
    lines.extend(
        f"| `{raw}` | {row.kind} | `{row.payment_status}` | {row.description} |"
        for raw, row in NOWPAYMENTS_STATUS.items()
    )
    return lines


def render() -> str:
    parts = [
        "# Order state chart",
        "",
        "Generated from `bitloot_core.chart` by `make docs` (`docs/make_state_chart.py`);",
        "a test fails when this file is stale. Do not edit by hand.",
        "",
        f"Initial status: `{INITIAL}`. Terminal for automatic events: "
        + ", ".join(f"`{s}`" for s in sorted(TERMINAL))
        + ".",
        "A (status, event) pair missing from the table is ignored and audited.",
        "",
        *mermaid(),
        "",
        "## Transitions",
        "",
        *transition_table(),
        "",
        "## NOWPayments status mapping",
        "",
        "`finished` and `partial` become `ipn_paid_in_full` when the amount paid is at least",
        "the amount due less the underpay tolerance, and `ipn_paid_short` otherwise.",
        "",
        *mapping_table(),
        "",
    ]
    return "\n".join(parts)
