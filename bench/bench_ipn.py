"""IPN signature verification against a bare HMAC-SHA512 check, in the same process.

    python bench/bench_ipn.py

Prints, for each path of ``verify_ipn_signature``, its cost per call as a multiple of the
baseline: ``hmac.new(secret, body, sha512).hexdigest()`` compared with
``hmac.compare_digest``, the least any verifier must do. The raw path (a body exactly as
NOWPayments sends it) should stay within 1.5x of that; the canonical fallback (a
re-serialised body: parse, sort, print as Node does, HMAC again) within 10x.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

from bitloot_core.providers.nowpayments import canonical_json, verify_ipn_signature

SECRET = "Yb3kR9tV2mQ8xL5nW7cJ4hF6dS1aZ0pE"  # noqa: S105  a benchmark fixture

# The real `finished` IPN from the NOWPayments reference, as sent (already canonical).
FINISHED_IPN = {
    "actually_paid": 0.00656612,
    "actually_paid_at_fiat": 0,
    "fee": {
        "currency": "btc",
        "depositFee": 0.000002,
        "serviceFee": 0.000003,
        "withdrawalFee": 0,
    },
    "invoice_id": None,
    "order_description": None,
    "order_id": "ord_7Q2mX9kLp4",
    "outcome_amount": 0.00022187,
    "outcome_currency": "btc",
    "parent_payment_id": None,
    "pay_address": "0x05Db8cE3a41F2b7D9e0C6a5B4f3E2d1C0b9A8f7E",
    "pay_amount": 0.00656612,
    "pay_currency": "eth",
    "payin_extra_id": None,
    "payment_extra_ids": None,
    "payment_id": 5800567260,
    "payment_status": "finished",
    "price_amount": 20,
    "price_currency": "usd",
    "purchase_id": "5172103429",
    "updated_at": 1765249461097,
}

RAW_TARGET = 1.5
FALLBACK_TARGET = 10.0


def _best_ns_per_call(
    calls: dict[str, Callable[[], object]], *, rounds: int = 15, number: int = 4_000
) -> dict[str, float]:
    """Each call's best loop time per call, the loops interleaved round by round.

    Interleaving exposes every call to the same machine load, so the ratios hold even
    when the absolute times drift; the best round is the least-disturbed one.
    """
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(number):
                call()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: seconds / number * 1e9 for name, seconds in best.items()}


def main() -> list[tuple[str, float, float]]:
    """Run the benchmark; returns (name, ratio to the baseline, target ratio) rows."""
    canonical = canonical_json(FINISHED_IPN).encode()
    reordered = json.dumps(dict(reversed(FINISHED_IPN.items())), indent=2).encode()
    key = SECRET.encode()
    signature = hmac.new(key, canonical, hashlib.sha512).hexdigest()
    assert verify_ipn_signature(canonical, signature, SECRET)
    assert verify_ipn_signature(reordered, signature, SECRET)

    def baseline() -> bool:
        digest = hmac.new(key, canonical, hashlib.sha512).hexdigest()
        return hmac.compare_digest(digest, signature)

    ns = _best_ns_per_call(
        {
            "baseline": baseline,
            "raw": lambda: verify_ipn_signature(canonical, signature, SECRET),
            "canonical": lambda: verify_ipn_signature(reordered, signature, SECRET),
        }
    )
    baseline_ns = ns["baseline"]
    print(f"baseline hmac-sha512 over {len(canonical)} bytes: {baseline_ns:,.0f} ns/call")
    results = [
        ("ipn.verify.raw", ns["raw"] / baseline_ns, RAW_TARGET),
        ("ipn.verify.canonical", ns["canonical"] / baseline_ns, FALLBACK_TARGET),
    ]
    for name, ratio, target in results:
        print(f"{name:<24}{ratio:5.2f}x baseline (target <= {target:g}x)")
    return results


if __name__ == "__main__":
    main()
