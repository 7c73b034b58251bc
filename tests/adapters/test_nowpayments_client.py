"""NowPaymentsClient against the NOWPayments sandbox over real loopback HTTP."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from bitloot_adapters.nowpayments import NowPaymentsClient
from bitloot_adapters.sandbox import (
    NowPaymentsSandbox,
    SandboxRequest,
    SandboxResponse,
    SandboxServer,
)
from bitloot_core.chart import PaymentKind
from bitloot_core.errors import InvalidInput, ProviderError, ProviderUnavailable
from bitloot_core.providers.nowpayments import parse_payment
from bitloot_core.testing import SettableClock

API_KEY = "np-live-0123456789abcdef"
IPN_SECRET = "ipn-secret-for-tests"
CALLBACK = "http://127.0.0.1:9/webhooks/nowpayments"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def sandbox(http: httpx.Client, clock: SettableClock) -> NowPaymentsSandbox:
    return NowPaymentsSandbox(
        api_key=API_KEY,
        ipn_secret=IPN_SECRET,
        http=http,
        clock=clock,
        min_price_amount=Decimal("0.05"),
        stall_seconds=0.5,
    )


@pytest.fixture
def server(sandbox: NowPaymentsSandbox) -> Iterator[SandboxServer]:
    with SandboxServer(sandbox) as running:
        yield running


@pytest.fixture
def client(http: httpx.Client, server: SandboxServer) -> NowPaymentsClient:
    return NowPaymentsClient(http, api_key=API_KEY, base_url=f"{server.url}/v1", timeout=0.2)


def open_payment(client: NowPaymentsClient, price: str = "19.99", pay_currency: str = "btc"):
    return client.create_payment(
        order_id="ord_1",
        price_amount=price,
        price_currency="eur",
        pay_currency=pay_currency,
        ipn_callback_url=CALLBACK,
        description="2 x Stardew Valley",
    )


def test_create_then_get_payment_round_trip_keeps_exact_amounts(client, sandbox, clock):
    opened = open_payment(client)

    assert opened.payment_id == "5800000001"
    assert opened.provider_status == "waiting"
    assert opened.price_amount == Decimal("19.99")
    assert opened.price_currency == "eur"
    # 19.99 x 0.0000105 = 0.000209895, rounded up to 8 decimals.
    assert opened.pay_amount == Decimal("0.0002099")
    assert opened.pay_currency == "btc"
    assert opened.pay_address.startswith("bc1q")
    assert opened.valid_until == clock.now() + timedelta(minutes=20)

    update = client.get_payment(opened.payment_id)
    assert update.provider == "nowpayments"
    assert update.payment_id == "5800000001"
    assert update.provider_status == "waiting"
    assert update.kind is PaymentKind.WAITING
    assert update.order_id == "ord_1"
    assert update.price_amount == Decimal("19.99")
    assert update.pay_amount == opened.pay_amount
    assert update == parse_payment(sandbox.ipn_body(opened.payment_id))


@pytest.mark.parametrize(
    ("price", "wire"),
    [
        ("19.99", b'"price_amount":19.99,'),
        ("20.00", b'"price_amount":20.00,'),
        ("0.1", b'"price_amount":0.1,'),
        ("1E+1", b'"price_amount":10,'),
        ("1234567890123.123456789012", b'"price_amount":1234567890123.123456789012,'),
    ],
)
def test_price_goes_out_as_an_exact_json_number(client, sandbox, price, wire):
    open_payment(client, price=price)

    (call,) = sandbox.calls
    assert call.method == "POST"
    assert call.path == "/v1/payment"
    assert call.body.startswith(b"{" + wire)
    assert json.loads(call.body, parse_float=Decimal)["price_amount"] == Decimal(price)


def test_request_carries_the_api_key_header_and_every_field(client, sandbox):
    open_payment(client)

    body = json.loads(sandbox.calls[0].body)
    assert body == {
        "price_amount": 19.99,
        "price_currency": "eur",
        "pay_currency": "btc",
        "ipn_callback_url": CALLBACK,
        "order_id": "ord_1",
        "order_description": "2 x Stardew Valley",
    }


@pytest.mark.parametrize(
    "price", ["abc", "", "-1", "0", "NaN", "Infinity", "1e999999999", "1e-999999999", "1e15"]
)
def test_a_price_that_is_no_positive_decimal_is_refused_before_sending(client, sandbox, price):
    with pytest.raises(InvalidInput):
        open_payment(client, price=price)
    assert sandbox.calls == []


def test_provider_error_json_becomes_a_typed_provider_error(client):
    with pytest.raises(ProviderError) as caught:
        open_payment(client, pay_currency="doge")

    error = caught.value
    assert type(error) is ProviderError
    assert not error.retryable
    assert error.provider_code == "INVALID_REQUEST_PARAMS"
    assert error.status == 400
    assert "Currency doge was not found" in str(error)


def test_an_amount_below_the_minimum_is_amount_minimal_error(client):
    with pytest.raises(ProviderError) as caught:
        open_payment(client, price="0.01")

    assert caught.value.provider_code == "AMOUNT_MINIMAL_ERROR"
    assert caught.value.status == 400
    assert not caught.value.retryable


def test_a_wrong_api_key_is_invalid_api_key_and_never_in_the_message(http, server):
    wrong_key = "np-wrong-key-fedcba9876543210"
    client = NowPaymentsClient(http, api_key=wrong_key, base_url=f"{server.url}/v1")

    with pytest.raises(ProviderError) as caught:
        open_payment(client)

    error = caught.value
    assert error.provider_code == "INVALID_API_KEY"
    assert error.status == 403
    assert wrong_key not in str(error)
    assert wrong_key not in repr(error.data)
    assert wrong_key not in repr(client)


def test_unknown_payment_is_a_provider_error(client):
    with pytest.raises(ProviderError) as caught:
        client.get_payment("123")
    assert caught.value.status == 404
    assert type(caught.value) is ProviderError


@pytest.mark.parametrize(("mode", "status"), [("503", 503), ("500", 500), ("429", 429)])
def test_server_errors_and_rate_limits_are_provider_unavailable(client, sandbox, mode, status):
    sandbox.outage(1, mode)

    with pytest.raises(ProviderUnavailable) as caught:
        open_payment(client)

    assert caught.value.status == status
    assert caught.value.retryable
    assert API_KEY not in str(caught.value)
    # The outage is used up: the next call goes through.
    assert open_payment(client).provider_status == "waiting"


@pytest.mark.parametrize("mode", ["timeout", "slow"])
def test_a_timeout_is_provider_unavailable_from_the_transport_error(client, sandbox, mode):
    sandbox.outage(1, mode)

    with pytest.raises(ProviderUnavailable, match="timed out") as caught:
        open_payment(client)

    assert isinstance(caught.value.__cause__, httpx.TimeoutException)
    assert API_KEY not in str(caught.value)


def test_a_refused_connection_is_provider_unavailable(http):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = NowPaymentsClient(http, api_key=API_KEY, base_url=f"http://127.0.0.1:{port}/v1")

    with pytest.raises(ProviderUnavailable) as caught:
        client.get_payment("1")

    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert API_KEY not in str(caught.value)


class CannedApp:
    """A provider that answers every call with one canned response."""

    def __init__(self, status: int, body: bytes) -> None:
        self.response = SandboxResponse(status=status, body=body)

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        return self.response


@pytest.mark.parametrize(
    "body",
    [
        b"<html>not json</html>",
        b"[]",
        b'{"payment_id":"1"}',
        (
            b'{"payment_id":true,"payment_status":"waiting","pay_address":"a","pay_amount":1,'
            b'"pay_currency":"btc","price_amount":1,"price_currency":"usd"}'
        ),
        (
            b'{"payment_id":"1","payment_status":"waiting","pay_address":"a","pay_amount":"x",'
            b'"pay_currency":"btc","price_amount":1,"price_currency":"usd"}'
        ),
        (
            b'{"payment_id":"1","payment_status":"waiting","pay_address":"a","pay_amount":1,'
            b'"pay_currency":"btc","price_amount":1,"price_currency":"usd","valid_until":"soon"}'
        ),
    ],
)
def test_a_malformed_success_body_is_a_provider_error(http, body):
    with SandboxServer(CannedApp(201, body)) as server:
        client = NowPaymentsClient(http, api_key=API_KEY, base_url=f"{server.url}/v1")
        with pytest.raises(ProviderError) as caught:
            open_payment(client)

    assert type(caught.value) is ProviderError
    assert API_KEY not in str(caught.value)


def test_a_payment_id_sent_as_a_number_and_naive_times_are_accepted(http):
    body = (
        b'{"payment_id":5800567260,"payment_status":"waiting","pay_address":"0x05Db",'
        b'"pay_amount":0.00656612,"pay_currency":"ETH","price_amount":20,'
        b'"price_currency":"USD","expiration_estimate_date":"2025-12-09T03:04:21.097"}'
    )
    with SandboxServer(CannedApp(201, body)) as server:
        client = NowPaymentsClient(http, api_key=API_KEY, base_url=f"{server.url}/v1")
        opened = open_payment(client)

    assert opened.payment_id == "5800567260"
    assert opened.pay_amount == Decimal("0.00656612")
    assert opened.price_amount == Decimal(20)
    assert opened.pay_currency == "eth"
    assert opened.valid_until is not None
    assert opened.valid_until.isoformat() == "2025-12-09T03:04:21.097000+00:00"


def test_an_error_message_that_echoes_the_api_key_is_scrubbed(http):
    body = json.dumps(
        {"status": False, "statusCode": 400, "code": "X", "message": f"bad key {API_KEY}"}
    ).encode()
    with SandboxServer(CannedApp(400, body)) as server:
        client = NowPaymentsClient(http, api_key=API_KEY, base_url=f"{server.url}/v1")
        with pytest.raises(ProviderError) as caught:
            client.get_payment("1")

    assert API_KEY not in str(caught.value)
    assert "bad key [api key]" in str(caught.value)
