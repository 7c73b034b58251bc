"""Deciding what an IPN does to an order and its payment record.

Pure: takes the stored order and payment and a parsed IPN, returns their next values and
the effects to apply. Signature checks and parsing live in ``bitloot_core.ipn``; binding
(is this IPN about this order?) is checked by the caller before this runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from bitloot_core import chart
from bitloot_core.chart import Effect, Flag, IpnKind
from bitloot_core.values import Ipn, Order, Payment

HUNDRED = Decimal(100)


def paid_in_full(actually_paid: Decimal, due: Decimal, tolerance_percent: Decimal) -> bool:
    """True when ``actually_paid`` is at least ``due`` less the tolerance."""
    return actually_paid >= due * (HUNDRED - tolerance_percent) / HUNDRED


@dataclass(frozen=True, slots=True, kw_only=True)
class IpnDecision:
    applied: bool
    order: Order
    payment: Payment
    effects: tuple[Effect, ...]
    reason: str


def decide_ipn(
    order: Order,
    payment: Payment,
    ipn: Ipn,
    *,
    tolerance_percent: Decimal,
    now: datetime,
) -> IpnDecision:
    """The order and payment after ``ipn``. Unknown statuses and terminal orders are ignored."""
    full = paid_in_full(ipn.actually_paid, payment.pay_amount, tolerance_percent)
    transition = chart.ipn_transition(order.status, order.flags, ipn.payment_status, full)
    row = chart.provider_status(ipn.payment_status)
    if transition is None or row is None:
        return IpnDecision(
            applied=False,
            order=order,
            payment=payment,
            effects=(),
            reason=f"unknown provider status {ipn.payment_status!r}: ignored",
        )
    # finished and partially_paid are judged by the amount: in full (within the
    # tolerance) they pay the order and finish the payment record, short they don't.
    paying = row.kind in (IpnKind.FINISHED, IpnKind.PARTIAL)
    proposed = row.payment_status
    if paying:
        proposed = chart.PaymentStatus.FINISHED if full else chart.PaymentStatus.UNDERPAID
    flags = transition.flags
    if transition.applied and paying and full and ipn.actually_paid > payment.pay_amount:
        flags |= {Flag.OVERPAID}
    new_payment_status = chart.advance_payment(payment.status, proposed)
    if transition.applied and Flag.PAID_LATE in transition.flags - order.flags:
        # The money arrived after we gave up on the payment: the record says so, even
        # though the order is held for an admin.
        new_payment_status = chart.PaymentStatus.FINISHED
    payment_moved = new_payment_status != payment.status
    if not transition.applied and not payment_moved:
        return IpnDecision(
            applied=False,
            order=order,
            payment=payment,
            effects=(),
            reason=f"{ipn.payment_status} on {order.status} order: {transition.reason}",
        )
    new_payment = replace(
        payment,
        status=new_payment_status,
        provider_status=ipn.payment_status,
        actually_paid=max(payment.actually_paid, ipn.actually_paid),
        updated_at=now,
    )
    new_order = order
    if transition.status != order.status or flags != order.flags:
        new_order = replace(order, status=transition.status, flags=flags, updated_at=now)
    return IpnDecision(
        applied=True,
        order=new_order,
        payment=new_payment,
        effects=transition.effects,
        reason=f"{ipn.payment_status}: {transition.reason}; payment {new_payment_status}",
    )
