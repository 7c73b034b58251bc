"""Payment URIs by coin: BIP21 where a scheme exists, EIP-681 for Ethereum and its tokens,
nothing for a coin without a standard (never a made-up scheme)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bitloot_core.payment_uri import COINS, UriKind, coin, payment_uri

BTC_ADDRESS = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
LTC_ADDRESS = "ltc1qg82n7jpzz8rwzw6hd6gh5hkr6rdx3kgfwaq4yh"
DOGE_ADDRESS = "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L"
ETH_ADDRESS = "0x05Db0a4D1F6bF1e4a8C4dE4C7e8d2C4A3e7b2F91"
USDT_ERC20 = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
TRON_ADDRESS = "TNPeeaaFB7K9cmo4uQpcU32zGK8G1NYqeL"

# One row per supported coin: what a standard wallet expects to scan.
URIS = [
    ("btc", BTC_ADDRESS, "0.00022187", f"bitcoin:{BTC_ADDRESS}?amount=0.00022187"),
    ("btc", BTC_ADDRESS, "1.50000000", f"bitcoin:{BTC_ADDRESS}?amount=1.5"),
    ("btc", BTC_ADDRESS, "2", f"bitcoin:{BTC_ADDRESS}?amount=2"),
    ("btc", BTC_ADDRESS, "1E-8", f"bitcoin:{BTC_ADDRESS}?amount=0.00000001"),
    ("btc", BTC_ADDRESS, "2.1E+1", f"bitcoin:{BTC_ADDRESS}?amount=21"),
    ("BTC", BTC_ADDRESS, "0.1", f"bitcoin:{BTC_ADDRESS}?amount=0.1"),
    ("ltc", LTC_ADDRESS, "0.2360", f"litecoin:{LTC_ADDRESS}?amount=0.236"),
    ("doge", DOGE_ADDRESS, "120.5", f"dogecoin:{DOGE_ADDRESS}?amount=120.5"),
    # EIP-681: ether in wei, an integer.
    ("eth", ETH_ADDRESS, "0.00656612", f"ethereum:{ETH_ADDRESS}@1?value=6566120000000000"),
    ("eth", ETH_ADDRESS, "1", f"ethereum:{ETH_ADDRESS}@1?value=1000000000000000000"),
    # An ERC-20 token: a call of the contract's transfer, in the token's 6-decimal units.
    (
        "usdterc20",
        ETH_ADDRESS,
        "20.04",
        f"ethereum:{USDT_ERC20}@1/transfer?address={ETH_ADDRESS}&uint256=20040000",
    ),
]


@pytest.mark.parametrize(("code", "address", "amount", "expected"), URIS)
def test_payment_uri_per_coin(code: str, address: str, amount: str, expected: str) -> None:
    assert payment_uri(code, address, Decimal(amount)) == expected


def test_every_coin_with_a_uri_is_in_the_table() -> None:
    tested = {code.lower() for code, *_ in URIS}
    with_uri = {code for code, c in COINS.items() if c.uri is not UriKind.NONE}
    assert with_uri == tested


def test_a_long_amount_is_converted_exactly_not_at_context_precision() -> None:
    amount = Decimal("123456789012345678901.123456789012345678")  # 39 digits
    uri = payment_uri("eth", ETH_ADDRESS, amount)
    assert uri == f"ethereum:{ETH_ADDRESS}@1?value=123456789012345678901123456789012345678"
    btc = payment_uri("btc", BTC_ADDRESS, Decimal("98765432109876543210.12345678"))
    assert btc == f"bitcoin:{BTC_ADDRESS}?amount=98765432109876543210.12345678"


@pytest.mark.parametrize(
    ("code", "address", "amount"),
    [
        # No standard scheme: address and amount only.
        ("usdttrc20", TRON_ADDRESS, "20.04"),
        ("xmr", "4" + "A" * 94, "0.1"),
        # Finer than the smallest unit: no wallet can pay it exactly.
        ("btc", BTC_ADDRESS, "0.000000001"),
        ("usdterc20", ETH_ADDRESS, "1.0000001"),
        # Not a positive, finite amount.
        ("btc", BTC_ADDRESS, "0"),
        ("btc", BTC_ADDRESS, "-1"),
        ("btc", BTC_ADDRESS, "NaN"),
        ("eth", ETH_ADDRESS, "Infinity"),
        # An address that is not one of the coin's would need escaping: refused.
        ("btc", "bc1q&amount=100", "0.1"),
        ("btc", f"{BTC_ADDRESS}?x=1", "0.1"),
        ("eth", "0x1234", "0.1"),
        ("usdterc20", BTC_ADDRESS, "1"),
    ],
)
def test_no_uri(code: str, address: str, amount: str) -> None:
    assert payment_uri(code, address, Decimal(amount)) is None


def test_coins_are_named_with_their_network() -> None:
    assert (coin("btc").name, coin("btc").network, coin("btc").ticker) == (
        "Bitcoin",
        "Bitcoin",
        "BTC",
    )
    assert coin("USDTTRC20").network == "Tron (TRC-20)"
    assert coin("usdterc20").network == "Ethereum (ERC-20)"
    assert coin("usdterc20").ticker == coin("usdttrc20").ticker == "USDT"


def test_an_unknown_coin_is_named_by_its_code_and_has_no_uri() -> None:
    unknown = coin("XMR")
    assert (unknown.code, unknown.ticker, unknown.name, unknown.network) == (
        "xmr",
        "XMR",
        "XMR",
        "",
    )
    assert unknown.uri is UriKind.NONE
