"""The order chart written a second time, by hand, with python-statemachine.

An independent oracle: tests check that it and ``bitloot_core.chart`` agree on every
(status, flags, event), flags included, and the decision benchmark compares their speed.
"""

from __future__ import annotations

from typing import Any

from statemachine import State, StateMachine


class OracleChart(StateMachine):
    """The architecture's rule table written again, by hand, with python-statemachine."""

    created = State(initial=True)
    waiting = State()
    confirming = State()
    paid = State()
    fulfilled = State()
    expired = State()
    failed = State()
    underpaid = State()

    payment_opened = created.to(waiting)
    payment_waiting = created.to(waiting)
    payment_confirming = created.to(confirming) | waiting.to(confirming) | confirming.to.itself()
    payment_confirmed = created.to(confirming) | waiting.to(confirming) | confirming.to.itself()
    payment_paid_in_full = (
        created.to(paid)
        | waiting.to(paid)
        | confirming.to(paid)
        | expired.to.itself()
        | failed.to.itself()
        | underpaid.to.itself()
    )
    payment_overpaid = (
        created.to(paid)
        | waiting.to(paid)
        | confirming.to(paid)
        | expired.to.itself()
        | failed.to.itself()
        | underpaid.to.itself()
    )
    payment_paid_short = created.to(underpaid) | waiting.to(underpaid) | confirming.to(underpaid)
    payment_expired = created.to(expired) | waiting.to(expired) | confirming.to(expired)
    payment_failed = created.to(failed) | waiting.to(failed) | confirming.to(failed)
    payment_refunded = (
        created.to(failed)
        | waiting.to(failed)
        | confirming.to(failed)
        | paid.to(failed)
        | fulfilled.to.itself()
        | expired.to.itself()
        | failed.to.itself()
        | underpaid.to.itself()
    )
    payment_paid_again = (
        paid.to.itself()
        | fulfilled.to.itself()
        | expired.to.itself()
        | failed.to.itself()
        | underpaid.to.itself()
    )
    sweep_expired = created.to(expired) | waiting.to(expired)
    fulfillment_done = paid.to(fulfilled)
    fulfillment_exhausted = paid.to.itself()
    fulfillment_unavailable = paid.to.itself()
    fulfillment_canceled = paid.to.itself()
    fulfillment_price_guard = paid.to.itself()
    admin_retry_fulfillment = paid.to.itself(unless=["supplier_order_canceled", "price_guard"])
    email_exhausted = fulfilled.to.itself()
    admin_resend_email = fulfilled.to.itself(cond="email_failed")
    admin_fulfill = (
        underpaid.to(paid)
        | expired.to(paid, cond="paid_late")
        | failed.to(paid, cond="paid_late")
        | paid.to.itself(cond="price_guard")
    )
    admin_refund = (
        paid.to(failed, cond="cannot_be_fulfilled")
        | underpaid.to(failed)
        | expired.to(failed, cond="paid_late")
        | failed.to.itself(cond="paid_late")
    )

    def __init__(self, *args: Any, flags: frozenset[str] = frozenset(), **kwargs: Any) -> None:
        self.flags = set(flags)
        super().__init__(*args, **kwargs)

    # Guards.
    def paid_late(self) -> bool:
        return "paid_late" in self.flags

    def email_failed(self) -> bool:
        return "email_failed" in self.flags

    def supplier_order_canceled(self) -> bool:
        return "supplier_order_canceled" in self.flags

    def price_guard(self) -> bool:
        return "price_guard" in self.flags

    def cannot_be_fulfilled(self) -> bool:
        return bool({"product_unavailable", "supplier_order_canceled", "price_guard"} & self.flags)

    # Flags, raised and cleared by event.
    def on_payment_paid_in_full(self, source: State, target: State) -> None:
        if source == target:  # held: the money came too late
            self.flags.add("paid_late")

    def on_payment_overpaid(self, source: State, target: State) -> None:
        self.on_payment_paid_in_full(source, target)
        self.flags.add("overpaid")

    def on_payment_refunded(self) -> None:
        self.flags.add("refunded")
        self.flags.discard("paid_late")

    def on_payment_paid_again(self) -> None:
        self.flags.add("paid_twice")

    def on_fulfillment_done(self) -> None:
        self.flags.discard("fulfillment_failed")

    def on_fulfillment_exhausted(self) -> None:
        self.flags.add("fulfillment_failed")

    def on_fulfillment_unavailable(self) -> None:
        self.flags.add("product_unavailable")

    def on_fulfillment_canceled(self) -> None:
        self.flags.add("supplier_order_canceled")

    def on_fulfillment_price_guard(self) -> None:
        self.flags.add("price_guard")

    def on_admin_retry_fulfillment(self) -> None:
        self.flags -= {"fulfillment_failed", "product_unavailable"}

    def on_email_exhausted(self) -> None:
        self.flags.add("email_failed")

    def on_admin_resend_email(self) -> None:
        self.flags.discard("email_failed")

    def on_admin_fulfill(self, source: State) -> None:
        self.flags.add("marked")
        self.flags.discard("paid_late")
        if source == self.paid:  # the supplier's price approved, once
            self.flags -= {"price_guard", "fulfillment_failed"}
            self.flags.add("price_approved")

    def on_admin_refund(self, source: State) -> None:
        self.flags |= {"marked", "refunded"}
        self.flags.discard("paid_late")
        if source == self.paid:  # a paid order that cannot be fulfilled
            self.flags -= {
                "fulfillment_failed",
                "product_unavailable",
                "supplier_order_canceled",
                "price_guard",
            }
