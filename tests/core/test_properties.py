"""Properties of the whole IPN path: any sequence, duplicated and reordered."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from checkout_kit import Kit, make_kit, send_ipn
from hypothesis import example, given
from hypothesis import strategies as st

from bitloot_core.chart import PROGRESS, TERMINAL, Flag, OrderStatus
from bitloot_core.values import Payment, WebhookOutcome

STATUSES = [
    "waiting",
    "confirming",
    "sending",
    "confirmed",
    "finished",
    "partially_paid",
    "underpaid",
    "expired",
    "refunded",
    "failed",
    "wrong_asset_confirmed",
]
AMOUNTS = {"full": Decimal(1), "short": Decimal("0.5"), "over": Decimal(2), "none": Decimal(0)}
BEFORE_PAID = {OrderStatus.CREATED, OrderStatus.WAITING, OrderStatus.CONFIRMING}

ipn_step = st.tuples(st.just("ipn"), st.sampled_from(STATUSES), st.sampled_from(sorted(AMOUNTS)))
other_step = st.sampled_from([("jobs", "", ""), ("sweep", "", "")])
steps = st.lists(st.one_of(ipn_step, ipn_step, ipn_step, other_step), max_size=25)


# Statuses whose amount decides (the mapping's "paid" kind): the full amount pays.
PAID_KIND = {"finished", "partially_paid", "underpaid"}


def is_full_payment(step: tuple[str, str, str]) -> bool:
    return step[0] == "ipn" and step[1] in PAID_KIND and AMOUNTS[step[2]] >= 1


def run_step(kit: Kit, payment: Payment, step: tuple[str, str, str]) -> None:
    kind, provider_status, amount = step
    if kind == "ipn":
        send_ipn(kit, payment, provider_status, payment.pay_amount * AMOUNTS[amount])
    elif kind == "jobs":
        kit.checkout.run_due_jobs()
    else:
        kit.clock.advance(timedelta(minutes=61))
        kit.checkout.sweep()


def assert_no_downgrade(before: OrderStatus, after: OrderStatus, *, refund: bool) -> None:
    if refund and before is OrderStatus.PAID:
        # The one way back (chart rule 11): the money was returned before fulfillment.
        assert after in {OrderStatus.PAID, OrderStatus.FAILED}
        return
    if before in TERMINAL:
        assert after is before
    if before in PROGRESS and after in PROGRESS:
        assert PROGRESS[after] >= PROGRESS[before]
    if before in {OrderStatus.PAID, OrderStatus.FULFILLED}:
        assert after in {OrderStatus.PAID, OrderStatus.FULFILLED}


@example(
    [("ipn", "partially_paid", "full"), ("ipn", "refunded", "none"), ("ipn", "finished", "over")]
)
@given(steps)
def test_any_ipn_sequence_is_safe(sequence: list[tuple[str, str, str]]) -> None:
    kit = make_kit()
    created = kit.checkout.create_order(email="p@example.com", items=[("hades", 1)])
    payment = kit.checkout.open_payment(created.order.id, created.access_token).payment
    status = OrderStatus.WAITING
    before_first_full: OrderStatus | None = None
    refunded_after_paying = False
    for step in sequence:
        if is_full_payment(step) and before_first_full is None:
            before_first_full = status
        refund = step[1] == "refunded"
        refunded_after_paying |= refund and before_first_full is not None
        run_step(kit, payment, step)
        order = kit.checkout.get_order(created.order.id, created.access_token).order
        assert_no_downgrade(status, order.status, refund=refund)
        status = order.status

    final = kit.checkout.get_order(created.order.id, created.access_token).order
    if refunded_after_paying:
        assert Flag.REFUNDED in final.flags
    elif before_first_full in BEFORE_PAID:
        assert final.status in {OrderStatus.PAID, OrderStatus.FULFILLED}
    elif before_first_full in {OrderStatus.EXPIRED, OrderStatus.FAILED, OrderStatus.UNDERPAID}:
        assert final.status is before_first_full
        assert Flag.PAID_LATE in final.flags
    fulfill_jobs = [j for j in kit.checkout.list_jobs() if j.key.startswith("fulfill:")]
    assert len(fulfill_jobs) <= 1
    assert len(kit.mailer.sent) <= 1
    assert len(kit.supplier.orders) <= 1
    if final.status is OrderStatus.FULFILLED:
        assert kit.supplier.calls == [created.order.id]


@given(
    st.permutations(["waiting", "confirming", "confirmed", "sending", "finished"]), st.booleans()
)
def test_reordered_and_duplicated_happy_path_always_pays(order: list[str], dup: bool) -> None:
    kit = make_kit()
    created = kit.checkout.create_order(email="p@example.com", items=[("celeste", 1)])
    payment = kit.checkout.open_payment(created.order.id, created.access_token).payment
    for provider_status in order:
        for _ in range(2 if dup else 1):
            assert send_ipn(kit, payment, provider_status).outcome is not WebhookOutcome.REJECTED
    view = kit.checkout.get_order(created.order.id, created.access_token)
    assert view.order.status is OrderStatus.PAID
    assert view.payment is not None
    assert view.payment.status == "finished"
