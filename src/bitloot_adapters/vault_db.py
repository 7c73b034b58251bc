"""The database key vault: keys encrypted as the file vault encrypts them, kept in the store.

Any host of a shop on one shared database can serve a reveal, as nothing lives on a
host's disk. The envelope is the file vault's (``vault_file``): a PyNaCl ``SecretBox``
message under the shop's vault key whose plaintext binds it to its ref; the row is named
by the SHA-256 of the ref, so the table shows no order ids. The database sees ciphertext
only: a stolen backup without the vault key reveals nothing.

The store keeps the envelopes in its own ``vault_keys`` table (SQLite and PostgreSQL
alike), each written with ``INSERT … ON CONFLICT DO NOTHING``: a ref already stored keeps
its first key, even when two workers on two hosts race to put it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

from bitloot_adapters.vault_file import SealedVault, ref_file_name
from bitloot_core.errors import AdapterError, VaultError

__all__ = ["DatabaseVault", "SealedKeyStore", "SealedKeys"]


class SealedKeys(Protocol):
    """The envelope table, inside one of the store's transactions."""

    def put_sealed_key(self, name: str, envelope: bytes) -> bool:
        """Keep ``envelope`` under ``name``; False (and nothing changed) if one is kept."""
        ...

    def get_sealed_key(self, name: str) -> bytes | None: ...


class SealedKeyStore(Protocol):
    """A store that keeps envelopes: ``SqliteStore`` and ``PostgresStore``."""

    def transaction(self) -> AbstractContextManager[SealedKeys]: ...


class DatabaseVault(SealedVault):
    """Keys encrypted with ``key`` in ``store``'s ``vault_keys``; URLs signed with
    ``signing_key`` and served at ``{base_url}/keys/{token}`` by ``open``."""

    def __init__(
        self, store: SealedKeyStore, *, key: bytes, signing_key: bytes, base_url: str
    ) -> None:
        super().__init__(key=key, signing_key=signing_key, base_url=base_url)
        self._store = store

    def __repr__(self) -> str:
        return f"DatabaseVault(store={self._store!r}, base_url={self._base_url!r})"

    def _keep(self, ref: str, envelope: bytes) -> None:
        try:
            with self._store.transaction() as tx:
                tx.put_sealed_key(_name(ref), envelope)
        except AdapterError as exc:
            raise VaultError("the key could not be written to the vault", ref=ref) from exc

    def _load(self, ref: str) -> bytes:
        try:
            with self._store.transaction() as tx:
                envelope = tx.get_sealed_key(_name(ref))
        except AdapterError as exc:
            raise VaultError("the key could not be read from the vault", ref=ref) from exc
        if envelope is None:
            raise VaultError("no key is stored under this ref", code="key_missing", ref=ref)
        return envelope


def _name(ref: str) -> str:
    return ref_file_name(ref).removesuffix(".key")


if TYPE_CHECKING:
    from bitloot_adapters.postgres_store import PostgresStore
    from bitloot_adapters.sqlite_store import SqliteStore

    # mypy proves here that both stores keep envelopes.
    def _sqlite_keeps_envelopes(store: SqliteStore) -> SealedKeyStore:
        return store

    def _postgres_keeps_envelopes(store: PostgresStore) -> SealedKeyStore:
        return store
