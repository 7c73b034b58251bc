"""A maintained Python client for NOWPayments (``nowpayment``, pinned in the test
dependencies) runs its calls against the sandbox, parsing each answer into its models:
a call it cannot make, or an answer its models reject, is a sandbox bug."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitloot_adapters.sandbox import DEFAULT_RATES, NowPaymentsSandbox, SandboxServer
from support.needs import missing

API_KEY = "python-sdk-key"
CALLBACK = "http://127.0.0.1:9/webhooks/nowpayments"


@pytest.fixture
def client() -> Iterator[Any]:
    try:
        import nowpayment  # noqa: PLC0415 - a test dependency, checked here
    except ImportError:
        missing("the nowpayment package is missing: run `make test` (a test dependency)")
    with (
        httpx.Client(timeout=10) as http,
        SandboxServer(NowPaymentsSandbox(api_key=API_KEY, ipn_secret="s", http=http)) as server,
    ):
        # The payment list needs a JWT (from NOWPayments' /auth); the sandbox takes any.
        sdk = nowpayment.NowPayments(API_KEY, jwt_token="sandbox-jwt", timeout=10)
        sdk.base_url = f"{server.url}/v1"
        try:
            yield sdk
        finally:
            sdk.close()


def test_the_python_client_runs_its_calls_against_the_sandbox(client: Any) -> None:
    assert client.get_api_status(as_model=True).message == "OK"
    currencies = client.currency.get_available_currencies(as_model=True)
    assert list(currencies.currencies) == list(DEFAULT_RATES)
    full = client.currency.get_available_currencies_v2()
    assert [c["code"] for c in full["currencies"]] == [c.upper() for c in DEFAULT_RATES]

    minimum = client.payment.get_minimum_payment_amount("btc", "btc", as_model=True)
    assert 0 < Decimal(str(minimum.min_amount)) < Decimal("0.001")
    assert Decimal(str(minimum.fiat_equivalent)) == Decimal("0.5")

    estimate = client.payment.get_estimated_price(19.99, "usd", "btc", as_model=True)
    assert Decimal(str(estimate.estimated_amount)) == Decimal("0.0002099")

    payment = client.payment.create_payment(19.99, "usd", "btc", CALLBACK, "py-1", as_model=True)
    assert payment.payment_status == "waiting"
    status = client.payment.get_payment_status(str(payment.payment_id), as_model=True)
    assert str(status.payment_id) == str(payment.payment_id)
    created = datetime.fromisoformat(str(status.created_at))
    assert created.tzinfo is not None
    assert abs((created - datetime.now(UTC)).total_seconds()) < 60

    listed = client.payment.get_payment_list(as_model=True)
    assert listed.total == 1
    assert [str(p.payment_id) for p in listed.data] == [str(payment.payment_id)]

    invoice = client.payment.create_invoice(19.99, "usd", order_id="py-2", as_model=True)
    assert str(invoice.invoice_url).endswith(f"?iid={invoice.id}")


def test_the_python_client_sees_the_sandboxs_errors(client: Any) -> None:
    import nowpayment  # noqa: PLC0415 - the fixture made sure it is there

    with pytest.raises(nowpayment.NowPaymentsAPIError) as refused:
        client.payment.create_payment(19.99, "usd", "doge-not-offered", CALLBACK, "py-3")
    assert refused.value.status_code == 400
    client.api_key = "wrong"
    with pytest.raises(nowpayment.NowPaymentsAPIError) as wrong_key:
        client.currency.get_available_currencies()
    assert wrong_key.value.status_code == 403
