"""BtcPayClient against the BTCPay sandbox over real loopback HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from bitloot_adapters.btcpay import BtcPayClient, normalise_method
from bitloot_adapters.sandbox import SandboxRequest, SandboxResponse, SandboxServer
from bitloot_adapters.sandbox.btcpay import BtcPaySandbox
from bitloot_core.chart import PaymentKind
from bitloot_core.errors import InvalidInput, ProviderError, ProviderUnavailable
from bitloot_core.testing import SettableClock

API_KEY = "btcpay-key-0123456789abcdef0123"
STORE = "9CiNzKoANXxmk5ayZngSXrHTiVvvgCrwrpFQd4m2K776"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def sandbox(http: httpx.Client, clock: SettableClock) -> BtcPaySandbox:
    return BtcPaySandbox(api_key=API_KEY, store_id=STORE, http=http, clock=clock)


@pytest.fixture
def server(sandbox: BtcPaySandbox) -> Iterator[SandboxServer]:
    with SandboxServer(sandbox) as running:
        yield running


@pytest.fixture
def make_client(http: httpx.Client, server: SandboxServer) -> Callable[..., BtcPayClient]:
    def make(**options: object) -> BtcPayClient:
        settings: dict[str, object] = {
            "base_url": server.url,
            "api_key": API_KEY,
            "store_id": STORE,
            "timeout": 0.2,
        }
        settings.update(options)
        return BtcPayClient(http, **settings)  # type: ignore[arg-type]

    return make


@pytest.fixture
def client(make_client: Callable[..., BtcPayClient]) -> BtcPayClient:
    return make_client()


def open_payment(client: BtcPayClient, price: str = "19.99", order_id: str = "ord_1"):
    return client.create_payment(
        order_id=order_id,
        price_amount=price,
        price_currency="usd",
        pay_currency="btc",
        ipn_callback_url="http://127.0.0.1:9/ignored",
        description="2 x Stardew Valley",
    )


def test_opening_a_payment_creates_an_invoice_and_reads_its_address(client, sandbox, clock):
    opened = open_payment(client)

    assert opened.payment_id in sandbox.invoice_ids
    assert opened.provider_status == "New"
    assert opened.price_amount == Decimal("19.99")
    assert opened.price_currency == "usd"
    # 19.99 / 64392.23 = 0.000310441..., rounded up to whole satoshis.
    assert opened.pay_amount == Decimal("0.00031045")
    assert opened.pay_currency == "btc"
    assert opened.pay_address.startswith("bcrt1q")
    # BTCPay's default expiry is 15 minutes; times travel as whole unix seconds.
    assert opened.valid_until == clock.now().replace(microsecond=0) + timedelta(minutes=15)
    paths = [(call.method, call.path) for call in sandbox.calls]
    invoice = f"/api/v1/stores/{STORE}/invoices"
    assert paths == [
        ("GET", invoice),
        ("POST", invoice),
        ("GET", f"{invoice}/{opened.payment_id}/payment-methods"),
    ]


def test_the_invoice_request_carries_the_order_id_and_the_checkout_options(make_client, sandbox):
    client = make_client(
        expiration_minutes=30, payment_tolerance=Decimal("0.5"), speed_policy="HighSpeed"
    )
    open_payment(client)

    body = json.loads(sandbox.calls[1].body, parse_float=Decimal)
    assert body == {
        "amount": "19.99",
        "currency": "USD",
        "metadata": {"orderId": "ord_1", "itemDesc": "2 x Stardew Valley"},
        "additionalSearchTerms": ["ord_1"],
        "checkout": {
            "speedPolicy": "HighSpeed",
            "paymentMethods": ["BTC-CHAIN"],
            "defaultPaymentMethod": "BTC-CHAIN",
            "lazyPaymentMethods": False,
            "expirationMinutes": 30,
            "paymentTolerance": Decimal("0.5"),
        },
    }
    # Money as a string, the tolerance as a number: what BTCPay's converters expect.
    assert b'"amount":"19.99"' in sandbox.calls[1].body
    assert b'"paymentTolerance":0.5}' in sandbox.calls[1].body


@pytest.mark.parametrize(
    ("price", "wire"),
    [("19.99", '"19.99"'), ("20.00", '"20.00"'), ("1E+1", '"10"'), ("0.10", '"0.10"')],
)
def test_the_price_goes_out_as_exact_decimal_text(client, sandbox, price, wire):
    client.create_invoice(order_id="ord_1", amount=price, currency="usd")

    assert f'"amount":{wire}'.encode() in sandbox.calls[0].body


@pytest.mark.parametrize("price", ["abc", "", "-1", "0", "NaN", "Infinity", "1e15", "1e-30"])
def test_a_price_that_is_no_positive_decimal_is_refused_before_sending(client, sandbox, price):
    with pytest.raises(InvalidInput):
        client.create_invoice(order_id="ord_1", amount=price, currency="usd")
    assert sandbox.calls == []


def test_the_api_key_travels_as_a_token_authorization(http, sandbox):
    seen: list[str | None] = []

    class Spy:
        def handle(self, request: SandboxRequest) -> SandboxResponse:
            seen.append(request.header("authorization"))
            return sandbox.handle(request)

    with SandboxServer(Spy()) as spy:
        client = BtcPayClient(http, base_url=spy.url, api_key=API_KEY, store_id=STORE)
        client.create_invoice(order_id="ord_1", amount="5", currency="usd")

    assert seen == [f"token {API_KEY}"]


def test_opening_again_reuses_the_orders_new_invoice(client, sandbox):
    first = open_payment(client)
    again = open_payment(client)

    assert again == first
    assert sandbox.invoice_ids == [first.payment_id]


def test_opening_after_the_invoice_expired_creates_a_new_one(client, sandbox):
    first = open_payment(client)
    sandbox.expire(first.payment_id)

    second = open_payment(client)

    assert second.payment_id != first.payment_id
    assert sandbox.invoice_ids == [first.payment_id, second.payment_id]


def test_find_invoices_filters_by_order_id(client):
    mine = open_payment(client, order_id="ord_1")
    open_payment(client, order_id="ord_2")

    assert [invoice.id for invoice in client.find_invoices("ord_1")] == [mine.payment_id]


def test_get_invoice_and_payment_methods_follow_a_payment_with_exact_amounts(client, sandbox):
    opened = open_payment(client)
    sandbox.pay(opened.payment_id)

    invoice = client.get_invoice(opened.payment_id)
    assert (invoice.status, invoice.additional_status) == ("Settled", "None")
    assert invoice.order_id == "ord_1"
    assert invoice.amount == Decimal("19.99")
    assert invoice.paid_amount == Decimal("19.99")
    assert invoice.currency == "USD"
    assert invoice.checkout_link.endswith(f"/i/{opened.payment_id}")
    assert invoice.monitoring_until == invoice.expires_at + timedelta(minutes=1440)

    (method,) = client.get_payment_methods(opened.payment_id)
    assert method.payment_method_id == "BTC-CHAIN"
    assert method.currency == "BTC"
    assert method.destination == opened.pay_address
    assert method.rate == Decimal("64392.23")
    assert method.amount == method.paid == method.total_paid == Decimal("0.00031045")
    assert method.due == 0
    (payment,) = method.payments
    assert payment.value == Decimal("0.00031045")
    assert payment.status == "Settled"
    assert payment.destination == opened.pay_address


def test_an_overpayment_reads_as_a_negative_due(client, sandbox):
    opened = open_payment(client)
    sandbox.pay(opened.payment_id, Decimal("0.0004"))

    invoice = client.get_invoice(opened.payment_id)
    (method,) = client.get_payment_methods(opened.payment_id)

    assert (invoice.status, invoice.additional_status) == ("Settled", "PaidOver")
    assert method.due == Decimal("0.00031045") - Decimal("0.0004")
    assert method.due < 0


def test_a_short_payment_leaves_the_invoice_new_and_partly_paid(client, sandbox):
    opened = open_payment(client)
    sandbox.pay(opened.payment_id, Decimal("0.0002"))

    invoice = client.get_invoice(opened.payment_id)
    (method,) = client.get_payment_methods(opened.payment_id)

    assert (invoice.status, invoice.additional_status) == ("New", "PaidPartial")
    assert method.paid == Decimal("0.0002")
    assert method.due == Decimal("0.00011045")


def test_a_wrong_api_key_is_unauthenticated_and_never_in_the_message(make_client):
    wrong_key = "btcpay-wrong-key-fedcba9876543210"
    client = make_client(api_key=wrong_key)

    with pytest.raises(ProviderError) as caught:
        open_payment(client)

    error = caught.value
    assert type(error) is ProviderError
    assert (error.provider_code, error.status) == ("unauthenticated", 401)
    assert not error.retryable
    assert wrong_key not in str(error)
    assert wrong_key not in repr(error.data)
    assert wrong_key not in repr(client)


def test_another_store_is_a_missing_permission_naming_the_permission(make_client):
    client = make_client(store_id="SomeoneElsesStore")

    with pytest.raises(ProviderError) as caught:
        open_payment(client)

    assert (caught.value.provider_code, caught.value.status) == ("missing-permission", 403)
    assert "btcpay.store.canviewinvoices" in str(caught.value)


def test_an_unknown_invoice_is_invoice_not_found(client):
    with pytest.raises(ProviderError) as caught:
        client.get_invoice("NoSuchInvoice")

    assert type(caught.value) is ProviderError
    assert (caught.value.provider_code, caught.value.status) == ("invoice-not-found", 404)


def test_a_validation_array_becomes_one_error_naming_each_path(make_client):
    client = make_client(payment_method="DOGE-CHAIN")

    with pytest.raises(ProviderError) as caught:
        open_payment(client)

    assert (caught.value.provider_code, caught.value.status) == ("validation", 422)
    assert "Checkout.PaymentMethods[0]: Invalid payment method" in str(caught.value)


def test_a_currency_without_a_rate_is_a_generic_error(client):
    with pytest.raises(ProviderError) as caught:
        client.create_invoice(order_id="ord_1", amount="5", currency="xyz")

    assert (caught.value.provider_code, caught.value.status) == ("generic-error", 400)


@pytest.mark.parametrize(("mode", "status"), [("503", 503), ("500", 500), ("429", 429)])
def test_server_errors_and_rate_limits_are_provider_unavailable(client, sandbox, mode, status):
    sandbox.outage(1, mode)

    with pytest.raises(ProviderUnavailable) as caught:
        open_payment(client)

    assert caught.value.status == status
    assert caught.value.retryable
    assert API_KEY not in str(caught.value)
    assert open_payment(client).provider_status == "New"


@pytest.mark.parametrize("mode", ["timeout", "slow"])
def test_a_timeout_is_provider_unavailable(client, sandbox, mode):
    sandbox.outage(1, mode, method="POST")

    with pytest.raises(ProviderUnavailable) as caught:
        open_payment(client)

    assert isinstance(caught.value.__cause__, httpx.TimeoutException)
    assert "timed out" in str(caught.value)


def test_a_slow_create_is_not_created_twice_when_opened_again(client, sandbox):
    sandbox.outage(1, "slow", method="POST")
    with pytest.raises(ProviderUnavailable):
        open_payment(client)

    opened = open_payment(client)

    # BTCPay made the invoice though the client gave up; opening again finds it.
    assert sandbox.invoice_ids == [opened.payment_id]


def test_nothing_listening_is_provider_unavailable(http, loopback_port):
    client = BtcPayClient(
        http, base_url=f"http://127.0.0.1:{loopback_port}", api_key=API_KEY, store_id=STORE
    )

    with pytest.raises(ProviderUnavailable) as caught:
        client.get_invoice("abc")

    assert isinstance(caught.value.__cause__, httpx.TransportError)


def canned(status: int, body: bytes) -> SandboxServer:
    class Canned:
        def handle(self, request: SandboxRequest) -> SandboxResponse:
            del request
            return SandboxResponse(status=status, body=body)

    return SandboxServer(Canned())


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html>hi</html>", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"id": "x"}', "malformed invoice"),
        (
            (
                b'{"id":"x","storeId":"s","status":"New","amount":"1","currency":"USD",'
                b'"createdTime":"soon","expirationTime":1}'
            ),
            "malformed invoice",
        ),
        (
            (
                b'{"id":"x","storeId":"s","status":"New","amount":"-1","currency":"USD",'
                b'"createdTime":1,"expirationTime":1}'
            ),
            "malformed invoice",
        ),
    ],
)
def test_a_success_body_that_is_no_invoice_is_a_provider_error(http, body, problem):
    with canned(200, body) as server:
        client = BtcPayClient(http, base_url=server.url, api_key=API_KEY, store_id=STORE)
        with pytest.raises(ProviderError) as caught:
            client.get_invoice("x")

    assert type(caught.value) is ProviderError
    assert problem in str(caught.value)


def test_an_unknown_status_is_passed_on_as_text(http):
    body = (
        b'{"id":"x","storeId":"s","status":"Frozen","additionalStatus":"Weird",'
        b'"amount":"1","currency":"USD","createdTime":1,"expirationTime":2,"future":[1]}'
    )
    with canned(200, body) as server:
        client = BtcPayClient(http, base_url=server.url, api_key=API_KEY, store_id=STORE)
        invoice = client.get_invoice("x")

    assert (invoice.status, invoice.additional_status) == ("Frozen", "Weird")
    assert invoice.paid_amount is None
    assert invoice.order_id is None


def test_payment_methods_in_btcpay_1x_spelling_are_read(http):
    body = json.dumps(
        [
            {
                "paymentMethod": "BTC",
                "cryptoCode": "BTC",
                "destination": "bc1qlegacy",
                "paymentLink": "bitcoin:bc1qlegacy",
                "rate": "64392.23",
                "amount": "0.00031045",
                "paymentMethodPaid": "0",
                "totalPaid": "0.00000000",
                "due": "0.00031045",
                "networkFee": "0.0",
                "activated": True,
                "payments": [],
            }
        ]
    ).encode()
    with canned(200, body) as server:
        client = BtcPayClient(http, base_url=server.url, api_key=API_KEY, store_id=STORE)
        (method,) = client.get_payment_methods("x")

    assert method.payment_method_id == "BTC-CHAIN"
    assert method.currency == "BTC"
    assert method.paid == 0


def test_an_error_message_echoing_the_key_is_scrubbed(http):
    body = json.dumps({"code": "generic-error", "message": f"bad key {API_KEY}"}).encode()
    with canned(400, body) as server:
        client = BtcPayClient(http, base_url=server.url, api_key=API_KEY, store_id=STORE)
        with pytest.raises(ProviderError) as caught:
            client.get_invoice("x")

    assert API_KEY not in str(caught.value)
    assert "[api key]" in str(caught.value)


def test_an_error_without_json_keeps_the_http_reason(http):
    with canned(502, b"<html>Bad Gateway</html>") as server:
        client = BtcPayClient(http, base_url=server.url, api_key=API_KEY, store_id=STORE)
        with pytest.raises(ProviderUnavailable) as caught:
            client.get_invoice("x")

    assert caught.value.provider_code is None
    assert "Bad Gateway" in str(caught.value)


def test_a_method_the_invoice_does_not_offer_is_a_provider_error(make_client, sandbox):
    lightning = make_client(payment_method="BTC-LN")
    invoice = lightning.create_invoice(order_id="ord_1", amount="5", currency="usd")

    with pytest.raises(ProviderError, match="did not offer BTC-CHAIN"):
        make_client().payment_method_of(invoice.id)
    assert lightning.payment_method_of(invoice.id).destination.startswith("lnbcrt")


@pytest.mark.parametrize(
    ("given", "normal"),
    [("BTC", "BTC-CHAIN"), ("btc-chain", "BTC-CHAIN"), ("BTC-LightningNetwork", "BTC-LN")],
)
def test_payment_method_ids_are_normalised_to_the_2x_spelling(given, normal):
    assert normalise_method(given) == normal


@pytest.mark.parametrize(
    "options",
    [
        {"api_key": ""},
        {"store_id": ""},
        {"base_url": ""},
        {"expiration_minutes": 0},
        {"payment_tolerance": Decimal(101)},
    ],
)
def test_a_client_without_its_settings_is_refused(http, options):
    settings: dict[str, object] = {"base_url": "http://x", "api_key": "k", "store_id": "s"}
    settings.update(options)
    with pytest.raises(ValueError, match=r"BTCPay|minutes|percentage"):
        BtcPayClient(http, **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("call", ["get_invoice", "get_payment_methods", "find_invoices"])
def test_an_empty_id_is_invalid_input(client, sandbox, call):
    with pytest.raises(InvalidInput):
        getattr(client, call)("")
    assert sandbox.calls == []


def test_a_redirect_url_goes_into_the_checkout_options(client, sandbox):
    client.create_invoice(
        order_id="ord_1", amount="5", currency="usd", redirect_url="https://shop/o/{OrderId}"
    )

    checkout = json.loads(sandbox.calls[0].body)["checkout"]
    assert checkout["redirectURL"] == "https://shop/o/{OrderId}"


def test_a_pay_currency_other_than_the_methods_is_a_provider_error(client):
    with pytest.raises(ProviderError, match="offers BTC"):
        client.create_payment(
            order_id="o", price_amount="5", price_currency="usd", pay_currency="eth"
        )


def test_a_method_not_yet_activated_is_a_provider_error(http):
    body = json.dumps(
        [
            {
                "paymentMethodId": "BTC-CHAIN",
                "currency": "BTC",
                "destination": "",
                "paymentLink": "",
                "rate": "1",
                "amount": "1",
                "paymentMethodPaid": "0",
                "totalPaid": "0",
                "due": "1",
                "activated": False,
            }
        ]
    ).encode()
    with canned(200, body) as server:
        client = BtcPayClient(http, base_url=server.url, api_key=API_KEY, store_id=STORE)
        with pytest.raises(ProviderError, match="not activated"):
            client.payment_method_of("x")


# --- get_payment: the invoice as the core's BTCPay provider reads it -------------------


def test_get_payment_follows_the_invoice_through_its_life(client, sandbox):
    opened = open_payment(client)
    waiting = client.get_payment(opened.payment_id)
    assert (waiting.provider, waiting.provider_status, waiting.kind) == (
        "btcpay",
        "New",
        PaymentKind.WAITING,
    )
    assert (waiting.order_id, waiting.price_amount, waiting.price_currency) == (
        "ord_1",
        Decimal("19.99"),
        "usd",
    )
    assert (waiting.pay_amount, waiting.pay_currency, waiting.actually_paid) == (
        opened.pay_amount,
        "btc",
        Decimal(0),
    )

    sandbox.pay(opened.payment_id, confirm=False)
    confirming = client.get_payment(opened.payment_id)
    assert (confirming.provider_status, confirming.kind) == ("Processing", PaymentKind.CONFIRMING)
    assert confirming.actually_paid == opened.pay_amount

    sandbox.confirm(opened.payment_id)
    paid = client.get_payment(opened.payment_id)
    assert (paid.provider_status, paid.kind) == ("Settled", PaymentKind.PAID)
    assert paid.dedupe_key != confirming.dedupe_key


def test_a_late_payment_counts_only_once_confirmed(client, sandbox):
    opened = open_payment(client)
    sandbox.expire(opened.payment_id)
    assert client.get_payment(opened.payment_id).kind is PaymentKind.EXPIRED

    sandbox.pay(opened.payment_id, confirm=False)
    unconfirmed = client.get_payment(opened.payment_id)
    assert unconfirmed.provider_status == "Expired/PaidLate/unconfirmed"
    assert unconfirmed.kind is PaymentKind.CONFIRMING

    sandbox.confirm(opened.payment_id)
    late = client.get_payment(opened.payment_id)
    assert (late.provider_status, late.kind) == ("Expired/PaidLate", PaymentKind.PAID)


def test_a_double_spent_payment_no_longer_counts(client, sandbox):
    opened = open_payment(client)
    sandbox.pay(opened.payment_id, confirm=False)
    sandbox.double_spend(opened.payment_id)
    update = client.get_payment(opened.payment_id)
    assert (update.provider_status, update.kind) == ("New", PaymentKind.WAITING)
    assert update.actually_paid == 0


def test_get_payment_of_an_invoice_without_the_method_is_a_provider_error(make_client):
    lightning = make_client(payment_method="BTC-LN")
    invoice = lightning.create_invoice(order_id="ord_ln", amount="5", currency="USD")
    with pytest.raises(ProviderError, match="did not offer BTC-CHAIN"):
        make_client().get_payment(invoice.id)
