"""IPN signatures, Node-exact canonical JSON, parsing, dedupe keys and order binding.

The signature vectors and the canonical-form cases come from Node itself
(``tests/vectors/make_ipn_vectors.js``): the real ``JSON.stringify`` and ``node:crypto``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitloot_core.chart import PaymentStatus
from bitloot_core.errors import MalformedWebhook
from bitloot_core.payments import binding_problem as neutral_binding_problem
from bitloot_core.providers import webhook_json
from bitloot_core.providers.nowpayments import ipn as ipn_module
from bitloot_core.providers.nowpayments import update_of
from bitloot_core.providers.nowpayments.ipn import (
    MAX_CANONICAL_BYTES,
    MAX_CANONICAL_VALUES,
    MAX_IPN_BYTES,
    MAX_IPN_DEPTH,
    Ipn,
    canonical_json,
    dedupe_key,
    matching_secret,
    parse_ipn,
    verify_ipn_signature,
)
from bitloot_core.values import Order, OrderItem, Payment, ProductSource

VECTORS = Path(__file__).parent.parent / "vectors"
IPN_VECTORS = json.loads((VECTORS / "ipn_vectors.json").read_text("utf-8"))["vectors"]
CANONICAL_CASES = json.loads((VECTORS / "canonical_vectors.json").read_text("utf-8"))
BY_NAME = {vector["name"]: vector for vector in IPN_VECTORS}

FINISHED = BY_NAME["finished_ipn_as_sent"]
FINISHED_BODY = FINISHED["body"].encode()
SECRET = FINISHED["secret"]
SIGNATURE = FINISHED["signature"]


def sign(secret: str, body: bytes | str) -> str:
    data = body.encode() if isinstance(body, str) else body
    return hmac.new(secret.encode(), data, hashlib.sha512).hexdigest()


def body_of(**fields: object) -> bytes:
    """A waiting IPN body with ``fields``; a Decimal is written as its exact number text."""
    text = json.dumps(
        {"payment_id": 5800567260, "payment_status": "waiting", **fields},
        default=lambda number: f"<{number}>",
    )
    return text.replace('"<', "").replace('>"', "").encode()


# --- every Node vector verifies and canonicalises exactly ----------------------------


NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="needs Node to regenerate the vectors")
def test_the_committed_vectors_are_what_the_script_makes(tmp_path):
    assert NODE is not None
    script = str(VECTORS / "make_ipn_vectors.js")
    subprocess.run([NODE, script, str(tmp_path)], check=True, capture_output=True)  # noqa: S603  the repo's own script
    for name in ("ipn_vectors.json", "canonical_vectors.json"):
        assert (tmp_path / name).read_bytes() == (VECTORS / name).read_bytes(), name


def test_the_vectors_cover_both_paths():
    assert len(IPN_VECTORS) >= 20
    assert any(v["body_is_canonical"] for v in IPN_VECTORS)
    assert sum(not v["body_is_canonical"] for v in IPN_VECTORS) >= 10
    assert len(CANONICAL_CASES["numbers"]) >= 300


@pytest.mark.parametrize("vector", IPN_VECTORS, ids=lambda v: v["name"])
def test_every_vector_verifies(vector):
    assert verify_ipn_signature(vector["body"].encode(), vector["signature"], vector["secret"])


@pytest.mark.parametrize("vector", IPN_VECTORS, ids=lambda v: v["name"])
def test_the_raw_path_alone_verifies_exactly_the_canonical_bodies(vector):
    raw_signature = sign(vector["secret"], vector["body"])
    assert hmac.compare_digest(raw_signature, vector["signature"]) is vector["body_is_canonical"]


@pytest.mark.parametrize("vector", IPN_VECTORS, ids=lambda v: v["name"])
def test_canonical_json_matches_node(vector):
    assert canonical_json(json.loads(vector["body"])) == vector["canonical"]
    # The library's own parses: doubles for the signature, Decimals for the values.
    for decoder in (webhook_json.DOUBLE_DECODER, webhook_json.EXACT_DECODER):
        tree = webhook_json.load(vector["body"].encode(), decoder, max_bytes=MAX_IPN_BYTES)
        assert canonical_json(tree) == vector["canonical"]


@pytest.mark.parametrize("case", CANONICAL_CASES["numbers"], ids=lambda case: case["text"][:40])
def test_numbers_print_as_node_prints_them(case):
    assert canonical_json(json.loads(case["text"])) == case["expected"]
    assert canonical_json(json.loads(case["text"], parse_float=Decimal)) == case["expected"]


@pytest.mark.parametrize("case", CANONICAL_CASES["objects"], ids=range(150))
def test_strings_and_key_order_print_as_node_prints_them(case):
    assert canonical_json(json.loads(case["text"])) == case["expected"]


def test_python_json_dumps_is_not_the_signed_form():
    # Why canonical_json exists: the provider's own Python sample rejects real IPNs.
    vector = BY_NAME["number_forms_canonical"]
    dumped = json.dumps(json.loads(vector["body"]), sort_keys=True, separators=(",", ":"))
    assert dumped != vector["canonical"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.000002, "0.000002"),
        (1e-7, "1e-7"),
        (100.0, "100"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (-0.0, "0"),
        (-1.5e-7, "-1.5e-7"),
        (Decimal("100.0"), "100"),
        (Decimal("1E+400"), "null"),
        (5800567260, "5800567260"),
        (12345678901234567890123, "1.2345678901234568e+22"),
        (2**60, "1152921504606847000"),
        (10**400, "null"),
        (math.inf, "null"),
        (math.nan, "null"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        ("é😀\x00\n", '"é😀\\u0000\\n"'),
        ("\ud83d\ude00 \ud800", '"😀 \\ud800"'),
        ((3, 1), '{"0":3,"1":1}'),
        ([], "{}"),
        ({}, "{}"),
        ({"b": 1, "a": [True]}, '{"a":{"0":true},"b":1}'),
        ({"\uff5a": 1, "😀": 2, "\ud800": 3}, '{"\\ud800":3,"😀":2,"\uff5a":1}'),
        ({"10": 0, "9": 0, "01": 0, "1.5": 0}, '{"9":0,"10":0,"01":0,"1.5":0}'),
        ({"01": 0, "1e3": 0}, '{"01":0,"1e3":0}'),
        ({"4294967295": 0, "4294967294": 0}, '{"4294967294":0,"4294967295":0}'),
        ({"__proto__": {"x": 1}, "a": 1}, '{"a":1}'),
    ],
)
def test_canonical_json_examples(value, expected):
    assert canonical_json(value) == expected


@pytest.mark.parametrize("value", [{1: "a"}, {"a": 1, 2: "b"}, {1.5}, object(), b"x"])
def test_canonical_json_refuses_what_json_cannot_hold(value):
    with pytest.raises(TypeError):
        canonical_json(value)


# --- tampering and wrong secrets fail -----------------------------------------------


def test_changing_one_amount_digit_fails():
    tampered = FINISHED_BODY.replace(b'"actually_paid":0.00656612', b'"actually_paid":0.00656613')
    assert tampered != FINISHED_BODY
    assert not verify_ipn_signature(tampered, SIGNATURE, SECRET)


def test_changing_a_reordered_body_fails():
    vector = BY_NAME["finished_ipn_reordered_pretty"]
    tampered = vector["body"].replace('"finished"', '"confirmed"').encode()
    assert not verify_ipn_signature(tampered, vector["signature"], SECRET)


def test_adding_a_key_fails():
    tampered = FINISHED_BODY.replace(b"{", b'{"bonus":1,', 1)
    assert not verify_ipn_signature(tampered, SIGNATURE, SECRET)


@pytest.mark.parametrize("secret", ["wrong", SECRET[:-1], SECRET.upper(), "", "   "])
def test_a_wrong_or_empty_secret_fails(secret):
    assert not verify_ipn_signature(FINISHED_BODY, SIGNATURE, secret)


def test_the_secret_is_stripped_of_surrounding_whitespace():
    assert verify_ipn_signature(FINISHED_BODY, SIGNATURE, f"  {SECRET}\n")


def test_a_secret_that_cannot_be_utf8_verifies_nothing():
    assert not verify_ipn_signature(FINISHED_BODY, SIGNATURE, "\ud800")


def test_a_wrong_signature_on_a_canonical_body_fails_without_a_second_hmac(monkeypatch):
    digests = []
    real_digest = hmac.digest

    def counting_digest(key: bytes, message: bytes, digest: str) -> bytes:
        digests.append(message)
        return real_digest(key, message, digest)

    monkeypatch.setattr(ipn_module.hmac, "digest", counting_digest)
    assert not verify_ipn_signature(FINISHED_BODY, sign("other", FINISHED_BODY), SECRET)
    assert digests == [FINISHED_BODY]
    reordered = BY_NAME["finished_ipn_reordered_compact"]["body"].encode()
    assert not verify_ipn_signature(reordered, sign("other", FINISHED_BODY), SECRET)
    assert digests == [FINISHED_BODY, reordered, FINISHED_BODY]


def test_bodies_beyond_the_limits_never_verify_by_their_canonical_form():
    deep = "[" * MAX_IPN_DEPTH + "1" + "]" * MAX_IPN_DEPTH
    too_deep = '{"a":' + deep + "}"
    duplicate = '{"a":1,"a":2}'
    for body in (too_deep, duplicate):
        canonical = canonical_json(json.loads(body))
        assert not verify_ipn_signature(body.encode(), sign(SECRET, canonical), SECRET)


def values_in(value: object) -> int:
    if isinstance(value, dict):
        return 1 + sum(values_in(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(values_in(v) for v in value)
    return 1


def pretty(value: object) -> bytes:
    return json.dumps(value, indent=1).encode()


def test_the_canonical_fallback_takes_bodies_up_to_its_size_limit():
    # A body padded with whitespace to the limit still verifies by its canonical form...
    value = {"payment_id": 1, "note": "x" * 1000}
    body = pretty(value)
    body = body[:-1] + b" " * (MAX_CANONICAL_BYTES - len(body)) + b"}"
    assert len(body) == MAX_CANONICAL_BYTES
    signature = sign(SECRET, canonical_json(value))
    assert verify_ipn_signature(body, signature, SECRET)
    # ... one byte more and only its raw bytes could verify it.
    longer = body[:-1] + b" }"
    assert not verify_ipn_signature(longer, signature, SECRET)
    assert verify_ipn_signature(longer, sign(SECRET, longer), SECRET)


def test_the_canonical_fallback_takes_bodies_up_to_its_value_limit():
    # The object, its list, and the scalars: exactly the limit, then one more.
    at_limit = {"a": list(range(MAX_CANONICAL_VALUES - 2))}
    over = {"a": list(range(MAX_CANONICAL_VALUES - 1))}
    assert values_in(at_limit) == MAX_CANONICAL_VALUES
    assert verify_ipn_signature(pretty(at_limit), sign(SECRET, canonical_json(at_limit)), SECRET)
    assert not verify_ipn_signature(pretty(over), sign(SECRET, canonical_json(over)), SECRET)
    assert verify_ipn_signature(pretty(over), sign(SECRET, pretty(over)), SECRET)


def test_a_real_ipn_is_well_inside_the_canonical_limits():
    for vector in IPN_VECTORS:
        if vector["name"].startswith("finished_ipn"):
            body = vector["body"].encode()
            assert len(body) * 4 < MAX_CANONICAL_BYTES
            assert values_in(json.loads(body)) * 4 < MAX_CANONICAL_VALUES


def test_a_non_object_body_verifies_only_byte_for_byte():
    body = b"[1, 2]"
    assert verify_ipn_signature(body, sign(SECRET, body), SECRET)
    assert not verify_ipn_signature(body, sign(SECRET, canonical_json([1, 2])), SECRET)


def test_the_body_size_limit():
    largest = b'{"a":"' + b"x" * (MAX_IPN_BYTES - 8) + b'"}'
    assert len(largest) == MAX_IPN_BYTES
    assert verify_ipn_signature(largest, sign(SECRET, largest), SECRET)
    too_large = largest + b" "
    assert not verify_ipn_signature(too_large, sign(SECRET, too_large), SECRET)


def test_invalid_utf8_and_json_constants_verify_only_byte_for_byte():
    for body in (b'{"a":"\xff"}', b'{"a":NaN}', b'{"a":1e99999999999999999999}'):
        assert verify_ipn_signature(body, sign(SECRET, body), SECRET)
        assert not verify_ipn_signature(body, SIGNATURE, SECRET)


def test_bytes_like_bodies_verify_and_other_types_never_raise():
    assert verify_ipn_signature(bytearray(FINISHED_BODY), SIGNATURE, SECRET)
    assert verify_ipn_signature(memoryview(FINISHED_BODY), SIGNATURE, SECRET)
    assert verify_ipn_signature(FINISHED["body"], SIGNATURE, SECRET) is False  # type: ignore[arg-type]
    assert verify_ipn_signature(None, SIGNATURE, SECRET) is False  # type: ignore[arg-type]
    assert verify_ipn_signature(FINISHED_BODY, SIGNATURE, None) is False  # type: ignore[arg-type]
    assert verify_ipn_signature(FINISHED_BODY, SIGNATURE.encode(), SECRET) is False  # type: ignore[arg-type]


# --- malformed signatures are False, never an exception -----------------------------


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "zz" * 64,
        SIGNATURE[:127],
        SIGNATURE + "0",
        SIGNATURE[:-1],
        "é" * 128,
        "\uff10" * 128,  # fullwidth digit zero
        SIGNATURE[:64] + " " + SIGNATURE[65:],
        " " + SIGNATURE[1:],
        SIGNATURE + "\n",
        " " + SIGNATURE,
        "\x00" * 128,
        "\ud800" * 128,
    ],
    ids=repr,
)
def test_malformed_signatures_are_false(signature):
    assert verify_ipn_signature(FINISHED_BODY, signature, SECRET) is False


def test_uppercase_hex_is_accepted_deliberately():
    # Hex case carries no secret; the decoded digests are what is compared.
    assert verify_ipn_signature(FINISHED_BODY, SIGNATURE.upper(), SECRET) is True
    vector = BY_NAME["finished_ipn_reordered_pretty"]
    assert verify_ipn_signature(vector["body"].encode(), vector["signature"].upper(), SECRET)


# --- properties ---------------------------------------------------------------------

signatures = st.one_of(
    st.none(),
    st.text(),
    st.text(alphabet="0123456789abcdefABCDEF", min_size=128, max_size=128),
    st.just(SIGNATURE),
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)


def nested(depth: int) -> st.SearchStrategy[object]:
    """JSON values at most ``depth`` containers deep (well inside MAX_IPN_DEPTH)."""
    if depth == 0:
        return json_scalars
    inner = nested(depth - 1)
    return (
        json_scalars | st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)
    )


json_values = nested(4)
json_objects = st.dictionaries(st.text(), json_values, max_size=8)


@given(body=st.binary(max_size=512), signature=signatures, secret=st.text())
def test_verify_never_raises_on_bytes(body, signature, secret):
    assert isinstance(verify_ipn_signature(body, signature, secret), bool)


@given(value=json_values, signature=signatures, secret=st.text(), indent=st.none() | st.just(1))
def test_verify_never_raises_on_json(value, signature, secret, indent):
    body = json.dumps(value, indent=indent).encode()
    assert isinstance(verify_ipn_signature(body, signature, secret), bool)


@given(value=json_objects, ensure_ascii=st.booleans(), indent=st.none() | st.just(2))
def test_any_reserialisation_of_a_signed_object_verifies(value, ensure_ascii, indent):
    signature = sign(SECRET, canonical_json(value))
    reordered = dict(reversed(value.items()))
    text = json.dumps(reordered, ensure_ascii=ensure_ascii, indent=indent)
    try:
        body = text.encode()
    except UnicodeEncodeError:  # a lone surrogate left raw by ensure_ascii=False
        body = json.dumps(reordered, indent=indent).encode()
    within = len(body) <= MAX_CANONICAL_BYTES and values_in(value) <= MAX_CANONICAL_VALUES
    exact = body == canonical_json(value).encode()
    assert verify_ipn_signature(body, signature, SECRET) is (within or exact)


@given(value=json_values)
def test_canonical_json_is_json_and_stable(value):
    text = canonical_json(value)
    assert canonical_json(json.loads(text)) == text
    assert canonical_json(json.loads(text, parse_float=Decimal)) == text


@given(
    value=st.dictionaries(
        st.from_regex(r"[a-z_][a-zA-Z0-9_]*", fullmatch=True),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(2**53) + 1, 2**53 - 1),
            st.text(alphabet=st.characters(exclude_categories=["Cs"])),
        ),
    )
)
def test_canonical_json_agrees_with_python_json_where_they_should(value):
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(value) == expected


@given(number=st.floats(allow_nan=False, allow_infinity=False))
def test_canonical_numbers_round_trip_to_the_same_double(number):
    assert float(canonical_json(number)) == number


@given(body=st.binary(max_size=512))
def test_parse_ipn_on_any_bytes_raises_only_malformed_webhook(body):
    try:
        result = parse_ipn(body)
    except MalformedWebhook:
        return
    assert isinstance(result, Ipn)


ipn_fields = st.sampled_from(
    [
        "payment_id",
        "payment_status",
        "order_id",
        "parent_payment_id",
        "purchase_id",
        "price_amount",
        "price_currency",
        "pay_amount",
        "pay_currency",
        "pay_address",
        "actually_paid",
        "outcome_amount",
        "outcome_currency",
        "updated_at",
    ]
)


@given(fields=st.dictionaries(ipn_fields, json_values))
def test_parse_ipn_on_any_field_types_raises_only_malformed_webhook(fields):
    try:
        result = parse_ipn(json.dumps(fields).encode())
    except MalformedWebhook:
        return
    assert isinstance(result, Ipn)


# --- parsing ------------------------------------------------------------------------


def test_parse_the_real_finished_ipn():
    parsed = parse_ipn(FINISHED_BODY)
    assert parsed == Ipn(
        payment_id="5800567260",
        payment_status="finished",
        order_id="ord_7Q2mX9kLp4",
        parent_payment_id=None,
        price_amount=Decimal(20),
        price_currency="usd",
        pay_amount=Decimal("0.00656612"),
        pay_currency="eth",
        pay_address="0x05Db8cE3a41F2b7D9e0C6a5B4f3E2d1C0b9A8f7E",
        actually_paid=Decimal("0.00656612"),
        outcome_amount=Decimal("0.00022187"),
        outcome_currency="btc",
        purchase_id="5172103429",
        updated_at=datetime(2025, 12, 9, 3, 4, 21, 97000, tzinfo=UTC),
    )


def test_parse_tolerates_type_drift():
    parsed = parse_ipn(BY_NAME["waiting_string_ids_iso_time"]["body"].encode())
    assert parsed.payment_id == "5800567260"
    assert parsed.purchase_id == "5172103429"
    assert parsed.price_currency == "eur"
    assert parsed.pay_currency == "btc"
    assert parsed.actually_paid == Decimal(0)
    assert parsed.updated_at == datetime(2025, 12, 9, 3, 4, 21, 97000, tzinfo=UTC)


def test_parse_a_repeated_deposit():
    parsed = parse_ipn(BY_NAME["partially_paid_repeat_deposit"]["body"].encode())
    assert (parsed.payment_id, parsed.parent_payment_id) == ("5800567999", "5800567260")


def test_amounts_are_the_exact_decimals_of_the_json_text():
    parsed = parse_ipn(
        b'{"payment_id":1,"payment_status":"finished","price_amount":0.000002,'
        b'"pay_amount":1e-7,"actually_paid":100.0,"outcome_amount":"0.001"}'
    )
    assert str(parsed.price_amount) == "0.000002"
    assert str(parsed.pay_amount) == "1E-7"
    assert str(parsed.actually_paid) == "100.0"
    assert str(parsed.outcome_amount) == "0.001"


def test_negative_zero_amounts_are_zero():
    parsed = parse_ipn(body_of(actually_paid=-0.0, price_amount="-0"))
    assert not parsed.actually_paid.is_signed()
    assert parsed.price_amount is not None
    assert not parsed.price_amount.is_signed()


def test_nulls_and_missing_optionals_take_their_defaults():
    nulls = dict.fromkeys(
        [
            "order_id",
            "parent_payment_id",
            "purchase_id",
            "price_amount",
            "price_currency",
            "pay_amount",
            "pay_currency",
            "pay_address",
            "actually_paid",
            "outcome_amount",
            "outcome_currency",
            "updated_at",
        ]
    )
    expected = Ipn(payment_id="5800567260", payment_status="waiting")
    assert parse_ipn(body_of(**nulls)) == expected
    assert parse_ipn(body_of()) == expected


@pytest.mark.parametrize(
    ("updated_at", "expected"),
    [
        (1765249461097, datetime(2025, 12, 9, 3, 4, 21, 97000, tzinfo=UTC)),
        ("2025-12-09T03:04:21.097Z", datetime(2025, 12, 9, 3, 4, 21, 97000, tzinfo=UTC)),
        ("2025-12-09T05:04:21+02:00", datetime(2025, 12, 9, 3, 4, 21, tzinfo=UTC)),
        ("2025-12-09T03:04:21", datetime(2025, 12, 9, 3, 4, 21, tzinfo=UTC)),
        (None, None),
    ],
)
def test_updated_at_forms(updated_at, expected):
    parsed = parse_ipn(body_of(updated_at=updated_at))
    assert parsed.updated_at == expected
    if parsed.updated_at is not None:
        assert parsed.updated_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b'{"payment_id":1,"payment_status":"\xff"}', "not valid UTF-8"),
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b'{"payment_id":1,"payment_status":"x"} x', "not valid JSON"),
        (b"\xef\xbb\xbf{}", "not valid JSON"),
        (b'{"payment_id":1' + b"1" * 5000 + b',"payment_status":"x"}', "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'"payment_id"', "not a JSON object"),
        (b"null", "not a JSON object"),
        (b'{"payment_id":1,"payment_status":"x","price_amount":NaN}', "NaN is not"),
        (b'{"payment_id":1,"payment_status":"x","price_amount":-Infinity}', "Infinity is not"),
        (b'{"payment_id":1,"payment_id":2,"payment_status":"x"}', "repeats a key"),
        (b'{"payment_id":1,"payment_status":"x","pay_amount":1e99999999999999999999}', "range"),
    ],
)
def test_malformed_bodies(body, match):
    with pytest.raises(MalformedWebhook, match=match) as raised:
        parse_ipn(body)
    assert raised.value.code == "malformed_webhook"
    assert raised.value.status_hint == 400


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"payment_id": None}, "no payment_id"),
        ({"payment_id": 5.5}, "payment_id must be"),
        ({"payment_id": 5.0}, "payment_id must be"),
        ({"payment_id": True}, "payment_id must be"),
        ({"payment_id": -1}, "payment_id must be"),
        ({"payment_id": 2**53}, "payment_id must be"),
        ({"payment_id": ""}, "payment_id must be"),
        ({"payment_id": [1]}, "payment_id must be"),
        ({"payment_status": None}, "no payment_status"),
        ({"payment_status": ""}, "no payment_status"),
        ({"payment_status": 5}, "payment_status must be a string"),
        ({"order_id": False}, "order_id must be"),
        ({"parent_payment_id": 1.5}, "parent_payment_id must be"),
        ({"purchase_id": {}}, "purchase_id must be"),
        ({"price_amount": True}, "price_amount must be a number"),
        ({"price_amount": "abc"}, "price_amount must be a number"),
        ({"price_amount": "NaN"}, "price_amount must be a number"),
        ({"price_amount": "Infinity"}, "price_amount must be a number"),
        ({"price_amount": " 1"}, "price_amount must be a number"),
        ({"price_amount": "1_000"}, "price_amount must be a number"),
        ({"price_amount": [1]}, "price_amount must be a number"),
        ({"price_amount": -1}, "price_amount -1 is out of range"),
        ({"pay_amount": -0.5}, "pay_amount -0.5 is out of range"),
        ({"actually_paid": "-0.001"}, "actually_paid -0.001 is out of range"),
        ({"outcome_amount": 10**30}, "out of range"),
        ({"outcome_amount": "1e99999999999999999999"}, "out of range"),
        ({"price_amount": Decimal("20.000000000000000001")}, "more precise than"),
        ({"pay_amount": Decimal("1e-400")}, "more precise than"),
        ({"pay_amount": 9007199254740993}, "more precise than"),
        ({"price_currency": 5}, "price_currency must be a string"),
        ({"pay_address": ["0x05"]}, "pay_address must be a string"),
        ({"updated_at": True}, "updated_at must be epoch milliseconds"),
        ({"updated_at": 1.5}, "updated_at must be epoch milliseconds"),
        ({"updated_at": "yesterday"}, "not a valid time"),
        ({"updated_at": 10**20}, "not a valid time"),
        ({"updated_at": "0001-01-01T00:00:00+01:00"}, "not a valid time"),
    ],
)
def test_malformed_fields(fields, match):
    with pytest.raises(MalformedWebhook, match=match) as raised:
        parse_ipn(body_of(**fields))
    assert raised.value.data["field"] in fields


@pytest.mark.parametrize("depth", [MAX_IPN_DEPTH + 1, 10_000])
def test_deep_nesting_is_refused_before_parsing(depth):
    with pytest.raises(MalformedWebhook, match="nests deeper than 16"):
        parse_ipn(b"[" * depth)


def test_a_million_levels_are_refused_without_recursion():
    with pytest.raises(MalformedWebhook, match="larger than"):
        parse_ipn(b"[" * 1_000_000)
    assert webhook_json.too_deep("[" * 1_000_000)


def test_sixteen_levels_are_accepted():
    nested = "[" * (MAX_IPN_DEPTH - 1) + "]" * (MAX_IPN_DEPTH - 1)
    parse_ipn(f'{{"payment_id":1,"payment_status":"x","extra":{nested}}}'.encode())


def test_brackets_inside_strings_do_not_count():
    brackets = "[{" * 20 + '\\"' + "[" * 20
    parsed = parse_ipn(body_of(order_id=brackets))
    assert parsed.order_id == brackets


def test_an_unterminated_string_cannot_make_the_depth_scan_slow():
    hostile = b"[" * 20 + b'"' + b'\\"' * 30_000
    started = time.perf_counter()
    with pytest.raises(MalformedWebhook):
        parse_ipn(hostile)
    assert not verify_ipn_signature(hostile, SIGNATURE, SECRET)
    assert time.perf_counter() - started < 2.0


def test_oversized_bodies_are_refused():
    with pytest.raises(MalformedWebhook, match="larger than 65536 bytes"):
        parse_ipn(b" " * (MAX_IPN_BYTES + 1))


# --- dedupe keys --------------------------------------------------------------------


def make_ipn(
    payment_id: str = "5800567260", status: str = "finished", paid: Decimal = Decimal(0)
) -> Ipn:
    return Ipn(payment_id=payment_id, payment_status=status, actually_paid=paid)


def test_dedupe_key_compares_actually_paid_by_value():
    same = {dedupe_key(make_ipn(paid=Decimal(text))) for text in ("0.5", "0.50", "5E-1")}
    assert len(same) == 1
    assert dedupe_key(make_ipn(paid=Decimal("0.5"))) != dedupe_key(make_ipn(paid=Decimal("0.51")))
    assert dedupe_key(make_ipn(paid=Decimal("1E+2"))) == dedupe_key(make_ipn(paid=Decimal(100)))
    zeros = {dedupe_key(make_ipn(paid=Decimal(t))) for t in ("0", "0.00", "0E-8", "-0")}
    assert len(zeros) == 1


def test_dedupe_key_is_readable():
    paid = Decimal("0.006566120")
    assert dedupe_key(make_ipn(paid=paid)) == '["5800567260","finished","0.00656612"]'


amounts = st.builds(
    lambda coefficient, exponent: Decimal(f"{coefficient}E{exponent}"),
    st.integers(0, 60),
    st.integers(-3, 3),
)
ids = st.sampled_from(["1", "2", "1:2", '"', ""]) | st.text(max_size=4)


@given(a=st.tuples(ids, ids, amounts), b=st.tuples(ids, ids, amounts))
def test_dedupe_keys_are_equal_exactly_when_the_triples_are(a, b):
    key_a = dedupe_key(make_ipn(*a))
    key_b = dedupe_key(make_ipn(*b))
    assert (key_a == key_b) == (a == b)


# --- binding to the order ------------------------------------------------------------


def binding_problem(
    event: Ipn,
    *,
    order_id: str,
    payment_id: str | None,
    price_amount: Decimal,
    price_currency: str,
    provider: str = "nowpayments",
    pay_currency: str = "eth",
) -> str | None:
    """The provider-neutral binding check, for an order and payment described by fields."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    order = Order(
        id=order_id,
        email="e@example.com",
        currency=price_currency,
        items=(
            OrderItem(
                id="i",
                product_id="p",
                name="P",
                quantity=1,
                unit_price=price_amount,
                source=ProductSource.CUSTOM,
            ),
        ),
        created_at=at,
        updated_at=at,
        access_token_hash="h",
        payment_id=payment_id,
    )
    payment = Payment(
        id=payment_id or "none",
        order_id=order_id,
        status=PaymentStatus.WAITING,
        provider_status="waiting",
        provider=provider,
        price_amount=price_amount,
        price_currency=price_currency,
        pay_amount=Decimal(1),
        pay_currency=pay_currency,
        pay_address="a",
        created_at=at,
        updated_at=at,
    )
    return neutral_binding_problem(update_of(event), order=order, payment=payment)


BOUND = {
    "order_id": "ord_7Q2mX9kLp4",
    "payment_id": "5800567260",
    "price_amount": Decimal("20.00"),
    "price_currency": "USD",
}


def test_the_real_ipn_is_bound_to_its_order():
    assert binding_problem(parse_ipn(FINISHED_BODY), **BOUND) is None


def test_a_repeated_deposit_is_bound_through_its_parent():
    repeat = parse_ipn(BY_NAME["partially_paid_repeat_deposit"]["body"].encode())
    assert binding_problem(repeat, **BOUND) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"payment_id": None}, "no payment has been opened"),
        ({"order_id": "ord_other"}, "order_id does not match"),
        ({"payment_id": "5800567999"}, "payment_id does not match"),
        ({"price_amount": Decimal("20.01")}, "price_amount does not match"),
        ({"price_currency": "eur"}, "price_currency does not match"),
        ({"provider": "btcpay"}, "the payment is held by btcpay"),
        ({"pay_currency": "btc"}, "pay_currency does not match"),
    ],
)
def test_unbound_ipns_say_why(change, reason):
    problem = binding_problem(parse_ipn(FINISHED_BODY), **{**BOUND, **change})
    assert problem is not None
    assert problem.startswith(reason)


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("order_id", "order_id does not match"),
        ("price_amount", "price_amount does not match"),
        ("price_currency", "price_currency does not match"),
    ],
)
def test_an_ipn_missing_a_binding_field_is_unbound(field, reason):
    parsed = parse_ipn(FINISHED_BODY.replace(f'"{field}":'.encode(), b'"ignored":', 1))
    problem = binding_problem(parsed, **BOUND)
    assert problem is not None
    assert problem.startswith(reason)


def test_matching_secret_names_the_secret_that_signed():
    assert matching_secret(FINISHED_BODY, SIGNATURE, ["other", SECRET]) == 1
    assert matching_secret(FINISHED_BODY, SIGNATURE, [SECRET, "other"]) == 0
    assert matching_secret(FINISHED_BODY, SIGNATURE, ["other", "  "]) is None
    assert matching_secret(FINISHED_BODY, SIGNATURE, []) is None
    # A re-serialised body is matched by its canonical form, for either secret.
    vector = BY_NAME["finished_ipn_reordered_pretty"]
    assert matching_secret(vector["body"].encode(), vector["signature"], ["x", SECRET]) == 1
