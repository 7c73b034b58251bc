"""Render ``docs/state-chart.md`` from the chart's tables and the providers' tables.

Pure: returns text; ``docs/make_state_chart.py`` writes it. The committed file is checked
against this output by a test, so the docs cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Mapping

from bitloot_core.chart import (
    INITIAL,
    JOBS,
    PAYMENT_TRANSITIONS,
    TERMINAL,
    TRANSITIONS,
    OrderEvent,
    OrderStatus,
    PaymentStatus,
    apply,
)
from bitloot_core.providers import ProviderStatus, btcpay, nowpayments

# Every provider module in the core: (title, status table). Add yours here.
PROVIDER_TABLES: tuple[tuple[str, Mapping[str, ProviderStatus]], ...] = (
    ("NOWPayments", nowpayments.STATUSES),
    ("BTCPay Server", btcpay.STATUSES),
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
        "| status | event | needs | target | flags | payment record | effects |",
        "|---|---|---|---|---|---|---|",
    ]
    order = {status: index for index, status in enumerate(OrderStatus)}
    event_order = {event: index for index, event in enumerate(OrderEvent)}
    rows = sorted(TRANSITIONS.items(), key=lambda kv: (order[kv[0][0]], event_order[kv[0][1]]))
    for (status, event), rule in rows:
        flags = _flags(rule.raise_flags, "+") + _flags(rule.clear_flags, "-")
        needs = (
            " ".join(
                [
                    *sorted(rule.requires),
                    *([" or ".join(sorted(rule.requires_any))] if rule.requires_any else []),
                    *(f"not {flag}" for flag in sorted(rule.forbids)),
                ]
            )
            or "-"
        )
        satisfied = rule.requires | frozenset(sorted(rule.requires_any)[:1])
        effects = apply(status, satisfied, event).effects
        record = f"`{rule.payment}`" if rule.payment else "-"
        lines.append(
            f"| `{status}` | `{event}` | {needs} | `{rule.target}` | {' '.join(flags) or '-'} "
            f"| {record} | {', '.join(effects) or '-'} |"
        )
    return lines


def payment_table() -> list[str]:
    lines = ["| payment record | event | becomes |", "|---|---|---|"]
    order = {status: index for index, status in enumerate(PaymentStatus)}
    event_order = {event: index for index, event in enumerate(OrderEvent)}
    rows = sorted(
        PAYMENT_TRANSITIONS.items(), key=lambda kv: (order[kv[0][0]], event_order[kv[0][1]])
    )
    lines.extend(f"| `{status}` | `{event}` | `{target}` |" for (status, event), target in rows)
    return lines


def job_table() -> list[str]:
    lines = [
        (
            "| job kind | enqueued by | runs | retry schedule | when retries run out "
            "| when it dies of an error |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for kind, rule in JOBS.items():
        errors = ", ".join(f"`{code}`: `{event}`" for code, event in rule.gives_up_on.items())
        lines.append(
            f"| `{kind}` | {rule.enqueued_by} | {rule.runs} | `{rule.retries}` "
            f"| `{rule.exhausted}` | {errors or '-'} |"
        )
    return lines


def mapping_table(title: str, statuses: Mapping[str, ProviderStatus]) -> list[str]:
    lines = [f"| {title} status | payment kind | description |", "|---|---|---|"]
    lines.extend(f"| `{raw}` | {row.kind} | {row.description} |" for raw, row in statuses.items())
    return lines


def render() -> str:
    parts = [
        "# Order state chart",
        "",
        "Generated from `bitloot_core.chart` and the provider modules by `make docs`",
        "(`docs/make_state_chart.py`); a test fails when this file is stale. Do not edit by hand.",
        "",
        f"Initial status: `{INITIAL}`. Terminal for automatic events: "
        + ", ".join(f"`{s}`" for s in sorted(TERMINAL))
        + ".",
        "A (status, event) pair missing from the table, or whose rule needs a flag the order",
        "does not carry, is ignored and audited (an admin request for it is refused).",
        "",
        *mermaid(),
        "",
        "## Transitions",
        "",
        "*needs*: flags the order must carry; *payment record*: the record's status when the",
        "rule sets it (otherwise the record follows its own table below).",
        "",
        *transition_table(),
        "",
        "## Payment record",
        "",
        "Forward only; `finished`, `underpaid` and `failed` are final. A pair missing here",
        "leaves the record as it is.",
        "",
        *payment_table(),
        "",
        "## Jobs",
        "",
        *job_table(),
        "",
        "## Payment events",
        "",
        "Each provider maps its own statuses to a payment kind. A `paid` kind becomes",
        "`payment_paid_short` when the amount paid is below the amount due less the underpay",
        "tolerance, `payment_overpaid` when it is above the amount due, and",
        "`payment_paid_in_full` otherwise; every other kind becomes `payment_<kind>`.",
        "",
    ]
    for title, statuses in PROVIDER_TABLES:
        parts += [f"### {title}", "", *mapping_table(title, statuses), ""]
    return "\n".join(parts)
