"""The payment provider's side of a scenario, for each provider the shop runs.

A scenario that applies to every provider takes the ``provider`` fixture (one run per
provider) and plays the provider through it: open the payment with it, pay, let the
money be seen, fail, expire, pay short, send every webhook twice, replay what was sent,
forge webhooks. NOWPayments is played through its sandbox's control API (and signed IPNs
where a step needs one the sandbox does not send); BTCPay Server through its sandbox's
controls, whose webhooks only tell the shop to read the invoice again.

Where the providers differ in what they say, the driver names it (``paid_status``,
``short_status``, ...); where they differ in how it happens, the driver does it the
provider's way (BTCPay keeps a short invoice open until it expires; its invoice window
ends before the shop's order expires).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
from steps import Placed, ipn_body, pay, provider_pay, send_ipn, sign

from bitloot_adapters.sandbox.btcpay import BtcPaySandbox, btcpay_signature
from support.servers import RunningServer

Signed = tuple[bytes, dict[str, str | bytes]]


def open_with(server: RunningServer, order: Placed, provider: str) -> dict[str, Any]:
    response = server.http.post(
        f"/api/orders/{order.id}/payment", json={"provider": provider}, headers=order.auth
    )
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()["payment"]
    assert payment["provider"] == provider
    return payment


def post_webhook(
    server: RunningServer, provider: str, body: bytes, headers: dict[str, str | bytes]
) -> httpx.Response:
    return server.http.post(f"/webhooks/{provider}", content=body, headers=headers)


@dataclass(frozen=True)
class NowPaymentsSide:
    name: str = "nowpayments"
    waiting_status: str = "waiting"
    seen_status: str = "confirming"
    paid_status: str = "finished"
    short_status: str = "partially_paid"
    failed_status: str = "failed"
    expired_status: str = "expired"
    late_status: str = "finished"
    webhooks_per_payment: int = 5

    def open(self, server: RunningServer, order: Placed) -> dict[str, Any]:
        return open_with(server, order, self.name)

    @staticmethod
    def deliveries(answer: dict[str, Any]) -> list[dict[str, Any]]:
        """The webhooks a ``/sandbox/payments/...`` control sent, from its answer."""
        sent: list[dict[str, Any]] = answer["ipns"]
        return sent

    def pay(self, server: RunningServer, payment_id: str) -> list[int | None]:
        return [ipn["answered"] for ipn in pay(server, payment_id)]

    def seen(self, server: RunningServer, payment_id: str) -> None:
        """The money is on its way, not yet confirmed."""
        assert send_ipn(server, payment_id, "confirming").json()["outcome"] == "applied"

    def confirm(self, server: RunningServer, payment_id: str) -> list[int | None]:
        """The money seen is confirmed: NOWPayments sends its whole sequence again."""
        return self.pay(server, payment_id)

    def invoices_created(self, server: RunningServer) -> int:
        assert server.shop.sandbox is not None
        calls = server.shop.sandbox.payments.calls
        return sum(1 for c in calls if c.method == "POST" and c.status == 201)

    def pay_short(self, server: RunningServer, payment_id: str, amount: Decimal) -> None:
        """``amount`` arrives and the payment is over: NOWPayments closes it at once."""
        pay(server, payment_id, amount)

    def pay_late(self, server: RunningServer, payment_id: str) -> list[int | None]:
        return self.pay(server, payment_id)

    def pay_twice(self, server: RunningServer, payment_id: str) -> list[int | None]:
        deliveries = provider_pay(server, payment_id, duplicate=True)
        return [d["answered"] for d in deliveries]

    def sent(self, server: RunningServer, payment_id: str) -> list[Signed]:
        assert server.shop.sandbox is not None
        return [
            (e.body, {"content-type": "application/json", "x-nowpayments-sig": e.signature})
            for e in server.shop.sandbox.payments.events
            if e.payment_id == payment_id
        ]

    def forgeries(self, server: RunningServer, payment_id: str, pay_amount: str) -> list[Signed]:
        genuine = ipn_body(server, payment_id, "finished")
        forged = ipn_body(server, payment_id, "finished", actually_paid=Decimal(pay_amount) * 10)
        real = sign(server, genuine)
        return [
            (forged, _np(real)),  # a real signature, for another body
            (genuine, {"content-type": "application/json"}),  # no signature header
            (genuine, _np("")),
            (genuine, _np(sign(server, genuine, secret="guessed-secret"))),
            (genuine, _np("00" * 64)),
            (genuine, _np(real[:-2])),  # wrong length
            (genuine, _np("zz" * 64)),  # not hex
            (genuine, _np((real[:-1] + "é").encode())),  # not ASCII
        ]

    def signed(self, server: RunningServer, body: bytes) -> dict[str, str | bytes]:
        return _np(sign(server, body))


def _np(signature: str | bytes) -> dict[str, str | bytes]:
    return {"content-type": "application/json", "x-nowpayments-sig": signature}


@dataclass(frozen=True)
class BtcPaySide:
    name: str = "btcpay"
    waiting_status: str = "New"
    seen_status: str = "Processing"
    paid_status: str = "Settled"
    short_status: str = "Expired/PaidPartial"
    failed_status: str = "Invalid"
    expired_status: str = "Expired"
    late_status: str = "Expired/PaidLate"
    webhooks_per_payment: int = 4

    def sandbox(self, server: RunningServer) -> BtcPaySandbox:
        assert server.shop.sandbox is not None
        assert server.shop.sandbox.btcpay is not None
        return server.shop.sandbox.btcpay

    def open(self, server: RunningServer, order: Placed) -> dict[str, Any]:
        return open_with(server, order, self.name)

    @staticmethod
    def deliveries(answer: dict[str, Any]) -> list[dict[str, Any]]:
        """The webhooks a ``/sandbox/payments/...`` control sent, from its answer."""
        sent: list[dict[str, Any]] = answer["webhooks"]
        return sent

    def pay(self, server: RunningServer, payment_id: str) -> list[int | None]:
        response = server.http.post(f"/sandbox/payments/{payment_id}/pay", json={})
        assert response.status_code == 200, response.text
        return [w["answered"] for w in response.json()["webhooks"]]

    def seen(self, server: RunningServer, payment_id: str) -> None:
        """The whole amount is seen on chain, not yet confirmed: the invoice is Processing."""
        answered = [d.answered for d in self.sandbox(server).pay(payment_id, confirm=False)]
        assert answered == [200, 200]

    def confirm(self, server: RunningServer, payment_id: str) -> list[int | None]:
        """A block confirms the payment: the invoice is Settled."""
        return [d.answered for d in self.sandbox(server).confirm(payment_id)]

    def invoices_created(self, server: RunningServer) -> int:
        calls = self.sandbox(server).calls
        return sum(1 for c in calls if c.method == "POST" and c.path.endswith("/invoices"))

    def pay_short(self, server: RunningServer, payment_id: str, amount: Decimal) -> None:
        """``amount`` arrives; BTCPay keeps the invoice open for the rest until it expires."""
        response = server.http.post(
            f"/sandbox/payments/{payment_id}/pay", json={"amount": str(amount)}
        )
        assert response.status_code == 200, response.text
        assert self.sandbox(server).invoice_state(payment_id) == ("New", "PaidPartial")
        expired = server.http.post(f"/sandbox/payments/{payment_id}/expire")
        assert expired.status_code == 200, expired.text

    def pay_late(self, server: RunningServer, payment_id: str) -> list[int | None]:
        """BTCPay's invoice window (15 minutes) ended long before the shop's order did."""
        if self.sandbox(server).invoice_state(payment_id)[0] == "New":
            self.sandbox(server).expire(payment_id)
        return self.pay(server, payment_id)

    def pay_twice(self, server: RunningServer, payment_id: str) -> list[int | None]:
        return [d.answered for d in self.sandbox(server).pay(payment_id, duplicate=True)]

    def sent(self, server: RunningServer, payment_id: str) -> list[Signed]:
        return [
            (w.body, {"content-type": "application/json", "BTCPay-Sig": w.signature})
            for w in self.sandbox(server).webhooks
            if w.invoice_id == payment_id
        ]

    def forgeries(self, server: RunningServer, payment_id: str, pay_amount: str) -> list[Signed]:
        del pay_amount  # BTCPay's webhooks carry no amounts to inflate
        secret = self.secret(server)
        settled = (
            b'{"deliveryId": "Forged1", "originalDeliveryId": "Forged1", '
            b'"type": "InvoiceSettled", "invoiceId": "' + payment_id.encode() + b'"}'
        )
        other = settled.replace(b"Forged1", b"Forged2")
        real = btcpay_signature(secret, settled)
        return [
            (other, _bp(real)),  # a real signature, for another body
            (settled, {"content-type": "application/json"}),  # no signature header
            (settled, _bp("")),
            (settled, _bp(btcpay_signature("guessed-secret", settled))),
            (settled, _bp("sha256=" + "00" * 32)),
            (settled, _bp(real.removeprefix("sha256="))),  # no scheme
            (settled, _bp(real[:-2])),  # wrong length
            (settled, _bp((real[:-1] + "é").encode())),  # not ASCII
        ]

    def signed(self, server: RunningServer, body: bytes) -> dict[str, str | bytes]:
        return _bp(btcpay_signature(self.secret(server), body))

    @staticmethod
    def secret(server: RunningServer) -> str:
        assert server.shop.settings.btcpay is not None
        return server.shop.settings.btcpay.webhook_secret


def _bp(signature: str | bytes) -> dict[str, str | bytes]:
    return {"content-type": "application/json", "BTCPay-Sig": signature}


PaymentSide = NowPaymentsSide | BtcPaySide
SIDES: dict[str, PaymentSide] = {"nowpayments": NowPaymentsSide(), "btcpay": BtcPaySide()}
