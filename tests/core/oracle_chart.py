"""The order chart written a second time, by hand, with python-statemachine.

An independent oracle: tests check that it and ``bitloot_core.chart`` agree on every
(status, event), and the decision benchmark compares their speed.
"""

from __future__ import annotations

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
    ipn_waiting = created.to(waiting)
    ipn_confirming = created.to(confirming) | waiting.to(confirming) | confirming.to.itself()
    ipn_paid_in_full = (
        created.to(paid)
        | waiting.to(paid)
        | confirming.to(paid)
        | expired.to.itself()
        | failed.to.itself()
        | underpaid.to.itself()
    )
    ipn_paid_short = created.to(underpaid) | waiting.to(underpaid) | confirming.to(underpaid)
    ipn_expired = created.to(expired) | waiting.to(expired) | confirming.to(expired)
    ipn_failed = created.to(failed) | waiting.to(failed) | confirming.to(failed)
    sweep_expired = created.to(expired) | waiting.to(expired)
    fulfillment_done = paid.to(fulfilled)
    fulfillment_exhausted = paid.to.itself()
    admin_retry_fulfillment = paid.to.itself()
    email_exhausted = fulfilled.to.itself()
    admin_resend_email = fulfilled.to.itself()
    admin_fulfill = underpaid.to(paid) | expired.to(paid) | failed.to(paid)
    admin_refund = underpaid.to(failed) | expired.to(failed) | failed.to.itself()
