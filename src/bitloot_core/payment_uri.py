"""What a wallet needs to pay: the coin's name and network, and a payment URI if one exists.

A payment URI is what the page's QR code encodes and its "Open in wallet" link opens, so
it must be one that real wallets read:

- BIP21 (``bitcoin:ADDRESS?amount=1.5``) and the same form for coins that adopted it
  (``litecoin:``, ``dogecoin:``): the amount in whole coins, as a plain decimal.
- EIP-681 for Ethereum: ``ethereum:ADDRESS@1?value=WEI`` (an integer number of wei), and
  for an ERC-20 token a call of its contract's ``transfer``:
  ``ethereum:CONTRACT@1/transfer?address=RECIPIENT&uint256=UNITS`` (an integer number of
  the token's smallest units, so the table below names each token's contract and decimals).
- Anything else (a Tron token, a coin this table does not know) has no URI: the page shows
  the address and the amount only. A made-up scheme would open nothing in any wallet.

Coins are keyed by the payment provider's currency code (NOWPayments' ``pay_currency``).
Amounts are ``Decimal`` and never pass through a float; an amount finer than the coin's
smallest unit cannot be paid exactly, so it gets no URI rather than a rounded one.

Pure: standard library only, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Final

__all__ = ["COINS", "Coin", "UriKind", "coin", "payment_uri"]


class UriKind(StrEnum):
    BIP21 = "bip21"
    EIP681_ETHER = "eip681-ether"
    EIP681_ERC20 = "eip681-erc20"
    NONE = "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class Coin:
    """One currency a payment can be made in, on one network."""

    code: str  # the provider's currency code, lower case
    ticker: str  # what the customer's wallet calls it
    name: str
    network: str
    decimals: int  # the smallest unit is 10**-decimals
    uri: UriKind
    scheme: str = ""  # BIP21's scheme, or "ethereum"
    chain_id: int = 0  # EIP-681's chain
    contract: str = ""  # an ERC-20 token's contract address
    address_pattern: str = r"[A-Za-z0-9]{20,100}"


_ETH_ADDRESS: Final = r"0x[0-9A-Fa-f]{40}"
_BASE58_OR_BECH32: Final = r"[A-Za-z0-9]{25,90}"
ETHEREUM_MAINNET: Final = 1

COINS: Final[dict[str, Coin]] = {
    c.code: c
    for c in (
        Coin(
            code="btc",
            ticker="BTC",
            name="Bitcoin",
            network="Bitcoin",
            decimals=8,
            uri=UriKind.BIP21,
            scheme="bitcoin",
            address_pattern=_BASE58_OR_BECH32,
        ),
        Coin(
            code="ltc",
            ticker="LTC",
            name="Litecoin",
            network="Litecoin",
            decimals=8,
            uri=UriKind.BIP21,
            scheme="litecoin",
            address_pattern=_BASE58_OR_BECH32,
        ),
        Coin(
            code="doge",
            ticker="DOGE",
            name="Dogecoin",
            network="Dogecoin",
            decimals=8,
            uri=UriKind.BIP21,
            scheme="dogecoin",
            address_pattern=_BASE58_OR_BECH32,
        ),
        Coin(
            code="eth",
            ticker="ETH",
            name="Ether",
            network="Ethereum",
            decimals=18,
            uri=UriKind.EIP681_ETHER,
            scheme="ethereum",
            chain_id=ETHEREUM_MAINNET,
            address_pattern=_ETH_ADDRESS,
        ),
        Coin(
            code="usdterc20",
            ticker="USDT",
            name="Tether USD",
            network="Ethereum (ERC-20)",
            decimals=6,
            uri=UriKind.EIP681_ERC20,
            scheme="ethereum",
            chain_id=ETHEREUM_MAINNET,
            contract="0xdAC17F958D2ee523a2206206994597C13D831ec7",
            address_pattern=_ETH_ADDRESS,
        ),
        Coin(
            code="usdttrc20",
            ticker="USDT",
            name="Tether USD",
            network="Tron (TRC-20)",
            decimals=6,
            uri=UriKind.NONE,
        ),
    )
}


def coin(code: str) -> Coin:
    """The coin for a provider currency code; an unknown code is named by itself, no URI."""
    known = COINS.get(code.lower())
    if known is not None:
        return known
    return Coin(
        code=code.lower(),
        ticker=code.upper(),
        name=code.upper(),
        network="",
        decimals=0,
        uri=UriKind.NONE,
    )


def payment_uri(code: str, address: str, amount: Decimal) -> str | None:
    """The URI a standard wallet opens to pay ``amount`` to ``address``, or None.

    None when the coin has no standard scheme, the address does not look like one of the
    coin's (it would have to be escaped, and no wallet would take it), or the amount is
    not a positive number of the coin's smallest units.
    """
    paid = coin(code)
    if paid.uri is UriKind.NONE or not re.fullmatch(paid.address_pattern, address):
        return None
    units = _smallest_units(amount, paid.decimals)
    if units is None:
        return None
    if paid.uri is UriKind.BIP21:
        return f"{paid.scheme}:{address}?amount={_whole_coins(units, paid.decimals)}"
    if paid.uri is UriKind.EIP681_ETHER:
        return f"{paid.scheme}:{address}@{paid.chain_id}?value={units}"
    call = f"{paid.contract}@{paid.chain_id}/transfer"
    return f"{paid.scheme}:{call}?address={address}&uint256={units}"


def _smallest_units(amount: Decimal, decimals: int) -> int | None:
    """``amount`` in units of ``10**-decimals``, exactly (integer arithmetic, so no
    context precision rounds a long amount), or None if that is not a positive integer."""
    if not amount.is_finite() or amount <= 0:
        return None
    _, digits, exponent = amount.as_tuple()
    significand = int("".join(map(str, digits)))
    shift = int(exponent) + decimals  # an int: the amount is finite
    if shift >= 0:
        return significand * int(10**shift)
    units, rest = divmod(significand, int(10**-shift))
    return None if rest else units


def _whole_coins(units: int, decimals: int) -> str:
    """BIP21's amount: digits and at most one dot, no exponent, no trailing zeros."""
    whole, fraction = divmod(units, 10**decimals)
    digits = str(fraction).rjust(decimals, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)
