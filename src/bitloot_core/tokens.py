"""Signed, time-limited tokens for key URLs, and order access tokens.

Pure: the secret and the current time are arguments. Tokens are
``base64url(payload) "." base64url(HMAC-SHA256(secret, payload))``; the payload is
``ref "|" expiry-epoch-seconds "|" nonce``; the nonce makes every reveal's URL distinct.
Verification compares in constant time and never raises for a malformed token: it
answers ``url_invalid`` or ``url_expired``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from bitloot_core.values import require_utc

_SEPARATOR = "|"
MAX_TOKEN_LENGTH = 2048


class TokenProblem(enum.StrEnum):
    INVALID = "url_invalid"
    EXPIRED = "url_expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenCheck:
    ref: str | None
    expires_at: datetime | None
    problem: TokenProblem | None

    @property
    def valid(self) -> bool:
        return self.problem is None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, b"key-url:" + payload, hashlib.sha256).digest()


def mint_key_token(*, secret: bytes, ref: str, expires_at: datetime, nonce: str = "") -> str:
    """A token granting ``ref`` until ``expires_at`` (whole seconds, rounded down)."""
    require_utc("expires_at", expires_at)
    if _SEPARATOR in ref or _SEPARATOR in nonce:
        raise ValueError("a vault ref or nonce must not contain '|'")
    expiry = int(expires_at.timestamp())
    payload = f"{ref}{_SEPARATOR}{expiry}{_SEPARATOR}{nonce}".encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def verify_key_token(*, secret: bytes, token: str, now: datetime) -> TokenCheck:
    """Check a token's signature, then its expiry. Never raises."""
    invalid = TokenCheck(ref=None, expires_at=None, problem=TokenProblem.INVALID)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        return invalid
    payload_text, mac_text = token.split(".")
    try:
        payload = _unb64(payload_text)
        mac = _unb64(mac_text)
    except (binascii.Error, ValueError):
        return invalid
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        return invalid
    # The signature is ours, so the payload is well formed.
    ref, expiry, _nonce = payload.decode().split(_SEPARATOR)
    expires_at = datetime.fromtimestamp(int(expiry), tz=UTC)
    problem = TokenProblem.EXPIRED if now >= expires_at else None
    return TokenCheck(ref=ref, expires_at=expires_at, problem=problem)


def order_access_token(*, secret: bytes, order_id: str) -> str:
    """The order's access token, derived so an idempotent replay can hand it out again.

    Only ``hash_access_token`` of it is stored; without ``secret`` it cannot be guessed.
    """
    return _b64(hmac.new(secret, b"order-access:" + order_id.encode(), hashlib.sha256).digest())


def hash_access_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def access_token_matches(token: str | None, stored_hash: str) -> bool:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        return False
    return hmac.compare_digest(hash_access_token(token), stored_hash)
