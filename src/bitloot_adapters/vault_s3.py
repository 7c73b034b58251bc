"""The S3-compatible key vault (Cloudflare R2): keys as objects, revealed by presigned URLs.

Needs the ``s3`` extra (boto3). The client is injected; ``make_r2_client`` builds one with
the settings R2 needs.

Why the objects hold the plain key: a presigned URL hands the object to the customer's
browser byte for byte, so a client-side encrypted object would reveal ciphertext. The
key is therefore stored as is and protected by the storage's own encryption at rest (R2
encrypts every object with AES-256; S3 applies SSE-S3 by default), by a private bucket,
and by URLs that are signed and expire. Use ``FileVault`` when keys must be encrypted
with a key the shop holds.

Rules this module keeps:

- Objects are named ``prefix`` + the SHA-256 of the vault ref: any ref is a safe object
  key, and a URL does not show which order or product a key belongs to.
- ``put`` is a conditional write (``If-None-Match: *``): a ref already stored keeps its
  first key, even when two writers race.
- A presigned URL lives from 1 second to ``ttl_max`` (at most 7 days, the SigV4 limit);
  a longer request, or an expiry that is not after now, is a ``ValueError``, not a
  silently different URL.
- Every botocore failure becomes a ``VaultError`` naming the S3 error code only; no
  credential and no key appears in it.
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import datetime, timedelta
from typing import Any

import boto3.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from bitloot_core.errors import VaultError

__all__ = ["MAX_URL_TTL", "S3Vault", "make_r2_client"]

# SigV4 presigned URLs cannot live longer than this.
MAX_URL_TTL = timedelta(days=7)
_CONDITION_FAILED = 412
_NONCE = re.compile(r"[A-Za-z0-9_-]{0,64}")


def make_r2_client(
    account_id: str,
    access_key_id: str,
    secret_access_key: str,
    *,
    endpoint_url: str | None = None,
) -> Any:
    """A boto3 S3 client for Cloudflare R2.

    ``endpoint_url`` overrides ``https://<account_id>.r2.cloudflarestorage.com`` (for a
    jurisdiction endpoint such as ``<account_id>.eu.r2.cloudflarestorage.com``, or a local
    stand-in). Checksums are only computed when an operation requires them: boto3's
    default checksums since 1.36 break uploads to R2.
    """
    session = boto3.session.Session(
        aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key
    )
    return session.client(
        "s3",
        endpoint_url=endpoint_url or f"https://{account_id}.r2.cloudflarestorage.com",
        region_name="auto",
        config=Config(
            signature_version="s3v4",
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def _translate(exc: Exception, action: str, ref: str) -> VaultError:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", "unknown"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchKey":
            return VaultError("no key is stored under this ref", code="key_missing", ref=ref)
        return VaultError(
            f"{action} failed: S3 answered {code}", s3_code=code, status=status, ref=ref
        )
    return VaultError(f"{action} failed: {type(exc).__name__}", ref=ref)


class S3Vault:
    """Keys as objects in ``bucket`` under ``prefix``, through an injected boto3 client."""

    def __init__(
        self,
        client: Any,
        *,
        bucket: str,
        prefix: str = "keys/",
        ttl_max: timedelta = MAX_URL_TTL,
    ) -> None:
        if not bucket:
            raise ValueError("a bucket name is required")
        if not timedelta(seconds=1) <= ttl_max <= MAX_URL_TTL:
            raise ValueError("ttl_max must be between 1 second and 7 days")
        self._client = client
        self._bucket = bucket
        self._prefix = prefix
        self._ttl_max = ttl_max

    def __repr__(self) -> str:
        return f"S3Vault(bucket={self._bucket!r}, prefix={self._prefix!r})"

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()

    def object_key(self, ref: str) -> str:
        return self._prefix + hashlib.sha256(ref.encode("utf-8", "surrogatepass")).hexdigest()

    def put(self, ref: str, secret: bytes, content_type: str) -> None:
        """Upload ``secret`` under ``ref`` unless it is already stored (first key wins)."""
        if not content_type:
            raise ValueError("a content type is required")
        try:
            self._client.put_object(
                Bucket=self._bucket,
                Key=self.object_key(ref),
                Body=secret,
                ContentType=content_type,
                CacheControl="no-store",
                IfNoneMatch="*",
            )
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == _CONDITION_FAILED:
                return  # already stored: keep the first key
            raise _translate(exc, "storing the key", ref) from exc
        except BotoCoreError as exc:
            raise _translate(exc, "storing the key", ref) from exc

    def read(self, ref: str) -> tuple[bytes, str]:
        """The key stored under ``ref`` and its content type (for internal use)."""
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=self.object_key(ref))
            with response["Body"] as body:
                secret: bytes = body.read()
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "reading the key", ref) from exc
        return secret, str(response.get("ContentType") or "application/octet-stream")

    def url_for(self, ref: str, expires_at: datetime, now: datetime, nonce: str = "") -> str:
        """A presigned GET URL valid until ``expires_at`` (never longer), at least 1 second.

        Signing is local: no request is made. The URL serves the object with the content
        type stored by ``put``, so none is passed here (the port does not carry it, and a
        HEAD request per reveal would put a network round trip inside the caller's
        transaction).
        """
        if not _NONCE.fullmatch(nonce):
            raise ValueError("a nonce is at most 64 letters, digits, '_' or '-'")
        ttl = expires_at - now
        if ttl <= timedelta(0):
            raise ValueError("a key URL must expire after now")
        if ttl > self._ttl_max:
            raise ValueError(f"a key URL may live at most {self._ttl_max}")
        # Rounded down, so the URL never outlives ``expires_at`` (but SigV4 needs 1 s).
        seconds = max(1, math.floor(ttl.total_seconds()))
        try:
            url: str = self._client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self._bucket,
                    "Key": self.object_key(ref),
                    # Signed into the URL: names the download, and makes each URL new.
                    "ResponseContentDisposition": f'inline; filename="key-{nonce or "0"}"',
                },
                ExpiresIn=seconds,
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "signing the key URL", ref) from exc
        return url
