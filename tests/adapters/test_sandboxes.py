"""The sandboxes themselves: signed IPNs as NOWPayments sends them, the REST shapes, faults,
and a server that starts on a free loopback port and leaves nothing behind."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
import threading
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from bitloot_adapters.sandbox import (
    IpnDelivery,
    KinguinProduct,
    KinguinSandbox,
    NowPaymentsSandbox,
    SandboxServer,
)
from bitloot_adapters.sandbox.kinguin import tiny_png
from bitloot_core.providers.nowpayments import canonical_json, parse_ipn, verify_ipn_signature
from bitloot_core.testing import SettableClock

NP_KEY = "np-sandbox-key-0123"
KG_KEY = "kg-sandbox-key-4567"
IPN_SECRET = "Yb3kR9tV2mQ8xL5nW7cJ4hF6dS1aZ0pE"
START = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)

# The keys of the real `finished` IPN in the NOWPayments reference.
REAL_IPN_KEYS = [
    "actually_paid",
    "actually_paid_at_fiat",
    "fee",
    "invoice_id",
    "order_description",
    "order_id",
    "outcome_amount",
    "outcome_currency",
    "parent_payment_id",
    "pay_address",
    "pay_amount",
    "pay_currency",
    "payin_extra_id",
    "payment_extra_ids",
    "payment_id",
    "payment_status",
    "price_amount",
    "price_currency",
    "purchase_id",
    "updated_at",
]


class IpnReceiver:
    """A webhook endpoint on loopback (plain http.server) that keeps every request."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answer = 200
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.received.append(
                        ({k.lower(): v for k, v in self.headers.items()}, body)
                    )
                self.send_response(receiver.answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format, *args) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/nowpayments"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,))
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self._thread.join()
        self.server.server_close()

    @property
    def bodies(self) -> list[bytes]:
        return [body for _, body in self.received]

    @property
    def statuses(self) -> list[str]:
        return [json.loads(body)["payment_status"] for body in self.bodies]


@pytest.fixture
def receiver() -> Iterator[IpnReceiver]:
    running = IpnReceiver()
    yield running
    running.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(START)


def np_sandbox(http, clock, **options) -> NowPaymentsSandbox:
    return NowPaymentsSandbox(
        api_key=NP_KEY, ipn_secret=IPN_SECRET, http=http, clock=clock, **options
    )


@pytest.fixture
def payments(http, clock) -> Iterator[tuple[NowPaymentsSandbox, SandboxServer]]:
    sandbox = np_sandbox(http, clock, rates={"eth": Decimal("0.00001")})
    with SandboxServer(sandbox) as server:
        yield sandbox, server


def create(http, server, receiver_url, price="40", **extra) -> httpx.Response:
    body = {
        "price_amount": price,
        "price_currency": "usd",
        "pay_currency": "eth",
        "ipn_callback_url": receiver_url,
        "order_id": "ord_7Q2mX9kLp4",
        "order_description": None,
    } | extra
    return http.post(
        f"{server.url}/v1/payment",
        content=json.dumps(body).encode(),
        headers={"x-api-key": NP_KEY, "Content-Type": "application/json"},
    )


@pytest.fixture
def payment_id(http, payments, receiver) -> str:
    _, server = payments
    return create(http, server, receiver.url).json()["payment_id"]


# -- NOWPayments: IPNs ---------------------------------------------------------------------


def test_pay_sends_the_full_sequence_signed_over_the_raw_bytes(payments, payment_id, receiver):
    sandbox, _ = payments

    deliveries = sandbox.pay(payment_id)

    full = ["waiting", "confirming", "confirmed", "sending", "finished"]
    assert deliveries == [(status, 200) for status in full]
    assert all(isinstance(delivery, IpnDelivery) for delivery in deliveries)
    assert receiver.statuses == full
    for headers, body in receiver.received:
        expected = hmac.new(IPN_SECRET.encode(), body, hashlib.sha512).hexdigest()
        assert hmac.compare_digest(headers["x-nowpayments-sig"], expected)
        assert re.fullmatch(r"[0-9a-f]{128}", headers["x-nowpayments-sig"])
        assert headers["content-type"] == "application/json"
        assert verify_ipn_signature(body, headers["x-nowpayments-sig"], IPN_SECRET)
    assert [event.status for event in sandbox.events] == full
    assert [event.body for event in sandbox.events] == receiver.bodies


def test_an_ipn_is_what_nowpayments_sends(payments, payment_id, receiver, clock):
    sandbox, _ = payments

    sandbox.pay(payment_id)

    finished = receiver.bodies[-1]
    keys: list[list[str]] = []
    tree = json.loads(finished, object_pairs_hook=lambda pairs: keys.append([k for k, _ in pairs]))
    del tree
    fee_keys, top_keys = keys
    assert top_keys == REAL_IPN_KEYS  # every key of the real IPN, sorted
    assert fee_keys == ["currency", "depositFee", "serviceFee", "withdrawalFee"]
    assert finished == canonical_json(json.loads(finished, parse_float=Decimal)).encode()
    assert b" " not in finished
    body = json.loads(finished)
    assert body["payment_id"] == int(payment_id)
    assert body["purchase_id"] == str(body["purchase_id"])
    assert body["updated_at"] == int(START.timestamp() * 1000)
    # JS number formatting: 40 not 40.0, 0.0004 plain, the fee 0.000002 not 2e-06.
    assert b'"price_amount":40,' in finished
    assert b'"pay_amount":0.0004,' in finished
    assert b'"actually_paid":0.0004,' in finished
    assert b'"serviceFee":0.000002,' in finished
    assert b'"outcome_amount":0.000398,' in finished
    ipn = parse_ipn(finished)
    assert ipn.actually_paid == Decimal("0.0004")
    assert ipn.order_id == "ord_7Q2mX9kLp4"
    assert ipn.updated_at == START


def test_the_waiting_ipn_reports_nothing_paid(payments, payment_id, receiver):
    sandbox, _ = payments

    sandbox.pay(payment_id)

    waiting = json.loads(receiver.bodies[0])
    assert waiting["actually_paid"] == 0
    assert waiting["payment_status"] == "waiting"


def test_a_tiny_amount_prints_in_exponent_form_as_js_does(http, clock, receiver):
    sandbox = np_sandbox(http, clock, rates={"btc": Decimal("0.0000001")})
    with SandboxServer(sandbox) as server:
        payment_id = create(http, server, receiver.url, price="1", pay_currency="btc").json()[
            "payment_id"
        ]
        sandbox.pay(payment_id)

    assert b'"pay_amount":1e-7,' in receiver.bodies[-1]


def test_a_short_payment_ends_in_partially_paid(http, payments, payment_id, receiver):
    sandbox, server = payments

    deliveries = sandbox.pay(payment_id, Decimal("0.0003"))

    assert deliveries == [("waiting", 200), ("confirming", 200), ("partially_paid", 200)]
    last = json.loads(receiver.bodies[-1], parse_float=Decimal)
    assert last["actually_paid"] == Decimal("0.0003")
    assert last["pay_amount"] == Decimal("0.0004")
    answer = http.get(f"{server.url}/v1/payment/{payment_id}", headers={"x-api-key": NP_KEY})
    assert answer.json()["payment_status"] == "partially_paid"


def test_duplicate_sends_each_ipn_twice_byte_for_byte(payments, payment_id, receiver):
    sandbox, _ = payments

    deliveries = sandbox.pay(payment_id, duplicate=True)

    assert len(deliveries) == 10
    bodies = receiver.bodies
    assert bodies[0::2] == bodies[1::2]
    assert receiver.statuses[0::2] == ["waiting", "confirming", "confirmed", "sending", "finished"]


def test_shuffle_sends_the_same_ipns_in_a_seeded_order(http, clock, receiver):
    orders = []
    for _ in range(2):
        sandbox = np_sandbox(http, clock, seed=7)
        with SandboxServer(sandbox) as server:
            payment_id = create(http, server, receiver.url).json()["payment_id"]
            orders.append([status for status, _ in sandbox.pay(payment_id, shuffle=True)])

    full = ["waiting", "confirming", "confirmed", "sending", "finished"]
    assert orders[0] == orders[1]
    assert sorted(orders[0]) == sorted(full)
    assert orders[0] != full
    assert receiver.statuses == orders[0] + orders[1]


def test_shuffle_and_duplicate_together(payments, payment_id, receiver):
    sandbox, _ = payments

    deliveries = sandbox.pay(payment_id, duplicate=True, shuffle=True)

    assert sorted(status for status, _ in deliveries) == sorted(
        ["waiting", "confirming", "confirmed", "sending", "finished"] * 2
    )


def test_fail_and_expire_send_one_signed_ipn_each(payments, payment_id, receiver):
    sandbox, _ = payments

    assert sandbox.fail(payment_id) == [("failed", 200)]
    assert sandbox.expire(payment_id) == [("expired", 200)]

    assert receiver.statuses == ["failed", "expired"]
    for headers, body in receiver.received:
        assert verify_ipn_signature(body, headers["x-nowpayments-sig"], IPN_SECRET)


def test_pay_reports_what_the_receiver_answered(payments, payment_id, receiver):
    sandbox, _ = payments
    receiver.answer = 500

    assert sandbox.fail(payment_id) == [("failed", 500)]


def test_an_unreachable_receiver_is_reported_as_no_answer(http, payments):
    sandbox, server = payments
    payment_id = create(http, server, "http://127.0.0.1:9/nothing-listens").json()["payment_id"]

    assert sandbox.expire(payment_id) == [("expired", None)]
    assert sandbox.events[0].answered is None


def test_updated_at_follows_the_injected_clock(payments, payment_id, receiver, clock):
    sandbox, _ = payments
    clock.advance(timedelta(seconds=90))

    sandbox.expire(payment_id)

    assert json.loads(receiver.bodies[0])["updated_at"] == int(START.timestamp() * 1000) + 90_000


def test_pay_on_an_unknown_payment_is_a_lookup_error(payments):
    sandbox, _ = payments
    with pytest.raises(LookupError):
        sandbox.pay("999")
    with pytest.raises(LookupError):
        sandbox.fail("not-a-number")


def test_the_control_api_over_http(http, payments, payment_id, receiver):
    _, server = payments

    paid = http.post(f"{server.url}/sandbox/payments/{payment_id}/pay", json={"amount": "0.0001"})
    failed = http.post(f"{server.url}/sandbox/payments/{payment_id}/fail")
    missing = http.post(f"{server.url}/sandbox/payments/42/expire")

    assert paid.status_code == 200
    assert paid.json() == {
        "deliveries": [
            {"status": "waiting", "answered": 200},
            {"status": "confirming", "answered": 200},
            {"status": "partially_paid", "answered": 200},
        ]
    }
    assert failed.json() == {"deliveries": [{"status": "failed", "answered": 200}]}
    assert missing.status_code == 404
    assert receiver.statuses == ["waiting", "confirming", "partially_paid", "failed"]


# -- NOWPayments: REST ---------------------------------------------------------------------


def test_the_created_payment_has_the_providers_shape(http, payments, receiver):
    _, server = payments

    answer = create(http, server, receiver.url, price="19.99")

    assert answer.status_code == 201
    body = json.loads(answer.content, parse_float=Decimal)
    assert isinstance(body["payment_id"], str)
    assert body["payment_status"] == "waiting"
    assert body["price_amount"] == Decimal("19.99")
    assert body["pay_amount"] == Decimal("0.0001999")
    assert body["created_at"] == "2026-03-01T12:00:00.123Z"
    assert body["valid_until"] == "2026-03-01T12:20:00.123Z"
    assert body["pay_address"].startswith("0x")
    assert NP_KEY not in answer.text


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"price_amount": None}, "INVALID_REQUEST_PARAMS", '"price_amount" is required'),
        ({"pay_currency": ""}, "INVALID_REQUEST_PARAMS", '"pay_currency" is required'),
        ({"price_amount": "-3"}, "INVALID_REQUEST_PARAMS", "positive number"),
        ({"price_amount": True}, "INVALID_REQUEST_PARAMS", "positive number"),
        ({"pay_currency": "doge"}, "INVALID_REQUEST_PARAMS", "Currency doge was not found"),
        ({"order_id": 5}, "INVALID_REQUEST_PARAMS", '"order_id" must be a string'),
        ({"ipn_callback_url": "ftp://x"}, "INVALID_REQUEST_PARAMS", "valid uri"),
        ({"price_amount": "0.1"}, "AMOUNT_MINIMAL_ERROR", "amountTo is too small"),
    ],
)
def test_a_bad_payment_request_gets_the_providers_error(
    http, payments, receiver, change, code, message
):
    _, server = payments

    answer = create(http, server, receiver.url, **change)

    assert answer.status_code == 400
    body = answer.json()
    assert body == {"status": False, "statusCode": 400, "code": code, "message": body["message"]}
    assert message in body["message"]


def test_a_bad_api_key_is_invalid_api_key(http, payments):
    _, server = payments

    for headers in ({}, {"x-api-key": "wrong"}):
        answer = http.post(f"{server.url}/v1/payment", json={}, headers=headers)
        assert answer.status_code == 403
        assert answer.json()["code"] == "INVALID_API_KEY"
    answer = http.get(f"{server.url}/v1/payment/1", headers={"x-api-key": "wrong"})
    assert answer.status_code == 403


def test_status_and_unknown_routes(http, payments):
    _, server = payments

    assert http.get(f"{server.url}/v1/status").json() == {"message": "OK"}
    assert http.get(f"{server.url}/v1/nothing").status_code == 404


def test_the_outage_control_over_http(http, payments):
    sandbox, server = payments

    planned = http.post(f"{server.url}/sandbox/outage", json={"failures": 2, "mode": "429"})
    refused = http.post(f"{server.url}/sandbox/outage", json={"failures": -1})

    assert planned.json() == {"pending": 2}
    assert refused.status_code == 400
    assert http.get(f"{server.url}/v1/status").status_code == 429
    assert http.get(f"{server.url}/v1/status").status_code == 429
    assert http.get(f"{server.url}/v1/status").status_code == 200
    assert [call.status for call in sandbox.calls] == [429, 429, 200]


def test_an_unknown_outage_mode_is_refused(payments):
    sandbox, _ = payments
    with pytest.raises(ValueError, match="unknown outage mode"):
        sandbox.outage(1, "resource_lock")  # type: ignore[arg-type]


# -- Kinguin -------------------------------------------------------------------------------

STARDEW = "5c9b5b8c2539a4e8f17291c2"


@pytest.fixture
def supplier(clock) -> Iterator[tuple[KinguinSandbox, SandboxServer]]:
    sandbox = KinguinSandbox(api_key=KG_KEY, clock=clock, balance=Decimal(50))
    with SandboxServer(sandbox) as server:
        yield sandbox, server


def kg(http, server, method, path, **options) -> httpx.Response:
    return http.request(method, server.url + path, headers={"X-Api-Key": KG_KEY}, **options)


def test_a_bad_kinguin_key_gets_the_documented_401(http, supplier):
    _, server = supplier

    answer = http.get(f"{server.url}/v1/balance", headers={"X-Api-Key": "nope"})

    assert answer.status_code == 401
    assert answer.json() == {
        "kind": "Authorization",
        "status": 401,
        "detail": "Invalid authentication data.",
        "type": "Unauthorized",
    }


def test_the_catalogue_by_kinguin_id_and_product_id(http, supplier):
    _, server = supplier

    v1 = kg(http, server, "GET", "/v1/products/34826").json()
    v2 = kg(http, server, "GET", "/v2/products/5c9b5b8c2539a4e8f17291c2").json()
    missing = kg(http, server, "GET", "/v2/products/nope")

    assert v1 == v2
    assert v1["name"] == "Stardew Valley Steam CD Key"
    assert v1["price"] == 8.49
    assert v1["qty"] == 100
    assert v1["isPreorder"] is False
    assert missing.status_code == 404
    assert missing.json()["kind"] == "HttpClient"


def test_an_out_of_stock_product_answers_404_as_kinguin_does(http, supplier):
    sandbox, server = supplier
    sandbox.set_stock(STARDEW, 0)

    v2 = kg(http, server, "GET", f"/v2/products/{STARDEW}")
    v1 = kg(http, server, "GET", "/v1/products/34826")

    assert (v2.status_code, v1.status_code) == (404, 404)
    assert v2.json() == {"kind": "HttpClient", "status": 404, "title": "Not Found"}
    sandbox.set_stock(STARDEW, 3)
    assert kg(http, server, "GET", f"/v2/products/{STARDEW}").json()["qty"] == 3


def test_a_repeated_order_external_id_is_refused_and_buys_nothing(http, supplier):
    sandbox, server = supplier
    order = {"products": [{"productId": STARDEW, "qty": 1}], "orderExternalId": "ord_9"}

    first = kg(http, server, "POST", "/v2/order", json=order)
    again = kg(http, server, "POST", "/v2/order", json=order)

    assert first.status_code == 201
    assert again.status_code == 422
    assert again.json()["kind"] == "ConstraintViolation"
    assert again.json()["detail"] == "orderExternalId already used"
    assert len(sandbox.orders) == 1
    assert sandbox.balance == Decimal(50) - Decimal("8.49")


def test_a_pre_order_is_alone_in_its_request_and_delivered_from_its_release(http, supplier, clock):
    sandbox, server = supplier
    release = START + timedelta(days=2)
    sandbox.add_product(
        KinguinProduct(
            product_id="pre", kinguin_id=8, name="Soon", price=Decimal(2), release_at=release
        )
    )
    sandbox.key_delay = 10.0
    product = kg(http, server, "GET", "/v2/products/pre").json()
    assert (product["isPreorder"], product["releaseDate"]) == (True, "2026-03-03")

    mixed = lines({"productId": "pre", "qty": 1}, {"productId": STARDEW, "qty": 1})
    refused = kg(http, server, "POST", "/v2/order", json=mixed)
    placed = kg(http, server, "POST", "/v2/order", json=lines({"productId": "pre", "qty": 2}))

    assert refused.status_code == 400
    assert refused.json()["kind"] == "ConstraintViolation"
    assert placed.json()["products"][0]["isPreorder"] is True
    keys = f"/v2/order/{placed.json()['orderId']}/keys"
    clock.advance(timedelta(days=2) - timedelta(seconds=1))
    assert kg(http, server, "GET", keys).json() == []
    clock.advance(timedelta(seconds=11))
    assert len(kg(http, server, "GET", keys).json()) == 2
    assert kg(http, server, "GET", "/v2/products/pre").json()["isPreorder"] is False


def test_order_status_webhooks_are_sent_once_per_change_with_the_secret(http, clock, receiver):
    sandbox = KinguinSandbox(
        api_key=KG_KEY,
        clock=clock,
        http=http,
        webhook_url=receiver.url,
        webhook_secret="kg-hook-secret",
        key_delay=60.0,
    )
    with SandboxServer(sandbox) as server:
        order = lines({"productId": STARDEW, "qty": 1}) | {"orderExternalId": "ord_5"}
        order_id = kg(http, server, "POST", "/v2/order", json=order).json()["orderId"]
        first = sandbox.send_webhooks()
        assert sandbox.send_webhooks() == []  # nothing changed
        clock.advance(timedelta(seconds=60))
        receiver.answer = 500
        refused = sandbox.send_webhooks()
        receiver.answer = 204
        second = sandbox.send_webhooks()
        sandbox.cancel(order_id, "refunded")
        third = sandbox.send_webhooks()

    assert [(w.status, w.answered) for w in first + refused + second + third] == [
        ("processing", 200),
        ("completed", 500),
        ("completed", 204),
        ("refunded", 204),
    ]
    headers, body = receiver.received[2]
    assert headers["x-event-name"] == "order.status"
    assert headers["x-event-secret"] == "kg-hook-secret"
    assert json.loads(body) == {
        "orderId": order_id,
        "orderExternalId": "ord_5",
        "status": "completed",
        "updatedAt": "2026-03-01T12:01:00Z",
    }
    assert [w.status for w in sandbox.webhooks] == [
        "processing",
        "completed",
        "completed",
        "refunded",
    ]


def test_no_webhook_is_sent_without_a_receiver(http, supplier):
    sandbox, server = supplier
    kg(http, server, "POST", "/v2/order", json=lines({"productId": STARDEW, "qty": 1}))

    assert sandbox.send_webhooks() == []


def test_key_delay_and_stock_controls_over_http(http, supplier):
    sandbox, server = supplier

    delay = http.post(f"{server.url}/sandbox/key-delay", json={"seconds": 7200})
    stock = http.post(f"{server.url}/sandbox/stock", json={"product_id": STARDEW, "qty": 0})
    unknown = http.post(f"{server.url}/sandbox/stock", json={"product_id": "nope", "qty": 1})
    bad = [
        http.post(f"{server.url}/sandbox/key-delay", json={"seconds": -1}),
        http.post(f"{server.url}/sandbox/stock", json={"product_id": STARDEW, "qty": -1}),
    ]

    assert (delay.status_code, stock.status_code, unknown.status_code) == (200, 200, 404)
    assert [answer.status_code for answer in bad] == [400, 400]
    assert sandbox.key_delay == 7200.0
    assert kg(http, server, "GET", f"/v2/products/{STARDEW}").status_code == 404


def test_orders_are_found_by_id_and_external_id_and_cost_balance(http, supplier, clock):
    sandbox, server = supplier
    order = {"products": [{"productId": "5c9b5b8c2539a4e8f17291c2", "qty": 2, "price": 8.49}]}

    placed = kg(http, server, "POST", "/v2/order", json=order | {"orderExternalId": "ord_9"})

    assert placed.status_code == 201
    body = json.loads(placed.content, parse_float=Decimal)
    assert body["orderExternalId"] == "ord_9"
    assert body["totalPrice"] == Decimal("16.98")
    assert body["status"] == "completed"
    assert body["createdAt"] == "2026-03-01T12:00:00Z"
    by_id = kg(http, server, "GET", f"/v1/order/{body['orderId']}").json()
    found = kg(http, server, "GET", "/v1/order", params={"orderExternalId": "ord_9"}).json()
    none = kg(http, server, "GET", "/v1/order", params={"orderExternalId": "other"}).json()
    assert by_id["orderId"] == body["orderId"]
    assert found == {"results": [by_id], "item_count": 1}
    assert none == {"results": [], "item_count": 0}
    assert kg(http, server, "GET", "/v1/balance").json() == {"balance": 33.02}
    assert kg(http, server, "GET", "/v1/order/NOPE").json()["kind"] == "OrderNotFound"
    assert [(c.method, c.order_external_id) for c in sandbox.calls][:1] == [("POST", "ord_9")]


def lines(*products: dict[str, object]) -> dict[str, object]:
    return {"products": list(products)}


@pytest.mark.parametrize(
    ("order", "kind"),
    [
        (lines(), "ConstraintViolation"),
        (lines(*({"productId": f"p{n}", "qty": 1} for n in range(11))), "ConstraintViolation"),
        (lines({"productId": STARDEW, "qty": 10}), "ConstraintViolation"),
        (lines({"productId": STARDEW, "qty": True}), "ConstraintViolation"),
        (lines({"productId": STARDEW, "qty": 1, "price": 1}), "ConstraintViolation"),
        (lines({"productId": "nope", "qty": 1}), "ProductUnavailable"),
        (lines({"productId": "5c9b6a0a2539a4e8f1729c11", "qty": 5}), "InsufficientBalance"),
    ],
)
def test_bad_orders_are_refused_with_kinguins_kind(http, supplier, order, kind):
    sandbox, server = supplier

    answer = kg(http, server, "POST", "/v2/order", json=order)

    assert answer.status_code == 400
    assert answer.json()["kind"] == kind
    assert set(answer.json()) == {"kind", "status", "title", "detail"}
    assert sandbox.orders == []
    assert sandbox.balance == Decimal(50)


def test_keys_trickle_in_while_the_order_is_processing(http, supplier, clock):
    sandbox, server = supplier
    sandbox.key_delay = 8.0
    order = {"products": [{"productId": "5c9b5f6b2539a4e8f172916a", "qty": 4}]}
    order_id = kg(http, server, "POST", "/v2/order", json=order).json()["orderId"]

    def keys() -> list[dict[str, object]]:
        return kg(http, server, "GET", f"/v2/order/{order_id}/keys").json()

    assert keys() == []
    clock.advance(timedelta(seconds=4))
    assert len(keys()) == 2
    assert kg(http, server, "GET", f"/v1/order/{order_id}").json()["status"] == "processing"
    clock.advance(timedelta(seconds=4))
    delivered = keys()
    assert len(delivered) == 4
    assert kg(http, server, "GET", f"/v1/order/{order_id}").json()["status"] == "completed"
    assert set(delivered[0]) == {
        "id",
        "serial",
        "type",
        "name",
        "kinguinId",
        "offerId",
        "productId",
    }


def test_keys_paging_and_its_limits(http, supplier):
    _, server = supplier
    order = {"products": [{"productId": "5c9b5f6b2539a4e8f172916a", "qty": 5}]}
    order_id = kg(http, server, "POST", "/v2/order", json=order).json()["orderId"]
    path = f"/v2/order/{order_id}/keys"

    pages = [
        kg(http, server, "GET", path, params={"page": p, "limit": 2}).json() for p in (1, 2, 3)
    ]

    assert [len(page) for page in pages] == [2, 2, 1]
    assert len({key["id"] for page in pages for key in page}) == 5
    assert len(kg(http, server, "GET", path).json()) == 5  # default limit 25
    for params in ({"limit": 101}, {"limit": 0}, {"page": 0}, {"page": "x"}):
        assert kg(http, server, "GET", path, params=params).status_code == 400


def test_image_products_deliver_a_base64_png(http, supplier):
    sandbox, server = supplier
    sandbox.add_product(
        KinguinProduct(
            product_id="pic", kinguin_id=5, name="Pic", price=Decimal(1), key_type="image/png"
        )
    )
    order = {"products": [{"productId": "pic", "qty": 1}]}
    order_id = kg(http, server, "POST", "/v2/order", json=order).json()["orderId"]

    (key,) = kg(http, server, "GET", f"/v2/order/{order_id}/keys").json()

    assert key["type"] == "image/png"
    assert base64.b64decode(key["serial"], validate=True).startswith(b"\x89PNG\r\n\x1a\n")

    sandbox.wrap_image_keys = True
    order_id = kg(http, server, "POST", "/v2/order", json=order).json()["orderId"]
    (wrapped,) = kg(http, server, "GET", f"/v2/order/{order_id}/keys").json()
    assert "\r\n" in wrapped["serial"]
    assert base64.b64decode(wrapped["serial"]).startswith(b"\x89PNG\r\n\x1a\n")


def test_tiny_png_is_a_valid_png():
    png = tiny_png(b"\x10\x20\x30")
    offset = 8
    kinds = []
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind, data = png[offset + 4 : offset + 8], png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + data) == crc
        kinds.append(kind)
        if kind == b"IDAT":
            assert zlib.decompress(data) == b"\x00\x10\x20\x30"
        offset += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]


def test_calls_record_every_api_call_with_its_external_id(http, supplier):
    sandbox, server = supplier
    sandbox.outage(1, "503", method="POST")
    order = {"products": [{"productId": "5c9b5f6b2539a4e8f172916a", "qty": 1}]}

    kg(http, server, "POST", "/v2/order", json=order | {"orderExternalId": "ord_1"})
    kg(http, server, "POST", "/v2/order", json=order | {"orderExternalId": "ord_1"})
    kg(http, server, "GET", "/v1/order", params={"orderExternalId": "ord_1"})

    assert [(c.method, c.path, c.order_external_id, c.status) for c in sandbox.calls] == [
        ("POST", "/v2/order", "ord_1", 503),
        ("POST", "/v2/order", "ord_1", 201),
        ("GET", "/v1/order", "ord_1", 200),
    ]


def test_kinguin_outage_over_http_and_resource_lock(http, supplier):
    _, server = supplier

    planned = http.post(
        f"{server.url}/sandbox/outage", json={"failures": 1, "mode": "resource_lock"}
    )
    locked = kg(http, server, "GET", "/v1/balance")

    assert planned.json() == {"pending": 1}
    assert locked.status_code == 409
    assert locked.json()["kind"] == "ResourceLock"
    assert kg(http, server, "GET", "/v1/balance").status_code == 200


# -- The server ----------------------------------------------------------------------------


def test_the_server_starts_on_a_free_port_and_leaves_no_thread_behind(http, clock):
    before = set(threading.enumerate())
    sandbox = KinguinSandbox(api_key=KG_KEY, clock=clock, stall_seconds=30)
    server = SandboxServer(sandbox).start()
    url = server.url
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
    assert not server.url.endswith(":0")
    sandbox.outage(1, "timeout")
    with pytest.raises(httpx.TimeoutException):
        http.get(f"{server.url}/v1/balance", timeout=0.1)

    server.close()  # cuts the 30 s stall short
    server.close()  # and is idempotent

    assert set(threading.enumerate()) == before
    with pytest.raises(httpx.ConnectError):
        http.get(f"{url}/v1/balance")


class BrokenApp:
    def handle(self, request):
        raise ZeroDivisionError


def test_an_app_that_raises_answers_500_and_keeps_the_error(http):
    with SandboxServer(BrokenApp()) as server:
        assert http.get(f"{server.url}/anything").status_code == 500
    assert [type(error) for error in server.errors] == [ZeroDivisionError]


def test_a_body_without_a_usable_length_is_refused(http, clock):
    with SandboxServer(KinguinSandbox(api_key=KG_KEY, clock=clock)) as server:

        def chunks():
            yield b"{}"

        answer = http.post(f"{server.url}/v2/order", content=chunks())
    assert answer.status_code == 411


def test_a_server_is_started_once(clock):
    server = SandboxServer(KinguinSandbox(api_key=KG_KEY, clock=clock))
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
    with server, pytest.raises(RuntimeError, match="already running"):
        server.start()


def test_concurrent_orders_are_all_kept(http, clock):
    sandbox = KinguinSandbox(api_key=KG_KEY, clock=clock, balance=Decimal(10_000))
    order = {"products": [{"productId": "5c9b5f6b2539a4e8f172916a", "qty": 1}]}
    with SandboxServer(sandbox) as server:
        answers: list[int] = []

        def place(n: int) -> None:
            answer = kg(http, server, "POST", "/v2/order", json=order | {"orderExternalId": str(n)})
            answers.append(answer.status_code)

        threads = [threading.Thread(target=place, args=(n,)) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert answers == [201] * 20
    assert server.errors == []
    assert sorted(int(o["orderExternalId"]) for o in sandbox.orders) == list(range(20))
    assert sandbox.balance == Decimal(10_000) - 20 * Decimal("3.79")
