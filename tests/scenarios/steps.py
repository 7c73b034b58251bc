"""Steps shared by the seed scenarios: a customer, NOWPayments and an admin, over HTTP.

Every action goes through the example server's HTTP API or its sandbox control API
(``/sandbox/...``), or through the NOWPayments sandbox's own control endpoint for the
delivery options the shop's API does not expose (duplicated or shuffled IPNs). Assertions
may also read what the shop leaves behind: the ``.eml`` files in ``<data dir>/mail``, the
vault files, the SQLite webhook log, and the sandboxes' logs of calls and IPNs.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import httpx

from bitloot_core.providers.nowpayments import canonical_json
from support.servers import RunningServer

T = TypeVar("T")

DEADLINE: Final = 15.0
POLL: Final = 0.02
EMAIL: Final = "buyer@example.com"

# What the customer sees, in the seed's words, for each order status.
SEED_TEXT: Final = {
    "created": "Waiting for payment...",
    "waiting": "Waiting for payment...",
    "confirming": "Payment confirming...",
    "paid": "Payment confirmed!",
    "fulfilled": "Payment confirmed!",
    "expired": "Order Expired",
    "failed": "Payment Failed",
    "underpaid": "Underpaid - Payment Insufficient",
}
# Order statuses in the order progress moves (the off-path ones never come back).
PROGRESS: Final = ("created", "waiting", "confirming", "paid", "fulfilled")

_NO_SIGNATURE: Final = object()


class StartServer(Protocol):
    """The ``start_server`` fixture: a fresh server with its own env and data dir."""

    def __call__(
        self, env: Mapping[str, str] | None = None, *, worker: bool = True
    ) -> RunningServer: ...


def words(text: str) -> str:
    """``text`` as compared with the seed: case, ellipsis and dash style do not matter."""
    for fancy, plain in (("\u2026", "..."), ("\u2014", "-"), ("\u2013", "-")):
        text = text.replace(fancy, plain)
    return " ".join(text.split()).casefold()


def assert_seen(
    order: dict[str, Any],
    status: str,
    payment_status: str | None,
    *,
    provider_status: str | None = None,
) -> None:
    """The order, its payment record and the text the customer sees are as the seed says."""
    payment = order["payment"]
    seen = (order["status"], payment and payment["status"])
    assert seen == (status, payment_status), f"order {order['id']}: {seen}"
    assert words(order["status_text"]) == words(SEED_TEXT[status]), order["status_text"]
    if provider_status is not None:
        assert payment is not None
        assert payment["provider_status"] == provider_status


# --- the customer ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """An order as its customer holds it: the id and the access token."""

    id: str
    token: str
    body: dict[str, Any]

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def item_ids(self) -> list[str]:
        return [item["id"] for item in self.body["items"]]


def create_order(
    server: RunningServer,
    *items: tuple[str, int],
    email: str = EMAIL,
    idempotency_key: str | None = None,
    client: httpx.Client | None = None,
) -> httpx.Response:
    headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
    body = {
        "email": email,
        "items": [{"product_id": p, "quantity": q} for p, q in items or [("stardew-valley", 1)]],
    }
    return (client or server.http).post("/api/orders", json=body, headers=headers)


def place_order(server: RunningServer, *items: tuple[str, int], email: str = EMAIL) -> Placed:
    response = create_order(server, *items, email=email)
    assert response.status_code == 201, response.text
    body = response.json()
    return Placed(id=body["id"], token=body["access_token"], body=body)


def open_payment(server: RunningServer, order: Placed) -> dict[str, Any]:
    response = server.http.post(f"/api/orders/{order.id}/payment", headers=order.auth)
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()["payment"]
    return payment


def checkout(server: RunningServer, *items: tuple[str, int]) -> tuple[Placed, dict[str, Any]]:
    """Order ``items`` and open the payment widget."""
    order = place_order(server, *items)
    return order, open_payment(server, order)


def get_order(
    server: RunningServer, order: Placed, client: httpx.Client | None = None
) -> dict[str, Any]:
    response = (client or server.http).get(f"/api/orders/{order.id}", params={"token": order.token})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_until(
    probe: Callable[[], T], done: Callable[[T], bool], what: str, timeout: float = DEADLINE
) -> T:
    """Call ``probe`` until ``done`` holds for its answer; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {value!r}"[:2000])
        time.sleep(POLL)


def wait_for(
    server: RunningServer, order: Placed, status: str, timeout: float = DEADLINE
) -> dict[str, Any]:
    """Poll the order as the customer's page does until it reaches ``status``."""
    return wait_until(
        lambda: get_order(server, order),
        lambda body: body["status"] == status,
        f"order {order.id} to be {status}",
        timeout,
    )


def settle(server: RunningServer, order: Placed, timeout: float = DEADLINE) -> dict[str, Any]:
    """Wait until none of the order's jobs is pending or running; the admin view."""
    return wait_until(
        lambda: admin_order(server, order.id),
        lambda view: all(job["state"] in {"done", "dead"} for job in view["jobs"]),
        f"the jobs of order {order.id} to finish",
        timeout,
    )


def reveal(server: RunningServer, order: Placed, item_id: str) -> httpx.Response:
    return server.http.post(f"/api/orders/{order.id}/items/{item_id}/reveal", headers=order.auth)


# --- NOWPayments (the sandbox) --------------------------------------------------------------


def pay(
    server: RunningServer, payment_id: str, amount: Decimal | None = None
) -> list[dict[str, Any]]:
    """The customer pays (the full amount unless ``amount``); the sandbox sends the IPNs."""
    body = {} if amount is None else {"amount": str(amount)}
    response = server.http.post(f"/sandbox/payments/{payment_id}/pay", json=body)
    assert response.status_code == 200, response.text
    ipns: list[dict[str, Any]] = response.json()["ipns"]
    return ipns


def fail(server: RunningServer, payment_id: str) -> list[dict[str, Any]]:
    response = server.http.post(f"/sandbox/payments/{payment_id}/fail")
    assert response.status_code == 200, response.text
    ipns: list[dict[str, Any]] = response.json()["ipns"]
    return ipns


def expire(server: RunningServer, payment_id: str) -> list[dict[str, Any]]:
    response = server.http.post(f"/sandbox/payments/{payment_id}/expire")
    assert response.status_code == 200, response.text
    ipns: list[dict[str, Any]] = response.json()["ipns"]
    return ipns


def provider_pay(server: RunningServer, payment_id: str, **options: object) -> list[dict[str, Any]]:
    """Pay through the NOWPayments sandbox's own control endpoint (``duplicate``, ``shuffle``)."""
    assert server.shop.sandbox is not None
    url = f"{server.shop.sandbox.servers[0].url}/sandbox/payments/{payment_id}/pay"
    response = server.http.post(url, json=options)
    assert response.status_code == 200, response.text
    deliveries: list[dict[str, Any]] = response.json()["deliveries"]
    return deliveries


def ipn_body(
    server: RunningServer,
    payment_id: str,
    status: str,
    /,
    *,
    actually_paid: Decimal | None = None,
    **fields: object,
) -> bytes:
    """An IPN body as NOWPayments prints it, for the payment as the sandbox knows it.

    ``actually_paid`` defaults to nothing for ``waiting`` and the full amount otherwise;
    ``fields`` replace any other field of the body (``order_id``, ``payment_id``, ...).
    """
    assert server.shop.sandbox is not None
    body = json.loads(server.shop.sandbox.payments.ipn_body(payment_id), parse_float=Decimal)
    pay_amount = Decimal(body["pay_amount"])
    if actually_paid is None:
        actually_paid = Decimal(0) if status == "waiting" else pay_amount
    body.update(payment_status=status, actually_paid=actually_paid)
    body["outcome_amount"] = actually_paid
    body.update(fields)
    return canonical_json(body).encode()


def sign(server: RunningServer, body: bytes, secret: str | None = None) -> str:
    key = (secret or server.shop.settings.ipn_secret).encode()
    return hmac.new(key, body, hashlib.sha512).hexdigest()


def post_ipn(
    server: RunningServer, body: bytes, signature: object = _NO_SIGNATURE
) -> httpx.Response:
    """POST ``body`` to the webhook, signed with the shop's IPN secret unless ``signature``
    is given (``None``: no signature header at all; bytes: sent as they are)."""
    if signature is _NO_SIGNATURE:
        signature = sign(server, body)
    headers: dict[str, str | bytes] = {"content-type": "application/json"}
    if isinstance(signature, bytes):
        headers["x-nowpayments-sig"] = signature
    elif signature is not None:
        headers["x-nowpayments-sig"] = str(signature)
    return server.http.post("/webhooks/nowpayments", content=body, headers=headers)


def send_ipn(
    server: RunningServer, payment_id: str, status: str, /, **fields: Any
) -> httpx.Response:
    """A signed IPN of ``status`` for the payment; see ``ipn_body`` for ``fields``."""
    return post_ipn(server, ipn_body(server, payment_id, status, **fields))


# --- the sandbox clock, the supplier and the worker ------------------------------------------


def advance(server: RunningServer, seconds: float) -> dict[str, Any]:
    """Move the server's clock forward; it runs what became due (jobs, sweeper)."""
    response = server.http.post("/sandbox/clock/advance", json={"seconds": seconds})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def run_jobs(server: RunningServer) -> list[dict[str, Any]]:
    """One worker pass without moving the clock: the jobs it ran and their outcomes."""
    jobs: list[dict[str, Any]] = advance(server, 0)["jobs"]
    return jobs


def kinguin_outage(server: RunningServer, failures: int) -> None:
    response = server.http.post("/sandbox/kinguin/outage", json={"failures": failures})
    assert response.status_code == 200, response.text


def kinguin_calls(server: RunningServer, order_id: str | None = None) -> list[Any]:
    assert server.shop.sandbox is not None
    return [
        call
        for call in server.shop.sandbox.supplier.calls
        if order_id is None or call.order_external_id == order_id
    ]


def kinguin_orders_placed(server: RunningServer, order_id: str | None = None) -> int:
    """Kinguin orders actually placed (``POST /v2/order`` answered 201), for ``order_id``."""
    return sum(
        1
        for call in kinguin_calls(server, order_id)
        if call.method == "POST" and call.path.rstrip("/") == "/v2/order" and call.status == 201
    )


def ipns_sent(server: RunningServer, payment_id: str) -> list[Any]:
    assert server.shop.sandbox is not None
    return [e for e in server.shop.sandbox.payments.events if e.payment_id == payment_id]


# --- the admin ------------------------------------------------------------------------------


def admin_order(server: RunningServer, order_id: str) -> dict[str, Any]:
    response = server.http.get(f"/api/admin/orders/{order_id}", headers=server.admin)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def jobs_of(server: RunningServer, order_id: str) -> dict[str, dict[str, Any]]:
    """The order's jobs by kind (``fulfill``, ``completion_email``)."""
    return {job["kind"]: job for job in admin_order(server, order_id)["jobs"]}


def admin_list(server: RunningServer, path: str, **query: str) -> list[dict[str, Any]]:
    response = server.http.get(f"/api/admin/{path}", params=query, headers=server.admin)
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


def webhook_log(server: RunningServer) -> list[dict[str, Any]]:
    """Every row of the shop's webhook log, read from its database past the shop."""
    return server.rows("SELECT * FROM webhooks ORDER BY seq")


# --- the mailer -----------------------------------------------------------------------------


def mail_files(server: RunningServer) -> list[Path]:
    return sorted((server.shop.settings.data_dir / "mail").glob("*.eml"))


def read_mail(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def mails_for(server: RunningServer, order_id: str) -> list[EmailMessage]:
    return [m for p in mail_files(server) if order_id in str((m := read_mail(p))["Subject"])]


def mail_parts(message: EmailMessage) -> tuple[str, str]:
    """The text and HTML bodies of a completion email."""
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None
    assert html is not None
    return str(text.get_content()), str(html.get_content())


def assert_completion_email(server: RunningServer, order: Placed) -> EmailMessage:
    """Exactly one email for the order, listing every item with its "View keys" link
    (the order page on the shop's public URL, with the order's access token)."""
    messages = mails_for(server, order.id)
    assert len(messages) == 1, [m["Message-ID"] for m in messages]
    message = messages[0]
    assert message["To"] == order.body["email"]
    text, html = mail_parts(message)
    link = f"{server.shop.settings.public_url}/order/{order.id}?token={order.token}"
    for item in order.body["items"]:
        anchor = f"{link}#item-{item['id']}"
        assert f"{item['name']} x{item['quantity']}: View keys {anchor}" in text
        assert f'href="{anchor.replace("&", "&amp;")}">View keys</a>' in html
    return message


def progress_only_forward(statuses: Iterable[str]) -> bool:
    """True when ``statuses`` (as seen, in order) never move back along the progress path."""
    ranks = [PROGRESS.index(s) for s in statuses if s in PROGRESS]
    return ranks == sorted(ranks)
