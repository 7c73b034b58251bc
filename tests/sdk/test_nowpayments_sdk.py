"""The official NOWPayments JavaScript client (``@nowpaymentsio/nowpayments-api-js``, from
the npm registry, pinned by this directory's package-lock.json) runs its calls against
the sandbox: a call it cannot make, or an answer in a shape it does not expect, is a
sandbox bug.

Both ways the sandbox is served are checked: the NOWPayments sandbox on its own (as a
sandbox-mode shop starts it) and ``bitloot sandbox``'s, under ``/nowpayments``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitloot_adapters.sandbox import DEFAULT_RATES, NowPaymentsSandbox, SandboxServer
from bitloot_adapters.sandbox.standalone import shared_sandbox
from support.needs import missing

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "nowpayments_sdk.js"
SDK = HERE / "node_modules" / "@nowpaymentsio" / "nowpayments-api-js" / "package.json"
API_KEY = "sdk-api-key"
CALLBACK = "http://127.0.0.1:9/webhooks/nowpayments"


def iso(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


@pytest.fixture(params=["in-process", "bitloot sandbox"])
def sandbox_url(request: pytest.FixtureRequest) -> Iterator[str]:
    node = shutil.which("node")
    if node is None or not SDK.is_file():
        missing(f"node or {SDK} is missing: run `make test` (it installs the SDK with npm ci)")
    with httpx.Client(timeout=10) as http:
        if request.param == "in-process":
            sandbox = NowPaymentsSandbox(api_key=API_KEY, ipn_secret="secret", http=http)
            with SandboxServer(sandbox) as server:
                yield server.url
            sandbox.close()
        else:
            shared = shared_sandbox({"BITLOOT_NOWPAYMENTS_IPN_SECRET": "secret"}, http=http)
            with SandboxServer(shared) as server:
                yield f"{server.url}/nowpayments"
            shared.close()


def run_sdk(sandbox_url: str) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 - node and our own script, fixed arguments
        [str(shutil.which("node")), str(SCRIPT), sandbox_url, API_KEY, CALLBACK],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=HERE,
    )
    assert done.returncode == 0, done.stderr
    answers: dict[str, Any] = json.loads(done.stdout, parse_float=Decimal)
    return answers


def test_the_official_js_client_runs_every_call_against_the_sandbox(sandbox_url: str) -> None:
    answers = run_sdk(sandbox_url)
    assert answers["status"] == {"message": "OK"}
    assert answers["currencies"] == {"currencies": list(DEFAULT_RATES)}

    minimum = answers["minimum"]
    assert (minimum["currency_from"], minimum["currency_to"]) == ("btc", "btc")
    assert Decimal(0) < minimum["min_amount"] < Decimal("0.001")

    estimate = answers["estimate"]
    assert estimate["amount_from"] == Decimal("19.99")
    exact = Decimal("19.99") * DEFAULT_RATES["btc"]
    assert estimate["estimated_amount"] == exact.quantize(Decimal("1e-8"), ROUND_HALF_UP)

    payment = answers["payment"]
    assert isinstance(payment["payment_id"], str)  # a string here, a number elsewhere
    assert payment["payment_status"] == "waiting"
    assert payment["pay_amount"] == estimate["estimated_amount"]
    created = iso(payment["created_at"])
    assert abs(created - datetime.now(UTC)) < timedelta(minutes=1)
    assert iso(payment["valid_until"]) - created == timedelta(minutes=20)

    status = answers["paymentStatus"]
    assert status["payment_id"] == int(payment["payment_id"])
    assert status["payment_status"] == "waiting"
    assert status["actually_paid"] == 0
    assert iso(status["created_at"]) == created
    assert iso(status["updated_at"]) == created
    assert status["order_id"] == "sdk-order-1"

    listed = answers["list"]
    assert (listed["limit"], listed["page"], listed["total"], listed["pagesCount"]) == (
        10,
        0,
        1,
        1,
    )
    assert listed["data"] == [status]

    invoice = answers["invoice"]
    assert invoice["order_id"] == "sdk-order-2"
    assert invoice["price_amount"] == "19.99"
    assert invoice["invoice_url"].endswith(f"?iid={invoice['id']}")
    assert iso(invoice["created_at"]) >= created

    assert answers["wrongKey"]["statusCode"] == 403
    assert answers["wrongKey"]["code"] == "INVALID_API_KEY"
