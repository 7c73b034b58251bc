"""A hypothesis state machine over the whole ``Checkout``: customers, the payment
provider (IPNs of any status, in any order, duplicated, short, full, twice, refunded),
the clock, workers, a failing supplier and mailer, and the admin.

After every step it checks the money invariants:

- no order is fulfilled without a full payment, or an admin decision (``marked``);
- the supplier sells each order at most once (one set of keys per order);
- no key is delivered twice, nor to two orders;
- at most one completion email per order, and exactly one per fulfilled order once the
  workers ran with a working mail server;
- no status goes back, but a refund failing a paid order (chart rule 11);
- a refused request leaves no order behind.

``make_machine(store_factory)`` builds it over any ``Store`` (the fakes', SQLite's).
More examples run under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import ClassVar

from checkout_kit import IPN_SECRET, SIGNING_KEY, ipn_body, sign
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from bitloot_core.chart import PROGRESS, TERMINAL, Flag, OrderStatus, PaymentStatus
from bitloot_core.errors import BitlootError
from bitloot_core.ports import Store
from bitloot_core.service import Checkout, CheckoutConfig, CreatedOrder
from bitloot_core.testing import (
    FakeGateway,
    FakeSupplier,
    MemoryVault,
    RecordingMailer,
    SequentialIds,
    SettableClock,
)
from bitloot_core.values import Product, ProductSource

CI = os.environ.get("CI", "").lower() == "true"
MACHINE_SETTINGS = settings(
    max_examples=100 if CI else 15,
    stateful_step_count=30 if CI else 25,
    deadline=None,
)

PRODUCTS = (
    Product(
        id="game",
        name="Game",
        price=Decimal("19.99"),
        currency="usd",
        source=ProductSource.KINGUIN,
        supplier_ref="kg-1",
    ),
    Product(
        id="gift", name="Gift", price=Decimal("10.00"), currency="usd", source=ProductSource.CUSTOM
    ),
)
STATUSES = [
    "waiting",
    "confirming",
    "confirmed",
    "finished",
    "partially_paid",
    "expired",
    "failed",
    "refunded",
]
AMOUNTS = {"none": Decimal(0), "short": Decimal("0.5"), "full": Decimal(1), "twice": Decimal(2)}


class CheckoutMachine(RuleBasedStateMachine):
    orders = Bundle("orders")
    # The store each example starts with (an empty shop); ``make_machine`` sets it.
    store_factory: ClassVar[Callable[[], Store]]

    def __init__(self) -> None:
        super().__init__()
        self.clock = SettableClock()
        self.gateway = FakeGateway()
        self.supplier = FakeSupplier()
        self.vault = MemoryVault(SIGNING_KEY)
        self.mailer = RecordingMailer()
        self.checkout = Checkout(
            store=type(self).store_factory(),
            gateway=self.gateway,
            supplier=self.supplier,
            vault=self.vault,
            mailer=self.mailer,
            clock=self.clock,
            config=CheckoutConfig(
                ipn_secret=IPN_SECRET, signing_key=SIGNING_KEY, public_url="https://s.example"
            ),
            new_id=SequentialIds("m"),
        )
        for product in PRODUCTS:
            self.checkout.save_product(product)
        self.checkout.add_pool_keys("gift", [f"GIFT-{n}" for n in range(3)])
        self.seen: dict[str, OrderStatus] = {}
        self.admin_moved: set[str] = set()
        self.pool_serial = 3

    # --- customers -----------------------------------------------------------------

    @rule(target=orders, product=st.sampled_from(["game", "gift"]), quantity=st.integers(1, 2))
    def create_order(self, product: str, quantity: int) -> CreatedOrder | None:
        before = len(self.checkout.list_orders())
        try:
            return self.checkout.create_order(
                email="buyer@example.com", items=[(product, quantity)]
            )
        except BitlootError:
            assert len(self.checkout.list_orders()) == before, "a refusal left an order"
            return None

    @rule(
        target=orders,
        product=st.sampled_from(["game", "gift"]),
        status=st.sampled_from(["finished", "partially_paid", "confirming"]),
        amount=st.sampled_from(sorted(AMOUNTS)),
    )
    def checkout_and_pay(self, product: str, status: str, amount: str) -> CreatedOrder | None:
        """A whole checkout in one step, so deep states come within a few steps."""
        created = self.create_order(product, 1)
        self.open_payment(created)
        self.ipn(created, status, amount, child=False)
        return created

    @rule(created=orders)
    def open_payment(self, created: CreatedOrder | None) -> None:
        if created is None:
            return
        with contextlib.suppress(BitlootError):
            self.checkout.open_payment(created.order.id, created.access_token)

    # --- the payment provider ------------------------------------------------------

    @rule(
        created=orders,
        status=st.sampled_from(STATUSES),
        amount=st.sampled_from(sorted(AMOUNTS)),
        child=st.booleans(),
    )
    def ipn(self, created: CreatedOrder | None, status: str, amount: str, child: bool) -> None:
        if created is None:
            return
        payment = self.checkout.get_order(created.order.id, created.access_token).payment
        if payment is None:
            return
        extra: dict[str, object] = {}
        if child:
            extra = {"payment_id": int(payment.id) + 1000, "parent_payment_id": int(payment.id)}
        body = ipn_body(payment, status, payment.pay_amount * AMOUNTS[amount], **extra)
        self.checkout.handle_ipn(body, sign(body))

    # --- time and workers ----------------------------------------------------------

    @rule(minutes=st.sampled_from([1, 16, 61]))
    def advance(self, minutes: int) -> None:
        self.clock.advance(timedelta(minutes=minutes))

    @rule()
    def sweep(self) -> None:
        self.checkout.sweep()

    @rule()
    def reconcile(self) -> None:
        self.checkout.reconcile()

    @rule()
    def run_jobs(self) -> None:
        self.checkout.run_due_jobs()

    @rule(failures=st.integers(1, 6))
    def supplier_outage(self, failures: int) -> None:
        self.supplier.outage(failures)

    @rule(failures=st.integers(1, 3))
    def mailer_outage(self, failures: int) -> None:
        self.mailer.fail_next += failures

    @rule()
    def restock(self) -> None:
        self.pool_serial += 1
        self.checkout.add_pool_keys("gift", [f"GIFT-{self.pool_serial}"])

    # --- the admin -----------------------------------------------------------------

    @rule(created=orders, action=st.sampled_from(["fulfill", "refund", "retry", "resend"]))
    def admin(self, created: CreatedOrder | None, action: str) -> None:
        if created is None:
            return
        order_id = created.order.id
        try:
            if action == "retry":
                self.checkout.retry_fulfillment(order_id)
            elif action == "resend":
                self.checkout.resend_email(order_id)
            else:
                self.checkout.resolve(order_id, action=action, note="machine")
        except BitlootError:
            return
        self.admin_moved.add(order_id)

    # --- invariants ----------------------------------------------------------------

    @invariant()
    def money_is_safe(self) -> None:
        delivered: dict[bytes, str] = {}
        for order in self.checkout.list_orders():
            payments = self.checkout.admin_order(order.id).payments
            if order.status is OrderStatus.FULFILLED:
                paid = any(p.status is PaymentStatus.FINISHED for p in payments)
                assert paid or Flag.MARKED in order.flags, order
            for item in order.items:
                for key in item.keys:
                    secret, _ = self.vault.read(key.ref)
                    assert delivered.setdefault(secret, order.id) == order.id, "key twice"
                assert len(item.keys) <= item.quantity
            mails = [m for m in self.mailer.sent if f"/order/{order.id}?" in m.text]
            assert len(mails) <= 1, f"{len(mails)} completion emails for {order.id}"
            self._no_downgrade(order.id, order.status, order.flags)
        for order_id, keys in self.supplier.orders.items():
            assert len({k.secret for k in keys}) == len(keys)
            assert order_id in {o.id for o in self.checkout.list_orders()}

    def _no_downgrade(self, order_id: str, status: OrderStatus, flags: frozenset[Flag]) -> None:
        before = self.seen.get(order_id)
        self.seen[order_id] = status
        if before is None or before is status or order_id in self.admin_moved:
            self.admin_moved.discard(order_id)
            return
        refund = before is OrderStatus.PAID and status is OrderStatus.FAILED
        if refund:
            assert Flag.REFUNDED in flags
            return
        assert before not in TERMINAL, (before, status)
        if before in PROGRESS and status in PROGRESS:
            assert PROGRESS[status] > PROGRESS[before], (before, status)

    def teardown(self) -> None:
        # With a working supplier and mail server, every fulfilled order gets its one
        # email once the workers ran.
        self.supplier.fail_next.clear()
        self.mailer.fail_next = 0
        for _ in range(10):
            self.clock.advance(timedelta(minutes=10))
            if not self.checkout.run_due_jobs():
                break
        for order in self.checkout.list_orders():
            mails = [m for m in self.mailer.sent if f"/order/{order.id}?" in m.text]
            if order.status is OrderStatus.FULFILLED and Flag.EMAIL_FAILED not in order.flags:
                assert len(mails) == 1, order.id
        self.money_is_safe()


def make_machine(
    store_factory: Callable[[], Store], machine_settings: settings = MACHINE_SETTINGS
) -> type[RuleBasedStateMachine]:
    """The machine over stores made by ``store_factory``, run with ``machine_settings``."""
    machine = type(
        "CheckoutMachine", (CheckoutMachine,), {"store_factory": staticmethod(store_factory)}
    )
    machine.TestCase.settings = machine_settings
    return machine
