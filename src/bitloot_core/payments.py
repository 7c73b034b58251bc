"""Deciding what a provider's payment update does to an order and its payment record.

Pure: takes the stored order and payment and a neutral ``PaymentUpdate``, returns their
next values and the effects to apply. Everything that moves them is the chart's: this
module only turns the amounts into the chart's amount outcome (in full, short, over) and
asks the chart's tables. Signature checks and parsing are the provider's
(``bitloot_core.providers``); binding (is this update about this order?) is checked by
the caller, with ``binding_problem``, before this runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from bitloot_core import chart
from bitloot_core.chart import AmountOutcome, Effect, PaymentKind, PaymentStatus
from bitloot_core.providers import PaymentUpdate
from bitloot_core.values import Order, Payment

HUNDRED = Decimal(100)


def paid_in_full(actually_paid: Decimal, due: Decimal, tolerance_percent: Decimal) -> bool:
    """True when ``actually_paid`` is at least ``due`` less the tolerance."""
    return actually_paid >= due * (HUNDRED - tolerance_percent) / HUNDRED


def amount_outcome(
    actually_paid: Decimal, due: Decimal, tolerance_percent: Decimal
) -> AmountOutcome:
    """Short (below the tolerance), in full, or over (more than due)."""
    if not paid_in_full(actually_paid, due, tolerance_percent):
        return AmountOutcome.SHORT
    return AmountOutcome.OVER if actually_paid > due else AmountOutcome.IN_FULL


def update_outcome(
    update: PaymentUpdate, payment: Payment, tolerance_percent: Decimal
) -> AmountOutcome:
    """The amount outcome of ``update`` about ``payment`` (chart rule 12).

    Once the payment's money was counted in full (the record is ``finished``), only a
    whole new payment counts: a repeated deposit (another payment id) paying in full, or
    the same payment reporting at least a full amount more than it did.
    """
    if payment.status is PaymentStatus.FINISHED and update.kind is PaymentKind.PAID:
        fresh = update.actually_paid
        if update.payment_id == payment.id:
            fresh -= payment.actually_paid
        if paid_in_full(fresh, payment.pay_amount, tolerance_percent):
            return AmountOutcome.AGAIN
    return amount_outcome(update.actually_paid, payment.pay_amount, tolerance_percent)


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentDecision:
    applied: bool
    order: Order
    payment: Payment
    effects: tuple[Effect, ...]
    reason: str


def decide_payment(
    order: Order,
    payment: Payment,
    update: PaymentUpdate,
    *,
    tolerance_percent: Decimal,
    now: datetime,
) -> PaymentDecision:
    """The order and payment after ``update``. Unknown statuses and terminal orders are ignored."""
    if update.kind is None:
        return PaymentDecision(
            applied=False,
            order=order,
            payment=payment,
            effects=(),
            reason=f"unknown provider status {update.provider_status!r}: ignored",
        )
    amount = update_outcome(update, payment, tolerance_percent)
    event, transition = chart.payment_transition(order.status, order.flags, update.kind, amount)
    new_payment_status = chart.payment_status(payment.status, event, transition)
    payment_moved = new_payment_status != payment.status
    if not transition.applied and not payment_moved:
        return PaymentDecision(
            applied=False,
            order=order,
            payment=payment,
            effects=(),
            reason=f"{update.provider_status} on {order.status} order: {transition.reason}",
        )
    new_payment = replace(
        payment,
        status=new_payment_status,
        provider_status=update.provider_status,
        actually_paid=max(payment.actually_paid, update.actually_paid),
        updated_at=now,
    )
    new_order = order
    if transition.status != order.status or transition.flags != order.flags:
        new_order = replace(order, status=transition.status, flags=transition.flags, updated_at=now)
    return PaymentDecision(
        applied=True,
        order=new_order,
        payment=new_payment,
        effects=transition.effects,
        reason=f"{update.provider_status}: {transition.reason}; payment {new_payment_status}",
    )


def binding_problem(  # noqa: PLR0911  one return per check
    update: PaymentUpdate, *, order: Order, payment: Payment
) -> str | None:
    """Why ``update`` is not bound to ``order`` (whose payment ``payment`` it names), or None.

    Bound means: it comes from the provider holding the payment, its order_id is the
    order's, its payment_id is the payment opened for the order (or names it as
    ``parent_payment_id``: a repeated deposit), its price amount and currency are the
    order's, and it is not paid in another coin than the payment's (its amount would be
    compared with the wrong due). With no payment opened, no update is bound.
    """
    if order.payment_id is None:
        return "no payment has been opened for the order"
    if update.provider != payment.provider:
        return f"the payment is held by {payment.provider}, not {update.provider}"
    if update.order_id != order.id:
        return f"order_id does not match (IPN {update.order_id!r}, order {order.id!r})"
    if order.payment_id not in (update.payment_id, update.parent_payment_id):
        return (
            f"payment_id does not match (IPN {update.payment_id!r}, parent "
            f"{update.parent_payment_id!r}, order's payment {order.payment_id!r})"
        )
    if update.price_amount is None or update.price_amount != order.total:
        return f"price_amount does not match (IPN {update.price_amount}, order {order.total})"
    if update.price_currency is None or update.price_currency.lower() != order.currency.lower():
        return (
            f"price_currency does not match (IPN {update.price_currency!r}, "
            f"order {order.currency!r})"
        )
    # A repeated deposit's IPN may leave it out; when named, it must be the payment's.
    named = update.pay_currency
    if named is not None and named.lower() != payment.pay_currency.lower():
        return (
            f"pay_currency does not match (IPN {update.pay_currency!r}, "
            f"payment {payment.pay_currency!r})"
        )
    return None
