"""NOWPayments' wire format: IPN signature verification, parsing and dedupe.

NOWPayments signs an IPN with HMAC-SHA512 (lowercase hex in ``x-nowpayments-sig``) over
the body as Node prints it: ``JSON.stringify(sortObject(body))``, where ``sortObject`` is
the key sorter from the provider's documentation. Real bodies arrive in exactly that form,
so ``verify_ipn_signature`` checks the raw bytes first and only when that fails rebuilds
the signed text with ``canonical_json`` (a proxy re-serialised the body, a re-sent IPN).

Python's ``json.dumps(..., sort_keys=True)`` does not print what Node prints (``1e-07``
for ``1e-7``, ``100.0`` for ``100``, ``\\u00e9`` for ``é``, ...), so ``canonical_json``
reproduces Node's output byte for byte: JS number formatting, raw UTF-8, JS key order.

Limits: a body larger than ``MAX_IPN_BYTES`` or nested deeper than ``MAX_IPN_DEPTH`` is
not an IPN. The canonical fallback, the one costly step a stranger can make the shop
run, is tried only on a body of at most ``MAX_CANONICAL_BYTES`` holding at most
``MAX_CANONICAL_VALUES`` JSON values (a real IPN: under 1 KiB and about 25 values); any
other body verifies byte for byte only, so a rejected body costs one HMAC and, at most, a
parse of 4 KiB. The strict JSON reading (limits checked before parsing, duplicate keys and
``NaN``/``Infinity`` refused) is shared by every provider:
``bitloot_core.providers.webhook_json``.

This module never performs I/O and never reads a clock. ``verify_ipn_signature`` never
raises, whatever it is given; ``parse_ipn`` raises only ``MalformedWebhook``.
"""

from __future__ import annotations

import hmac
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Final

from bitloot_core.errors import MalformedWebhook
from bitloot_core.providers import webhook_json

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "MAX_CANONICAL_BYTES",
    "MAX_CANONICAL_VALUES",
    "MAX_IPN_BYTES",
    "MAX_IPN_DEPTH",
    "Ipn",
    "canonical_json",
    "dedupe_key",
    "matching_secret",
    "parse_ipn",
    "verify_ipn_signature",
]

MAX_IPN_BYTES: Final = 64 * 1024
"""The largest IPN body accepted; a real one is under 1 KiB."""

MAX_IPN_DEPTH: Final = webhook_json.MAX_DEPTH
"""The deepest nesting of objects and arrays accepted; a real IPN nests two deep."""

MAX_CANONICAL_BYTES: Final = 4 * 1024
"""The largest body whose canonical form is checked; real IPNs are under 1 KiB."""

MAX_CANONICAL_VALUES: Final = 128
"""The most JSON values (objects, arrays, scalars; keys not counted) a body may hold for
its canonical form to be checked; a real IPN holds about 25."""

_DIGEST_SIZE: Final = 64  # SHA-512
_HEX_SIGNATURE_LENGTH: Final = 2 * _DIGEST_SIZE

# JS objects list "array index" keys (canonical decimal integers below 2**32 - 1) first,
# in numeric order, whatever order they were added in.
_ARRAY_INDEX_LIMIT: Final = 2**32 - 1
_ARRAY_INDEX_MAX_DIGITS: Final = len(str(_ARRAY_INDEX_LIMIT))

# Integers below 2**53 are exact doubles that JS prints digit for digit.
_EXACT_INT_LIMIT: Final = 2**53

# A price or payment amount at or above this is no amount; refusing it here keeps later
# Decimal arithmetic clear of overflow.
_AMOUNT_LIMIT: Final = Decimal("1e30")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_JSON_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


@dataclass(frozen=True, slots=True, kw_only=True)
class Ipn:
    """A parsed NOWPayments IPN body; amounts exactly as the JSON text wrote them."""

    payment_id: str
    payment_status: str
    order_id: str | None = None
    parent_payment_id: str | None = None
    price_amount: Decimal | None = None
    price_currency: str | None = None
    pay_amount: Decimal | None = None
    pay_currency: str | None = None
    pay_address: str | None = None
    actually_paid: Decimal = Decimal(0)
    outcome_amount: Decimal | None = None
    outcome_currency: str | None = None
    purchase_id: str | None = None
    updated_at: datetime | None = None


def verify_ipn_signature(raw_body: bytes, signature: str | None, secret: str) -> bool:
    """Whether ``signature`` is NOWPayments' HMAC-SHA512 of the IPN ``raw_body``.

    The raw bytes are checked first; when they don't match and the body is a JSON object
    within the limits (at most ``MAX_CANONICAL_BYTES`` and ``MAX_CANONICAL_VALUES``), its
    canonical form (``canonical_json``) is checked, so a re-serialised body still passes.

    ``signature`` must be 128 hex digits. Upper- and lowercase are both accepted (hex case
    carries no secret, and the comparison is on the decoded digest); anything else -
    ``None``, empty, another length, non-hex, non-ASCII, surrounding whitespace - is
    ``False``. ``secret`` is stripped of surrounding whitespace, as the provider's sample
    code does; an empty secret verifies nothing. Bodies over ``MAX_IPN_BYTES`` are
    ``False``. The comparison is constant-time, and this function never raises.
    """
    return matching_secret(raw_body, signature, (secret,)) is not None


def matching_secret(raw_body: bytes, signature: str | None, secrets: Sequence[str]) -> int | None:
    """The index in ``secrets`` of the first secret ``signature`` was made with, or None.

    ``verify_ipn_signature`` for several secrets at once (a rotation's current and
    previous one), with the same rules; the canonical form is built at most once."""
    expected = _signature_digest(signature)
    body = _body_bytes(raw_body)
    keys = [(index, key) for index, s in enumerate(secrets) if (key := _secret_key(s))]
    if expected is None or body is None or not keys:
        return None
    found = _first_match(keys, body, expected)
    if found is None:
        canonical = _canonical_form(body)
        # An unchanged canonical text has already failed above.
        if canonical is not None and canonical != body:
            found = _first_match(keys, canonical, expected)
    return found


def _first_match(keys: list[tuple[int, bytes]], message: bytes, expected: bytes) -> int | None:
    for index, key in keys:
        if hmac.compare_digest(hmac.digest(key, message, "sha512"), expected):
            return index
    return None


def _canonical_form(body: bytes) -> bytes | None:
    """The canonical text of a JSON object body within the fallback's limits, else None."""
    if len(body) > MAX_CANONICAL_BYTES:
        return None
    try:
        tree = _load_tree(body, webhook_json.DOUBLE_DECODER)
    except MalformedWebhook:
        return None
    if not isinstance(tree, dict) or _more_values_than(tree, MAX_CANONICAL_VALUES):
        return None
    return canonical_json(tree).encode()


def _more_values_than(tree: object, limit: int) -> bool:
    """Whether ``tree`` holds more than ``limit`` JSON values; stops counting past it."""
    pending, seen = [tree], 0
    while pending:
        value = pending.pop()
        seen += 1
        if seen > limit:
            return True
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def _signature_digest(signature: object) -> bytes | None:
    if not isinstance(signature, str) or len(signature) != _HEX_SIGNATURE_LENGTH:
        return None
    try:
        digest = bytes.fromhex(signature)
    except ValueError:  # non-hex or non-ASCII
        return None
    # fromhex skips whitespace between digit pairs, which leaves the digest short.
    return digest if len(digest) == _DIGEST_SIZE else None


def _secret_key(secret: object) -> bytes | None:
    if not isinstance(secret, str):
        return None
    try:
        key = secret.strip().encode()
    except UnicodeEncodeError:  # a lone surrogate cannot be the provider's secret
        return None
    return key or None


def _body_bytes(raw_body: object) -> bytes | None:
    if not isinstance(raw_body, bytes):  # checked first: the one type real callers pass
        if not isinstance(raw_body, bytearray | memoryview):
            return None
        raw_body = bytes(raw_body)
    return raw_body if len(raw_body) <= MAX_IPN_BYTES else None


def canonical_json(value: object) -> str:  # noqa: PLR0911  one return per JSON type
    """The text NOWPayments signs for ``value``: ``JSON.stringify(sortObject(value))``.

    ``value`` is what a JSON parser returns (dicts with str keys, lists, str, int, float,
    ``Decimal``, bool, ``None``). Object keys come in JS order: array-index keys ("0",
    "1", "42") first in numeric order, then the rest sorted by UTF-16 code units; a
    ``"__proto__"`` key is dropped, as assigning it in ``sortObject`` sets a prototype.
    ``sortObject`` turns arrays into objects keyed by index, so ``[5, 6]`` prints as
    ``{"0":5,"1":6}``. Numbers print as JS prints the nearest double; strings as raw
    UTF-8 with JSON.stringify's escapes (lone surrogates as lowercase ``\\udxxx``).
    A top-level scalar prints as itself. Raises ``TypeError`` for anything else.
    """
    # Ordered by how often each type occurs in an IPN.
    if isinstance(value, str):
        return _quote(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _js_double(value)
    if isinstance(value, int):
        return _js_int(value)
    if isinstance(value, Decimal):
        return _js_double(float(value))
    if isinstance(value, dict):
        return _object_json(value)
    if isinstance(value, list | tuple):
        # sortObject turns an array into an object keyed by index.
        return _object_json({str(index): item for index, item in enumerate(value)})
    raise TypeError(f"canonical_json cannot print {type(value).__name__}")


def _object_json(obj: Mapping[str, object]) -> str:
    # ASCII keys sort the same by code point, faster, and need no surrogate check. The
    # join also refuses non-str keys (TypeError): JSON has none.
    ascii_keys = "".join(obj).isascii()
    keys = sorted(obj) if ascii_keys else sorted(obj, key=_utf16)
    # Array-index keys start with a digit; in sorted keys, only when the first key's first
    # character is at most "9" and the last key's at least "0". Real IPNs have none.
    if keys and keys[0][:1] <= "9" and keys[-1][:1] >= "0":
        indexes = [key for key in keys if _is_array_index(key)]
        if indexes:
            keys = sorted(indexes, key=int) + [key for key in keys if not _is_array_index(key)]
    if "__proto__" in obj:
        keys.remove("__proto__")
    quote = encode_basestring if ascii_keys else _quote
    return "{" + ",".join([f"{quote(key)}:{canonical_json(obj[key])}" for key in keys]) + "}"


def _is_array_index(key: str) -> bool:
    return (
        key.isascii()
        and key.isdigit()
        and len(key) <= _ARRAY_INDEX_MAX_DIGITS
        and (key == "0" or key[0] != "0")
        and int(key) < _ARRAY_INDEX_LIMIT
    )


def _utf16(text: str) -> bytes:
    # Big-endian UTF-16 bytes compare as JS compares strings: by UTF-16 code units.
    return text.encode("utf-16-be", "surrogatepass")


def _quote(text: str) -> str:
    # The stdlib's C encoder escapes exactly what JSON.stringify escapes: '"', '\\', the
    # short forms \b \f \n \r \t and other controls as lowercase \u00xx. Only lone
    # surrogates differ: JSON.stringify escapes them, Python leaves them raw.
    quoted = encode_basestring(text)
    if quoted.isascii() or _SURROGATE.search(quoted) is None:
        return quoted
    # A str built by hand may hold a surrogate pair as two code points; to JS that is one
    # character, so pair them up before escaping the lone ones.
    paired = quoted.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", paired)


def _js_int(number: int) -> str:
    if -_EXACT_INT_LIMIT < number < _EXACT_INT_LIMIT:
        return str(number)
    try:
        return _js_double(float(number))
    except OverflowError:  # beyond the largest double: JS parses it as Infinity
        return "null"


def _js_double(double: float) -> str:
    """ECMAScript ``Number::toString``, as JSON.stringify uses it."""
    if not math.isfinite(double):
        return "null"  # NaN and the infinities are not JSON
    if double == 0:
        return "0"  # also for -0
    # repr gives the shortest digits that round-trip, as JS does. Where repr writes plain
    # decimals (1e-4 <= |x| < 1e16) so does JS, only without repr's ".0" on integers.
    text = repr(double)
    if "e" not in text:
        return text.removesuffix(".0")
    return _js_exponent_form(text)


def _js_exponent_form(text: str) -> str:
    # text is repr's "[-]d[.ddd]e[+-]xx"; JS lays the same digits out by where the decimal
    # point falls: value = 0.DIGITS x 10**point. repr uses this form only when point > 16
    # (at most 17 digits: a whole number) or point < -3, so JS's third layout, digits with
    # a point inside them, never arises here.
    sign = "-" if text[0] == "-" else ""
    mantissa, _, exponent = text.lstrip("-").partition("e")
    digits = mantissa.replace(".", "")
    point = 1 + int(exponent)
    if point <= 21:  # noqa: PLR2004  where the spec switches to exponent notation
        if point > 0:
            return sign + digits + "0" * (point - len(digits))
        if point > -6:  # noqa: PLR2004  see above
            return sign + "0." + "0" * -point + digits
    power = point - 1
    fraction = "." + digits[1:] if len(digits) > 1 else ""
    return f"{sign}{digits[0]}{fraction}e{'+' if power >= 0 else '-'}{abs(power)}"


def parse_ipn(raw_body: bytes) -> Ipn:
    """The ``Ipn`` in a NOWPayments IPN body; raises ``MalformedWebhook`` for anything else.

    Tolerates the provider's type drift: ids as JSON integers or strings (kept as str),
    ``updated_at`` as epoch milliseconds or ISO 8601 (a naive time is UTC), ``null`` for
    any optional field, ``actually_paid`` ``null`` as 0. Amounts are exact ``Decimal``s of
    the JSON text (numbers or numeric strings), never floats; currencies are lowercased.
    Booleans are never numbers. Unknown fields are ignored.

    The signature covers JSON numbers only as the doubles they parse to, so a number id
    must be below 2**53 and a number amount must carry no digits beyond its double's
    (NOWPayments' own numbers always satisfy both); amounts must be below 10**30.
    """
    body = webhook_json.load(
        raw_body, webhook_json.EXACT_DECODER, max_bytes=MAX_IPN_BYTES, text_only=True
    )
    if not isinstance(body, dict):
        raise MalformedWebhook("the IPN body is not a JSON object")
    payment_id = _id(body, "payment_id")
    if payment_id is None:
        raise MalformedWebhook("the IPN has no payment_id", field="payment_id")
    payment_status = _text(body, "payment_status")
    if not payment_status:
        raise MalformedWebhook("the IPN has no payment_status", field="payment_status")
    return Ipn(
        payment_id=payment_id,
        payment_status=payment_status,
        order_id=_id(body, "order_id"),
        parent_payment_id=_id(body, "parent_payment_id"),
        purchase_id=_id(body, "purchase_id"),
        price_amount=_amount(body, "price_amount"),
        price_currency=_currency(body, "price_currency"),
        pay_amount=_amount(body, "pay_amount"),
        pay_currency=_currency(body, "pay_currency"),
        pay_address=_text(body, "pay_address"),
        actually_paid=_amount(body, "actually_paid") or Decimal(0),
        outcome_amount=_amount(body, "outcome_amount"),
        outcome_currency=_currency(body, "outcome_currency"),
        updated_at=_time(body, "updated_at"),
    )


def _load_tree(raw_body: bytes, decoder: json.JSONDecoder) -> object:
    """Parse an IPN body within the limits (``webhook_json``)."""
    return webhook_json.load(raw_body, decoder, max_bytes=MAX_IPN_BYTES)


def _wrong_type(name: str, expected: str, value: object) -> MalformedWebhook:
    return MalformedWebhook(
        f"{name} must be {expected}, got {type(value).__name__} {str(value)[:40]!r}",
        field=name,
    )


def _id(body: Mapping[str, object], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    # bool is an int subclass: exclude it before the int check. Beyond 2**53 the signature
    # (over the parsed double) no longer pins an integer id down.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _EXACT_INT_LIMIT:
        return str(value)
    if isinstance(value, str) and value:
        return value
    raise _wrong_type(name, "an integer in [0, 2**53) or a non-empty string", value)


def _text(body: Mapping[str, object], name: str) -> str | None:
    value = body.get(name)
    if value is None or isinstance(value, str):
        return value
    raise _wrong_type(name, "a string", value)


def _currency(body: Mapping[str, object], name: str) -> str | None:
    value = _text(body, name)
    return None if value is None else value.lower()


def _amount(body: Mapping[str, object], name: str) -> Decimal | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int) and not isinstance(value, bool):
        amount = Decimal(value)
    elif isinstance(value, str) and _JSON_NUMBER.fullmatch(value):
        try:
            amount = Decimal(value)
        except ArithmeticError:  # an exponent beyond what Decimal can hold
            raise MalformedWebhook(f"{name} {value[:40]} is out of range", field=name) from None
    else:
        raise _wrong_type(name, "a number", value)
    if amount < 0 or amount >= _AMOUNT_LIMIT:
        raise MalformedWebhook(f"{name} {str(value)[:40]} is out of range", field=name)
    # The signature covers a JSON number only as the double it parses to: digits beyond
    # that double would change the amount without changing the signature.
    # (The double's shortest digits, Python's repr, are the digits JavaScript prints.)
    if not isinstance(value, str) and Decimal(repr(float(amount))) != amount:
        raise MalformedWebhook(
            f"{name} {str(value)[:40]} is more precise than the signature covers", field=name
        )
    return amount.copy_abs()  # -0 is 0


def _time(body: Mapping[str, object], name: str) -> datetime | None:
    value = body.get(name)
    if value is None:
        return None
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return _EPOCH + timedelta(milliseconds=value)
        if isinstance(value, str):
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                return moment.replace(tzinfo=UTC)
            return moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise MalformedWebhook(f"{name} {value!s:.40} is not a valid time", field=name) from exc
    raise _wrong_type(name, "epoch milliseconds or an ISO 8601 string", value)


def dedupe_key(ipn: Ipn) -> str:
    """The key that recognises a repeated IPN: its (payment_id, payment_status, actually_paid).

    ``actually_paid`` is compared by value, so 0.5, 0.50 and 5E-1 give the same key. Two
    keys are equal exactly when the triples are.
    """
    return json.dumps(
        [ipn.payment_id, ipn.payment_status, _plain_amount(ipn.actually_paid)],
        separators=(",", ":"),
    )


def _plain_amount(amount: Decimal) -> str:
    if amount.is_zero():
        return "0"
    text = format(amount, "f")  # exact: no context rounding without a precision
    return text.rstrip("0").rstrip(".") if "." in text else text
