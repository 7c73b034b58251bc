"""The README's code runs as written: the wiring block, then the calls block."""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))

from checkout_kit import ipn_body, make_kit, sign

from bitloot_core.service import Checkout

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)


def test_the_readme_has_the_two_python_blocks() -> None:
    assert len(BLOCKS) == 2


def test_the_wiring_block_builds_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    names: dict[str, object] = {
        "NOWPAYMENTS_API_KEY": "np-key",
        "KINGUIN_API_KEY": "kg-key",
        "VAULT_KEY": b"v" * 32,
        "SIGNING_KEY": b"s" * 32,
        "SHOP_URL": "https://shop.example",
        "SMTP_URL": "smtp://user:pass@127.0.0.1:2525",
        "IPN_SECRET": base64.b64encode(b"i" * 32).decode(),
    }
    exec(BLOCKS[0], names)  # noqa: S102 - the README's own code
    checkout = names["checkout"]
    assert isinstance(checkout, Checkout)
    names["http"].close()  # type: ignore[attr-defined]
    names["checkout"]._store.close()  # type: ignore[attr-defined]


def test_the_calls_block_runs_against_a_checkout() -> None:
    kit = make_kit()
    names: dict[str, object] = {
        "checkout": kit.checkout,
        "email": "reader@example.com",
        "key": "readme-checkout-0001",
    }
    # The catalogue of the README's example.
    from decimal import Decimal  # noqa: PLC0415

    from bitloot_core.values import Product, ProductSource  # noqa: PLC0415

    kit.checkout.save_product(
        Product(
            id="stardew-valley",
            name="Stardew Valley",
            price=Decimal("11.99"),
            currency="usd",
            source=ProductSource.KINGUIN,
            supplier_ref="kg-sv",
        )
    )
    lines = BLOCKS[1].splitlines()
    # Run up to handle_ipn with a genuine IPN, then the rest once the order is fulfilled.
    exec("\n".join(lines[:2]), names)  # noqa: S102
    payment = names["payment"]
    body = ipn_body(payment, "finished")  # type: ignore[arg-type]
    names |= {"raw_body": body, "headers": sign(body)}
    exec(lines[2], names)  # noqa: S102
    assert names["result"].outcome == "applied"  # type: ignore[attr-defined]
    kit.checkout.run_due_jobs()
    created = names["created"]
    names |= {
        "order_id": created.order.id,  # type: ignore[attr-defined]
        "access_token": created.access_token,  # type: ignore[attr-defined]
        "item_id": created.order.items[0].id,  # type: ignore[attr-defined]
    }
    exec("\n".join(lines[3:]), names)  # noqa: S102
    assert names["view"].order.status == "fulfilled"  # type: ignore[attr-defined]
    assert str(names["url"]).startswith("memory://keys/")
