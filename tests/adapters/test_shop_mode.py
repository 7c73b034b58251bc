"""A data dir keeps the mode it was first used in; the other mode is refused before any
write. Live mode needs a mail server unless a mail dir is set on purpose."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import attrs
import psycopg
import pytest

from bitloot_adapters.bootstrap import build_shop
from bitloot_adapters.settings import SECRETS_FILE, ConfigError, load_settings
from bitloot_adapters.shop_mode import MODE_FILE, data_dir_mode

LIVE = {
    "BITLOOT_MODE": "live",
    "BITLOOT_NOWPAYMENTS_API_KEY": "np-live-key",
    "BITLOOT_NOWPAYMENTS_IPN_SECRET": "np-ipn-secret",
    "BITLOOT_KINGUIN_API_KEY": "kinguin-live-key",
    "BITLOOT_PUBLIC_URL": "https://shop.example",
    "BITLOOT_SMTP_URL": "smtp://127.0.0.1:2525",
}


def snapshot(data_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(data_dir.iterdir()) if p.is_file()}


def test_the_first_start_records_its_mode(tmp_path: Path) -> None:
    sandbox = load_settings(data_dir=tmp_path / "s", env={})
    live = load_settings(data_dir=tmp_path / "l", env=LIVE)
    assert (sandbox.mode, live.mode) == ("sandbox", "live")
    assert (tmp_path / "s" / MODE_FILE).read_text() == "sandbox\n"
    assert (tmp_path / "l" / MODE_FILE).read_text() == "live\n"
    # Later starts in the same mode are welcome.
    assert load_settings(data_dir=tmp_path / "s", env={}).mode == "sandbox"
    assert load_settings(data_dir=tmp_path / "l", env=LIVE).mode == "live"


def test_a_sandbox_start_on_a_live_data_dir_is_refused_and_writes_nothing(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    load_settings(data_dir=data_dir, env=LIVE)
    before = snapshot(data_dir)
    # The live variables forgotten: this process would be a sandbox shop.
    with pytest.raises(ConfigError) as refused:
        load_settings(data_dir=data_dir, env={})
    message = str(refused.value)
    assert f"the data dir {data_dir} belongs to a live-mode shop" in message
    assert "this process is in sandbox mode" in message
    assert "set BITLOOT_MODE=live" in message
    assert "use another data dir (--data-dir or BITLOOT_DATA_DIR)" in message
    assert snapshot(data_dir) == before
    assert "sandbox_nowpayments_api_key" not in json.loads(before[SECRETS_FILE])


def test_a_live_start_on_a_sandbox_data_dir_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    load_settings(data_dir=data_dir, env={})
    before = snapshot(data_dir)
    with pytest.raises(ConfigError, match=r"belongs to a sandbox-mode shop.*in live mode"):
        load_settings(data_dir=data_dir, env=LIVE)
    assert snapshot(data_dir) == before


@pytest.mark.parametrize(
    ("kept", "mode"),
    [({"sandbox_nowpayments_api_key": "x", "admin_token": "a"}, "sandbox"), ({"a": "b"}, "live")],
)
def test_a_data_dir_from_before_the_mode_file_is_read_by_its_secrets(
    tmp_path: Path, kept: dict[str, str], mode: str
) -> None:
    (tmp_path / SECRETS_FILE).write_text(json.dumps(kept))
    (tmp_path / "bitloot.db").write_bytes(b"")
    assert data_dir_mode(tmp_path) == mode
    other = LIVE if mode == "sandbox" else {}
    with pytest.raises(ConfigError, match=f"belongs to a {mode}-mode shop"):
        load_settings(data_dir=tmp_path, env=other)
    assert not (tmp_path / MODE_FILE).exists()


def test_secrets_alone_without_sandbox_keys_tell_no_mode(tmp_path: Path) -> None:
    (tmp_path / SECRETS_FILE).write_text(json.dumps({"admin_token": "kept"}))
    assert data_dir_mode(tmp_path) is None
    assert load_settings(data_dir=tmp_path, env={}).mode == "sandbox"
    assert data_dir_mode(tmp_path) == "sandbox"


def test_a_damaged_mode_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / MODE_FILE).write_text("staging\n")
    with pytest.raises(ConfigError, match="holds 'staging', not sandbox or live"):
        load_settings(data_dir=tmp_path, env={})


def test_must_exist_refuses_a_missing_data_dir_without_making_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=f"no shop data dir at {missing}"):
        load_settings(data_dir=missing, env={}, must_exist=True)
    assert not missing.exists()
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(ConfigError, match="no shop data dir at"):
        load_settings(data_dir=tmp_path / "empty", env={}, must_exist=True)
    assert list((tmp_path / "empty").iterdir()) == []


def test_live_mode_without_a_mail_server_is_refused(tmp_path: Path) -> None:
    no_smtp = {k: v for k, v in LIVE.items() if k != "BITLOOT_SMTP_URL"}
    with pytest.raises(ConfigError, match="BITLOOT_SMTP_URL is required in live mode"):
        load_settings(data_dir=tmp_path / "data", env=no_smtp)
    assert not (tmp_path / "data").exists()
    mail_dir = tmp_path / "outbox"
    on_purpose = load_settings(
        data_dir=tmp_path / "data", env=no_smtp | {"BITLOOT_MAIL_DIR": str(mail_dir)}
    )
    assert (on_purpose.smtp_url, on_purpose.mail_dir) == (None, mail_dir)
    # Sandbox mode writes its emails to the data dir, as the demo always did.
    assert load_settings(data_dir=tmp_path / "s", env={}).mail_dir is None


def test_build_shop_refuses_live_settings_made_in_code_without_a_mailer(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", env=LIVE)
    bare = attrs.evolve(settings, smtp_url=None)
    with pytest.raises(ConfigError, match="a live shop needs a mail server"):
        build_shop(bare)


def test_a_database_keeps_the_mode_of_its_first_shop(tmp_path: Path, pg_url: str) -> None:
    """Hosts sharing one PostgreSQL database each have a data dir of their own: a new,
    empty one must not let a sandbox process onto the live shop's database."""
    shared = {
        "BITLOOT_DATABASE_URL": pg_url,
        "BITLOOT_VAULT_KEY": base64.b64encode(b"v" * 32).decode(),
        "BITLOOT_SIGNING_KEY": base64.b64encode(b"s" * 32).decode(),
        "BITLOOT_ADMIN_TOKEN": "admin-token",
        "BITLOOT_NOWPAYMENTS_IPN_SECRET": "np-ipn-secret",
    }
    live = load_settings(data_dir=tmp_path / "host-1", env=LIVE | shared)
    build_shop(live).close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT mode FROM shop_mode").fetchall() == [("live",)]
    sandbox = load_settings(data_dir=tmp_path / "host-2", env=shared)
    assert sandbox.mode == "sandbox"
    with pytest.raises(ConfigError) as refused:
        build_shop(sandbox)
    message = str(refused.value)
    assert (
        "the database belongs to a live-mode shop, and this process is in sandbox mode" in message
    )
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM products").fetchone() == (0,)
    # The live shop itself is still welcome.
    again = load_settings(data_dir=tmp_path / "host-3", env=LIVE | shared)
    build_shop(again).close()
