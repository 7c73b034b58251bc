"""A SigV4-checking reverse proxy in front of moto's S3 server, for the S3 vault tests.

moto serves S3 faithfully but does not check signatures: a tampered or expired presigned
URL would still get the object. ``SigV4Gate`` sits in front of it on loopback and
recomputes every request's AWS Signature Version 4 from the request exactly as it
arrived (method, path, query, the signed headers, payload hash), with the secret key it
holds for the access key id, following the published algorithm with ``hashlib`` and
``hmac`` only (not botocore, the code under test's own signer). It answers 403 the way
S3 does when the signature does not match, a presigned URL has expired or is not valid
yet, or a request is not signed at all; only a request that passes is forwarded to moto.

Both forms of SigV4 are checked: query-string (presigned URLs, payload
``UNSIGNED-PAYLOAD``) and the ``Authorization`` header (boto3's own calls, where the
``x-amz-content-sha256`` header must also match the body).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import http.server
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Self
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_EXPIRES = 604800
ALLOWED_SKEW = timedelta(minutes=15)
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Not passed along: hop-by-hop headers, ``Expect`` (the gate answered it), and the headers
# the gate's own server writes.
_NOT_FORWARDED_UP = _HOP_BY_HOP | {"expect"}
_NOT_FORWARDED_DOWN = _HOP_BY_HOP | {"date", "server"}


@dataclass(frozen=True)
class Rejection:
    status: int
    code: str
    message: str


# --- the SigV4 algorithm --------------------------------------------------------------------


def _encode(text: str, *, safe: str = "-_.~") -> str:
    return quote(text, safe=safe)


def canonical_uri(raw_path: str) -> str:
    # S3 does not normalise paths; each segment is encoded once.
    return _encode(unquote(raw_path), safe="/-_.~")


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    pairs = []
    for part in raw_query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((unquote(name), unquote(value)))
    return pairs


def canonical_query(pairs: Sequence[tuple[str, str]]) -> str:
    encoded = sorted(
        (_encode(name), _encode(value)) for name, value in pairs if name != "X-Amz-Signature"
    )
    return "&".join(f"{name}={value}" for name, value in encoded)


def canonical_headers(headers: Mapping[str, Sequence[str]], signed: Sequence[str]) -> str | None:
    lines = []
    for name in signed:
        values = headers.get(name)
        if values is None:
            return None
        value = ",".join(" ".join(v.split()) for v in values)
        lines.append(f"{name}:{value}\n")
    return "".join(lines)


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def expected_signature(
    *,
    secret: str,
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, Sequence[str]],
    signed_headers: Sequence[str],
    payload_hash: str,
    amz_date: str,
    scope: str,
) -> str | None:
    """The hex signature for this request, or None when a signed header is missing."""
    header_block = canonical_headers(headers, signed_headers)
    if header_block is None:
        return None
    canonical_request = "\n".join(
        [
            method,
            canonical_uri(raw_path),
            canonical_query(query),
            header_block,
            ";".join(signed_headers),
            payload_hash,
        ]
    )
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    date, region, service, _ = scope.split("/")
    key = signing_key(secret, date, region, service)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


# --- checking a request -----------------------------------------------------------------------


def _parse_amz_date(text: str) -> datetime | None:
    if not _AMZ_DATE.fullmatch(text):
        return None  # strptime alone would take "20130524T0000Z"
    try:
        return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _denied(message: str) -> Rejection:
    return Rejection(403, "AccessDenied", message)


def _mismatch() -> Rejection:
    return Rejection(
        403, "SignatureDoesNotMatch", "The request signature we calculated does not match"
    )


def _credential(
    credential: str, amz_date: str, credentials: Mapping[str, str]
) -> tuple[str, str] | Rejection:
    """(secret, scope) for ``AKID/date/region/s3/aws4_request``, or why it is unusable."""
    access_key_id, _, scope = credential.partition("/")
    parts = scope.split("/")
    if len(parts) != 4 or parts[2] != "s3" or parts[3] != "aws4_request":
        return Rejection(400, "AuthorizationQueryParametersError", "malformed credential")
    if parts[0] != amz_date[:8]:
        return _mismatch()
    secret = credentials.get(access_key_id)
    if secret is None:
        return Rejection(403, "InvalidAccessKeyId", "unknown access key id")
    return secret, scope


def check_request(
    *,
    method: str,
    target: str,
    headers: Mapping[str, Sequence[str]],
    body: bytes,
    now: datetime,
    credentials: Mapping[str, str],
) -> Rejection | None:
    """None if the request is correctly signed and in date; otherwise why it is refused.

    ``target`` is the raw request target (path and query, still percent-encoded);
    ``headers`` maps lowercase names to every value received.
    """
    raw_path, _, raw_query = target.partition("?")
    query = parse_query(raw_query)
    params = dict(query)
    if "X-Amz-Signature" in params:
        return _check_presigned(method, raw_path, query, params, headers, now, credentials)
    authorization = headers.get("authorization")
    if authorization:
        return _check_header_signed(
            method, raw_path, query, authorization[0], headers, body, now, credentials
        )
    return _denied("anonymous requests are not allowed")


def _check_presigned(
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    params: Mapping[str, str],
    headers: Mapping[str, Sequence[str]],
    now: datetime,
    credentials: Mapping[str, str],
) -> Rejection | None:
    if params.get("X-Amz-Algorithm") != ALGORITHM:
        return Rejection(400, "AuthorizationQueryParametersError", "unsupported algorithm")
    amz_date = params.get("X-Amz-Date", "")
    signed_at = _parse_amz_date(amz_date)
    expires = params.get("X-Amz-Expires", "")
    if signed_at is None or not expires.isdigit() or not 1 <= int(expires) <= MAX_EXPIRES:
        return Rejection(400, "AuthorizationQueryParametersError", "bad X-Amz-Date or Expires")
    found = _credential(params.get("X-Amz-Credential", ""), amz_date, credentials)
    if isinstance(found, Rejection):
        return found
    secret, scope = found
    expected = expected_signature(
        secret=secret,
        method=method,
        raw_path=raw_path,
        query=query,
        headers=headers,
        signed_headers=params.get("X-Amz-SignedHeaders", "").split(";"),
        payload_hash=UNSIGNED_PAYLOAD,
        amz_date=amz_date,
        scope=scope,
    )
    if expected is None or not hmac.compare_digest(expected, params["X-Amz-Signature"]):
        return _mismatch()
    # Expiry is judged only once the signature shows the dates are the signer's own.
    if now >= signed_at + timedelta(seconds=int(expires)):
        return _denied("Request has expired")
    if signed_at > now + ALLOWED_SKEW:
        return _denied("Request is not yet valid")
    return None


def _check_header_signed(
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    authorization: str,
    headers: Mapping[str, Sequence[str]],
    body: bytes,
    now: datetime,
    credentials: Mapping[str, str],
) -> Rejection | None:
    algorithm, _, rest = authorization.partition(" ")
    fields = dict(item.strip().partition("=")[::2] for item in rest.split(",") if "=" in item)
    if algorithm != ALGORITHM or not {"Credential", "SignedHeaders", "Signature"} <= set(fields):
        return Rejection(400, "InvalidRequest", "unsupported authorization")
    amz_date = (headers.get("x-amz-date") or [""])[0]
    signed_at = _parse_amz_date(amz_date)
    if signed_at is None or abs(now - signed_at) > ALLOWED_SKEW:
        return Rejection(403, "RequestTimeTooSkewed", "the request time is too far off")
    payload_hash = (headers.get("x-amz-content-sha256") or [""])[0]
    if payload_hash != UNSIGNED_PAYLOAD and payload_hash != hashlib.sha256(body).hexdigest():
        return Rejection(400, "XAmzContentSHA256Mismatch", "the body does not match its hash")
    found = _credential(fields["Credential"], amz_date, credentials)
    if isinstance(found, Rejection):
        return found
    secret, scope = found
    expected = expected_signature(
        secret=secret,
        method=method,
        raw_path=raw_path,
        query=query,
        headers=headers,
        signed_headers=fields["SignedHeaders"].split(";"),
        payload_hash=payload_hash,
        amz_date=amz_date,
        scope=scope,
    )
    if expected is None or not hmac.compare_digest(expected, fields["Signature"]):
        return _mismatch()
    return None


# --- the proxy ----------------------------------------------------------------------------------


def _error_body(rejection: Rejection) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{rejection.code}</Code><Message>{rejection.message}</Message></Error>"
    ).encode()


def system_clock() -> datetime:
    return datetime.now(UTC)


class SigV4Gate:
    """An HTTP proxy on ``127.0.0.1`` that forwards only correctly signed requests upstream.

    ``clock`` is the gate's idea of now (settable, to let time pass without waiting);
    ``rejections`` lists every refusal; ``forwarded`` counts requests let through.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        credentials: Mapping[str, str],
        *,
        clock: Callable[[], datetime] = system_clock,
    ) -> None:
        self.upstream = upstream
        self.credentials = dict(credentials)
        self.clock = clock
        self.rejections: list[Rejection] = []
        self.forwarded = 0
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def reset(self) -> None:
        """Back to the real clock, with no rejections and nothing forwarded."""
        with self._lock:
            self.clock = system_clock
            self.rejections.clear()
            self.forwarded = 0

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # HTTP/1.1, so ``Expect: 100-continue`` (botocore's PUTs) is answered at once
            # rather than after the client's one-second wait.
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                gate._handle(self)

            do_PUT = do_HEAD = do_DELETE = do_POST = do_GET

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # quiet: the tests read ``rejections`` instead

        return Handler

    def _handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            self._reply(request, 501, {}, b"chunked uploads are not supported here")
            return
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        rejection = check_request(
            method=request.command,
            target=request.path,
            headers=headers,
            body=body,
            now=self.clock(),
            credentials=self.credentials,
        )
        if rejection is not None:
            with self._lock:
                self.rejections.append(rejection)
            self._reply(
                request,
                rejection.status,
                {"Content-Type": "application/xml"},
                b"" if request.command == "HEAD" else _error_body(rejection),
            )
            return
        with self._lock:
            self.forwarded += 1
        self._forward(request, body)

    def _forward(self, request: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        connection = http.client.HTTPConnection(*self.upstream, timeout=10)
        try:
            connection.request(
                request.command,
                request.path,
                body=body or None,
                headers={
                    k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED_UP
                },
            )
            response = connection.getresponse()
            payload = response.read()
            headers = {
                k: v for k, v in response.getheaders() if k.lower() not in _NOT_FORWARDED_DOWN
            }
        finally:
            connection.close()
        if request.command != "HEAD":
            headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
            headers["Content-Length"] = str(len(payload))
        self._reply(request, response.status, headers, payload)

    @staticmethod
    def _reply(
        request: http.server.BaseHTTPRequestHandler,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
    ) -> None:
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        if "Content-Length" not in headers and request.command != "HEAD":
            request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(body)
