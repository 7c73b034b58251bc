"""Strict JSON for webhook bodies, whichever provider sent them.

A body larger than its limit or nested deeper than ``MAX_DEPTH`` is refused before it is
parsed, so no body can exhaust memory or the stack; duplicate keys and
``NaN``/``Infinity`` are refused too: no provider sends them, and parsers disagree about
them. With ``text_only`` (reading values, not checking a signature) so is a string holding
a lone surrogate (``"\\ud800"``): valid JSON, but no text, it cannot be stored or logged
as UTF-8. Two decoders: ``EXACT_DECODER`` reads
numbers with a fraction or exponent as exact ``Decimal``s (for amounts),
``DOUBLE_DECODER`` as the doubles a JavaScript signer parsed.
Both keep integers as ``int``. Raises only ``MalformedWebhook``; never performs I/O.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Final

from bitloot_core.errors import MalformedWebhook

__all__ = ["DOUBLE_DECODER", "EXACT_DECODER", "MAX_DEPTH", "holds_surrogate", "load", "too_deep"]

MAX_DEPTH: Final = 16
"""The deepest nesting of objects and arrays accepted; real webhooks nest two or three."""

# JSON string literals, removed before the nesting is measured so brackets inside strings
# don't count. An unterminated one runs to the end of the text: every match succeeds
# without backtracking, which keeps the scan linear on hostile input.
_STRING_LITERAL: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_BRACKET: Final = re.compile(r"[\[\]{}]")


def load(
    raw_body: bytes, decoder: json.JSONDecoder, *, max_bytes: int, text_only: bool = False
) -> object:
    """Parse a webhook body within the limits (``text_only``: no lone surrogates)."""
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
        parsed = decoder.decode(text)
    except ValueError as exc:  # JSONDecodeError, or an int too long for int()
        raise MalformedWebhook(f"the webhook body is not valid JSON: {exc}") from exc
    # Only an escape can put a surrogate in a string: the text itself is valid UTF-8.
    if text_only and "\\u" in text and holds_surrogate(parsed):
        raise MalformedWebhook("the webhook body holds a lone surrogate (not text)")
    return parsed


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def holds_surrogate(value: object) -> bool:
    """Whether a string anywhere in ``value`` (keys included) holds a lone surrogate."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(holds_surrogate(k) or holds_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_surrogate(v) for v in value)
    return False


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
