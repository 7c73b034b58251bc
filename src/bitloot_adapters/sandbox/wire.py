"""JSON as the sandboxes write and read it.

Numbers go out as JavaScript prints them (the real NOWPayments API runs on Node), keys in
insertion order; numbers come in as exact ``Decimal``s (floats) or ``int``s.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation

from bitloot_core.providers.nowpayments import canonical_json

__all__ = ["decimal_or_none", "json_body", "read_json"]


def json_body(value: object) -> bytes:
    """``value`` as compact JSON; scalars printed by ``canonical_json`` (JS numbers)."""
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts).encode()


def _write(value: object, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            out.append("," if index else "")
            out.append(canonical_json(str(key)))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            out.append("," if index else "")
            _write(item, out)
        out.append("]")
    else:
        out.append(canonical_json(value))


def read_json(body: bytes) -> object:
    """The parsed body, floats as ``Decimal``; ``None`` when it is not JSON."""
    try:
        return json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        return None


def decimal_or_none(value: object) -> Decimal | None:
    """A finite ``Decimal`` from a JSON number or numeric string, else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal | int):
        amount = Decimal(value)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            return None
    else:
        return None
    return amount if amount.is_finite() else None
