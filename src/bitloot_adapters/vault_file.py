"""The embedded key vault: keys encrypted at rest in files, revealed through signed URLs.

Each key lives in one file under ``root``, named by the SHA-256 of its vault ref (so no
ref, however hostile, can name a path outside ``root``, and a directory listing shows no
order ids). The file is ``MAGIC`` followed by a PyNaCl ``SecretBox`` message (random
nonce, XSalsa20-Poly1305) whose plaintext is ``ref NUL content-type NUL key``: the ref
inside the envelope binds the file to its name, so a file copied over another ref's file
is refused rather than revealed.

A key URL is ``{base_url}/keys/{token}``, the token minted by ``bitloot_core.tokens``; the
host app serves that path by calling ``FileVault.open(token, now)``.

Rules this module keeps:

- A stored key is never changed: ``put`` on a ref that is already stored keeps the first
  key (a retried fulfillment must not alter a delivered key). Files are written to a
  temporary name, fsynced, then hard-linked into place, which fails if the name exists,
  so two concurrent ``put`` calls cannot both win (``root`` must be on a filesystem with
  hard links: any local POSIX one).
- Key files are created ``0o600``, the directory ``0o700``.
- No key material, and no encryption or signing key, ever appears in an exception
  message or a ``repr``.
- A validly signed token whose key file is gone is a ``VaultError`` (code
  ``key_missing``): only this vault mints tokens, so the fault is the storage's, not the
  customer's.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import nacl.exceptions
import nacl.secret
import nacl.utils

from bitloot_adapters.files import create_once
from bitloot_core.errors import KeyUrlRejected, VaultError
from bitloot_core.tokens import TokenProblem, mint_key_token, verify_key_token

__all__ = ["FileVault", "SealedVault"]

MAGIC = b"BLKEY1\n"
_SEP = b"\0"
_KEY_SUFFIX = ".key"


def ref_file_name(ref: str) -> str:
    """The file name a ref is stored under: hex SHA-256, never a path."""
    return hashlib.sha256(ref.encode("utf-8", "surrogatepass")).hexdigest() + _KEY_SUFFIX


class SealedVault:
    """What every vault that encrypts with the shop's own key shares: the envelope, the
    signed URLs and their checks. Subclasses only keep envelopes (``_keep``, ``_load``)."""

    def __init__(self, *, key: bytes, signing_key: bytes, base_url: str) -> None:
        if len(key) != nacl.secret.SecretBox.KEY_SIZE:
            raise ValueError(f"the vault key must be {nacl.secret.SecretBox.KEY_SIZE} bytes")
        if not signing_key:
            raise ValueError("the signing key must not be empty")
        self._box = nacl.secret.SecretBox(key)
        self._signing_key = signing_key
        self._base_url = base_url.rstrip("/")

    def _keep(self, ref: str, envelope: bytes) -> None:
        """Keep ``envelope`` under ``ref`` unless one is kept there already."""
        raise NotImplementedError

    def _load(self, ref: str) -> bytes:
        """The envelope kept under ``ref``; ``VaultError`` ``key_missing`` when none is."""
        raise NotImplementedError

    def _is_kept(self, ref: str) -> bool:
        del ref
        return False

    def put(self, ref: str, secret: bytes, content_type: str) -> None:
        """Store ``secret`` encrypted under ``ref``; a ref already stored keeps its first key."""
        if not ref or "\0" in ref:
            raise ValueError("a vault ref must be a non-empty string without NUL")
        if not content_type or "\0" in content_type:
            raise ValueError("a content type must be a non-empty string without NUL")
        if self._is_kept(ref):
            return
        plaintext = _SEP.join([ref.encode("utf-8", "surrogatepass"), content_type.encode(), secret])
        self._keep(ref, MAGIC + bytes(self._box.encrypt(plaintext)))

    def read(self, ref: str) -> tuple[bytes, str]:
        """The key stored under ``ref`` and its content type (for internal use)."""
        envelope = self._load(ref)
        if not envelope.startswith(MAGIC):
            raise VaultError("the stored key is not a vault file", code="key_corrupt", ref=ref)
        try:
            plaintext = self._box.decrypt(envelope[len(MAGIC) :])
        except nacl.exceptions.CryptoError:
            # Wrong vault key or a tampered envelope. The cause is dropped on purpose:
            # nothing about the ciphertext belongs in a log.
            raise VaultError(
                "the stored key could not be decrypted", code="key_corrupt", ref=ref
            ) from None
        stored_ref, _, rest = plaintext.partition(_SEP)
        content_type, _, secret = rest.partition(_SEP)
        if stored_ref != ref.encode("utf-8", "surrogatepass"):
            raise VaultError("the stored key belongs to another ref", code="key_corrupt", ref=ref)
        return secret, content_type.decode()

    def url_for(self, ref: str, expires_at: datetime, now: datetime, nonce: str = "") -> str:
        """``{base_url}/keys/{token}``, valid until ``expires_at``."""
        if expires_at <= now:
            raise ValueError("a key URL must expire after now")
        token = mint_key_token(
            secret=self._signing_key, ref=ref, expires_at=expires_at, nonce=nonce
        )
        return f"{self._base_url}/keys/{token}"

    def open(self, token: str, now: datetime) -> tuple[bytes, str]:
        """The key a URL token grants, with its content type.

        Raises ``KeyUrlRejected`` (``url_invalid`` or ``url_expired``) for a token this
        vault did not sign or that ran out, and ``VaultError`` if the key cannot be read.
        """
        check = verify_key_token(secret=self._signing_key, token=token, now=now)
        if check.problem is not None or check.ref is None:
            raise KeyUrlRejected(str(check.problem or TokenProblem.INVALID))
        return self.read(check.ref)


class FileVault(SealedVault):
    """Keys encrypted with ``key`` (32 bytes) under ``root``; URLs signed with ``signing_key``."""

    def __init__(self, root: Path, *, key: bytes, signing_key: bytes, base_url: str) -> None:
        super().__init__(key=key, signing_key=signing_key, base_url=base_url)
        self._root = Path(root)

    def __repr__(self) -> str:
        return f"FileVault(root={str(self._root)!r}, base_url={self._base_url!r})"

    def path_for(self, ref: str) -> Path:
        return self._root / ref_file_name(ref)

    def _is_kept(self, ref: str) -> bool:
        return self.path_for(ref).exists()

    def _keep(self, ref: str, envelope: bytes) -> None:
        try:
            self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
            create_once(self.path_for(ref), envelope)
        except OSError as exc:
            raise VaultError("the key could not be written to the vault", ref=ref) from exc

    def _load(self, ref: str) -> bytes:
        try:
            return self.path_for(ref).read_bytes()
        except FileNotFoundError:
            raise VaultError(
                "no key is stored under this ref", code="key_missing", ref=ref
            ) from None
        except OSError as exc:
            raise VaultError("the key could not be read from the vault", ref=ref) from exc
