"""Decision per IPN (status mapping + transition) vs the same chart in python-statemachine.

Both sides start from the stored status, as a webhook handler does: ours looks the
provider status up and applies the transition; the baseline builds the statemachine at
that status and sends the event. Targets: >= 1000x faster, and <= 1 us per decision.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))

from oracle_chart import OracleChart
from statemachine.exceptions import TransitionNotAllowed

from bitloot_core import chart
from bitloot_core.chart import AmountOutcome, OrderStatus
from bitloot_core.providers.nowpayments import STATUSES

# A realistic mix of (stored status, provider status, paid in full).
CASES = [
    (OrderStatus.WAITING, "confirming", True),
    (OrderStatus.CONFIRMING, "confirmed", True),
    (OrderStatus.CONFIRMING, "sending", True),
    (OrderStatus.CONFIRMING, "finished", True),
    (OrderStatus.PAID, "finished", True),
    (OrderStatus.WAITING, "partially_paid", False),
    (OrderStatus.FULFILLED, "confirmed", True),
]
NO_FLAGS: frozenset[chart.Flag] = frozenset()


def _amount(full: bool) -> AmountOutcome:
    return AmountOutcome.IN_FULL if full else AmountOutcome.SHORT


def ours(status: OrderStatus, raw: str, full: bool) -> OrderStatus:
    row = STATUSES.get(raw)
    if row is None:
        return status
    return chart.payment_transition(status, NO_FLAGS, row.kind, _amount(full))[1].status


def baseline(status: OrderStatus, raw: str, full: bool) -> OrderStatus:
    row = STATUSES.get(raw)
    if row is None:
        return status
    machine = OracleChart(start_value=status.value)
    try:
        machine.send(chart.payment_event(row.kind, _amount(full)).value)
    except TransitionNotAllowed:
        return status
    return OrderStatus(machine.current_state_value)


def per_call_ns(fn: object, rounds: int) -> float:
    calls = 0
    start = time.perf_counter()
    for _ in range(rounds):
        for case in CASES:
            fn(*case)  # type: ignore[operator]
            calls += 1
    return (time.perf_counter() - start) / calls * 1e9


def main(*, quick: bool = False) -> list[tuple[str, float, str]]:
    for case in CASES:
        assert ours(*case) == baseline(*case), case
    baseline_ns = per_call_ns(baseline, 20 if quick else 200)
    ours_ns = per_call_ns(ours, 2_000 if quick else 50_000)
    speedup = baseline_ns / ours_ns
    print(f"chart.decision          {ours_ns:10.0f} ns/IPN (target <= 1000 ns)")
    print(f"statemachine baseline   {baseline_ns:10.0f} ns/IPN")
    print(f"chart.decision speedup  {speedup:10.0f}x baseline (target >= 1000x)")
    return [
        ("chart.decision.speedup", speedup, ">= 1000"),
        ("chart.decision.ns", ours_ns, "<= 1000"),
    ]


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
