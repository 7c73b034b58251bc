"""The embedded file vault: keys encrypted at rest, revealed through signed URLs."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from datetime import UTC, datetime, timedelta

import nacl.secret
import pytest

from bitloot_adapters.vault_file import MAGIC, FileVault
from bitloot_core.errors import KeyUrlRejected, VaultError
from bitloot_core.tokens import mint_key_token

VAULT_KEY = bytes(range(32))
SIGNING_KEY = b"signing-key-for-key-urls"
BASE_URL = "https://shop.example"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
KEY = b"ABCDE-FGHIJ-KLMNO"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"


@pytest.fixture
def vault(tmp_path):
    return FileVault(tmp_path / "vault", key=VAULT_KEY, signing_key=SIGNING_KEY, base_url=BASE_URL)


def token_of(url: str) -> str:
    prefix = f"{BASE_URL}/keys/"
    assert url.startswith(prefix)
    return url.removeprefix(prefix)


def stored_files(vault):
    return sorted(p for p in vault._root.iterdir() if p.is_file())


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "content_type"),
    [(KEY, "text/plain"), (PNG, "image/png"), (b"", "text/plain"), (b"\0\0|\0", "x/y")],
    ids=["text", "png", "empty", "nul-bytes"],
)
def test_a_key_round_trips_through_its_url(vault, secret, content_type):
    vault.put("orders/o1/i1/0", secret, content_type)
    url = vault.url_for("orders/o1/i1/0", NOW + timedelta(hours=3), NOW)

    assert vault.open(token_of(url), NOW + timedelta(hours=2, minutes=59)) == (
        secret,
        content_type,
    )
    assert vault.read("orders/o1/i1/0") == (secret, content_type)


def test_the_base_url_may_end_with_a_slash(tmp_path):
    vault = FileVault(tmp_path, key=VAULT_KEY, signing_key=SIGNING_KEY, base_url=BASE_URL + "/")
    assert vault.url_for("r", NOW + timedelta(hours=1), NOW).startswith(f"{BASE_URL}/keys/")


def test_the_key_is_not_on_disk_in_clear(vault):
    vault.put("orders/o1/i1/0", KEY, "text/plain")
    vault.put("orders/o1/i1/1", PNG, "image/png")
    for path in stored_files(vault):
        data = path.read_bytes()
        assert data.startswith(MAGIC)
        for clear in (KEY, PNG, b"orders/o1", b"text/plain", b"image/png"):
            assert clear not in data
        assert VAULT_KEY not in data


def test_each_write_has_its_own_nonce(tmp_path):
    one = FileVault(tmp_path / "a", key=VAULT_KEY, signing_key=SIGNING_KEY, base_url=BASE_URL)
    two = FileVault(tmp_path / "b", key=VAULT_KEY, signing_key=SIGNING_KEY, base_url=BASE_URL)
    one.put("ref", KEY, "text/plain")
    two.put("ref", KEY, "text/plain")
    nonce_size = nacl.secret.SecretBox.NONCE_SIZE
    first, second = one.path_for("ref").read_bytes(), two.path_for("ref").read_bytes()
    assert first[len(MAGIC) :][:nonce_size] != second[len(MAGIC) :][:nonce_size]
    assert first != second


# --- idempotency -----------------------------------------------------------------------------


def test_put_keeps_the_first_key(vault):
    vault.put("ref", b"FIRST", "text/plain")
    before = vault.path_for("ref").read_bytes()
    vault.put("ref", b"SECOND", "image/png")
    assert vault.read("ref") == (b"FIRST", "text/plain")
    assert vault.path_for("ref").read_bytes() == before
    assert len(stored_files(vault)) == 1


def test_concurrent_puts_store_one_key_and_leave_no_temp_files(vault):
    secrets = [f"KEY-{n}".encode() for n in range(16)]
    barrier = threading.Barrier(len(secrets))

    def put(secret: bytes) -> None:
        barrier.wait()
        vault.put("raced", secret, "text/plain")

    threads = [threading.Thread(target=put, args=(s,)) for s in secrets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert vault.read("raced")[0] in secrets
    assert [p.name for p in vault._root.iterdir()] == [vault.path_for("raced").name]


# --- file names and permissions ----------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    ["../../escape", "/etc/passwd", "..", "a/../../b", "C:\\windows", "ref\nwith\nlines", "ü"],
)
def test_hostile_refs_stay_inside_the_vault(vault, tmp_path, ref):
    vault.put(ref, KEY, "text/plain")
    expected = hashlib.sha256(ref.encode()).hexdigest() + ".key"
    assert [p.name for p in (tmp_path / "vault").iterdir()] == [expected]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vault"]
    assert vault.read(ref) == (KEY, "text/plain")


@pytest.mark.parametrize("bad", ["", "nul\0inside"])
def test_refs_and_content_types_are_checked(vault, bad):
    with pytest.raises(ValueError, match="vault ref"):
        vault.put(bad, KEY, "text/plain")
    with pytest.raises(ValueError, match="content type"):
        vault.put("ref", KEY, bad or "")


def test_key_files_are_private(vault):
    old_umask = os.umask(0)
    try:
        vault.put("ref", KEY, "text/plain")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(vault.path_for("ref").stat().st_mode) == 0o600
    assert stat.S_IMODE(vault._root.stat().st_mode) == 0o700


# --- damaged storage ---------------------------------------------------------------------------


def test_a_tampered_file_is_a_vault_error(vault):
    vault.put("ref", KEY, "text/plain")
    path = vault.path_for("ref")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(VaultError) as caught:
        vault.read("ref")

    assert caught.value.code == "key_corrupt"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_a_file_moved_to_another_ref_is_refused(vault):
    vault.put("orders/o1/i1/0", b"KEY-ONE", "text/plain")
    vault.put("orders/o2/i1/0", b"KEY-TWO", "text/plain")
    vault.path_for("orders/o2/i1/0").write_bytes(vault.path_for("orders/o1/i1/0").read_bytes())
    with pytest.raises(VaultError, match="another ref") as caught:
        vault.read("orders/o2/i1/0")
    assert "KEY-ONE" not in str(caught.value)


@pytest.mark.parametrize("content", [b"", b"not a vault file", MAGIC, MAGIC + b"short"])
def test_a_truncated_or_foreign_file_is_a_vault_error(vault, content):
    vault.put("ref", KEY, "text/plain")
    vault.path_for("ref").write_bytes(content)
    with pytest.raises(VaultError) as caught:
        vault.read("ref")
    assert caught.value.code == "key_corrupt"


def test_the_wrong_vault_key_is_a_vault_error_without_key_material(tmp_path, vault):
    vault.put("ref", KEY, "text/plain")
    other_key = bytes(reversed(range(32)))
    other = FileVault(vault._root, key=other_key, signing_key=SIGNING_KEY, base_url=BASE_URL)
    with pytest.raises(VaultError) as caught:
        other.read("ref")
    error = caught.value
    assert error.code == "key_corrupt"
    assert error.retryable
    for text in (str(error), repr(error), repr(error.data), error.message, error.code):
        for secret in (KEY, VAULT_KEY, other_key):
            assert repr(secret) not in text
            assert secret.hex() not in text
        assert KEY.decode() not in text


def test_a_missing_key_file_is_a_vault_error(vault):
    url = vault.url_for("never-stored", NOW + timedelta(hours=1), NOW)
    with pytest.raises(VaultError) as caught:
        vault.open(token_of(url), NOW)
    assert caught.value.code == "key_missing"
    assert caught.value.data == {"ref": "never-stored"}


def test_an_unreadable_vault_is_a_vault_error(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    vault = FileVault(blocker, key=VAULT_KEY, signing_key=SIGNING_KEY, base_url=BASE_URL)
    with pytest.raises(VaultError, match="could not be written"):
        vault.put("ref", KEY, "text/plain")
    with pytest.raises(VaultError, match="could not be read"):
        vault.read("ref")


# --- URLs and tokens -----------------------------------------------------------------------------


def test_an_expired_url_is_rejected(vault):
    vault.put("ref", KEY, "text/plain")
    url = vault.url_for("ref", NOW + timedelta(hours=3), NOW)
    with pytest.raises(KeyUrlRejected) as caught:
        vault.open(token_of(url), NOW + timedelta(hours=3))
    assert caught.value.code == "url_expired"
    assert caught.value.status_hint == 403


def test_a_token_opens_only_its_own_ref(vault):
    vault.put("orders/o1/i1/0", b"MINE", "text/plain")
    vault.put("orders/o2/i1/0", b"THEIRS", "text/plain")
    mine = token_of(vault.url_for("orders/o1/i1/0", NOW + timedelta(hours=3), NOW))
    assert vault.open(mine, NOW) == (b"MINE", "text/plain")


def _tampered_tokens(vault):
    good = token_of(vault.url_for("orders/o1/i1/0", NOW + timedelta(hours=3), NOW))
    payload, mac = good.split(".")
    forged_for_other_ref = mint_key_token(
        secret=b"someone-elses-signing-key",
        ref="orders/o2/i1/0",
        expires_at=NOW + timedelta(hours=3),
    )
    other_payload = mint_key_token(
        secret=SIGNING_KEY, ref="orders/o2/i1/0", expires_at=NOW + timedelta(hours=3)
    ).split(".")[0]
    return {
        "other-ref-with-my-mac": f"{other_payload}.{mac}",
        "forged-signing-key": forged_for_other_ref,
        "flipped-mac": f"{payload}.{mac[:-2]}{'A' if mac[-2] != 'A' else 'B'}{mac[-1]}",
        "longer-expiry": (
            mint_key_token(
                secret=b"x", ref="orders/o1/i1/0", expires_at=NOW + timedelta(days=9)
            ).split(".")[0]
            + f".{mac}"
        ),
        "garbage": "not-a-token",
        "empty": "",
        "two-dots": f"{payload}.{mac}.x",
        "bad-base64": f"{payload}!.{mac}",
    }


@pytest.mark.parametrize(
    "kind",
    [
        "other-ref-with-my-mac",
        "forged-signing-key",
        "flipped-mac",
        "longer-expiry",
        "garbage",
        "empty",
        "two-dots",
        "bad-base64",
    ],
)
def test_a_tampered_token_is_rejected_as_invalid(vault, kind):
    vault.put("orders/o1/i1/0", b"MINE", "text/plain")
    vault.put("orders/o2/i1/0", b"THEIRS", "text/plain")
    token = _tampered_tokens(vault)[kind]
    with pytest.raises(KeyUrlRejected) as caught:
        vault.open(token, NOW)
    assert caught.value.code == "url_invalid"


def test_a_url_must_expire_after_now(vault):
    with pytest.raises(ValueError, match="expire after now"):
        vault.url_for("ref", NOW, NOW)


def test_refs_with_a_bar_cannot_get_a_url(vault):
    with pytest.raises(ValueError, match=r"'\|'"):
        vault.url_for("a|b", NOW + timedelta(hours=1), NOW)


# --- construction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "signing_key", "match"),
    [(b"short", SIGNING_KEY, "32 bytes"), (VAULT_KEY, b"", "signing key")],
)
def test_keys_are_checked(tmp_path, key, signing_key, match):
    with pytest.raises(ValueError, match=match) as caught:
        FileVault(tmp_path, key=key, signing_key=signing_key, base_url=BASE_URL)
    assert "short" not in str(caught.value)


def test_the_repr_shows_no_keys(vault):
    text = repr(vault)
    assert text.startswith("FileVault(root=")
    assert VAULT_KEY.hex() not in text
    assert repr(VAULT_KEY) not in text
    assert "signing-key" not in text


def test_no_io_until_the_first_put(tmp_path):
    FileVault(tmp_path / "lazy", key=VAULT_KEY, signing_key=SIGNING_KEY, base_url=BASE_URL)
    assert not (tmp_path / "lazy").exists()


def test_each_nonce_gives_a_new_url_for_the_same_key(vault):
    vault.put("orders/o1/i1/0", KEY, "text/plain")
    expires = NOW + timedelta(hours=3)
    first = vault.url_for("orders/o1/i1/0", expires, NOW, nonce="a1")
    second = vault.url_for("orders/o1/i1/0", expires, NOW, nonce="b2")
    assert first != second
    assert (
        vault.open(token_of(first), NOW) == vault.open(token_of(second), NOW) == (KEY, "text/plain")
    )
