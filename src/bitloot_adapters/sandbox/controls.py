"""The sandbox's control panel: what the ``/sandbox/...`` routes do to a sandbox shop.

Pay, fail or expire a sandbox payment, whichever provider's sandbox holds it (that
sandbox then posts its signed webhooks to the shop), move the shop's clock and run the
worker once, make Kinguin fail for a while. It is apart from the shop: a live shop has
none.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from bitloot_adapters.sandbox.btcpay import SandboxRefused
from bitloot_core.errors import InvalidState, NotFound

if TYPE_CHECKING:
    from bitloot_adapters.sandbox.btcpay import BtcPaySandbox, WebhookDelivery
    from bitloot_adapters.sandbox.kinguin import KinguinSandbox
    from bitloot_adapters.sandbox.nowpayments import IpnDelivery, NowPaymentsSandbox
    from bitloot_adapters.sandbox.server import SandboxServer
    from bitloot_adapters.worker import Worker


@runtime_checkable
class AdjustableClock(Protocol):
    """A clock the sandbox can move forward (``OffsetClock``, a test's settable clock)."""

    def now(self) -> datetime: ...
    def advance(self, delta: timedelta) -> datetime: ...


class SandboxPanel(Protocol):
    """What the ``/sandbox/...`` routes drive: the sandboxes in this process
    (``SandboxControls``) or a ``bitloot sandbox`` elsewhere (``RemoteSandbox``)."""

    def pay(
        self, payment_id: str, amount: Decimal | None, *, wait: bool = True
    ) -> dict[str, object]: ...
    def send(
        self, payment_id: str, action: Literal["fail", "expire"], *, wait: bool = True
    ) -> dict[str, object]: ...
    def advance_clock(self, seconds: Decimal, *, wait: bool = True) -> dict[str, object]: ...
    def kinguin_outage(self, failures: int) -> dict[str, object]: ...
    def kinguin_key_delay(self, seconds: Decimal) -> dict[str, object]: ...
    def kinguin_latency(self, seconds: Decimal) -> dict[str, object]: ...
    def kinguin_orders(self) -> list[dict[str, object]]: ...
    def kinguin_stock(self, product_id: str, qty: int) -> dict[str, object]: ...


class SandboxControls:
    def __init__(
        self,
        *,
        payments: NowPaymentsSandbox,
        supplier: KinguinSandbox,
        servers: tuple[SandboxServer, ...],
        clock: AdjustableClock,
        worker: Worker | None,
        btcpay: BtcPaySandbox | None = None,
    ) -> None:
        """``worker``: the shop's, run once after the clock moves; None for a sandbox
        of its own (``bitloot sandbox``), which serves shops with workers elsewhere."""
        self.payments = payments
        self.btcpay = btcpay
        self.supplier = supplier
        # The NOWPayments and Kinguin sandboxes' servers, then BTCPay's when it runs.
        self.servers = servers
        self.clock = clock
        self._worker = worker

    def pay(
        self, payment_id: str, amount: Decimal | None, *, wait: bool = True
    ) -> dict[str, object]:
        """The customer pays ``amount`` in the pay currency (the whole amount when None);
        with ``wait``, NOWPayments' IPNs are answered by the time this returns (else they
        go out after it returns)."""
        btcpay = self._btcpay_holding(payment_id)
        if btcpay is not None:
            return _webhooks_sent(lambda: btcpay.pay(payment_id, amount))
        return _sent(self.payments.pay(self._known(payment_id), amount, wait=_wait(wait)))

    def send(
        self, payment_id: str, action: Literal["fail", "expire"], *, wait: bool = True
    ) -> dict[str, object]:
        btcpay = self._btcpay_holding(payment_id)
        if btcpay is not None:
            move = btcpay.fail if action == "fail" else btcpay.expire
            return _webhooks_sent(lambda: move(payment_id))
        send = self.payments.fail if action == "fail" else self.payments.expire
        return _sent(send(self._known(payment_id), wait=_wait(wait)))

    def _known(self, payment_id: str) -> str:
        if payment_id not in self.payments.payment_ids:
            raise NotFound(f"no sandbox payment {payment_id!r}")
        return payment_id

    def _btcpay_holding(self, payment_id: str) -> BtcPaySandbox | None:
        """The BTCPay sandbox when the payment is one of its invoices."""
        if self.btcpay is not None and payment_id in self.btcpay.invoice_ids:
            return self.btcpay
        return None

    def advance_clock(self, seconds: Decimal, *, wait: bool = True) -> dict[str, object]:
        """Move the clock forward, then run one worker pass with the sweeper forced.

        Kinguin tells the shop about orders whose keys arrived meanwhile (its
        ``order.status`` webhook): before the pass with ``wait``, else from a thread of
        its own (a single-threaded server cannot take it while this request runs)."""
        now = self.clock.advance(timedelta(seconds=float(seconds)))
        if wait:
            self.supplier.send_webhooks()
        else:
            threading.Thread(
                target=self.supplier.send_webhooks, name="sandbox-kinguin-webhooks", daemon=True
            ).start()
        if self._worker is None:
            return {"now": now, "swept": [], "jobs": []}
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

    def kinguin_latency(self, seconds: Decimal) -> dict[str, object]:
        """Every Kinguin API call answers ``seconds`` late from now on; 0 ends it."""
        self.supplier.latency = float(seconds)
        return {"seconds": seconds}

    def kinguin_orders(self) -> list[dict[str, object]]:
        """Every order Kinguin received, oldest first."""
        return list(self.supplier.received_orders())

    def kinguin_stock(self, product_id: str, qty: int) -> dict[str, object]:
        """What Kinguin's offers hold of ``product_id`` (Kinguin's productId)."""
        try:
            self.supplier.set_stock(product_id, qty)
        except KeyError:
            raise NotFound(f"no Kinguin product {product_id!r}") from None
        return {"product_id": product_id, "qty": qty}


def _webhooks_sent(act: Callable[[], list[WebhookDelivery]]) -> dict[str, object]:
    """What a BTCPay invoice's control sent; a move BTCPay would never make is a 409."""
    try:
        deliveries = act()
    except SandboxRefused as exc:
        raise InvalidState(str(exc)) from None
    return {"webhooks": [{"type": d.type, "answered": d.answered} for d in deliveries]}


def _wait(wait: bool) -> float | None:
    return None if wait else 0.0


def _sent(deliveries: list[IpnDelivery]) -> dict[str, object]:
    return {"ipns": [{"status": d.status, "answered": d.answered} for d in deliveries]}
