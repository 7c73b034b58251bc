"""Settings: the data dir's kept secrets (under processes starting together) and the
checks on ``BITLOOT_PUBLIC_URL``.

Child processes are started with the ``spawn`` method and run this very file (through
``runpy``), each loading the settings of one shared data dir, as a web server and a
``bitloot worker`` starting together would.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import runpy
import stat
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest

from bitloot_adapters.settings import (
    SECRETS_FILE,
    BtcPaySettings,
    ConfigError,
    Settings,
    load_settings,
)

PROCESSES = 8
WORKER_RUN_NAME = "bitloot_settings_child"
LIVE = {
    "BITLOOT_MODE": "live",
    "BITLOOT_SMTP_URL": "smtp://127.0.0.1:2525",
    "BITLOOT_NOWPAYMENTS_API_KEY": "np-live-key",
    "BITLOOT_NOWPAYMENTS_IPN_SECRET": "np-ipn-secret",
    "BITLOOT_KINGUIN_API_KEY": "kinguin-live-key",
}


def kept(data_dir: Path) -> dict[str, str]:
    loaded: dict[str, str] = json.loads((data_dir / SECRETS_FILE).read_text(encoding="utf-8"))
    return loaded


def summary(settings: Settings) -> dict[str, Any]:
    return {
        "vault_key": base64.b64encode(settings.vault_key).decode(),
        "signing_key": base64.b64encode(settings.signing_key).decode(),
        "nowpayments_ipn_secret": settings.ipn_secret,
        "admin_token": settings.admin_token,
        "sandbox_nowpayments_api_key": settings.nowpayments_api_key,
        "sandbox_kinguin_api_key": settings.kinguin_api_key,
        "sandbox_btcpay_api_key": settings.btcpay and settings.btcpay.api_key,
        "sandbox_btcpay_webhook_secret": settings.btcpay and settings.btcpay.webhook_secret,
        "generated": sorted(settings.generated),
    }


def _child(data_dir: str, out: str, start: Any) -> None:
    start.wait(timeout=30)
    settings = load_settings(data_dir=Path(data_dir), env={})
    Path(out).write_text(json.dumps(summary(settings)), encoding="utf-8")


if __name__ == WORKER_RUN_NAME:
    _child(**globals()["WORKER"])


# --- processes starting together ------------------------------------------------------------


def test_processes_starting_together_on_an_empty_data_dir_share_the_saved_secrets(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    outs = [tmp_path / f"out-{n}.json" for n in range(PROCESSES)]
    children = [
        context.Process(
            target=runpy.run_path,
            args=(__file__,),
            kwargs={
                "run_name": WORKER_RUN_NAME,
                "init_globals": {
                    "WORKER": {"data_dir": str(data_dir), "out": str(out), "start": start}
                },
            },
        )
        for out in outs
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)
    for child in children:
        if child.is_alive():  # pragma: no cover - only a hung child gets here
            child.kill()
            child.join()
    assert [child.exitcode for child in children] == [0] * PROCESSES

    results = [json.loads(out.read_text(encoding="utf-8")) for out in outs]
    generated = [result.pop("generated") for result in results]
    on_disk = kept(data_dir)
    assert all(result == on_disk for result in results)
    # One process generated the secrets (and would print the admin token); the others
    # found them saved.
    assert sorted(generated) == [[]] * (PROCESSES - 1) + [sorted(on_disk)]
    assert stat.S_IMODE((data_dir / SECRETS_FILE).stat().st_mode) == 0o600
    # No temporary file is left behind.
    assert sorted(p.name for p in data_dir.iterdir()) == ["mode", "secrets.json", "secrets.lock"]


def test_a_later_start_generates_nothing_and_keeps_the_secrets(tmp_path: Path) -> None:
    first = load_settings(data_dir=tmp_path, env={})
    assert first.admin_token_generated
    assert first.generated == frozenset(kept(tmp_path))
    again = load_settings(data_dir=tmp_path, env={})
    assert again.generated == frozenset()
    assert not again.admin_token_generated
    assert summary(again) | {"generated": []} == summary(first) | {"generated": []}


def test_a_missing_secret_is_added_and_the_others_kept(tmp_path: Path) -> None:
    (tmp_path / SECRETS_FILE).write_text(json.dumps({"admin_token": "kept-token"}))
    settings = load_settings(data_dir=tmp_path, env={})
    assert settings.admin_token == "kept-token"
    assert not settings.admin_token_generated
    assert "vault_key" in settings.generated
    on_disk = kept(tmp_path)
    assert on_disk["admin_token"] == "kept-token"
    assert base64.b64decode(on_disk["vault_key"]) == settings.vault_key


def test_a_secret_from_the_environment_is_neither_generated_nor_saved(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, env={"BITLOOT_ADMIN_TOKEN": "from-env-token"})
    assert settings.admin_token == "from-env-token"
    assert not settings.admin_token_generated
    assert "admin_token" not in kept(tmp_path)


def test_sandbox_provider_keys_live_only_in_the_data_dir(tmp_path: Path) -> None:
    # They are not settings: naming them in the environment is refused, like any unknown.
    for name in ("BITLOOT_SANDBOX_NOWPAYMENTS_API_KEY", "BITLOOT_SANDBOX_KINGUIN_API_KEY"):
        with pytest.raises(ConfigError, match=f"unknown setting {name}"):
            load_settings(data_dir=tmp_path, env={name: "from-env"})
    settings = load_settings(data_dir=tmp_path, env={})
    on_disk = kept(tmp_path)
    assert settings.nowpayments_api_key == on_disk["sandbox_nowpayments_api_key"]
    assert settings.kinguin_api_key == on_disk["sandbox_kinguin_api_key"]


def test_live_mode_keeps_no_sandbox_keys(tmp_path: Path) -> None:
    env = LIVE | {"BITLOOT_PUBLIC_URL": "https://shop.example"}
    settings = load_settings(data_dir=tmp_path, env=env)
    assert not settings.sandbox
    assert settings.nowpayments_api_key == "np-live-key"
    assert settings.ipn_secret == "np-ipn-secret"
    assert set(kept(tmp_path)) == {"vault_key", "signing_key", "admin_token"}


def test_a_malformed_key_from_the_environment_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BITLOOT_VAULT_KEY"):
        load_settings(data_dir=tmp_path / "d", env={"BITLOOT_VAULT_KEY": "short"})
    assert not (tmp_path / "d").exists()


def test_an_unreadable_secrets_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / SECRETS_FILE).write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_settings(data_dir=tmp_path, env={})
    (tmp_path / SECRETS_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        load_settings(data_dir=tmp_path, env={})


# --- BITLOOT_PUBLIC_URL ---------------------------------------------------------------------


def test_live_mode_requires_the_public_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BITLOOT_PUBLIC_URL"):
        load_settings(data_dir=tmp_path, env=LIVE)
    settings = load_settings(
        data_dir=tmp_path, env=LIVE | {"BITLOOT_PUBLIC_URL": "https://shop.example/"}
    )
    assert settings.public_url == "https://shop.example"


def test_sandbox_mode_defaults_the_public_url_to_the_listening_address(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path, port=8123, env={}).public_url == (
        "http://127.0.0.1:8123"
    )
    settings = load_settings(data_dir=tmp_path, host="::1", port=8123, env={})
    assert settings.public_url == "http://[::1]:8123"


@pytest.mark.parametrize(
    "url",
    [
        "https://shop.example",
        "https://shop.example/",
        "http://127.0.0.1:8000",
        "https://shop.example:8443/bitloot/",
        "http://[::1]:8000",
    ],
)
@pytest.mark.parametrize("live", [False, True])
def test_a_well_formed_public_url_is_kept_without_its_trailing_slash(
    tmp_path: Path, url: str, *, live: bool
) -> None:
    env = (LIVE if live else {}) | {"BITLOOT_PUBLIC_URL": url}
    assert load_settings(data_dir=tmp_path, env=env).public_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "shop.example",
        "/relative/path",
        "ftp://shop.example",
        "https://",
        "https:///path",
        "https://shop.example/?x=1",
        "https://shop.example/#top",
        "https://shop.example?",
        "https://user:pass@shop.example",
        "https://shop.example:99999",
        "https://shop.example:port",
        "https://shop example",
        "https://shop.example/\n",
        "javascript:alert(1)",
    ],
)
@pytest.mark.parametrize("live", [False, True])
def test_a_malformed_public_url_is_a_clear_error(tmp_path: Path, url: str, *, live: bool) -> None:
    env = (LIVE if live else {}) | {"BITLOOT_PUBLIC_URL": url}
    with pytest.raises(ConfigError, match="BITLOOT_PUBLIC_URL"):
        load_settings(data_dir=tmp_path / "d", env=env)
    assert not (tmp_path / "d").exists()


def test_the_s3_vault_is_off_unless_a_bucket_is_set(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path, env={}).s3 is None


def test_an_s3_bucket_needs_credentials_and_an_endpoint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        load_settings(data_dir=tmp_path, env={"BITLOOT_S3_BUCKET": "keys"})
    for name in ("S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "R2_ACCOUNT_ID"):
        assert f"BITLOOT_{name}" in str(missing.value)
    env = {
        "BITLOOT_S3_BUCKET": "keys",
        "BITLOOT_S3_ACCESS_KEY_ID": "AKID",
        "BITLOOT_S3_SECRET_ACCESS_KEY": "r2-secret-value",
        "BITLOOT_R2_ACCOUNT_ID": "acct",
    }
    settings = load_settings(data_dir=tmp_path, env=env)
    assert settings.s3 is not None
    assert (settings.s3.bucket, settings.s3.account_id, settings.s3.endpoint_url) == (
        "keys",
        "acct",
        None,
    )
    assert "r2-secret-value" not in repr(settings)


# --- Settings built in code (a host application's own configuration) ----------------------


def _valid(tmp_path: Path, **changes: Any) -> Settings:
    fields: dict[str, Any] = {
        "data_dir": tmp_path,
        "public_url": "https://shop.example",
        "sandbox": False,
        "nowpayments_api_key": "np",
        "nowpayments_base_url": "",
        "ipn_secret": "ipn",
        "kinguin_api_key": "kg",
        "kinguin_base_url": "",
        "vault_key": b"v" * 32,
        "signing_key": b"s" * 32,
        "admin_token": "admin",
        "smtp_url": None,
        "order_ttl": timedelta(hours=1),
        "key_url_ttl": timedelta(hours=3),
        "underpay_tolerance_percent": Decimal(0),
        "pay_currency": "btc",
    }
    fields.update(changes)
    return Settings(**fields)


def test_settings_built_in_code_are_checked_like_the_environment(tmp_path: Path) -> None:
    assert _valid(tmp_path).public_url == "https://shop.example"
    bad = {
        "public_url": "shop.example",
        "vault_key": b"short",
        "signing_key": b"x" * 31,
        "order_ttl": timedelta(0),
        "key_url_ttl": timedelta(seconds=-1),
        "job_lease": timedelta(0),
        "underpay_tolerance_percent": Decimal(100),
        "sqlite_synchronous": "OFF",
        "pay_currency": "BTC ",
        "admin_token": "",
    }
    for name, value in bad.items():
        with pytest.raises(ConfigError, match=name):
            _valid(tmp_path, **{name: value})


def test_settings_are_frozen_and_keep_secrets_out_of_their_repr(tmp_path: Path) -> None:
    settings = _valid(tmp_path, admin_token="admin-secret-token")
    with pytest.raises(AttributeError):
        settings.public_url = "https://other.example"  # type: ignore[misc]
    assert "admin-secret-token" not in repr(settings)
    assert "v" * 32 not in repr(settings)


# --- a shop on a shared database (BITLOOT_DATABASE_URL) -----------------------------------

DB_URL = "postgresql://shop:db-password@db.example:5432/bitloot"
SHARED = {
    "BITLOOT_DATABASE_URL": DB_URL,
    "BITLOOT_NOWPAYMENTS_IPN_SECRET": "np-ipn-secret",
    "BITLOOT_VAULT_KEY": base64.b64encode(b"v" * 32).decode(),
    "BITLOOT_SIGNING_KEY": base64.b64encode(b"s" * 32).decode(),
    "BITLOOT_ADMIN_TOKEN": "admin-from-env",
}
SECRET_NAMES = {
    "BITLOOT_NOWPAYMENTS_IPN_SECRET": "the IPN secret",
    "BITLOOT_VAULT_KEY": "the vault key",
    "BITLOOT_SIGNING_KEY": "the key-URL signing key",
    "BITLOOT_ADMIN_TOKEN": "the admin token",
}


def test_without_a_database_url_the_shop_keeps_sqlite_and_the_file_vault(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, env={})
    assert (settings.database_url, settings.vault_kind) == (None, "file")


@pytest.mark.parametrize("live", [False, True], ids=["sandbox", "live"])
def test_a_shared_database_names_every_missing_secret(tmp_path: Path, *, live: bool) -> None:
    env = {"BITLOOT_DATABASE_URL": DB_URL, **(LIVE if live else {})}
    env.pop("BITLOOT_NOWPAYMENTS_IPN_SECRET", None)
    with pytest.raises(ConfigError) as missing:
        load_settings(
            data_dir=tmp_path / "d", env=env | {"BITLOOT_PUBLIC_URL": "https://s.example"}
        )
    for name, what in SECRET_NAMES.items():
        assert f"{name} ({what})" in str(missing.value)
    assert "db-password" not in str(missing.value)
    assert not (tmp_path / "d").exists()
    # One missing: only it is named.
    with pytest.raises(ConfigError) as one:
        load_settings(data_dir=tmp_path, env={**SHARED, "BITLOOT_ADMIN_TOKEN": ""})
    assert "BITLOOT_ADMIN_TOKEN" in str(one.value)
    assert "BITLOOT_VAULT_KEY" not in str(one.value)


def test_a_shared_database_takes_its_secrets_from_the_environment_only(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, env=SHARED)
    assert settings.database_url == DB_URL
    assert (settings.ipn_secret, settings.admin_token) == ("np-ipn-secret", "admin-from-env")
    assert (settings.vault_key, settings.signing_key) == (b"v" * 32, b"s" * 32)
    assert settings.vault_kind == "database"
    assert settings.database_pool_size == 10
    shared = {"vault_key", "signing_key", "nowpayments_ipn_secret", "admin_token"}
    assert not shared & set(kept(tmp_path))
    assert not shared & settings.generated
    assert "db-password" not in repr(settings)


@pytest.mark.parametrize(
    ("vault", "extra", "kind"),
    [
        ("file", {}, "file"),
        ("DATABASE", {}, "database"),
        (
            "s3",
            {
                "BITLOOT_S3_BUCKET": "keys",
                "BITLOOT_S3_ACCESS_KEY_ID": "AKID",
                "BITLOOT_S3_SECRET_ACCESS_KEY": "r2-secret",
                "BITLOOT_R2_ACCOUNT_ID": "acct",
            },
            "s3",
        ),
    ],
)
def test_bitloot_vault_chooses_where_keys_go(
    tmp_path: Path, vault: str, extra: dict[str, str], kind: str
) -> None:
    settings = load_settings(data_dir=tmp_path, env={**SHARED, "BITLOOT_VAULT": vault, **extra})
    assert settings.vault_kind == kind


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"BITLOOT_VAULT": "floppy"}, "vault must be one of database, file, s3"),
        ({"BITLOOT_VAULT": "s3"}, "vault s3 needs the S3 settings"),
        ({"BITLOOT_DATABASE_URL": "mysql://shop:db-password@db/x"}, "must be a postgresql://"),
        ({"BITLOOT_DATABASE_POOL_SIZE": "0"}, "BITLOOT_DATABASE_POOL_SIZE must be between 1"),
    ],
)
def test_database_and_vault_settings_are_checked(
    tmp_path: Path, env: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem) as refused:
        load_settings(data_dir=tmp_path, env={**SHARED, **env})
    assert "db-password" not in str(refused.value)


def test_database_settings_built_in_code_are_checked(tmp_path: Path) -> None:
    assert _valid(tmp_path, database_url=DB_URL, vault="database").vault_kind == "database"
    for name, value in {
        "database_url": "sqlite:///x.db",
        "database_pool_size": 0,
        "vault": "tape",
    }.items():
        with pytest.raises(ConfigError, match=name):
            _valid(tmp_path, **{name: value})


# --- payment providers ----------------------------------------------------------------------

BTCPAY_LIVE = {
    "BITLOOT_MODE": "live",
    "BITLOOT_SMTP_URL": "smtp://127.0.0.1:2525",
    "BITLOOT_BTCPAY_URL": "https://btcpay.example/",
    "BITLOOT_BTCPAY_API_KEY": "btcpay-live-key",
    "BITLOOT_BTCPAY_STORE_ID": "StoreLive1",
    "BITLOOT_BTCPAY_WEBHOOK_SECRET": "btcpay-webhook-secret",
    "BITLOOT_KINGUIN_API_KEY": "kinguin-live-key",
    "BITLOOT_PUBLIC_URL": "https://shop.example",
}


def test_sandbox_mode_offers_every_provider_with_kept_sandbox_secrets(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, env={})
    assert settings.payment_providers == ("nowpayments", "btcpay")
    assert settings.btcpay is not None
    assert settings.btcpay.url == ""
    on_disk = kept(tmp_path)
    assert settings.btcpay.api_key == on_disk["sandbox_btcpay_api_key"]
    assert settings.btcpay.webhook_secret == on_disk["sandbox_btcpay_webhook_secret"]
    only = load_settings(data_dir=tmp_path, env={"BITLOOT_PAYMENT_PROVIDERS": " BTCPay "})
    assert only.payment_providers == ("btcpay",)


def test_live_mode_with_btcpay_alone(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, env=BTCPAY_LIVE)
    assert not settings.sandbox
    assert settings.payment_providers == ("btcpay",)
    assert settings.btcpay == BtcPaySettings(
        url="https://btcpay.example",
        api_key="btcpay-live-key",
        store_id="StoreLive1",
        webhook_secret="btcpay-webhook-secret",
    )
    assert "btcpay-live-key" not in repr(settings)
    assert "btcpay-webhook-secret" not in repr(settings)


def test_live_mode_offers_the_providers_whose_keys_are_set(tmp_path: Path) -> None:
    both = load_settings(data_dir=tmp_path, env=LIVE | BTCPAY_LIVE)
    assert both.payment_providers == ("nowpayments", "btcpay")
    chosen = load_settings(
        data_dir=tmp_path,
        env=LIVE | BTCPAY_LIVE | {"BITLOOT_PAYMENT_PROVIDERS": "btcpay,nowpayments"},
    )
    assert chosen.payment_providers == ("btcpay", "nowpayments")
    assert (
        load_settings(
            data_dir=tmp_path, env=LIVE | {"BITLOOT_PUBLIC_URL": "https://s.example"}
        ).btcpay
        is None
    )


@pytest.mark.parametrize(
    "missing",
    [
        "BITLOOT_BTCPAY_URL",
        "BITLOOT_BTCPAY_API_KEY",
        "BITLOOT_BTCPAY_STORE_ID",
        "BITLOOT_BTCPAY_WEBHOOK_SECRET",
    ],
)
def test_live_btcpay_names_each_missing_setting(tmp_path: Path, missing: str) -> None:
    env = LIVE | BTCPAY_LIVE | {"BITLOOT_PAYMENT_PROVIDERS": "nowpayments,btcpay"}
    del env[missing]
    with pytest.raises(ConfigError, match=missing) as caught:
        load_settings(data_dir=tmp_path, env=env)
    assert "btcpay-live-key" not in str(caught.value)
    assert "btcpay-webhook-secret" not in str(caught.value)


def test_live_nowpayments_listed_without_its_key_is_named(tmp_path: Path) -> None:
    env = BTCPAY_LIVE | {"BITLOOT_PAYMENT_PROVIDERS": "btcpay,nowpayments"}
    with pytest.raises(ConfigError, match="BITLOOT_NOWPAYMENTS_API_KEY"):
        load_settings(data_dir=tmp_path, env=env)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("paypal", "names 'paypal'"),
        ("btcpay,btcpay", "names a provider twice"),
        (",", "names ''"),
    ],
)
def test_a_bad_provider_list_is_a_clear_error(tmp_path: Path, value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"BITLOOT_PAYMENT_PROVIDERS {problem}"):
        load_settings(data_dir=tmp_path, env={"BITLOOT_PAYMENT_PROVIDERS": value})


def test_a_malformed_btcpay_url_is_a_clear_error(tmp_path: Path) -> None:
    env = BTCPAY_LIVE | {"BITLOOT_BTCPAY_URL": "btcpay.example"}
    with pytest.raises(ConfigError, match="BITLOOT_BTCPAY_URL must start with http"):
        load_settings(data_dir=tmp_path, env=env)


def test_provider_settings_built_in_code_are_checked(tmp_path: Path) -> None:
    store = BtcPaySettings(url="https://b.example", api_key="k", store_id="s", webhook_secret="w")
    assert _valid(tmp_path, payment_providers=("btcpay",), btcpay=store).btcpay == store
    with pytest.raises(ConfigError, match="payment_providers must name at least one"):
        _valid(tmp_path, payment_providers=())
    with pytest.raises(ConfigError, match="btcpay settings are required"):
        _valid(tmp_path, payment_providers=("nowpayments", "btcpay"))
    with pytest.raises(ConfigError, match="btcpay url is required in live mode"):
        _valid(
            tmp_path, btcpay=BtcPaySettings(url="", api_key="k", store_id="s", webhook_secret="w")
        )
    for name, value in (
        ("url", "ftp://b"),
        ("api_key", ""),
        ("store_id", ""),
        ("webhook_secret", ""),
    ):
        with pytest.raises(ConfigError, match=name):
            attrs.evolve(store, **{name: value})
