"""Strict JSON for webhook bodies, whichever provider sent them.

A body larger than its limit or nested deeper than ``MAX_DEPTH`` is refused before it is
parsed, so no body can exhaust memory or the stack; duplicate keys and
``NaN``/``Infinity`` are refused too: no provider sends them, and parsers disagree about
them. Two decoders: ``EXACT_DECODER`` reads numbers with a fraction or exponent as exact
``Decimal``s (for amounts), ``DOUBLE_DECODER`` as the doubles a JavaScript signer parsed.
Both keep integers as ``int``. Raises only ``MalformedWebhook``; never performs I/O.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Final

from bitloot_core.errors import MalformedWebhook

__all__ = ["DOUBLE_DECODER", "EXACT_DECODER", "MAX_DEPTH", "load", "too_deep"]

MAX_DEPTH: Final = 16
"""The deepest nesting of objects and arrays accepted; real webhooks nest two or three."""

# JSON string literals, removed before the nesting is measured so brackets inside strings
# don't count. An unterminated one runs to the end of the text: every match succeeds
# without backtracking, which keeps the scan linear on hostile input.
_STRING_LITERAL: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_BRACKET: Final = re.compile(r"[\[\]{}]")


def load(raw_body: bytes, decoder: json.JSONDecoder, *, max_bytes: int) -> object:
    """Parse a webhook body within the limits."""
    if len(raw_body) > max_bytes:
        raise MalformedWebhook(
            f"the webhook body is larger than {max_bytes} bytes", size=len(raw_body)
        )
    try:
        text = raw_body.decode()
    except UnicodeDecodeError as exc:
        raise MalformedWebhook("the webhook body is not valid UTF-8") from exc
    if too_deep(text):
        raise MalformedWebhook(f"the webhook body nests deeper than {MAX_DEPTH} levels")
    try:
        return decoder.decode(text)
    except ValueError as exc:  # JSONDecodeError, or an int too long for int()
        raise MalformedWebhook(f"the webhook body is not valid JSON: {exc}") from exc


def too_deep(text: str) -> bool:
    """Whether the JSON ``text`` nests deeper than ``MAX_DEPTH`` (strings not counted)."""
    # Fewer opening brackets than the limit cannot nest too deep, whatever they are in.
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    for bracket in _BRACKET.findall(_STRING_LITERAL.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_DEPTH:
            return True
    return False


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except ArithmeticError:  # an exponent beyond what Decimal can hold
        raise MalformedWebhook(f"the number {text[:40]} is out of range") from None


def _refuse_constant(name: str) -> object:
    raise MalformedWebhook(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise MalformedWebhook("the webhook body repeats a key in one object")
    return obj


# Built once (json.loads with arguments builds a decoder per call).
DOUBLE_DECODER: Final = json.JSONDecoder(
    parse_constant=_refuse_constant, object_pairs_hook=_unique_keys
)
EXACT_DECODER: Final = json.JSONDecoder(
    parse_float=_decimal, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys
)
