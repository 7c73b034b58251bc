"""The sandbox's control panel: what the ``/sandbox/...`` routes do to a sandbox shop.

Pay, fail or expire a sandbox payment (the sandbox then posts its signed IPNs to the
shop), move the shop's clock and run the worker once, make Kinguin fail for a while. It
is apart from the shop: a live shop has none.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from bitloot_core.errors import NotFound

if TYPE_CHECKING:
    from bitloot_adapters.sandbox.kinguin import KinguinSandbox
    from bitloot_adapters.sandbox.nowpayments import IpnDelivery, NowPaymentsSandbox
    from bitloot_adapters.sandbox.server import SandboxServer
    from bitloot_adapters.worker import Worker


@runtime_checkable
class AdjustableClock(Protocol):
    """A clock the sandbox can move forward (``OffsetClock``, a test's settable clock)."""

    def now(self) -> datetime: ...
    def advance(self, delta: timedelta) -> datetime: ...


class SandboxControls:
    def __init__(
        self,
        *,
        payments: NowPaymentsSandbox,
        supplier: KinguinSandbox,
        servers: tuple[SandboxServer, SandboxServer],
        clock: AdjustableClock,
        worker: Worker,
    ) -> None:
        self.payments = payments
        self.supplier = supplier
        # The NOWPayments and Kinguin sandboxes' servers, in that order.
        self.servers = servers
        self.clock = clock
        self._worker = worker

    def pay(self, payment_id: str, amount: Decimal | None) -> dict[str, object]:
        """The customer pays ``amount`` (the whole amount when None)."""
        return _sent(self.payments.pay(self._known(payment_id), amount))

    def send(self, payment_id: str, action: Literal["fail", "expire"]) -> dict[str, object]:
        send = self.payments.fail if action == "fail" else self.payments.expire
        return _sent(send(self._known(payment_id)))

    def _known(self, payment_id: str) -> str:
        if payment_id not in self.payments.payment_ids:
            raise NotFound(f"no sandbox payment {payment_id!r}")
        return payment_id

    def advance_clock(self, seconds: Decimal) -> dict[str, object]:
        """Move the clock forward, then run one worker pass with the sweeper forced."""
        now = self.clock.advance(timedelta(seconds=float(seconds)))
        # Kinguin tells the shop about orders whose keys arrived meanwhile (order.status).
        self.supplier.send_webhooks()
        done = self._worker.run_once(force_sweep=True)
        return {
            "now": now,
            "swept": done.swept,
            "jobs": [{"key": r.key, "outcome": r.outcome} for r in done.jobs],
        }

    def kinguin_outage(self, failures: int) -> dict[str, object]:
        """The next ``failures`` Kinguin calls fail with 503; replaces any pending outage."""
        self.supplier.clear_outage()
        if failures:
            self.supplier.outage(failures, mode="503")
        return {"failures": failures}

    def kinguin_key_delay(self, seconds: Decimal) -> dict[str, object]:
        """Kinguin orders placed from now on deliver their keys over ``seconds``."""
        self.supplier.key_delay = float(seconds)
        return {"seconds": seconds}

    def kinguin_stock(self, product_id: str, qty: int) -> dict[str, object]:
        """What Kinguin's offers hold of ``product_id`` (Kinguin's productId)."""
        try:
            self.supplier.set_stock(product_id, qty)
        except KeyError:
            raise NotFound(f"no Kinguin product {product_id!r}") from None
        return {"product_id": product_id, "qty": qty}


def _sent(deliveries: list[IpnDelivery]) -> dict[str, object]:
    return {"ipns": [{"status": d.status, "answered": d.answered} for d in deliveries]}
