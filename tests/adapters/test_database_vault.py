"""The database vault: keys encrypted as the file vault does, kept in the shop's store.

Each test runs on a real SQLite file and on a real PostgreSQL database (a throwaway
cluster); what a host application sees is the same, and so is what the database holds:
ciphertext only, under a name that is not the ref.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from bitloot_adapters.postgres_store import PostgresStore
from bitloot_adapters.sqlite_store import SqliteStore
from bitloot_adapters.vault_db import DatabaseVault
from bitloot_adapters.vault_file import MAGIC
from bitloot_core.errors import KeyUrlRejected, VaultError

VAULT_KEY = bytes(range(32))
SIGNING_KEY = b"signing-key-for-key-urls"
BASE_URL = "https://shop.example"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
KEY = b"ABCDE-FGHIJ-KLMNO"

Opened = SqliteStore | PostgresStore


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opened]:
    opened: Opened
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "bitloot.db")
    else:
        opened = PostgresStore(request.getfixturevalue("pg_url"), pool_size=4)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def vault(store: Opened) -> DatabaseVault:
    return DatabaseVault(store, key=VAULT_KEY, signing_key=SIGNING_KEY, base_url=BASE_URL)


def rows(store: Opened) -> dict[str, bytes]:
    """What the ``vault_keys`` table holds, read past the vault."""
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as conn:
            return dict(conn.execute("SELECT name, envelope FROM vault_keys"))
    with psycopg.connect(store.url) as conn:
        return {n: bytes(e) for n, e in conn.execute("SELECT name, envelope FROM vault_keys")}


def overwrite(store: Opened, name: str, envelope: bytes) -> None:
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE vault_keys SET envelope = ? WHERE name = ?", (envelope, name))
        return
    with psycopg.connect(store.url) as conn:
        conn.execute("UPDATE vault_keys SET envelope = %s WHERE name = %s", (envelope, name))


def name_of(ref: str) -> str:
    return hashlib.sha256(ref.encode()).hexdigest()


def token_of(url: str) -> str:
    assert url.startswith(f"{BASE_URL}/keys/")
    return url.removeprefix(f"{BASE_URL}/keys/")


def test_a_key_round_trips_through_its_url(vault: DatabaseVault) -> None:
    vault.put("orders/o1/i1/0", KEY, "text/plain")
    url = vault.url_for("orders/o1/i1/0", NOW + timedelta(hours=1), NOW, nonce="n1")
    assert vault.open(token_of(url), NOW) == (KEY, "text/plain")


def test_the_database_holds_ciphertext_under_a_name_that_is_not_the_ref(
    vault: DatabaseVault, store: Opened
) -> None:
    vault.put("orders/o1/i1/0", KEY, "text/plain")
    held = rows(store)
    assert list(held) == [name_of("orders/o1/i1/0")]
    (envelope,) = held.values()
    assert envelope.startswith(MAGIC)
    assert KEY not in envelope
    assert b"orders/o1" not in envelope


def test_put_keeps_the_first_key(vault: DatabaseVault) -> None:
    vault.put("ref", b"FIRST", "text/plain")
    vault.put("ref", b"SECOND", "image/png")
    assert vault.read("ref") == (b"FIRST", "text/plain")


def test_concurrent_puts_store_one_key(vault: DatabaseVault, store: Opened) -> None:
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def put(n: int) -> None:
        start.wait()
        try:
            vault.put("raced", f"KEY-{n}".encode(), "text/plain")
        except BaseException as exc:  # noqa: BLE001  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(rows(store)) == 1
    first = vault.read("raced")
    assert first[0].startswith(b"KEY-")
    assert all(vault.read("raced") == first for _ in range(3))


def test_another_vault_on_the_same_database_reads_the_key(store: Opened) -> None:
    """Two hosts: each builds its own vault on the shared database, with the shared keys."""
    one = DatabaseVault(store, key=VAULT_KEY, signing_key=SIGNING_KEY, base_url=BASE_URL)
    other_store: Opened = (
        SqliteStore(store.path) if isinstance(store, SqliteStore) else PostgresStore(store.url)
    )
    try:
        other = DatabaseVault(
            other_store, key=VAULT_KEY, signing_key=SIGNING_KEY, base_url=BASE_URL
        )
        one.put("ref", KEY, "text/plain")
        url = one.url_for("ref", NOW + timedelta(minutes=5), NOW)
        assert other.open(token_of(url), NOW) == (KEY, "text/plain")
    finally:
        other_store.close()


def test_a_tampered_envelope_is_a_vault_error(vault: DatabaseVault, store: Opened) -> None:
    vault.put("ref", KEY, "text/plain")
    envelope = bytearray(rows(store)[name_of("ref")])
    envelope[-1] ^= 0x01
    overwrite(store, name_of("ref"), bytes(envelope))
    with pytest.raises(VaultError) as caught:
        vault.read("ref")
    assert caught.value.code == "key_corrupt"
    assert caught.value.__cause__ is None


def test_an_envelope_copied_to_another_ref_is_refused(vault: DatabaseVault, store: Opened) -> None:
    vault.put("orders/o1/i1/0", b"KEY-ONE", "text/plain")
    vault.put("orders/o2/i1/0", b"KEY-TWO", "text/plain")
    overwrite(store, name_of("orders/o2/i1/0"), rows(store)[name_of("orders/o1/i1/0")])
    with pytest.raises(VaultError, match="another ref") as caught:
        vault.read("orders/o2/i1/0")
    assert "KEY-ONE" not in str(caught.value)


def test_the_wrong_vault_key_cannot_read_a_key(vault: DatabaseVault, store: Opened) -> None:
    vault.put("ref", KEY, "text/plain")
    other = DatabaseVault(
        store, key=bytes(reversed(range(32))), signing_key=SIGNING_KEY, base_url=BASE_URL
    )
    with pytest.raises(VaultError) as caught:
        other.read("ref")
    assert caught.value.code == "key_corrupt"
    assert KEY.decode() not in str(caught.value)


def test_a_key_never_stored_is_key_missing(vault: DatabaseVault) -> None:
    url = vault.url_for("never-stored", NOW + timedelta(hours=1), NOW)
    with pytest.raises(VaultError) as caught:
        vault.open(token_of(url), NOW)
    assert caught.value.code == "key_missing"


def test_an_expired_or_foreign_url_is_rejected(vault: DatabaseVault) -> None:
    vault.put("ref", KEY, "text/plain")
    url = vault.url_for("ref", NOW + timedelta(seconds=10), NOW)
    with pytest.raises(KeyUrlRejected, match="expired"):
        vault.open(token_of(url), NOW + timedelta(seconds=11))
    foreign = DatabaseVault(vault._store, key=VAULT_KEY, signing_key=b"other", base_url=BASE_URL)
    with pytest.raises(KeyUrlRejected, match="invalid"):
        foreign.open(token_of(url), NOW)


def test_refs_and_content_types_are_checked(vault: DatabaseVault, store: Opened) -> None:
    for ref, content_type in (("", "text/plain"), ("a\0b", "text/plain"), ("ref", "")):
        with pytest.raises(ValueError, match="must be a non-empty string"):
            vault.put(ref, KEY, content_type)
    assert rows(store) == {}


def test_the_repr_shows_no_keys(vault: DatabaseVault) -> None:
    text = repr(vault)
    assert VAULT_KEY.hex() not in text
    assert "signing-key" not in text
