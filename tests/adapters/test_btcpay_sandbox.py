"""The BTCPay sandbox: signed webhooks as BTCPay sends them, the invoice life cycle,
redeliveries and out-of-order delivery, and the Greenfield shapes, over real loopback HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from bitloot_adapters.sandbox import SandboxRequest, SandboxResponse, SandboxServer
from bitloot_adapters.sandbox.btcpay import BtcPaySandbox, btcpay_signature
from bitloot_core.testing import SettableClock

API_KEY = "btcpay-sandbox-key-0123"
STORE = "StoreForTests0000000000000000000000000000000"
SECRET = "webhook-secret-for-tests"
START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
AUTH = {"Authorization": f"token {API_KEY}"}
INVOICES = f"/api/v1/stores/{STORE}/invoices"


class Receiver:
    """A webhook endpoint on loopback: records each request, answers as planned."""

    def __init__(self) -> None:
        self.requests: list[SandboxRequest] = []
        self.answers: list[int] = []
        self._lock = threading.Lock()

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        with self._lock:
            self.requests.append(request)
            status = self.answers.pop(0) if self.answers else 200
        return SandboxResponse(status=status, body=b"{}")

    def bodies(self) -> list[dict[str, object]]:
        return [json.loads(request.body) for request in self.requests]

    def types(self) -> list[str]:
        return [str(body["type"]) for body in self.bodies()]


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, SandboxServer]]:
    app = Receiver()
    with SandboxServer(app) as server:
        yield app, server


@pytest.fixture
def hook(receiver: tuple[Receiver, SandboxServer]) -> Receiver:
    return receiver[0]


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(START)


def make_sandbox(http, receiver, clock, **options) -> BtcPaySandbox:
    return BtcPaySandbox(
        api_key=API_KEY,
        store_id=STORE,
        http=http,
        clock=clock,
        webhook_url=f"{receiver[1].url}/webhooks/btcpay",
        webhook_secret=SECRET,
        **options,
    )


@pytest.fixture
def sandbox(http, receiver, clock) -> BtcPaySandbox:
    return make_sandbox(http, receiver, clock)


@pytest.fixture
def server(sandbox: BtcPaySandbox) -> Iterator[SandboxServer]:
    with SandboxServer(sandbox) as running:
        yield running


def new_invoice(http, server, amount="19.99", **checkout) -> dict[str, object]:
    body: dict[str, object] = {"amount": amount, "currency": "USD", "metadata": {"orderId": "o1"}}
    if checkout:
        body["checkout"] = checkout
    response = http.post(server.url + INVOICES, json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def invoice_of(http, server, invoice_id) -> dict[str, object]:
    return http.get(f"{server.url}{INVOICES}/{invoice_id}", headers=AUTH).json()


# --- signatures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "signature"),
    [
        # The vectors of the BTCPay reference (section 5.6).
        (
            b'{"type":"InvoiceSettled"}',
            "sha256=a5e78e76e23c3cbadeeba1f58b571db02f45559526bafd10e76e0d11c9fd1398",
        ),
        (
            b'{"type": "InvoiceSettled"}',
            "sha256=15a4dc7749c51930cbea7e1da2e60d02b222adf1700be737b2b55875e34ef695",
        ),
    ],
)
def test_the_signature_matches_the_reference_vectors(body, signature):
    assert btcpay_signature("test-secret", body) == signature


def test_every_webhook_is_indented_json_signed_over_its_exact_bytes(sandbox, server, http, hook):
    invoice = new_invoice(http, server)
    sandbox.pay(str(invoice["id"]))

    assert hook.requests
    for request in hook.requests:
        assert request.path == "/webhooks/btcpay"
        assert request.header("content-type") == "application/json"
        expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.header("btcpay-sig") == f"sha256={expected}"
        assert request.body.startswith(b"{\n  ")


# --- the invoice life cycle -------------------------------------------------------------


def test_a_full_payment_goes_processing_then_settled(sandbox, server, http, hook, clock):
    invoice = new_invoice(http, server)
    invoice_id = str(invoice["id"])

    deliveries = sandbox.pay(invoice_id)

    assert (
        [d.type for d in deliveries]
        == hook.types()
        == [
            "InvoiceReceivedPayment",
            "InvoiceProcessing",
            "InvoicePaymentSettled",
            "InvoiceSettled",
        ]
    )
    assert all(d.answered == 200 for d in deliveries)
    received, processing, payment_settled, settled = hook.bodies()
    for body in hook.bodies():
        assert body["deliveryId"] == body["originalDeliveryId"]
        assert body["isRedelivery"] is False
        assert body["storeId"] == STORE
        assert body["invoiceId"] == invoice_id
        assert body["metadata"] == {"orderId": "o1"}
        assert body["timestamp"] == int(START.timestamp())
    assert received["afterExpiration"] is False
    assert received["paymentMethodId"] == "BTC-CHAIN"
    assert received["payment"]["value"] == "0.00031045"
    assert received["payment"]["status"] == "Processing"
    assert processing["overPaid"] is False
    assert payment_settled["payment"]["status"] == "Settled"
    assert settled == {**settled, "manuallyMarked": False, "overPaid": False}
    assert len({body["deliveryId"] for body in hook.bodies()}) == 4
    state = invoice_of(http, server, invoice_id)
    assert (state["status"], state["additionalStatus"]) == ("Settled", "None")
    assert state["paidAmount"] == "19.99"


def test_a_slow_confirmation_waits_in_processing_until_confirmed(sandbox, server, http, hook):
    invoice_id = str(new_invoice(http, server)["id"])

    sandbox.pay(invoice_id, confirm=False)
    assert sandbox.invoice_state(invoice_id) == ("Processing", "None")
    assert hook.types() == ["InvoiceReceivedPayment", "InvoiceProcessing"]

    sandbox.confirm(invoice_id)
    assert sandbox.invoice_state(invoice_id) == ("Settled", "None")
    assert hook.types()[2:] == ["InvoicePaymentSettled", "InvoiceSettled"]


def test_an_overpayment_is_paid_over(sandbox, server, http, hook):
    invoice_id = str(new_invoice(http, server)["id"])

    sandbox.pay(invoice_id, Decimal("0.001"))

    assert sandbox.invoice_state(invoice_id) == ("Settled", "PaidOver")
    bodies = {str(body["type"]): body for body in hook.bodies()}
    assert bodies["InvoiceProcessing"]["overPaid"] is True
    assert bodies["InvoiceSettled"]["overPaid"] is True


def test_a_short_payment_then_expiry_is_expired_paid_partial(sandbox, server, http, hook):
    invoice_id = str(new_invoice(http, server)["id"])

    sandbox.pay(invoice_id, Decimal("0.0002"))
    assert sandbox.invoice_state(invoice_id) == ("New", "PaidPartial")
    sandbox.expire(invoice_id)

    assert sandbox.invoice_state(invoice_id) == ("Expired", "PaidPartial")
    assert hook.types() == [
        "InvoiceReceivedPayment",
        "InvoicePaymentSettled",
        "InvoiceExpired",
        "InvoiceExpiredPaidPartial",
    ]
    assert hook.bodies()[2]["partiallyPaid"] is True


def test_expiry_without_payment_is_expired(sandbox, server, http, hook):
    invoice_id = str(new_invoice(http, server)["id"])

    sandbox.expire(invoice_id)

    assert sandbox.invoice_state(invoice_id) == ("Expired", "None")
    assert hook.bodies() == [{**hook.bodies()[0], "type": "InvoiceExpired", "partiallyPaid": False}]


def test_a_payment_after_expiry_is_paid_late_and_never_settled(sandbox, server, http, hook):
    invoice_id = str(new_invoice(http, server)["id"])
    sandbox.expire(invoice_id)

    sandbox.pay(invoice_id)

    assert sandbox.invoice_state(invoice_id) == ("Expired", "PaidLate")
    assert hook.types() == [
        "InvoiceExpired",
        "InvoiceReceivedPayment",
        "InvoicePaidAfterExpiration",
        "InvoicePaymentSettled",
    ]
    late = [body for body in hook.bodies() if "afterExpiration" in body]
    assert [body["afterExpiration"] for body in late] == [True, True]


def test_a_short_payment_after_expiry_stays_paid_partial(sandbox, server, http, hook):
    invoice_id = str(new_invoice(http, server)["id"])
    sandbox.expire(invoice_id)

    sandbox.pay(invoice_id, Decimal("0.0001"), confirm=False)

    assert sandbox.invoice_state(invoice_id) == ("Expired", "PaidPartial")
    assert hook.types()[1:] == ["InvoiceReceivedPayment"]


def test_an_unconfirmed_payment_that_fails_is_invalid_not_marked(sandbox, server, http, hook):
    invoice_id = str(new_invoice(http, server)["id"])
    sandbox.pay(invoice_id, confirm=False)

    sandbox.fail(invoice_id)

    assert sandbox.invoice_state(invoice_id) == ("Invalid", "None")
    assert hook.types()[-1] == "InvoiceInvalid"
    assert hook.bodies()[-1]["manuallyMarked"] is False


def test_failing_an_open_invoice_marks_it_invalid(sandbox, server, http, hook):
    invoice_id = str(new_invoice(http, server)["id"])

    sandbox.fail(invoice_id)

    assert sandbox.invoice_state(invoice_id) == ("Invalid", "Marked")
    assert hook.bodies()[-1]["manuallyMarked"] is True


def test_lightning_announces_the_settled_payment_before_the_received_one(
    sandbox, server, http, hook
):
    invoice_id = str(new_invoice(http, server, paymentMethods=["BTC-LN"])["id"])

    sandbox.pay(invoice_id, method="BTC-LN")

    assert hook.types() == [
        "InvoicePaymentSettled",
        "InvoiceReceivedPayment",
        "InvoiceProcessing",
        "InvoiceSettled",
    ]
    assert hook.bodies()[0]["paymentMethodId"] == "BTC-LN"


def test_a_double_spend_drops_processing_back_to_new_without_a_webhook(sandbox, server, http, hook):
    invoice_id = str(new_invoice(http, server)["id"])
    sandbox.pay(invoice_id, confirm=False)
    sent = len(hook.requests)

    sandbox.double_spend(invoice_id)

    assert sandbox.invoice_state(invoice_id) == ("New", "None")
    assert len(hook.requests) == sent
    methods = http.get(f"{server.url}{INVOICES}/{invoice_id}/payment-methods", headers=AUTH)
    assert methods.json()[0]["payments"] == []


@pytest.mark.parametrize(
    ("prepare", "action"),
    [
        ("pay", "expire"),
        ("expire", "expire"),
        ("pay", "fail"),
        ("pay", "pay"),
    ],
)
def test_moves_btcpay_never_makes_are_refused(sandbox, server, http, prepare, action):
    invoice_id = str(new_invoice(http, server)["id"])
    assert http.post(f"{server.url}/sandbox/invoices/{invoice_id}/{prepare}").status_code == 200

    refused = http.post(f"{server.url}/sandbox/invoices/{invoice_id}/{action}")

    assert refused.status_code == 409
    assert refused.json()["code"] == "invalid-state"


# --- redeliveries and order -------------------------------------------------------------


def test_duplicate_redelivers_each_event_under_its_original_delivery_id(
    sandbox, server, http, hook
):
    invoice_id = str(new_invoice(http, server)["id"])

    sandbox.pay(invoice_id, duplicate=True)

    bodies = hook.bodies()
    assert len(bodies) == 8
    for first, again in zip(bodies[::2], bodies[1::2], strict=True):
        assert first["isRedelivery"] is False
        assert again["isRedelivery"] is True
        assert again["originalDeliveryId"] == first["originalDeliveryId"] == first["deliveryId"]
        assert again["deliveryId"] != first["deliveryId"]
        assert {**again, "deliveryId": "", "isRedelivery": None} == {
            **first,
            "deliveryId": "",
            "isRedelivery": None,
        }


def test_shuffle_sends_the_same_events_in_a_seeded_order(http, receiver, clock):
    orders = []
    for _ in range(2):
        sandbox = make_sandbox(http, receiver, clock, seed=7)
        with SandboxServer(sandbox) as server:
            invoice_id = str(new_invoice(http, server)["id"])
            orders.append([d.type for d in sandbox.pay(invoice_id, shuffle=True)])

    in_order = [
        "InvoiceReceivedPayment",
        "InvoiceProcessing",
        "InvoicePaymentSettled",
        "InvoiceSettled",
    ]
    assert orders[0] == orders[1]
    assert orders[0] != in_order
    assert Counter(orders[0]) == Counter(in_order)


def test_a_manual_redelivery_arrives_after_newer_events(sandbox, server, http, hook):
    invoice_id = str(new_invoice(http, server)["id"])
    sandbox.pay(invoice_id)
    first = hook.bodies()[0]

    response = http.post(f"{server.url}/sandbox/deliveries/{first['deliveryId']}/redeliver")

    assert response.status_code == 200
    last = hook.bodies()[-1]
    assert last["type"] == "InvoiceReceivedPayment"
    assert last["originalDeliveryId"] == first["deliveryId"]
    assert last["isRedelivery"] is True
    # The body is the stored one: same timestamp, same payment.
    assert last["timestamp"] == first["timestamp"]
    assert last["payment"] == first["payment"]


def test_failed_deliveries_are_retried_with_the_same_original_id(http, receiver, clock):
    hook = receiver[0]
    sandbox = make_sandbox(http, receiver, clock, retry_delays=(0.0, 0.0))
    hook.answers = [503, 429, 200]
    with SandboxServer(sandbox) as server:
        invoice_id = str(new_invoice(http, server)["id"])
        (delivery,) = sandbox.expire(invoice_id)

    assert delivery.answered == 200
    bodies = hook.bodies()
    assert [body["isRedelivery"] for body in bodies] == [False, True, True]
    assert len({body["originalDeliveryId"] for body in bodies}) == 1
    assert len({body["deliveryId"] for body in bodies}) == 3


def test_retries_stop_when_the_schedule_runs_out(http, receiver, clock):
    hook = receiver[0]
    sandbox = make_sandbox(http, receiver, clock, retry_delays=(0.0,))
    hook.answers = [500, 500, 500]
    with SandboxServer(sandbox) as server:
        invoice_id = str(new_invoice(http, server)["id"])
        (delivery,) = sandbox.expire(invoice_id)

    assert delivery.answered == 500
    assert len(hook.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 404])
def test_a_client_error_answer_is_final_as_in_btcpay_2_3_4(http, receiver, clock, status):
    hook = receiver[0]
    sandbox = make_sandbox(http, receiver, clock, retry_delays=(0.0, 0.0))
    hook.answers = [status]
    with SandboxServer(sandbox) as server:
        invoice_id = str(new_invoice(http, server)["id"])
        (delivery,) = sandbox.expire(invoice_id)

    assert delivery.answered == status
    assert len(hook.requests) == 1


def test_an_unreachable_webhook_answers_none(http, clock, loopback_port):
    sandbox = BtcPaySandbox(
        api_key=API_KEY,
        store_id=STORE,
        http=http,
        clock=clock,
        webhook_url=f"http://127.0.0.1:{loopback_port}/webhooks/btcpay",
        webhook_secret=SECRET,
        retry_delays=(0.0,),
    )
    with SandboxServer(sandbox) as server:
        invoice_id = str(new_invoice(http, server)["id"])
        (delivery,) = sandbox.expire(invoice_id)

    assert delivery.answered is None
    assert [sent.is_redelivery for sent in sandbox.webhooks] == [False, True]


# --- Greenfield -------------------------------------------------------------------------


def test_a_webhook_registered_over_greenfield_gets_its_secret_once(sandbox, server, http, receiver):
    hook, hook_server = receiver
    response = http.post(
        f"{server.url}/api/v1/stores/{STORE}/webhooks",
        json={
            "url": f"{hook_server.url}/second",
            "authorizedEvents": {"everything": False, "specificEvents": ["InvoiceSettled"]},
        },
        headers=AUTH,
    )
    assert response.status_code == 200
    created = response.json()
    secret = created["secret"]
    listed = http.get(f"{server.url}/api/v1/stores/{STORE}/webhooks", headers=AUTH).json()
    assert all("secret" not in webhook for webhook in listed)
    assert [webhook["id"] for webhook in listed][-1] == created["id"]

    sandbox.pay(str(new_invoice(http, server)["id"]))

    second = [r for r in hook.requests if r.path == "/second"]
    assert [json.loads(r.body)["type"] for r in second] == ["InvoiceSettled"]
    assert second[0].header("btcpay-sig") == btcpay_signature(secret, second[0].body)
    deleted = http.delete(
        f"{server.url}/api/v1/stores/{STORE}/webhooks/{created['id']}", headers=AUTH
    )
    assert deleted.status_code == 200


def test_marking_over_greenfield_follows_btcpays_rules(sandbox, server, http, hook):
    invoice_id = str(new_invoice(http, server)["id"])
    status_url = f"{server.url}{INVOICES}/{invoice_id}/status"

    marked = http.post(status_url, json={"status": "Settled"}, headers=AUTH)
    assert marked.status_code == 200
    assert (marked.json()["status"], marked.json()["additionalStatus"]) == ("Settled", "Marked")
    assert marked.json()["availableStatusesForManualMarking"] == ["Invalid"]
    assert hook.bodies()[-1]["manuallyMarked"] is True

    again = http.post(status_url, json={"status": "Settled"}, headers=AUTH)
    assert again.status_code == 422
    assert again.json()[0]["path"] == "Status"

    flipped = http.post(status_url, json={"status": "Invalid"}, headers=AUTH)
    assert flipped.json()["status"] == "Invalid"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"amount": "-1", "currency": "USD"}, "Amount"),
        ({"amount": "5", "checkout": {"expirationMinutes": 15.5}}, "Checkout.Expiration"),
        ({"amount": "5", "checkout": {"expirationMinutes": 0}}, "Checkout.Expiration"),
        ({"amount": "5", "checkout": {"paymentTolerance": 101}}, "Checkout.PaymentTolerance"),
        ({"amount": "5", "checkout": {"paymentTolerance": "1"}}, "Checkout.PaymentTolerance"),
        ({"amount": "5", "checkout": {"paymentMethods": ["DOGE"]}}, "Checkout.PaymentMethods[0]"),
        ({"amount": "5", "checkout": {"speedPolicy": "Warp"}}, "Checkout.SpeedPolicy"),
        ({"amount": "5", "metadata": []}, "Metadata"),
    ],
)
def test_invalid_invoice_requests_are_a_422_array(server, http, body, path):
    response = http.post(server.url + INVOICES, json=body, headers=AUTH)

    assert response.status_code == 422
    assert path in [problem["path"] for problem in response.json()]


def test_money_is_strings_and_times_are_unix_seconds(server, http):
    invoice = new_invoice(http, server, expirationMinutes=30)
    methods = http.get(f"{server.url}{INVOICES}/{invoice['id']}/payment-methods", headers=AUTH)

    assert invoice["amount"] == "19.99"
    assert invoice["createdTime"] == int(START.timestamp())
    assert invoice["expirationTime"] == int(START.timestamp()) + 30 * 60
    assert invoice["checkout"]["paymentTolerance"] == 0
    (method,) = methods.json()
    assert method["amount"] == "0.00031045"
    assert method["rate"] == "64392.23"
    assert method["paymentLink"] == f"bitcoin:{method['destination']}?amount=0.00031045"


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthenticated"),
        ({"Authorization": "token wrong"}, 401, "unauthenticated"),
        ({"Authorization": f"Bearer {API_KEY}"}, 200, None),
    ],
)
def test_authorization_follows_greenfield(server, http, headers, status, code):
    response = http.get(server.url + INVOICES, headers=headers)

    assert response.status_code == status
    if code is not None:
        assert response.json()["code"] == code
        assert API_KEY not in response.text


def test_an_unknown_invoice_is_invoice_not_found(server, http):
    response = http.get(f"{server.url}{INVOICES}/nope", headers=AUTH)
    assert (response.status_code, response.json()["code"]) == (404, "invoice-not-found")


def test_control_routes_refuse_bad_bodies_and_unknown_invoices(server, http):
    invoice_id = str(new_invoice(http, server)["id"])
    base = f"{server.url}/sandbox/invoices"

    assert http.post(f"{base}/nope/pay").status_code == 404
    assert http.post(f"{base}/{invoice_id}/pay", json={"amount": "-1"}).status_code == 400
    assert http.post(f"{base}/{invoice_id}/pay", content=b"[1]").status_code == 400
    assert http.post(f"{server.url}/sandbox/deliveries/nope/redeliver").status_code == 404
    assert http.post(f"{server.url}/sandbox/outage", json={"failures": -1}).status_code == 400


def test_an_outage_over_http_fails_the_next_calls(server, http):
    planned = http.post(f"{server.url}/sandbox/outage", json={"failures": 1, "mode": "503"})
    assert planned.json() == {"pending": 1}

    assert http.get(server.url + INVOICES, headers=AUTH).status_code == 503
    assert http.get(server.url + INVOICES, headers=AUTH).status_code == 200
