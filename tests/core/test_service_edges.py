"""The service's rarer paths: races between requests and workers, lost leases, bad config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from checkout_kit import SIGNING_KEY, Kit, ipn_body, make_kit, send_ipn, sign

from bitloot_core.chart import Flag, OrderStatus
from bitloot_core.errors import (
    ConcurrentUpdate,
    InvalidInput,
    InvalidState,
    KeysPending,
    MailerError,
    NotFound,
    PaymentOpening,
    ProviderError,
    ProviderUnavailable,
    SupplierUnavailable,
)
from bitloot_core.providers import PaymentUpdate
from bitloot_core.service import Checkout, CheckoutConfig
from bitloot_core.service.ordering import MAX_PAYMENT_OPENINGS
from bitloot_core.testing import FakeSupplier, MemoryStore, MemoryTx, SequentialIds
from bitloot_core.values import (
    JobState,
    OpenedPayment,
    Order,
    OrderItem,
    Product,
    ProductSource,
    SuppliedKey,
    WebhookOutcome,
)


def paid_order(kit: Kit, product: str = "hades") -> str:
    created = kit.checkout.create_order(email="e@example.com", items=[(product, 1)])
    payment = kit.checkout.open_payment(created.order.id, created.access_token).payment
    send_ipn(kit, payment, "finished")
    return created.order.id


def order_of(kit: Kit, order_id: str) -> Order:
    return kit.checkout.admin_order(order_id).order


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ipn_secret": "  "}, "ipn_secret"),
        ({"signing_key": b"short"}, "signing_key"),
        ({"underpay_tolerance_percent": Decimal(100)}, "underpay_tolerance"),
        ({"underpay_tolerance_percent": Decimal(-1)}, "underpay_tolerance"),
        ({"key_url_ttl": timedelta(days=8)}, "key_url_ttl"),
        ({"key_url_ttl": timedelta(0)}, "key_url_ttl"),
    ],
)
def test_config_is_validated(change: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "ipn_secret": "s",
        "signing_key": SIGNING_KEY,
        "public_url": "https://shop.example",
    }
    with pytest.raises(ValueError, match=message):
        CheckoutConfig(**(base | change))  # type: ignore[arg-type]


def test_an_order_cannot_mix_currencies(kit: Kit) -> None:
    kit.checkout.save_product(
        Product(
            id="euro-game",
            name="Euro",
            price=Decimal(5),
            currency="eur",
            source=ProductSource.CUSTOM,
        )
    )
    kit.checkout.add_pool_keys("euro-game", ["EURO-1"])
    with pytest.raises(InvalidInput, match="one currency"):
        kit.checkout.create_order(email="e@example.com", items=[("hades", 1), ("euro-game", 1)])


class _RacingGateway:
    """Runs ``during`` while the provider is being asked, as a second request would."""

    def __init__(self, kit: Kit, during: object) -> None:
        self._inner = kit.gateway
        self._during = during

    def create_payment(self, **fields: str) -> OpenedPayment:
        during, self._during = self._during, None
        if callable(during):
            during()
        return self._inner.create_payment(**fields)  # type: ignore[arg-type]

    def get_payment(self, payment_id: str) -> PaymentUpdate:
        return self._inner.get_payment(payment_id)


def _use_gateway(kit: Kit, gateway: object) -> None:
    setup = kit.checkout._providers["nowpayments"]
    kit.checkout._providers["nowpayments"] = replace(setup, gateway=gateway)  # type: ignore[arg-type]


def test_two_requests_opening_the_payment_at_once_make_one_provider_payment(kit: Kit) -> None:
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", 1)])
    refused: list[PaymentOpening] = []

    def open_again() -> None:
        with pytest.raises(PaymentOpening) as raised:
            kit.checkout.open_payment(created.order.id, created.access_token)
        refused.append(raised.value)

    _use_gateway(kit, _RacingGateway(kit, open_again))
    result = kit.checkout.open_payment(created.order.id, created.access_token)
    assert result.created
    assert [e.code for e in refused] == ["payment_opening"]
    assert len(kit.gateway.created) == 1, "exactly one provider payment"
    assert order_of(kit, created.order.id).payment_id == result.payment.id
    # Asked again once it is open: the same payment.
    again = kit.checkout.open_payment(created.order.id, created.access_token)
    assert (again.created, again.payment.id) == (False, result.payment.id)


def test_a_failed_provider_call_lets_the_next_request_open_at_once(kit: Kit) -> None:
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", 1)])

    def refuse() -> None:
        raise ProviderUnavailable("NOWPayments answered 503", status=503)

    _use_gateway(kit, _RacingGateway(kit, refuse))
    with pytest.raises(ProviderUnavailable):
        kit.checkout.open_payment(created.order.id, created.access_token)
    assert kit.checkout.open_payment(created.order.id, created.access_token).created


def test_a_request_that_died_while_opening_blocks_only_for_its_lease(kit: Kit) -> None:
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", 1)])

    class Died(BaseException):
        pass

    def die() -> None:
        raise Died  # the process was killed mid-call: nothing runs after it

    _use_gateway(kit, _RacingGateway(kit, die))
    with pytest.raises(Died):
        kit.checkout.open_payment(created.order.id, created.access_token)
    with pytest.raises(PaymentOpening):
        kit.checkout.open_payment(created.order.id, created.access_token)
    kit.clock.advance(kit.checkout.config.payment_opening_lease)
    assert kit.checkout.open_payment(created.order.id, created.access_token).created
    assert len(kit.gateway.created) == 1


def test_an_order_whose_payment_never_opens_stops_asking(kit: Kit) -> None:
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", 1)])
    kit_gateway = kit.gateway

    class Down:
        def create_payment(self, **fields: str) -> OpenedPayment:
            raise ProviderUnavailable("down", status=503)

        def get_payment(self, payment_id: str) -> PaymentUpdate:
            return kit_gateway.get_payment(payment_id)

    _use_gateway(kit, Down())
    for _ in range(MAX_PAYMENT_OPENINGS):
        with pytest.raises(ProviderUnavailable):
            kit.checkout.open_payment(created.order.id, created.access_token)
    with pytest.raises(InvalidState, match="start a new order"):
        kit.checkout.open_payment(created.order.id, created.access_token)


def test_an_order_expiring_while_the_payment_opens_is_refused(kit: Kit) -> None:
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", 1)])

    def expire() -> None:
        kit.clock.advance(timedelta(hours=2))
        kit.checkout.sweep()

    _use_gateway(kit, _RacingGateway(kit, expire))
    with pytest.raises(InvalidState):
        kit.checkout.open_payment(created.order.id, created.access_token)
    assert order_of(kit, created.order.id).payment_id is None


class _FlakyStore:
    """A store whose first order update loses a compare-and-set, as under a weaker isolation."""

    def __init__(self, inner: MemoryStore) -> None:
        self._inner = inner
        self.losses = 1

    def transaction(self):
        return _FlakyTx(self)


class _FlakyTx:
    def __init__(self, store: _FlakyStore) -> None:
        self._store = store
        self._context = store._inner.transaction()

    def __enter__(self) -> MemoryTx:
        tx = self._context.__enter__()
        store = self._store
        original = tx.update_order

        def update_order(order: Order) -> Order:
            if store.losses:
                store.losses -= 1
                raise ConcurrentUpdate("lost")
            return original(order)

        tx.update_order = update_order  # type: ignore[method-assign]
        return tx

    def __exit__(self, *exc: object) -> bool | None:
        return self._context.__exit__(*exc)  # type: ignore[arg-type]


def test_an_ipn_losing_a_compare_and_set_is_applied_on_retry(kit: Kit) -> None:
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", 1)])
    payment = kit.checkout.open_payment(created.order.id, created.access_token).payment
    flaky = _FlakyStore(kit.store)
    kit.checkout._store = flaky
    assert send_ipn(kit, payment, "finished").outcome is not WebhookOutcome.REJECTED
    assert flaky.losses == 0
    kit.checkout._store = kit.store
    assert order_of(kit, created.order.id).status is OrderStatus.PAID


def test_admin_retry_leaves_a_pending_job_alone(kit: Kit) -> None:
    order_id = paid_order(kit)
    job = kit.checkout.list_jobs()[0]
    kit.checkout.retry_fulfillment(order_id)
    assert kit.checkout.list_jobs() == [job]


def test_a_job_run_again_after_a_crash_does_nothing_twice(kit: Kit) -> None:
    order_id = paid_order(kit)
    kit.checkout.run_due_jobs()
    # The worker died after fulfilling but before marking the job done: it is due again.
    with kit.store.transaction() as tx:
        job = tx.get_job(f"fulfill:{order_id}")
        assert job is not None
        tx.update_job(replace(job, state=JobState.PENDING))
    assert [r.outcome for r in kit.checkout.run_due_jobs()] == ["done"]
    assert kit.supplier.calls == [order_id]
    assert len(kit.mailer.sent) == 1


class _SlowSupplier(FakeSupplier):
    """While it works, its lease runs out and another worker takes the job over."""

    def __init__(self, kit: Kit, *, then_fail: Exception | None) -> None:
        super().__init__()
        self._kit = kit
        self._then_fail = then_fail
        self.took_over: list[str] = []
        self._busy = False

    def fulfill(  # type: ignore[override]
        self,
        *,
        order_id: str,
        lines: list[tuple[str, int]],
        max_prices: Mapping[str, Decimal] | None = None,
    ) -> list[SuppliedKey]:
        keys = super().fulfill(order_id=order_id, lines=lines, max_prices=max_prices)
        if not self._busy:
            self._busy = True  # the second worker's call must not start a third
            self._kit.clock.advance(timedelta(minutes=3))
            self.took_over = [r.outcome for r in self._kit.checkout.run_due_jobs(worker="second")]
            if self._then_fail is not None:
                raise self._then_fail
        return keys


@pytest.mark.parametrize(
    "then_fail",
    [
        None,
        SupplierUnavailable("the first worker's connection dropped late"),
        KeysPending("the first worker saw no keys yet"),
    ],
)
def test_a_worker_whose_lease_ran_out_does_not_overwrite_the_new_owner(
    then_fail: Exception | None,
) -> None:
    kit = make_kit()
    supplier = _SlowSupplier(kit, then_fail=then_fail)
    kit.checkout._supplier = supplier
    order_id = paid_order(kit)
    runs = kit.checkout.run_due_jobs(worker="first")
    assert supplier.took_over == ["done", "done"]  # the fulfillment, then its email
    assert [r.outcome for r in runs] == ["lost_lease"]
    assert order_of(kit, order_id).status is OrderStatus.FULFILLED
    job = kit.checkout.list_jobs()[0]
    assert (job.key, job.state, job.attempts) == (f"fulfill:{order_id}", JobState.DONE, 2)


def test_a_refused_email_is_dead_lettered_flagged_and_can_be_resent(kit: Kit) -> None:
    order_id = paid_order(kit)
    send = kit.mailer.send

    def refuse(message: object) -> None:
        raise MailerError("550 mailbox unavailable")

    kit.mailer.send = refuse  # type: ignore[method-assign]
    assert [r.outcome for r in kit.checkout.run_due_jobs()] == ["done", "dead"]
    order = order_of(kit, order_id)
    assert order.status is OrderStatus.FULFILLED
    assert order.flags == {Flag.EMAIL_FAILED}
    assert [o.id for o in kit.checkout.list_orders(flag=Flag.EMAIL_FAILED)] == [order_id]

    kit.mailer.send = send  # type: ignore[method-assign]
    kit.checkout.resend_email(order_id)
    assert [r.outcome for r in kit.checkout.run_due_jobs()] == ["done"]
    assert len(kit.mailer.sent) == 1
    assert order_of(kit, order_id).flags == frozenset()
    with pytest.raises(InvalidState):
        kit.checkout.resend_email(order_id)


def test_a_supplier_returning_too_few_keys_is_an_admin_matter(kit: Kit) -> None:
    order_id = paid_order(kit)
    kit.supplier.orders[order_id] = [SuppliedKey(product_ref="someone-else", secret=b"K")]
    runs = kit.checkout.run_due_jobs()
    assert [r.outcome for r in runs] == ["dead"]
    assert runs[0].error is not None
    assert "0 keys for kg-1002" in runs[0].error
    assert Flag.FULFILLMENT_FAILED in order_of(kit, order_id).flags


def test_memory_store_transactions_do_not_nest() -> None:
    store = MemoryStore()
    with store.transaction(), pytest.raises(RuntimeError, match="nest"), store.transaction():
        pass


# values -------------------------------------------------------------------------------------

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_values_refuse_what_cannot_be_right() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        Product(id="p", name="P", price=1.5, currency="usd", source=ProductSource.CUSTOM)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        Product(id="p", name="P", price=Decimal(0), currency="usd", source=ProductSource.CUSTOM)
    with pytest.raises(ValueError, match="supplier_ref"):
        Product(id="p", name="P", price=Decimal(1), currency="usd", source=ProductSource.KINGUIN)
    with pytest.raises(ValueError, match="quantity"):
        OrderItem(
            id="i",
            product_id="p",
            name="P",
            quantity=0,
            unit_price=Decimal(1),
            source=ProductSource.CUSTOM,
        )
    with pytest.raises(ValueError, match="at least one item"):
        Order(
            id="o",
            email="e",
            currency="usd",
            items=(),
            created_at=NOW,
            updated_at=NOW,
            access_token_hash="h",
        )
    with pytest.raises(ValueError, match="UTC"):
        Order(
            id="o",
            email="e",
            currency="usd",
            items=(),
            created_at=datetime(2026, 1, 1),  # noqa: DTZ001
            updated_at=NOW,
            access_token_hash="h",
        )


def test_a_checkout_without_an_observer_works() -> None:
    kit = make_kit()
    checkout = Checkout(
        store=kit.store,
        gateway=kit.gateway,
        supplier=kit.supplier,
        vault=kit.vault,
        mailer=kit.mailer,
        clock=kit.clock,
        config=kit.checkout.config,
        new_id=SequentialIds("bare"),
    )
    kit.checkout = checkout
    paid_order(kit)
    assert [r.outcome for r in checkout.run_due_jobs()] == ["done", "done"]
    assert kit.observer.events == [], "nothing went to the kit's observer"


def test_an_email_job_run_again_after_sending_sends_nothing(kit: Kit) -> None:
    order_id = paid_order(kit)
    kit.checkout.run_due_jobs()
    kit.checkout.run_due_jobs()
    with kit.store.transaction() as tx:
        job = tx.get_job(f"completion_email:{order_id}")
        assert job is not None
        tx.update_job(replace(job, state=JobState.PENDING))
    assert [r.outcome for r in kit.checkout.run_due_jobs()] == ["done"]
    assert len(kit.mailer.sent) == 1


def test_admin_and_reveal_refuse_unknown_things(kit: Kit) -> None:
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", 1)])
    with pytest.raises(NotFound, match="no item"):
        kit.checkout.reveal(created.order.id, "no-such-item", created.access_token)
    with pytest.raises(NotFound, match="no order"):
        kit.checkout.admin_order("no-such-order")
    with pytest.raises(InvalidInput, match="note"):
        kit.checkout.resolve(created.order.id, action="refund", note="x" * 2001)


def test_the_signature_header_is_found_among_others_in_any_case(kit: Kit) -> None:
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", 1)])
    payment = kit.checkout.open_payment(created.order.id, created.access_token).payment
    body = ipn_body(payment, "confirming")
    headers = {
        "Content-Type": "application/json",
        "X-NOWPayments-Sig": sign(body)["x-nowpayments-sig"],
    }
    assert kit.checkout.handle_ipn(body, headers).outcome is not WebhookOutcome.REJECTED


def test_errors_carry_their_data() -> None:
    error = ProviderError("provider said no", provider_code="INVALID_API_KEY", status=403)
    assert (error.code, error.status_hint, error.retryable) == ("provider_error", 502, False)
    assert (error.provider_code, error.status) == ("INVALID_API_KEY", 403)
    assert ProviderUnavailable("timeout").retryable


def test_a_worker_that_lost_its_lease_never_buys() -> None:
    kit = make_kit()
    order_id = paid_order(kit)
    stale = kit.checkout._lease_next()  # worker A takes the job, then stalls
    assert stale is not None
    kit.clock.advance(timedelta(minutes=3))  # A's lease runs out; B takes the job over
    kit.supplier.outage(1)
    assert [r.outcome for r in kit.checkout.run_due_jobs(worker="B")] == ["retry"]
    # A wakes up: the order is still paid, but A no longer owns the job.
    assert kit.checkout._run_job(stale, "A").outcome == "lost_lease"
    assert kit.supplier.calls == [order_id], "A checked its lease before any purchase"
    kit.clock.advance(timedelta(seconds=2))  # B's was attempt 2: the backoff is 2 s
    assert [r.outcome for r in kit.checkout.run_due_jobs(limit=1)] == ["done"]
    assert len(kit.supplier.orders) == 1


def test_one_pass_leases_each_job_just_before_running_it(kit: Kit) -> None:
    first, second = paid_order(kit), paid_order(kit, "celeste")
    leases: list[datetime | None] = []
    original = kit.supplier.fulfill

    def slow_fulfill(**call: object):
        leases.append(
            next(j.lease_until for j in kit.checkout.list_jobs() if j.state is JobState.RUNNING)
        )
        kit.clock.advance(timedelta(seconds=90))  # each purchase takes 90 s of the 120 s lease
        return original(**call)  # type: ignore[arg-type]

    kit.supplier.fulfill = slow_fulfill  # type: ignore[method-assign]
    kit.checkout.run_due_jobs()
    assert kit.supplier.calls == [first, second]
    assert leases[1] is not None
    assert leases[0] is not None
    assert leases[1] - leases[0] >= timedelta(seconds=90), "the second job's lease started later"


def test_the_sweeper_asks_the_provider_before_expiring(kit: Kit) -> None:
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", 1)])
    payment = kit.checkout.open_payment(created.order.id, created.access_token).payment
    # The customer paid; every IPN was lost. The sweeper finds out instead of expiring.
    kit.gateway.payments[payment.id] = ipn_body(payment, "finished")
    kit.clock.advance(timedelta(hours=1))
    assert kit.checkout.sweep() == []
    assert order_of(kit, created.order.id).status is OrderStatus.PAID
    assert kit.checkout.admin_order(created.order.id).webhooks[-1].reason.startswith("sweep")


def test_the_sweeper_waits_when_the_provider_does_not_answer(kit: Kit) -> None:
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", 1)])
    payment = kit.checkout.open_payment(created.order.id, created.access_token).payment
    saved = kit.gateway.payments.pop(payment.id)
    kit.clock.advance(timedelta(hours=1))
    assert kit.checkout.sweep() == []
    assert "sweep_failed" in kit.observer.names()
    kit.gateway.payments[payment.id] = saved  # the provider is back: still waiting
    assert kit.checkout.sweep() == [created.order.id]
    assert order_of(kit, created.order.id).status is OrderStatus.EXPIRED


def test_a_pool_key_uploaded_twice_is_sold_once(kit: Kit) -> None:
    assert kit.checkout.add_pool_keys("shop-gift", ["GIFT-A", "GIFT-A", " GIFT-B "]) == 2
    assert kit.checkout.add_pool_keys("shop-gift", ["GIFT-A", "GIFT-C"]) == 1
    with kit.store.transaction() as tx:
        assert tx.pool_size("shop-gift") == 3


def test_a_job_retried_at_once_waits_for_the_next_pass() -> None:
    kit = make_kit()
    kit.checkout._random = lambda: 0.0  # full jitter drew a zero delay
    order_id = paid_order(kit)
    kit.supplier.outage(1)
    assert [r.outcome for r in kit.checkout.run_due_jobs()] == ["retry"]
    assert kit.supplier.calls == [order_id], "not retried within the same pass"
    assert [r.outcome for r in kit.checkout.run_due_jobs()] == ["done", "done"]


def test_a_request_outliving_its_opening_lease_keeps_the_payment_bound_meanwhile(
    kit: Kit,
) -> None:
    created = kit.checkout.create_order(email="e@example.com", items=[("hades", 1)])
    taken_over = []

    def stall_past_the_lease() -> None:
        kit.clock.advance(kit.checkout.config.payment_opening_lease)
        taken_over.append(kit.checkout.open_payment(created.order.id, created.access_token))

    _use_gateway(kit, _RacingGateway(kit, stall_past_the_lease))
    late = kit.checkout.open_payment(created.order.id, created.access_token)
    assert taken_over[0].created
    assert (late.created, late.payment.id) == (False, taken_over[0].payment.id)
    assert order_of(kit, created.order.id).payment_id == taken_over[0].payment.id
