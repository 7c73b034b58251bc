"""The S3 vault against a real moto S3 server behind the SigV4-checking gate (s3_check.py).

The vault talks to the gate with the R2 client settings (region ``auto``, SigV4, checksums
only when required); the gate recomputes every signature and refuses what S3 would.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit, urlunsplit

import boto3.session
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import NoCredentialsError

from bitloot_adapters.vault_s3 import MAX_URL_TTL, S3Vault, make_r2_client
from bitloot_core.errors import VaultError

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81"
    b"\x84\x00\x00\x00\x00IEND\xaeB`\x82"
)
KEY = b"ABCDE-FGHIJ-KLMNO"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def admin(s3_gate_server, s3_credentials):
    """A plain us-east-1 client through the gate (moto refuses region ``auto`` for buckets)."""
    access_key_id, secret_access_key = s3_credentials
    client = boto3.session.Session().client(
        "s3",
        region_name="us-east-1",
        endpoint_url=s3_gate_server.url,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
    )
    yield client
    client.close()


@pytest.fixture
def bucket(admin, s3_gate):
    name = f"bitloot-{uuid.uuid4().hex[:12]}"
    admin.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def r2(s3_gate_server, s3_credentials):
    client = make_r2_client("test-account", *s3_credentials, endpoint_url=s3_gate_server.url)
    yield client
    client.close()


@pytest.fixture
def vault(r2, bucket):
    return S3Vault(r2, bucket=bucket)


@pytest.fixture
def http():
    with httpx.Client(timeout=10) as client:
        yield client


def now() -> datetime:
    return datetime.now(UTC)


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    encoded = httpx.QueryParams(query)
    return urlunsplit(parts._replace(query=str(encoded)))


# --- the gate itself, against AWS's published SigV4 examples ---------------------------------

AWS_EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_EXAMPLE_CREDENTIALS = {"AKIAIOSFODNN7EXAMPLE": AWS_EXAMPLE_SECRET}
AWS_EXAMPLE_TIME = datetime(2013, 5, 24, 0, 0, 30, tzinfo=UTC)
AWS_PRESIGNED_TARGET = (
    "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
)
AWS_HOST = {"host": ["examplebucket.s3.amazonaws.com"]}


def check(s3_check, target, *, at=AWS_EXAMPLE_TIME, headers=None, method="GET", body=b""):
    return s3_check.check_request(
        method=method,
        target=target,
        headers=AWS_HOST if headers is None else headers,
        body=body,
        now=at,
        credentials=AWS_EXAMPLE_CREDENTIALS,
    )


def test_gate_accepts_the_aws_presigned_url_example(s3_check):
    assert check(s3_check, AWS_PRESIGNED_TARGET) is None


T = AWS_PRESIGNED_TARGET
BAD_QUERY = "AuthorizationQueryParametersError"
MISMATCH = "SignatureDoesNotMatch"


@pytest.mark.parametrize(
    ("target", "code"),
    [
        (T.replace("/test.txt", "/test2.txt"), MISMATCH),
        (T.replace("Signature=aeee", "Signature=beee"), MISMATCH),
        (T.replace("Expires=86400", "Expires=86401"), MISMATCH),
        (T.replace("us-east-1", "eu-west-1"), MISMATCH),
        (T + "&response-content-type=text%2Fhtml", MISMATCH),
        (T.replace("20130524%2F", "20130525%2F"), MISMATCH),
        (T.replace("AKIAIOSFODNN7", "AKIAXXXXXXXX7"), "InvalidAccessKeyId"),
        (T.replace("aws4_request", "aws4"), BAD_QUERY),
        (T.replace("HMAC-SHA256", "HMAC-SHA1"), BAD_QUERY),
        (T.replace("Expires=86400", "Expires=604801"), BAD_QUERY),
        (T.replace("Expires=86400", "Expires=0"), BAD_QUERY),
        (T.replace("T000000Z", "T0000Z"), BAD_QUERY),
        ("/test.txt", "AccessDenied"),
    ],
)
def test_gate_rejects_a_changed_presigned_url(s3_check, target, code):
    rejection = check(s3_check, target)
    assert rejection is not None
    assert rejection.code == code


def test_gate_rejects_the_aws_example_for_another_host(s3_check):
    rejection = check(s3_check, AWS_PRESIGNED_TARGET, headers={"host": ["evil.example"]})
    assert rejection.code == "SignatureDoesNotMatch"
    assert check(s3_check, AWS_PRESIGNED_TARGET, headers={}).code == "SignatureDoesNotMatch"


def test_gate_judges_expiry_from_the_signed_date(s3_check):
    signed = datetime(2013, 5, 24, tzinfo=UTC)
    assert check(s3_check, AWS_PRESIGNED_TARGET, at=signed + timedelta(seconds=86399)) is None
    expired = check(s3_check, AWS_PRESIGNED_TARGET, at=signed + timedelta(seconds=86400))
    assert (expired.code, expired.message) == ("AccessDenied", "Request has expired")
    early = check(s3_check, AWS_PRESIGNED_TARGET, at=signed - timedelta(hours=1))
    assert (early.code, early.message) == ("AccessDenied", "Request is not yet valid")


AWS_HEADER_EXAMPLE = {
    "host": ["examplebucket.s3.amazonaws.com"],
    "range": ["bytes=0-9"],
    "x-amz-content-sha256": [hashlib.sha256(b"").hexdigest()],
    "x-amz-date": ["20130524T000000Z"],
    "authorization": [
        (
            "AWS4-HMAC-SHA256 "
            "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        )
    ],
}


def test_gate_accepts_the_aws_header_signed_example(s3_check):
    assert check(s3_check, "/test.txt", headers=AWS_HEADER_EXAMPLE) is None


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"range": ["bytes=0-99"]}, "SignatureDoesNotMatch"),
        ({"x-amz-date": ["20130524T000001Z"]}, "SignatureDoesNotMatch"),
        ({"x-amz-date": ["20130524T020000Z"]}, "RequestTimeTooSkewed"),
        ({"x-amz-content-sha256": ["0" * 64]}, "XAmzContentSHA256Mismatch"),
        ({"authorization": ["AWS4-HMAC-SHA256 Credential=x"]}, "InvalidRequest"),
    ],
)
def test_gate_rejects_a_changed_header_signed_request(s3_check, change, code):
    rejection = check(s3_check, "/test.txt", headers=AWS_HEADER_EXAMPLE | change)
    assert rejection.code == code


def test_gate_checks_the_body_against_its_signed_hash(s3_check):
    rejection = check(s3_check, "/test.txt", headers=AWS_HEADER_EXAMPLE, body=b"changed")
    assert rejection.code == "XAmzContentSHA256Mismatch"


# --- the vault through the gate ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "content_type"), [(KEY, "text/plain"), (PNG, "image/png")], ids=["text", "png"]
)
def test_a_presigned_url_fetches_the_exact_key(vault, s3_gate, http, secret, content_type):
    vault.put("orders/o1/i1/0", secret, content_type)
    url = vault.url_for("orders/o1/i1/0", now() + timedelta(hours=3), now())

    response = http.get(url)

    assert response.status_code == 200
    assert response.content == secret
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == "no-store"
    assert s3_gate.rejections == []
    assert vault.read("orders/o1/i1/0") == (secret, content_type)


def test_the_r2_client_is_what_reaches_the_gate(vault, s3_gate, http):
    vault.put("ref", KEY, "text/plain")
    start = now()
    url = vault.url_for("ref", start + timedelta(minutes=5), start)
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Credential"][0].split("/")[2] == "auto"
    assert query["X-Amz-SignedHeaders"] == ["host"]
    assert query["X-Amz-Expires"] == ["300"]
    # put_object, then the GET: both signed, both checked, both forwarded.
    http.get(url).raise_for_status()
    assert s3_gate.forwarded >= 2


def test_a_url_with_another_key_path_is_refused(vault, s3_gate, http):
    vault.put("orders/o1/i1/0", b"MINE", "text/plain")
    vault.put("orders/o2/i1/0", b"SOMEONE-ELSES", "text/plain")
    url = vault.url_for("orders/o1/i1/0", now() + timedelta(hours=3), now())
    tampered = url.replace(vault.object_key("orders/o1/i1/0"), vault.object_key("orders/o2/i1/0"))
    assert tampered != url

    response = http.get(tampered)

    assert response.status_code == 403
    assert b"SignatureDoesNotMatch" in response.content
    assert b"SOMEONE-ELSES" not in response.content
    assert [r.code for r in s3_gate.rejections] == ["SignatureDoesNotMatch"]


@pytest.mark.parametrize(
    "change",
    [
        {"X-Amz-Signature": "0" * 64},
        {"X-Amz-Expires": "604800"},
        {"X-Amz-Date": "20300101T000000Z"},
        {"response-content-type": "text/html"},
    ],
    ids=["signature", "expires", "date", "added-param"],
)
def test_a_tampered_url_is_refused(vault, http, change):
    vault.put("ref", KEY, "text/plain")
    url = vault.url_for("ref", now() + timedelta(hours=3), now())

    response = http.get(with_query(url, **change))

    assert response.status_code == 403
    assert KEY not in response.content


def test_the_same_url_unsigned_is_refused(vault, http):
    vault.put("ref", KEY, "text/plain")
    url = vault.url_for("ref", now() + timedelta(hours=3), now())
    response = http.get(url.split("?")[0])
    assert response.status_code == 403
    assert b"AccessDenied" in response.content


def test_a_url_is_refused_once_its_time_has_passed(vault, s3_gate, http):
    vault.put("ref", KEY, "text/plain")
    issued = now()
    url = vault.url_for("ref", issued + timedelta(hours=3), issued)
    assert http.get(url).status_code == 200

    s3_gate.clock = lambda: issued + timedelta(hours=2, minutes=59)
    assert http.get(url).status_code == 200
    s3_gate.clock = lambda: issued + timedelta(hours=3, seconds=1)
    response = http.get(url)

    assert response.status_code == 403
    assert b"Request has expired" in response.content
    assert KEY not in response.content


def test_a_one_second_url_really_expires(vault, http):
    vault.put("ref", KEY, "text/plain")
    # Sign early in a second, so the one-second window is not spent before the first fetch.
    while now().microsecond > 300_000:
        time.sleep(0.02)
    issued = now()
    url = vault.url_for("ref", issued + timedelta(seconds=1), issued)
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["1"]
    assert http.get(url).content == KEY

    time.sleep(1.1)
    response = http.get(url)

    assert response.status_code == 403
    assert b"Request has expired" in response.content


def test_put_keeps_the_first_key(vault, http):
    vault.put("ref", b"FIRST", "text/plain")
    vault.put("ref", b"SECOND", "image/png")
    assert vault.read("ref") == (b"FIRST", "text/plain")
    assert http.get(vault.url_for("ref", now() + timedelta(hours=1), now())).content == b"FIRST"


def test_concurrent_puts_store_one_key(vault):
    secrets = [f"KEY-{n}".encode() for n in range(8)]
    errors = []

    def put(secret: bytes) -> None:
        try:
            vault.put("raced", secret, "text/plain")
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(s,)) for s in secrets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert vault.read("raced")[0] in secrets


def test_object_keys_are_hashed_refs_under_the_prefix(vault, admin, bucket):
    refs = ["../../etc/passwd", "orders/o1/i1/0", "/abs", "a b?c#d", "ünïcode"]
    for ref in refs:
        vault.put(ref, KEY, "text/plain")
    listed = {o["Key"] for o in admin.list_objects_v2(Bucket=bucket)["Contents"]}
    assert listed == {"keys/" + hashlib.sha256(r.encode()).hexdigest() for r in refs}
    # The object is the plain key (see the module docstring of vault_s3).
    body = admin.get_object(Bucket=bucket, Key=vault.object_key("orders/o1/i1/0"))["Body"]
    with body:
        assert body.read() == KEY


def test_a_custom_prefix(r2, bucket, admin):
    S3Vault(r2, bucket=bucket, prefix="shop/").put("ref", KEY, "text/plain")
    listed = [o["Key"] for o in admin.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == ["shop/" + hashlib.sha256(b"ref").hexdigest()]


# --- URL lifetimes ----------------------------------------------------------------------------


def expires_param(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0])


def test_url_lifetime_is_rounded_down_and_at_least_one_second(vault):
    start = now()
    assert expires_param(vault.url_for("r", start + timedelta(hours=3), start)) == 10800
    assert expires_param(vault.url_for("r", start + timedelta(seconds=59.9), start)) == 59
    assert expires_param(vault.url_for("r", start + timedelta(milliseconds=10), start)) == 1
    assert expires_param(vault.url_for("r", start + MAX_URL_TTL, start)) == 604800


def test_url_lifetime_beyond_the_limit_is_refused(r2, vault):
    start = now()
    with pytest.raises(ValueError, match="expire after now"):
        vault.url_for("r", start, start)
    with pytest.raises(ValueError, match="expire after now"):
        vault.url_for("r", start - timedelta(seconds=5), start)
    with pytest.raises(ValueError, match="at most 7 days"):
        vault.url_for("r", start + MAX_URL_TTL + timedelta(seconds=1), start)
    short = S3Vault(r2, bucket="b", ttl_max=timedelta(hours=3))
    assert expires_param(short.url_for("r", start + timedelta(hours=3), start)) == 10800
    with pytest.raises(ValueError, match="at most 3:00:00"):
        short.url_for("r", start + timedelta(hours=3, seconds=1), start)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bucket": ""}, "bucket"),
        ({"bucket": "b", "ttl_max": timedelta(days=8)}, "ttl_max"),
        ({"bucket": "b", "ttl_max": timedelta(0)}, "ttl_max"),
    ],
)
def test_settings_are_checked(r2, kwargs, match):
    with pytest.raises(ValueError, match=match):
        S3Vault(r2, **kwargs)


def test_a_content_type_is_required(vault):
    with pytest.raises(ValueError, match="content type"):
        vault.put("ref", KEY, "")


# --- failures become VaultError ----------------------------------------------------------------


def test_reading_a_missing_key(vault):
    with pytest.raises(VaultError) as caught:
        vault.read("never-stored")
    assert caught.value.code == "key_missing"
    assert caught.value.retryable


def test_a_missing_bucket(r2, s3_gate):
    vault = S3Vault(r2, bucket=f"missing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(VaultError, match="NoSuchBucket") as caught:
        vault.put("ref", KEY, "text/plain")
    assert caught.value.data["status"] == 404
    with pytest.raises(VaultError, match="NoSuchBucket"):
        vault.read("ref")


def test_wrong_credentials_are_refused_without_leaking_them(s3_gate, s3_credentials, bucket):
    client = make_r2_client(
        "test-account", s3_credentials[0], "not-the-secret", endpoint_url=s3_gate.url
    )
    with closing(client), pytest.raises(VaultError) as caught:
        S3Vault(client, bucket=bucket).put("ref", KEY, "text/plain")
    error = caught.value
    assert error.data["s3_code"] == "SignatureDoesNotMatch"
    assert error.data["status"] == 403
    for text in (str(error), repr(error), repr(error.data), error.message):
        assert "not-the-secret" not in text
        assert KEY.decode() not in text


def test_an_unreachable_endpoint(loopback_port, s3_credentials):
    client = boto3.session.Session().client(
        "s3",
        region_name="auto",
        endpoint_url=f"http://127.0.0.1:{loopback_port}",
        aws_access_key_id=s3_credentials[0],
        aws_secret_access_key=s3_credentials[1],
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2),
    )
    with closing(client):
        vault = S3Vault(client, bucket="b")
        with pytest.raises(VaultError, match="EndpointConnectionError"):
            vault.put("ref", KEY, "text/plain")
        with pytest.raises(VaultError, match="EndpointConnectionError"):
            vault.read("ref")


def test_a_signing_failure():
    class NoCredentials:
        def generate_presigned_url(self, *args, **kwargs):
            raise NoCredentialsError

    vault = S3Vault(NoCredentials(), bucket="b")
    with pytest.raises(VaultError, match="NoCredentialsError"):
        vault.url_for("ref", now() + timedelta(hours=1), now())


# --- the R2 client -----------------------------------------------------------------------------


def test_make_r2_client_uses_the_r2_settings():
    client = make_r2_client("0123abcd", "AKID", "SECRET")
    with closing(client):
        assert client.meta.endpoint_url == "https://0123abcd.r2.cloudflarestorage.com"
        assert client.meta.region_name == "auto"
        config = client.meta.config
        assert config.signature_version == "s3v4"
        assert config.request_checksum_calculation == "when_required"
        assert config.response_checksum_validation == "when_required"
        # Presigning is local: the URL points at R2 and carries the R2 scope.
        url = S3Vault(client, bucket="shop").url_for("r", now() + timedelta(hours=1), now())
    assert url.startswith("https://0123abcd.r2.cloudflarestorage.com/shop/keys/")
    assert "%2Fauto%2Fs3%2Faws4_request" in url
    assert "SECRET" not in url


def test_reprs_hold_no_client_secrets(r2):
    assert repr(S3Vault(r2, bucket="b")) == "S3Vault(bucket='b', prefix='keys/')"


def test_each_nonce_gives_a_new_signed_url(vault, s3_gate, http):
    vault.put("orders/o1/i1/0", KEY, "text/plain")
    issued = now()
    first = vault.url_for("orders/o1/i1/0", issued + timedelta(hours=3), issued, nonce="a1")
    second = vault.url_for("orders/o1/i1/0", issued + timedelta(hours=3), issued, nonce="b2")
    assert first != second
    assert http.get(first).content == http.get(second).content == KEY
    assert s3_gate.rejections == []
    # The nonce is signed: changing it in the URL is refused.
    assert http.get(first.replace("key-a1", "key-b2")).status_code == 403


def test_a_nonce_must_be_url_safe(vault):
    with pytest.raises(ValueError, match="nonce"):
        vault.url_for("r", now() + timedelta(hours=1), now(), nonce='a"b')
